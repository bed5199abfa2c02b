//! Group commit: when to turn staged appends into one write + fdatasync.
//!
//! ```text
//! append ──▶ staged (count, time of the oldest) ──decide(now)──▶ CommitNow | WaitUntil(deadline) | Idle
//!                                                         start(taken, now) ─▶ the commit takes the batch
//! ```
//!
//! A batch goes to disk when it holds `records_max` items or its oldest item has waited `delay_us_max`,
//! whichever comes first — provided somebody waits for it (`on_awaited`: an ACK or SUBSCRIBED took a
//! durability ticket). Items nobody waits for (cover traffic and its matches, on an otherwise idle relay)
//! wait up to [`UNAWAITED_DELAY_US_MAX`] instead and ride along with the next awaited commit: an idle relay
//! then makes about one fdatasync a second rather than one per dummy (~420 a second per shard at the default
//! ε = 0.1, which cost a quarter of a core and put a real PUBLISH behind a dummy's fdatasync). How many commits may be in flight is the log state's business
//! (`crate::log::state`: one writing, at most two syncing); appends that arrive meanwhile form the next
//! batch, so under load batches grow by themselves to what one fdatasync carries (the classic group commit),
//! and at low load an item waits at most `delay_us_max` plus one fdatasync. Time is an argument (µs from any
//! monotonic origin), never read here.

/// How long staged items that nobody waits for may stay unwritten, µs: 1 s. What this risks is only items
/// never acknowledged to anyone (a crash loses at most the last second of dummies and their matches); what it
/// saves is one write + fdatasync per dummy on a quiet relay. The bytes on disk are the same either way.
pub const UNAWAITED_DELAY_US_MAX: u64 = 1_000_000;

/// The two knobs (tuning/log.md explains the defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommitPolicy {
    /// Commit as soon as this many items are staged (`log_group_commit_records_max`); 1 disables grouping.
    pub records_max: u32,
    /// Commit once the oldest staged item has waited this long, µs (`log_group_commit_delay_us_max`).
    pub delay_us_max: u64,
}

impl GroupCommitPolicy {
    /// Default batch size: 1,024 items, one full PUBLISH batch (`Limits::proofs_per_batch_max`), so a full
    /// batch is committed at once instead of waiting out the delay. Under load N is rarely what triggers a
    /// commit: batches form while earlier commits are in flight (tuning/log.md: ~220–360 records per
    /// commit at 128k proofs/s with fdatasync at 3–4 ms on this disk).
    pub const RECORDS_MAX_DEFAULT: u32 = 1_024;
    /// Default delay: 200 µs — a few executor turns, so the frames of one burst that arrive over several
    /// reads share one fdatasync, at a cost of 0.2 ms on an ACK that waits for a ~1–4 ms fdatasync anyway.
    /// Longer delays only add latency here (tuning/log.md): the batching comes from the commit in flight.
    pub const DELAY_US_MAX_DEFAULT: u64 = 200;
    /// No grouping: every item is committed alone (the bench's baseline).
    pub const NONE: GroupCommitPolicy = GroupCommitPolicy { records_max: 1, delay_us_max: 0 };
}

impl Default for GroupCommitPolicy {
    fn default() -> Self {
        Self { records_max: Self::RECORDS_MAX_DEFAULT, delay_us_max: Self::DELAY_US_MAX_DEFAULT }
    }
}

/// What the committer should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitDecision {
    /// Nothing staged.
    Idle,
    /// Commits in flight must progress before another may start (decided by the log state).
    InFlight,
    /// Start a commit now.
    CommitNow,
    /// Sleep until this time (µs) unless more items arrive first.
    WaitUntil(u64),
    /// Storage was full: execute the oldest parked commit again (`crate::log::stall`).
    Retry,
}

/// Group-commit state of one shard's log.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    policy: GroupCommitPolicy,
    staged: u64,
    oldest_staged_at_us: Option<u64>,
    /// Someone waits for the staged items (a ticket was taken since the last commit took them).
    awaited: bool,
}

impl GroupCommit {
    /// Nothing staged, nothing in flight.
    pub fn new(policy: GroupCommitPolicy) -> Self {
        Self { policy, staged: 0, oldest_staged_at_us: None, awaited: false }
    }

    /// The policy.
    pub fn policy(&self) -> GroupCommitPolicy {
        self.policy
    }

    /// `n` items were staged at `now_us`.
    pub fn on_staged(&mut self, n: u64, now_us: u64) {
        if n == 0 {
            return;
        }
        self.staged += n;
        self.oldest_staged_at_us.get_or_insert(now_us);
    }

