//! What TLS adds to the relay's CPU per proof, without sockets: the relay's rustls `ServerConnection` (the
//! provider and configuration `tessera relay --tls-cert` uses) talking to a client `ClientConnection` in memory.
//!
//! ```text
//! inbound:  client seals a PUBLISH of 64 proofs (untimed) ─▶ relay: read_tls ─▶ process_new_packets ─▶ read
//!           (timed; per proof = per message ÷ 64)
//! outbound: relay: write(DELIVER of 1 proof) ─▶ write_tls into a buffer (timed; what the relay does per delivery)
//! ```
//! The end-to-end runs (`tessera perf e2e --tls-compare`) measure the same thing through the whole relay, but on a
//! 2-core machine shared with the load generator their run-to-run spread (±3 µs per proof) is larger than the
//! target (TLS adds ≤ 1 µs per proof); this bench isolates the record layer, in thread CPU time. Sizes are the
//! wire's: a PUBLISH of 64 proofs is 10 + 64 × 564 bytes plus a 10-byte WebSocket header, a DELIVER of one
//! proof 18 + 564 plus 4. Run with `cargo bench --bench tls -- --warm-up-time 1 --measurement-time 3`; figures
//! in docs/PERFORMANCE.md §TLS.

use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rustls::{ClientConnection, ServerConnection};

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::{cpu_time, ThreadCpuTime};
use tessera::driver::tls::{client_config, self_signed, server_config, TlsClientOptions};

/// Proofs per PUBLISH in the inbound case (the load generator's batch).
const PROOFS_PER_PUBLISH: usize = 64;
/// Bytes of a PUBLISH of `PROOFS_PER_PUBLISH` proofs as a WebSocket message (header included).
const PUBLISH_BYTES: usize = 10 + PROOFS_PER_PUBLISH * 564 + 10;
/// Bytes of a DELIVER of one proof as a WebSocket message (header included).
const DELIVER_BYTES: usize = 18 + 564 + 4;

/// A handshaken pair: (relay side, client side).
fn pair() -> (ServerConnection, ClientConnection) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert_pem, key_pem, pin) = self_signed("127.0.0.1").expect("self-signed pair");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, cert_pem).expect("write cert");
    std::fs::write(&key, key_pem).expect("write key");
    let server_cfg = server_config(&cert, &key).expect("server config");
    let client_cfg = client_config(&TlsClientOptions { ca_file: None, pin: Some(pin) }).expect("client config");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    let mut server = ServerConnection::new(server_cfg).expect("server connection");
    let mut client = ClientConnection::new(Arc::clone(&client_cfg), name).expect("client connection");
    while server.is_handshaking() || client.is_handshaking() {
        shuttle(&mut client, &mut server);
        shuttle(&mut server, &mut client);
    }
    (server, client)
}

/// Moves every pending TLS byte from `from` to `to` and lets `to` process it.
fn shuttle(from: &mut impl DerefConn, to: &mut impl DerefConn) {
    let mut wire = Vec::new();
    while from.conn().wants_write() {
        from.conn().write_tls(&mut wire).expect("write_tls to a Vec");
    }
    let mut slice = &wire[..];
    while !slice.is_empty() {
        to.conn().read_tls(&mut slice).expect("read_tls from a slice");
        to.conn().process_new_packets().expect("valid records");
    }
}

/// Both connection types as the common rustls connection.
trait DerefConn {
    fn conn(&mut self) -> &mut rustls::ConnectionCommon<impl Sized>;
}
impl DerefConn for ServerConnection {
    fn conn(&mut self) -> &mut rustls::ConnectionCommon<impl Sized> {
        self
    }
}
impl DerefConn for ClientConnection {
    fn conn(&mut self) -> &mut rustls::ConnectionCommon<impl Sized> {
        self
    }
}

fn tls_benches(c: &mut Criterion<ThreadCpuTime>) {
    let (mut server, mut client) = pair();
    let suite = server.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default();
    let mut group = c.benchmark_group(format!("tls/{suite}"));

    // Inbound: the relay decrypts a PUBLISH; the client's sealing is done before the timed part.
    group.throughput(Throughput::Elements(PROOFS_PER_PUBLISH as u64));
    let publish = vec![0x5A; PUBLISH_BYTES];
    let mut plain = vec![0u8; PUBLISH_BYTES];
    group.bench_function("relay_reads_publish_64", |b| {
        b.iter_custom(|iters| {
            let mut wire = Vec::new();
            for _ in 0..iters {
                client.writer().write_all(&publish).expect("client write");
                while client.wants_write() {
                    client.write_tls(&mut wire).expect("write_tls to a Vec");
                }
            }
            let start = tessera::driver::clock::thread_cpu_ns();
            let mut slice = &wire[..];
            while !slice.is_empty() {
                server.read_tls(&mut slice).expect("read_tls from a slice");
                server.process_new_packets().expect("valid records");
                while let Ok(n) = server.reader().read(&mut plain) {
                    if n == 0 {
                        break;
                    }
                    black_box(&plain[..n]);
                }
            }
            tessera::driver::clock::thread_cpu_ns().saturating_sub(start)
        })
    });

    // Outbound: the relay encrypts one DELIVER and hands the record to the socket (here a reused buffer).
    group.throughput(Throughput::Elements(1));
    let deliver = vec![0xA5; DELIVER_BYTES];
    let mut wire = Vec::with_capacity(64 << 10);
    group.bench_function("relay_writes_deliver_1", |b| {
        b.iter(|| {
            wire.clear();
            server.writer().write_all(black_box(&deliver)).expect("server write");
            while server.wants_write() {
                server.write_tls(&mut wire).expect("write_tls to a Vec");
            }
            black_box(wire.len())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = cpu_time();
    targets = tls_benches
}
criterion_main!(benches);
