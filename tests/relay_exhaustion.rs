//! Connection exhaustion after the handshake, against the real binary (issue 13, item 2): an established
//! connection that sends nothing is closed after `idle_timeout_ms` (a live client that only listens is kept:
//! it answers the relay's ping), one source address cannot hold more than its limit of sockets, an HTTP
//! client that never reads its `/metrics` response holds its descriptor for `http_timeout_ms` at most, and a
//! WebSocket frame header declaring a large length costs no memory the client did not send.
//!
//! ```text
//! idle:    silent ─ idle/2 ─▶ ping (unanswered) ─ idle ─▶ close 1000; listener answers pings; publisher publishes
//! per-IP:  3 sockets from 127.0.0.1 (limit 3) ─▶ the 4th is closed at once ─▶ one leaves ─▶ a client gets in
//! HTTP:    5 × GET /metrics with a 4 KiB receive buffer, never read ─▶ released within the timeout
//! frames:  header declaring 2 MiB ─▶ close 1009; 100 × header declaring 1 MiB + 100 bytes ─▶ RSS per connection
//! ```

mod relay_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use relay_support::*;
use tessera::proto::Frame;
use tungstenite::Message;

/// The client is served: one PUBLISH is acknowledged.
fn assert_served(client: &mut Client, salt: u32) {
    let seq = client.publish(&[proof(&commit_in_bucket(4, salt), current_window(), 1)]);
    assert_eq!(client.recv_until(|f| matches!(f, Frame::Ack { .. } | Frame::Error(_))), Frame::Ack { seq });
}

/// Whether the relay closes `stream` at once (EOF or reset within 2 s) without answering.
fn closed_at_once(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

/// Body of `GET path`, or "" when the relay refuses the socket.
fn try_http_get(relay: &Relay, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(&relay.metrics_addr) else { return String::new() };
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let _ = write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[test]
fn an_established_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    // Long enough that a loaded test machine answers the ping (sent after IDLE / 2) in time.
    const IDLE: Duration = Duration::from_millis(2000);
    let relay = Relay::start(&["--shards", "1", "--idle-timeout-ms", "2000"]);
    let (mut silent, _) = Client::hello(&relay);
    let (mut listener, _) = Client::hello(&relay);
    let (mut publisher, _) = Client::hello(&relay);
    let span = IDLE * 5 / 2;
    // The listener only reads: its WebSocket library answers the relay's pings, which is activity.
    let listening = std::thread::spawn(move || {
        listener.socket().set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let (started, mut pings) = (Instant::now(), 0);
        while started.elapsed() < span {
            match listener.ws_mut().read() {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(Message::Close(frame)) => panic!("the listening client was closed: {frame:?}"),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => panic!("the listening client lost its connection: {e}"),
            }
        }
        (listener, pings)
    });
    let started = Instant::now();
    let mut salt = 0;
    while started.elapsed() < span {
        salt += 1;
        assert_served(&mut publisher, salt);
        std::thread::sleep(IDLE / 4);
    }
    let (mut listener, pings) = listening.join().expect("listener thread");
    assert!(pings >= 1, "the relay never pinged the listening client");
    // The silent client never read, so it never answered the ping: closed like a peer that went away (1000;
    // the socket may also be gone already when the unanswered ping is read).
    let code = silent.recv_close();
    assert!(matches!(code, Some(1000) | None), "close code {code:?}");
    assert_eq!(relay.wait_metric("tessera_idle_timeouts_total", "", 1), 1, "only the silent one timed out");
    listener.socket().set_read_timeout(Some(WAIT)).unwrap();
    assert_served(&mut listener, 1_000);
    assert_served(&mut publisher, 1_001);
}

#[test]
fn one_source_address_holds_at_most_its_limit_of_sockets() {
    let relay = Relay::start(&["--shards", "1", "--connections-per-loopback-max", "3"]);
    let (mut first, _) = Client::hello(&relay);
    let (_second, _) = Client::hello(&relay);
    // A socket still in its handshake counts too.
    let in_handshake = TcpStream::connect(&relay.addr).expect("connect");
    let started = Instant::now();
    let mut fourth = TcpStream::connect(&relay.addr).expect("connect");
    assert!(closed_at_once(&mut fourth), "the fourth socket from 127.0.0.1 was not closed at accept");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_served(&mut first, 1);
    drop(in_handshake);
    // The place comes back once the relay sees the socket go (its handshake task ends on EOF).
    let deadline = Instant::now() + WAIT;
    let refused = loop {
        let text = try_http_get(&relay, "/metrics");
        if let Some(line) = text.lines().find(|l| l.starts_with("tessera_connections_per_ip_refused_total{")) {
            break line.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()).unwrap();
        }
        assert!(Instant::now() < deadline, "no place came back after a socket left");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(refused >= 1, "tessera_connections_per_ip_refused_total = {refused}");
    let (mut third, _) = Client::hello(&relay);
    assert_served(&mut third, 2);
}

#[test]
fn an_http_client_that_never_reads_its_response_holds_its_descriptor_for_the_http_timeout_at_most() {
    const TIMEOUT: Duration = Duration::from_millis(1500);
    const CLIENTS: usize = 5;
    // /metrics once held a gauge per bucket (~280 KB at 4,096 buckets) and a client that never read it pinned a
    // task until http_timeout_ms cut it (connection::answer). Nothing is labelled by bucket any more: the answer
    // fits the relay's HTTP send buffer (32 KiB, doubled by Linux) and is handed to the kernel at once, so the
    // descriptors come back without waiting for the timeout; a larger answer would still be cut at it.
    let relay = Relay::start(&["--shards", "1", "--num-buckets", "4096", "--http-timeout-ms", "1500"]);
    let size = relay.http_get("/metrics").len();
    assert!(size < 64 * 1024, "/metrics is {size} bytes: more than the send buffer takes at once");
    std::thread::sleep(Duration::from_millis(200)); // that socket is gone
    let before = relay.open_fds();
    let addr: std::net::SocketAddr = relay.metrics_addr.parse().unwrap();
    let stalled: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            socket.connect(&addr.into()).unwrap();
            let mut stream: TcpStream = socket.into();
            write!(stream, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
            stream
        })
        .collect();
    let opened = Instant::now();
    let deadline = opened + TIMEOUT + WAIT / 2;
    while relay.open_fds() > before {
        assert!(Instant::now() < deadline, "descriptors still held {:?} after the requests", opened.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(opened.elapsed() < TIMEOUT + WAIT / 2);
    drop(stalled);
}

/// A masked binary frame header declaring `len` payload bytes (64-bit length form: 14 bytes).
fn frame_header(len: u64) -> Vec<u8> {
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]); // masking key
    header
}

