//! Duplicate suppression by (commit, window), in memory bounded by the live windows.
//!
//! ```text
//! verified proof ──(commit, window, h = SHA-256(commit) bits)──▶ ring slot (window / window_s) mod DEDUP_WINDOWS
//!   ├─ slot holds an older window: it has expired, clear & reuse its table
//!   └─ open-addressing table of 64-byte lines, two 32-byte commits per line, linear probing by line
//!        ├─ commit found: duplicate (counted, not an error)
//!        └─ empty entry reached: insert, the proof is new
//! ```
//! Because `clock_skew_s < window_s`, at most three consecutive windows are accepted at any instant, so a
//! ring of four per-window tables never holds two live windows in one slot. Tables are cleared, not freed,
//! when their window expires (`expire_before`, called from the shard's tick): after the first windows the
//! dedup never allocates again unless traffic grows.
//!
//! Why not `HashSet<[u8; 32]>`: at a million commits per window a table is far larger than the caches, so a
//! lookup is a DRAM miss plus a page walk (~0.5–1 µs here; docs/PERFORMANCE.md). This table takes its hash
//! from the SHA-256 of the commit the verifier computes anyway (mixed with the shard's secret key, so clients
//! cannot aim collisions), which lets the engine `prefetch` every line of a chunk before probing: the misses
//! overlap instead of queueing. A probe almost always touches exactly one cache line (the entries live in
//! the line the hash selects; no separate tag array), so each new proof costs one miss, not two.
//!
//! An all-zero entry marks "empty"; the all-zero commit (a valid, if odd, commit) is remembered in a flag.
//!
//! Bounds: each window holds at most `dedup_entries_per_window_max` commits (load ≤ 1/2) and a probe visits
//! at most `PROBE_LINES_MAX` lines; past either the proof is refused (`Full`), never remembered without bound.
//! Clearing an expired window's table writes its whole array (64 B per two entries, ~25 ms for the 4 Mi
//! default bound), once per window, on the tick rather than on the publish path.

use crate::index::simd::prefetch_read;
use crate::proto::Commit;

/// Ring size: one more than the three windows that can be live at once (see module docs).
pub const DEDUP_WINDOWS: usize = 4;

/// Initial table size per window (lines of two entries). Small so idle shards and tests stay small;
/// doubling reaches the steady-state size within the first window.
const TABLE_LINES_MIN: usize = 1 << 9;

/// Longest probe sequence, in lines. At load ≤ 1/2 nearly every probe ends in its first line and the longest
/// run in a table of millions stays far below this; 512 lines (32 KiB) is only reachable by engineered
/// collisions (which the secret key prevents) and bounds the work if it happens anyway.
pub const PROBE_LINES_MAX: usize = 512;

/// The outcome of offering a commit to the dedup table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupOutcome {
    /// First time this (commit, window) is seen: remembered now.
    New,
    /// Already accepted in this window.
    Duplicate,
    /// The window's table is at its bound; nothing was remembered.
    Full,
}

/// One cache line: two commits (all-zero = empty).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([Commit; 2]);

const EMPTY_LINE: Line = Line([[0u8; 32]; 2]);
const ZERO_COMMIT: Commit = [0u8; 32];

/// One window's set of accepted commits: open addressing over lines, load factor ≤ 1/2.
struct CommitTable {
    /// Which window the table holds (`None` before first use and after expiry).
    window_start_s: Option<u64>,
    /// Power-of-two number of lines.
    lines: Vec<Line>,
    /// Whether the all-zero commit was accepted (it cannot be stored: it is the empty marker).
    zero_seen: bool,
    /// Commits held (entries plus the zero flag).
    len: usize,
    /// Size the table starts at and never shrinks below (power of two).
    lines_min: usize,
}

impl CommitTable {
    /// A table of `lines_min` lines, allocated now if `eager` (else on first insert).
    fn new(lines_min: usize, eager: bool) -> Self {
        let lines = if eager { vec![EMPTY_LINE; lines_min] } else { Vec::new() };
        Self { window_start_s: None, lines, zero_seen: false, len: 0, lines_min }
    }

