//! One round's cover schedule for the buckets a shard owns: how many dummies, for which bucket, and when.
//!
//! ```text
//! round [start, start + round_us), buckets [lo, hi)
//!   ──for each bucket b: D_b = mechanism.sample_dummies(rng)──▶ D_b slots { bucket b, emit_at_us ~ Unif(round) }
//!   ──sort by emit_at_us──▶ CoverSchedule ──poll_due(now_us)──▶ due slots ──driver──▶ build_dummy_proof ─▶ engine
//! ```
//!
//! The driver (server) builds one schedule per shard per round at the round's start, sets a timer to
//! [`CoverSchedule::next_due_us`], and on each wake-up injects every slot [`CoverSchedule::poll_due`] returns,
//! building each proof with `crate::dp::build_dummy_proof` for the window of the time it actually emits it (the
//! rule a client follows). Emission times are independent and uniform over the round, so dummies arrive spread
//! out like real traffic, never in a burst at a round edge. If the driver falls behind, overdue slots come out
//! together on the next poll; a new round's schedule is independent of any leftover.
//!
//! Memory: one 16-byte slot per dummy, allocated once at exactly `Σ D_b`; `D_b ≤ cap`, so a schedule never holds
//! more than `owned buckets × cap` slots (64 buckets at ε = 0.1: ≤ 36,480 slots, 570 KiB; typically 8,448,
//! 132 KiB). Building costs one discrete Laplace sample per bucket and one uniform draw per dummy, plus a sort.

use std::ops::Range;

use rand_core::{CryptoRng, RngCore};

use super::error::ScheduleError;
use super::exact::uniform_below;
use super::mechanism::CoverMechanism;
use crate::proto::WINDOW_SECONDS;

/// Default round: the 10 s routing window, in µs.
pub const ROUND_US_DEFAULT: u64 = WINDOW_SECONDS * 1_000_000;
/// Longest round accepted: one hour. Longer rounds would emit a window's cover spread over hundreds of windows,
/// which no longer hides per-window counts; a larger value is a configuration mistake (e.g. ms taken for µs).
pub const ROUND_US_MAX: u64 = 3_600_000_000;

/// When and where one dummy goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DummySlot {
    /// Emission time, µs since the Unix epoch, in `[round_start_us, round_start_us + round_us)`.
    pub emit_at_us: u64,
    /// Bucket the dummy's commit must derive to.
    pub bucket: u16,
}

/// The round and buckets a schedule covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundSpec {
    /// Round start, µs since the Unix epoch.
    pub round_start_us: u64,
    /// Round length in µs (`ROUND_US_DEFAULT` unless configured).
    pub round_us: u64,
    /// Buckets this shard owns: `[s·B/S, (s+1)·B/S)`.
    pub buckets: Range<u16>,
    /// Total number of buckets `B` (for validation; dummies derive their bucket mod `B`).
    pub num_buckets: u16,
}

impl RoundSpec {
    fn validate(&self) -> Result<(), ScheduleError> {
        if self.round_us == 0 {
            return Err(ScheduleError::RoundLengthZero);
        }
        if self.round_us > ROUND_US_MAX {
            return Err(ScheduleError::RoundTooLong(self.round_us));
        }
        if self.round_start_us.checked_add(self.round_us).is_none() {
            return Err(ScheduleError::RoundEndOverflow(self.round_start_us));
        }
        if self.buckets.start >= self.buckets.end {
            return Err(ScheduleError::BucketRangeEmpty { start: self.buckets.start, end: self.buckets.end });
        }
        if self.buckets.end > self.num_buckets {
            return Err(ScheduleError::BucketRangeOutOfBounds { end: self.buckets.end, num_buckets: self.num_buckets });
        }
        Ok(())
    }
}

