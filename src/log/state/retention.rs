//! Retention on [`LogState`]: whole segments (with their `.mbx`) go once their newest record is past the
//! horizon; the active segment must roll first. The policy itself is `crate::log::retention`; this applies it.
//!
//! ```text
//! plan_retention(now) ──▶ segment summaries ──▶ retention::plan ──▶ RetentionPlan { delete, roll_active, .. }
//!   roll_active ──▶ request_roll ──▶ the next take_job opens a new segment
//!   delete ──▶ apply_retention (between commits) ──▶ segments dropped, mailbox trimmed ──▶ files to delete
//! expire_subscriptions(now) ──▶ entries whose windows ended dropped from the subscription table
//! ```

use super::LogState;
use crate::log::format::FileKind;
use crate::log::job::FileId;
use crate::log::record::RecordSeq;
use crate::log::retention::{self, RetentionPlan, SegmentSummary};

impl LogState {
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
    /// Call between commits (no job running; parked ones may wait), after `plan_retention` at the same state.
    /// While storage is stalled this is what frees space, but a segment holding records of a parked job is
    /// kept (they are not durable yet, and a retry writes them).
    pub fn apply_retention(&mut self, plan: &RetentionPlan) -> Vec<FileId> {
        assert_eq!(self.commits_running(), 0, "retention runs between commits");
        let mut files = Vec::new();
        let mut n = plan.delete.len().min(self.segments.len().saturating_sub(1));
        if let Some(from) = self.parked_records_from() {
            n = n.min(self.segments.iter().take_while(|s| s.end_seq() <= from).count());
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::commit::CommitDecision;
    use crate::log::mailbox::SubscriberKey;
    use crate::log::state::test_support::{config, proof, run};

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
}
