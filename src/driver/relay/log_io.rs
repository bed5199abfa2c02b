//! One shard's durable log on glommio: the thin I/O layer around the pure [`LogState`].
//!
//! ```text
//!  engine (LogSink) ─ append ─┐                                   ┌─ wait_durable(seq) ─▶ server sends ACK
//!  server ─ record_match ─────┤   Rc<Inner> (one executor,        │
//!         ─ subscribe ────────┼─▶ RefCell<LogState>, never        │
//!         ─ fetch ────────────┘   borrowed across an await)       │
//!                                   │ staged signal                │ progress signal
//!  committer task (run_committer) ──┴─ decide(now): N records or D µs ─ take_job ─▶ job task:
//!      create/fallocate/write (DMA, io_uring) ─▶ job_written (the next job may now be written)
//!      ─▶ fdatasync every touched file (concurrently) ─▶ directory sync if files were created
//!      ─▶ complete_job (seqs durable in job order) ──────────────────────────────────────────────────┘
//!  retention task (apply_retention(now_s), e.g. every 10 s) ─▶ roll / delete whole segments + .mbx
//! ```
//!
//! Up to two commits are in flight: the next one is written as soon as the previous one's writes complete
//! (it rewrites the block that one ended in), so its write overlaps the previous fdatasync instead of
//! waiting for it; seqs are reported durable in commit order.
//!
//! Failure is fail-stop: if a write or fdatasync fails, the job's outcome on disk is unknown (Linux may drop
//! the dirty state after a failed fsync), so the log is poisoned: no further appends, waiters get an error,
//! and the shard must restart — recovery then decides what survived. Nothing is acknowledged that was not
//! durable.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use glommio::io::DmaFile;
use glommio::sync::Semaphore;

use super::epoch_signal::EpochSignal;
use super::log_files::{self as files, ctx, FileError};
use super::log_open::{self, TMP_SUFFIX};
use crate::driver::clock::unix_now_s;
use crate::log::commit::CommitDecision;
use crate::log::job::{CommitJob, FileId};
use crate::log::mailbox::SubscriberKey;
use crate::log::record::{decode_record, is_blank, LogRecord, RecordSeq, RECORD_LEN};
use crate::log::recovery::{self, OpenError, RecoveryReport};
use crate::log::scan::verify;
use crate::log::state::{LogError, LogState, COMMITS_IN_FLIGHT_MAX};
use crate::log::subscriptions::{SubscriberState, SubscriptionError};
use crate::log::{FileKind, LogConfig, LogCounters, BLOCK_LEN};
use crate::proto::frame::SubscribeEntry;
use crate::proto::proof::ProofRef;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogIoError {
    /// A file operation failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// The directory holds a log this configuration must not serve.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The pure log refused (poisoned, unknown seq).
    #[error(transparent)]
    Log(#[from] LogError),
    /// A staged write failed its CRC check just before being written (a memory or logic error: nothing of
    /// it reached the disk).
    #[error("pair check before write failed in {file}: {detail}")]
    PairCheck {
        /// File name.
        file: String,
        /// What failed.
        detail: String,
    },
}

/// Outcome of trying to start a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// A job was taken and is running.
    Started,
    /// None may start now (commits in flight must progress, or retention holds the slots).
    Busy,
    /// Nothing to commit and nothing in flight.
    Nothing,
}

/// One FETCH page as read from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPage {
    /// Records, ascending seq; each passed its CRC and position check after the read.
    pub records: Vec<LogRecord>,
    /// Cursor to return to the subscriber.
    pub next_cursor: u64,
    /// Whether more matches are waiting.
    pub more: bool,
    /// Matches whose record failed verification (skipped, never served; counted).
    pub skipped: u64,
}

/// What one retention pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted (each with its `.mbx`).
    pub segments_deleted: u64,
    /// Whether the active segment was rolled to let it expire.
    pub rolled: bool,
    /// First seq still retained.
    pub oldest_retained_seq: RecordSeq,
    /// Subscription entries expired.
    pub subscription_entries_expired: u64,
}

/// Where to keep the log and how.
#[derive(Clone, Debug)]
pub struct LogIoConfig {
    /// This shard's directory (`<storage>/shard-NNN`, see [`shard_dir`]).
    pub dir: PathBuf,
    /// The log's knobs.
    pub log: LogConfig,
    /// Extra windows of clock skew the engine accepts (widens the dedup state rebuilt at open).
    pub dedup_skew_windows: u64,
}

