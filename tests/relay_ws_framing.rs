//! Invalid WebSocket framing after HELLO (docs/PROTOCOL.md §2 "Invalid WebSocket framing"): an unmasked frame,
//! an RSV bit without an extension, a reserved opcode, an oversized control frame and a continuation with no
//! message to continue each end the connection with close code 1002 (protocol error) and no ERROR frame. Raw
//! sockets: no WebSocket library will send these frames.

mod relay_support;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};

use bytes::Bytes;
use relay_support::*;
use tessera::driver::loadgen::hostile::raw_ws::{binary_frame, connect_from, recv, upgrade, Message};
use tessera::proto::{encode_message, Codec, Frame, Hello, Role, PROTOCOL_VERSION};

/// RFC 6455 close code "protocol error".
const CLOSE_PROTOCOL_ERROR: u16 = 1002;

/// An upgraded connection past HELLO.
fn hello(relay: &Relay) -> TcpStream {
    let addr: SocketAddr = relay.addr.parse().unwrap();
    let mut s = connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    upgrade(&mut s, addr).unwrap();
    let hello = Frame::Hello(Hello { version: PROTOCOL_VERSION, role: Role::Client, node_id: [0; 16] });
    s.write_all(&binary_frame(&encode_message(&[hello]))).unwrap();
    match recv(&mut s, 1 << 20).unwrap() {
        Message::Binary(payload) => {
            let frames = Codec::default().decode_message(&Bytes::from(payload)).unwrap();
            assert!(matches!(frames[0], Frame::HelloReply(_)), "{frames:?}");
        }
        other => panic!("expected HELLO_REPLY, got {other:?}"),
    }
    s
}

/// Sends `raw` and returns the close code the relay answers with, asserting no binary message (ERROR) first.
fn close_code_after(relay: &Relay, raw: &[u8]) -> Option<u16> {
    let mut s = hello(relay);
    s.write_all(raw).unwrap();
    loop {
        match recv(&mut s, 1 << 20) {
            Ok(Message::Close(code)) => return code,
            Ok(Message::Binary(payload)) => panic!("no ERROR frame is sent for bad framing, got {payload:?}"),
            Ok(Message::Other) => {}
            Err(e) => panic!("the connection ended without a close frame: {e}"),
        }
    }
}

#[test]
fn invalid_framing_is_closed_with_1002() {
    let relay = Relay::start(&["--shards", "1"]);
    let cases: [(&str, Vec<u8>); 5] = [
        ("unmasked binary frame", vec![0x82, 0x03, 1, 2, 3]),
        ("RSV1 set without an extension", vec![0xC2, 0x83, 0, 0, 0, 0, 1, 2, 3]),
        ("reserved opcode 0x3", vec![0x83, 0x83, 0, 0, 0, 0, 1, 2, 3]),
        ("ping with a 200-byte payload", [vec![0x89, 0x80 | 126, 0, 200, 0, 0, 0, 0], vec![0; 200]].concat()),
        ("continuation with no message", vec![0x80, 0x83, 0, 0, 0, 0, 1, 2, 3]),
    ];
    for (what, raw) in cases {
        assert_eq!(close_code_after(&relay, &raw), Some(CLOSE_PROTOCOL_ERROR), "{what}");
    }
    // The relay is fine afterwards.
    drop(hello(&relay));
}
