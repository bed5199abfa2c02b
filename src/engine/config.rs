//! Shard configuration: which buckets a shard owns, the window clock, and every per-shard limit.
//!
//! The driver builds one `EngineConfig` per core with [`EngineConfig::for_shard`] (bucket range
//! `[s·B/S, (s+1)·B/S)`, docs/FOUNDATIONS.md §5), overrides what its TOML config says, sets a secret
//! [`EngineConfig::hash_key`] from its CSPRNG, and hands it to `Shard::new`, which checks it with
//! [`EngineConfig::validate`].

use std::ops::Range;

use super::subscriptions::SubscribeError;
use crate::proto::{BloomParams, Limits, NUM_BUCKETS_DEFAULT, WINDOW_SECONDS};

/// Default clock skew, seconds: a proof from a publisher whose clock is up to 2 s ahead (or a proof for the
/// previous window that arrives up to 2 s late) is accepted. Small against the 10 s window so that at most
/// three windows are ever live (bounded dedup memory).
pub const CLOCK_SKEW_S_DEFAULT: u64 = 2;

/// Default per-peer gossip outbox bound, proofs: 8 full PUBLISH batches (8 × 1024 × 564 B ≈ 4.6 MiB per peer).
/// A peer that falls further behind loses gossip (counted); it catches up from its own publishers and FETCH.
pub const GOSSIP_QUEUE_PROOFS_MAX_DEFAULT: usize = 8 * 1024;

/// Default bound on distinct subscribers one shard indexes: 1 Mi subscribers. With `filters_per_bucket_max`
/// = 4 this caps a shard's index at a few hundred MiB even if every connection fills its quota.
pub const SUBSCRIBERS_MAX_DEFAULT: u32 = 1 << 20;

/// Default bound on accepted proofs remembered per window for dedup: 4 Mi per shard per 10 s window, i.e.
/// ~420k accepted proofs/s sustained per core, above what one core's disk and network share can carry.
/// Past it the shard answers OVERLOADED rather than growing without bound (32 B per entry, ~256 MiB at most
/// per window with the table's load factor).
pub const DEDUP_ENTRIES_PER_WINDOW_MAX_DEFAULT: usize = 4 << 20;

/// Default bound on live deliveries one accepted proof may produce: 1,024 subscribers. A proof has one
/// intended recipient; the others are Bloom false positives (~0.42 % of the filters in its bucket), so this
/// leaves room for ~240,000 filters per bucket. Matches past it are still recorded for FETCH, not pushed.
pub const DELIVERIES_PER_PROOF_MAX_DEFAULT: u32 = 1_024;

/// Default bound on live deliveries one shard pushes per second of its clock: 2^20 (~590 MB/s of DELIVER
/// payload, more than one core's share of a network link). Matches past it are recorded for FETCH, not pushed.
pub const DELIVERIES_PER_SECOND_MAX_DEFAULT: u64 = 1 << 20;

/// Fixed key used by [`EngineConfig::for_shard`]. Deterministic so tests and benches reproduce; a relay must
/// replace it with random bytes (`with_hash_key`) so clients cannot aim hash-table collisions at a shard.
const HASH_KEY_DEFAULT: [u64; 2] = [0x7465_7373_6572_6121, 0x0123_4567_89ab_cdef];

/// Why an `EngineConfig` cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `num_buckets` is zero.
    #[error("num_buckets must be at least 1")]
    NoBuckets,
    /// The owned range is empty or reaches past `num_buckets`.
    #[error("bucket range {start}..{end} is empty or exceeds num_buckets {num_buckets}")]
    BadBucketRange {
        /// Range start.
        start: u16,
        /// Range end (exclusive).
        end: u16,
        /// Total buckets.
        num_buckets: u16,
    },
    /// `window_s` is zero.
    #[error("window_s must be at least 1")]
    ZeroWindow,
    /// `clock_skew_s >= window_s`: more than three windows would be live at once.
    #[error("clock_skew_s {skew_s} must be below window_s {window_s}")]
    SkewTooLarge {
        /// Configured skew.
        skew_s: u64,
        /// Window length.
        window_s: u64,
    },
    /// A limit that must be positive is zero.
    #[error("limit {0} must be at least 1")]
    ZeroLimit(&'static str),
}