/// `<storage>/shard-NNN`: each shard's files live in their own directory.
pub fn shard_dir(storage: &Path, shard_id: u16) -> PathBuf {
    storage.join(format!("shard-{shard_id:03}"))
}

struct Inner {
    dir: PathBuf,
    state: RefCell<LogState>,
    files: RefCell<HashMap<FileId, Rc<DmaFile>>>,
    /// Moves when the committer may have something new to decide (first item staged, batch full, closing).
    staged: EpochSignal,
    /// Moves when a commit's writes completed or it finished (durable or failed).
    progress: EpochSignal,
    /// One permit per commit in flight (`COMMITS_IN_FLIGHT_MAX`); retention takes them all.
    commit_slots: Rc<Semaphore>,
    /// Monotonic origin of the µs clock group commit uses.
    origin: Instant,
    fdatasyncs: Cell<u64>,
    /// `LogConfig::danger_skip_fdatasync`: commits write but do not fdatasync (measurement only).
    skip_fdatasync: bool,
    closing: Cell<bool>,
}

/// A shard's log. Cheap to clone (an `Rc`); every clone is the same log. `!Send`: it lives on its shard's
/// executor.
#[derive(Clone)]
pub struct ShardLog {
    inner: Rc<Inner>,
}

impl ShardLog {
    /// Opens (recovering) or creates the log in `config.dir`, at wall-clock `now_s`. Returns the log and what
    /// recovery found (log it; its `live_commits` seed the engine's dedup).
    pub async fn open(config: LogIoConfig, now_s: u64) -> Result<(ShardLog, RecoveryReport), LogIoError> {
        let window_s = config.log.shard.window_s.max(1) as u64;
        let dedup_from = recovery::dedup_from_window_s(now_s, window_s, config.dedup_skew_windows);
        let opened = log_open::open_dir(&config.dir, &config.log, dedup_from).await?;
        let report = opened.recovery.report.clone();
        let inner = Inner {
            dir: config.dir,
            state: RefCell::new(opened.recovery.state),
            files: RefCell::new(opened.files),
            staged: EpochSignal::default(),
            progress: EpochSignal::default(),
            commit_slots: Rc::new(Semaphore::new(COMMITS_IN_FLIGHT_MAX as u64)),
            origin: Instant::now(),
            fdatasyncs: Cell::new(opened.fdatasyncs),
            skip_fdatasync: config.log.danger_skip_fdatasync,
            closing: Cell::new(false),
        };
        tracing::info!(
            dir = %inner.dir.display(),
            segments = report.counters.recovery_segments,
            records = report.counters.recovery_records,
            torn_truncated = report.counters.recovery_torn_truncated,
            torn_holes = report.counters.recovery_torn_holes,
            corrupt = report.counters.recovery_corrupt_records,
            matches = report.counters.recovery_matches,
            subscribers = report.counters.recovery_subscribers,
            quarantined = report.counters.recovery_files_quarantined,
            next_seq = report.next_seq,
            "log recovered"
        );
        if report.counters.recovery_corrupt_records > 0 {
            tracing::warn!(sample = ?report.corrupt_sample, "corrupt log records skipped (segment, slot)");
        }
        Ok((ShardLog { inner: Rc::new(inner) }, report))
    }

    fn now_us(&self) -> u64 {
        self.inner.origin.elapsed().as_micros() as u64
    }

    /// Wakes the committer when staging crossed a point where its decision changes (0 → 1 item: start the
    /// delay; reaching `records_max`: commit now), not on every append.
    fn after_stage(&self, before: u64) {
        let st = self.inner.state.borrow();
        let (after, n) = (st.staged_items(), st.config().commit.records_max as u64);
        drop(st);
        if before == 0 || (before < n && after >= n) {
            self.inner.staged.notify();
        }
    }

    // ---- the write path --------------------------------------------------------------------------------

    /// Whether `n` more proofs can be staged now (backpressure: stop reading PUBLISH until a commit drains).
    pub fn can_accept(&self, n: u64) -> bool {
        self.inner.state.borrow().can_accept(n)
    }

    /// Stages a proof accepted at `received_at_s` and returns its seq (the engine's `LogPosition`). Durable
    /// once [`ShardLog::wait_durable`] for it returns.
    pub fn append(&self, proof: ProofRef<'_>, received_at_s: u64) -> Result<RecordSeq, LogError> {
        let now_us = self.now_us();
        let mut st = self.inner.state.borrow_mut();
        let before = st.staged_items();
        let seq = st.append(proof, received_at_s, now_us)?;
        drop(st);
        self.after_stage(before);
        Ok(seq)
    }