#[test]
fn a_frame_header_declaring_a_large_length_costs_only_the_bytes_sent() {
    const CONNECTIONS: usize = 100;
    let relay = Relay::start(&["--shards", "1", "--idle-timeout-ms", "5000"]);
    // Over message_bytes_max (1 MiB): refused from the header alone.
    let (mut over, _) = Client::hello(&relay);
    let mut raw = over.socket().try_clone().unwrap();
    raw.write_all(&frame_header(2 << 20)).unwrap();
    raw.write_all(&[0u8; 100]).unwrap();
    assert_eq!(over.recv_close(), Some(1009));
    // At the limit: accepted as a header, then never completed. The relay must not hold 1 MiB for each.
    let mut clients: Vec<Client> = (0..CONNECTIONS).map(|_| Client::hello(&relay).0).collect();
    std::thread::sleep(Duration::from_millis(300));
    let idle_kib = relay.rss_kib();
    for client in &mut clients {
        let mut raw = client.socket().try_clone().unwrap();
        raw.write_all(&frame_header(1 << 20)).unwrap();
        raw.write_all(&[0u8; 100]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let declared_kib = relay.rss_kib();
    let per_connection_kib = declared_kib.saturating_sub(idle_kib) / CONNECTIONS as u64;
    println!(
        "relay RSS: {idle_kib} KiB with {CONNECTIONS} idle connections, {declared_kib} KiB once each declared a 1 MiB \
         frame and sent 100 bytes: {per_connection_kib} KiB per connection"
    );
    assert!(per_connection_kib < 128, "{per_connection_kib} KiB per connection for 100 bytes sent");
    // Such a frame never completes, so nothing is received: the idle timeout ends them.
    assert_eq!(relay.wait_metric("tessera_idle_timeouts_total", "", CONNECTIONS as u64), CONNECTIONS as u64);
    let deadline = Instant::now() + WAIT;
    while relay.metric("tessera_connections_open", "") > 0 {
        assert!(Instant::now() < deadline, "the timed-out connections were not closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut client, _) = Client::hello(&relay);
    assert_served(&mut client, 1);
}
