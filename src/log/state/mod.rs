//! `LogState`: one shard's log as a pure state machine — appends, matches, subscriptions, commits, FETCH
//! plans and retention — with every byte that must reach the disk handed out as a
//! [`CommitJob`](super::job::CommitJob).
//!
//! ```text
//! append(proof) ──▶ seq, staged ──┐                         ┌─▶ complete_job(id): durable_through = through
//! record_match(key, seq) ─────────┼─ take_job(now) ─▶ job ──┤
//! subscribe / cursor ─────────────┘   (group commit says     └─▶ fail_job(id): poisoned (fail-stop)
//!                                      when: decide(now))
//! fetch(key, cursor) ──▶ FetchPlan { record locations (durable only), next cursor }   ── driver reads, verifies
//! plan_retention(now) ──▶ RetentionPlan ──▶ apply_retention ──▶ files to delete, mailbox trimmed
//! ```
//!
//! Invariants (checked by tests): seqs are dense and increasing across segments; a record is encoded straight
//! into its segment's block image when it is appended (one copy, CRC computed in place), and the match
//! records for it go into that segment's `.mbx` image, so both are in the same job (a proof and who it matched
//! become durable together, and retention deletes them together); at most [`COMMITS_IN_FLIGHT_MAX`] (2) jobs
//! are in flight: the driver writes the next job while the previous one's fdatasync runs, a job is only taken
//! once every earlier job's writes completed (it may rewrite the block the previous one ended in) and no
//! journal rewrite is pending, and seqs become durable in job order (a job whose fdatasync returns first is
//! reported with the earlier one); after a failed job nothing more is written (an fdatasync error leaves the
//! page cache state unknown, so the shard must restart and recover) — unless the failure was a want of
//! space or descriptors (`stall.rs`): then the job and every later one are parked and run again, in order,
//! until they succeed, and nothing they carry is reported durable before that.
//!
//! The state is one struct with its `impl` split by concern, each file a block of methods on [`LogState`]:
//! - `mod.rs` (this file): the struct, its construction, the shared types and constants;
//! - `append.rs`: appends, matches, subscriptions, staging, tickets and the commit jobs (`decide`, `take_job`,
//!   `job_written`, `complete_job`, `fail_job`);
//! - `fetch.rs`: locating records and planning FETCH pages (cursors);
//! - `retention.rs`: planning and applying retention, rolling the active segment, expiring subscriptions;
//! - `stall.rs`: storage stalls (ENOSPC and kin): parking failed jobs, retrying them, resuming.

mod append;
mod fetch;
mod retention;
mod stall;

use std::collections::VecDeque;

use super::commit::GroupCommit;
use super::config::LogConfig;
use super::counters::LogCounters;
use super::format::{FileHeader, FileKind};
use super::layout::BlockAppender;
use super::mailbox::{Mailbox, MATCH_RECORD_LEN};
use super::record::RecordSeq;
use super::retention::SegmentSummary;
use super::stall::StorageStall;
use super::subscriptions::{SubscriptionError, SubscriptionTable};

/// Match slots a mailbox header declares as one commit's in-flight window (recovery's torn-vs-corrupt line for
/// `.mbx` files): 2 MiB. [`STAGED_MATCHES_MAX`] keeps what is staged near it, but one batch routed just under
/// that bound may pass it, so this stays a reporting heuristic.
pub const MAILBOX_IN_FLIGHT_SLOTS: u32 = 65_536;
/// Match records staged or in flight (not yet durable) past which `can_accept` says no, as for records
/// (`STAGED_RECORDS_MAX`): the shard routes no more proofs (client, peer or cover) until a commit makes them
/// durable. A proof matching many filters thus slows the publishers down to what the disk takes instead of
/// growing the staging without bound. Checked before a batch is routed, so the staging can pass it by one
/// batch's matches (its proofs × `deliveries` each); 65,536 × 32 B = 2 MiB.
pub const STAGED_MATCHES_MAX: u64 = MAILBOX_IN_FLIGHT_SLOTS as u64;
/// Match records that count as one staged item for group commit's batch size (`records_max`): 16 × 32 B =
/// 512 B, about one proof record's bytes. At the default 1,024 items a commit starts once 16,384 matches are
/// staged, well before [`STAGED_MATCHES_MAX`] (65,536) holds the routing back.
pub const MATCHES_PER_STAGED_ITEM: u64 = 16;

