//! The log's knobs, with the reason for each default (tuning/log.md has the measurements behind them).

use super::commit::GroupCommitPolicy;
use super::format::ShardParams;
use super::layout::SlotLayout;
use super::record::RECORD_LEN;
use super::retention::{RETENTION_S_DEFAULT, SEGMENTS_PER_RETENTION};
use crate::proto::bloom::BloomParams;

/// Records staged or in flight (not yet durable) past which `can_accept` says no: the shard stops taking
/// PUBLISH batches until a commit drains them. It also bounds one commit (a commit takes everything staged),
/// hence the window recovery treats as "in flight" (torn) rather than corrupt. 4,096 × 584 B ≈ 2.3 MiB per
/// commit; at ~4 ms per fdatasync (tuning/log.md, a busy moment) that still carries ~1M proofs/s per shard.
pub const STAGED_RECORDS_MAX: u64 = 4_096;
/// Segment size: 16,383 blocks of 7 records after the header block = exactly 64 MiB per file. Large enough
/// that file creation (one directory sync) is rare (every ~115k proofs), small enough that retention frees
/// space in steps of 64 MiB.
pub const SEGMENT_RECORDS_MAX_DEFAULT: u32 = 7 * 16_383;
/// Segment files grow by fallocate in steps of this many bytes: writes into preallocated space make
/// fdatasync skip a size update, and an idle shard does not hold a full 64 MiB per segment.
pub const SEGMENT_PREALLOC_BYTES: u64 = 4 << 20;
/// Mailbox (`.mbx`) files grow in steps of this many bytes (32-byte match records: 32k matches per step).
pub const MAILBOX_PREALLOC_BYTES: u64 = 1 << 20;

/// Configuration of one shard's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Which shard and buckets the files belong to.
    pub shard: ShardParams,
    /// Bloom parameters of persisted subscriptions.
    pub bloom: BloomParams,
    /// Group commit knobs.
    pub commit: GroupCommitPolicy,
    /// Records are kept at least this long after acceptance, seconds (`retention_s`, `--retention`).
    pub retention_s: u64,
    /// Records per segment file.
    pub segment_records_max: u32,
    /// A segment rolls once its oldest record is this old, seconds (retention / 8 by default).
    pub segment_span_s_max: u64,
    /// DANGER: skip fdatasync (writes still happen), so an ACK no longer means durable: a crash or power loss
    /// can lose acknowledged proofs. Only for measuring what durability costs (W-e2e "non-durable").
    pub danger_skip_fdatasync: bool,
}

impl LogConfig {
    /// Defaults for `shard` (bloom, group commit, retention, segment sizes as documented on each constant).
    pub fn new(shard: ShardParams) -> Self {
        Self {
            shard,
            bloom: BloomParams::default(),
            commit: GroupCommitPolicy::default(),
            retention_s: RETENTION_S_DEFAULT,
            segment_records_max: SEGMENT_RECORDS_MAX_DEFAULT,
            segment_span_s_max: RETENTION_S_DEFAULT / SEGMENTS_PER_RETENTION,
            danger_skip_fdatasync: false,
        }
    }

    /// Sets the retention and the age-based roll that follows from it.
    pub fn with_retention_s(mut self, retention_s: u64) -> Self {
        self.retention_s = retention_s;
        self.segment_span_s_max = (retention_s / SEGMENTS_PER_RETENTION).max(1);
        self
    }

    /// Slot layout of segment files.
    pub fn segment_layout(&self) -> SlotLayout {
        SlotLayout::new(RECORD_LEN)
    }

    /// Largest file length of a full segment.
    pub fn segment_file_len_max(&self) -> u64 {
        self.segment_layout().file_len_for(self.segment_records_max as u64)
    }

    /// Slots the commits in flight may be writing in a segment (recorded in segment headers for recovery):
    /// the staging bound (which counts everything not yet durable) plus the tail block each of the two
    /// commits in flight rewrites.
    pub fn segment_in_flight_slots(&self) -> u32 {
        STAGED_RECORDS_MAX as u32 + 2 * self.segment_layout().per_block() as u32
    }
}