    /// Somebody waits for what is staged now. Returns whether that shortens the deadline (the committer
    /// should re-decide).
    pub fn on_awaited(&mut self) -> bool {
        let changed = self.staged > 0 && !self.awaited;
        self.awaited |= self.staged > 0;
        changed
    }

    /// Items staged and not yet taken by a commit.
    pub fn staged(&self) -> u64 {
        self.staged
    }

    /// The decision at `now_us`.
    pub fn decide(&self, now_us: u64) -> CommitDecision {
        let Some(oldest) = self.oldest_staged_at_us else { return CommitDecision::Idle };
        let delay_us =
            if self.awaited { self.policy.delay_us_max } else { UNAWAITED_DELAY_US_MAX.max(self.policy.delay_us_max) };
        let deadline = oldest.saturating_add(delay_us);
        if self.staged >= self.policy.records_max as u64 || now_us >= deadline {
            CommitDecision::CommitNow
        } else {
            CommitDecision::WaitUntil(deadline)
        }
    }

    /// A commit took `taken` of the staged items at `now_us` (the rest, if any, start waiting now).
    pub fn start(&mut self, taken: u64, now_us: u64) {
        self.staged = self.staged.saturating_sub(taken);
        self.oldest_staged_at_us = (self.staged > 0).then_some(now_us);
        // Leftovers were staged before the commit started, so whoever waited may be waiting for them too.
        self.awaited &= self.staged > 0;
    }

    /// Forgets what was staged (a commit found nothing to write).
    pub fn clear(&mut self) {
        self.staged = 0;
        self.oldest_staged_at_us = None;
        self.awaited = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: GroupCommitPolicy = GroupCommitPolicy { records_max: 4, delay_us_max: 500 };

    #[test]
    fn count_or_delay_whichever_first() {
        let mut g = GroupCommit::new(P);
        assert_eq!(g.decide(0), CommitDecision::Idle);
        g.on_staged(1, 1_000);
        assert!(g.on_awaited());
        assert_eq!(g.decide(1_000), CommitDecision::WaitUntil(1_500));
        g.on_staged(2, 1_200);
        assert_eq!(g.decide(1_499), CommitDecision::WaitUntil(1_500), "deadline runs from the oldest item");
        assert_eq!(g.decide(1_500), CommitDecision::CommitNow);
        g.on_staged(1, 1_300);
        assert_eq!(g.decide(1_300), CommitDecision::CommitNow, "4 items reach records_max");
    }

    #[test]
    fn the_next_batch_forms_after_a_commit_takes_the_last() {
        let mut g = GroupCommit::new(P);
        g.on_staged(4, 0);
        g.start(4, 10);
        assert_eq!(g.decide(10), CommitDecision::Idle);
        g.on_staged(2, 2_000);
        g.on_awaited();
        assert_eq!(g.decide(2_100), CommitDecision::WaitUntil(2_500));
        assert_eq!(g.staged(), 2);
    }

    #[test]
    fn leftovers_start_waiting_when_the_commit_starts() {
        let mut g = GroupCommit::new(P);
        g.on_staged(10, 0);
        g.start(6, 100);
        assert_eq!(g.staged(), 4);
        assert_eq!(g.decide(100), CommitDecision::CommitNow);
        g.start(4, 100);
        assert_eq!(g.decide(100), CommitDecision::Idle);
    }

    #[test]
    fn no_grouping_commits_every_item() {
        let mut g = GroupCommit::new(GroupCommitPolicy::NONE);
        g.on_staged(1, 5);
        assert_eq!(g.decide(5), CommitDecision::CommitNow);
    }

    #[test]
    fn unawaited_items_wait_up_to_a_second_until_someone_waits() {
        let mut g = GroupCommit::new(P);
        assert!(!g.on_awaited(), "nothing staged: nothing to wait for");
        g.on_staged(1, 1_000);
        assert_eq!(g.decide(1_000), CommitDecision::WaitUntil(1_000 + UNAWAITED_DELAY_US_MAX));
        g.on_staged(1, 1_100);
        assert!(g.on_awaited(), "the first waiter shortens the deadline");
        assert!(!g.on_awaited(), "later waiters do not change it");
        assert_eq!(g.decide(1_100), CommitDecision::WaitUntil(1_500), "runs from the oldest item");
        g.start(2, 1_600);
        g.on_staged(1, 2_000);
        assert_eq!(
            g.decide(2_000),
            CommitDecision::WaitUntil(2_000 + UNAWAITED_DELAY_US_MAX),
            "a commit ends the wait"
        );
        assert_eq!(g.decide(2_000 + UNAWAITED_DELAY_US_MAX), CommitDecision::CommitNow);
        g.on_staged(3, 2_100);
        assert_eq!(g.decide(2_100), CommitDecision::CommitNow, "records_max still commits at once");
    }
}
