//! A malicious relay cannot hang or de-anonymise the client (issue 13, item 7; docs/PROTOCOL.md §4.2 "What a
//! client must check").
//!
//! A fake relay — a tiny blocking WebSocket server on a thread — answers HELLO with a hostile HELLO_REPLY: a
//! subscription horizon of 2³² − 1 windows (the client used to precompute ~4·10⁹ windows of expected
//! deliveries), Bloom filters of m = 65,536, k = 16 (no false positives left: every match would be a real
//! delivery), or filters of one fingerprint. The client library's connect path and the `tessera` CLI must
//! refuse at once with a typed error naming the field, its value and the accepted range, send nothing after
//! HELLO, and `recv --follow` must not keep reconnecting to such a relay.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_core::OsRng;
use tessera::client::{Contact, Home, Identity, KeyFile, RelayParamsError};
use tessera::driver::client::session::{run_local, Session, SessionError, SessionOptions};
use tessera::proto::{encode_message, BloomParams, Codec, Frame, RelayParams};
use tungstenite::Message;

/// Longest a refusal may take: connecting and one HELLO round trip on loopback, nothing precomputed.
const FAIL_FAST: Duration = Duration::from_secs(5);

fn honest() -> RelayParams {
    RelayParams::defaults([9; 16])
}

/// What the fake relay saw on one connection: the frame types the client sent after HELLO (none expected).
type AfterHello = Vec<u8>;

/// Serves `connections` connections, each answering HELLO with `reply`, then reading until the client goes.
fn fake_relay(reply: RelayParams, connections: usize) -> (String, mpsc::Receiver<AfterHello>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..connections {
            let Ok((stream, _)) = listener.accept() else { return };
            stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let Ok(mut ws) = tungstenite::accept(stream) else { continue };
            let codec = Codec::default();
            let mut after_hello = Vec::new();
            let mut said_hello = false;
            while let Ok(message) = ws.read() {
                let Message::Binary(bytes) = message else { continue };
                for frame in codec.decode_message(&Bytes::from(bytes.to_vec())).unwrap_or_default() {
                    match frame {
                        Frame::Hello(_) if !said_hello => {
                            said_hello = true;
                            let _ = ws.send(Message::Binary(encode_message(&[Frame::HelloReply(reply.clone())])));
                        }
                        other => after_hello.push(other.type_byte()),
                    }
                }
            }
            let _ = tx.send(after_hello);
        }
    });
    (url, rx)
}

/// A key directory with a fresh identity.
fn home(dir: &std::path::Path) -> (Home, Identity) {
    let home = Home::create(&dir.join("me")).unwrap();
    let identity = Identity::generate(&mut OsRng);
    home.write_identity(&KeyFile::plain(&identity), false).unwrap();
    (home, identity)
}

/// `Session::connect` (the library's connect path) against `reply`; its error and how long it took.
fn connect_to(reply: RelayParams) -> (SessionError, Duration, AfterHello) {
    let tmp = tempfile::tempdir().unwrap();
    let (home, identity) = home(tmp.path());
    let (url, seen) = fake_relay(reply, 1);
    let (done_tx, done_rx) = mpsc::channel();
    let started = Instant::now();
    // On a thread, so that a client that hangs (precomputing) fails this test instead of blocking it.
    std::thread::spawn(move || {
        let result = run_local(move || async move {
            Session::connect(&url, home, identity, SessionOptions::default()).await.map(|_| ())
        });
        let _ = done_tx.send(result);
    });
    let result = done_rx.recv_timeout(FAIL_FAST * 2).expect("the client did not give up on the hostile relay in time");
    let elapsed = started.elapsed();
    let error = result.expect("executor").expect_err("a hostile HELLO_REPLY must be refused");
    let after_hello = seen.recv_timeout(FAIL_FAST).expect("the client closed the connection");
    (error, elapsed, after_hello)
}

