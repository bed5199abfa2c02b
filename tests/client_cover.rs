//! Client cover on the real binaries: a connected `tessera chat` publishes exactly k proofs per round (one
//! PUBLISH per relay window) whether it talks or not, its cover proofs come back to it through its own
//! filters and are dropped without being shown, and a real message sent under cover still reaches its
//! recipient. The relay runs 2-second windows (1 s of allowed skew, so a catch-up SUBSCRIBE sent at a window
//! edge is not already in the past when it arrives) so a few rounds take a few seconds.

mod relay_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use relay_support::{Relay, WAIT};

/// The relay's window (and cover round), seconds.
const WINDOW_S: u64 = 2;
/// Proofs per round the chat session publishes.
const K: u32 = 2;

fn ok(args: &[&str]) -> String {
    let out: Output =
        Command::new(env!("CARGO_BIN_EXE_tessera")).args(args).env_remove("TESSERA_HOME").output().expect("runs");
    assert!(out.status.success(), "tessera {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 stdout")
}

/// Lines of a child's pipe, on a channel.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || BufReader::new(pipe).lines().map_while(Result::ok).try_for_each(|l| tx.send(l)));
    rx
}

/// `key=value` of a tracing line.
fn field(line: &str, key: &str) -> u64 {
    let at = line.find(&format!(" {key}=")).unwrap_or_else(|| panic!("no {key} in {line}")) + key.len() + 2;
    line[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn connected_session_publishes_k_per_round_and_drops_its_own_cover() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "window_s = 2\nclock_skew_s = 1\ncover_round_ms = 2000\n").unwrap();
    let relay = Relay::start(&["--config", config.to_str().unwrap()]);
    let url = relay.url();
    let (a, b) = (dir.path().join("alice"), dir.path().join("bob"));
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    ok(&["id", "new", "--home", a]);
    ok(&["id", "new", "--home", b]);
    let code_a = ok(&["invite", "--home", a, "--relay", &url]).trim().to_owned();
    let code_b = ok(&["invite", "--home", b, "--relay", &url]).trim().to_owned();
    ok(&["enroll", &code_a, "--name", "alice", "--home", b]);
    ok(&["enroll", &code_b, "--name", "bob", "--home", a]);

    // Bob follows (with cover at the default rate, like any connected client).
    let mut bob = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["recv", "--follow", "--json", "--home", b])
        .env_remove("TESSERA_HOME")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bob_lines = lines_of(bob.stdout.take().unwrap());

    let k = K.to_string();
    let mut alice = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["chat", "bob", "--home", a, "--cover-proofs-per-round", &k])
        .env_remove("TESSERA_HOME")
        .env("RUST_LOG", "tessera::driver::client=debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let alice_out = lines_of(alice.stdout.take().unwrap());
    let alice_err = lines_of(alice.stderr.take().unwrap());
    let mut stderr = Vec::new();
    let wait_for = |what: &str, stderr: &mut Vec<String>| {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(line) = alice_err.recv_timeout(Duration::from_millis(100)) {
                let hit = line.contains(what);
                stderr.push(line);
                if hit {
                    return;
                }
            }
        }
        panic!("alice never logged {what:?}: {stderr:#?}");
    };
    wait_for("chatting with bob", &mut stderr);
    // Idle rounds, then one message, then idle rounds again.
    let idle_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < idle_until {
        wait_for("client cover round", &mut stderr);
    }
    let mut stdin = alice.stdin.take().unwrap();
    stdin.write_all(b"hello bob\n").unwrap();
    let line = bob_lines.recv_timeout(WAIT).expect("bob receives the message sent under cover");
    assert!(line.contains("\"from\":\"alice\"") && line.contains("\"text\":\"hello bob\""), "{line}");
    let idle_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < idle_until {
        wait_for("client cover round", &mut stderr);
    }
    drop(stdin); // EOF ends the chat
    let status = alice.wait().unwrap();
    stderr.extend(alice_err.try_iter());
    assert!(status.success(), "{stderr:#?}");
    let _ = bob.kill();
    let _ = bob.wait();

    // Nothing but what bob sent would be shown to alice, and bob sent nothing: her own cover is never shown.
    assert_eq!(alice_out.try_iter().collect::<Vec<_>>(), Vec::<String>::new());
    assert!(bob_lines.recv_timeout(Duration::from_millis(300)).is_err(), "bob gets one message only");

    // One PUBLISH of exactly K proofs per window, every window from the first to the last, one real part in all.
    let rounds: Vec<&String> = stderr.iter().filter(|l| l.contains("client cover round")).collect();
    let mut per_window: BTreeMap<u64, u32> = BTreeMap::new();
    for line in &rounds {
        assert_eq!(field(line, "real") + field(line, "dummies"), u64::from(K), "{line}");
        *per_window.entry(field(line, "window_start_s")).or_default() += 1;
    }
    assert!(per_window.values().all(|&n| n == 1), "one slot per window: {per_window:?}");
    let (first, last) = (*per_window.keys().next().unwrap(), *per_window.keys().next_back().unwrap());
    assert_eq!(per_window.len() as u64, (last - first) / WINDOW_S + 1, "no round skipped: {per_window:?}");
    assert!(rounds.len() >= 5, "{rounds:#?}");
    assert_eq!(rounds.iter().map(|l| field(l, "real")).sum::<u64>(), 1);
    // Her cover comes back through her own filters and is recognised (counted, dropped): all but the last
    // round or two have had time to arrive.
    let received = field(rounds.last().unwrap(), "cover_received");
    let published = rounds.iter().map(|l| field(l, "dummies")).sum::<u64>();
    assert!(
        received > 0 && received + 2 * u64::from(K) >= published - field(rounds.last().unwrap(), "dummies"),
        "cover received {received} of {published} published"
    );
}