/// The dummies of one round for one bucket range, in emission order.
#[derive(Clone, Debug)]
pub struct CoverSchedule {
    /// All slots, sorted by `(emit_at_us, bucket)`; `slots[..next]` have been handed out.
    slots: Vec<DummySlot>,
    /// Index of the first slot not yet returned by `poll_due`.
    next: usize,
    /// The round and buckets.
    spec: RoundSpec,
    /// `D_b` for each owned bucket (index `b − buckets.start`): the "dummies per bucket per round" metric.
    per_bucket: Vec<u32>,
    /// Buckets whose draw hit the cap this round (expected never; exported as a metric).
    clamped_buckets: u32,
}

impl CoverSchedule {
    /// Samples one round: `D_b` per owned bucket, then an independent uniform emission time per dummy.
    pub fn for_round<R: RngCore + CryptoRng + ?Sized>(
        mechanism: &CoverMechanism,
        spec: RoundSpec,
        rng: &mut R,
    ) -> Result<Self, ScheduleError> {
        spec.validate()?;
        let mut clamped_buckets = 0u32;
        let per_bucket: Vec<u32> = spec
            .buckets
            .clone()
            .map(|_| {
                let draw = mechanism.sample_dummies(rng);
                clamped_buckets += u32::from(draw.clamped);
                draw.count
            })
            .collect();
        // ≤ 65,535 buckets × 65,536 per bucket < 2³²·… fits in usize on every supported (64-bit) target.
        let total: usize = per_bucket.iter().map(|&d| d as usize).sum();
        let mut slots = Vec::with_capacity(total);
        for (bucket, &count) in spec.buckets.clone().zip(&per_bucket) {
            for _ in 0..count {
                let emit_at_us = spec.round_start_us + uniform_below(rng, spec.round_us);
                slots.push(DummySlot { emit_at_us, bucket });
            }
        }
        slots.sort_unstable();
        Ok(Self { slots, next: 0, spec, per_bucket, clamped_buckets })
    }

    /// Every slot due at `now_us` (emission time ≤ now) not returned before, in emission order.
    pub fn poll_due(&mut self, now_us: u64) -> &[DummySlot] {
        let start = self.next;
        let due = self.slots[start..].partition_point(|s| s.emit_at_us <= now_us);
        self.next = start + due;
        &self.slots[start..self.next]
    }

    /// Emission time of the next pending slot (when the driver should wake up), or `None` when all are out.
    pub fn next_due_us(&self) -> Option<u64> {
        self.slots.get(self.next).map(|s| s.emit_at_us)
    }

    /// Slots not yet returned by `poll_due`.
    pub fn pending(&self) -> usize {
        self.slots.len() - self.next
    }

    /// Total dummies this round (`Σ D_b`).
    pub fn total(&self) -> usize {
        self.slots.len()
    }

    /// Every slot of the round, sorted by emission time.
    pub fn slots(&self) -> &[DummySlot] {
        &self.slots
    }

    /// `D_b` for each owned bucket, indexed by `b − buckets.start` (metric: dummies per bucket per round).
    pub fn dummies_per_bucket(&self) -> &[u32] {
        &self.per_bucket
    }

    /// Buckets whose draw was clamped at the cap this round (probability ≤ 2⁻⁶⁴ each).
    pub fn clamped_buckets(&self) -> u32 {
        self.clamped_buckets
    }

    /// The round and buckets this schedule covers.
    pub fn spec(&self) -> &RoundSpec {
        &self.spec
    }

