//! Turning expected fingerprints into SUBSCRIBE entries: per bucket, Bloom filters over window ranges.
//!
//! ```text
//! expected (bucket, window, fingerprint) over windows from..=to
//!   ├─ EveryBucketPadded: one window grid for all buckets (the longest chunk length L for which no bucket
//!   │    expects more than `fingerprints_per_filter_max` per chunk); every bucket gets the same number of
//!   │    filters per chunk, each padded with random fingerprints to exactly that many items
//!   └─ DangerMatchingBucketsOnly: per bucket, greedy ranges of at most `fingerprints_per_filter_max`, no padding
//! filters of each bucket ──▶ subscriber slots: ≤ filters_per_bucket_max per bucket, ≤ entries_per_subscribe_max
//! ```
//! A filter holds at most `fingerprints_per_filter_max` (60) items so its false-positive rate stays ≈ 0.42 %
//! (m = 1024, k = 3). Windows with more than that in one bucket get several filters over the same range.
//! Slots beyond the first are further subscriber ids, each with its own SUBSCRIBE.

use rand_core::{CryptoRng, RngCore};

use crate::proto::bloom::{BloomFilter, BloomParams};
use crate::proto::derive::Fingerprint;
use crate::proto::frame::SubscribeEntry;

/// Items per filter: 60 keeps the false-positive rate at ≈ 0.42 % with m = 1024, k = 3 (DESIGN.md §2).
pub const FINGERPRINTS_PER_FILTER_DEFAULT: usize = 60;
/// Largest window range one plan may cover: 1 day of 10-second windows; bounds the planner's tables.
pub const PLAN_WINDOWS_MAX: u64 = 8_640;

/// How filters are spread over buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeMode {
    /// Every bucket, one window grid, equal filter counts, each filter padded to the same number of items
    /// with random fingerprints: the relay learns the horizon and the filter count (a coarse measure of how
    /// many contacts a client has), nothing about which buckets or windows hold expected proofs.
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

/// Builds the entries of every subscriber slot for windows `from_s..=to_s`. Expectations outside the range
/// or bucket space are ignored.
pub fn plan<R: RngCore + CryptoRng>(
    items: &[Expectation],
    from_s: u64,
    to_s: u64,
    params: &PlanParams,
    rng: &mut R,
) -> Result<Vec<Vec<SubscribeEntry>>, PlanError> {
    let ws = params.window_s;
    let bad_range = PlanError::BadRange { from_s, to_s };
    if ws == 0 || from_s > to_s || from_s % ws != 0 || to_s % ws != 0 {
        return Err(bad_range);
    }
    let n_windows = (to_s - from_s) / ws + 1;
    if n_windows > PLAN_WINDOWS_MAX {
        return Err(bad_range);
    }
    if params.filters_per_bucket_max == 0 || params.entries_per_subscribe_max == 0 || params.num_buckets == 0 {
        return Err(PlanError::NoCapacity);
    }
    let grid = Grid::new(items, from_s, n_windows as usize, params);
    let per_bucket = match params.mode {
        SubscribeMode::EveryBucketPadded => grid.padded(params, rng),
        SubscribeMode::DangerMatchingBucketsOnly => grid.matching_only(params),
    };
    assign_slots(per_bucket, params)
}

