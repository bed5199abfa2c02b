//! Turning expected fingerprints into SUBSCRIBE entries: per bucket, Bloom filters over window ranges.
//!
//! ```text
//! expected (bucket, window, fingerprint)
//!   ├─ EveryBucketPadded: an absolute grid of chunks of L windows (L from the contact count, so each
//!   │    bucket expects ~60 % of a filter per chunk); per chunk, every bucket gets the same number F of
//!   │    filters, each holding exactly `fingerprints_per_filter_max` items: its real fingerprints of the
//!   │    whole chunk, sorted, then padding derived from a client secret and (bucket, chunk, filter, index)
//!   │    → a chunk's filters are identical at every renewal; only the entry's window range is clipped to
//!   │    the subscription range
//!   └─ DangerMatchingBucketsOnly: per bucket, greedy ranges of at most `fingerprints_per_filter_max`, no padding
//! filters of each bucket ──▶ subscriber slots: ≤ filters_per_bucket_max per bucket, ≤ entries_per_subscribe_max
//! ```
//! A filter holds at most `fingerprints_per_filter_max` (60) items so its false-positive rate stays ≈ 0.42 %
//! (m = 1024, k = 3). Slots beyond the first are further subscriber ids, each with its own SUBSCRIBE.
//!
//! Why identical filters across renewals: if padding were redrawn at each renewal, a relay intersecting the
//! filters that cover one window in successive renewals would keep the real fingerprints' bits and lose the
//! padding's, and so count (and partly locate) the real ones. With the grid and padding fixed, successive
//! filters for a chunk are bit-for-bit equal, so the relay learns the grid and F — which depend on the number
//! of contacts only — and nothing about which buckets hold expected proofs.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::proto::bloom::{BloomFilter, BloomParams};
use crate::proto::derive::Fingerprint;
use crate::proto::frame::SubscribeEntry;

/// Items per filter: 60 keeps the false-positive rate at ≈ 0.42 % with m = 1024, k = 3 (docs/FOUNDATIONS.md §2).
/// Capped by the relay's announced `filter_fingerprints_max` (`ClientConfig::for_relay`).
pub const FINGERPRINTS_PER_FILTER_DEFAULT: usize = 60;
// Our own relay never refuses our own client's fullest filter.
const _: () = assert!(FINGERPRINTS_PER_FILTER_DEFAULT <= crate::proto::FILTER_FINGERPRINTS_MAX as usize);
/// Target fill of a padded chunk, percent of a filter on average per bucket: low enough that few buckets
/// overflow into a second filter (Poisson tail), high enough that padding stays under ~1.7× the real items.
pub const CHUNK_FILL_PERCENT: u64 = 60;
/// Largest window range one plan may cover: 1 day of 10-second windows; bounds the planner's tables.
pub const PLAN_WINDOWS_MAX: u64 = 8_640;

/// How filters are spread over buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeMode {
    /// Every bucket, the same number of filters per bucket and chunk, every filter holding the same number
    /// of items, and filters that do not change between renewals: the relay learns the horizon and the
    /// filter counts (a coarse measure of how many contacts a client has), nothing about which buckets hold
    /// expected proofs.
    EveryBucketPadded,
    /// Only buckets with expected fingerprints, unpadded: fewer entries, but the relay sees which buckets and
    /// windows a client expects proofs in and how many. Weakens privacy; hence the name.
    DangerMatchingBucketsOnly,
}

/// What bounds a plan: the relay's parameters and limits and the client's choices.
#[derive(Debug, Clone, Copy)]
pub struct PlanParams {
    /// Buckets of the relay.
    pub num_buckets: u16,
    /// Window length, seconds.
    pub window_s: u64,
    /// Bloom parameters of the relay.
    pub bloom: BloomParams,
    /// Items per filter before it is split (and the padding target).
    pub fingerprints_per_filter_max: usize,
    /// Chunk length of the padded grid, windows (see [`chunk_windows_for`]).
    pub chunk_windows: u64,
    /// The relay's `Limits::filters_per_bucket_max`.
    pub filters_per_bucket_max: u16,
    /// The relay's `Limits::entries_per_subscribe_max`.
    pub entries_per_subscribe_max: u16,
    /// The relay's `Limits::subscribers_per_connection_max`.
    pub subscribers_max: u16,
    /// Padded or not.
    pub mode: SubscribeMode,
}

