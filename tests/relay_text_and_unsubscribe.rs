//! Hostile input against the real relay binary (issue 13, items 4 and 5):
//!
//! - **Text messages** (docs/PROTOCOL.md §2): a WebSocket text message — JSON, a PUBLISH whose bytes happen to
//!   be UTF-8, or one that is not UTF-8 — is answered `ERROR(BINARY_REQUIRED, detail = 1)` and closed with 1003,
//!   before or after HELLO, and its payload is never decoded (so it cannot skip the backpressure binary
//!   messages go through).
//! - **UNSUBSCRIBE scoping** (§4.7, §4.12): an UNSUBSCRIBE of a subscriber id not claimed on the connection is
//!   refused (NOT_CLAIMED, a protocol error) — it removes nobody's subscription and creates no state for random
//!   ids — and a SUBSCRIBE followed at once by an UNSUBSCRIBE of the same id is still answered.
//!
//! Each test opens connections, sends the attack, and reads what the relay answers (frames, close code,
//! `/metrics`); a relay that got it wrong times out on the expected event (bounded by `WAIT`).

mod relay_support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use relay_support::*;
use tessera::proto::frame::{Hello, Publish, Subscribe};
use tessera::proto::{
    encode_message, Codec, ErrorCode, Frame, Proof, ProofBatch, Role, SubscriberId, PROOF_LEN, PROTOCOL_VERSION,
};
use tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tungstenite::protocol::frame::Frame as WsFrame;
use tungstenite::{Message, WebSocket};

/// The ERROR a text message gets: `BINARY_REQUIRED`, detail = the WebSocket opcode of a text frame (1).
const BINARY_REQUIRED: ErrorCode = ErrorCode::BINARY_REQUIRED;
const TEXT_OPCODE: u32 = 1;
/// RFC 6455 close code "unsupported data".
const CLOSE_UNSUPPORTED_DATA: u16 = 1003;

fn sub(n: u8) -> SubscriberId {
    relay_support::subscriber(n)
}

/// A raw WebSocket connection, for sending what `Client` will not (text messages).
struct Raw {
    ws: WebSocket<TcpStream>,
    codec: Codec,
}

