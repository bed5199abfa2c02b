//! The shard's log as the driver executes it: commit jobs out, their outcomes in, held replies released in
//! ticket order; retention; and the periodic tick.
//!
//! ```text
//! respond_when_durable(response) ─ticket (somebody waits)─▶ held (tickets non-decreasing)
//! driver committer: commit_decision(now) ─▶ poll_commit_job ─▶ write ─▶ handle_commit_written
//!                   ─▶ fdatasync ─▶ handle_commit_done ─▶ release_durable: held replies whose ticket is durable
//!                                  └▶ handle_commit_failed: poisoned (fail-stop: nothing more is acknowledged)
//!                                  └▶ handle_commit_stalled: storage full — the job is parked; until a retry
//!                                     (poll_commit_retry) succeeds, PUBLISH parts are refused with
//!                                     ERROR(STORAGE) (refuse_stalled), cover is skipped, held replies wait
//! driver retention: plan_retention ─(roll, flush)─▶ handle_retention ─▶ files to delete
//! handle_tick(clock) ─▶ engine tick, slow-consumer closes, gauges, release_durable
//! ```

use super::{Clock, Held, ShardServer};
use crate::engine::Rejection;
use crate::log::commit::CommitDecision;
use crate::log::job::{CommitJob, FileId};
use crate::log::retention::RetentionPlan;
use crate::log::stall::STORAGE_RETRY_AFTER_MS;
use crate::log::state::LogState;
use crate::proto::{ErrorCode, Frame};
use crate::server::close::CloseReason;
use crate::server::metrics::ShardMetrics;
use crate::server::msg::{ConnAddr, ConnId, Response};
use crate::server::refusal::error_frame;

/// What one retention pass changed in the log state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionApplied {
    /// Files to delete (segments with their `.mbx`), oldest first.
    pub files: Vec<FileId>,
    /// Subscription entries expired.
    pub subscription_entries_expired: u64,
}

impl ShardServer {
    /// Sends `response` once everything staged so far is durable (at once with nothing held or pending).
    pub(super) fn respond_when_durable(&mut self, shard: usize, response: Response, clock: Clock) {
        let ticket = self.engine.log_mut().ticket_awaited();
        if self.held.is_empty() && self.engine.log().is_ticket_durable(ticket) {
            self.send_response(shard, response, clock);
        } else {
            // Replies are released in order, so a later ticket must never be queued before an earlier one.
            debug_assert!(self.held.back().is_none_or(|h| h.ticket <= ticket), "held tickets must not decrease");
            self.held.push_back(Held { ticket, shard, response });
        }
    }

    /// Sends every held response whose ticket is durable, in order.
    fn release_durable(&mut self, clock: Clock) {
        while let Some(held) = self.held.front() {
            if !self.engine.log().is_ticket_durable(held.ticket) {
                break;
            }
            let Some(Held { shard, response, .. }) = self.held.pop_front() else { break };
            self.send_response(shard, response, clock);
        }
    }

    /// Replies held until the log is durable (a gauge for tests and shutdown).
    pub fn held_replies(&self) -> usize {
        self.held.len()
    }

    /// Whether the committer should decide again (something was staged or awaited since the last poll).
    pub fn poll_commit_kick(&mut self) -> bool {
        self.engine.log_mut().take_commit_kick()
    }

    /// What the committer should do at monotonic `now_us`.
    pub fn commit_decision(&self, now_us: u64) -> CommitDecision {
        self.engine.log().state().decide(now_us)
    }

    /// The next commit job, if one may start now (`now_s` stamps new file headers).
    pub fn poll_commit_job(&mut self, now_s: u64, now_us: u64) -> Option<CommitJob> {
        self.engine.log_mut().state_mut().take_job(now_s, now_us)
    }

    /// Job `id`'s writes completed (the next job may be written now).
    pub fn handle_commit_written(&mut self, id: u64) {
        self.engine.log_mut().state_mut().job_written(id);
    }

    /// Job `id` is durable (`bytes` written): release the replies that waited for it.
    pub fn handle_commit_done(&mut self, id: u64, bytes: u64, clock: Clock) {
        self.begin(clock);
        let stalled_since_us = self.log().storage_stall().map(|s| s.since_us);
        self.engine.log_mut().state_mut().complete_job(id, bytes);
        if let (Some(since_us), false) = (stalled_since_us, self.log().is_storage_stalled()) {
            let stalled_ms = clock.mono_us.saturating_sub(since_us) / 1000;
            tracing::warn!(shard = self.id, stalled_ms, "storage has room again: the log resumed");
        }
        self.release_durable(clock);
    }

    /// Job `id` failed for want of space or descriptors: it is parked and retried (`crate::log::stall`);
    /// meanwhile nothing it carries is acknowledged, and new PUBLISH parts are refused with ERROR(STORAGE).
    pub fn handle_commit_stalled(&mut self, id: u64, clock: Clock) {
        if !self.log().is_storage_stalled() {
            tracing::warn!(
                shard = self.id,
                "storage full: PUBLISH refused with ERROR(STORAGE) and cover traffic paused until space returns"
            );
        }
        self.engine.log_mut().state_mut().stall_job(id, clock.mono_us);
    }

