//! Publisher connections: PUBLISH batches of random proofs, one in ten addressed to a real subscriber,
//! as fast as the in-flight window allows or paced open-loop at a fixed rate; an ACK reader settles them.
//!
//! ```text
//! sender loop: Control ─▶ Idle: wait │ Saturate: send when < inflight_batches unacknowledged
//!                                    │ Rate(r): batch n due at t0 + n·B/(r/P) (stamped with that due time)
//!              batch: commit = Book::take(window) for 1 in 10 (else random) ─▶ fill_proof ─▶ PUBLISH message
//! ACK reader:  ACK(seq) ─▶ every batch ≤ seq settled ─▶ proofs_acked, wake the sender
//!              ERROR(PROOF_*, OVERLOADED per proof) ─▶ proofs_rejected; ERROR(SEQUENCE | STORAGE) ─▶ batch refused
//! stop: wait (bounded) until everything sent is settled, then close
//! ```

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::{Histograms, Local, Shared};
use crate::driver::client::conn::{ClientConn, ClientOptions, ClientReceiver};
use crate::driver::clock::unix_now_ms;
use crate::driver::wake_flag::WakeFlag;
use crate::perf::stats::{Counters, Mode};
use crate::perf::workload::{fill_proof, write_publish, Pacer, Stamp, ADDRESSED_EVERY};
use crate::proto::{ErrorCode, Frame};

/// How often an idle publisher looks at the control word.
const IDLE_POLL: Duration = Duration::from_millis(5);
/// How long a publisher waits for its last ACKs after the stop.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);
/// A publisher only reads ACKs and ERRORs: a small WebSocket read buffer is plenty.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// A PUBLISH sent and not yet settled.
#[derive(Clone, Copy)]
struct Batch {
    seq: u64,
    proofs: u64,
    /// The stamped send time (the due time when paced).
    send_ns: u64,
    /// Phase tag it was stamped with.
    tag: u8,
}

/// Batches sent and not yet settled, shared by the sender loop and the ACK reader.
#[derive(Default)]
struct InFlight {
    /// In sending order.
    batches: RefCell<VecDeque<Batch>>,
    /// A batch was settled (the sender may send again).
    space: WakeFlag,
    /// The connection ended.
    closed: Cell<bool>,
}

/// Runs publisher `index` until the stop.
pub(super) async fn run(shared: Arc<Shared>, local: Rc<Local>, index: usize) {
    let options = ClientOptions {
        read_buffer_bytes: READ_BUFFER_BYTES,
        tls: shared.spec.tls.clone(),
        ..ClientOptions::default()
    };
    let conn = match ClientConn::connect(&shared.spec.url, shared.spec.addr, options).await {
        Ok(conn) => conn,
        Err(e) => {
            shared.fail(format!("publisher {index}: {e}"));
            return;
        }
    };
    let (mut sender, receiver, params) = conn.split();
    Counters::add(&shared.counters.publishers_ready, 1);
    let in_flight = Rc::new(InFlight::default());
    let reader = glommio::spawn_local(read_acks(shared.clone(), local.clone(), in_flight.clone(), receiver));
    let (num_buckets, window_s) = (params.num_buckets.max(1), params.window_s.max(1) as u64);
    let batch = shared.spec.batch.clamp(1, params.limits.proofs_per_batch_max.max(1));
    let mut rng = ChaCha20Rng::from_entropy();
    let (mut seq, mut proofs_total) = (0u64, 0usize);
    let (mut change, mut pacer): (Option<u16>, Option<Pacer>) = (None, None);
    let publishers = shared.spec.publishers.max(1) as u64;
    while !shared.control.stopped() && !in_flight.closed.get() {
        let state = shared.control.get();
        if change != Some(state.change) {
            change = Some(state.change);
            pacer = match state.mode {
                Mode::Rate(rate) => Some(Pacer::new(shared.now_ns(), (rate / publishers).max(1), batch as u64)),
                Mode::Idle | Mode::Saturate => None,
            };
        }
        if state.mode == Mode::Idle {
            glommio::timer::sleep(IDLE_POLL).await;
            continue;
        }
        if in_flight.batches.borrow().len() >= shared.spec.inflight_batches.max(1) {
            futures_lite::future::or(in_flight.space.wait(), glommio::timer::sleep(IDLE_POLL)).await;
            continue;
        }
        let send_ns = match pacer.as_mut() {
            Some(p) => {
                let (due, now) = (p.due_ns(), shared.now_ns());
                if due > now {
                    glommio::timer::sleep(Duration::from_nanos(due - now)).await;
                    continue;
                }
                p.advance();
                Histograms::record(&mut local.histograms.borrow_mut().send_lag, state.tag, now - due);
                due
            }
            None => shared.now_ns(),
        };
        let window = crate::proto::window_start(unix_now_ms() / 1_000, window_s);
        let (mut addressed, mut skipped) = (0u64, 0u64);
        let mut message = BytesMut::new();
        seq += 1;
        write_publish(&mut message, seq, batch, |_, proof| {
            proofs_total += 1;
            let mut target = None;
            if proofs_total % ADDRESSED_EVERY == 0 && !shared.books.is_empty() {
                let s = rng.gen_range(0..shared.books.len());
                match shared.book(s).take(window) {
                    Some(commit) => target = Some((s as u32, commit)),
                    None => skipped += 1,
                }
            }
            let (addressee, commit) = match target {
                Some((s, commit)) => {
                    addressed += 1;
                    (Some(s), commit)
                }
                None => {
                    let mut commit = [0u8; 32];
                    rng.fill_bytes(&mut commit);
                    (None, commit)
                }
            };
            let stamp = Stamp { send_ns, addressee, phase: state.tag };
            fill_proof(proof, &commit, window, num_buckets, &stamp);
        });
        in_flight.batches.borrow_mut().push_back(Batch { seq, proofs: batch as u64, send_ns, tag: state.tag });
        let counters = &shared.counters;
        Counters::add(&counters.proofs_sent, batch as u64);
        Counters::add(&counters.addressed_sent, addressed);
        Counters::add(&counters.addressed_skipped, skipped);
        if sender.send_message(message.freeze()).await.is_err() {
            break;
        }
    }
    // Let what was sent be settled, then close.
    let settle = async {
        while !in_flight.batches.borrow().is_empty() && !in_flight.closed.get() {
            in_flight.space.wait().await;
        }
    };
    futures_lite::future::or(settle, glommio::timer::sleep(SETTLE_TIMEOUT)).await;
    let _ = sender.close().await;
    futures_lite::future::or(reader, glommio::timer::sleep(SETTLE_TIMEOUT)).await;
}

