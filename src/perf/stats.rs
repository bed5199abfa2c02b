//! Counters the load generator's tasks update and the runner samples, and the phase control word.
//!
//! ```text
//! publisher / subscriber tasks (any executor) ──fetch_add──▶ Counters ◀──snapshot (1/s, phase edges)── runner
//! runner ──Control::set(rate, tag)──▶ Control ◀──read per batch── publishers
//! ```
//! Everything is a relaxed atomic: the runner only needs each counter to be exact eventually, and no task
//! waits on another through them. Each counter sits on its own cache line (tasks on two cores update them).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam::utils::CachePadded;

/// Monotonic counters of one run, all tasks together.
#[derive(Debug, Default)]
pub struct Counters {
    /// Proofs put in PUBLISH messages.
    pub proofs_sent: CachePadded<AtomicU64>,
    /// Proofs of PUBLISHes covered by an ACK (settled: routed, or refused by a per-proof ERROR).
    pub proofs_acked: CachePadded<AtomicU64>,
    /// Proofs refused one by one (ERROR PROOF_*, `ref_seq` naming their PUBLISH).
    pub proofs_rejected: CachePadded<AtomicU64>,
    /// Proofs of PUBLISHes refused whole (OVERLOADED, SEQUENCE, STORAGE).
    pub proofs_refused: CachePadded<AtomicU64>,
    /// Proofs received in DELIVER frames (addressed ones and Bloom false positives).
    pub delivered: CachePadded<AtomicU64>,
    /// Proofs addressed to a real subscriber.
    pub addressed_sent: CachePadded<AtomicU64>,
    /// Addressed proofs received by their addressee.
    pub addressed_delivered: CachePadded<AtomicU64>,
    /// Proofs sent with a random commit because the chosen subscriber had no fresh commit.
    pub addressed_skipped: CachePadded<AtomicU64>,
    /// SUBSCRIBE messages sent.
    pub subscribes_sent: CachePadded<AtomicU64>,
    /// SUBSCRIBED received.
    pub subscribes_confirmed: CachePadded<AtomicU64>,
    /// Subscribers whose first SUBSCRIBE was confirmed.
    pub subscribers_ready: CachePadded<AtomicU64>,
    /// Publishers connected (HELLO done).
    pub publishers_ready: CachePadded<AtomicU64>,
    /// ERROR frames received, other than per-proof rejections and whole-PUBLISH refusals.
    pub errors_other: CachePadded<AtomicU64>,
    /// Connections that failed or were closed by the relay before the end.
    pub connections_lost: CachePadded<AtomicU64>,
}

/// One sample of every counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// See [`Counters::proofs_sent`].
    pub proofs_sent: u64,
    /// See [`Counters::proofs_acked`].
    pub proofs_acked: u64,
    /// See [`Counters::proofs_rejected`].
    pub proofs_rejected: u64,
    /// See [`Counters::proofs_refused`].
    pub proofs_refused: u64,
    /// See [`Counters::delivered`].
    pub delivered: u64,
    /// See [`Counters::addressed_sent`].
    pub addressed_sent: u64,
    /// See [`Counters::addressed_delivered`].
    pub addressed_delivered: u64,
    /// See [`Counters::addressed_skipped`].
    pub addressed_skipped: u64,
    /// See [`Counters::subscribes_sent`].
    pub subscribes_sent: u64,
    /// See [`Counters::subscribes_confirmed`].
    pub subscribes_confirmed: u64,
    /// See [`Counters::subscribers_ready`].
    pub subscribers_ready: u64,
    /// See [`Counters::publishers_ready`].
    pub publishers_ready: u64,
    /// See [`Counters::errors_other`].
    pub errors_other: u64,
    /// See [`Counters::connections_lost`].
    pub connections_lost: u64,
}

impl Snapshot {
    /// Proofs routed: acknowledged and not refused one by one.
    pub fn routed(&self) -> u64 {
        self.proofs_acked.saturating_sub(self.proofs_rejected)
    }

    /// Counter increase from `earlier` to `self`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            proofs_sent: self.proofs_sent - earlier.proofs_sent,
            proofs_acked: self.proofs_acked - earlier.proofs_acked,
            proofs_rejected: self.proofs_rejected - earlier.proofs_rejected,
            proofs_refused: self.proofs_refused - earlier.proofs_refused,
            delivered: self.delivered - earlier.delivered,
            addressed_sent: self.addressed_sent - earlier.addressed_sent,
            addressed_delivered: self.addressed_delivered - earlier.addressed_delivered,
            addressed_skipped: self.addressed_skipped - earlier.addressed_skipped,
            subscribes_sent: self.subscribes_sent - earlier.subscribes_sent,
            subscribes_confirmed: self.subscribes_confirmed - earlier.subscribes_confirmed,
            subscribers_ready: self.subscribers_ready - earlier.subscribers_ready,
            publishers_ready: self.publishers_ready - earlier.publishers_ready,
            errors_other: self.errors_other - earlier.errors_other,
            connections_lost: self.connections_lost - earlier.connections_lost,
        }
    }
}