    /// End of the round (exclusive), µs.
    pub fn round_end_us(&self) -> u64 {
        // Checked in `validate`.
        self.spec.round_start_us + self.spec.round_us
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    fn spec(buckets: Range<u16>) -> RoundSpec {
        RoundSpec { round_start_us: 1_700_000_000_000_000, round_us: ROUND_US_DEFAULT, buckets, num_buckets: 64 }
    }

    #[test]
    fn schedule_covers_the_round_in_order() {
        let m = CoverMechanism::from_f64(0.1, 1e-6).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let s = CoverSchedule::for_round(&m, spec(16..32), &mut rng).unwrap();
        assert_eq!(s.dummies_per_bucket().len(), 16);
        assert_eq!(s.total(), s.dummies_per_bucket().iter().map(|&d| d as usize).sum::<usize>());
        assert!(s.slots().windows(2).all(|w| w[0].emit_at_us <= w[1].emit_at_us));
        assert!(s.slots().iter().all(|x| (16..32).contains(&x.bucket)));
        let (start, end) = (s.spec().round_start_us, s.round_end_us());
        assert!(s.slots().iter().all(|x| (start..end).contains(&x.emit_at_us)));
        for (i, &d) in s.dummies_per_bucket().iter().enumerate() {
            assert_eq!(s.slots().iter().filter(|x| x.bucket == 16 + i as u16).count(), d as usize);
            assert!(d <= m.dummies_per_bucket_max());
        }
        // 16 buckets × 132 = 2,112 expected; SD √(16·199.8) = 57.
        assert!((s.total() as i64 - 2_112).abs() < 300, "{}", s.total());
        assert_eq!(s.clamped_buckets(), 0);
        // Not a burst: each tenth of the round holds a tenth of the dummies (±5 SD of a binomial).
        for tenth in 0..10u64 {
            let lo = start + tenth * 1_000_000;
            let n = s.slots().iter().filter(|x| (lo..lo + 1_000_000).contains(&x.emit_at_us)).count() as f64;
            let expected = s.total() as f64 / 10.0;
            assert!((n - expected).abs() < 5.0 * (expected * 0.9).sqrt(), "tenth {tenth}: {n}");
        }
    }

    #[test]
    fn poll_due_hands_out_each_slot_once() {
        let m = CoverMechanism::from_f64(1.0, 1e-6).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let mut s = CoverSchedule::for_round(&m, spec(0..64), &mut rng).unwrap();
        let start = s.spec().round_start_us;
        assert!(s.poll_due(start - 1).is_empty());
        let mut seen = Vec::new();
        let mut now = start;
        while let Some(due_us) = s.next_due_us() {
            assert!(due_us >= now || seen.is_empty());
            now = due_us + 250_000;
            let due = s.poll_due(now).to_vec();
            assert!(!due.is_empty() && due.iter().all(|x| x.emit_at_us <= now));
            seen.extend(due);
        }
        assert_eq!(seen, s.slots());
        assert_eq!(s.pending(), 0);
        assert!(s.poll_due(u64::MAX).is_empty());
    }

    #[test]
    fn same_seed_same_schedule_different_seed_different() {
        let m = CoverMechanism::from_f64(0.5, 1e-6).unwrap();
        let a = CoverSchedule::for_round(&m, spec(0..8), &mut ChaCha20Rng::seed_from_u64(1)).unwrap();
        let b = CoverSchedule::for_round(&m, spec(0..8), &mut ChaCha20Rng::seed_from_u64(1)).unwrap();
        let c = CoverSchedule::for_round(&m, spec(0..8), &mut ChaCha20Rng::seed_from_u64(2)).unwrap();
        assert_eq!(a.slots(), b.slots());
        assert_ne!(a.slots(), c.slots());
    }

    #[test]
    fn invalid_rounds_are_rejected() {
        let m = CoverMechanism::from_f64(0.5, 1e-6).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut bad = |f: fn(&mut RoundSpec)| {
            let mut sp = spec(0..8);
            f(&mut sp);
            CoverSchedule::for_round(&m, sp, &mut rng).unwrap_err()
        };
        assert_eq!(bad(|s| s.round_us = 0), ScheduleError::RoundLengthZero);
        assert_eq!(bad(|s| s.round_us = ROUND_US_MAX + 1), ScheduleError::RoundTooLong(ROUND_US_MAX + 1));
        assert_eq!(bad(|s| s.round_start_us = u64::MAX - 5), ScheduleError::RoundEndOverflow(u64::MAX - 5));
        assert_eq!(bad(|s| s.buckets = 8..8), ScheduleError::BucketRangeEmpty { start: 8, end: 8 });
        assert_eq!(bad(|s| s.buckets = 60..65), ScheduleError::BucketRangeOutOfBounds { end: 65, num_buckets: 64 });
    }
}
