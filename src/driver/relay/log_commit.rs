//! Group commit on glommio, for whoever owns the pure `LogState` (its [`LogHost`]): the relay's
//! `ShardServer`, or the standalone `ShardLog` of tests and tools.
//!
//! ```text
//! host stages ─▶ kick() ─▶ committer task (run): decide(now): N records or D µs ─▶ take_job ─▶ job task:
//!     LogFiles::write_phase ─▶ host.job_written (the next job may now be written) ─▶ LogFiles::sync_phase
//!     ─▶ host.job_finished(Durable) (the host releases what waited) ─▶ progress.notify()
//!     └▶ host.job_finished(Stalled) (ENOSPC & co.: parked; the committer keeps the job) ─▶ decide: Retry
//!        when due ─▶ take_retry ─▶ the same job again (write_phase/sync_phase with retry) ─▶ …
//!     └▶ host.job_finished(Failed) (poisoned: fail-stop) ─▶ run() returns the error
//! retention: pause() takes every commit slot ─▶ delete files ─▶ resume()
//! ```
//! Up to `COMMITS_IN_FLIGHT_MAX` jobs are in flight: the next one is written as soon as the previous one's
//! writes complete (it rewrites the block that one ended in), so its write overlaps the previous fdatasync;
//! jobs become durable in job order.
//!
//! A failure for want of space or descriptors (`FileError::is_recoverable`: ENOSPC, EDQUOT, EMFILE, ENFILE)
//! stalls the log instead (`crate::log::stall`): the job is parked with every later one, nothing of theirs is
//! acknowledged, and they run again in order with backoff (100 ms doubling to 1 s) until they succeed; the
//! host meanwhile refuses new work. Any other failure is fail-stop: if a write or fdatasync fails, the job's
//! outcome on disk is unknown (Linux may drop the dirty state after a failed fsync), so the host's log is
//! poisoned: nothing more becomes durable, waiters get an error, and the shard must restart — recovery then
//! decides what survived.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use glommio::sync::Semaphore;

use super::epoch_signal::EpochSignal;
use super::log_exec::LogFiles;
use super::log_files::ctx;
use super::log_io::LogIoError;
use crate::driver::clock::unix_now_s;
use crate::log::commit::CommitDecision;
use crate::log::job::CommitJob;
use crate::log::state::{LogError, COMMITS_IN_FLIGHT_MAX};

/// How a commit job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Written and fdatasync'ed: durable.
    Durable {
        /// Bytes it wrote.
        bytes: u64,
    },
    /// It failed for want of space or descriptors: park it until a retry (`crate::log::stall`).
    Stalled,
    /// It failed otherwise: the log is poisoned (fail-stop).
    Failed,
}

/// The owner of a log state, as the committer sees it.
pub trait LogHost: 'static {
    /// Monotonic µs on the clock the host stages with (group commit's delay is measured on it).
    fn now_us(&self) -> u64;
    /// What the committer should do at `now_us`.
    fn decide(&self, now_us: u64) -> CommitDecision;
    /// The next job, if one may start now.
    fn take_job(&self, now_s: u64, now_us: u64) -> Option<CommitJob>;
    /// Job `id`'s writes completed.
    fn job_written(&self, id: u64);
    /// Job `id` finished. The host updates its state and releases (or fails) whatever waited for it.
    fn job_finished(&self, id: u64, outcome: JobOutcome) -> impl Future<Output = ()>;
    /// Jobs handed out and not finished.
    fn commits_in_flight(&self) -> usize;
    /// Whether a job failed fatally.
    fn is_poisoned(&self) -> bool;
    /// Whether commits are parked for want of storage.
    fn is_stalled(&self) -> bool;
    /// Whether job `id` is parked (after it finished: the committer then keeps it to run again).
    fn is_parked(&self, id: u64) -> bool;
    /// The parked job to execute again now, if its retry is due.
    fn take_retry(&self, now_us: u64) -> Option<u64>;
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

