//! `LogState`: one shard's log as a pure state machine — appends, matches, subscriptions, commits, FETCH
//! plans and retention — with every byte that must reach the disk handed out as a [`CommitJob`].
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
//! become durable together, and retention deletes them together); one job is
//! in flight at a time; after a failed job nothing more is written (an fdatasync error leaves the page cache
//! state unknown, so the shard must restart and recover).

use std::collections::VecDeque;

use super::commit::{CommitDecision, GroupCommit};
use super::config::{LogConfig, MAILBOX_PREALLOC_BYTES, SEGMENT_PREALLOC_BYTES, STAGED_RECORDS_MAX};
use super::counters::LogCounters;
use super::format::{FileHeader, FileKind};
use super::job::{CommitJob, FileCreate, FileId, FileWrite, JournalRewrite, Prealloc};
use super::layout::{BlockAppender, BlockWrite, SlotLayout};
use super::mailbox::{CursorState, Mailbox, MatchRecord, SubscriberKey, MATCH_RECORD_LEN};
use super::record::{encode_record, RecordSeq, RECORD_LEN};
use super::retention::{self, RetentionPlan, SegmentSummary};
use super::subscriptions::{SubscriptionError, SubscriptionTable, JOURNAL_STAGED_RECORDS_MAX};
use crate::proto::frame::SubscribeEntry;
use crate::proto::proof::ProofRef;

