//! A small tmpfs for disk-full tests: mounted on a fresh temp dir, unmounted by a guard (also when an assertion
//! fails), and a filler that takes every free byte. The tests run as root here and in CI; where `mount` is
//! refused, [`tmpfs_or_skip`] says why and the test skips.
#![allow(dead_code)]

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A tmpfs of a given size mounted on a fresh temp dir; unmounted (lazily if busy) when dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts `size_mib` MiB, or says why not (the caller skips its test).
    pub fn mount(size_mib: u64) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let target = CString::new(dir.path().as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        let options = CString::new(format!("size={size_mib}m")).expect("no NUL");
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let rc =
            unsafe { libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, options.as_ptr().cast()) };
        if rc != 0 {
            return Err(format!("mount -t tmpfs on {}: {}", dir.path().display(), std::io::Error::last_os_error()));
        }
        Ok(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = CString::new(self.dir.path().as_os_str().as_bytes()).expect("no NUL");
        // SAFETY: a valid NUL-terminated path; MNT_DETACH if something still holds the mount.
        unsafe {
            if libc::umount(target.as_ptr()) != 0 {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

/// Mounts a tmpfs or prints why the test is skipped.
pub fn tmpfs_or_skip(size_mib: u64) -> Option<Tmpfs> {
    match Tmpfs::mount(size_mib) {
        Ok(fs) => Some(fs),
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a tmpfs ({why}); this test needs root");
            None
        }
    }
}

/// Writes `path` until the file system is full; returns the bytes written.
pub fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).expect("create filler");
    let mut written = 0u64;
    for chunk_len in [1 << 20, 64 << 10, 4 << 10] {
        let chunk = vec![0xA5u8; chunk_len];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filler: {e}"),
            }
        }
    }
    written
}