struct Inner<H> {
    host: H,
    files: LogFiles,
    /// Moves when the committer may have something new to decide (staged, batch full, somebody waits, closing).
    staged: EpochSignal,
    /// Moves when a commit's writes completed or it finished (durable or failed), or retention ended.
    progress: EpochSignal,
    /// One permit per commit in flight (`COMMITS_IN_FLIGHT_MAX`); retention takes them all.
    slots: Rc<Semaphore>,
    closing: Cell<bool>,
    /// Jobs parked by a storage stall, by id, until they run again.
    parked: RefCell<BTreeMap<u64, CommitJob>>,
}

/// See the module docs. Cheap to clone (an `Rc`); `!Send`: it lives on its shard's executor.
pub struct Committer<H> {
    inner: Rc<Inner<H>>,
}

impl<H> Clone for Committer<H> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<H: LogHost> Committer<H> {
    /// A committer for `host`'s log, writing through `files`.
    pub fn new(host: H, files: LogFiles) -> Self {
        Self {
            inner: Rc::new(Inner {
                host,
                files,
                staged: EpochSignal::default(),
                progress: EpochSignal::default(),
                slots: Rc::new(Semaphore::new(COMMITS_IN_FLIGHT_MAX as u64)),
                closing: Cell::new(false),
                parked: RefCell::new(BTreeMap::new()),
            }),
        }
    }

    /// The host.
    pub fn host(&self) -> &H {
        &self.inner.host
    }

    /// The files.
    pub fn files(&self) -> &LogFiles {
        &self.inner.files
    }

    /// The host staged something its decision may depend on: decide again.
    pub fn kick(&self) {
        self.inner.staged.notify();
    }

    /// Completes once `done` holds for the host (checked after each commit's progress); fails if the log is
    /// poisoned first. A storage stall is not a failure: it waits on (until space returns).
    pub async fn wait_until(&self, done: impl Fn(&H) -> bool) -> Result<(), LogIoError> {
        loop {
            let seen = self.inner.progress.epoch();
            if done(&self.inner.host) {
                return Ok(());
            }
            if self.inner.host.is_poisoned() {
                return Err(LogError::Poisoned.into());
            }
            self.inner.progress.changed(seen).await;
        }
    }

    /// The committer: runs group commit until [`Committer::close`]. Spawn it once per log. Returns an error
    /// once the log is poisoned (a commit failed: the shard must restart).
    pub async fn run(self) -> Result<(), LogIoError> {
        let inner = &self.inner;
        loop {
            let (staged_seen, progress_seen) = (inner.staged.epoch(), inner.progress.epoch());
            if inner.closing.get() {
                return self.flush().await;
            }
            if inner.host.is_poisoned() {
                return Err(LogError::Poisoned.into());
            }
            let decision = inner.host.decide(inner.host.now_us());
            let news =
                futures_lite::future::or(inner.staged.changed(staged_seen), inner.progress.changed(progress_seen));
            match decision {
                CommitDecision::CommitNow => {
                    if self.start_commit() != Start::Started {
                        news.await; // not committable after all, or retention holds the slots
                    }
                }
                CommitDecision::Retry => {
                    if !self.start_retry() {
                        news.await; // retention holds the slots
                    }
                }
                CommitDecision::WaitUntil(t) => {
                    let wait = Duration::from_micros(t.saturating_sub(inner.host.now_us()));
                    futures_lite::future::or(glommio::timer::sleep(wait), news).await;
                }
                CommitDecision::InFlight | CommitDecision::Idle => news.await,
            }
        }
    }

    /// Commits until nothing is staged or in flight (tests, shutdown, retention's roll). Fails with
    /// `LogError::StorageStalled` as soon as the log stalls for want of storage: the committer task keeps
    /// retrying, and waiting for that here could wait for as long as the disk stays full.
    pub async fn flush(&self) -> Result<(), LogIoError> {
        loop {
            let seen = self.inner.progress.epoch();
            if self.inner.host.is_stalled() {
                return Err(LogError::StorageStalled.into());
            }
            let started = self.start_commit();
            if self.inner.host.is_poisoned() {
                return Err(LogError::Poisoned.into());
            }
            if started == Start::Nothing && self.inner.host.commits_in_flight() == 0 {
                return Ok(());
            }
            if started != Start::Started {
                self.inner.progress.changed(seen).await;
            }
        }
    }