    /// Records that the proof at `seq` matched `key` (call before the next await after appending it, so
    /// the match is durable with the proof).
    pub fn record_match(&self, key: SubscriberKey, seq: RecordSeq) -> Result<(), LogError> {
        let now_us = self.now_us();
        let mut st = self.inner.state.borrow_mut();
        let before = st.staged_items();
        st.record_match(key, seq, now_us)?;
        drop(st);
        self.after_stage(before);
        Ok(())
    }

    /// Persists `key`'s subscription entries (replacing earlier ones). Durable after the next commit:
    /// `wait_durable(last_assigned)` or [`ShardLog::flush`].
    pub fn subscribe(&self, key: SubscriberKey, entries: &[SubscribeEntry]) -> Result<u64, SubscriptionError> {
        let now_us = self.now_us();
        let mut st = self.inner.state.borrow_mut();
        let before = st.staged_items();
        let generation = st.subscribe(key, entries, now_us)?;
        drop(st);
        self.after_stage(before);
        Ok(generation)
    }

    /// Every persisted subscriber (to re-register in the engine after a restart).
    pub fn subscriptions(&self) -> Vec<(SubscriberKey, SubscriberState)> {
        self.inner.state.borrow().subscriptions().iter().map(|(k, s)| (*k, s.clone())).collect()
    }

    /// Highest durable seq.
    pub fn durable_through(&self) -> Option<RecordSeq> {
        self.inner.state.borrow().durable_through()
    }

    /// Last seq assigned (acknowledge an all-duplicate PUBLISH once this, taken when it was processed, is
    /// durable).
    pub fn last_assigned(&self) -> Option<RecordSeq> {
        self.inner.state.borrow().last_assigned()
    }

    /// A ticket for everything staged so far (records, matches, subscription records); see
    /// [`ShardLog::wait_ticket`].
    ///
    /// Taking a ticket says that somebody waits: what is staged is committed within the group-commit delay.
    pub fn ticket(&self) -> u64 {
        let mut st = self.inner.state.borrow_mut();
        let ticket = st.ticket();
        let redecide = st.await_staged();
        drop(st);
        if redecide {
            self.inner.staged.notify();
        }
        ticket
    }

    /// Whether everything staged when `ticket` was issued is durable.
    pub fn is_ticket_durable(&self, ticket: u64) -> bool {
        self.inner.state.borrow().is_ticket_durable(ticket)
    }

    /// Completes when everything staged when `ticket` was issued is durable; fails if the log was poisoned.
    pub async fn wait_ticket(&self, ticket: u64) -> Result<(), LogIoError> {
        self.wait_until(|st| st.is_ticket_durable(ticket)).await
    }

    /// Completes when `seq` is durable; fails if the log was poisoned first.
    pub async fn wait_durable(&self, seq: RecordSeq) -> Result<(), LogIoError> {
        let _ = self.ticket(); // somebody waits: commit within the group-commit delay
        self.wait_until(|st| st.is_durable(seq)).await
    }

    /// Completes once `done` holds for the log state (checked after each commit's progress); fails if the log
    /// is poisoned first.
    async fn wait_until(&self, done: impl Fn(&LogState) -> bool) -> Result<(), LogIoError> {
        loop {
            let seen = self.inner.progress.epoch();
            {
                let st = self.inner.state.borrow();
                if done(&st) {
                    return Ok(());
                }
                if st.is_poisoned() {
                    return Err(LogError::Poisoned.into());
                }
            }
            self.inner.progress.changed(seen).await;
        }
    }

    /// The committer: runs group commit until [`ShardLog::close`]. Spawn it once per shard
    /// (`glommio::spawn_local(log.clone().run_committer()).detach()`). Returns an error once the log is
    /// poisoned (a commit failed: the shard must restart).
    pub async fn run_committer(self) -> Result<(), LogIoError> {
        loop {
            let (staged_seen, progress_seen) = (self.inner.staged.epoch(), self.inner.progress.epoch());
            if self.inner.closing.get() {
                return self.flush().await;
            }
            if self.inner.state.borrow().is_poisoned() {
                return Err(LogError::Poisoned.into());
            }
            let decision = self.inner.state.borrow().decide(self.now_us());
            let news = futures_lite::future::or(
                self.inner.staged.changed(staged_seen),
                self.inner.progress.changed(progress_seen),
            );
            match decision {
                CommitDecision::CommitNow => {
                    if self.start_commit() != Start::Started {
                        news.await; // not committable after all, or retention holds the slots
                    }
                }
                CommitDecision::WaitUntil(t) => {
                    let wait = Duration::from_micros(t.saturating_sub(self.now_us()));
                    futures_lite::future::or(glommio::timer::sleep(wait), news).await;
                }
                CommitDecision::InFlight | CommitDecision::Idle => news.await,
            }
        }
    }