/// Everything a shard needs to know; plain data, cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// This shard's index (for logs and metrics only).
    pub shard: u16,
    /// Buckets this shard owns; proofs and subscriptions for any other bucket are refused.
    pub buckets: Range<u16>,
    /// Total number of buckets (`bucket = u16_be(SHA-256(commit)[0..2]) mod num_buckets`).
    pub num_buckets: u16,
    /// Window length, seconds.
    pub window_s: u64,
    /// Allowed clock skew for the "current or previous window" check, seconds (`< window_s`).
    pub clock_skew_s: u64,
    /// Bloom parameters every filter must use.
    pub bloom: BloomParams,
    /// Filters one subscriber may register for one bucket (`Limits::filters_per_bucket_max`).
    pub filters_per_bucket_max: u16,
    /// Windows past the current one a subscription may reach (`Limits::subscription_windows_ahead_max`).
    pub subscription_windows_ahead_max: u32,
    /// Proofs waiting in one peer's gossip outbox; past it new gossip for that peer is dropped and counted.
    pub gossip_queue_proofs_max: usize,
    /// Distinct subscribers this shard indexes; past it a SUBSCRIBE for a new subscriber is refused.
    pub subscribers_max: u32,
    /// Accepted proofs remembered per window for dedup; past it proofs are refused as overloaded.
    pub dedup_entries_per_window_max: usize,
    /// Accepted proofs per window this shard is sized for: the four per-window dedup tables are allocated
    /// at start-up with room for them (64 B per two, so 128 B × this in all) and never rehashed on the
    /// publish path at that rate. 0 = start small and grow (tests, idle shards); a relay sets its planned
    /// per-shard rate × window length.
    pub dedup_entries_per_window_expected: usize,
    /// Secret key of the shard's hash tables (subscriber map, dedup). Set it from a CSPRNG in a relay.
    pub hash_key: [u64; 2],
    /// Live deliveries one proof may produce; further matches are recorded for FETCH only (`Delivery::push`).
    pub deliveries_per_proof_max: u32,
    /// Live deliveries per second of the shard clock; further matches are recorded for FETCH only.
    pub deliveries_per_second_max: u64,
}

impl EngineConfig {
    /// Defaults for shard `shard` of `shards`, owning buckets `[shard·B/S, (shard+1)·B/S)`.
    ///
    /// `shards` must be in `1..=num_buckets` and `shard < shards` (checked by `validate`; an empty range
    /// is reported there rather than panicking here).
    pub fn for_shard(shard: u16, shards: u16, num_buckets: u16) -> Self {
        let shards = shards.max(1) as u32;
        let b = num_buckets as u32;
        let start = (shard as u32 * b / shards) as u16;
        let end = ((shard as u32 + 1) * b / shards).min(b) as u16;
        let limits = Limits::default();
        Self {
            shard,
            buckets: start..end,
            num_buckets,
            window_s: WINDOW_SECONDS,
            clock_skew_s: CLOCK_SKEW_S_DEFAULT,
            bloom: BloomParams::default(),
            filters_per_bucket_max: limits.filters_per_bucket_max,
            subscription_windows_ahead_max: limits.subscription_windows_ahead_max,
            gossip_queue_proofs_max: GOSSIP_QUEUE_PROOFS_MAX_DEFAULT,
            subscribers_max: SUBSCRIBERS_MAX_DEFAULT,
            dedup_entries_per_window_max: DEDUP_ENTRIES_PER_WINDOW_MAX_DEFAULT,
            dedup_entries_per_window_expected: 0,
            hash_key: HASH_KEY_DEFAULT,
            deliveries_per_proof_max: DELIVERIES_PER_PROOF_MAX_DEFAULT,
            deliveries_per_second_max: DELIVERIES_PER_SECOND_MAX_DEFAULT,
        }
    }

    /// One shard owning all `NUM_BUCKETS_DEFAULT` buckets (tests, benches, single-core relays).
    pub fn single_shard() -> Self {
        Self::for_shard(0, 1, NUM_BUCKETS_DEFAULT)
    }

    /// The same configuration with a secret hash-table key (draw it from a CSPRNG).
    pub fn with_hash_key(mut self, hash_key: [u64; 2]) -> Self {
        self.hash_key = hash_key;
        self
    }

    /// Whether `bucket` is in this shard's range.
    #[inline]
    pub fn owns(&self, bucket: u16) -> bool {
        self.buckets.contains(&bucket)
    }

