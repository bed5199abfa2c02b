//! Duplicate suppression by (commit, window), in memory bounded by the live windows.
//!
//! ```text
//! accepted-looking proof ──(commit, window)──▶ ring slot (window / window_s) mod DEDUP_WINDOWS
//!                                               ├─ slot holds an older window: it has expired, clear & reuse
//!                                               ├─ commit present: duplicate (counted, not an error)
//!                                               └─ absent: insert, the proof is new
//! ```
//! Because `clock_skew_s < window_s`, at most three consecutive windows are accepted at any instant, so a
//! ring of four per-window sets never holds two live windows in one slot. Sets are cleared, not freed, when
//! their window expires: after the first windows the table never allocates again unless traffic grows.
//! Each window holds at most `dedup_entries_per_window_max` commits; past that the proof is refused
//! (`Rejection::DedupFull`), never remembered without bound.

use std::collections::HashSet;

use crate::proto::Commit;

use super::keyed_hash::KeyedState;

/// Ring size: one more than the three windows that can be live at once (see module docs).
pub const DEDUP_WINDOWS: usize = 4;

/// The outcome of offering a commit to the dedup table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupOutcome {
    /// First time this (commit, window) is seen: remembered now.
    New,
    /// Already accepted in this window.
    Duplicate,
    /// The window's set is at its bound; nothing was remembered.
    Full,
}

/// One window's set of accepted commits.
struct WindowSet {
    /// Which window the set holds (`None` before first use).
    window_start_s: Option<u64>,
    /// Commits accepted in that window.
    commits: HashSet<Commit, KeyedState>,
}

/// The dedup table of one shard.
pub struct Dedup {
    /// Ring of per-window sets, indexed by `(window_start / window_s) mod DEDUP_WINDOWS`.
    windows: [WindowSet; DEDUP_WINDOWS],
    /// Window length, seconds.
    window_s: u64,
    /// Bound on each window's set.
    entries_per_window_max: usize,
}

impl Dedup {
    /// An empty table.
    pub fn new(window_s: u64, entries_per_window_max: usize, hash_key: [u64; 2]) -> Self {
        let state = KeyedState::new(hash_key);
        Self {
            windows: std::array::from_fn(|_| WindowSet { window_start_s: None, commits: HashSet::with_hasher(state) }),
            window_s,
            entries_per_window_max,
        }
    }

    #[inline]
    fn slot(&self, window_start_s: u64) -> usize {
        ((window_start_s / self.window_s) % DEDUP_WINDOWS as u64) as usize
    }

    /// Remembers `commit` in `window_start_s` unless already there. The caller has checked that the window is
    /// currently accepted (so whatever else occupies its ring slot has expired).
    #[inline]
    pub fn insert(&mut self, commit: &Commit, window_start_s: u64) -> DedupOutcome {
        let max = self.entries_per_window_max;
        let slot = self.slot(window_start_s);
        let set = &mut self.windows[slot];
        if set.window_start_s != Some(window_start_s) {
            set.commits.clear();
            set.window_start_s = Some(window_start_s);
        }
        if set.commits.contains(commit) {
            DedupOutcome::Duplicate
        } else if set.commits.len() >= max {
            DedupOutcome::Full
        } else {
            set.commits.insert(*commit);
            DedupOutcome::New
        }
    }

    /// Forgets every window before `earliest_s` (keeps the memory for reuse).
    pub fn expire_before(&mut self, earliest_s: u64) {
        for set in &mut self.windows {
            if set.window_start_s.is_some_and(|w| w < earliest_s) {
                set.commits.clear();
                set.window_start_s = None;
            }
        }
    }

    /// Commits remembered over all live windows.
    pub fn len(&self) -> usize {
        self.windows.iter().map(|s| s.commits.len()).sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_a_window_only() {
        let mut d = Dedup::new(10, 100, [1, 2]);
        assert_eq!(d.insert(&[1; 32], 100), DedupOutcome::New);
        assert_eq!(d.insert(&[1; 32], 100), DedupOutcome::Duplicate);
        assert_eq!(d.insert(&[1; 32], 110), DedupOutcome::New);
        assert_eq!(d.insert(&[2; 32], 100), DedupOutcome::New);
        assert_eq!(d.len(), 3);
        d.expire_before(110);
        assert_eq!(d.len(), 1);
        assert_eq!(d.insert(&[1; 32], 110), DedupOutcome::Duplicate);
    }

    #[test]
    fn slot_reuse_forgets_the_expired_window() {
        let mut d = Dedup::new(10, 100, [1, 2]);
        assert_eq!(d.insert(&[1; 32], 100), DedupOutcome::New);
        // 140 maps to the same ring slot as 100; 100 must have expired for 140 to be accepted.
        assert_eq!(d.insert(&[1; 32], 140), DedupOutcome::New);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn bounded_per_window() {
        let mut d = Dedup::new(10, 2, [1, 2]);
        assert_eq!(d.insert(&[1; 32], 100), DedupOutcome::New);
        assert_eq!(d.insert(&[2; 32], 100), DedupOutcome::New);
        assert_eq!(d.insert(&[3; 32], 100), DedupOutcome::Full);
        assert_eq!(d.insert(&[2; 32], 100), DedupOutcome::Duplicate);
        assert_eq!(d.insert(&[3; 32], 110), DedupOutcome::New);
    }
}