/// One expected fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectation {
    /// Its bucket.
    pub bucket: u16,
    /// Its window start.
    pub window_start_s: u64,
    /// The fingerprint.
    pub fingerprint: Fingerprint,
}

/// Why no plan fits the relay's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// `from` after `to`, not on window boundaries, or longer than `PLAN_WINDOWS_MAX` windows.
    #[error("window range {from_s}..={to_s} is invalid")]
    BadRange {
        /// First window.
        from_s: u64,
        /// Last window.
        to_s: u64,
    },
    /// The limits leave no room for a single entry.
    #[error("relay limits allow no subscription entry")]
    NoCapacity,
    /// More subscriber ids needed than one connection may register.
    #[error("{needed} subscriber ids needed, the relay allows {max} per connection; shorten the horizon")]
    TooManySubscribers {
        /// Ids the plan needs.
        needed: usize,
        /// The relay's limit.
        max: u16,
    },
}

/// Chunk length (windows) of the padded grid for a client expecting `per_window` fingerprints per window
/// (all contacts together): on average `CHUNK_FILL_PERCENT` of a filter per bucket and chunk. It depends on
/// the contact count only, so the grid stays put across renewals.
pub fn chunk_windows_for(per_window: u64, num_buckets: u16, fingerprints_per_filter_max: usize) -> u64 {
    let capacity = fingerprints_per_filter_max as u64 * u64::from(num_buckets) * CHUNK_FILL_PERCENT / 100;
    (capacity / per_window.max(1)).clamp(1, PLAN_WINDOWS_MAX)
}

/// The chunk of the padded grid containing `window_start_s`: `(first window, last window)`.
pub fn chunk_bounds(window_start_s: u64, chunk_windows: u64, window_s: u64) -> (u64, u64) {
    let span = chunk_windows.max(1) * window_s;
    let start = window_start_s - window_start_s % span;
    (start, start + span - window_s)
}

/// Builds the entries of every subscriber slot covering windows `from_s..=to_s`.
///
/// Padded mode reads the expectations of every window of the chunks that `from_s..=to_s` touches (the
/// caller provides them, see [`chunk_bounds`]) and clips entry ranges to `from_s..=to_s`; matching mode
/// ignores expectations outside the range. `pad_key` (a per-client secret) derives the padding items.
pub fn plan(
    items: &[Expectation],
    from_s: u64,
    to_s: u64,
    params: &PlanParams,
    pad_key: &[u8; 32],
) -> Result<Vec<Vec<SubscribeEntry>>, PlanError> {
    let ws = params.window_s;
    let bad_range = PlanError::BadRange { from_s, to_s };
    if ws == 0 || from_s > to_s || !from_s.is_multiple_of(ws) || !to_s.is_multiple_of(ws) {
        return Err(bad_range);
    }
    let n_windows = (to_s - from_s) / ws + 1;
    if n_windows > PLAN_WINDOWS_MAX {
        return Err(bad_range);
    }
    if params.filters_per_bucket_max == 0 || params.entries_per_subscribe_max == 0 || params.num_buckets == 0 {
        return Err(PlanError::NoCapacity);
    }
    let per_bucket = match params.mode {
        SubscribeMode::EveryBucketPadded => padded(items, from_s, to_s, params, pad_key),
        SubscribeMode::DangerMatchingBucketsOnly => {
            Grid::new(items, from_s, n_windows as usize, params).matching_only(params)
        }
    };
    assign_slots(per_bucket, params)
}

