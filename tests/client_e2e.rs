//! End to end: two clients (alice, bob) and a real relay process. Enrolment by invite codes, messages both
//! ways, a message to an offline recipient delivered by FETCH when he comes back (`tessera recv`), a
//! multi-part message, live delivery (`recv --follow`, `chat`), one process per key directory, a relay
//! that is down, and the same flow through the Rust driver API.

mod relay_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use relay_support::{Relay, WAIT};
use tessera::client::{Home, KeyFile};
use tessera::driver::client::session::{run_local, Session, SessionOptions};

const PASS_VAR: &str = "TESSERA_E2E_PASS";
const PASS: &str = "alice's passphrase";

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env_remove("TESSERA_HOME")
        .env(PASS_VAR, PASS)
        .output()
        .expect("tessera runs")
}

fn ok(args: &[&str]) -> String {
    let out = tessera(args);
    assert!(out.status.success(), "tessera {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 stdout")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// `(from, text)` of each JSON line printed by `recv --json`.
fn parse_json_lines(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
            assert_eq!(v["time"].as_str().unwrap().len(), 20, "{line}");
            assert_eq!(v["window_start_s"].as_u64().unwrap() % 10, 0, "{line}");
            (v["from"].as_str().unwrap().to_owned(), v["text"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn pair(from: &str, text: &str) -> (String, String) {
    (from.to_owned(), text.to_owned())
}

/// Creates alice (passphrase-protected, weak KDF for speed) and bob, and enrols them both ways with invites
/// naming `relay_url`. Returns (alice home, bob home).
fn enrol(dir: &Path, relay_url: &str) -> (String, String) {
    let (a, b) = (path(&dir.join("alice")).to_owned(), path(&dir.join("bob")).to_owned());
    ok(&["id", "new", "--home", &a, "--passphrase-env", PASS_VAR, "--danger-weak-kdf"]);
    ok(&["id", "new", "--home", &b]);
    let code_a = ok(&["invite", "--home", &a, "--relay", relay_url]).trim().to_owned();
    let code_b = ok(&["invite", "--home", &b, "--relay", relay_url]).trim().to_owned();
    assert!(ok(&["enroll", &code_a, "--name", "alice", "--home", &b]).starts_with("enrolled alice"));
    assert!(ok(&["enroll", &code_b, "--name", "bob", "--home", &a]).starts_with("enrolled bob"));
    (a, b)
}

/// A `recv --follow --json` process whose stdout lines arrive on a channel.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(home: &str) -> Follower {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["recv", "--follow", "--json", "--home", home])
            .env_remove("TESSERA_HOME")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn recv --follow");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follower { child, lines }
    }

    fn next(&self) -> (String, String) {
        let line = self.lines.recv_timeout(WAIT).expect("recv --follow prints the message in time");
        parse_json_lines(&line).remove(0)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_clients_exchange_messages_through_a_real_relay() {
    let relay = Relay::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = enrol(tmp.path(), &relay.url());
    let alice = ["--home", &a, "--passphrase-env", PASS_VAR];

    // First runs register both recipients' filters (an hour ahead); nothing is waiting yet.
    assert_eq!(ok(&["recv", "--home", &b]), "");
    assert_eq!(ok(&[&["recv"][..], &alice].concat()), "");

    // Bob is offline: the relay keeps the message because his filters cover this window, and his next
    // `recv` FETCHes it. The relay comes from Bob's invite (no --relay).
    let sent = ok(&[&["send", "--to", "bob", "hello bob"][..], &alice].concat());
    assert_eq!(sent, format!("sent to bob: 1 proof, acknowledged as durable by {}\n", relay.url()));
    let line = ok(&["recv", "--home", &b]);
    assert!(line.ends_with("Z alice: hello bob\n") && line.lines().count() == 1, "{line:?}");
    // The cursor moved past it: nothing twice.
    assert_eq!(ok(&["recv", "--home", &b]), "");

    // The other way, with non-ASCII text; --relay given explicitly.
    let to_alice = "hi Alice, ça va? ✓";
    ok(&["send", "--to", "alice", to_alice, "--home", &b, "--relay", &relay.url()]);
    assert_eq!(parse_json_lines(&ok(&[&["recv", "--json"][..], &alice].concat())), vec![pair("bob", to_alice)]);

    // A message longer than one envelope travels in three proofs and is reassembled exactly.
    let long: String = (0..1_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect::<String>() + " — fin";
    let sent = ok(&[&["send", "--to", "bob", &long][..], &alice].concat());
    assert!(sent.starts_with("sent to bob: 3 proofs"), "{sent}");
    assert_eq!(parse_json_lines(&ok(&["recv", "--json", "--home", &b])), vec![pair("alice", &long)]);

    // Live: bob follows; a plain send and then a chat session (lines from stdin, EOF ends it) reach him.
    let follower = Follower::start(&b);
    ok(&[&["send", "--to", "bob", "are you there?"][..], &alice].concat());
    assert_eq!(follower.next(), pair("alice", "are you there?"));
    // The key directory is in use by the follower: a second process is refused.
    let busy = tessera(&["send", "--to", "alice", "x", "--home", &b]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use by another tessera process"));

    let mut chat = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([&["chat", "bob"][..], &alice].concat())
        .env(PASS_VAR, PASS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat");
    {
        use std::io::Write;
        let mut stdin = chat.stdin.take().unwrap();
        stdin.write_all("first line\n\nsecond line\n".as_bytes()).unwrap();
    } // EOF
    let chat = chat.wait_with_output().unwrap();
    assert!(chat.status.success(), "{}", String::from_utf8_lossy(&chat.stderr));
    // The empty line is not sent. The two lines travel in different buckets (possibly different shards),
    // so the protocol does not order their DELIVERs: compare as a set.
    let mut lines = vec![follower.next(), follower.next()];
    lines.sort();
    assert_eq!(lines, vec![pair("alice", "first line"), pair("alice", "second line")]);
    assert!(follower.lines.recv_timeout(Duration::from_millis(300)).is_err(), "nothing else arrives");
}

#[test]
fn send_to_a_relay_that_is_down_fails_clearly() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("ws://127.0.0.1:{port}/");
    let tmp = tempfile::tempdir().unwrap();
    let (a, _) = enrol(tmp.path(), &url);
    let out = tessera(&["send", "--to", "bob", "anyone?", "--home", &a, "--passphrase-env", PASS_VAR]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with(&format!("error: cannot reach the relay at {url}: cannot connect")), "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
    // Nothing was sealed: no state was written.
    assert!(!tmp.path().join("alice/state.json").exists());
}

/// The same exchange through the driver API: two sessions on one executor, a live DELIVER.
#[test]
fn driver_api_sessions_exchange_live() {
    let relay = Relay::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = enrol(tmp.path(), &relay.url());
    let url = relay.url();
    let received = run_local(move || async move {
        let unlock = |home: &str, pass: Option<&str>| {
            let home = Home::open(Path::new(home)).unwrap();
            let key: KeyFile = home.read_identity().unwrap();
            let identity = key.unlock(pass.map(str::as_bytes)).unwrap();
            (home, identity)
        };
        let (home_a, id_a) = unlock(&a, Some(PASS));
        let (home_b, id_b) = unlock(&b, None);
        let mut alice = Session::connect(&url, home_a, id_a, SessionOptions::default()).await.unwrap();
        let mut bob = Session::connect(&url, home_b, id_b, SessionOptions::default()).await.unwrap();
        assert_eq!(bob.sync().await.unwrap(), vec![]);
        let sent = alice.send("bob", "through the API").await.unwrap();
        assert_eq!(sent.proofs, 1);
        let message = glommio::timer::timeout(Duration::from_secs(10), async {
            Ok::<_, glommio::GlommioError<()>>(bob.next_message().await)
        })
        .await
        .expect("delivered live in time")
        .unwrap();
        assert_eq!(message.window_start_s, sent.window_start_s);
        assert_eq!(bob.state().stats().messages, 1);
        (message.contact, message.text)
    })
    .unwrap();
    assert_eq!(received, pair("alice", "through the API"));
}
