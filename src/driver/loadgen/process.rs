//! Operating-system chores of the load generator: the file-descriptor limit, a relay child process, and a
//! process's CPU time and peak memory from `/proc`.
//!
//! ```text
//! raise_nofile_limit ─▶ soft RLIMIT_NOFILE = hard (children inherit it: the relay needs as many descriptors)
//! RelayProcess::start ─▶ `<this exe> relay --port 0 --storage <temp> --shards S` ─▶ start line ─▶ ws:// URL
//!   with TLS: a fresh self-signed pair for 127.0.0.1 in `<temp>-tls` ─▶ `--tls-cert --tls-key` ─▶ wss:// URL,
//!   the certificate for the clients to trust; /metrics: the plain loopback listener the start line names
//! ProcSample::read(pid) ─▶ utime + stime (/proc/PID/stat), VmHWM (/proc/PID/status)
//! RelayProcess::stop ─▶ SIGTERM ─▶ wait (bounded) ─▶ SIGKILL if it hangs ─▶ storage removed
//! ```

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a relay may take to print its start line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a relay may take to drain and exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Raises the soft limit on open files to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads one rlimit struct we own; raising the soft limit up to the hard one is allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

/// Clock ticks per second of `/proc/PID/stat` times.
pub fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// A process's CPU time and peak resident memory at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcSample {
    /// User + system CPU seconds since the process started.
    pub cpu_s: f64,
    /// Peak resident set size (VmHWM), bytes.
    pub peak_rss_bytes: u64,
}

impl ProcSample {
    /// Reads `/proc/PID/stat` and `/proc/PID/status`; `None` if the process is gone or unreadable.
    pub fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let ticks = crate::perf::procfs::cpu_ticks(&stat)?;
        let peak_rss_bytes = crate::perf::procfs::vm_hwm_kib(&status)? * 1024;
        Some(Self { cpu_s: ticks as f64 / clock_ticks_per_s() as f64, peak_rss_bytes })
    }
}

/// The current resident set of `pid` (VmRSS), bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(crate::perf::procfs::vm_rss_kib(&status)? * 1024)
}

/// Resets `pid`'s peak resident set (VmHWM) to its current one (`/proc/PID/clear_refs`, value 5, Linux ≥ 4.0),
/// so a later [`ProcSample`] reports the peak of what came after. Needs the right to write that file (our own
/// child, or root).
pub fn reset_peak_rss(pid: u32) -> std::io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// (busy, total) CPU ticks of the whole machine since boot (`/proc/stat`), to see what else used the CPUs.
pub fn machine_ticks() -> Option<(u64, u64)> {
    crate::perf::procfs::machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Why the relay child could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayProcessError {
    /// The storage directory or the process could not be created.
    #[error("cannot start the relay: {0}")]
    Spawn(std::io::Error),
    /// The relay exited or printed something else instead of its start line.
    #[error("the relay did not print its start line (got {0:?})")]
    NoStartLine(String),
}

/// A relay started as a child process on 127.0.0.1 with port 0 and a fresh storage directory.
pub struct RelayProcess {
    child: Child,
    /// Kept open so the relay never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    storage: PathBuf,
    /// `ws://127.0.0.1:PORT/`.
    pub url: String,
    /// The start line it printed.
    pub start_line: String,
    /// With TLS: the certificate the relay serves (the clients' trust anchor) and its directory.
    pub tls_cert: Option<PathBuf>,
    /// Where `/metrics` is served in plain HTTP (the client port when it is plain, a separate one with TLS).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl RelayProcess {
    /// Starts `exe relay --port 0 --storage <temp dir> --shards <shards> --danger-exact-metrics` (the report
    /// reads the relay's exact counters; its metrics stay on loopback) and waits for its start line.
    /// Its stderr is ours; `RUST_LOG` defaults to `warn` for it.
    pub fn start(exe: &std::path::Path, shards: usize, tls: bool) -> Result<Self, RelayProcessError> {
        let nanos = crate::driver::clock::unix_now_ns();
        let storage = std::env::temp_dir().join(format!("tessera-perf-e2e-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&storage).map_err(RelayProcessError::Spawn)?;
        let mut command = Command::new(exe);
        command.args(["relay", "--port", "0", "--danger-exact-metrics", "--shards", &shards.to_string(), "--storage"]);
        command.arg(&storage);
        let mut tls_cert = None;
        if tls {
            let (cert, key) = write_pair(&tls_dir(&storage))?;
            command.arg("--tls-cert").arg(&cert).arg("--tls-key").arg(&key);
            tls_cert = Some(cert);
        }
        // Read from the start line below: the metrics listener is plain HTTP on loopback, TLS or not.
        let metrics_addr = None;
        let mut child = command
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(RelayProcessError::Spawn)?;
        let stdout = child.stdout.take().expect("stdout was configured as piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Read the start line on a helper thread so that a relay that hangs cannot hang us.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send((reader, line));
        });
        let received = rx.recv_timeout(START_TIMEOUT);
        let mut relay = match received {
            Ok((stdout, line)) => {
                let start_line = line.trim_end().to_owned();
                Self { child, _stdout: stdout, storage, url: String::new(), start_line, tls_cert, metrics_addr }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&storage);
                return Err(RelayProcessError::NoStartLine("nothing within 60 s".into()));
            }
        };
        match crate::perf::procfs::start_line_url(&relay.start_line) {
            Some(url) => {
                relay.metrics_addr = crate::perf::procfs::start_line_metrics_addr(&relay.start_line);
                relay.url = url;
            }
            None => {
                let line = relay.start_line.clone();
                relay.stop();
                return Err(RelayProcessError::NoStartLine(line));
            }
        }
        Ok(relay)
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, waits for the exit (killing it after `STOP_TIMEOUT`), removes the storage directory.
    /// Returns whether it exited by itself with status 0.
    pub fn stop(&mut self) -> bool {
        // SAFETY: kill sends a signal to our own child, identified by the pid the OS gave us.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        let clean = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.success(),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break false;
                }
            }
        };
        let _ = std::fs::remove_dir_all(&self.storage);
        let _ = std::fs::remove_dir_all(tls_dir(&self.storage));
        clean
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.storage);
        let _ = std::fs::remove_dir_all(tls_dir(&self.storage));
    }
}

/// Where a TLS relay's pair lives: beside its storage, not inside it (the log owns that directory).
fn tls_dir(storage: &std::path::Path) -> PathBuf {
    let mut dir = storage.as_os_str().to_owned();
    dir.push("-tls");
    dir.into()
}

/// Writes a fresh self-signed pair for 127.0.0.1 into `dir`: (cert.pem, key.pem).
fn write_pair(dir: &std::path::Path) -> Result<(PathBuf, PathBuf), RelayProcessError> {
    let (cert, key, _pin) = crate::driver::tls::self_signed("127.0.0.1")
        .map_err(|e| RelayProcessError::Spawn(std::io::Error::other(e.to_string())))?;
    std::fs::create_dir_all(dir).map_err(RelayProcessError::Spawn)?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert).map_err(RelayProcessError::Spawn)?;
    std::fs::write(&key_path, key).map_err(RelayProcessError::Spawn)?;
    use std::os::unix::fs::PermissionsExt as _;
    let owner_only = std::fs::Permissions::from_mode(0o600);
    std::fs::set_permissions(&key_path, owner_only).map_err(RelayProcessError::Spawn)?;
    Ok((cert_path, key_path))
}

/// Body of a plain `GET path` to `addr` (the relay's `/metrics`), with short timeouts; `None` on any failure.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(3);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}