fn padded(
    items: &[Expectation],
    from_s: u64,
    to_s: u64,
    params: &PlanParams,
    pad_key: &[u8; 32],
) -> Vec<Vec<SubscribeEntry>> {
    let cap = params.fingerprints_per_filter_max.max(1);
    let ws = params.window_s;
    let (first_chunk, _) = chunk_bounds(from_s, params.chunk_windows, ws);
    let (_, last_chunk_end) = chunk_bounds(to_s, params.chunk_windows, ws);
    // (chunk start, bucket) → real fingerprints of the whole chunk.
    let mut cells: BTreeMap<(u64, u16), Vec<Fingerprint>> = BTreeMap::new();
    for item in items {
        if item.bucket < params.num_buckets && (first_chunk..=last_chunk_end).contains(&item.window_start_s) {
            let (chunk, _) = chunk_bounds(item.window_start_s, params.chunk_windows, ws);
            cells.entry((chunk, item.bucket)).or_default().push(item.fingerprint);
        }
    }
    let mut per_bucket = vec![Vec::new(); usize::from(params.num_buckets)];
    let mut chunk = first_chunk;
    while chunk <= to_s {
        let (_, chunk_end) = chunk_bounds(chunk, params.chunk_windows, ws);
        let (range_from, range_to) = (chunk.max(from_s), chunk_end.min(to_s));
        let real = |b: u16| cells.get(&(chunk, b)).map_or(&[][..], Vec::as_slice);
        let filters = (0..params.num_buckets).map(|b| real(b).len().div_ceil(cap)).max().unwrap_or(0).max(1);
        for (bucket, out) in per_bucket.iter_mut().enumerate() {
            let mut fps = real(bucket as u16).to_vec();
            // Sorted, so the same fingerprints land in the same filter at every renewal.
            fps.sort_unstable();
            for j in 0..filters {
                let group = fps.get(j * cap..((j + 1) * cap).min(fps.len())).unwrap_or(&[]);
                let mut filter = filter_of(group, params.bloom);
                for i in group.len()..cap {
                    filter.insert_fingerprint(&pad_fingerprint(pad_key, bucket, chunk, j, i));
                }
                out.push(entry(bucket, range_from, range_to, filter));
            }
        }
        chunk = chunk_end + ws;
    }
    per_bucket
}

/// Padding item `i` of filter `j` of `(bucket, chunk)`:
/// `SHA-256(pad_key ‖ u16_be(bucket) ‖ u64_be(chunk_start) ‖ u32_be(j) ‖ u32_be(i))[0..8]`.
fn pad_fingerprint(pad_key: &[u8; 32], bucket: usize, chunk_start_s: u64, j: usize, i: usize) -> Fingerprint {
    let digest = Sha256::new()
        .chain_update(pad_key)
        .chain_update((bucket as u16).to_be_bytes())
        .chain_update(chunk_start_s.to_be_bytes())
        .chain_update((j as u32).to_be_bytes())
        .chain_update((i as u32).to_be_bytes())
        .finalize();
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&digest[..8]);
    fp
}

/// Expected fingerprints sorted into (bucket, window) cells over `from..=to` (matching mode).
struct Grid {
    from_s: u64,
    n_windows: usize,
    /// `cells[bucket * n_windows + w]`.
    cells: Vec<Vec<Fingerprint>>,
}

impl Grid {
    fn new(items: &[Expectation], from_s: u64, n_windows: usize, params: &PlanParams) -> Self {
        let mut cells = vec![Vec::new(); usize::from(params.num_buckets) * n_windows];
        for item in items {
            if item.bucket >= params.num_buckets || item.window_start_s < from_s {
                continue;
            }
            let w = ((item.window_start_s - from_s) / params.window_s) as usize;
            if w < n_windows {
                cells[usize::from(item.bucket) * n_windows + w].push(item.fingerprint);
            }
        }
        Self { from_s, n_windows, cells }
    }

    fn cell(&self, bucket: usize, w: usize) -> &[Fingerprint] {
        &self.cells[bucket * self.n_windows + w]
    }

    fn window(&self, w: usize, params: &PlanParams) -> u64 {
        self.from_s + w as u64 * params.window_s
    }

    fn buckets(&self) -> usize {
        self.cells.len() / self.n_windows
    }

    fn matching_only(&self, params: &PlanParams) -> Vec<Vec<SubscribeEntry>> {
        let cap = params.fingerprints_per_filter_max.max(1);
        let mut per_bucket = vec![Vec::new(); self.buckets()];
        for (bucket, out) in per_bucket.iter_mut().enumerate() {
            let mut start = 0usize;
            let mut current: Vec<Fingerprint> = Vec::new();
            for w in 0..self.n_windows {
                let cell = self.cell(bucket, w);
                if !current.is_empty() && current.len() + cell.len() > cap {
                    out.push(entry(
                        bucket,
                        self.window(start, params),
                        self.window(w - 1, params),
                        filter_of(&current, params.bloom),
                    ));
                    current.clear();
                    start = w;
                }
                current.extend_from_slice(cell);
                if current.len() > cap {
                    // One window alone overflows a filter: several filters over this single window.
                    for group in current.chunks(cap) {
                        let at = self.window(w, params);
                        out.push(entry(bucket, self.window(start, params), at, filter_of(group, params.bloom)));
                    }
                    current.clear();
                    start = w + 1;
                }
            }
            if !current.is_empty() {
                let last = self.window(self.n_windows - 1, params);
                out.push(entry(bucket, self.window(start, params), last, filter_of(&current, params.bloom)));
            }
        }
        per_bucket
    }
}