    /// Empties the table for reuse. A table the last window filled to less than 1/8 shrinks to a quarter,
    /// so memory taken by a traffic spike is given back within a few windows instead of kept forever.
    fn clear(&mut self) {
        if self.len * 8 < self.lines.len() && self.lines.len() > self.lines_min {
            self.lines = vec![EMPTY_LINE; (self.lines.len() / 4).max(self.lines_min)];
        } else if self.len > 0 {
            self.lines.fill(EMPTY_LINE);
        }
        self.zero_seen = false;
        self.len = 0;
    }

    #[inline]
    fn line_mask(&self) -> usize {
        self.lines.len() - 1
    }

    /// Doubles the table (or creates it) and reinserts every commit at the line `line_of` gives.
    fn grow(&mut self, line_of: impl Fn(&Commit) -> usize) {
        let count = (self.lines.len() * 2).max(self.lines_min);
        let old = std::mem::replace(&mut self.lines, vec![EMPTY_LINE; count]);
        let mask = count - 1;
        for commit in old.iter().flat_map(|l| l.0.iter()).filter(|c| **c != ZERO_COMMIT) {
            let mut i = line_of(commit) & mask;
            loop {
                if let Some(e) = self.lines[i].0.iter_mut().find(|e| **e == ZERO_COMMIT) {
                    *e = *commit;
                    break;
                }
                i = (i + 1) & mask;
            }
        }
    }
}

/// The dedup table of one shard.
pub struct Dedup {
    /// Ring of per-window tables, indexed by `(window_start / window_s) mod DEDUP_WINDOWS`.
    windows: [CommitTable; DEDUP_WINDOWS],
    /// Window length, seconds.
    window_s: u64,
    /// Bound on each window's table.
    entries_per_window_max: usize,
    /// Secret mixing key (`EngineConfig::hash_key`).
    key: [u64; 2],
}

/// 64 bits of `SHA-256(commit)` not used by the bucket derivation (digest bytes 8..16), as the engine
/// passes them to [`Dedup::prefetch`] and [`Dedup::insert`].
#[inline]
pub fn commit_hash_bits(commit_state: &[u32; 8]) -> u64 {
    ((commit_state[2] as u64) << 32) | commit_state[3] as u64
}

impl Dedup {
    /// An empty table whose per-window tables start small and grow by doubling.
    pub fn new(window_s: u64, entries_per_window_max: usize, hash_key: [u64; 2]) -> Self {
        Self::with_expected(window_s, entries_per_window_max, 0, hash_key)
    }

    /// An empty table whose per-window tables are allocated now with room for `entries_expected` commits
    /// (64 B per two: `4 × 32 × entries_expected` bytes in all) and never shrink below it: at that traffic
    /// nothing is allocated or rehashed on the publish path, not even in the first windows (a rehash
    /// recomputes one SHA-256 per stored commit, ~25 ms per million). 0 = start small, grow on demand.
    pub fn with_expected(
        window_s: u64,
        entries_per_window_max: usize,
        entries_expected: usize,
        hash_key: [u64; 2],
    ) -> Self {
        // Two entries per line at load ≤ 1/2: one line per expected entry.
        let lines_min = entries_expected.min(entries_per_window_max).next_power_of_two().max(TABLE_LINES_MIN);
        Self {
            windows: std::array::from_fn(|_| CommitTable::new(lines_min, entries_expected > 0)),
            window_s,
            entries_per_window_max,
            key: hash_key,
        }
    }

    #[inline]
    fn ring_slot(&self, window_start_s: u64) -> usize {
        ((window_start_s / self.window_s) % DEDUP_WINDOWS as u64) as usize
    }

    /// Keyed mix of the commit's SHA-256 bits.
    #[inline]
    fn mix(key: [u64; 2], bits: u64) -> u64 {
        let x = (bits ^ key[0]).wrapping_mul(key[1] | 1);
        x ^ (x >> 31)
    }