/// Settles batches from ACKs and ERRORs until the connection ends.
async fn read_acks(shared: Arc<Shared>, local: Rc<Local>, in_flight: Rc<InFlight>, mut receiver: ClientReceiver) {
    let counters = &shared.counters;
    loop {
        let frames = match receiver.recv().await {
            Ok(Some(frames)) => frames,
            Ok(None) | Err(_) => break,
        };
        for frame in frames {
            match frame {
                Frame::Ack { seq } => {
                    let now_ns = shared.now_ns();
                    let mut batches = in_flight.batches.borrow_mut();
                    let mut histograms = local.histograms.borrow_mut();
                    let mut proofs = 0;
                    while let Some(&b) = batches.front() {
                        if b.seq > seq {
                            break;
                        }
                        proofs += b.proofs;
                        Histograms::record(&mut histograms.ack, b.tag, now_ns.saturating_sub(b.send_ns));
                        batches.pop_front();
                    }
                    Counters::add(&counters.proofs_acked, proofs);
                    in_flight.space.notify();
                }
                // Refused whole: no ACK will cover it (docs/PROTOCOL.md §4.4).
                Frame::Error(e) if e.ref_seq != 0 && [ErrorCode::SEQUENCE, ErrorCode::STORAGE].contains(&e.code) => {
                    let mut batches = in_flight.batches.borrow_mut();
                    if let Some(at) = batches.iter().position(|b| b.seq == e.ref_seq) {
                        let refused = batches.remove(at).expect("position is in range");
                        Counters::add(&counters.proofs_refused, refused.proofs);
                    }
                    in_flight.space.notify();
                }
                // One proof refused (PROOF_*, or OVERLOADED when the relay's dedup table is full); its batch
                // is still settled by the ACK.
                Frame::Error(e) if e.ref_seq != 0 => Counters::add(&counters.proofs_rejected, 1),
                Frame::Error(e) => {
                    Counters::add(&counters.errors_other, 1);
                    tracing::warn!(code = %e.code, text = %e.text, "ERROR from the relay on a publisher");
                }
                _ => {}
            }
        }
    }
    if !shared.control.stopped() {
        Counters::add(&counters.connections_lost, 1);
    }
    in_flight.closed.set(true);
    in_flight.space.notify();
}