/// Expected fingerprints sorted into (bucket, window) cells.
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

    /// Longest chunk length (windows) such that no bucket's chunk holds more than `cap` items.
    fn chunk_len(&self, cap: usize) -> usize {
        let prefix: Vec<Vec<usize>> = (0..self.buckets())
            .map(|b| {
                let mut acc = vec![0usize; self.n_windows + 1];
                for w in 0..self.n_windows {
                    acc[w + 1] = acc[w] + self.cell(b, w).len();
                }
                acc
            })
            .collect();
        (1..=self.n_windows)
            .rev()
            .find(|&len| {
                prefix.iter().all(|acc| {
                    (0..self.n_windows).step_by(len).all(|start| {
                        let end = (start + len).min(self.n_windows);
                        acc[end] - acc[start] <= cap
                    })
                })
            })
            .unwrap_or(1)
    }

    fn padded<R: RngCore + CryptoRng>(&self, params: &PlanParams, rng: &mut R) -> Vec<Vec<SubscribeEntry>> {
        let cap = params.fingerprints_per_filter_max.max(1);
        let len = self.chunk_len(cap);
        let mut per_bucket = vec![Vec::new(); self.buckets()];
        for start in (0..self.n_windows).step_by(len) {
            let end = (start + len).min(self.n_windows);
            let chunk: Vec<Vec<Fingerprint>> = (0..self.buckets())
                .map(|b| (start..end).flat_map(|w| self.cell(b, w).iter().copied()).collect())
                .collect();
            let filters = chunk.iter().map(|fps| fps.len().div_ceil(cap)).max().unwrap_or(0).max(1);
            let (from_s, to_s) = (self.window(start, params), self.window(end - 1, params));
            for (bucket, fps) in chunk.iter().enumerate() {
                let mut groups = fps.chunks(cap);
                for _ in 0..filters {
                    let real = groups.next().unwrap_or(&[]);
                    let mut filter = filter_of(real, params.bloom);
                    for _ in real.len()..cap {
                        let mut fp = [0u8; 8];
                        rng.fill_bytes(&mut fp);
                        filter.insert_fingerprint(&fp);
                    }
                    per_bucket[bucket].push(entry(bucket, from_s, to_s, filter));
                }
            }
        }
        per_bucket
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
/// `entries_per_subscribe_max` in all. Each slot serves the buckets with the most filters left first, so
/// that no bucket's filters trail into extra slots while others leave room.
fn assign_slots(
    per_bucket: Vec<Vec<SubscribeEntry>>,
    params: &PlanParams,
) -> Result<Vec<Vec<SubscribeEntry>>, PlanError> {
    let per_bucket_max = usize::from(params.filters_per_bucket_max);
    let entries_max = usize::from(params.entries_per_subscribe_max);
    let mut queues: Vec<std::collections::VecDeque<SubscribeEntry>> = per_bucket.into_iter().map(Into::into).collect();
    let mut slots: Vec<Vec<SubscribeEntry>> = Vec::new();
    let mut order: Vec<usize> = (0..queues.len()).collect();
    while queues.iter().any(|q| !q.is_empty()) {
        order.sort_by_key(|&b| (std::cmp::Reverse(queues[b].len()), b));
        let mut slot = Vec::new();
        for &b in &order {
            let take = per_bucket_max.min(entries_max - slot.len()).min(queues[b].len());
            slot.extend(queues[b].drain(..take));
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
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn params(mode: SubscribeMode) -> PlanParams {
        PlanParams {
            num_buckets: 4,
            window_s: 10,
            bloom: BloomParams::default(),
            fingerprints_per_filter_max: 3,
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
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let slots = plan(&items, 0, 30, &params(SubscribeMode::DangerMatchingBucketsOnly), &mut rng).unwrap();
        let all: Vec<(u16, u64, u64, u32)> =
            slots.iter().flatten().map(|e| (e.bucket, e.window_from_s, e.window_to_s, e.filter.count_ones())).collect();
        let ranges: Vec<_> = all.iter().map(|&(b, f, t, _)| (b, f, t)).collect();
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
        // 4 items in bucket 0 window 0 (more than one filter's 3), 1 item in bucket 3 window 30.
        let items = (0..4).map(|n| item(0, 0, n)).chain([item(3, 30, 9)]).collect::<Vec<_>>();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let slots = plan(&items, 0, 30, &params(SubscribeMode::EveryBucketPadded), &mut rng).unwrap();
        let entries: Vec<_> = slots.iter().flatten().collect();
        // Chunk length 1 (window 0 of bucket 0 alone overflows): 4 chunks; chunk 0 needs 2 filters per bucket.
        for b in 0..4u16 {
            let ranges: Vec<_> =
                entries.iter().filter(|e| e.bucket == b).map(|e| (e.window_from_s, e.window_to_s)).collect();
            assert_eq!(ranges.len(), 5, "bucket {b}");
            let mut sorted = ranges.clone();
            sorted.sort();
            assert_eq!(sorted, vec![(0, 0), (0, 0), (10, 10), (20, 20), (30, 30)]);
        }
        // Every filter has exactly 3 items inserted: 9 bits unless positions collide.
        assert!(entries.iter().all(|e| (6..=9).contains(&e.filter.count_ones())));
        for i in &items {
            assert!(entries.iter().any(|e| e.bucket == i.bucket
                && (e.window_from_s..=e.window_to_s).contains(&i.window_start_s)
                && e.filter.contains_fingerprint(&i.fingerprint)));
        }
        // 20 entries, at most 2 per bucket and 6 per slot → 4 slots.
        assert_eq!(slots.iter().map(Vec::len).collect::<Vec<_>>(), vec![6, 6, 6, 2]);
        assert!(slots.iter().all(|s| (0..4u16).all(|b| s.iter().filter(|e| e.bucket == b).count() <= 2)));
    }

    #[test]
    fn chunk_length_is_the_longest_that_fits() {
        let items: Vec<_> = (0..6u8).map(|n| item(0, u64::from(n) * 10, n)).collect();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let slots = plan(&items, 0, 50, &params(SubscribeMode::EveryBucketPadded), &mut rng).unwrap();
        let ranges: Vec<_> =
            slots.iter().flatten().filter(|e| e.bucket == 2).map(|e| (e.window_from_s, e.window_to_s)).collect();
        assert_eq!(ranges, vec![(0, 20), (30, 50)]);
    }

    #[test]
    fn limits() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let p = params(SubscribeMode::EveryBucketPadded);
        assert_eq!(plan(&[], 20, 10, &p, &mut rng).unwrap_err(), PlanError::BadRange { from_s: 20, to_s: 10 });
        assert_eq!(plan(&[], 5, 10, &p, &mut rng).unwrap_err(), PlanError::BadRange { from_s: 5, to_s: 10 });
        let items: Vec<_> = (0..40u8).map(|n| item(0, 0, n)).collect();
        assert_eq!(plan(&items, 0, 0, &p, &mut rng).unwrap_err(), PlanError::TooManySubscribers { needed: 10, max: 4 });
    }
}