fn filter_of(fps: &[Fingerprint], bloom: BloomParams) -> BloomFilter {
    let mut filter = BloomFilter::new(bloom);
    for fp in fps {
        filter.insert_fingerprint(fp);
    }
    filter
}

fn entry(bucket: usize, window_from_s: u64, window_to_s: u64, filter: BloomFilter) -> SubscribeEntry {
    // `bucket < num_buckets: u16`.
    SubscribeEntry { bucket: bucket as u16, window_from_s, window_to_s, filter }
}

/// Deals each bucket's filters into slots of at most `filters_per_bucket_max` per bucket and
/// `entries_per_subscribe_max` in all, one entry at a time to the bucket with the most filters left (ties to
/// the lower bucket), so no bucket's filters trail into extra slots while others leave room.
fn assign_slots(
    per_bucket: Vec<Vec<SubscribeEntry>>,
    params: &PlanParams,
) -> Result<Vec<Vec<SubscribeEntry>>, PlanError> {
    let per_bucket_max = usize::from(params.filters_per_bucket_max);
    let entries_max = usize::from(params.entries_per_subscribe_max);
    let mut queues: Vec<std::collections::VecDeque<SubscribeEntry>> = per_bucket.into_iter().map(Into::into).collect();
    let mut slots: Vec<Vec<SubscribeEntry>> = Vec::new();
    while queues.iter().any(|q| !q.is_empty()) {
        let mut taken = vec![0usize; queues.len()];
        let mut slot = Vec::new();
        while slot.len() < entries_max {
            let next = (0..queues.len())
                .filter(|&b| taken[b] < per_bucket_max && !queues[b].is_empty())
                .max_by_key(|&b| (queues[b].len(), std::cmp::Reverse(b)));
            let Some(b) = next else { break };
            slot.push(queues[b].pop_front().expect("queue checked non-empty"));
            taken[b] += 1;
        }
        slots.push(slot);
    }
    if slots.len() > usize::from(params.subscribers_max) {
        return Err(PlanError::TooManySubscribers { needed: slots.len(), max: params.subscribers_max });
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [0x77; 32];

    fn params(mode: SubscribeMode) -> PlanParams {
        PlanParams {
            num_buckets: 4,
            window_s: 10,
            bloom: BloomParams::default(),
            fingerprints_per_filter_max: 3,
            chunk_windows: 2,
            filters_per_bucket_max: 2,
            entries_per_subscribe_max: 6,
            subscribers_max: 4,
            mode,
        }
    }

    fn item(bucket: u16, window_start_s: u64, n: u8) -> Expectation {
        Expectation { bucket, window_start_s, fingerprint: [n; 8] }
    }

    #[test]
    fn matching_only_ranges() {
        // Bucket 1: 2 items in window 0, 2 in window 20 → two filters [0,10] and [20,30] (cap 3).
        // Bucket 2: 4 items in window 10 → the open filter (from 0) overflows there: two filters [0,10].
        let items = [item(1, 0, 1), item(1, 0, 2), item(1, 20, 3), item(1, 20, 4)]
            .into_iter()
            .chain((0..4).map(|n| item(2, 10, 10 + n)))
            .collect::<Vec<_>>();
        let slots = plan(&items, 0, 30, &params(SubscribeMode::DangerMatchingBucketsOnly), &KEY).unwrap();
        let all: Vec<(u16, u64, u64, u32)> =
            slots.iter().flatten().map(|e| (e.bucket, e.window_from_s, e.window_to_s, e.filter.count_ones())).collect();
        let mut ranges: Vec<_> = all.iter().map(|&(b, f, t, _)| (b, f, t)).collect();
        ranges.sort();
        assert_eq!(ranges, vec![(1, 0, 10), (1, 20, 30), (2, 0, 10), (2, 0, 10)]);
        for e in slots.iter().flatten() {
            let fps: Vec<_> = items.iter().filter(|i| i.bucket == e.bucket).collect();
            let inside = fps
                .iter()
                .filter(|i| (e.window_from_s..=e.window_to_s).contains(&i.window_start_s))
                .filter(|i| e.filter.contains_fingerprint(&i.fingerprint))
                .count();
            assert!(inside >= 1, "every filter holds one of its range's items");
        }
        for i in &items {
            let covered = slots.iter().flatten().any(|e| {
                e.bucket == i.bucket
                    && (e.window_from_s..=e.window_to_s).contains(&i.window_start_s)
                    && e.filter.contains_fingerprint(&i.fingerprint)
            });
            assert!(covered, "{i:?} not covered");
        }
    }

    #[test]
    fn padded_covers_every_bucket_uniformly() {
        // Chunks of 2 windows: [0, 10] and [20, 30]. Bucket 0 expects 4 items in window 0 (more than one
        // filter's 3), bucket 3 one item in window 30.
        let items = (0..4).map(|n| item(0, 0, n)).chain([item(3, 30, 9)]).collect::<Vec<_>>();
        let slots = plan(&items, 0, 30, &params(SubscribeMode::EveryBucketPadded), &KEY).unwrap();
        let entries: Vec<_> = slots.iter().flatten().collect();
        for b in 0..4u16 {
            let mut ranges: Vec<_> =
                entries.iter().filter(|e| e.bucket == b).map(|e| (e.window_from_s, e.window_to_s)).collect();
            ranges.sort();
            assert_eq!(ranges, vec![(0, 10), (0, 10), (20, 30)], "bucket {b}");
        }
        // Every filter holds exactly 3 items (9 bits unless positions collide).
        assert!(entries.iter().all(|e| (5..=9).contains(&e.filter.count_ones())), "{entries:?}");
        for i in &items {
            assert!(entries.iter().any(|e| e.bucket == i.bucket
                && (e.window_from_s..=e.window_to_s).contains(&i.window_start_s)
                && e.filter.contains_fingerprint(&i.fingerprint)));
        }
        // 12 entries, at most 2 per bucket and 6 per slot → 2 slots.
        assert_eq!(slots.iter().map(Vec::len).collect::<Vec<_>>(), vec![6, 6]);
        assert!(slots.iter().all(|s| (0..4u16).all(|b| s.iter().filter(|e| e.bucket == b).count() <= 2)));
    }

    #[test]
    fn padded_filters_are_the_same_at_every_renewal() {
        let items = [item(1, 10, 1), item(2, 20, 2), item(2, 40, 3)];
        let p = params(SubscribeMode::EveryBucketPadded);
        let first: Vec<_> = plan(&items, 0, 30, &p, &KEY).unwrap().concat();
        let renewed: Vec<_> = plan(&items, 10, 40, &p, &KEY).unwrap().concat();
        // The renewal starts inside chunk [0, 10]: same filters, range clipped to [10, 10].
        for e in renewed.iter().filter(|e| e.window_to_s <= 30) {
            let same_chunk = if e.window_from_s == 10 { (0, 10) } else { (e.window_from_s, e.window_to_s) };
            assert!(
                first.iter().any(|f| (f.window_from_s, f.window_to_s) == same_chunk
                    && f.bucket == e.bucket
                    && f.filter == e.filter),
                "{e:?}"
            );
        }
        assert_eq!(renewed.iter().filter(|e| e.window_from_s == 40).count(), 4);
        let other_key: Vec<_> = plan(&items, 0, 30, &p, &[0x78; 32]).unwrap().concat();
        assert_ne!(first, other_key);
    }

    #[test]
    fn grid_from_contact_count() {
        assert_eq!(chunk_windows_for(8, 64, 60), 288);
        assert_eq!(chunk_windows_for(40, 64, 60), 57);
        assert_eq!(chunk_windows_for(0, 64, 60), 2_304);
        assert_eq!(chunk_windows_for(100_000, 64, 60), 1);
        let (start, end) = chunk_bounds(1_700_000_000, 288, 10);
        assert_eq!((start % 2_880, end - start), (0, 2_870));
        assert!((start..=end).contains(&1_700_000_000));
        assert_eq!(chunk_bounds(end + 10, 288, 10).0, end + 10);
    }

    #[test]
    fn limits() {
        let p = params(SubscribeMode::EveryBucketPadded);
        assert_eq!(plan(&[], 20, 10, &p, &KEY).unwrap_err(), PlanError::BadRange { from_s: 20, to_s: 10 });
        assert_eq!(plan(&[], 5, 10, &p, &KEY).unwrap_err(), PlanError::BadRange { from_s: 5, to_s: 10 });
        let items: Vec<_> = (0..40u8).map(|n| item(0, 0, n)).collect();
        let p = PlanParams { chunk_windows: 1, ..p };
        assert_eq!(plan(&items, 0, 0, &p, &KEY).unwrap_err(), PlanError::TooManySubscribers { needed: 10, max: 4 });
    }
}
