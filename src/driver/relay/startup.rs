//! Start-up chores before the shards run: the storage directory and its lock, the node id, and the
//! listening port (bound once so that port 0 resolves to one port that every shard then shares).

use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;

use crate::driver::flock::{lock_exclusive, LockError};

/// Permissions of a new LOCK file (before the umask): what `OpenOptions` creates by default.
const LOCK_FILE_MODE: u32 = 0o666;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The storage directory could not be created or used.
    #[error("storage directory {path}: {source}")]
    Storage {
        /// The directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another relay holds the storage directory's lock.
    #[error("storage directory {0} is in use by another relay (its LOCK file is held)")]
    StorageLocked(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The executors could not be started.
    #[error("cannot start the shard executors: {0}")]
    Executor(String),
}

/// Exit status of a configuration the relay cannot use, the same as an invalid value (README §Quick start).
pub const EXIT_CONFIGURATION: i32 = 2;
/// Exit status of any other failure to start or run.
pub const EXIT_FAILURE: i32 = 1;

impl StartError {
    /// The process exit status for this error. A storage directory that cannot be created, locked or written
    /// and a port that cannot be bound are what the operator configured, so they exit
    /// [`EXIT_CONFIGURATION`] like an invalid value and a script can tell them from a failure of the machine
    /// or the log (executors, a shard that cannot open its log), which exit [`EXIT_FAILURE`].
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Storage { .. } | StartError::StorageLocked(_) | StartError::Bind { .. } => EXIT_CONFIGURATION,
            StartError::Executor(_) => EXIT_FAILURE,
        }
    }
}

/// Creates the storage directory and takes its exclusive lock (held for the life of the returned file).
pub fn lock_storage(dir: &Path) -> Result<File, StartError> {
    let storage_err = |source| StartError::Storage { path: dir.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(storage_err)?;
    lock_exclusive(&dir.join("LOCK"), LOCK_FILE_MODE).map_err(|e| match e {
        LockError::Open(source) => storage_err(source),
        LockError::Held => StartError::StorageLocked(dir.display().to_string()),
    })
}

/// The relay's node id, created at first start and kept in `dir/node_id` (hex).
pub fn node_id(dir: &Path, fresh: [u8; 16]) -> Result<[u8; 16], StartError> {
    let path = dir.join("node_id");
    let storage_err = |source| StartError::Storage { path: path.display().to_string(), source };
    let mut text = String::new();
    if let Ok(mut f) = File::open(&path) {
        f.read_to_string(&mut text).map_err(storage_err)?;
        if let Some(id) = parse_hex16(text.trim()) {
            return Ok(id);
        }
    }
    let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = File::create(&path).map_err(storage_err)?;
    f.write_all(format!("{hex}\n").as_bytes()).map_err(storage_err)?;
    f.sync_all().map_err(storage_err)?;
    Ok(fresh)
}

fn parse_hex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Binds (without listening) a socket with SO_REUSEPORT to learn the port that every shard will bind.
/// A socket that is bound but not listening receives no connection, so holding it until every shard has
/// bound is harmless.
pub fn reserve_port(addr: SocketAddr) -> Result<(socket2::Socket, SocketAddr), StartError> {
    let bind_err = |source| StartError::Bind { addr, source };
    let domain = if addr.is_ipv6() { socket2::Domain::IPV6 } else { socket2::Domain::IPV4 };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP)).map_err(bind_err)?;
    socket.set_reuse_port(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    let bound =
        socket.local_addr().map_err(bind_err)?.as_socket().ok_or_else(|| {
            bind_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an IP socket address"))
        })?;
    Ok((socket, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_persists_and_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let first = node_id(dir.path(), [7; 16]).unwrap();
        assert_eq!(first, [7; 16]);
        assert_eq!(node_id(dir.path(), [9; 16]).unwrap(), [7; 16], "kept across restarts");
        let _held = lock_storage(dir.path()).unwrap();
        assert!(matches!(lock_storage(dir.path()), Err(StartError::StorageLocked(_))));
    }

    #[test]
    fn configuration_errors_exit_2_and_others_1() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = lock_storage(&file).unwrap_err();
        assert!(matches!(err, StartError::Storage { .. }), "{err}");
        assert_eq!(err.exit_code(), 2);
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = reserve_port(held.local_addr().unwrap()).unwrap_err();
        assert_eq!((err.exit_code(), err.to_string().contains("cannot listen on")), (2, true), "{err}");
        assert_eq!(StartError::Executor("x".into()).exit_code(), 1);
    }

    #[test]
    fn port_zero_resolves_once() {
        let (_s, addr) = reserve_port("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(addr.port(), 0);
    }
}
