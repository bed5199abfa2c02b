//! A connection's bounded send queue and the policy for when it is full.
//!
//! Shards push encoded control frames (ACK, ERROR, SUBSCRIBED, ...) and matched proofs; the connection's
//! writer takes whole WebSocket messages out, merging consecutive proofs for one subscriber into one DELIVER
//! frame. Pushing never blocks: a slow subscriber must never slow a shard. When `proofs_max` proofs are
//! queued, further deliveries are refused (the caller keeps them for FETCH or counts them). The writer's
//! progress is the stall signal: when something is waiting — queued, or taken by the writer and not yet
//! written to the socket — and the writer has made no progress for the grace period, the peer is not reading
//! (its writer is blocked on a full socket), and the shard's tick closes that connection.
//!
//! Control frames (the replies: HELLO_REPLY, ACK, ERROR, SUBSCRIBED, FETCH_REPLY) are bounded by bytes. A
//! client that pipelines requests and never reads its replies is held back before the bound ([`reply_room`]):
//! while `REPLY_BACKLOG_PAUSE_BYTES` or more wait here, or `PUBLISHES_IN_PROGRESS_MAX` of its PUBLISHes are
//! still unanswered, the driver stops reading that connection (backpressure, as for a full log staging). What
//! can still arrive is then bounded: the replies to those PUBLISHes and to the one message read last
//! (`CONTROL_BYTES_MAX` holds them). If replies reach `CONTROL_BYTES_MAX` anyway (e.g. dozens of FETCHes
//! pipelined in one message), the connection is closed as a slow consumer at once; otherwise the stall rule
//! above applies, with its grace period, as for a subscriber.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::proto::codec::encode_deliver;
use crate::proto::{Frame, SubscriberId, PROOF_LEN};

/// Most bytes of control frames queued on one connection: the pause threshold below plus what may still
/// arrive once reading stopped — the replies to `PUBLISHES_IN_PROGRESS_MAX` PUBLISHes and to the last message
/// read: at most (8 × 1,024 + 1,860) proofs refused one ERROR each (≤ 110 B with the relay's texts) ≈ 1.1 MB,
/// or a couple of full FETCH_REPLY pages (577,551 B each).
pub const CONTROL_BYTES_MAX: usize = 2 << 20;
/// While this many bytes of control frames wait, the driver does not read the connection's next message.
pub const REPLY_BACKLOG_PAUSE_BYTES: usize = 256 * 1024;
/// While this many PUBLISH frames of a connection are unanswered (neither ACKed nor refused), the driver does
/// not read its next message: each may still bring an ERROR per proof, and they must fit `CONTROL_BYTES_MAX`.
/// 8 batches of up to 1,024 proofs keep a publisher busy across a group commit (the load generator pipelines 8).
pub const PUBLISHES_IN_PROGRESS_MAX: usize = 8;

/// Whether a connection with `backlog_bytes` of control frames queued and `publishes_in_progress` unanswered
/// PUBLISHes may have its next message read.
pub fn reply_room(backlog_bytes: usize, publishes_in_progress: usize) -> bool {
    backlog_bytes < REPLY_BACKLOG_PAUSE_BYTES && publishes_in_progress < PUBLISHES_IN_PROGRESS_MAX
}
/// Bytes of a DELIVER frame besides its proofs: the frame header, the subscriber id and the count.
const DELIVER_OVERHEAD_BYTES: usize = crate::proto::codec::FRAME_HEADER_LEN + 16 + 2;

/// A message is closed once it holds this many bytes (then flushed); keeps write latency bounded.
pub const MESSAGE_TARGET_BYTES: usize = 256 * 1024;

/// One queued item.
#[derive(Debug)]
enum Item {
    /// An encoded frame (header and body).
    Frame(Bytes),
    /// One matched proof for a subscriber.
    Proof(SubscriberId, Bytes),
}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `proofs_max` proofs are queued.
    ProofsFull,
    /// `CONTROL_BYTES_MAX` bytes of control frames are queued.
    ControlFull,
    /// The connection is closing; nothing more is queued.
    Closing,
}