    /// Commits until nothing is staged or in flight (tests, shutdown, and callers without a committer).
    pub async fn flush(&self) -> Result<(), LogIoError> {
        loop {
            let seen = self.inner.progress.epoch();
            let started = self.start_commit();
            {
                let st = self.inner.state.borrow();
                if st.is_poisoned() {
                    return Err(LogError::Poisoned.into());
                }
                if started == Start::Nothing && st.commits_in_flight() == 0 {
                    return Ok(());
                }
            }
            if started != Start::Started {
                self.inner.progress.changed(seen).await;
            }
        }
    }

    /// Takes the next commit job if one may start now and runs it in its own task (so the next job's write
    /// can overlap this one's fdatasync).
    fn start_commit(&self) -> Start {
        let Ok(permit) = self.inner.commit_slots.try_acquire_static_permit(1) else { return Start::Busy };
        let job = self.inner.state.borrow_mut().take_job(unix_now_s(), self.now_us());
        let Some(job) = job else {
            return if self.inner.state.borrow().commits_in_flight() > 0 { Start::Busy } else { Start::Nothing };
        };
        let this = self.clone();
        glommio::spawn_local(async move {
            this.run_job(job).await;
            drop(permit); // after the state knows the outcome: retention may then run
        })
        .detach();
        Start::Started
    }

    /// Executes one job and reports its outcome to the state and the waiters.
    async fn run_job(&self, job: CommitJob) {
        let mut result = self.write_phase(&job).await;
        if result.is_ok() {
            self.inner.state.borrow_mut().job_written(job.id);
            self.inner.progress.notify();
            result = self.sync_phase(&job).await;
        }
        {
            let mut st = self.inner.state.borrow_mut();
            match &result {
                Ok(()) => st.complete_job(job.id, job.bytes()),
                Err(e) => {
                    tracing::error!(error = %e, job = job.id, "log commit failed; the shard must restart");
                    st.fail_job(job.id);
                }
            }
        }
        self.inner.progress.notify();
    }

    fn path(&self, id: &FileId) -> PathBuf {
        self.inner.dir.join(id.file_name())
    }

    fn file(&self, id: &FileId) -> Rc<DmaFile> {
        self.inner.files.borrow().get(id).cloned().expect("a job only names files it created or that were opened")
    }

    /// Creates, allocations, pair-checked writes. The next job may be written once this returns.
    async fn write_phase(&self, job: &CommitJob) -> Result<(), LogIoError> {
        for c in &job.creates {
            let path = self.path(&c.file);
            let file = files::create_with_header(&path, &c.header[..]).await?;
            self.inner.files.borrow_mut().insert(c.file, Rc::new(file));
        }
        for p in &job.preallocs {
            let path = self.path(&p.file);
            ctx(self.file(&p.file).pre_allocate(p.len, false).await, "fallocate", &path)?;
        }
        for w in &job.writes {
            pair_check(w.file, &w.write.bytes)?;
        }
        try_join_all(job.writes.iter().map(|w| async move {
            let path = self.path(&w.file);
            files::write_at(&self.file(&w.file), &path, w.write.offset, &w.write.bytes).await
        }))
        .await?;
        Ok(())
    }

    /// fdatasync of every touched file, the journal rewrite, the directory sync.
    async fn sync_phase(&self, job: &CommitJob) -> Result<(), LogIoError> {
        if !self.inner.skip_fdatasync {
            let synced = job.files_to_sync();
            try_join_all(synced.iter().map(|id| async move {
                let path = self.path(id);
                ctx(self.file(id).fdatasync().await, "fdatasync", &path)
            }))
            .await?;
            self.inner.fdatasyncs.set(self.inner.fdatasyncs.get() + synced.len() as u64);
        }
        if let Some(rw) = &job.journal_rewrite {
            self.rewrite_journal(rw).await?;
        }
        if job.needs_dir_sync() {
            files::sync_dir(&self.inner.dir).await?;
            self.inner.fdatasyncs.set(self.inner.fdatasyncs.get() + 1);
        }
        if let Some(old) = job.journal_rewrite.as_ref().and_then(|r| r.replaces) {
            let file = self.inner.files.borrow_mut().remove(&old);
            files::remove(&self.path(&old)).await?;
            if let Some(f) = file {
                let _ = f.close_rc().await; // the name is gone; closing is best effort
            }
        }
        Ok(())
    }

