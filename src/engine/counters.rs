//! Plain counters of everything a shard does, read by the driver for metrics and by tests.
//!
//! Monotonic `u64`s except the gauges (`subscribers`, `entries`, `peers`), which are current sizes. They
//! are plain fields, not atomics: a shard is single-threaded and the driver copies them out between batches.

use super::verify::Rejection;

/// Counters of one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// Proofs handed to `handle_publish`.
    pub received: u64,
    /// Proofs accepted (new, valid, logged).
    pub accepted: u64,
    /// Valid proofs already accepted in their window (gossip and retries make these; not errors).
    pub duplicates: u64,
    /// Rejections: bucket owned by another shard.
    pub rejected_bucket_not_owned: u64,
    /// Rejections: bucket out of range or not derived from the commit.
    pub rejected_bad_bucket: u64,
    /// Rejections: fingerprint not derived from commit and window.
    pub rejected_bad_fingerprint: u64,
    /// Rejections: window before the previous one.
    pub rejected_window_stale: u64,
    /// Rejections: window ahead of the clock.
    pub rejected_window_future: u64,
    /// Rejections: window start not a multiple of the window length.
    pub rejected_window_misaligned: u64,
    /// Rejections: dedup table for the window full.
    pub rejected_dedup_full: u64,
    /// Rejections: the log failed earlier and refuses appends (fail-stop).
    pub rejected_log_failed: u64,
    /// (subscriber, proof) deliveries queued.
    pub deliveries: u64,
    /// Of those, matches over `deliveries_per_proof_max` or `deliveries_per_second_max`: queued with
    /// `push = false` (recorded for FETCH, not sent live).
    pub deliveries_unpushed: u64,
    /// Gauge: subscribers with at least one entry in this shard.
    pub subscribers: u64,
    /// Gauge: subscription entries registered in this shard.
    pub entries: u64,
    /// SUBSCRIBE calls applied (including replacements and empty ones).
    pub subscribes: u64,
    /// SUBSCRIBE calls refused.
    pub subscribes_rejected: u64,
    /// Subscription entries removed because their window range ended.
    pub entries_expired: u64,
    /// Gauge: peers attached.
    pub peers: u64,
    /// Proofs queued for gossip (summed over peers).
    pub gossip_queued: u64,
    /// Proofs not queued for gossip because a peer's outbox was full (summed over peers).
    pub gossip_dropped: u64,
}

impl ShardCounters {
    /// Sum of all rejection counters.
    pub fn rejected_total(&self) -> u64 {
        self.rejected_bucket_not_owned
            + self.rejected_bad_bucket
            + self.rejected_bad_fingerprint
            + self.rejected_window_stale
            + self.rejected_window_future
            + self.rejected_window_misaligned
            + self.rejected_dedup_full
            + self.rejected_log_failed
    }

    /// The counter for one rejection reason.
    pub fn rejected(&self, reason: Rejection) -> u64 {
        match reason {
            Rejection::BucketNotOwned => self.rejected_bucket_not_owned,
            Rejection::BadBucket => self.rejected_bad_bucket,
            Rejection::BadFingerprint => self.rejected_bad_fingerprint,
            Rejection::WindowStale => self.rejected_window_stale,
            Rejection::WindowFuture => self.rejected_window_future,
            Rejection::WindowMisaligned => self.rejected_window_misaligned,
            Rejection::DedupFull => self.rejected_dedup_full,
            Rejection::LogFailed => self.rejected_log_failed,
        }
    }

    /// Counts one rejection.
    #[inline]
    pub(crate) fn count_rejection(&mut self, reason: Rejection) {
        let c = match reason {
            Rejection::BucketNotOwned => &mut self.rejected_bucket_not_owned,
            Rejection::BadBucket => &mut self.rejected_bad_bucket,
            Rejection::BadFingerprint => &mut self.rejected_bad_fingerprint,
            Rejection::WindowStale => &mut self.rejected_window_stale,
            Rejection::WindowFuture => &mut self.rejected_window_future,
            Rejection::WindowMisaligned => &mut self.rejected_window_misaligned,
            Rejection::DedupFull => &mut self.rejected_dedup_full,
            Rejection::LogFailed => &mut self.rejected_log_failed,
        };
        *c += 1;
    }
}
