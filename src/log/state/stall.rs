//! Storage stalls on [`LogState`] (the policy is `crate::log::stall`): a commit that failed for want of space
//! or descriptors is parked with every later one, and they run again, oldest first, once the retry is due.
//!
//! ```text
//! driver: stall_job(id, now) ─▶ id and every later finished job parked; stall begins (or backs off again)
//!         complete_job(id) of a job behind a parked one ─▶ parked too (a retry may rewrite its tail block)
//! decide(now) while stalled ─▶ InFlight (a job runs) | Retry (due) | WaitUntil(next retry)
//! driver: take_retry(now) ─▶ the oldest parked job runs again ─▶ complete_job ─▶ … ─▶ none parked: resumed
//! ```
//! While stalled no new job is taken (appends stage as usual; the server stops offering new proofs), and
//! nothing a parked job carries is reported durable: `durable_through` and tickets advance only when a
//! retry of it completes.

use super::LogState;
use crate::log::commit::CommitDecision;
use crate::log::stall::StorageStall;

impl LogState {
    /// Job `id` failed for want of space or file descriptors (recoverable): it is parked, and so is every
    /// later job that already finished (it was written after this one, and a retry of this one rewrites the
    /// tail block they share); later jobs still running are parked when they finish. No new job is taken
    /// until every parked job has run again successfully. After a fatal failure (`fail_job`) this is a no-op.
    pub fn stall_job(&mut self, id: u64, now_us: u64) {
        if self.poisoned {
            return;
        }
        let Some(at) = self.in_flight.iter().position(|j| j.id == id) else {
            debug_assert!(false, "stall_job for job {id}, which is not in flight");
            return;
        };
        for j in self.in_flight.iter_mut().skip(at).filter(|j| j.id == id || j.durable) {
            j.park();
        }
        match &mut self.stall {
            Some(stall) => stall.failed_again(now_us),
            None => {
                self.stall = Some(StorageStall::new(now_us));
                self.counters.storage_stalls += 1;
            }
        }
        self.counters.storage_stall_failures += 1;
    }

    /// Whether the log is stalled: a commit is parked until storage has room again.
    pub fn is_storage_stalled(&self) -> bool {
        self.stall.is_some()
    }

    /// The current stall, if any.
    pub fn storage_stall(&self) -> Option<&StorageStall> {
        self.stall.as_ref()
    }

    /// The oldest parked job, to execute again now: `None` unless stalled, the retry is due, and no job is
    /// running (parked jobs run one at a time, in order).
    pub fn take_retry(&mut self, now_us: u64) -> Option<u64> {
        let stall = self.stall.as_ref()?;
        if self.poisoned || !stall.retry_due(now_us) || self.in_flight.iter().any(|j| !j.parked) {
            return None;
        }
        let job = self.in_flight.iter_mut().find(|j| j.parked)?;
        job.parked = false;
        self.counters.storage_retries += 1;
        Some(job.id)
    }

    /// Whether job `id` is parked (the driver keeps its `CommitJob` to execute it again).
    pub fn is_parked(&self, id: u64) -> bool {
        self.in_flight.iter().any(|j| j.id == id && j.parked)
    }

    /// Commits executing now (taken or retried, not finished).
    pub fn commits_running(&self) -> usize {
        self.in_flight.iter().filter(|j| !j.parked && !j.durable).count()
    }

    /// The committer's decision while stalled (`None`: not stalled).
    pub(super) fn stall_decision(&self, now_us: u64) -> Option<CommitDecision> {
        let stall = self.stall.as_ref()?;
        Some(if self.in_flight.iter().any(|j| !j.parked) {
            CommitDecision::InFlight
        } else if stall.retry_due(now_us) {
            CommitDecision::Retry
        } else {
            CommitDecision::WaitUntil(stall.next_retry_us)
        })
    }

