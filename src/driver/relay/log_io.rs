//! One shard's durable log on glommio, standalone: the pure [`LogState`] in a `RefCell`, a [`Committer`]
//! and its [`LogFiles`]. Tests, benches and tools use it directly; the relay's shards own their `LogState`
//! inside `ShardServer` instead and share only [`open_parts`], the committer and the files (see shard_main.rs).
//!
//! ```text
//!  append / record_match / subscribe / fetch ─▶ RefCell<LogState> (one executor, never borrowed across an await)
//!     └─ staged (0 → 1 item, batch full, ticket taken) ─▶ Committer::kick
//!  run_committer ─▶ Committer::run (log_commit.rs): jobs ─▶ LogFiles (log_exec.rs) ─▶ job_finished
//!  wait_ticket / wait_durable ─▶ Committer::wait_until(durable)     fetch ─▶ plan ─▶ LogFiles::read_records
//!  apply_retention(now_s) ─▶ roll + flush if needed ─▶ pause commits ─▶ delete whole segments + .mbx ─▶ resume
//! ```
//! Failure is fail-stop (log_commit.rs): after a failed commit nothing more becomes durable and waiters get
//! an error; recovery at the next open decides what survived. A commit that failed for want of space or
//! descriptors stalls the log instead (`crate::log::stall`): it is retried until it succeeds, waiters keep
//! waiting, and [`ShardLog::is_stalled`] says so (callers should stop appending meanwhile).

use std::cell::RefCell;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::log_commit::{Committer, JobOutcome, LogHost};
use super::log_exec::LogFiles;
use super::log_files::FileError;
use super::log_open;
use crate::log::commit::CommitDecision;
use crate::log::job::CommitJob;
use crate::log::mailbox::SubscriberKey;
use crate::log::record::{LogRecord, RecordSeq};
use crate::log::recovery::{self, OpenError, RecoveryReport};
use crate::log::state::{LogError, LogState};
use crate::log::subscriptions::{SubscriberState, SubscriptionError};
use crate::log::{FileKind, LogConfig, LogCounters};
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