    /// Number of buckets this shard owns.
    #[inline]
    pub fn owned_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Checks every invariant the engine relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.num_buckets == 0 {
            return Err(ConfigError::NoBuckets);
        }
        if self.buckets.is_empty() || self.buckets.end > self.num_buckets {
            return Err(ConfigError::BadBucketRange {
                start: self.buckets.start,
                end: self.buckets.end,
                num_buckets: self.num_buckets,
            });
        }
        if self.window_s == 0 {
            return Err(ConfigError::ZeroWindow);
        }
        if self.clock_skew_s >= self.window_s {
            return Err(ConfigError::SkewTooLarge { skew_s: self.clock_skew_s, window_s: self.window_s });
        }
        let positive = [
            ("filters_per_bucket_max", self.filters_per_bucket_max as usize),
            ("gossip_queue_proofs_max", self.gossip_queue_proofs_max),
            ("subscribers_max", self.subscribers_max as usize),
            ("dedup_entries_per_window_max", self.dedup_entries_per_window_max),
            ("deliveries_per_proof_max", self.deliveries_per_proof_max as usize),
            ("deliveries_per_second_max", self.deliveries_per_second_max.min(usize::MAX as u64) as usize),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::ZeroLimit(name));
        }
        Ok(())
    }

    /// Earliest and latest window start a proof may carry at `now_s`: from the window before the one
    /// containing `now - skew` up to the window containing `now + skew`.
    #[inline]
    pub fn accepted_windows(&self, now_s: u64) -> (u64, u64) {
        let w = self.window_s;
        let latest = crate::proto::window_start(now_s.saturating_add(self.clock_skew_s), w);
        let earliest = crate::proto::window_start(now_s.saturating_sub(self.clock_skew_s), w).saturating_sub(w);
        (earliest, latest)
    }

    /// Checks a subscription's window range at `now_s`: aligned, not inverted, not wholly before the earliest
    /// accepted window, and ending at most `subscription_windows_ahead_max` windows after the current one.
    /// The server runs the same check on a whole SUBSCRIBE before splitting it across shards.
    pub fn check_window_range(&self, now_s: u64, from_s: u64, to_s: u64) -> Result<(), SubscribeError> {
        let w = self.window_s;
        if !from_s.is_multiple_of(w) || !to_s.is_multiple_of(w) {
            return Err(SubscribeError::RangeMisaligned);
        }
        if to_s < from_s {
            return Err(SubscribeError::RangeInverted);
        }
        if to_s < self.accepted_windows(now_s).0 {
            return Err(SubscribeError::RangeInPast);
        }
        let latest_to_s =
            crate::proto::window_start(now_s, w).saturating_add(self.subscription_windows_ahead_max as u64 * w);
        if to_s > latest_to_s {
            return Err(SubscribeError::RangeTooFarAhead);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_the_buckets() {
        let ranges: Vec<_> = (0..3).map(|s| EngineConfig::for_shard(s, 3, 64).buckets).collect();
        assert_eq!(ranges, vec![0..21, 21..42, 42..64]);
        assert_eq!(EngineConfig::for_shard(0, 1, 64).buckets, 0..64);
        assert_eq!(EngineConfig::for_shard(5, 8, 64).buckets, 40..48);
        assert!(EngineConfig::for_shard(0, 1, 64).validate().is_ok());
    }

    #[test]
    fn validation_names_the_problem() {
        let mut c = EngineConfig::single_shard();
        c.clock_skew_s = 10;
        assert_eq!(c.validate(), Err(ConfigError::SkewTooLarge { skew_s: 10, window_s: 10 }));
        let mut c = EngineConfig::single_shard();
        c.buckets = 60..65;
        assert_eq!(c.validate(), Err(ConfigError::BadBucketRange { start: 60, end: 65, num_buckets: 64 }));
        let mut c = EngineConfig::single_shard();
        c.gossip_queue_proofs_max = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroLimit("gossip_queue_proofs_max")));
        // 3 shards of 2 buckets: shard 0 gets [0, 0), an empty range.
        assert_eq!(EngineConfig::for_shard(0, 3, 2).buckets, 0..0);
        assert!(EngineConfig::for_shard(0, 3, 2).validate().is_err());
    }

    #[test]
    fn accepted_windows_follow_the_clock_and_skew() {
        let c = EngineConfig::single_shard();
        // Mid-window: previous and current.
        assert_eq!(c.accepted_windows(1_000_005), (999_990, 1_000_000));
        // 1 s before a boundary: the next window is within skew.
        assert_eq!(c.accepted_windows(1_000_009), (999_990, 1_000_010));
        // 1 s after a boundary: the window before the previous one is within skew.
        assert_eq!(c.accepted_windows(1_000_011), (999_990, 1_000_010));
        assert_eq!(c.accepted_windows(1_000_012), (1_000_000, 1_000_010));
    }
}
