//! Start-up of the real binary (issue 13, item 8): `--shards N` above the available cores answers with one line
//! within 10 s, and SIGINT/SIGTERM stop the relay at any moment of its start-up.
//!
//! ```text
//! spawn `tessera relay --shards 64` ─▶ exit status 2 + one stderr line naming 64 and the cores (≤ 10 s)
//! spawn `tessera relay` ─sleep d─▶ SIGTERM / SIGINT ─▶ the process is gone within 10 s, for every d
//! ```

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What the issue allows for an answer at start-up.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn spawn_relay(storage: &std::path::Path, shards: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["relay", "--port", "0", "--cover-traffic-epsilon", "4", "--shards", &shards.to_string(), "--storage"])
        .arg(storage)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tessera relay")
}

/// Waits up to `limit` for the child to exit; kills it (and returns `None`) if it does not.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn read_all(pipe: Option<impl Read>) -> String {
    let mut text = String::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_string(&mut text);
    }
    text
}

#[test]
fn more_shards_than_cores_is_refused_at_once_with_one_line() {
    let cores = cores();
    let shards = 64;
    if cores >= shards {
        eprintln!("skipped: this machine has {cores} cores, so --shards {shards} is not above them");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = spawn_relay(dir.path(), shards);
    let status = wait_bounded(&mut child, ANSWER_WITHIN);
    let (stdout, stderr) = (read_all(child.stdout.take()), read_all(child.stderr.take()));
    let status = status.unwrap_or_else(|| {
        panic!("`--shards {shards}` on {cores} cores gave no answer within {ANSWER_WITHIN:?}; stdout {stdout:?}")
    });
    assert_eq!(status.code(), Some(2), "a configuration error exits 2; stderr {stderr:?}");
    assert!(stdout.is_empty(), "no start line: {stdout:?}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr:?}");
    assert!(lines[0].contains(&shards.to_string()) && lines[0].contains(&format!("{cores} ")), "{}", lines[0]);
    assert!(started.elapsed() < ANSWER_WITHIN);
}

#[test]
fn sigterm_and_sigint_stop_the_relay_at_any_moment_of_start_up() {
    let shards = cores().min(2);
    // From "before the signal handlers exist" through executors, mesh join and log recovery to running.
    for (i, delay_ms) in [0u64, 2, 10, 30, 60, 120, 250, 500].into_iter().enumerate() {
        let signal = if i % 2 == 0 { libc::SIGTERM } else { libc::SIGINT };
        let dir = tempfile::tempdir().unwrap();
        let mut child = spawn_relay(dir.path(), shards);
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = wait_bounded(&mut child, ANSWER_WITHIN);
        let stderr = read_all(child.stderr.take());
        let status = status.unwrap_or_else(|| {
            panic!("signal {signal} {delay_ms} ms after spawn did not stop the relay; stderr {stderr:?}")
        });
        // Handled (a clean stop, 0) or, before the handlers are installed, the default action.
        assert!(status.success() || status.signal() == Some(signal), "{delay_ms} ms: {status:?}, stderr {stderr:?}");
    }
}