    /// Hints the CPU to fetch the line `insert` will probe first (call for a whole chunk before inserting).
    #[inline]
    pub fn prefetch(&self, window_start_s: u64, commit_bits: u64) {
        let table = &self.windows[self.ring_slot(window_start_s)];
        if table.window_start_s == Some(window_start_s) && !table.lines.is_empty() {
            let i = Self::mix(self.key, commit_bits) as usize & table.line_mask();
            prefetch_read(table.lines.as_ptr().wrapping_add(i).cast());
        }
    }

    /// Remembers `commit` in `window_start_s` unless already there. `commit_bits` must be
    /// `commit_hash_bits(SHA-256(commit))`. The caller has checked that the window is currently accepted (so
    /// whatever else occupies its ring slot has expired).
    #[inline]
    pub fn insert(&mut self, commit: &Commit, window_start_s: u64, commit_bits: u64) -> DedupOutcome {
        let key = self.key;
        let max = self.entries_per_window_max;
        let ring = self.ring_slot(window_start_s);
        let table = &mut self.windows[ring];
        if table.window_start_s != Some(window_start_s) {
            // A table already expired by `expire_before` is clear; one still holding an older window is not.
            if table.window_start_s.is_some() {
                table.clear();
            }
            table.window_start_s = Some(window_start_s);
        }
        if *commit == ZERO_COMMIT {
            return match (table.zero_seen, table.len >= max) {
                (true, _) => DedupOutcome::Duplicate,
                (false, true) => DedupOutcome::Full,
                (false, false) => {
                    table.zero_seen = true;
                    table.len += 1;
                    DedupOutcome::New
                }
            };
        }
        if table.lines.is_empty() {
            table.grow(|_| 0);
        }
        let mask = table.line_mask();
        let mut i = Self::mix(key, commit_bits) as usize & mask;
        for _ in 0..PROBE_LINES_MAX {
            for e in table.lines[i].0.iter_mut() {
                if *e == *commit {
                    return DedupOutcome::Duplicate;
                }
                if *e == ZERO_COMMIT {
                    if table.len >= max {
                        return DedupOutcome::Full;
                    }
                    *e = *commit;
                    table.len += 1;
                    // Load ≤ 1/2 of the entries. Growth recomputes each stored commit's hash bits from the
                    // commit itself (rare: doubling), so the table needs no extra bytes per entry.
                    if table.len > table.lines.len() {
                        table.grow(|c| Self::mix(key, commit_hash_bits(&sha256_state(c))) as usize);
                    }
                    return DedupOutcome::New;
                }
            }
            i = (i + 1) & mask;
        }
        DedupOutcome::Full
    }

    /// Forgets every window before `earliest_s` (keeps the memory for reuse).
    pub fn expire_before(&mut self, earliest_s: u64) {
        for table in &mut self.windows {
            if table.window_start_s.is_some_and(|w| w < earliest_s) {
                table.clear();
                table.window_start_s = None;
            }
        }
    }