/// The send queue of one connection.
#[derive(Debug)]
pub struct Outbox {
    items: VecDeque<Item>,
    /// Proofs queued (bounded by `proofs_max`).
    proofs: usize,
    /// Bytes of control frames queued (bounded by `CONTROL_BYTES_MAX`).
    control_bytes: usize,
    /// Limit on queued proofs (`Limits::send_queue_proofs_max`).
    proofs_max: usize,
    /// Limit on frames per outgoing message (the client's decoder enforces the same limit).
    frames_max: usize,
    /// Limit on proofs per DELIVER frame.
    batch_max: usize,
    /// Hard limit on one outgoing message's bytes (`Limits::message_bytes_max`: the client decodes within
    /// it); `MESSAGE_TARGET_BYTES` is only the size at which a message is closed early.
    message_bytes_max: usize,
    /// Monotonic ms of the writer's last progress: a message taken or written (or the queue's creation).
    last_progress_ms: u64,
    /// The writer took a message and has not yet reported it written.
    write_in_flight: bool,
    /// Set once the connection is closing: nothing more is accepted, the writer drains and closes.
    closing: bool,
}

impl Outbox {
    /// An empty queue with these limits, created at `now_ms`.
    pub fn new(proofs_max: usize, frames_max: usize, batch_max: usize, now_ms: u64) -> Self {
        Self {
            items: VecDeque::new(),
            proofs: 0,
            control_bytes: 0,
            proofs_max,
            frames_max: frames_max.max(1),
            batch_max: batch_max.max(1),
            message_bytes_max: usize::MAX,
            last_progress_ms: now_ms,
            write_in_flight: false,
            closing: false,
        }
    }

    /// Caps every message [`next_message`](Self::next_message) builds at `bytes` (the relay's announced
    /// `message_bytes_max`). A single frame larger than that is never queued: FETCH pages and DELIVERs are
    /// bounded by `proofs_per_batch_max`, which the configuration keeps within a message.
    pub fn with_message_bytes_max(mut self, bytes: usize) -> Self {
        self.message_bytes_max = bytes;
        self
    }

    /// Queues a control frame.
    pub fn push_frame(&mut self, frame: &Frame) -> Result<(), Refused> {
        let mut buf = BytesMut::new();
        crate::proto::encode_frame(frame, &mut buf);
        self.push_encoded(buf.freeze())
    }

    /// Queues an already encoded frame.
    pub fn push_encoded(&mut self, frame: Bytes) -> Result<(), Refused> {
        if self.closing {
            return Err(Refused::Closing);
        }
        if self.control_bytes + frame.len() > CONTROL_BYTES_MAX {
            return Err(Refused::ControlFull);
        }
        self.control_bytes += frame.len();
        self.items.push_back(Item::Frame(frame));
        Ok(())
    }

    /// Queues a matched proof; refused when full (the caller diverts it) or closing.
    pub fn push_proof(&mut self, subscriber: SubscriberId, proof: Bytes) -> Result<(), Refused> {
        if self.closing {
            return Err(Refused::Closing);
        }
        if self.proofs >= self.proofs_max {
            return Err(Refused::ProofsFull);
        }
        self.proofs += 1;
        self.items.push_back(Item::Proof(subscriber, proof));
        Ok(())
    }

    /// Bytes of control frames queued (not yet taken by the writer).
    pub fn control_bytes(&self) -> usize {
        self.control_bytes
    }

    /// Proofs queued.
    pub fn queued_proofs(&self) -> usize {
        self.proofs
    }

    /// Whether anything is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether something is waiting (queued or in flight) and the writer made no progress for `grace_ms`.
    pub fn stalled(&self, now_ms: u64, grace_ms: u64) -> bool {
        (self.write_in_flight || !self.items.is_empty()) && now_ms.saturating_sub(self.last_progress_ms) >= grace_ms
    }

    /// The writer finished writing what it took (flushed to the socket).
    pub fn written(&mut self, now_ms: u64) {
        self.write_in_flight = false;
        self.last_progress_ms = now_ms;
    }