    /// Compaction: the new journal is complete and durable under a temporary name before it replaces the old.
    async fn rewrite_journal(&self, rw: &crate::log::job::JournalRewrite) -> Result<(), LogIoError> {
        let path = self.path(&rw.file);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(TMP_SUFFIX);
        let tmp = PathBuf::from(tmp);
        let file = files::create_with_header(&tmp, &rw.header[..]).await?;
        for w in &rw.writes {
            files::write_at(&file, &tmp, w.offset, &w.bytes).await?;
        }
        ctx(file.fdatasync().await, "fdatasync", &tmp)?;
        files::rename(&tmp, &path).await?;
        self.inner.fdatasyncs.set(self.inner.fdatasyncs.get() + 1);
        self.inner.files.borrow_mut().insert(rw.file, Rc::new(file));
        Ok(())
    }

    // ---- FETCH ---------------------------------------------------------------------------------------

    /// One FETCH page for `key` from `cursor`, at most `proofs_max` proofs. `next_token` is the cursor this
    /// page will answer with if it is not empty: non-zero, fresh per FETCH, and the same on every shard a
    /// multi-shard FETCH visits (e.g. a random u64 from the connection's CSPRNG).
    pub async fn fetch(
        &self,
        key: SubscriberKey,
        cursor: u64,
        next_token: u64,
        proofs_max: usize,
    ) -> Result<FetchPage, LogIoError> {
        let now_us = self.now_us();
        let plan = {
            let mut st = self.inner.state.borrow_mut();
            let before = st.staged_items();
            let plan = st.fetch(key, cursor, next_token, proofs_max, now_us);
            drop(st);
            self.after_stage(before);
            plan
        };
        // The subscriber will continue from `next_cursor`: persist the new cursor within the group-commit
        // delay, like an acknowledged write, so that a restart soon after still knows it.
        let _ = self.ticket();
        let reads = try_join_all(plan.reads.iter().map(|loc| async move {
            let id = FileId { kind: FileKind::Segment, file_seq: loc.file_seq };
            let file = self.inner.files.borrow().get(&id).cloned();
            let Some(file) = file else { return Ok::<_, LogIoError>(None) }; // deleted meanwhile by retention
            let r = ctx(file.read_at(loc.offset, RECORD_LEN).await, "read", &self.path(&id))?;
            let bytes: Option<&[u8; RECORD_LEN]> = r.get(..RECORD_LEN).and_then(|b| b.try_into().ok());
            Ok(bytes.and_then(|b| verify(b, loc.seq).ok().map(LogRecord::from)))
        }))
        .await?;
        let skipped = reads.iter().filter(|r| r.is_none()).count() as u64;
        let records: Vec<LogRecord> = reads.into_iter().flatten().collect();
        self.inner.state.borrow_mut().note_fetch_reads(records.len() as u64, skipped);
        if skipped > 0 {
            tracing::warn!(skipped, "FETCH skipped records that failed verification");
        }
        Ok(FetchPage { records, next_cursor: plan.next_cursor, more: plan.more, skipped })
    }

    // ---- retention -----------------------------------------------------------------------------------

    /// Deletes whole segments (with their match records) past the retention horizon at `now_s`, rolling
    /// the active segment first when all of it has expired; expires subscription entries that can no longer
    /// match. Call periodically (every window is plenty).
    pub async fn apply_retention(&self, now_s: u64) -> Result<RetentionOutcome, LogIoError> {
        let mut out = RetentionOutcome::default();
        if self.inner.state.borrow().plan_retention(now_s).roll_active {
            self.inner.state.borrow_mut().request_roll();
            self.flush().await?;
            out.rolled = true;
        }
        // All commit slots: no commit is in flight while segments are deleted.
        let slots = COMMITS_IN_FLIGHT_MAX as u64;
        ctx(self.inner.commit_slots.acquire(slots).await, "lock", &self.inner.dir)?;
        let result = self.delete_expired(now_s, &mut out).await;
        self.inner.commit_slots.signal(slots);
        self.inner.progress.notify();
        result?;
        Ok(out)
    }

