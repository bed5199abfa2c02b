//! Group commit on glommio, for whoever owns the pure `LogState` (its [`LogHost`]): the relay's
//! `ShardServer`, or the standalone `ShardLog` of tests and tools.
//!
//! ```text
//! host stages ─▶ kick() ─▶ committer task (run): decide(now): N records or D µs ─▶ take_job ─▶ job task:
//!     LogFiles::write_phase ─▶ host.job_written (the next job may now be written) ─▶ LogFiles::sync_phase
//!     ─▶ host.job_finished(Ok(bytes)) (durable: the host releases what waited) ─▶ progress.notify()
//!     └▶ host.job_finished(Err) (poisoned: fail-stop) ─▶ run() returns the error
//! retention: pause() takes every commit slot ─▶ delete files ─▶ resume()
//! ```
//! Up to `COMMITS_IN_FLIGHT_MAX` jobs are in flight: the next one is written as soon as the previous one's
//! writes complete (it rewrites the block that one ended in), so its write overlaps the previous fdatasync;
//! jobs become durable in job order.
//!
//! Failure is fail-stop: if a write or fdatasync fails, the job's outcome on disk is unknown (Linux may drop
//! the dirty state after a failed fsync), so the host's log is poisoned: nothing more becomes durable, waiters
//! get an error, and the shard must restart — recovery then decides what survived.

use std::cell::Cell;
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
    /// Job `id` finished: durable with `Ok(bytes)`, or failed. The host updates its state and releases (or
    /// fails) whatever waited for it.
    fn job_finished(&self, id: u64, outcome: Result<u64, ()>) -> impl Future<Output = ()>;
    /// Jobs handed out and not finished.
    fn commits_in_flight(&self) -> usize;
    /// Whether a job failed.
    fn is_poisoned(&self) -> bool;
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
    /// poisoned first.
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
                CommitDecision::WaitUntil(t) => {
                    let wait = Duration::from_micros(t.saturating_sub(inner.host.now_us()));
                    futures_lite::future::or(glommio::timer::sleep(wait), news).await;
                }
                CommitDecision::InFlight | CommitDecision::Idle => news.await,
            }
        }
    }

    /// Commits until nothing is staged or in flight (tests, shutdown, retention's roll).
    pub async fn flush(&self) -> Result<(), LogIoError> {
        loop {
            let seen = self.inner.progress.epoch();
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
            this.run_job(job).await;
            drop(permit); // after the host knows the outcome: retention may then run
        })
        .detach();
        Start::Started
    }

    /// Executes one job and reports its outcome to the host and the waiters.
    async fn run_job(&self, job: CommitJob) {
        let inner = &self.inner;
        let mut result = inner.files.write_phase(&job).await;
        if result.is_ok() {
            inner.host.job_written(job.id);
            inner.progress.notify();
            result = inner.files.sync_phase(&job).await;
        }
        let outcome = match &result {
            Ok(()) => Ok(job.bytes()),
            Err(e) => {
                tracing::error!(error = %e, job = job.id, "log commit failed; the shard must restart");
                Err(())
            }
        };
        inner.host.job_finished(job.id, outcome).await;
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
