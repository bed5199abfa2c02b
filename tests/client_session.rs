//! The client driver's typed errors against a scripted relay: a refused proof with its ERROR code, a
//! PUBLISH refused whole, an ACK that never comes (timeout), and the send counters on disk before the
//! PUBLISH leaves. The scripted relay is a blocking WebSocket server on a thread, one connection.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use rand_core::OsRng;
use tessera::client::{Contact, Home, Identity, KeyFile, PersistedState};
use tessera::driver::client::session::{run_local, Session, SessionError, SessionOptions};
use tessera::proto::frame::{ErrorFrame, Publish};
use tessera::proto::{encode_message, Codec, ErrorCode, Frame, RelayParams};
use tungstenite::Message;

fn params() -> RelayParams {
    RelayParams::defaults([7; 16])
}

/// A PUBLISH as the scripted relay saw it: seq, proofs, and state.json at that moment.
type Seen = (u64, usize, PersistedState);

/// Serves one connection: HELLO_REPLY, then `reply(publish, state.json on disk at that moment)` for each
/// PUBLISH. Returns the URL and a channel of what the relay saw.
fn scripted_relay(home: PathBuf, reply: fn(&Publish) -> Vec<Frame>) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut ws = tungstenite::accept(stream).unwrap();
        let codec = Codec::default();
        while let Ok(message) = ws.read() {
            let Message::Binary(bytes) = message else { continue };
            for frame in codec.decode_message(&Bytes::from(bytes.to_vec())).unwrap() {
                let out = match frame {
                    Frame::Hello(_) => vec![Frame::HelloReply(params())],
                    Frame::Publish(p) => {
                        let state = std::fs::read_to_string(home.join("state.json")).unwrap();
                        let _ = tx.send((p.seq, p.proofs.len(), serde_json::from_str(&state).unwrap()));
                        reply(&p)
                    }
                    _ => vec![],
                };
                if !out.is_empty() && ws.send(Message::Binary(encode_message(&out))).is_err() {
                    return;
                }
            }
        }
    });
    (url, rx)
}

/// A key directory for alice with bob enrolled.
fn alice_home(dir: &Path) -> (Home, Identity) {
    let home = Home::create(&dir.join("alice")).unwrap();
    let identity = Identity::generate(&mut OsRng);
    home.write_identity(&KeyFile::plain(&identity), false).unwrap();
    let bob = Identity::generate(&mut OsRng);
    home.write_contacts(&[Contact::new("bob", *bob.public(), vec![]).unwrap()]).unwrap();
    (home, identity)
}

/// Sends `text` to bob through the scripted relay; returns the outcome and what the relay saw.
fn send_through(reply: fn(&Publish) -> Vec<Frame>, text: String) -> (Result<usize, SessionError>, Vec<Seen>) {
    let tmp = tempfile::tempdir().unwrap();
    let (home, identity) = alice_home(tmp.path());
    let (url, seen) = scripted_relay(home.path().to_owned(), reply);
    // Without client cover: these tests pin when and how a send publishes (tests/client_cover.rs has cover).
    let options =
        SessionOptions { reply_timeout: Duration::from_millis(300), client_cover: false, ..SessionOptions::default() };
    let result = run_local(move || async move {
        let mut session = Session::connect(&url, home, identity, options).await?;
        session.send("bob", &text).await.map(|sent| sent.proofs)
    })
    .unwrap();
    (result, seen.try_iter().collect())
}

fn error(code: ErrorCode, ref_seq: u64, detail: u32) -> Frame {
    Frame::Error(ErrorFrame { code, ref_seq, detail, text: format!("scripted {code}") })
}

#[test]
fn acknowledged_send_persists_counters_before_publishing() {
    let (result, seen) = send_through(|p| vec![Frame::Ack { seq: p.seq }], "hello".into());
    assert_eq!(result.unwrap(), 1);
    assert_eq!(seen.len(), 1);
    let (seq, proofs, state) = &seen[0];
    assert_eq!((*seq, *proofs), (1, 1));
    // When the PUBLISH arrived, state.json already held the advanced counter.
    let counter = state.contacts.values().next().expect("bob's counter is saved");
    assert_eq!(counter.send_next_seq, 1);
    assert_eq!(counter.send_window_s % 10, 0);
}

#[test]
fn a_refused_proof_is_a_typed_error_with_its_code() {
    // Part 1 of 2 refused, the batch still settled by the ACK.
    let (result, seen) = send_through(
        |p| vec![error(ErrorCode::PROOF_WINDOW_STALE, p.seq, 1), Frame::Ack { seq: p.seq }],
        "x".repeat(500),
    );
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, 2);
    match result {
        Err(SessionError::Refused { error, refused, proofs }) => {
            assert_eq!(
                (error.code, error.ref_seq, error.detail, refused, proofs),
                (ErrorCode::PROOF_WINDOW_STALE, 1, 1, 1, 2)
            );
        }
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[test]
fn a_publish_refused_whole_fails_without_waiting_for_an_ack() {
    let (result, _) = send_through(|p| vec![error(ErrorCode::STORAGE, p.seq, 0)], "hello".into());
    let err = result.unwrap_err();
    assert!(
        matches!(&err, SessionError::Refused { error, refused: 1, proofs: 1 } if error.code == ErrorCode::STORAGE),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "the relay refused 1 of 1 proofs: STORAGE (scripted STORAGE)");
}

#[test]
fn a_missing_ack_times_out() {
    let (result, seen) = send_through(|_| vec![], "hello".into());
    assert_eq!(seen.len(), 1);
    let err = result.unwrap_err();
    assert!(matches!(err, SessionError::Timeout { what: "ACK", after_ms: 300 }), "{err:?}");
    assert!(err.is_connection_error());
}
