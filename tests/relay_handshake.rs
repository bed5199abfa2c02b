//! Connection exhaustion before HELLO against the real binary (issue 13, item 2, part): upgraded WebSocket
//! connections that never send HELLO are closed after `hello_timeout_ms` and give their place among
//! `connections_max` back, and sockets beyond `handshakes_max` still in their HTTP request or upgrade are
//! closed at once.
//!
//! ```text
//! 4 silent upgraded clients + 1 greeted = connections_max ─▶ a 6th is refused (1013)
//!   ─ hello_timeout_ms ─▶ the 4 silent ones are closed, the greeted one is served, a new client gets in
//! 4 idle TCP sockets (no request head) = handshakes_max ─▶ a 5th socket is closed at once
//!   ─ the 4 go away ─▶ WebSocket clients get in again; tessera_handshakes_refused_total counts the 5th
//! ```

mod relay_support;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use relay_support::*;
use tessera::proto::{ErrorCode, Frame};

/// The HELLO deadline the tests configure.
const HELLO_TIMEOUT: Duration = Duration::from_millis(600);

/// The client is served: one PUBLISH is acknowledged.
fn assert_served(client: &mut Client, salt: u32) {
    let seq = client.publish(&[proof(&commit_in_bucket(4, salt), current_window(), 1)]);
    assert_eq!(client.recv_until(|f| matches!(f, Frame::Ack { .. } | Frame::Error(_))), Frame::Ack { seq });
}

#[test]
fn upgraded_connections_without_hello_are_closed_after_the_hello_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "[limits]\nconnections_max = 5\n").unwrap();
    let timeout_ms = HELLO_TIMEOUT.as_millis().to_string();
    let relay =
        Relay::start(&["--shards", "2", "--config", config.to_str().unwrap(), "--hello-timeout-ms", &timeout_ms]);
    let (mut greeted, _) = Client::hello(&relay);
    let opened = Instant::now();
    let mut silent: Vec<Client> = (0..4).map(|_| Client::connect(&relay)).collect();
    assert_eq!(relay.wait_metric("tessera_connections_open", "", 5), 5, "the relay is full");
    let mut refused = Client::connect(&relay);
    match refused.recv_one() {
        Frame::Error(e) => assert_eq!(e.code, ErrorCode::TOO_MANY_CONNECTIONS),
        other => panic!("expected TOO_MANY_CONNECTIONS, got {other:?}"),
    }
    for client in &mut silent {
        // The peer-closed path: the writer sends a normal closure (docs/PROTOCOL.md §5).
        assert_eq!(client.recv_close(), Some(1000));
    }
    let closed_after = opened.elapsed();
    assert!(closed_after >= HELLO_TIMEOUT / 2, "closed before the deadline: {closed_after:?}");
    assert!(closed_after < HELLO_TIMEOUT + Duration::from_secs(5), "closed late: {closed_after:?}");
    assert_eq!(relay.wait_metric("tessera_hello_timeouts_total", "", 4), 4);
    // The connection that said HELLO was not touched, and the places came back.
    assert!(HELLO_TIMEOUT < opened.elapsed());
    assert_served(&mut greeted, 1);
    assert_eq!(relay.wait_metric("tessera_connections_open", "", 1), 1);
    let (mut newcomer, params) = Client::hello(&relay);
    assert_eq!(params.window_s, 10);
    assert_served(&mut newcomer, 2);
}

#[test]
fn sockets_beyond_the_handshake_cap_are_closed_at_once() {
    // One shard: its accept loop takes the sockets in order, so the fifth finds four still in their handshake.
    let relay = Relay::start(&["--shards", "1", "--handshakes-max", "4"]);
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&relay.addr).expect("connect")).collect();
    let mut fifth = TcpStream::connect(&relay.addr).expect("connect");
    fifth.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let read = fifth.read(&mut byte);
    assert!(
        matches!(read, Ok(0)) || read.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the fifth socket was not closed at once: {read:?} after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(2), "closed only after {:?}", started.elapsed());
    // The idle sockets go away; their places come back (their tasks end when the relay reads EOF).
    drop(idle);
    let deadline = Instant::now() + WAIT;
    loop {
        // A plain GET on the client port is answered (404: it serves WebSocket only) once a place is free.
        if let Ok(mut stream) = TcpStream::connect(&relay.addr) {
            use std::io::Write as _;
            stream.set_read_timeout(Some(WAIT)).unwrap();
            let _ = write!(stream, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            if text.starts_with("HTTP/1.1 404") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the relay did not serve again after the idle sockets left");
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = relay.metric("tessera_handshakes_refused_total", "");
    assert!(refused >= 1, "tessera_handshakes_refused_total = {refused}");
    let (mut client, _) = Client::hello(&relay);
    assert_served(&mut client, 3);
}