    /// Job `id` finished its I/O, but an earlier job is parked: park it too instead of reporting it durable.
    /// Returns whether it was parked.
    pub(super) fn park_if_behind_parked(&mut self, id: u64) -> bool {
        if self.stall.is_none() {
            return false;
        }
        let Some(at) = self.in_flight.iter().position(|j| j.id == id) else { return false };
        if !self.in_flight.iter().take(at).any(|j| j.parked) {
            return false;
        }
        self.in_flight[at].park();
        true
    }

    /// After a job became durable: the stall ends once no job is parked.
    pub(super) fn end_stall_if_clear(&mut self) {
        if self.stall.is_some() && self.in_flight.iter().all(|j| !j.parked) {
            self.stall = None;
        }
    }

    /// First record seq carried by a parked job, if any: retention keeps the segments holding those records.
    pub(super) fn parked_records_from(&self) -> Option<u64> {
        self.in_flight.iter().filter(|j| j.parked && j.through.is_some()).map(|j| j.from).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::mailbox::SubscriberKey;
    use crate::log::record::RecordSeq;
    use crate::log::stall::{STALL_RETRY_US_MAX, STALL_RETRY_US_MIN};
    use crate::log::state::test_support::{config, proof, run};

    #[test]
    fn a_stalled_commit_is_parked_retried_with_backoff_and_acknowledged_only_when_durable() {
        let mut s = LogState::new(config()).unwrap();
        s.append(proof(0).view(), 100, 0).unwrap();
        let ticket = s.ticket();
        let a = s.take_job(100, 0).unwrap();
        s.stall_job(a.id, 1_000);
        assert!(s.is_storage_stalled() && s.is_parked(a.id));
        assert!(!s.is_ticket_durable(ticket) && s.durable_through().is_none(), "nothing acknowledged");
        assert_eq!(s.decide(1_000), CommitDecision::WaitUntil(1_000 + STALL_RETRY_US_MIN));
        // Appends still stage, but no new job is taken while stalled.
        s.append(proof(1).view(), 100, 2_000).unwrap();
        s.await_staged();
        assert!(s.take_job(100, 2_000).is_none());
        assert_eq!(s.take_retry(1_000 + STALL_RETRY_US_MIN - 1), None, "not due yet");
        let t = 1_000 + STALL_RETRY_US_MIN;
        assert_eq!(s.decide(t), CommitDecision::Retry);
        assert_eq!(s.take_retry(t), Some(a.id));
        assert_eq!(s.decide(t), CommitDecision::InFlight, "one retry at a time");
        assert_eq!(s.take_retry(t), None);
        // Still full: back off (200 ms after the second failure).
        s.stall_job(a.id, t);
        assert_eq!(s.decide(t), CommitDecision::WaitUntil(t + 200_000));
        assert_eq!(s.counters().storage_stall_failures, 2);
        assert_eq!(s.counters().storage_stalls, 1, "one stall, two failures");
        assert_eq!(s.counters().storage_stalled, 1);
        // Space returned: the retry completes, the stall ends, the staged append commits next.
        let t = t + 200_000;
        assert_eq!(s.take_retry(t), Some(a.id));
        s.complete_job(a.id, a.bytes());
        assert!(!s.is_storage_stalled());
        assert_eq!((s.durable_through(), s.is_ticket_durable(ticket)), (Some(RecordSeq(0)), true));
        assert_eq!(s.counters().storage_retries, 2);
        assert_eq!(s.decide(t), CommitDecision::CommitNow, "the batch staged meanwhile is overdue: it commits now");
        let b = s.take_job(100, t).unwrap();
        assert_eq!((b.records, b.through), (1, Some(RecordSeq(1))));
    }

    #[test]
    fn a_later_commit_that_finished_is_parked_behind_the_stalled_one_and_rerun_in_order() {
        let mut s = LogState::new(config()).unwrap();
        s.append(proof(0).view(), 100, 0).unwrap();
        let a = s.take_job(100, 0).unwrap();
        s.job_written(a.id);
        s.append(proof(1).view(), 100, 0).unwrap();
        let b = s.take_job(100, 0).unwrap();
        // b's write overlapped a's fdatasync and finished first; then a's fdatasync found the disk full.
        s.complete_job(b.id, 0);
        s.stall_job(a.id, 10);
        assert!(s.is_parked(a.id) && s.is_parked(b.id), "b rewrote a's tail block: it runs again after a");
        // c: still running when a stalled, finishing after — parked on completion.
        let mut s2 = LogState::new(config()).unwrap();
        s2.append(proof(0).view(), 100, 0).unwrap();
        let a2 = s2.take_job(100, 0).unwrap();
        s2.job_written(a2.id);
        s2.append(proof(1).view(), 100, 0).unwrap();
        let c2 = s2.take_job(100, 0).unwrap();
        s2.stall_job(a2.id, 10);
        assert_eq!(s2.decide(10 + STALL_RETRY_US_MAX), CommitDecision::InFlight, "c still runs");
        s2.complete_job(c2.id, 0);
        assert!(s2.is_parked(c2.id) && s2.durable_through().is_none());
        // Retries: a, then c; durability in order.
        let t = 10 + STALL_RETRY_US_MAX;
        assert_eq!(s2.take_retry(t), Some(a2.id));
        s2.complete_job(a2.id, 0);
        assert_eq!(s2.durable_through(), Some(RecordSeq(0)));
        assert!(s2.is_storage_stalled(), "c is still parked");
        assert_eq!(s2.take_retry(t), Some(c2.id));
        s2.complete_job(c2.id, 0);
        assert_eq!((s2.durable_through(), s2.is_storage_stalled()), (Some(RecordSeq(1)), false));
        // The first case: retrying a then b.
        assert_eq!(s.take_retry(t), Some(a.id));
        s.complete_job(a.id, 0);
        assert_eq!(s.take_retry(t), Some(b.id));
        s.complete_job(b.id, 0);
        assert_eq!((s.durable_through(), s.commits_in_flight()), (Some(RecordSeq(1)), 0));
    }

    #[test]
    fn a_fatal_failure_during_a_stall_poisons() {
        let mut s = LogState::new(config()).unwrap();
        s.append(proof(0).view(), 100, 0).unwrap();
        let a = s.take_job(100, 0).unwrap();
        s.stall_job(a.id, 0);
        // A subscription still stages (its SUBSCRIBED waits for the stall to end, like an ACK).
        s.subscribe(SubscriberKey([3; 16]), &[], 0).unwrap();
        let ticket = s.ticket();
        assert_eq!(s.take_retry(STALL_RETRY_US_MIN), Some(a.id));
        s.fail_job(a.id);
        assert!(s.is_poisoned());
        assert_eq!(s.decide(10 * STALL_RETRY_US_MAX), CommitDecision::Idle);
        assert_eq!(s.take_retry(10 * STALL_RETRY_US_MAX), None);
        assert!(!s.is_ticket_durable(ticket), "nothing is released after a fatal failure");
    }

    #[test]
    fn retention_during_a_stall_keeps_the_segments_of_parked_records() {
        let mut s = LogState::new(config()).unwrap();
        let mut disk = Default::default();
        for i in 0..20 {
            s.append(proof(i).view(), 100, 0).unwrap();
        }
        run(&mut s, 100, &mut disk); // segment 0: seqs 0..14, segment 1: 14..20
        for i in 20..30 {
            s.append(proof(i).view(), 100, 0).unwrap(); // 20..28 fill segment 1, 28..30 open segment 2
        }
        let job = s.take_job(100, 0).unwrap();
        s.stall_job(job.id, 0);
        // Everything is expired: segment 0 may go (it frees space), segment 1 holds parked records.
        let plan = s.plan_retention(100 + 3_600);
        assert_eq!(plan.delete, vec![0, 1]);
        let files = s.apply_retention(&plan);
        assert_eq!(files.len(), 2, "only segment 0 and its mailbox: {files:?}");
        assert_eq!(s.segment_ranges()[0].1, RecordSeq(14));
    }
}