    /// Takes the next commit job if one may start now and runs it in its own task (so the next job's write
    /// can overlap this one's fdatasync).
    fn start_commit(&self) -> Start {
        let Ok(permit) = self.inner.slots.try_acquire_static_permit(1) else { return Start::Busy };
        let Some(job) = self.inner.host.take_job(unix_now_s(), self.inner.host.now_us()) else {
            return if self.inner.host.commits_in_flight() > 0 { Start::Busy } else { Start::Nothing };
        };
        let this = self.clone();
        glommio::spawn_local(async move {
            this.run_job(job, false).await;
            drop(permit); // after the host knows the outcome: retention may then run
        })
        .detach();
        Start::Started
    }

    /// Runs the parked job whose retry is due, in its own task; `false` when none may run now (retention holds
    /// the slots, or the host has nothing due).
    fn start_retry(&self) -> bool {
        let Ok(permit) = self.inner.slots.try_acquire_static_permit(1) else { return false };
        let Some(id) = self.inner.host.take_retry(self.inner.host.now_us()) else { return false };
        // The host parks a job only after it finished here, and run_job keeps every job the host parked.
        let job = self.inner.parked.borrow_mut().remove(&id).expect("a parked job is kept by the committer");
        let this = self.clone();
        glommio::spawn_local(async move {
            this.run_job(job, true).await;
            drop(permit);
        })
        .detach();
        true
    }

    /// Executes one job (`retry`: again, after a storage stall) and reports its outcome to the host and the
    /// waiters; keeps it if the host parked it.
    async fn run_job(&self, job: CommitJob, retry: bool) {
        let inner = &self.inner;
        let mut result = inner.files.write_phase(&job, retry).await;
        if result.is_ok() {
            inner.host.job_written(job.id);
            inner.progress.notify();
            result = inner.files.sync_phase(&job, retry).await;
        }
        let outcome = match &result {
            Ok(()) => JobOutcome::Durable { bytes: job.bytes() },
            Err(e) if e.is_recoverable() => {
                // The first failure of a stall is worth a warning; its retries (one a second) only a debug line.
                if retry {
                    tracing::debug!(error = %e, job = job.id, "log commit retry failed: storage still full");
                } else {
                    tracing::warn!(error = %e, job = job.id, "log commit parked: storage full; retrying until space returns");
                }
                JobOutcome::Stalled
            }
            Err(e) => {
                tracing::error!(error = %e, job = job.id, "log commit failed; the shard must restart");
                JobOutcome::Failed
            }
        };
        inner.host.job_finished(job.id, outcome).await;
        if inner.host.is_parked(job.id) {
            inner.parked.borrow_mut().insert(job.id, job);
        }
        inner.progress.notify();
    }

    /// Stops commits from starting (waits for those in flight) so that files can be deleted; pair with
    /// [`Committer::resume`].
    pub async fn pause(&self) -> Result<(), LogIoError> {
        let slots = COMMITS_IN_FLIGHT_MAX as u64;
        ctx(self.inner.slots.acquire(slots).await, "lock", self.inner.files.dir())?;
        Ok(())
    }

    /// Lets commits start again after [`Committer::pause`].
    pub fn resume(&self) {
        self.inner.slots.signal(COMMITS_IN_FLIGHT_MAX as u64);
        self.inner.progress.notify();
    }

    /// Stops the committer after it has flushed everything staged, then closes the files.
    pub async fn close(&self) -> Result<(), LogIoError> {
        self.inner.closing.set(true);
        self.inner.staged.notify();
        self.flush().await?;
        self.inner.files.close_all().await
    }
}
