//! A reply flood against the real binary (issue 13, item 6): a client pipelines PUBLISHes whose every proof is
//! refused (one ERROR each) and never reads its replies. The relay stops reading it once its replies back up
//! (its writes then block: backpressure, not buffering), closes it as a slow consumer only after the grace
//! period, and keeps serving everyone else meanwhile.
//!
//! ```text
//! flooder (4 KiB receive buffer, never reads) ─PUBLISH × 1024 bad proofs, pipelined─▶ relay
//!   replies queue ≥ 256 KiB ─▶ the relay stops reading ─▶ the flooder's writes block        (t_blocked)
//!   no write progress for slow_consumer_grace_ms ─▶ ERROR SLOW_CONSUMER, close              (t_closed ≥ grace)
//! healthy client: PUBLISH ─▶ ACK throughout
//! ```

mod relay_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relay_support::*;
use tessera::proto::derive::bucket_of;
use tessera::proto::frame::Publish;
use tessera::proto::{Frame, Proof, ProofBatch, CIPHERTEXT_LEN};
use tungstenite::Message;

const GRACE: Duration = Duration::from_millis(3000);

/// PUBLISH messages `1..=count` of 1,024 proofs whose fingerprint is wrong: each proof is answered by its own
/// ERROR (~75 bytes), so each message by ~75 KB, and `count` of them by more than the kernel's socket buffers
/// hold (the relay's send buffer grows to 4 MiB on loopback).
fn refused_batches(count: u64) -> Vec<Vec<u8>> {
    let window = current_window();
    let proofs: Vec<Proof> = commits_in_bucket(9, 1, 1024)
        .iter()
        .map(|c| Proof::new(bucket_of(c, 64), window, c, &[0xEE; 8], &[7; CIPHERTEXT_LEN]))
        .collect();
    let proofs = ProofBatch::from_proofs(proofs.iter().map(|p| p.view()));
    let message = |seq| Frame::Publish(Publish { seq, proofs: proofs.clone() });
    (1..=count).map(|seq| tessera::proto::encode_message(&[message(seq)]).to_vec()).collect()
}

#[test]
fn a_client_that_never_reads_its_replies_is_held_back_then_closed_after_the_grace_period() {
    let grace_ms = GRACE.as_millis().to_string();
    let relay = Relay::start(&["--shards", "2", "--slow-consumer-grace-ms", &grace_ms]);
    let (mut healthy, _) = Client::hello(&relay);
    let (mut flooder, _) = Client::hello_on(Client::connect_small_buffer(&relay, 4096));
    flooder.socket().set_write_timeout(Some(Duration::from_millis(100))).unwrap();
    let messages = refused_batches(160);
    let blocked_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let gone = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let flood = {
        let (blocked_at, gone) = (blocked_at.clone(), gone.clone());
        std::thread::spawn(move || {
            let mut next = messages.into_iter();
            let mut pending = next.next();
            while started.elapsed() < GRACE * 4 {
                let result = match pending.take() {
                    Some(bytes) => flooder.ws_mut().send(Message::binary(bytes)),
                    None => flooder.ws_mut().flush(), // everything handed over: keep pushing it out
                };
                match result {
                    Ok(()) => pending = next.next(),
                    Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // Queued in the client; the relay is not reading.
                        blocked_at.lock().unwrap().get_or_insert_with(Instant::now);
                        pending = next.next();
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(_) => {
                        gone.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        })
    };
    // Until the flooder's writes block, and while it waits out the grace period, the others are served.
    let mut salt = 0;
    let closed_at = loop {
        salt += 1;
        let seq = healthy.publish(&[proof(&commit_in_bucket(4, salt), current_window(), 1)]);
        assert_eq!(healthy.recv_until(|f| matches!(f, Frame::Ack { .. } | Frame::Error(_))), Frame::Ack { seq });
        if relay.metric("tessera_slow_consumer_closes_total", "") > 0 {
            break Instant::now();
        }
        if started.elapsed() > GRACE * 4 {
            let text = relay.http_get("/metrics");
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| ["messages_in", "rejected", "backpressure", "slow_consumer"].iter().any(|n| l.contains(n)))
                .filter(|l| !l.starts_with('#'))
                .collect();
            panic!("the flooder was never closed (blocked: {:?}); {lines:#?}", blocked_at.lock().unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let blocked_at = blocked_at.lock().unwrap().expect("the relay never stopped reading the flooder");
    let held = closed_at.duration_since(blocked_at);
    println!(
        "flooder blocked after {:?}, closed as a slow consumer {held:?} later",
        blocked_at.duration_since(started)
    );
    assert!(held >= GRACE / 2, "closed {held:?} after its writes blocked; the grace period is {GRACE:?}");
    assert!(relay.metric("tessera_reply_backpressure_total", "") >= 1);
    flood.join().expect("flood thread");
    assert!(gone.load(Ordering::Relaxed), "the flooder's connection was not closed");
    let seq = healthy.publish(&[proof(&commit_in_bucket(4, 9_999), current_window(), 1)]);
    assert_eq!(healthy.recv_until(|f| matches!(f, Frame::Ack { .. } | Frame::Error(_))), Frame::Ack { seq });
}
