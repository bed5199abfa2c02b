//! Protocol version 2 against the real relay binary (issue 13, item 9; docs/PROTOCOL.md §1, §4.2, §5, §8):
//!
//! - HELLO_REPLY announces what a client needs to predict the relay: shards, clock skew, the slow-consumer
//!   grace, the HELLO and idle timeouts, the protocol-error budget and the fingerprints a filter may hold —
//!   the values the relay was started with, not defaults;
//! - a HELLO of version 1 or 2 is refused with `ERROR(UNSUPPORTED_VERSION, detail = 3)` and close 1002 (an older
//!   client could not decode a version-3 HELLO_REPLY, nor claim its subscriber ids);
//! - every connection gets an `auth_nonce` of its own (version 3, §4.2);
//! - the frame header's type byte is checked before its length (finding G16): JSON sent as a *binary* message
//!   is `ERROR(MALFORMED, detail = 7)` (UnknownFrameType), not 6 (FrameTooLarge), and the connection stays open.
//!
//! Each test reads what the relay answers; a relay that got it wrong fails an assertion or times out (`WAIT`).

mod relay_support;

use relay_support::*;
use tessera::proto::frame::Hello;
use tessera::proto::{ErrorCode, Frame, Role, FILTER_FINGERPRINTS_MAX, PROTOCOL_VERSION};

/// RFC 6455 close code "protocol error".
const CLOSE_PROTOCOL_ERROR: u16 = 1002;

#[test]
fn hello_reply_announces_the_relays_configured_policy() {
    let relay = Relay::start(&[
        "--shards",
        "2",
        "--clock-skew-s",
        "3",
        "--slow-consumer-grace-ms",
        "1500",
        "--hello-timeout-ms",
        "4000",
        "--idle-timeout-ms",
        "45000",
    ]);
    let (client, params) = Client::hello(&relay);
    assert_eq!(params.version, PROTOCOL_VERSION);
    assert_eq!(PROTOCOL_VERSION, 3);
    let p = params.policy;
    assert_eq!(p.shards, 2);
    assert_eq!(p.clock_skew_s, 3);
    assert_eq!(p.slow_consumer_grace_ms, 1500);
    assert_eq!(p.hello_timeout_ms, 4000);
    assert_eq!(p.filter_fingerprints_max, FILTER_FINGERPRINTS_MAX);
    assert_eq!(p.protocol_errors_max, 8);
    assert_eq!(p.idle_timeout_ms, 45_000);
    // A fresh CLAIM nonce per connection: never the same twice, never the template's zeros.
    let nonces: std::collections::HashSet<[u8; 16]> =
        (0..8).map(|_| Client::hello(&relay).1.auth_nonce).chain([params.auth_nonce]).collect();
    assert_eq!(nonces.len(), 9);
    assert!(!nonces.contains(&[0; 16]));
    client.close();
}

#[test]
fn an_older_hello_is_refused_with_the_version_to_speak() {
    let relay = Relay::start(&["--shards", "1"]);
    for version in [1, 2] {
        let mut old = Client::connect(&relay);
        old.send(&[Frame::Hello(Hello { version, role: Role::Client, node_id: [0; 16] })]);
        match old.recv_one() {
            Frame::Error(e) => {
                assert_eq!((e.code, e.ref_seq, e.detail), (ErrorCode::UNSUPPORTED_VERSION, 0, 3), "{e:?}");
            }
            other => panic!("version {version}: expected ERROR(UNSUPPORTED_VERSION), got {other:?}"),
        }
        assert_eq!(old.recv_close(), Some(CLOSE_PROTOCOL_ERROR));
    }
    // A HELLO of a future version gets the version the relay speaks.
    let mut future = Client::connect(&relay);
    future.send(&[Frame::Hello(Hello { version: u16::MAX, role: Role::Client, node_id: [0; 16] })]);
    match future.recv_one() {
        Frame::HelloReply(params) => assert_eq!(params.version, PROTOCOL_VERSION),
        other => panic!("expected HELLO_REPLY, got {other:?}"),
    }
}

#[test]
fn json_in_a_binary_message_is_an_unknown_frame_type_and_the_connection_stays_open() {
    let relay = Relay::start(&["--shards", "1"]);
    let (mut client, _) = Client::hello(&relay);
    let malformed = |client: &mut Client, bytes: &[u8]| match client.recv_one() {
        Frame::Error(e) => {
            assert_eq!(e.code, ErrorCode::MALFORMED, "{bytes:02x?}: {e:?}");
            e.detail
        }
        other => panic!("{bytes:02x?}: expected ERROR(MALFORMED), got {other:?}"),
    };
    // Bytes 1..5 of `{"type":"ping"}` read as a body length are 0x22747970 (far over 1 MiB): the relay used to
    // answer FrameTooLarge (6), although the type byte 0x7B had already said this is no frame.
    for bytes in [&br#"{"type":"ping"}"#[..], &[0x55, 0xFF, 0xFF, 0xFF, 0xFF][..], &b"{}"[..]] {
        client.send_raw(bytes.to_vec());
        assert_eq!(malformed(&mut client, bytes), 7, "UnknownFrameType for {bytes:02x?}");
    }
    // A known type with an oversized length is still FrameTooLarge (6).
    let fetch_too_large = [0x31, 0xFF, 0xFF, 0xFF, 0xFF];
    client.send_raw(fetch_too_large.to_vec());
    assert_eq!(malformed(&mut client, &fetch_too_large), 6);
    // Four protocol errors of the 8 allowed: the connection still serves.
    let (proofs, _, more) = client.fetch(relay_support::subscriber(3), 0, 16);
    assert!(proofs.is_empty() && !more);
}