/// Largest FETCH page: one FETCH_REPLY carries at most `Limits::proofs_per_batch_max` (1,024) proofs.
pub const FETCH_PAGE_MAX: usize = 1_024;

/// One segment and its mailbox companion, as the state sees them.
#[derive(Debug)]
pub(super) struct SegmentState {
    pub(super) header: FileHeader,
    pub(super) records: BlockAppender,
    pub(super) matches: BlockAppender,
    pub(super) log_allocated: u64,
    pub(super) mbx_allocated: u64,
    pub(super) create_log: bool,
    pub(super) create_mbx: bool,
    pub(super) newest_received_at_s: Option<u64>,
    pub(super) oldest_received_at_s: Option<u64>,
    /// Valid records (for the deletion counters).
    pub(super) records_valid: u64,
    /// Match records (for the deletion counters).
    pub(super) matches_valid: u64,
}

impl SegmentState {
    fn first_seq(&self) -> u64 {
        self.header.first_record_seq
    }

    fn end_seq(&self) -> u64 {
        self.first_seq().saturating_add(self.records.next_slot())
    }

    fn summary(&self, active: bool) -> SegmentSummary {
        SegmentSummary {
            file_seq: self.header.file_seq,
            first_record_seq: RecordSeq(self.first_seq()),
            newest_received_at_s: self.newest_received_at_s,
            active,
        }
    }
}

/// Commits that may be in flight at once: one writing while the previous one waits for its fdatasync. The
/// next commit rewrites the block the previous one ended in, so it may only be written once the previous
/// write completed; its fdatasync then also covers that write. Two overlap one commit's fdatasync with the
/// next one's write instead of making every batch wait for the fdatasync before it.
pub const COMMITS_IN_FLIGHT_MAX: usize = 2;

/// A commit handed to the driver.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    id: u64,
    /// First record seq it carries (records `from..=through`; retention keeps their segments while parked).
    from: u64,
    through: Option<RecordSeq>,
    /// Its writes completed (the next commit may be written).
    written: bool,
    /// It is durable (waits for the commits before it to be reported).
    durable: bool,
    /// It rewrites the journal: the next commit must wait until it is durable (it appends to the new file).
    barrier: bool,
    /// Match records it carries (they count toward `STAGED_MATCHES_MAX` until it is durable).
    matches: u64,
    /// It failed for want of space (or ran after one that did) and waits to run again (`stall.rs`).
    parked: bool,
}

impl InFlight {
    /// Waits to run again (storage stall): neither written nor durable any more.
    fn park(&mut self) {
        self.parked = true;
        self.written = false;
        self.durable = false;
    }
}

/// Where a stored record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLocation {
    /// Its seq.
    pub seq: RecordSeq,
    /// Segment file holding it.
    pub file_seq: u64,
    /// Byte offset of its slot.
    pub offset: u64,
}

/// What a FETCH should return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPlan {
    /// Records to read, ascending seq.
    pub reads: Vec<RecordLocation>,
    /// The cursor to send back.
    pub next_cursor: u64,
    /// Whether more durable matches wait after this page.
    pub more: bool,
}

/// Why an append or match was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A commit failed earlier; the shard must restart and recover.
    #[error("the log failed a commit and accepts nothing more until it is reopened")]
    Poisoned,
    /// A match names a seq that was never assigned.
    #[error("match for seq {0}, which was never appended")]
    UnknownSeq(u64),
    /// Storage is full: commits are parked until space returns (nothing is lost; retry later).
    #[error("storage full: commits are parked until space returns")]
    StorageStalled,
}