    /// Stops accepting items; what is queued is still delivered by the writer.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Takes the next WebSocket message: up to `frames_max` frames and about `MESSAGE_TARGET_BYTES`, with
    /// consecutive proofs of one subscriber merged into DELIVER frames. Returns the message and the number of
    /// proofs it carries, or `None` when the queue is empty. `now_ms` records the writer's progress.
    pub fn next_message(&mut self, now_ms: u64) -> Option<(Bytes, usize)> {
        if self.items.is_empty() {
            return None;
        }
        self.last_progress_ms = now_ms;
        self.write_in_flight = true;
        let mut out = BytesMut::with_capacity(4096);
        let (mut frames, mut proofs) = (0, 0);
        while frames < self.frames_max && out.len() < MESSAGE_TARGET_BYTES {
            match self.items.front() {
                None => break,
                Some(Item::Frame(frame)) => {
                    if !out.is_empty() && out.len() + frame.len() > self.message_bytes_max {
                        break;
                    }
                    if let Some(Item::Frame(frame)) = self.items.pop_front() {
                        self.control_bytes -= frame.len();
                        out.extend_from_slice(&frame);
                    }
                }
                Some(Item::Proof(subscriber, _)) => {
                    let subscriber = *subscriber;
                    let room_bytes = self.message_bytes_max.saturating_sub(out.len() + DELIVER_OVERHEAD_BYTES);
                    let room = match room_bytes / PROOF_LEN {
                        0 if !out.is_empty() => break,
                        // An empty message always takes one proof (a relay's limits always fit one DELIVER).
                        room => room.max(1),
                    };
                    let run = self
                        .items
                        .iter()
                        .take(self.batch_max.min(room))
                        .take_while(|item| matches!(item, Item::Proof(s, _) if *s == subscriber))
                        .count();
                    let drained = self.items.drain(..run).map(|item| match item {
                        Item::Proof(_, proof) => proof,
                        // `run` counted only proofs of this subscriber from the front.
                        Item::Frame(_) => unreachable!("run covers proof items only"),
                    });
                    encode_deliver(&subscriber, drained, &mut out);
                    self.proofs -= run;
                    proofs += run;
                }
            }
            frames += 1;
        }
        Some((out.freeze(), proofs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Codec, Proof, CIPHERTEXT_LEN};

    fn proof(n: u8) -> Bytes {
        Bytes::copy_from_slice(Proof::new(n as u16, 10, &[n; 32], &[n; 8], &[n; CIPHERTEXT_LEN]).as_bytes())
    }

    #[test]
    fn merges_runs_into_deliver_frames_in_order() {
        let (a, b) = (SubscriberId([1; 16]), SubscriberId([2; 16]));
        let mut q = Outbox::new(10, 64, 1024, 0);
        q.push_proof(a, proof(1)).unwrap();
        q.push_proof(a, proof(2)).unwrap();
        q.push_frame(&Frame::Ack { seq: 5 }).unwrap();
        q.push_proof(b, proof(3)).unwrap();
        let (msg, n) = q.next_message(1).unwrap();
        assert_eq!(n, 3);
        let frames = Codec::default().decode_message(&msg).unwrap();
        assert_eq!(frames.len(), 3);
        assert!(matches!(&frames[0], Frame::Deliver { subscriber, proofs } if *subscriber == a && proofs.len() == 2));
        assert_eq!(frames[1], Frame::Ack { seq: 5 });
        assert!(
            matches!(&frames[2], Frame::Deliver { subscriber, proofs } if *subscriber == b && proofs.get(0).bucket() == 3)
        );
        assert!(q.next_message(2).is_none());
    }

    #[test]
    fn messages_stay_within_message_bytes_max() {
        let s = SubscriberId([4; 16]);
        let max = 4096;
        let mut q = Outbox::new(100, 64, 1024, 0).with_message_bytes_max(max);
        for n in 0..20 {
            q.push_proof(s, proof(n)).unwrap();
            if n % 5 == 0 {
                q.push_frame(&Frame::Ack { seq: u64::from(n) }).unwrap();
            }
        }
        let (mut proofs, mut acks) = (0, 0);
        while let Some((msg, n)) = q.next_message(1) {
            assert!(msg.len() <= max, "a message of {} bytes over {max}", msg.len());
            let frames = Codec::default().decode_message(&msg).unwrap();
            acks += frames.iter().filter(|f| matches!(f, Frame::Ack { .. })).count();
            proofs += n;
        }
        assert_eq!((proofs, acks), (20, 4), "everything is sent, split over messages");
    }

    #[test]
    fn full_queue_refuses_and_an_undrained_queue_stalls() {
        let s = SubscriberId([9; 16]);
        let mut q = Outbox::new(2, 64, 1024, 100);
        assert!(!q.stalled(100_000, 5_000), "an empty queue never stalls");
        q.push_proof(s, proof(1)).unwrap();
        q.push_proof(s, proof(2)).unwrap();
        assert_eq!(q.push_proof(s, proof(3)), Err(Refused::ProofsFull));
        assert!(!q.stalled(5_099, 5_000));
        assert!(q.stalled(5_100, 5_000), "not drained for the grace period");
        assert_eq!(q.next_message(5_200).unwrap().1, 2);
        assert!(!q.stalled(10_000, 5_000), "the writer made progress at 5,200");
        assert!(q.stalled(10_200, 5_000), "taken but never written: the socket is blocked");
        q.written(10_300);
        assert!(!q.stalled(99_000, 5_000), "nothing waiting");
        q.push_proof(s, proof(4)).unwrap();
        assert!(q.stalled(15_300, 5_000));
        q.close();
        assert_eq!(q.push_proof(s, proof(5)), Err(Refused::Closing));
    }

    #[test]
    fn reading_pauses_on_a_reply_backlog_or_too_many_publishes_in_progress() {
        assert!(reply_room(0, 0));
        assert!(reply_room(REPLY_BACKLOG_PAUSE_BYTES - 1, PUBLISHES_IN_PROGRESS_MAX - 1));
        assert!(!reply_room(REPLY_BACKLOG_PAUSE_BYTES, 0));
        assert!(!reply_room(0, PUBLISHES_IN_PROGRESS_MAX));
        // What may still arrive once reading paused fits the hard bound: the unanswered PUBLISHes and the last
        // message read, each proof refused with an ERROR (the longest text the relay writes for a proof).
        let text = "proof 1023 rejected: fingerprint is not the one derived from the commit and window";
        let error = crate::proto::frame::ErrorFrame {
            code: crate::proto::ErrorCode::PROOF_BAD_FINGERPRINT,
            ref_seq: u64::MAX,
            detail: 1023,
            text: text.into(),
        };
        let mut encoded = BytesMut::new();
        crate::proto::encode_frame(&Frame::Error(error), &mut encoded);
        assert!(encoded.len() <= 110, "{} bytes", encoded.len());
        let in_flight_proofs = PUBLISHES_IN_PROGRESS_MAX * 1024 + (1 << 20) / crate::proto::PROOF_LEN;
        assert!(REPLY_BACKLOG_PAUSE_BYTES + in_flight_proofs * 110 <= CONTROL_BYTES_MAX);
        let mut q = Outbox::new(1, 64, 1024, 0);
        q.push_frame(&Frame::Ack { seq: 1 }).unwrap();
        assert_eq!(q.control_bytes(), 13);
        q.next_message(0);
        assert_eq!(q.control_bytes(), 0);
    }

    #[test]
    fn frames_per_message_and_batch_limits_hold() {
        let mut q = Outbox::new(100, 2, 3, 0);
        for i in 0..7 {
            q.push_proof(SubscriberId([1; 16]), proof(i)).unwrap();
        }
        let (msg, n) = q.next_message(0).unwrap();
        assert_eq!(n, 6, "two DELIVER frames of three proofs");
        assert_eq!(Codec::default().decode_message(&msg).unwrap().len(), 2);
        assert_eq!(q.next_message(0).unwrap().1, 1);
    }
}
