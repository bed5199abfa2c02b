//! Direct-I/O file primitives for the log, over glommio's `DmaFile` (io_uring, O_DIRECT): aligned writes
//! from owned DMA buffers, aligned reads, block-by-block scans, directory syncs. One concern per function;
//! the log's decisions live in `crate::log`, the orchestration in `driver::relay::log_io`.
//!
//! ```text
//! bytes (from a CommitJob) ──copy──▶ DmaBuffer (aligned, owned by the kernel while in flight) ──write_at──▶ file
//! file ──read_at_aligned(chunk)──▶ ReadResult ──▶ 4 KiB blocks ──▶ a pure scanner
//! ```

use std::path::{Path, PathBuf};

use glommio::io::{DmaFile, OpenOptions};

use crate::log::format::HEADER_LEN;
use crate::log::BLOCK_LEN;

/// Bytes read per request while scanning a file at open: 256 KiB keeps each DMA buffer well inside a small
/// `io_memory` pool while a 64 MiB segment still takes only 256 reads.
pub const SCAN_CHUNK_BYTES: usize = 256 << 10;

/// An I/O failure, with the operation and the path it concerned.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct FileError {
    /// What was being done.
    pub op: &'static str,
    /// On which file or directory.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    /// Whether the failure is a want of space or of file descriptors, which a later retry of the same
    /// operation may overcome (ENOSPC, EDQUOT, EMFILE, ENFILE, or a direct-I/O write cut short, which only a
    /// full device does), rather than a failure that leaves the file's state unknown (EIO and the rest: the
    /// log is then fail-stop). See `crate::log::stall`.
    pub fn is_recoverable(&self) -> bool {
        use std::io::ErrorKind;
        matches!(self.source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT | libc::EMFILE | libc::ENFILE))
            || matches!(self.source.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::WriteZero)
    }
}

/// Maps a glommio result to a [`FileError`], keeping the OS error (its errno decides whether a failure is
/// recoverable; glommio's own conversion keeps only the kind of its enhanced errors).
pub fn ctx<T>(r: glommio::Result<T, ()>, op: &'static str, path: &Path) -> Result<T, FileError> {
    r.map_err(|e| {
        let source = match e {
            glommio::GlommioError::EnhancedIoError { source, .. } => source,
            other => other.into(),
        };
        FileError { op, path: path.to_path_buf(), source }
    })
}

/// Maps a std result to a [`FileError`].
pub fn ctx_std<T>(r: std::io::Result<T>, op: &'static str, path: &Path) -> Result<T, FileError> {
    r.map_err(|source| FileError { op, path: path.to_path_buf(), source })
}

/// Opens an existing file for direct reads and writes.
pub async fn open_rw(path: &Path) -> Result<DmaFile, FileError> {
    ctx(OpenOptions::new().read(true).write(true).dma_open(path).await, "open", path)
}

/// Creates a file that must not exist yet (a name is never reused, so an existing one is a bug or damage)
/// with its header block, and opens it for direct I/O.
///
/// The header goes through the page cache (a 4 KiB buffered write, no sync: the commit that created the
/// file fdatasyncs it with its data) *before* the direct-I/O open, because glommio decides once per thread
/// and device whether to use its polled ring by test-reading the first file it opens: on an empty file that
/// read succeeds without touching the device and polling is wrongly enabled (every later read then fails
/// with EOPNOTSUPP on devices without polling, like this virtio disk).
pub async fn create_with_header(path: &Path, header: &[u8]) -> Result<DmaFile, FileError> {
    use std::io::Write;
    let mut f = ctx_std(std::fs::OpenOptions::new().write(true).create_new(true).open(path), "create", path)?;
    ctx_std(f.write_all(header), "write header", path)?;
    drop(f);
    open_rw(path).await
}

/// Writes `bytes` (a multiple of 4 KiB) at `offset` (4 KiB-aligned) through one DMA buffer.
pub async fn write_at(file: &DmaFile, path: &Path, offset: u64, bytes: &[u8]) -> Result<(), FileError> {
    debug_assert!(
        offset.is_multiple_of(BLOCK_LEN as u64) && bytes.len().is_multiple_of(BLOCK_LEN),
        "direct I/O needs aligned writes"
    );
    let mut buf = file.alloc_dma_buffer(bytes.len());
    buf.as_bytes_mut().copy_from_slice(bytes);
    let written = ctx(file.write_at(buf, offset).await, "write", path)?;
    if written != bytes.len() {
        // O_DIRECT writes of whole blocks are not split except when the device is full.
        let source =
            std::io::Error::new(std::io::ErrorKind::WriteZero, format!("short write: {written} of {}", bytes.len()));
        return Err(FileError { op: "write", path: path.to_path_buf(), source });
    }
    Ok(())
}

/// Reads the header block.
pub async fn read_header(file: &DmaFile, path: &Path) -> Result<Vec<u8>, FileError> {
    let r = ctx(file.read_at_aligned(0, HEADER_LEN).await, "read header", path)?;
    Ok(r.to_vec())
}

/// File length in bytes.
pub async fn file_len(file: &DmaFile, path: &Path) -> Result<u64, FileError> {
    ctx(file.file_size().await, "stat", path)
}

/// Feeds every 4 KiB block after the header, in order, to `on_block`. A trailing partial block (never written
/// by this log, but a truncated copy may have one) is zero-padded.
pub async fn scan_blocks(
    file: &DmaFile,
    path: &Path,
    len: u64,
    mut on_block: impl FnMut(&[u8; BLOCK_LEN]),
) -> Result<(), FileError> {
    let mut offset = HEADER_LEN as u64;
    while offset < len {
        let want = ((len - offset) as usize).min(SCAN_CHUNK_BYTES);
        let want_aligned = want.div_ceil(BLOCK_LEN) * BLOCK_LEN;
        let r = ctx(file.read_at_aligned(offset, want_aligned).await, "read", path)?;
        if r.is_empty() {
            break;
        }
        let mut chunks = r.chunks_exact(BLOCK_LEN);
        for block in &mut chunks {
            on_block(block.try_into().expect("chunks_exact yields BLOCK_LEN"));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut padded = [0u8; BLOCK_LEN];
            padded[..rest.len()].copy_from_slice(rest);
            on_block(&padded);
        }
        offset += r.len() as u64;
    }
    Ok(())
}

/// Makes directory entries (created, renamed, removed files) durable.
pub async fn sync_dir(dir: &Path) -> Result<(), FileError> {
    let d = ctx(glommio::io::Directory::open(dir).await, "open dir", dir)?;
    ctx(d.sync().await, "sync dir", dir)?;
    ctx(d.close().await, "close dir", dir)
}

/// Removes a file.
pub async fn remove(path: &Path) -> Result<(), FileError> {
    ctx(glommio::io::remove(path).await, "remove", path)
}

/// Removes a file if it exists.
pub async fn remove_if_present(path: &Path) -> Result<(), FileError> {
    match remove(path).await {
        Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Renames a file.
pub async fn rename(from: &Path, to: &Path) -> Result<(), FileError> {
    ctx(glommio::io::rename(from, to).await, "rename", from)
}
