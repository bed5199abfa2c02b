//! The shard's log as its server owns it: the pure [`LogState`], the server's monotonic clock (group commit's
//! delay is measured on it), and a "re-decide" flag for the driver's committer.
//!
//! ```text
//! engine.handle_publish ─▶ LogSink::append ─┐
//! server: record_match / subscribe / fetch ─┼─▶ LogState (staging) ─▶ commit_kick set when the committer's
//! server: ticket_awaited (a reply waits) ───┘                          decision may change (0 → 1 staged item,
//!                                                                      batch full, somebody waits)
//! driver: ShardServer::poll_commit_kick ─▶ wakes its committer ─▶ ShardServer::poll_commit_job ─▶ I/O
//! ```
//! Nothing here does I/O or reads a clock: the server passes its [`Clock`](super::shard::Clock) in through
//! [`ServerLog::observe`] before each call that may stage something.

use crate::engine::LogSink;
use crate::log::mailbox::SubscriberKey;
use crate::log::record::RecordSeq;
use crate::log::state::{FetchPlan, LogError, LogState};
use crate::log::subscriptions::SubscriptionError;
use crate::proto::{ProofRef, SubscribeEntry};

/// See the module docs.
#[derive(Debug)]
pub struct ServerLog {
    state: LogState,
    /// Monotonic µs of the server's clock at the call being handled (group commit's delay starts from it).
    now_us: u64,
    /// The committer should decide again (set by staging; taken by the driver).
    commit_kick: bool,
}

impl ServerLog {
    /// Wraps a recovered (or fresh) log state.
    pub fn new(state: LogState) -> Self {
        Self { state, now_us: 0, commit_kick: false }
    }

    /// The server's clock for the calls that follow.
    pub fn observe(&mut self, mono_us: u64) {
        self.now_us = self.now_us.max(mono_us);
    }

    /// The pure state (counters, decisions, retention plans).
    pub fn state(&self) -> &LogState {
        &self.state
    }

    /// The pure state, mutably: commit jobs and retention, driven by the server's `handle_commit_*` methods.
    pub(super) fn state_mut(&mut self) -> &mut LogState {
        &mut self.state
    }

    /// Runs one staging step and flags the committer when its decision may change: the first staged item
    /// starts the group-commit delay; reaching `records_max` commits at once.
    fn staging<R>(&mut self, step: impl FnOnce(&mut LogState, u64) -> R) -> R {
        let before = self.state.staged_items();
        let result = step(&mut self.state, self.now_us);
        let (after, full) = (self.state.staged_items(), self.state.config().commit.records_max as u64);
        if (before == 0 && after > 0) || (before < full && after >= full) {
            self.commit_kick = true;
        }
        result
    }

    /// Records that the proof at `seq` matched `key` (call before the next await after the append: the match
    /// then commits with its proof).
    pub fn record_match(&mut self, key: SubscriberKey, seq: RecordSeq) -> Result<(), LogError> {
        self.staging(|st, now_us| st.record_match(key, seq, now_us))
    }

    /// Records a match found by a late scan unless `key` already has it; returns whether it was new.
    pub fn record_late_match(&mut self, key: SubscriberKey, seq: RecordSeq) -> Result<bool, LogError> {
        self.staging(|st, now_us| st.record_match_if_new(key, seq, now_us))
    }

    /// Persists `key`'s subscription entries (replacing earlier ones; none = cleared).
    pub fn subscribe(&mut self, key: SubscriberKey, entries: &[SubscribeEntry]) -> Result<u64, SubscriptionError> {
        self.staging(|st, now_us| st.subscribe(key, entries, now_us))
    }

    /// Plans one FETCH page (the driver reads the records); the new cursor is staged and awaited, so it is
    /// durable within the group-commit delay.
    pub fn fetch(&mut self, key: SubscriberKey, cursor: u64, token: u64, proofs_max: usize) -> FetchPlan {
        let plan = self.staging(|st, now_us| st.fetch(key, cursor, token, proofs_max, now_us));
        self.ticket_awaited();
        plan
    }

    /// Counts what a FETCH read: `served` records returned, `skipped` failing verification.
    pub fn note_fetch_reads(&mut self, served: u64, skipped: u64) {
        self.state.note_fetch_reads(served, skipped);
    }

    /// A ticket for everything staged so far, taken because a reply waits for it: what is staged is then
    /// committed within the group-commit delay rather than the unawaited one.
    pub fn ticket_awaited(&mut self) -> u64 {
        let ticket = self.state.ticket();
        if self.state.await_staged() {
            self.commit_kick = true;
        }
        ticket
    }

    /// Whether everything covered by `ticket` is durable.
    pub fn is_ticket_durable(&self, ticket: u64) -> bool {
        self.state.is_ticket_durable(ticket)
    }

    /// Whether `proofs` more proofs can be staged now (backpressure).
    pub fn can_accept(&self, proofs: u64) -> bool {
        self.state.can_accept(proofs)
    }

    /// Takes the "committer, decide again" flag.
    pub fn take_commit_kick(&mut self) -> bool {
        std::mem::take(&mut self.commit_kick)
    }
}

impl LogSink for ServerLog {
    #[inline]
    fn append(&mut self, proof: ProofRef<'_>, received_at_s: u64) -> Result<RecordSeq, LogError> {
        self.staging(|st, now_us| st.append(proof, received_at_s, now_us))
    }
}