#[test]
fn a_horizon_of_2_to_the_32_windows_is_refused_before_any_precomputation() {
    let mut reply = honest();
    reply.limits.subscription_windows_ahead_max = u32::MAX;
    let (error, elapsed, after_hello) = connect_to(reply);
    match &error {
        SessionError::UnusableRelay { source, .. } => assert_eq!(
            *source,
            RelayParamsError::OutOfRange {
                field: "subscription_windows_ahead_max",
                value: u32::MAX.into(),
                min: 4,
                max: 8_640
            }
        ),
        other => panic!("expected UnusableRelay, got {other:?}"),
    }
    assert!(!error.is_connection_error(), "reconnecting to this relay cannot help");
    assert!(elapsed < FAIL_FAST, "took {elapsed:?}");
    assert!(after_hello.is_empty(), "the client sent {after_hello:02x?} to a relay it refused");
    let text = error.to_string();
    assert!(text.contains("subscription_windows_ahead_max = 4294967295") && text.contains("4..=8640"), "{text}");
}

#[test]
fn bloom_parameters_without_false_positives_are_refused() {
    let mut no_false_positives = honest();
    no_false_positives.bloom = BloomParams::new(65_536, 16).unwrap();
    let mut one_fingerprint = honest();
    one_fingerprint.policy.filter_fingerprints_max = 1;
    for reply in [no_false_positives, one_fingerprint] {
        let (m, k, n) = (reply.bloom.m_bits, reply.bloom.k, reply.policy.filter_fingerprints_max.min(60));
        let (error, elapsed, after_hello) = connect_to(reply);
        match error {
            SessionError::UnusableRelay {
                source: RelayParamsError::FalsePositiveRate { m_bits, k: got_k, fingerprints, rate, min, .. },
                ..
            } => {
                assert_eq!((m_bits, got_k, fingerprints), (m, k, n));
                assert!(rate < min, "rate {rate} should be below {min}");
            }
            other => panic!("expected a false-positive-rate refusal, got {other:?}"),
        }
        assert!(elapsed < FAIL_FAST, "took {elapsed:?}");
        assert!(after_hello.is_empty(), "the client sent {after_hello:02x?} to a relay it refused");
    }
}

/// Runs `tessera` with `args`; kills it after `limit` (a hang fails the test instead of blocking it).
fn tessera(args: &[&str], limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tessera");
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().expect("output"), started.elapsed())
}

#[test]
fn the_cli_fails_fast_naming_the_field_and_does_not_retry_with_follow() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, _) = home(tmp.path());
    let bob = Identity::generate(&mut OsRng);
    home.write_contacts(&[Contact::new("bob", *bob.public(), vec![]).unwrap()]).unwrap();
    let home_arg = home.path().to_str().unwrap();

    let mut reply = honest();
    reply.bloom = BloomParams::new(65_536, 16).unwrap();
    let (url, seen) = fake_relay(reply, 1);
    let (out, elapsed) = tessera(&["recv", "--home", home_arg, "--relay", &url], FAIL_FAST * 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && elapsed < FAIL_FAST, "status {:?} after {elapsed:?}: {stderr}", out.status);
    assert!(
        stderr.contains("bloom_m_bits = 65536") && stderr.contains("bloom_k = 16") && stderr.contains("0.001..=0.05"),
        "{stderr}"
    );
    assert!(seen.recv_timeout(FAIL_FAST).expect("connection ended").is_empty());

    // `recv --follow` reconnects after connection errors; a relay it refuses is not one: it exits.
    let mut reply = honest();
    reply.num_buckets = 4096;
    let (url, _seen) = fake_relay(reply, 3);
    let (out, elapsed) = tessera(&["recv", "--follow", "--home", home_arg, "--relay", &url], FAIL_FAST * 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && elapsed < FAIL_FAST, "status {:?} after {elapsed:?}: {stderr}", out.status);
    assert!(stderr.contains("num_buckets = 4096") && stderr.contains("1..=1024"), "{stderr}");
    assert!(!stderr.contains("retrying"), "{stderr}");
}