/// Match slots a mailbox header declares as one commit's in-flight window (recovery's torn-vs-corrupt line for
/// `.mbx` files). Matches per commit are not bounded by the log, so this is a reporting heuristic: 2 MiB.
pub const MAILBOX_IN_FLIGHT_SLOTS: u32 = 65_536;
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
    through: Option<RecordSeq>,
    /// Its writes completed (the next commit may be written).
    written: bool,
    /// It is durable (waits for the commits before it to be reported).
    durable: bool,
    /// It rewrites the journal: the next commit must wait until it is durable (it appends to the new file).
    barrier: bool,
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
            counters: LogCounters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    // ---- appends -------------------------------------------------------------------------------------

    /// Whether `n` more records can be staged (backpressure: the shard stops reading PUBLISH batches until a
    /// commit drains the staging; see `STAGED_RECORDS_MAX`).
    pub fn can_accept(&self, n: u64) -> bool {
        let not_durable = self.next_seq - self.durable_through.map_or(0, |d| d.0 + 1);
        !self.poisoned && not_durable + n <= STAGED_RECORDS_MAX
    }

    /// Stages a proof accepted at `received_at_s` and returns its seq (the engine's `LogPosition`). `now_us` is
    /// the monotonic time used by group commit's delay (only read when nothing was staged).
    pub fn append(&mut self, proof: ProofRef<'_>, received_at_s: u64, now_us: u64) -> Result<RecordSeq, LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        let seq = RecordSeq(self.next_seq);
        // A gap (the next seq was floored past a quarantined file at open) also starts a new segment, since
        // a segment's seqs are its first seq plus the slot.
        let roll = self.roll_requested
            || self.segments.last().is_none_or(|s| {
                s.end_seq() != seq.0
                    || retention::should_roll(
                        s.records.next_slot(),
                        s.header.records_max,
                        s.oldest_received_at_s,
                        received_at_s,
                        self.config.segment_span_s_max,
                    )
            });
        if roll {
            self.roll_requested = false;
            self.open_segment(received_at_s);
        }
        let seg = self.segments.last_mut().expect("a segment was just ensured");
        debug_assert_eq!(seg.end_seq(), seq.0, "seqs are dense within a segment");
        seg.records.push_with(|slot| {
            encode_record(seq, received_at_s, proof, slot.try_into().expect("segment slots are RECORD_LEN bytes"))
        });
        seg.records_valid += 1;
        seg.newest_received_at_s = Some(seg.newest_received_at_s.map_or(received_at_s, |t| t.max(received_at_s)));
        seg.oldest_received_at_s = Some(seg.oldest_received_at_s.map_or(received_at_s, |t| t.min(received_at_s)));
        self.next_seq += 1;
        self.commit.on_staged(1, now_us);
        self.counters.records_appended += 1;
        Ok(seq)
    }

    /// Records that the proof at `seq` matched subscriber `key`. Call it before the next await point after
    /// the append, so the match is in the same commit as its proof (then the ACK covers both).
    pub fn record_match(&mut self, key: SubscriberKey, seq: RecordSeq, now_us: u64) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        if seq.0 >= self.next_seq {
            return Err(LogError::UnknownSeq(seq.0));
        }
        if seq < self.oldest_retained_seq {
            return Ok(()); // its segment is gone; nothing to point at
        }
        // Seqs skipped at open (a gap after a quarantined file) are in no segment: nothing to point at.
        let at = self.segment_index(seq).ok_or(LogError::UnknownSeq(seq.0))?;
        if seq.0 < self.taken_seq {
            // Its record was already taken by a commit: the match rides in the next one.
            self.counters.matches_late += 1;
            self.commit.on_staged(1, now_us);
        }
        let seg = &mut self.segments[at];
        seg.matches.push(&MatchRecord { key, seq }.encode());
        seg.matches_valid += 1;
        self.matches_staged += 1;
        if !self.mailbox.insert(key, seq) {
            self.counters.mailbox_evicted += 1;
        }
        self.counters.matches_recorded += 1;
        Ok(())
    }

    /// Somebody will wait for what is staged now (a ticket holder): commit it within the policy's delay
    /// rather than the unawaited one. Returns whether the committer should re-decide.
    pub fn await_staged(&mut self) -> bool {
        self.commit.on_awaited()
    }

    /// Items (records, late matches, journal records) staged for the next commit.
    pub fn staged_items(&self) -> u64 {
        self.commit.staged()
    }

    /// The seq the next append gets.
    pub fn next_seq(&self) -> RecordSeq {
        RecordSeq(self.next_seq)
    }

    /// The last seq handed out, if any: a PUBLISH whose proofs were all duplicates is acknowledged once this
    /// (as of its processing) is durable, since its originals may still be in flight.
    pub fn last_assigned(&self) -> Option<RecordSeq> {
        self.next_seq.checked_sub(1).map(RecordSeq)
    }

    /// Every seq up to this one is durable (or was a hole found by recovery).
    pub fn durable_through(&self) -> Option<RecordSeq> {
        self.durable_through
    }

    /// Whether `seq` is durable.
    pub fn is_durable(&self, seq: RecordSeq) -> bool {
        self.durable_through.is_some_and(|d| seq <= d)
    }

    /// Whether a commit failed.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    // ---- subscriptions -------------------------------------------------------------------------------

    /// Persists `key`'s entries (replacing the previous ones; empty clears). Durable with the next commit.
    pub fn subscribe(
        &mut self,
        key: SubscriberKey,
        entries: &[SubscribeEntry],
        now_us: u64,
    ) -> Result<u64, SubscriptionError> {
        let before = self.subs.staged_records();
        let generation = self.subs.subscribe(key, entries)?;
        self.commit.on_staged((self.subs.staged_records() - before) as u64, now_us);
        Ok(generation)
    }

    /// The persisted subscriptions (to rebuild the engine's index after a restart).
    pub fn subscriptions(&self) -> &SubscriptionTable {
        &self.subs
    }

    // ---- commits -------------------------------------------------------------------------------------

    /// What the committer should do at `now_us`.
    pub fn decide(&self, now_us: u64) -> CommitDecision {
        if self.poisoned {
            return CommitDecision::Idle;
        }
        if !self.can_take_job() {
            return CommitDecision::InFlight;
        }
        let d = self.commit.decide(now_us);
        if d == CommitDecision::Idle && (self.roll_requested || self.needs_initial_files()) {
            return CommitDecision::CommitNow;
        }
        d
    }

    fn needs_initial_files(&self) -> bool {
        !self.journal_exists || self.segments.iter().any(|s| s.create_log || s.create_mbx)
    }

    /// Whether another commit may start now: not poisoned, fewer than `COMMITS_IN_FLIGHT_MAX` in flight, every
    /// earlier commit's writes completed, and no journal rewrite pending.
    fn can_take_job(&self) -> bool {
        !self.poisoned
            && self.in_flight.len() < COMMITS_IN_FLIGHT_MAX
            && self.in_flight.iter().all(|j| j.written && !j.barrier)
    }

    /// Commits handed out and not yet durable.
    pub fn commits_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// A durability ticket for everything appended or staged so far — records, matches and subscription journal
    /// records: the next job taken carries what is staged (or, with nothing staged, the last job taken carries
    /// the newest items), and jobs become durable in id order.
    pub fn ticket(&self) -> u64 {
        if self.staged_items() > 0 {
            self.next_job_id
        } else {
            self.next_job_id - 1
        }
    }

    /// Whether everything covered by `ticket` is durable. Also true when nothing is staged or in flight at all
    /// (staged items can vanish without a job, e.g. a match whose segment retention deleted meanwhile).
    pub fn is_ticket_durable(&self, ticket: u64) -> bool {
        self.durable_job >= ticket || (self.staged_items() == 0 && self.in_flight.is_empty())
    }

    /// Takes the next commit job, or `None` when another may not start yet (see `COMMITS_IN_FLIGHT_MAX`), the
    /// log is poisoned or nothing is staged.
    pub fn take_job(&mut self, now_s: u64, now_us: u64) -> Option<CommitJob> {
        if !self.can_take_job() {
            return None;
        }
        let id = self.next_job_id;
        let mut job = CommitJob { id, ..CommitJob::default() };
        if !self.journal_exists {
            self.journal_exists = true;
            job.creates.push(FileCreate { file: self.journal_id(), header: self.journal_header(now_s).encode() });
        }
        if self.roll_requested {
            self.roll_requested = false;
            self.open_segment(now_s);
        }
        job.records = self.next_seq - self.taken_seq;
        if job.records > 0 {
            job.through = Some(RecordSeq(self.next_seq - 1));
        }
        self.taken_seq = self.next_seq;
        job.matches = std::mem::take(&mut self.matches_staged);
        self.take_journal(&mut job, now_s);
        self.collect_segment_writes(&mut job);
        if job.creates.is_empty() && job.writes.is_empty() && job.journal_rewrite.is_none() {
            // Nothing staged after all (e.g. a match whose segment was deleted): forget the count so the
            // committer does not keep deciding to commit nothing.
            self.commit.clear();
            return None;
        }
        // Everything staged goes into this job.
        self.commit.start(self.commit.staged(), now_us);
        self.next_job_id += 1;
        let barrier = job.journal_rewrite.is_some();
        self.in_flight.push_back(InFlight { id, through: job.through, written: false, durable: false, barrier });
        Some(job)
    }

    fn take_journal(&mut self, job: &mut CommitJob, now_s: u64) {
        job.journal_records = self.subs.staged_records() as u64;
        if self.subs.needs_compaction() {
            let replaces = Some(self.journal_id());
            self.journal_file_seq += 1;
            let writes = self.subs.compact();
            job.journal_rewrite = Some(JournalRewrite {
                file: self.journal_id(),
                header: self.journal_header(now_s).encode(),
                writes,
                replaces,
            });
            self.counters.journal_compactions += 1;
            return;
        }
        let file = self.journal_id();
        job.writes.extend(self.subs.take_writes().into_iter().map(|write| FileWrite { file, write }));
    }

    fn collect_segment_writes(&mut self, job: &mut CommitJob) {
        let file_len_max = self.config.segment_file_len_max();
        for seg in &mut self.segments {
            let log = FileId { kind: FileKind::Segment, file_seq: seg.header.file_seq };
            let mbx = FileId { kind: FileKind::Mailbox, file_seq: seg.header.file_seq };
            if std::mem::take(&mut seg.create_log) {
                job.creates.push(FileCreate { file: log, header: seg.header.encode() });
            }
            if std::mem::take(&mut seg.create_mbx) {
                job.creates.push(FileCreate { file: mbx, header: mailbox_header(&seg.header).encode() });
            }
            for write in seg.records.take_writes() {
                grow(&mut seg.log_allocated, &write, SEGMENT_PREALLOC_BYTES, file_len_max, log, job);
                job.writes.push(FileWrite { file: log, write });
            }
            for write in seg.matches.take_writes() {
                grow(&mut seg.mbx_allocated, &write, MAILBOX_PREALLOC_BYTES, u64::MAX, mbx, job);
                job.writes.push(FileWrite { file: mbx, write });
            }
        }
    }

    /// Opens a new active segment starting at the next unplaced seq (its files are created by the job).
    fn open_segment(&mut self, now_s: u64) {
        let file_seq = self.segments.last().map_or(0, |s| s.header.file_seq + 1);
        let header = FileHeader {
            kind: FileKind::Segment,
            record_len: RECORD_LEN as u32,
            shard: self.config.shard,
            created_at_s: now_s,
            file_seq,
            first_record_seq: self.next_seq,
            records_max: self.config.segment_records_max,
            in_flight_slots_max: self.config.segment_in_flight_slots(),
            bloom_m_bits: 0,
            bloom_k: 0,
        };
        let header_len = super::format::HEADER_LEN as u64;
        self.segments.push(SegmentState {
            header,
            records: BlockAppender::new(self.config.segment_layout(), 0, None),
            matches: BlockAppender::new(SlotLayout::new(MATCH_RECORD_LEN), 0, None),
            log_allocated: header_len,
            mbx_allocated: header_len,
            create_log: true,
            create_mbx: true,
            newest_received_at_s: None,
            oldest_received_at_s: None,
            records_valid: 0,
            matches_valid: 0,
        });
        self.counters.segments_created += 1;
    }

    fn journal_id(&self) -> FileId {
        FileId { kind: FileKind::Journal, file_seq: self.journal_file_seq }
    }

    fn journal_header(&self, now_s: u64) -> FileHeader {
        FileHeader {
            kind: FileKind::Journal,
            record_len: self.subs.record_len() as u32,
            shard: self.config.shard,
            created_at_s: now_s,
            file_seq: self.journal_file_seq,
            first_record_seq: 0,
            records_max: 0,
            in_flight_slots_max: JOURNAL_STAGED_RECORDS_MAX,
            bloom_m_bits: self.config.bloom.m_bits,
            bloom_k: self.config.bloom.k,
        }
    }

    /// The writes of job `id` completed: the next job may be written (its fdatasync overlaps this one's).
    pub fn job_written(&mut self, id: u64) {
        if let Some(j) = self.in_flight.iter_mut().find(|j| j.id == id) {
            j.written = true;
        }
    }

    /// The job `id` is durable. Seqs become durable in job order: a job that finishes before an earlier one
    /// is reported when the earlier one finishes too.
    pub fn complete_job(&mut self, id: u64, job_bytes: u64) {
        let j = self.in_flight.iter_mut().find(|j| j.id == id).expect("complete_job for a job in flight");
        j.written = true;
        j.durable = true;
        while self.in_flight.front().is_some_and(|j| j.durable) {
            let j = self.in_flight.pop_front().expect("front checked");
            self.durable_job = j.id;
            if let Some(t) = j.through {
                self.counters.records_durable += t.0 + 1 - self.durable_through.map_or(0, |d| d.0 + 1);
                self.durable_through = Some(t);
            }
            self.counters.commits += 1;
        }
        self.counters.bytes_written += job_bytes;
    }

    /// The job `id` failed: nothing more is written; the shard must be reopened (recovery decides what
    /// survived). Jobs still in flight will not be reported durable either.
    pub fn fail_job(&mut self, id: u64) {
        debug_assert!(self.in_flight.iter().any(|j| j.id == id));
        self.in_flight.clear();
        self.poisoned = true;
        self.counters.commits_failed += 1;
    }

    // ---- reads ---------------------------------------------------------------------------------------

    fn segment_index(&self, seq: RecordSeq) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.first_seq() <= seq.0).checked_sub(1)?;
        (seq.0 < self.segments[i].end_seq()).then_some(i)
    }

    /// Where the placed record `seq` is (`None`: deleted, not yet placed, or never assigned).
    pub fn locate(&self, seq: RecordSeq) -> Option<RecordLocation> {
        let seg = &self.segments[self.segment_index(seq)?];
        let slot = seq.0 - seg.first_seq();
        Some(RecordLocation { seq, file_seq: seg.header.file_seq, offset: seg.records.layout().slot_offset(slot) })
    }

    /// Every segment's `(file_seq, first seq, end seq)`, oldest first (for reading everything back).
    pub fn segment_ranges(&self) -> Vec<(u64, RecordSeq, RecordSeq)> {
        self.segments.iter().map(|s| (s.header.file_seq, RecordSeq(s.first_seq()), RecordSeq(s.end_seq()))).collect()
    }

    /// Plans one FETCH page for `key` from `cursor`; when the page is not empty its new position is stored
    /// under `next_token` (chosen by the caller, non-zero, the same on every shard for one FETCH) and
    /// persisted with the next commit.
    pub fn fetch(
        &mut self,
        key: SubscriberKey,
        cursor: u64,
        next_token: u64,
        proofs_max: usize,
        now_us: u64,
    ) -> FetchPlan {
        let state: CursorState = self.subs.get(&key).map(|s| s.cursor).unwrap_or_default();
        let start = state.resolve(cursor).max(self.oldest_retained_seq);
        let max = proofs_max.clamp(1, FETCH_PAGE_MAX);
        let page = self.mailbox.page(&key, start, self.durable_through, max);
        self.counters.fetches += 1;
        debug_assert!(next_token != 0, "token 0 means 'from the oldest'");
        if page.seqs.is_empty() {
            // Remember `next_token` here too, at the same position: on a relay with several shards, the reply
            // carries it whenever another shard's page was not empty, and a shard that did not know it would
            // start over from its oldest entry — and two shards could keep restarting each other forever.
            // (Only for a known subscriber: a FETCH for an unknown id creates no state.)
            if self.subs.get(&key).is_some() {
                self.subs.set_cursor(key, state.advance(cursor, start, next_token, start));
                self.commit.on_staged(1, now_us);
            }
            return FetchPlan { reads: Vec::new(), next_cursor: cursor, more: false };
        }
        self.subs.set_cursor(key, state.advance(cursor, start, next_token, page.next_pos));
        self.commit.on_staged(1, now_us);
        let reads = page.seqs.iter().filter_map(|&s| self.locate(s)).collect();
        FetchPlan { reads, next_cursor: next_token, more: page.more }
    }

    /// Counts what a FETCH read: `served` records returned, `skipped` failing verification (never served).
    pub fn note_fetch_reads(&mut self, served: u64, skipped: u64) {
        self.counters.fetch_records_served += served;
        self.counters.fetch_records_skipped_corrupt += skipped;
    }

    // ---- retention -----------------------------------------------------------------------------------

    /// What retention would do at `now_s`.
    pub fn plan_retention(&self, now_s: u64) -> RetentionPlan {
        let n = self.segments.len();
        let summaries: Vec<SegmentSummary> =
            self.segments.iter().enumerate().map(|(i, s)| s.summary(i + 1 == n)).collect();
        let mut plan = retention::plan(&summaries, now_s, self.config.retention_s);
        if summaries.is_empty() {
            plan.oldest_retained_seq = RecordSeq(self.next_seq);
        }
        plan
    }

    /// Asks the next commit to start a new segment (so an expired active segment can be deleted).
    pub fn request_roll(&mut self) {
        self.roll_requested = true;
    }

    /// Drops the planned segments from the state and trims the mailboxes; returns the files to delete.
    /// Call between commits (no job in flight), after `plan_retention` at the same state.
    pub fn apply_retention(&mut self, plan: &RetentionPlan) -> Vec<FileId> {
        assert!(self.in_flight.is_empty(), "retention runs between commits");
        let mut files = Vec::new();
        let n = plan.delete.len().min(self.segments.len().saturating_sub(1));
        for seg in self.segments.drain(..n) {
            debug_assert!(plan.delete.contains(&seg.header.file_seq));
            self.counters.segments_deleted += 1;
            self.counters.records_deleted += seg.records_valid;
            self.counters.match_records_deleted += seg.matches_valid;
            files.push(FileId { kind: FileKind::Segment, file_seq: seg.header.file_seq });
            files.push(FileId { kind: FileKind::Mailbox, file_seq: seg.header.file_seq });
        }
        if let Some(first) = self.segments.first() {
            self.oldest_retained_seq = RecordSeq(first.first_seq());
        }
        self.mailbox.trim_below(self.oldest_retained_seq);
        files
    }

    /// Drops subscription entries that can no longer match (their last window ended before the previous
    /// window at `now_s`) and subscribers left with neither entries nor mailbox entries.
    pub fn expire_subscriptions(&mut self, now_s: u64) -> u64 {
        let w = self.config.shard.window_s.max(1) as u64;
        let expire_before = crate::proto::derive::window_start(now_s, w).saturating_sub(w);
        let mailbox = &self.mailbox;
        let n = self.subs.expire(expire_before, |k| mailbox.contains_key(k));
        self.counters.subscription_entries_expired += n;
        n
    }

    /// Counters so far.
    pub fn counters(&self) -> LogCounters {
        let mut c = self.counters;
        c.mailbox_entries = self.mailbox.total();
        c.segments = self.segments.len() as u64;
        c.subscribers = self.subs.len() as u64;
        c.staged_records = self.next_seq - self.taken_seq;
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

/// Adds a preallocation when `write` ends past `allocated` (in steps of `step`, capped at `cap`).
fn grow(allocated: &mut u64, write: &BlockWrite, step: u64, cap: u64, file: FileId, job: &mut CommitJob) {
    let end = write.offset + write.bytes.len() as u64;
    if end <= *allocated {
        return;
    }
    let len = end.div_ceil(step).saturating_mul(step).min(cap).max(end);
    *allocated = len;
    job.preallocs.push(Prealloc { file, len });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::commit::{GroupCommitPolicy, UNAWAITED_DELAY_US_MAX};
    use crate::log::format::ShardParams;
    use crate::log::scan::verify;
    use crate::proto::params::CIPHERTEXT_LEN;
    use crate::proto::proof::Proof;

    fn config() -> LogConfig {
        let mut c = LogConfig::new(ShardParams::for_shard(0, 1, 64, 10));
        c.segment_records_max = 14;
        c
    }

    fn proof(i: u64) -> Proof {
        Proof::new(1, 1_000, &[i as u8; 32], &[0; 8], &[9; CIPHERTEXT_LEN])
    }

    /// Applies a job's segment writes to an in-memory "disk" and completes it.
    fn run(state: &mut LogState, now_s: u64, disk: &mut std::collections::HashMap<FileId, Vec<u8>>) -> CommitJob {
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

    #[test]
    fn first_job_creates_journal_segment_and_mailbox() {
        let mut s = LogState::new(config()).unwrap();
        assert_eq!(s.decide(0), CommitDecision::CommitNow, "initial files are due");
        s.append(proof(0).view(), 100, 0).unwrap();
        let mut disk = Default::default();
        let job = run(&mut s, 100, &mut disk);
        let created: Vec<FileKind> = job.creates.iter().map(|c| c.file.kind).collect();
        assert_eq!(created, vec![FileKind::Journal, FileKind::Segment, FileKind::Mailbox]);
        assert_eq!(job.through, Some(RecordSeq(0)));
        assert!(job.needs_dir_sync());
        assert_eq!(
            job.preallocs,
            vec![Prealloc { file: FileId { kind: FileKind::Segment, file_seq: 0 }, len: 3 * 4096 }]
        );
        assert_eq!(s.durable_through(), Some(RecordSeq(0)));
        assert_eq!(s.decide(1), CommitDecision::Idle);
    }

    #[test]
    fn seqs_are_dense_across_rolled_segments_and_records_verify_in_place() {
        let mut s = LogState::new(config()).unwrap();
        let mut disk = Default::default();
        for i in 0..30 {
            assert_eq!(s.append(proof(i).view(), 100, 0).unwrap(), RecordSeq(i));
        }
        run(&mut s, 100, &mut disk);
        assert_eq!(
            s.segment_ranges(),
            vec![
                (0, RecordSeq(0), RecordSeq(14)),
                (1, RecordSeq(14), RecordSeq(28)),
                (2, RecordSeq(28), RecordSeq(30)),
            ]
        );
        for i in [0u64, 13, 14, 29] {
            let loc = s.locate(RecordSeq(i)).unwrap();
            let f = &disk[&FileId { kind: FileKind::Segment, file_seq: loc.file_seq }];
            let slot: &[u8; RECORD_LEN] = f[loc.offset as usize..loc.offset as usize + RECORD_LEN].try_into().unwrap();
            let v = verify(slot, RecordSeq(i)).unwrap();
            assert_eq!(v.proof.commit(), &[i as u8; 32]);
        }
        assert_eq!(s.locate(RecordSeq(30)), None);
    }

    #[test]
    fn matches_land_in_the_mailbox_of_their_records_segment() {
        let mut s = LogState::new(config()).unwrap();
        let mut disk = Default::default();
        let k = SubscriberKey([1; 16]);
        for i in 0..16 {
            s.append(proof(i).view(), 100, 0).unwrap();
        }
        s.record_match(k, RecordSeq(3), 0).unwrap();
        s.record_match(k, RecordSeq(15), 0).unwrap();
        assert_eq!(s.record_match(k, RecordSeq(16), 0), Err(LogError::UnknownSeq(16)));
        let job = run(&mut s, 100, &mut disk);
        assert_eq!(job.matches, 2);
        let mbx0 = &disk[&FileId { kind: FileKind::Mailbox, file_seq: 0 }];
        let mbx1 = &disk[&FileId { kind: FileKind::Mailbox, file_seq: 1 }];
        assert_eq!(MatchRecord::decode(mbx0[4096..4128].try_into().unwrap(), 0..14).unwrap().seq, RecordSeq(3));
        assert_eq!(MatchRecord::decode(mbx1[4096..4128].try_into().unwrap(), 14..28).unwrap().seq, RecordSeq(15));
        // A late match (its record already committed) triggers a commit of its own.
        s.record_match(SubscriberKey([2; 16]), RecordSeq(4), 5).unwrap();
        assert_eq!(s.counters().matches_late, 1);
        s.await_staged();
        assert_eq!(s.decide(5 + GroupCommitPolicy::DELAY_US_MAX_DEFAULT), CommitDecision::CommitNow);
        let job = run(&mut s, 100, &mut disk);
        assert_eq!((job.matches, job.records), (1, 0));
    }

    #[test]
    fn fetch_pages_advance_the_cursor_and_only_serve_durable_records() {
        let mut s = LogState::new(config()).unwrap();
        let mut disk = Default::default();
        let k = SubscriberKey([1; 16]);
        for i in 0..10 {
            s.append(proof(i).view(), 100, 0).unwrap();
            if i % 3 == 0 {
                s.record_match(k, RecordSeq(i), 0).unwrap();
            }
        }
        let p = s.fetch(k, 0, 11, 2, 0);
        assert_eq!(p, FetchPlan { reads: vec![], next_cursor: 0, more: false }, "nothing durable yet");
        run(&mut s, 100, &mut disk);
        let p = s.fetch(k, 0, 11, 2, 0);
        assert_eq!(p.reads.iter().map(|r| r.seq.0).collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!((p.next_cursor, p.more), (11, true));
        let p2 = s.fetch(k, 11, 12, 2, 0);
        assert_eq!(p2.reads.iter().map(|r| r.seq.0).collect::<Vec<_>>(), vec![6, 9]);
        assert_eq!((p2.next_cursor, p2.more), (12, false));
        // The reply with cursor 12 was lost: asking again with 11 replays the same page.
        let p3 = s.fetch(k, 11, 13, 2, 0);
        assert_eq!(p3.reads, p2.reads);
        let p4 = s.fetch(k, 13, 14, 2, 0);
        assert_eq!((p4.reads.len(), p4.next_cursor), (0, 13), "empty page keeps the cursor");
        assert_eq!(s.counters().fetches, 5);
        // Another shard's page was not empty, so the client continues with 14: this shard knows it and
        // stays at its end instead of starting over; the cursor it was given (13) still resolves too.
        let p5 = s.fetch(k, 14, 15, 2, 0);
        assert_eq!((p5.reads.len(), p5.more), (0, false), "a token handed out with an empty page is known");
        let p6 = s.fetch(k, 14, 16, 2, 0);
        assert_eq!(p6.reads.len(), 0, "and the one before it");
        // A FETCH for an id this shard has never seen creates no state.
        let stranger = SubscriberKey([9; 16]);
        s.fetch(stranger, 0, 17, 2, 0);
        assert!(s.subscriptions().get(&stranger).is_none());
    }

    #[test]
    fn retention_rolls_then_deletes_and_trims_mailboxes() {
        let mut s = LogState::new(config()).unwrap();
        let mut disk = Default::default();
        let k = SubscriberKey([1; 16]);
        for i in 0..20 {
            s.append(proof(i).view(), 100 + i, 0).unwrap();
            s.record_match(k, RecordSeq(i), 0).unwrap();
        }
        run(&mut s, 120, &mut disk);
        // Segment 0 holds seqs 0..14 (newest received 113), segment 1 holds 14..20 (newest 119).
        let plan = s.plan_retention(113 + 3_600);
        assert_eq!((plan.delete.clone(), plan.roll_active, plan.oldest_retained_seq), (vec![0], false, RecordSeq(14)));
        let files = s.apply_retention(&plan);
        assert_eq!(files.len(), 2);
        assert_eq!(s.mailbox().len_of(&k), 6);
        assert_eq!(s.counters().records_deleted, 14);
        assert_eq!(s.counters().match_records_deleted, 14);
        assert_eq!(s.locate(RecordSeq(5)), None);
        // Everything old: the active segment must roll before it can go.
        let plan = s.plan_retention(119 + 3_600);
        assert!(plan.roll_active && plan.delete.is_empty());
        s.request_roll();
        assert_eq!(s.decide(0), CommitDecision::CommitNow);
        let job = run(&mut s, 4_000, &mut disk);
        assert_eq!(job.creates.len(), 2);
        let plan = s.plan_retention(119 + 3_600);
        assert_eq!((plan.delete.clone(), plan.oldest_retained_seq), (vec![1], RecordSeq(20)));
        s.apply_retention(&plan);
        assert_eq!(s.mailbox().total(), 0);
        assert_eq!(s.segment_ranges(), vec![(2, RecordSeq(20), RecordSeq(20))]);
        assert_eq!(s.append(proof(0).view(), 4_000, 0).unwrap(), RecordSeq(20), "seqs continue");
    }

    #[test]
    fn segments_roll_by_age() {
        let mut c = config();
        c.segment_records_max = 1_000;
        let c = c.with_retention_s(80); // span 10 s
        let mut s = LogState::new(c).unwrap();
        let mut disk = Default::default();
        for t in [0, 5, 9, 10, 12, 25] {
            s.append(proof(t).view(), t, 0).unwrap();
        }
        run(&mut s, 30, &mut disk);
        let firsts: Vec<u64> = s.segment_ranges().iter().map(|r| r.1 .0).collect();
        assert_eq!(firsts, vec![0, 3, 5]);
    }

    #[test]
    fn staging_is_bounded_and_commits_run_one_at_a_time() {
        let mut c = config();
        c.segment_records_max = 100_000;
        let mut s = LogState::new(c).unwrap();
        for i in 0..STAGED_RECORDS_MAX - 5 {
            s.append(proof(i).view(), 0, 0).unwrap();
        }
        assert!(s.can_accept(5) && !s.can_accept(6), "backpressure at STAGED_RECORDS_MAX");
        let job = s.take_job(0, 0).unwrap();
        assert_eq!(job.records, STAGED_RECORDS_MAX - 5);
        assert!(!s.can_accept(6), "records in flight still count until durable");
        for i in 0..5 {
            s.append(proof(i).view(), 0, 7).unwrap();
        }
        assert!(s.take_job(0, 0).is_none(), "the first commit is still writing");
        assert_eq!(s.decide(0), CommitDecision::InFlight);
        s.complete_job(job.id, 0);
        assert!(s.can_accept(STAGED_RECORDS_MAX - 5));
        assert_eq!(s.decide(7), CommitDecision::WaitUntil(7 + UNAWAITED_DELAY_US_MAX), "nobody waits yet");
        s.await_staged();
        assert_eq!(s.decide(7), CommitDecision::WaitUntil(7 + GroupCommitPolicy::DELAY_US_MAX_DEFAULT));
        let job = s.take_job(0, 0).unwrap();
        assert_eq!((job.records, job.through), (5, Some(RecordSeq(STAGED_RECORDS_MAX - 1))));
        s.fail_job(job.id);
        assert!(s.is_poisoned());
        assert_eq!(s.append(proof(0).view(), 0, 0), Err(LogError::Poisoned));
        assert!(!s.can_accept(1));
    }

    #[test]
    fn two_commits_overlap_and_become_durable_in_order() {
        let mut s = LogState::new(config()).unwrap();
        s.append(proof(0).view(), 100, 0).unwrap();
        let a = s.take_job(100, 0).unwrap();
        s.append(proof(1).view(), 100, 10).unwrap();
        s.await_staged();
        assert_eq!(s.decide(10_000), CommitDecision::InFlight, "a is still writing");
        s.job_written(a.id);
        assert_eq!(s.decide(10_000), CommitDecision::CommitNow);
        let b = s.take_job(100, 10_000).unwrap();
        s.append(proof(2).view(), 100, 20).unwrap();
        s.await_staged();
        s.job_written(b.id);
        assert_eq!(s.decide(20_000), CommitDecision::InFlight, "two in flight at most");
        // b's fdatasync returns first: nothing is reported until a is durable too.
        s.complete_job(b.id, 0);
        assert_eq!(s.durable_through(), None);
        s.complete_job(a.id, 0);
        assert_eq!(s.durable_through(), Some(RecordSeq(1)));
        assert_eq!(s.counters().commits, 2);
        assert_eq!(s.decide(20_000), CommitDecision::CommitNow);
    }

    #[test]
    fn a_journal_rewrite_is_a_barrier() {
        use crate::log::subscriptions::COMPACTION_SLACK_RECORDS;
        let mut s = LogState::new(config()).unwrap();
        for _ in 0..COMPACTION_SLACK_RECORDS + 10 {
            s.subscribe(SubscriberKey([1; 16]), &[], 0).unwrap();
        }
        let job = s.take_job(0, 0).unwrap();
        assert!(job.journal_rewrite.is_some());
        s.job_written(job.id);
        s.subscribe(SubscriberKey([2; 16]), &[], 0).unwrap();
        assert!(s.take_job(0, 1_000).is_none(), "the next commit appends to the new journal: wait for it");
        s.complete_job(job.id, 0);
        assert!(s.take_job(0, 1_000).is_some());
    }

    #[test]
    fn a_match_into_a_deleted_segment_does_not_leave_a_phantom_commit() {
        let mut s = LogState::new(config()).unwrap();
        let mut disk = Default::default();
        for i in 0..20 {
            s.append(proof(i).view(), 100, 0).unwrap();
        }
        run(&mut s, 100, &mut disk);
        // A late match for seq 3 is staged, then retention deletes its segment before the next commit.
        s.record_match(SubscriberKey([1; 16]), RecordSeq(3), 0).unwrap();
        let plan = s.plan_retention(100 + 3_600);
        assert_eq!(plan.delete, vec![0]);
        s.apply_retention(&plan);
        s.await_staged();
        assert_eq!(s.decide(1_000), CommitDecision::CommitNow);
        assert!(s.take_job(100, 1_000).is_none());
        assert_eq!(s.decide(1_000), CommitDecision::Idle, "nothing left to commit");
    }

    #[test]
    fn subscriptions_are_journaled_with_the_commit() {
        use crate::proto::bloom::{BloomFilter, BloomParams};
        let mut s = LogState::new(config()).unwrap();
        let mut disk = Default::default();
        let e = SubscribeEntry {
            bucket: 3,
            window_from_s: 0,
            window_to_s: 50,
            filter: BloomFilter::new(BloomParams::default()),
        };
        s.subscribe(SubscriberKey([4; 16]), &[e.clone(), e], 0).unwrap();
        let job = run(&mut s, 0, &mut disk);
        assert_eq!(job.journal_records, 2);
        let journal = &disk[&FileId { kind: FileKind::Journal, file_seq: 0 }];
        assert_eq!(journal.len(), 8192);
        assert_eq!(s.expire_subscriptions(1_000), 2);
        assert!(s.subscriptions().is_empty());
    }
}