impl LogIoError {
    /// Whether this is a want of space or descriptors (the log stalls and retries) rather than a failure
    /// that makes it fail-stop.
    pub fn is_recoverable(&self) -> bool {
        match self {
            LogIoError::File(e) => e.is_recoverable(),
            LogIoError::Log(e) => *e == LogError::StorageStalled,
            _ => false,
        }
    }
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

/// Opens (recovering) or creates the log in `config.dir` at wall-clock `now_s`: the recovered state, its open
/// files, and what recovery found (log it; its `live_commits` seed the engine's dedup).
pub async fn open_parts(config: LogIoConfig, now_s: u64) -> Result<(LogState, LogFiles, RecoveryReport), LogIoError> {
    let window_s = config.log.shard.window_s.max(1) as u64;
    let dedup_from = recovery::dedup_from_window_s(now_s, window_s, config.dedup_skew_windows);
    let opened = log_open::open_dir(&config.dir, &config.log, dedup_from).await?;
    let report = opened.recovery.report.clone();
    tracing::info!(
        dir = %config.dir.display(),
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
    let files = LogFiles::new(config.dir, opened.files, opened.fdatasyncs, config.log.danger_skip_fdatasync);
    Ok((opened.recovery.state, files, report))
}

/// The standalone log's host: its state and the origin of its monotonic clock.
pub struct Standalone {
    state: RefCell<LogState>,
    origin: Instant,
}

impl LogHost for Standalone {
    fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    fn decide(&self, now_us: u64) -> CommitDecision {
        self.state.borrow().decide(now_us)
    }

    fn take_job(&self, now_s: u64, now_us: u64) -> Option<CommitJob> {
        self.state.borrow_mut().take_job(now_s, now_us)
    }

    fn job_written(&self, id: u64) {
        self.state.borrow_mut().job_written(id);
    }

    fn job_finished(&self, id: u64, outcome: JobOutcome) -> impl Future<Output = ()> {
        let mut st = self.state.borrow_mut();
        match outcome {
            JobOutcome::Durable { bytes } => st.complete_job(id, bytes),
            JobOutcome::Stalled => st.stall_job(id, self.now_us()),
            JobOutcome::Failed => st.fail_job(id),
        }
        std::future::ready(())
    }

    fn commits_in_flight(&self) -> usize {
        self.state.borrow().commits_in_flight()
    }

    fn is_poisoned(&self) -> bool {
        self.state.borrow().is_poisoned()
    }

    fn is_stalled(&self) -> bool {
        self.state.borrow().is_storage_stalled()
    }

    fn is_parked(&self, id: u64) -> bool {
        self.state.borrow().is_parked(id)
    }

    fn take_retry(&self, now_us: u64) -> Option<u64> {
        self.state.borrow_mut().take_retry(now_us)
    }
}

/// A shard's log, standalone. Cheap to clone; every clone is the same log. `!Send`: it lives on one executor.
#[derive(Clone)]
pub struct ShardLog {
    committer: Committer<Standalone>,
}

impl ShardLog {
    /// Opens (recovering) or creates the log in `config.dir`, at wall-clock `now_s`. Returns the log and what
    /// recovery found.
    pub async fn open(config: LogIoConfig, now_s: u64) -> Result<(ShardLog, RecoveryReport), LogIoError> {
        let (state, files, report) = open_parts(config, now_s).await?;
        let host = Standalone { state: RefCell::new(state), origin: Instant::now() };
        Ok((ShardLog { committer: Committer::new(host, files) }, report))
    }

    fn host(&self) -> &Standalone {
        self.committer.host()
    }

    /// Runs one staging step and kicks the committer when its decision may change (0 → 1 staged item: start
    /// the delay; reaching `records_max`: commit now), not on every append.
    fn staging<R>(&self, step: impl FnOnce(&mut LogState, u64) -> R) -> R {
        let now_us = self.host().now_us();
        let mut st = self.host().state.borrow_mut();
        let before = st.staged_items();
        let result = step(&mut st, now_us);
        let (after, full) = (st.staged_items(), st.config().commit.records_max as u64);
        drop(st);
        if (before == 0 && after > 0) || (before < full && after >= full) {
            self.committer.kick();
        }
        result
    }

    // ---- the write path --------------------------------------------------------------------------------

    /// Whether `n` more proofs can be staged now (backpressure: stop reading PUBLISH until a commit drains).
    pub fn can_accept(&self, n: u64) -> bool {
        self.host().state.borrow().can_accept(n)
    }

    /// Whether commits are parked for want of storage (the relay refuses PUBLISH meanwhile).
    pub fn is_stalled(&self) -> bool {
        self.host().state.borrow().is_storage_stalled()
    }

    /// Stages a proof accepted at `received_at_s` and returns its seq. Durable once
    /// [`ShardLog::wait_durable`] for it returns.
    pub fn append(&self, proof: ProofRef<'_>, received_at_s: u64) -> Result<RecordSeq, LogError> {
        self.staging(|st, now_us| st.append(proof, received_at_s, now_us))
    }

    /// Records that the proof at `seq` matched `key` (call before the next await after appending it, so
    /// the match is durable with the proof).
    pub fn record_match(&self, key: SubscriberKey, seq: RecordSeq) -> Result<(), LogError> {
        self.staging(|st, now_us| st.record_match(key, seq, now_us))
    }

    /// Persists `key`'s subscription entries (replacing earlier ones). Durable after the next commit.
    pub fn subscribe(&self, key: SubscriberKey, entries: &[SubscribeEntry]) -> Result<u64, SubscriptionError> {
        self.staging(|st, now_us| st.subscribe(key, entries, now_us))
    }

    /// Every persisted subscriber (to re-register in the engine after a restart).
    pub fn subscriptions(&self) -> Vec<(SubscriberKey, SubscriberState)> {
        self.host().state.borrow().subscriptions().iter().map(|(k, s)| (*k, s.clone())).collect()
    }

    /// Highest durable seq.
    pub fn durable_through(&self) -> Option<RecordSeq> {
        self.host().state.borrow().durable_through()
    }

    /// Last seq assigned.
    pub fn last_assigned(&self) -> Option<RecordSeq> {
        self.host().state.borrow().last_assigned()
    }

    /// A ticket for everything staged so far (records, matches, subscription records). Taking a ticket says
    /// that somebody waits: what is staged is committed within the group-commit delay.
    pub fn ticket(&self) -> u64 {
        let mut st = self.host().state.borrow_mut();
        let ticket = st.ticket();
        let redecide = st.await_staged();
        drop(st);
        if redecide {
            self.committer.kick();
        }
        ticket
    }

    /// Whether everything staged when `ticket` was issued is durable.
    pub fn is_ticket_durable(&self, ticket: u64) -> bool {
        self.host().state.borrow().is_ticket_durable(ticket)
    }

    /// Completes when everything staged when `ticket` was issued is durable; fails if the log was poisoned.
    pub async fn wait_ticket(&self, ticket: u64) -> Result<(), LogIoError> {
        self.committer.wait_until(|h| h.state.borrow().is_ticket_durable(ticket)).await
    }

    /// Completes when `seq` is durable; fails if the log was poisoned first.
    pub async fn wait_durable(&self, seq: RecordSeq) -> Result<(), LogIoError> {
        let _ = self.ticket(); // somebody waits: commit within the group-commit delay
        self.committer.wait_until(|h| h.state.borrow().is_durable(seq)).await
    }

    /// The committer: runs group commit until [`ShardLog::close`]. Spawn it once
    /// (`glommio::spawn_local(log.clone().run_committer()).detach()`). Returns an error once the log is
    /// poisoned (a commit failed: the shard must restart).
    pub async fn run_committer(self) -> Result<(), LogIoError> {
        self.committer.run().await
    }

    /// Commits until nothing is staged or in flight (tests, shutdown, and callers without a committer).
    pub async fn flush(&self) -> Result<(), LogIoError> {
        self.committer.flush().await
    }

    // ---- FETCH ---------------------------------------------------------------------------------------

    /// One FETCH page for `key` from `cursor`, at most `proofs_max` proofs. `next_token` is the cursor this
    /// page will answer with if it is not empty: non-zero, fresh per FETCH, and the same on every shard a
    /// multi-shard FETCH visits.
    pub async fn fetch(
        &self,
        key: SubscriberKey,
        cursor: u64,
        next_token: u64,
        proofs_max: usize,
    ) -> Result<FetchPage, LogIoError> {
        let plan = self.staging(|st, now_us| st.fetch(key, cursor, next_token, proofs_max, now_us));
        // The subscriber will continue from `next_cursor`: persist the new cursor within the group-commit
        // delay, like an acknowledged write, so that a restart soon after still knows it.
        let _ = self.ticket();
        let (records, skipped) = self.committer.files().read_records(&plan.reads).await?;
        self.host().state.borrow_mut().note_fetch_reads(records.len() as u64, skipped);
        if skipped > 0 {
            tracing::warn!(skipped, "FETCH skipped records that failed verification");
        }
        Ok(FetchPage { records, next_cursor: plan.next_cursor, more: plan.more, skipped })
    }

    // ---- retention -----------------------------------------------------------------------------------

    /// Deletes whole segments (with their match records) past the retention horizon at `now_s`, rolling
    /// the active segment first when all of it has expired; expires subscription entries that can no longer
    /// match. Call periodically (every window is plenty).
    /// While the log is stalled for want of storage, only the expired segments before the active one go
    /// (a roll needs a commit, which waits for space): that is what frees space.
    pub async fn apply_retention(&self, now_s: u64) -> Result<RetentionOutcome, LogIoError> {
        let mut out = self.delete_expired(now_s).await?;
        if self.host().state.borrow().plan_retention(now_s).roll_active && !self.is_stalled() {
            self.host().state.borrow_mut().request_roll();
            match self.flush().await {
                Err(e) if e.is_recoverable() => return Ok(out), // stalled by the roll itself: next time
                other => other?,
            }
            let after = self.delete_expired(now_s).await?;
            out.rolled = true;
            out.segments_deleted += after.segments_deleted;
            out.subscription_entries_expired += after.subscription_entries_expired;
            out.oldest_retained_seq = after.oldest_retained_seq;
        }
        Ok(out)
    }

    /// Deletes the expired segments before the active one (no commit needed).
    async fn delete_expired(&self, now_s: u64) -> Result<RetentionOutcome, LogIoError> {
        let mut out = RetentionOutcome::default();
        self.committer.pause().await?;
        let doomed = {
            let mut st = self.host().state.borrow_mut();
            let plan = st.plan_retention(now_s);
            out.oldest_retained_seq = plan.oldest_retained_seq;
            out.subscription_entries_expired = st.expire_subscriptions(now_s);
            st.apply_retention(&plan)
        };
        out.segments_deleted = doomed.iter().filter(|f| f.kind == FileKind::Segment).count() as u64;
        let result = self.committer.files().delete(&doomed).await;
        self.committer.resume();
        result?;
        Ok(out)
    }

    // ---- observation -------------------------------------------------------------------------------

    /// Counters for the metrics endpoint.
    pub fn counters(&self) -> LogCounters {
        let mut c = self.host().state.borrow().counters();
        c.fdatasyncs = self.committer.files().fdatasyncs();
        c
    }

    /// Reads back every durable, valid record (oldest first), verifying each. For tests and tooling (the
    /// crash test's "everything acknowledged is still there"); it holds the whole log in memory.
    pub async fn read_all(&self) -> Result<Vec<LogRecord>, LogIoError> {
        let (ranges, durable, layout) = {
            let st = self.host().state.borrow();
            (st.segment_ranges(), st.durable_through(), st.config().segment_layout())
        };
        let Some(durable) = durable else { return Ok(Vec::new()) };
        self.committer.files().read_all(ranges, durable.0 + 1, layout).await
    }

    /// The shard directory.
    pub fn dir(&self) -> &Path {
        self.committer.files().dir()
    }

    /// Stops the committer after it has flushed everything staged, then closes the files.
    pub async fn close(self) -> Result<(), LogIoError> {
        self.committer.close().await
    }
}