    /// The parked job to execute again at `now_us`, if its retry is due (see `handle_commit_stalled`).
    pub fn poll_commit_retry(&mut self, now_us: u64) -> Option<u64> {
        self.engine.log_mut().state_mut().take_retry(now_us)
    }

    /// Refuses one owner shard's part of PUBLISH `seq` because the log is stalled: nothing is appended (so
    /// nothing is deduplicated: a retry is not mistaken for a duplicate), and the answer is not held behind
    /// the replies that wait for the parked commit. The publisher gets one ERROR(STORAGE) naming `seq`.
    pub(super) fn refuse_stalled(
        &mut self,
        origin: ConnAddr,
        seq: u64,
        indices: &[u16],
        received_us: u64,
        clock: Clock,
    ) {
        ShardMetrics::add(&self.m().storage_refused_proofs, indices.len() as u64);
        let rejected = indices.iter().map(|&i| (i, Rejection::LogFailed)).collect();
        let response = Response::Published { conn: origin.conn, seq, rejected, received_us };
        self.send_response(origin.shard as usize, response, clock);
    }

    /// Job `id` failed: its outcome on disk is unknown, so the log is poisoned and nothing held is ever
    /// released; the driver stops the relay and recovery decides at the next start.
    pub fn handle_commit_failed(&mut self, id: u64) {
        self.engine.log_mut().state_mut().fail_job(id);
    }

    /// Whether `proofs` more proofs can be offered now (the driver stops reading PUBLISHes otherwise). A
    /// stalled log takes them at once — to refuse them (`refuse_stalled`), not to wait for room that may not
    /// come back for hours, and so that FETCH requests queued behind them keep moving.
    pub fn can_accept(&self, proofs: u64) -> bool {
        self.log().is_storage_stalled() || self.engine.log().can_accept(proofs)
    }

    /// This shard's log state (counters, subscriptions, durability).
    pub fn log(&self) -> &LogState {
        self.engine.log().state()
    }

    /// Which segments retention would delete at `now_s`, and whether the active one must roll first.
    pub fn plan_retention(&self, now_s: u64) -> RetentionPlan {
        self.log().plan_retention(now_s)
    }

    /// Starts a new segment at the next commit (so the active one can expire).
    pub fn request_log_roll(&mut self) {
        self.engine.log_mut().state_mut().request_roll();
    }

    /// Applies retention at `now_s` (call with no commit in flight): expires subscription entries and returns
    /// the files to delete.
    pub fn handle_retention(&mut self, now_s: u64, clock: Clock) -> RetentionApplied {
        self.begin(clock);
        debug_assert_eq!(self.log().commits_running(), 0, "retention runs between commits (parked ones aside)");
        let state = self.engine.log_mut().state_mut();
        let plan = state.plan_retention(now_s);
        let subscription_entries_expired = state.expire_subscriptions(now_s);
        let files = state.apply_retention(&plan);
        // Matches of deleted segments vanish from the staging: a reply may be releasable now.
        self.release_durable(clock);
        RetentionApplied { files, subscription_entries_expired }
    }

    /// Whether the log is stalled for want of storage (PUBLISH refused, cover skipped, retention frees space).
    pub fn is_storage_stalled(&self) -> bool {
        self.log().is_storage_stalled()
    }

    /// Remembers a commitment accepted before a restart (dedup rebuilt from storage).
    pub fn restore_commit(&mut self, window_start_s: u64, commit: &crate::proto::Commit) {
        self.engine.restore_dedup(window_start_s, commit);
    }

    /// Periodic work: expire windows, close stalled connections, refresh gauges, release replies.
    pub fn handle_tick(&mut self, clock: Clock) {
        self.begin(clock);
        self.engine.handle_tick(clock.unix_s);
        let now_ms = clock.mono_us / 1000;
        let grace_ms = self.slow_consumer_grace_ms;
        let stalled: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.close.is_none() && c.outbox.stalled(now_ms, grace_ms))
            .map(|(&id, _)| id)
            .collect();
        for conn in stalled {
            ShardMetrics::add(&self.m().slow_consumer_closes, 1);
            self.push_frame(conn, &error_frame(ErrorCode::SLOW_CONSUMER, 0, 0, CloseReason::SlowConsumer.text()));
            self.close(conn, CloseReason::SlowConsumer);
        }
        self.release_durable(clock);
        self.update_queue_gauge();
        self.update_subscription_gauges();
        ShardMetrics::set(&self.m().retained_proofs, self.engine.retained_proofs());
    }
}

/// `ERROR(STORAGE)` for PUBLISH `seq` refused while storage is full: `detail` is how long to wait before
/// publishing again, in ms (docs/PROTOCOL.md §7).
pub(super) fn storage_refusal(seq: u64) -> Frame {
    let text = format!("storage full: not stored, not acknowledged; publish again after {STORAGE_RETRY_AFTER_MS} ms");
    error_frame(ErrorCode::STORAGE, seq, STORAGE_RETRY_AFTER_MS, &text)
}