    async fn delete_expired(&self, now_s: u64, out: &mut RetentionOutcome) -> Result<(), LogIoError> {
        let doomed = {
            let mut st = self.inner.state.borrow_mut();
            let plan = st.plan_retention(now_s);
            out.oldest_retained_seq = plan.oldest_retained_seq;
            out.subscription_entries_expired = st.expire_subscriptions(now_s);
            st.apply_retention(&plan)
        };
        out.segments_deleted = doomed.iter().filter(|f| f.kind == FileKind::Segment).count() as u64;
        for id in &doomed {
            let file = self.inner.files.borrow_mut().remove(id);
            let path = self.path(id);
            match files::remove(&path).await {
                Ok(()) => {}
                // A mailbox that was never created (nothing matched before a crash) is fine to miss.
                Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(f) = file {
                let _ = f.close_rc().await; // unlinked already; a reader holding it keeps it alive
            }
        }
        if !doomed.is_empty() {
            files::sync_dir(&self.inner.dir).await?;
        }
        Ok(())
    }

    // ---- observation -------------------------------------------------------------------------------

    /// Counters for the metrics endpoint.
    pub fn counters(&self) -> LogCounters {
        let mut c = self.inner.state.borrow().counters();
        c.fdatasyncs = self.inner.fdatasyncs.get();
        c
    }

    /// Reads back every durable, valid record (oldest first), verifying each. For tests and tooling (the
    /// crash test's "everything acknowledged is still there"); it holds the whole log in memory.
    pub async fn read_all(&self) -> Result<Vec<LogRecord>, LogIoError> {
        let (ranges, durable) = {
            let st = self.inner.state.borrow();
            (st.segment_ranges(), st.durable_through())
        };
        let Some(durable) = durable else { return Ok(Vec::new()) };
        let layout = self.inner.state.borrow().config().segment_layout();
        let mut out = Vec::new();
        for (file_seq, first, end) in ranges {
            let id = FileId { kind: FileKind::Segment, file_seq };
            let file = self.file(&id);
            let path = self.path(&id);
            let end = end.0.min(durable.0 + 1);
            let len = layout.file_len_for(end.saturating_sub(first.0));
            let mut slot = 0u64;
            files::scan_blocks(&file, &path, len, |block| {
                for i in 0..layout.per_block() as usize {
                    let seq = first.0 + slot;
                    slot += 1;
                    let bytes: &[u8; RECORD_LEN] =
                        block[i * RECORD_LEN..(i + 1) * RECORD_LEN].try_into().expect("a slot is RECORD_LEN bytes");
                    if seq < end && !is_blank(bytes) {
                        if let Ok(v) = verify(bytes, RecordSeq(seq)) {
                            out.push(LogRecord::from(v));
                        }
                    }
                }
            })
            .await?;
        }
        Ok(out)
    }

    /// The shard directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Stops the committer after it has flushed everything staged, then closes the files.
    pub async fn close(self) -> Result<(), LogIoError> {
        self.inner.closing.set(true);
        self.inner.staged.notify();
        self.flush().await?;
        let files: Vec<(FileId, Rc<DmaFile>)> = self.inner.files.borrow_mut().drain().collect();
        for (id, f) in files {
            ctx(f.close_rc().await.map(|_| ()), "close", &self.path(&id))?;
        }
        Ok(())
    }
}

/// Checks every non-blank slot of a staged write against its CRC just before it goes to the device (the
/// "before write" half of the pair check; the scan and FETCH verify after read).
fn pair_check(file: FileId, bytes: &[u8]) -> Result<(), LogIoError> {
    let fail = |detail: String| LogIoError::PairCheck { file: file.file_name(), detail };
    match file.kind {
        FileKind::Segment => {
            for block in bytes.chunks_exact(BLOCK_LEN) {
                for slot in block.chunks_exact(RECORD_LEN) {
                    let slot: &[u8; RECORD_LEN] = slot.try_into().expect("chunks_exact yields RECORD_LEN");
                    if !is_blank(slot) {
                        decode_record(slot).map_err(|e| fail(e.to_string()))?;
                    }
                }
            }
        }
        FileKind::Mailbox => {
            for slot in bytes.chunks_exact(crate::log::mailbox::MATCH_RECORD_LEN) {
                let slot: &[u8; 32] = slot.try_into().expect("chunks_exact yields 32 bytes");
                if !is_blank(slot) {
                    crate::log::mailbox::MatchRecord::decode(slot, 0..u64::MAX).map_err(|e| fail(e.to_string()))?;
                }
            }
        }
        FileKind::Journal => {} // each journal record is checked to round-trip when it is staged
    }
    Ok(())
}
