//! Start-up chores before the shards run: the shard count against the cores, the storage directory and its
//! lock, the node id, and the listening port (bound once so that port 0 resolves to one port that every shard
//! then shares); then the main thread's bounded, interruptible wait for the shards to come up.
//!
//! ```text
//! check_shards (≤ available cores, else exit 2) ─▶ lock_storage ─▶ node_id ─▶ reserve_port
//! shards ─Ready::Joined (executors + meshes, ≤ JOIN_DEADLINE)─▶ Ready::Listening (logs recovered) ─▶ wait_ready
//!   every WAIT_SLICE: SIGINT/SIGTERM flag set ─▶ Startup::Interrupted
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::shard_ctx::Ready;
use crate::driver::flock::{lock_exclusive, LockError};

/// Permissions of a new LOCK file (before the umask): what `OpenOptions` creates by default.
const LOCK_FILE_MODE: u32 = 0o666;
/// How long the executors may take to start and join the channel meshes. Pinned one per core they take
/// milliseconds; this bounds only a machine that cannot run them (the log recovery after it is not bounded).
pub const JOIN_DEADLINE: Duration = Duration::from_secs(10);
/// How often the main thread looks at the SIGINT/SIGTERM flag while it waits for the shards.
const WAIT_SLICE: Duration = Duration::from_millis(50);

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
    /// More shards than cores: glommio executors on shared cores spin while they join the channel meshes, so
    /// start-up crawls (16 shards on 2 cores: no start line after 20 s).
    #[error(
        "--shards {shards} is more than the {cores} available cores: run at most one shard per core \
         (omit --shards to use {cores})"
    )]
    TooManyShards {
        /// The shards asked for.
        shards: usize,
        /// `std::thread::available_parallelism` (affinity and cgroup quota included).
        cores: usize,
    },
    /// The executors could not be started.
    #[error("cannot start the shard executors: {0}")]
    Executor(String),
    /// The TLS certificate or key cannot be used (missing, not PEM, not matching).
    #[error("TLS: {0}")]
    Tls(#[from] crate::driver::tls::TlsError),
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
            StartError::Storage { .. }
            | StartError::StorageLocked(_)
            | StartError::Bind { .. }
            | StartError::TooManyShards { .. }
            | StartError::Tls(_) => EXIT_CONFIGURATION,
            StartError::Executor(_) => EXIT_FAILURE,
        }
    }
}

/// Refuses more shards than `cores` (a configuration error, exit 2): see [`StartError::TooManyShards`].
pub fn check_shards(shards: usize, cores: usize) -> Result<(), StartError> {
    if shards > cores {
        return Err(StartError::TooManyShards { shards, cores });
    }
    Ok(())
}

/// How the wait for the shards ended.
#[derive(Debug)]
pub enum Startup {
    /// Every shard listens; the metrics address shard 0 bound (`--metrics-addr`).
    Listening(Option<SocketAddr>),
    /// SIGINT or SIGTERM arrived first.
    Interrupted {
        /// Whether every shard had joined the meshes (each then returns once it sees the flag; otherwise the
        /// missing ones may never return, and nobody should wait for them).
        all_joined: bool,
    },
    /// A shard failed, a shard is gone, or the shards did not join within the deadline.
    Failed {
        /// The one line for the operator.
        error: StartError,
        /// As for `Interrupted`.
        all_joined: bool,
    },
}

/// Waits for `shards` shards to join the meshes (within `join_deadline`) and then to listen (after their
/// log recovery, however long), looking at `shutdown` every [`WAIT_SLICE`]. After `Interrupted` or
/// `Failed` the caller stops the shards that started.
pub fn wait_ready(ready: &Receiver<Ready>, shards: usize, shutdown: &AtomicBool, join_deadline: Duration) -> Startup {
    let started = Instant::now();
    let (mut joined, mut listening, mut metrics) = (0, 0, None);
    let failed = |message: String, joined: usize| Startup::Failed {
        error: StartError::Executor(message),
        all_joined: joined == shards,
    };
    while listening < shards {
        if shutdown.load(Ordering::Relaxed) {
            return Startup::Interrupted { all_joined: joined == shards };
        }
        if joined < shards && started.elapsed() > join_deadline {
            let within_s = join_deadline.as_secs_f64();
            return failed(format!("only {joined} of {shards} shards started within {within_s} s"), joined);
        }
        match ready.recv_timeout(WAIT_SLICE) {
            Ok(Ready::Joined) => joined += 1,
            Ok(Ready::Listening(m)) => {
                listening += 1;
                metrics = metrics.or(m);
            }
            Ok(Ready::Failed(message)) => return failed(message, joined),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return failed("a shard exited during start-up".into(), joined),
        }
    }
    Startup::Listening(metrics)
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
    fn more_shards_than_cores_exit_2_naming_both() {
        assert!(check_shards(2, 2).is_ok());
        let err = check_shards(64, 2).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains("--shards 64") && text.contains("2 available cores"), "{text}");
    }

    /// The line of a `Startup::Failed`, and whether every shard had joined.
    fn failure(startup: Startup) -> (String, bool) {
        match startup {
            Startup::Failed { error, all_joined } => (error.to_string(), all_joined),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn the_wait_for_the_shards_is_bounded_and_interruptible() {
        let shutdown = std::sync::Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let metrics: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for message in [Ready::Joined, Ready::Joined, Ready::Listening(None), Ready::Listening(Some(metrics))] {
            tx.send(message).unwrap();
        }
        let startup = wait_ready(&rx, 2, &shutdown, JOIN_DEADLINE);
        assert!(matches!(startup, Startup::Listening(Some(m)) if m == metrics), "{startup:?}");
        // A shard that never joins: the join deadline ends the wait with one line.
        tx.send(Ready::Joined).unwrap();
        let started = Instant::now();
        let (line, all_joined) = failure(wait_ready(&rx, 2, &shutdown, Duration::from_millis(200)));
        assert!(line.contains("only 1 of 2 shards started") && !all_joined, "{line}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // A shard that fails after joining.
        tx.send(Ready::Joined).unwrap();
        tx.send(Ready::Failed("shard 0: cannot open its log".into())).unwrap();
        let (line, all_joined) = failure(wait_ready(&rx, 1, &shutdown, JOIN_DEADLINE));
        assert!(line.contains("cannot open its log") && all_joined, "{line}");
        // Joined, recovering its log (no deadline): the signal flag ends the wait.
        tx.send(Ready::Joined).unwrap();
        let flag = shutdown.clone();
        let waiter = std::thread::spawn(move || (wait_ready(&rx, 1, &flag, Duration::from_millis(10)), rx));
        std::thread::sleep(Duration::from_millis(100));
        shutdown.store(true, Ordering::Relaxed);
        let (startup, rx) = waiter.join().unwrap();
        assert!(matches!(startup, Startup::Interrupted { all_joined: true }), "{startup:?}");
        // A signal before any shard joined.
        let startup = wait_ready(&rx, 2, &shutdown, JOIN_DEADLINE);
        assert!(matches!(startup, Startup::Interrupted { all_joined: false }), "{startup:?}");
        // Every shard gone.
        drop(tx);
        shutdown.store(false, Ordering::Relaxed);
        assert!(failure(wait_ready(&rx, 1, &shutdown, JOIN_DEADLINE)).0.contains("exited"));
    }

    #[test]
    fn port_zero_resolves_once() {
        let (_s, addr) = reserve_port("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(addr.port(), 0);
    }
}