/// One shard's log state.
#[derive(Debug)]
pub struct LogState {
    pub(super) config: LogConfig,
    pub(super) segments: Vec<SegmentState>,
    pub(super) next_seq: u64,
    /// First seq not yet taken by a job (`next_seq - taken_seq` records are staged).
    taken_seq: u64,
    /// Match records staged since the last job.
    matches_staged: u64,
    pub(super) durable_through: Option<RecordSeq>,
    pub(super) oldest_retained_seq: RecordSeq,
    commit: GroupCommit,
    pub(super) mailbox: Mailbox,
    pub(super) subs: SubscriptionTable,
    pub(super) journal_file_seq: u64,
    pub(super) journal_exists: bool,
    roll_requested: bool,
    next_job_id: u64,
    /// Highest job id made durable (jobs become durable in id order).
    durable_job: u64,
    /// Commits handed out and not yet durable, oldest first.
    in_flight: VecDeque<InFlight>,
    poisoned: bool,
    /// A commit failed for want of space and waits to be retried (`stall.rs`).
    stall: Option<StorageStall>,
    pub(super) counters: LogCounters,
}

impl LogState {
    /// A fresh, empty log (nothing on disk yet: the first job creates the journal and the first segment).
    pub fn new(config: LogConfig) -> Result<Self, SubscriptionError> {
        let subs = SubscriptionTable::new(config.shard, config.bloom, 0, None)?;
        Ok(Self::assemble(config, Vec::new(), 0, Mailbox::default(), subs, 0, false))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn assemble(
        config: LogConfig,
        segments: Vec<SegmentState>,
        next_seq: u64,
        mailbox: Mailbox,
        subs: SubscriptionTable,
        journal_file_seq: u64,
        journal_exists: bool,
    ) -> Self {
        let oldest = segments.first().map_or(next_seq, |s| s.first_seq());
        Self {
            commit: GroupCommit::new(config.commit),
            config,
            segments,
            next_seq,
            taken_seq: next_seq,
            matches_staged: 0,
            durable_through: next_seq.checked_sub(1).map(RecordSeq),
            oldest_retained_seq: RecordSeq(oldest),
            mailbox,
            subs,
            journal_file_seq,
            journal_exists,
            roll_requested: false,
            next_job_id: 1,
            durable_job: 0,
            in_flight: VecDeque::new(),
            poisoned: false,
            stall: None,
            counters: LogCounters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Counters so far.
    pub fn counters(&self) -> LogCounters {
        let mut c = self.counters;
        c.mailbox_entries = self.mailbox.total();
        c.segments = self.segments.len() as u64;
        c.subscribers = self.subs.len() as u64;
        c.staged_records = self.next_seq - self.taken_seq;
        c.storage_stalled = self.stall.is_some().into();
        c
    }

    /// The mailbox index (read-only).
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }
}

/// Header of the mailbox companion of the segment `seg`.
pub(super) fn mailbox_header(seg: &FileHeader) -> FileHeader {
    FileHeader {
        kind: FileKind::Mailbox,
        record_len: MATCH_RECORD_LEN as u32,
        records_max: 0,
        in_flight_slots_max: MAILBOX_IN_FLIGHT_SLOTS,
        ..*seg
    }
}

/// Fixtures shared by the tests of every part of the state: a small config (14 records per segment), proofs
/// and a job runner that applies a job to an in-memory "disk".
#[cfg(test)]
mod test_support {
    use super::*;
    use crate::log::format::ShardParams;
    use crate::log::job::{CommitJob, FileId};
    use crate::proto::params::CIPHERTEXT_LEN;
    use crate::proto::proof::Proof;

    pub(super) fn config() -> LogConfig {
        let mut c = LogConfig::new(ShardParams::for_shard(0, 1, 64, 10));
        c.segment_records_max = 14;
        c
    }

    pub(super) fn proof(i: u64) -> Proof {
        Proof::new(1, 1_000, &[i as u8; 32], &[0; 8], &[9; CIPHERTEXT_LEN])
    }

    /// Applies a job's segment writes to an in-memory "disk" and completes it.
    pub(super) fn run(
        state: &mut LogState,
        now_s: u64,
        disk: &mut std::collections::HashMap<FileId, Vec<u8>>,
    ) -> CommitJob {
        let job = state.take_job(now_s, now_s * 1_000_000).expect("a job");
        for c in &job.creates {
            disk.insert(c.file, c.header.to_vec());
        }
        for w in &job.writes {
            let f = disk.get_mut(&w.file).unwrap();
            let end = w.write.offset as usize + w.write.bytes.len();
            if f.len() < end {
                f.resize(end, 0);
            }
            f[w.write.offset as usize..end].copy_from_slice(&w.write.bytes);
        }
        state.complete_job(job.id, job.bytes());
        job
    }
}
