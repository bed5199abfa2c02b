//! The write side of [`LogState`]: appends, matches and subscriptions are staged into block images, and
//! group commit turns what is staged into [`CommitJob`]s for the driver.
//!
//! ```text
//! append(proof) ───────▶ segment block image (+ open_segment on roll) ──┐
//! record_match(key,seq) ▶ that segment's .mbx image + mailbox index ────┼─ decide(now) ─▶ take_job ─▶ CommitJob
//! subscribe(key, ..) ──▶ journal records ───────────────────────────────┘        (creates, writes, preallocs,
//!                                                                                  journal rewrite)
//! driver: job_written(id) ─▶ the next job may be taken (at most COMMITS_IN_FLIGHT_MAX in flight)
//!         complete_job(id) ─▶ durable_through advances in job order ─▶ tickets durable
//!         fail_job(id) ─────▶ poisoned: nothing more is accepted or written
//!         stall_job(id) ────▶ parked until a retry succeeds (storage full: stall.rs)
//! ```

use super::{
    mailbox_header, InFlight, LogError, LogState, SegmentState, COMMITS_IN_FLIGHT_MAX, MATCHES_PER_STAGED_ITEM,
    STAGED_MATCHES_MAX,
};
use crate::log::commit::CommitDecision;
use crate::log::config::{MAILBOX_PREALLOC_BYTES, SEGMENT_PREALLOC_BYTES, STAGED_RECORDS_MAX};
use crate::log::format::{FileHeader, FileKind};
use crate::log::job::{CommitJob, FileCreate, FileId, FileWrite, JournalRewrite, Prealloc};
use crate::log::layout::{BlockAppender, BlockWrite, SlotLayout};
use crate::log::mailbox::{MatchRecord, SubscriberKey, MATCH_RECORD_LEN};
use crate::log::record::{encode_record, RecordSeq, RECORD_LEN};
use crate::log::retention;
use crate::log::subscriptions::{SubscriptionError, SubscriptionTable, JOURNAL_STAGED_RECORDS_MAX};
use crate::proto::frame::SubscribeEntry;
use crate::proto::proof::ProofRef;

impl LogState {
    // ---- appends -------------------------------------------------------------------------------------

    /// Whether `n` more records can be staged (backpressure: the shard stops reading PUBLISH batches until a
    /// commit drains the staging; see `STAGED_RECORDS_MAX`) — and whether the match records not yet durable
    /// are under `STAGED_MATCHES_MAX` (their number per proof is not known before the batch is matched).
    pub fn can_accept(&self, n: u64) -> bool {
        let not_durable = self.next_seq - self.durable_through.map_or(0, |d| d.0 + 1);
        !self.poisoned && not_durable + n <= STAGED_RECORDS_MAX && self.matches_not_durable() < STAGED_MATCHES_MAX
    }

    /// Match records staged or in flight, not yet durable.
    pub fn matches_not_durable(&self) -> u64 {
        self.matches_staged + self.in_flight.iter().map(|j| j.matches).sum::<u64>()
    }

    /// Stages a proof accepted at `received_at_s` and returns its seq. `now_us` is
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
        self.matches_staged += 1;
        if seq.0 < self.taken_seq {
            // Its record was already taken by a commit: the match rides in the next one.
            self.counters.matches_late += 1;
            self.commit.on_staged(1, now_us);
        } else if self.matches_staged.is_multiple_of(MATCHES_PER_STAGED_ITEM) {
            // Matches ride with their record, but many of them fill a commit too: group commit's "batch full"
            // then fires before STAGED_MATCHES_MAX stops the routing, rather than after its delay.
            self.commit.on_staged(1, now_us);
        }
        let seg = &mut self.segments[at];
        seg.matches.push(&MatchRecord { key, seq }.encode());
        seg.matches_valid += 1;
        if !self.mailbox.insert(key, seq) {
            self.counters.mailbox_evicted += 1;
        }
        self.counters.matches_recorded += 1;
        Ok(())
    }

    /// [`LogState::record_match`] unless `key` already has `seq` (a late SUBSCRIBE re-matching what a live entry
    /// or an earlier late match recorded): late matching is idempotent, and writes no duplicate match records.
    /// Returns whether it was new.
    pub fn record_match_if_new(&mut self, key: SubscriberKey, seq: RecordSeq, now_us: u64) -> Result<bool, LogError> {
        if self.mailbox.contains(&key, seq) {
            return Ok(false);
        }
        self.record_match(key, seq, now_us).map(|()| true)
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
        if let Some(stalled) = self.stall_decision(now_us) {
            return stalled;
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
            && self.stall.is_none()
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
    /// (staged items can vanish without a job, e.g. a match whose segment retention deleted meanwhile) — but
    /// never after a failed commit: `fail_job` empties the in-flight list, and what that job carried is not
    /// known to be durable (found by tests/server_shard.rs: an ACK was released for a proof whose commit failed).
    pub fn is_ticket_durable(&self, ticket: u64) -> bool {
        self.durable_job >= ticket || (!self.poisoned && self.staged_items() == 0 && self.in_flight.is_empty())
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
        let from = std::mem::replace(&mut self.taken_seq, self.next_seq);
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
        let through = job.through;
        let matches = job.matches;
        self.in_flight.push_back(InFlight {
            id,
            from,
            through,
            written: false,
            durable: false,
            barrier,
            matches,
            parked: false,
        });
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
        let header_len = crate::log::format::HEADER_LEN as u64;
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
        if self.park_if_behind_parked(id) {
            return;
        }
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
        self.end_stall_if_clear();
    }

    /// The job `id` failed: nothing more is written; the shard must be reopened (recovery decides what
    /// survived). Jobs still in flight will not be reported durable either.
    pub fn fail_job(&mut self, id: u64) {
        debug_assert!(self.in_flight.iter().any(|j| j.id == id));
        self.in_flight.clear();
        self.poisoned = true;
        self.counters.commits_failed += 1;
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
    use crate::log::scan::verify;
    use crate::log::state::test_support::{config, proof, run};

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
    fn match_records_count_toward_the_staging_bound_until_durable() {
        use crate::log::state::{MATCHES_PER_STAGED_ITEM, STAGED_MATCHES_MAX};
        let mut s = LogState::new(config()).unwrap();
        s.append(proof(0).view(), 0, 0).unwrap();
        // One proof matching many subscribers: the records bound alone would keep accepting.
        for i in 0..STAGED_MATCHES_MAX - 1 {
            s.record_match(SubscriberKey((i as u128).to_be_bytes()), RecordSeq(0), 0).unwrap();
        }
        assert!(s.can_accept(1), "one match below the bound");
        assert_eq!(s.staged_items(), 1 + (STAGED_MATCHES_MAX - 1) / MATCHES_PER_STAGED_ITEM, "matches fill a commit");
        assert_eq!(s.decide(0), CommitDecision::CommitNow, "a batch full of matches commits at once");
        s.record_match(SubscriberKey([0xEE; 16]), RecordSeq(0), 0).unwrap();
        assert!(!s.can_accept(1), "backpressure at STAGED_MATCHES_MAX");
        let job = s.take_job(0, 0).unwrap();
        assert_eq!(job.matches, STAGED_MATCHES_MAX);
        assert!(!s.can_accept(1), "matches in flight still count until durable");
        s.job_written(job.id);
        s.complete_job(job.id, 0);
        assert!(s.can_accept(1));
        assert_eq!(s.matches_not_durable(), 0);
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
