//! Issue 12 with the real binary: nothing acknowledged is silently lost, and two client paper cuts.
//!
//! ```text
//! late subscriber   alice: enroll bob, send "hi" (ACK) ─▶ the window closes ─▶ bob: enroll alice, recv ─▶ "hi"
//! follow, relay late  bob: recv --follow (relay down) ─▶ relay starts on that port ─▶ alice sends ─▶ printed
//! window full         alice: 1 part, then 8 parts in the same window ─▶ "waiting … for the next window" ─▶ sent
//! ```
//! The first relies on the relay matching a SUBSCRIBE's past windows against the proofs it retained (late
//! matching, server/shard/late.rs), and on `enroll` leaving late matches DELIVERed during its registration for
//! `recv` to FETCH and print.

mod relay_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use relay_support::{Relay, WAIT};

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera")).args(args).env_remove("TESSERA_HOME").output().expect("tessera runs")
}

fn ok(args: &[&str]) -> (String, String) {
    let out = tessera(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tessera {args:?} failed: {stderr}");
    (String::from_utf8(out.stdout).expect("UTF-8 stdout"), stderr)
}

fn path(p: &Path) -> String {
    p.to_str().expect("UTF-8 temp path").to_owned()
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Sleeps until `offset` into the next 10-second window.
fn sleep_into_next_window(offset: Duration) {
    let now = unix_now();
    let into = Duration::from_nanos((now.as_nanos() % 10_000_000_000) as u64);
    std::thread::sleep(Duration::from_secs(10) - into + offset);
}

/// Alice and Bob with identities, and both invite codes naming `url`.
fn identities(dir: &Path, url: &str) -> (String, String, String, String) {
    let (a, b) = (path(&dir.join("alice")), path(&dir.join("bob")));
    ok(&["id", "new", "--home", &a]);
    ok(&["id", "new", "--home", &b]);
    let code_a = ok(&["invite", "--home", &a, "--relay", url]).0.trim().to_owned();
    let code_b = ok(&["invite", "--home", &b, "--relay", url]).0.trim().to_owned();
    (a, b, code_a, code_b)
}

#[test]
fn a_message_sent_before_the_recipient_enrolled_is_delivered() {
    let relay = Relay::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, code_a, code_b) = identities(tmp.path(), &relay.url());
    // Alice enrols Bob and writes at once; Bob has not enrolled Alice, nor ever run `recv`.
    ok(&["enroll", &code_b, "--name", "bob", "--home", &a]);
    let (sent, _) = ok(&["send", "--to", "bob", "hi", "--home", &a]);
    assert!(sent.contains("acknowledged as durable"), "{sent}");
    // The window it was sent in closes: only a match against what the relay retained can find it now.
    sleep_into_next_window(Duration::from_secs(1));
    let (enrolled, _) = ok(&["enroll", &code_a, "--name", "alice", "--home", &b]);
    assert!(enrolled.contains(&format!("subscribed at {}", relay.url())), "{enrolled}");
    let (received, stderr) = ok(&["recv", "--home", &b]);
    assert!(received.ends_with("Z alice: hi\n") && received.lines().count() == 1, "{received:?} {stderr}");
    assert!(!stderr.contains("may have been lost"), "{stderr}");
    // Delivered once.
    assert_eq!(ok(&["recv", "--home", &b]).0, "");
}

#[test]
fn a_message_sent_before_an_already_subscribed_recipient_enrolled_its_sender_is_delivered() {
    let relay = Relay::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, code_a, code_b) = identities(tmp.path(), &relay.url());
    // Bob already receives (from someone else): his subscription covers the coming hour, without Alice.
    let carol = path(&tmp.path().join("carol"));
    ok(&["id", "new", "--home", &carol]);
    let code_c = ok(&["invite", "--home", &carol, "--relay", &relay.url()]).0.trim().to_owned();
    ok(&["enroll", &code_c, "--name", "carol", "--home", &b]);
    assert_eq!(ok(&["recv", "--home", &b]).0, "");
    // Alice enrols Bob and writes; the window closes; then Bob enrols Alice: his filters for windows he
    // already subscribed to change, and the relay matches them again against what it retained.
    ok(&["enroll", &code_b, "--name", "bob", "--home", &a]);
    ok(&["send", "--to", "bob", "hello again", "--home", &a]);
    sleep_into_next_window(Duration::from_secs(1));
    ok(&["enroll", &code_a, "--name", "alice", "--home", &b]);
    let (received, stderr) = ok(&["recv", "--home", &b]);
    assert!(received.ends_with("Z alice: hello again\n"), "{received:?} {stderr}");
}