    /// Commits remembered over all live windows.
    pub fn len(&self) -> usize {
        self.windows.iter().map(|t| t.len).sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// SHA-256 state after hashing `commit` (one block), for rehashing on growth.
fn sha256_state(commit: &Commit) -> [u32; 8] {
    use crate::index::simd::sha256::{one_block_states, pad_one_block, HashBackend};
    let mut out = [[0u32; 8]];
    one_block_states(HashBackend::detect(), &[pad_one_block(commit)], &mut out);
    out[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(c: &Commit) -> u64 {
        commit_hash_bits(&sha256_state(c))
    }

    fn insert(d: &mut Dedup, c: Commit, w: u64) -> DedupOutcome {
        d.insert(&c, w, bits(&c))
    }

    #[test]
    fn duplicates_within_a_window_only() {
        let mut d = Dedup::new(10, 100, [1, 2]);
        assert_eq!(insert(&mut d, [1; 32], 100), DedupOutcome::New);
        assert_eq!(insert(&mut d, [1; 32], 100), DedupOutcome::Duplicate);
        assert_eq!(insert(&mut d, [1; 32], 110), DedupOutcome::New);
        assert_eq!(insert(&mut d, [2; 32], 100), DedupOutcome::New);
        assert_eq!(insert(&mut d, [0; 32], 100), DedupOutcome::New, "the all-zero commit is a valid key");
        assert_eq!(insert(&mut d, [0; 32], 100), DedupOutcome::Duplicate);
        assert_eq!(d.len(), 4);
        d.expire_before(110);
        assert_eq!(d.len(), 1);
        assert_eq!(insert(&mut d, [1; 32], 110), DedupOutcome::Duplicate);
    }

    #[test]
    fn slot_reuse_forgets_the_expired_window() {
        let mut d = Dedup::new(10, 100, [1, 2]);
        assert_eq!(insert(&mut d, [1; 32], 100), DedupOutcome::New);
        // 140 maps to the same ring slot as 100; 100 must have expired for 140 to be accepted.
        assert_eq!(insert(&mut d, [1; 32], 140), DedupOutcome::New);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn bounded_per_window() {
        let mut d = Dedup::new(10, 2, [1, 2]);
        assert_eq!(insert(&mut d, [1; 32], 100), DedupOutcome::New);
        assert_eq!(insert(&mut d, [2; 32], 100), DedupOutcome::New);
        assert_eq!(insert(&mut d, [3; 32], 100), DedupOutcome::Full);
        assert_eq!(insert(&mut d, [2; 32], 100), DedupOutcome::Duplicate);
        assert_eq!(insert(&mut d, [3; 32], 110), DedupOutcome::New);
    }

    #[test]
    fn a_quiet_window_shrinks_its_table() {
        let mut d = Dedup::new(10, 1 << 20, [3, 4]);
        for n in 0..5000u32 {
            let mut c = [9u8; 32];
            c[..4].copy_from_slice(&n.to_le_bytes());
            assert_eq!(insert(&mut d, c, 100), DedupOutcome::New);
        }
        // Window 100 lives in ring slot (100 / 10) mod 4 = 2; so do 140, 180 and 220.
        assert_eq!(d.windows[2].lines.len(), 8192, "5000 entries at load <= 1/2 of 2 per line");
        d.expire_before(110);
        assert_eq!(d.windows[2].lines.len(), 8192, "a full window keeps its table for the next one");
        assert_eq!(insert(&mut d, [1; 32], 140), DedupOutcome::New);
        d.expire_before(150);
        assert_eq!(d.windows[2].lines.len(), 2048, "one entry in 8192 lines: a quarter");
        assert_eq!(insert(&mut d, [1; 32], 180), DedupOutcome::New);
        d.expire_before(190);
        assert_eq!(d.windows[2].lines.len(), 512);
        assert_eq!(insert(&mut d, [1; 32], 220), DedupOutcome::New);
        assert_eq!(insert(&mut d, [1; 32], 220), DedupOutcome::Duplicate);
    }

    #[test]
    fn expected_size_is_allocated_up_front_and_kept() {
        let mut d = Dedup::with_expected(10, 1 << 20, 3000, [3, 4]);
        assert!(d.windows.iter().all(|t| t.lines.len() == 4096), "allocated up front");
        assert_eq!(insert(&mut d, [1; 32], 100), DedupOutcome::New);
        assert_eq!(d.windows[2].lines.len(), 4096);
        d.expire_before(110);
        assert_eq!(d.windows[2].lines.len(), 4096, "never shrinks below the expected size");
    }

    #[test]
    fn growth_keeps_every_commit_and_colliding_hashes_probe() {
        let mut d = Dedup::new(10, 1 << 20, [3, 4]);
        let commit = |n: u32| {
            let mut c = [0u8; 32];
            c[..4].copy_from_slice(&n.to_le_bytes());
            c
        };
        for n in 0..5000 {
            assert_eq!(insert(&mut d, commit(n), 100), DedupOutcome::New);
        }
        assert!((0..5000).all(|n| insert(&mut d, commit(n), 100) == DedupOutcome::Duplicate));
        // The same hash bits for different commits (as engineered collisions would give) still resolve exactly.
        assert_eq!(d.insert(&[9; 32], 110, 42), DedupOutcome::New);
        assert_eq!(d.insert(&[8; 32], 110, 42), DedupOutcome::New);
        assert_eq!(d.insert(&[9; 32], 110, 42), DedupOutcome::Duplicate);
        assert_eq!(d.len(), 5002);
    }
}