impl Counters {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Samples every counter.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &CachePadded<AtomicU64>| c.load(Ordering::Relaxed);
        Snapshot {
            proofs_sent: get(&self.proofs_sent),
            proofs_acked: get(&self.proofs_acked),
            proofs_rejected: get(&self.proofs_rejected),
            proofs_refused: get(&self.proofs_refused),
            delivered: get(&self.delivered),
            addressed_sent: get(&self.addressed_sent),
            addressed_delivered: get(&self.addressed_delivered),
            addressed_skipped: get(&self.addressed_skipped),
            subscribes_sent: get(&self.subscribes_sent),
            subscribes_confirmed: get(&self.subscribes_confirmed),
            subscribers_ready: get(&self.subscribers_ready),
            publishers_ready: get(&self.publishers_ready),
            errors_other: get(&self.errors_other),
            connections_lost: get(&self.connections_lost),
        }
    }
}

/// What publishers should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Send nothing (connecting, between phases, stopping).
    Idle,
    /// Send as fast as the in-flight window allows.
    Saturate,
    /// Send at this total rate, proofs/s, paced open-loop.
    Rate(u64),
}

/// The phase control word: mode, phase tag and a change counter in one atomic, so a publisher never sees
/// a new rate with an old tag. Layout: change (16 bits) ‖ tag (8) ‖ rate field (40; 0 = saturate, max = idle).
#[derive(Debug)]
pub struct Control {
    word: AtomicU64,
    stop: AtomicBool,
}

/// What a publisher reads from [`Control`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlState {
    /// Changes whenever the runner sets a new mode (publishers restart their pacing schedule).
    pub change: u16,
    /// Phase tag stamped into proofs (0 = not measured).
    pub tag: u8,
    /// The mode.
    pub mode: Mode,
}

const RATE_BITS: u32 = 40;
const RATE_IDLE: u64 = (1 << RATE_BITS) - 1;

impl Default for Control {
    fn default() -> Self {
        Self { word: AtomicU64::new(RATE_IDLE), stop: AtomicBool::new(false) }
    }
}

impl Control {
    /// Sets the mode and tag (publishers see both at once).
    pub fn set(&self, mode: Mode, tag: u8) {
        let rate = match mode {
            Mode::Idle => RATE_IDLE,
            Mode::Saturate => 0,
            Mode::Rate(r) => r.clamp(1, RATE_IDLE - 1),
        };
        let change = (self.word.load(Ordering::Relaxed) >> 48).wrapping_add(1) & 0xFFFF;
        self.word.store(change << 48 | (tag as u64) << RATE_BITS | rate, Ordering::Release);
    }

    /// Reads the mode and tag.
    pub fn get(&self) -> ControlState {
        let word = self.word.load(Ordering::Acquire);
        let rate = word & RATE_IDLE;
        let mode = match rate {
            RATE_IDLE => Mode::Idle,
            0 => Mode::Saturate,
            r => Mode::Rate(r),
        };
        ControlState { change: (word >> 48) as u16, tag: (word >> RATE_BITS) as u8, mode }
    }

    /// Tells every task to finish.
    pub fn stop(&self) {
        self.set(Mode::Idle, 0);
        self.stop.store(true, Ordering::Release);
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_word_round_trips() {
        let c = Control::default();
        assert_eq!(c.get(), ControlState { change: 0, tag: 0, mode: Mode::Idle });
        c.set(Mode::Saturate, 1);
        assert_eq!(c.get(), ControlState { change: 1, tag: 1, mode: Mode::Saturate });
        c.set(Mode::Rate(250_000), 2);
        assert_eq!(c.get(), ControlState { change: 2, tag: 2, mode: Mode::Rate(250_000) });
        assert!(!c.stopped());
        c.stop();
        assert!(c.stopped());
        assert_eq!(c.get().mode, Mode::Idle);
    }

    #[test]
    fn snapshot_differences() {
        let c = Counters::default();
        Counters::add(&c.proofs_acked, 1000);
        Counters::add(&c.proofs_rejected, 10);
        let a = c.snapshot();
        Counters::add(&c.proofs_acked, 500);
        Counters::add(&c.delivered, 7);
        let d = c.snapshot().since(&a);
        assert_eq!((d.proofs_acked, d.delivered, d.proofs_rejected), (500, 7, 0));
        assert_eq!(a.routed(), 990);
    }
}