impl Raw {
    fn connect(relay: &Relay) -> Raw {
        let stream = TcpStream::connect(&relay.addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let (ws, _) = tungstenite::client(relay.url(), stream).expect("WebSocket handshake");
        Raw { ws, codec: Codec::default() }
    }

    fn hello(relay: &Relay) -> Raw {
        let mut raw = Self::connect(relay);
        let hello = Frame::Hello(Hello { version: PROTOCOL_VERSION, role: Role::Client, node_id: [0; 16] });
        raw.ws.send(Message::binary(encode_message(&[hello]).to_vec())).expect("send HELLO");
        match raw.ws.read().expect("HELLO_REPLY") {
            Message::Binary(bytes) => {
                let frames = raw.codec.decode_message(&bytes).expect("valid HELLO_REPLY");
                assert!(matches!(frames[..], [Frame::HelloReply(_)]), "{frames:?}");
            }
            other => panic!("expected HELLO_REPLY, got {other:?}"),
        }
        raw
    }

    /// Sends `payload` as one WebSocket text message, UTF-8 or not (the frame is built by hand).
    fn send_text(&mut self, payload: Vec<u8>) {
        let frame = WsFrame::message(payload, OpCode::Data(OpData::Text), true);
        self.ws.send(Message::Frame(frame)).expect("send text");
    }

    /// Everything the relay sends until it closes: its frames and the close code (`None`: the socket ended or
    /// `WAIT` passed without a close).
    fn until_close(&mut self) -> (Vec<Frame>, Option<u16>) {
        let mut frames = Vec::new();
        loop {
            match self.ws.read() {
                Ok(Message::Binary(bytes)) => frames.extend(self.codec.decode_message(&bytes).expect("valid message")),
                Ok(Message::Close(close)) => return (frames, close.map(|c| u16::from(c.code))),
                Ok(_) => {}
                Err(_) => return (frames, None),
            }
        }
    }
}

/// Asserts the relay's answer to a text message: exactly one ERROR(BINARY_REQUIRED, ref_seq 0, detail 1),
/// then close 1003.
fn assert_refused_as_text(raw: &mut Raw) {
    let (frames, close) = raw.until_close();
    let errors: Vec<_> = frames
        .iter()
        .map(|f| match f {
            Frame::Error(e) => (e.code, e.ref_seq, e.detail),
            other => panic!("only an ERROR may answer a text message, got {other:?} (all: {frames:?})"),
        })
        .collect();
    assert_eq!(errors, vec![(BINARY_REQUIRED, 0, TEXT_OPCODE)], "frames {frames:?}, close {close:?}");
    assert_eq!(close, Some(CLOSE_UNSUPPORTED_DATA), "frames {frames:?}");
}

/// A one-proof PUBLISH message whose every byte is ASCII (so valid UTF-8): its proof is invalid in three
/// ways (bucket, window, fingerprint), which a relay that decoded it would answer with ERRORs and an ACK.
fn ascii_publish(seq: u64) -> Vec<u8> {
    let mut proof = [b'A'; PROOF_LEN];
    proof[0] = 1; // version
    proof[1] = 0; // reserved
    proof[2..4].copy_from_slice(&32u16.to_be_bytes()); // bucket 32 (not the one 'A'×32 derives)
    proof[4..12].copy_from_slice(&[b' '; 8]); // window 0x2020…: misaligned
    let proof = Proof::from_slice(&proof).expect("structurally valid proof");
    let batch = ProofBatch::from_proofs([proof.view()]);
    let bytes = encode_message(&[Frame::Publish(Publish { seq, proofs: batch })]).to_vec();
    assert!(bytes.is_ascii(), "the PUBLISH must be valid UTF-8 to reach the relay as a text message");
    bytes
}

#[test]
fn a_json_text_message_gets_binary_required_and_close_1003_before_or_after_hello() {
    let relay = Relay::start(&["--shards", "2"]);
    // §2 used to say JSON is rejected as UnknownFrameType(0x7b); the relay answered detail 6 (finding G16).
    let mut after_hello = Raw::hello(&relay);
    after_hello.send_text(br#"{"type":"ping"}"#.to_vec());
    assert_refused_as_text(&mut after_hello);
    let mut before_hello = Raw::connect(&relay);
    before_hello.send_text(br#"{"type":"subscribe","subscriber_id":"x"}"#.to_vec());
    assert_refused_as_text(&mut before_hello);
    assert_eq!(relay.metric("tessera_frames_malformed_total", ""), 0, "a text payload is never decoded");
}

#[test]
fn a_publish_sent_as_text_is_never_decoded_and_others_keep_being_served() {
    let relay = Relay::start(&["--danger-exact-metrics", "--shards", "2"]);
    let w = current_window();
    let commit = commit_in_bucket(11, 0);
    let (mut subscriber, _) = Client::hello(&relay);
    subscriber.subscribe(sub(1), vec![entry(11, w - 10, w + 60, &[commit])]);

    // A text PUBLISH used to be handled without waiting for log room or yielding (driver/relay/connection.rs).
    let mut attacker = Raw::hello(&relay);
    attacker.send_text(ascii_publish(1));
    assert_refused_as_text(&mut attacker);
    assert_eq!(relay.metric("tessera_proofs_rejected_total", ""), 0, "the text PUBLISH's proof was never looked at");

    let (mut publisher, _) = Client::hello(&relay);
    let p = proof(&commit, w, 0x42);
    let seq = publisher.publish(std::slice::from_ref(&p));
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
    assert_eq!(&subscriber.recv_proofs(sub(1), 1)[0][..], &p.as_bytes()[..]);
}

#[test]
fn a_text_message_that_is_not_utf8_gets_the_same_answer() {
    // Finding G26: a non-UTF-8 text message was closed with 1000 and no ERROR.
    let relay = Relay::start(&["--danger-exact-metrics", "--shards", "1"]);
    let w = current_window();
    let p = proof(&commit_in_bucket(3, 0), w, 0xFF);
    let batch = ProofBatch::from_proofs([p.view()]);
    let publish = encode_message(&[Frame::Publish(Publish { seq: 1, proofs: batch })]).to_vec();
    assert!(std::str::from_utf8(&publish).is_err(), "0xFF ciphertext is not UTF-8");
    let mut raw = Raw::hello(&relay);
    raw.send_text(publish);
    assert_refused_as_text(&mut raw);
    assert_eq!(relay.metric("tessera_proofs_accepted_client_total", ""), 0);
}

#[test]
fn unsubscribe_of_an_id_attached_to_another_connection_is_refused() {
    let relay = Relay::start(&["--shards", "2"]);
    let w = current_window();
    let commit = commit_in_bucket(40, 0);
    let (mut owner, _) = Client::hello(&relay);
    owner.subscribe(sub(2), vec![entry(40, w - 10, w + 60, &[commit])]);

    // Another connection that learned the id tries to unsubscribe it: it never claimed it (it cannot), so the
    // relay refuses (NOT_CLAIMED). The FETCH of its own id after it in the same message is answered only once
    // every shard handled what came before (frames in order, one channel per shard pair).
    let (mut other, _) = Client::hello(&relay);
    let claim = other.claim_frame(sub(3));
    other.send(&[
        Frame::Unsubscribe { subscriber: sub(2) },
        Frame::Claim(claim),
        Frame::Fetch { subscriber: sub(3), cursor: 0, proofs_max: 1 },
    ]);
    match other.recv_until(|f| matches!(f, Frame::Error(_))) {
        Frame::Error(e) => assert_eq!((e.code, e.detail), (ErrorCode::NOT_CLAIMED, 0x22)),
        _ => unreachable!(),
    }
    other.recv_until(|f| matches!(f, Frame::FetchReply { .. }));

    let (mut publisher, _) = Client::hello(&relay);
    let p = proof(&commit, w, 0x24);
    let seq = publisher.publish(std::slice::from_ref(&p));
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
    assert_eq!(&owner.recv_proofs(sub(2), 1)[0][..], &p.as_bytes()[..], "the owner's subscription is intact");
}

#[test]
fn subscribe_then_unsubscribe_in_one_message_is_answered_and_removes_the_entries() {
    let relay = Relay::start(&["--shards", "2"]);
    let w = current_window();
    let commit = commit_in_bucket(50, 0);
    let (mut client, params) = Client::hello(&relay);
    // Each pair used to leave a SUBSCRIBE waiting forever on the connection (no SUBSCRIBED, state leaked).
    // Claims last as long as the connection, at most `subscribers_per_connection_max` of them.
    let max = params.limits.subscribers_per_connection_max as u8;
    for n in 0..max {
        let subscribe = Subscribe { subscriber: sub(100 + n), entries: vec![entry(50, w - 10, w + 60, &[commit])] };
        let claim = Frame::Claim(client.claim_frame(sub(100 + n)));
        client.send(&[claim, Frame::Subscribe(subscribe), Frame::Unsubscribe { subscriber: sub(100 + n) }]);
        match client.recv_until(|f| matches!(f, Frame::Subscribed { .. } | Frame::Error(_))) {
            Frame::Subscribed { subscriber, entries } => assert_eq!((subscriber, entries), (sub(100 + n), 1)),
            other => panic!("expected SUBSCRIBED, got {other:?}"),
        }
    }
    // Every id was detached again: the full set fits under the cap once more (the claims stay).
    for n in 1..max {
        let subscribe = Subscribe { subscriber: sub(100 + n), entries: vec![entry(50, w - 10, w + 60, &[])] };
        client.send(&[Frame::Subscribe(subscribe)]);
        match client.recv_until(|f| matches!(f, Frame::Subscribed { .. } | Frame::Error(_))) {
            Frame::Subscribed { entries, .. } => assert_eq!(entries, 1),
            other => panic!("expected SUBSCRIBED, got {other:?}"),
        }
    }
    // A 65th claim is over the limit: refused, not a protocol error.
    let claim = Frame::Claim(client.claim_frame(sub(1)));
    client.send(&[claim]);
    assert!(matches!(client.recv_one(), Frame::Error(e) if e.code == ErrorCode::TOO_MANY_SUBSCRIBERS));
    // The unsubscribed ids matched nothing: a proof for their filter is recorded for none of them.
    let (mut publisher, _) = Client::hello(&relay);
    let seq = publisher.publish(&[proof(&commit, w, 0x33)]);
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
    client.send(&[Frame::Fetch { subscriber: sub(100), cursor: 0, proofs_max: 16 }]);
    let proofs = match client.recv_until(|f| matches!(f, Frame::FetchReply { .. } | Frame::Error(_))) {
        Frame::FetchReply { proofs, .. } => proofs,
        other => panic!("expected FETCH_REPLY, got {other:?}"),
    };
    assert!(proofs.is_empty(), "an unsubscribed id got {} proofs", proofs.len());
}

#[test]
fn unsubscribes_of_random_ids_create_no_state_and_spend_the_error_budget() {
    let relay = Relay::start(&["--shards", "2"]);
    let (mut client, params) = Client::hello(&relay);
    let per_message = params.limits.frames_per_message_max as usize;
    // Ids this connection never claimed: each UNSUBSCRIBE is refused (NOT_CLAIMED, a protocol error) before
    // any shard hears of it, and the connection is closed once the budget is spent (1008).
    let frames: Vec<Frame> = (0..per_message)
        .map(|i| {
            let mut id = [0xA5; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            Frame::Unsubscribe { subscriber: SubscriberId(id) }
        })
        .collect();
    client.send(&frames);
    let budget = params.policy.protocol_errors_max as usize;
    let mut errors = Vec::new();
    while errors.len() < budget {
        // Several ERRORs may share one message.
        errors.extend(client.recv().into_iter().map(|f| match f {
            Frame::Error(e) => (e.code, e.detail),
            other => panic!("expected ERROR(NOT_CLAIMED), got {other:?}"),
        }));
    }
    assert_eq!(errors, vec![(ErrorCode::NOT_CLAIMED, 0x22); budget]);
    assert_eq!(client.recv_close(), Some(1008));
    assert_eq!(relay.wait_metric("tessera_protocol_errors_total", "", budget as u64), budget as u64);
    // The log gauges are published every 100 ms tick; watch a few ticks.
    let deadline = Instant::now() + Duration::from_millis(400);
    while Instant::now() < deadline {
        assert_eq!(relay.metric("tessera_log_subscribers", ""), 0, "no state for unclaimed ids");
        std::thread::sleep(Duration::from_millis(50));
    }
}