/// A relay started by hand on a given port (the support's starts on port 0), and its storage directory
/// (deleted on drop).
struct PortRelay {
    child: Child,
    _dir: tempfile::TempDir,
}

impl PortRelay {
    fn start(port: u16) -> PortRelay {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args([
                "relay",
                "--port",
                &port.to_string(),
                "--metrics-addr",
                "127.0.0.1:0",
                "--cover-traffic-epsilon",
                "4",
            ])
            .arg("--storage")
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tessera relay");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains(&format!(":{port}")), "{line}");
        PortRelay { child, _dir: dir }
    }
}

impl Drop for PortRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `home`'s state records a coverage for some contact: its `recv` has synced.
fn synced(home: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(Path::new(home).join("state.json")) else { return false };
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    state["covered_through_s"].as_object().is_some_and(|m| !m.is_empty())
}

#[test]
fn recv_follow_waits_for_a_relay_that_is_down_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("ws://127.0.0.1:{port}/");
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, code_a, code_b) = identities(tmp.path(), &url);
    // Enrolment succeeds with the relay down, and says when the contact's messages will come.
    let (out, stderr) = ok(&["enroll", &code_a, "--name", "alice", "--home", &b]);
    assert!(out.starts_with("enrolled alice") && !out.contains("subscribed at"), "{out}");
    assert!(stderr.contains("alice's messages will be fetched on the next `tessera recv`"), "{stderr}");
    ok(&["enroll", &code_b, "--name", "bob", "--home", &a]);

    let mut follower = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["recv", "--follow", "--home", &b])
        .env_remove("TESSERA_HOME")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn recv --follow");
    let (tx, lines) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).try_for_each(|l| tx.send(l)));
    let stderr = follower.stderr.take().unwrap();
    let (etx, errors) = mpsc::channel();
    std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).try_for_each(|l| etx.send(l)));
    std::thread::sleep(Duration::from_secs(2));
    assert!(follower.try_wait().unwrap().is_none(), "recv --follow keeps trying while the relay is down");
    let _relay = PortRelay::start(port);

    let deadline = Instant::now() + Duration::from_secs(30);
    while !synced(&b) {
        assert!(Instant::now() < deadline, "recv --follow connected and subscribed once the relay was up");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(&["send", "--to", "bob", "you waited", "--home", &a]);
    let line = lines.recv_timeout(WAIT).expect("the message is printed");
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(line.ends_with("Z alice: you waited"), "{line}");
    let said: Vec<String> = errors.try_iter().collect();
    assert!(said.iter().any(|l| l.starts_with("cannot reach the relay") && l.contains("retrying in")), "{said:?}");
}

#[test]
fn a_send_that_waits_for_the_next_window_says_so() {
    let relay = Relay::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, code_a, code_b) = identities(tmp.path(), &relay.url());
    ok(&["enroll", &code_a, "--name", "alice", "--home", &b]);
    ok(&["enroll", &code_b, "--name", "bob", "--home", &a]);
    // Early in a window, so that both sends fall in it: one part, then eight, of the eight per window.
    sleep_into_next_window(Duration::from_millis(200));
    let (first, stderr) = ok(&["send", "--to", "bob", "one part", "--home", &a]);
    assert!(first.starts_with("sent to bob: 1 proof") && stderr.is_empty(), "{first} {stderr}");
    let long = "x".repeat(3_152);
    let started = Instant::now();
    let (second, stderr) = ok(&["send", "--to", "bob", &long, "--home", &a]);
    assert!(second.starts_with("sent to bob: 8 proofs"), "{second}");
    assert!(started.elapsed() >= Duration::from_secs(5), "it waited for the next window");
    let waits: Vec<&str> = stderr.lines().filter(|l| l.starts_with("waiting")).collect();
    assert_eq!(waits.len(), 1, "said once: {stderr}");
    assert!(
        waits[0].contains(
            "s for the next window: 7 of the 8 message parts per window to bob are left and this message needs 8"
        ),
        "{stderr}"
    );
    let (received, _) = ok(&["recv", "--home", &b]);
    assert_eq!(received.lines().count(), 2, "{received}");
}
