//! The shard's subscribers: who registered which filter, for which bucket and window range.
//!
//! ```text
//! SUBSCRIBE(subscriber, entries) ──validate all──▶ drop the subscriber's old slots ──▶ insert new ones
//!        subscriber id ─▶ internal index ─▶ [(bucket, slot, window_to)]          (replace semantics)
//! proof (bucket, window, positions) ──index.for_each_match──▶ slot ─▶ (subscriber, window range) ─▶ delivery
//! tick ──▶ entries whose window range ended are removed; a subscriber left with none is forgotten
//! ```
//! A SUBSCRIBE is all-or-nothing: every entry is validated before anything changes. A subscriber with
//! several filters in one bucket gets each matching proof once.

use std::collections::HashMap;

use crate::index::{BucketIndex, Slot};
use crate::log::mailbox::SubscriberKey;
use crate::proto::derive::BloomPositions;
use crate::proto::{ErrorCode, SubscribeEntry};

use super::config::EngineConfig;
use super::keyed_hash::KeyedState;

/// The index type every bucket uses.
pub(crate) type Index = crate::index::bitsliced::BitSlicedIndex;

/// Why a SUBSCRIBE was refused; nothing of it was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// An entry names a bucket `>= num_buckets`.
    #[error("bucket {bucket} is out of range")]
    BucketOutOfRange {
        /// The bucket named.
        bucket: u16,
    },
    /// An entry names a bucket another shard owns (the server split the SUBSCRIBE wrongly).
    #[error("bucket {bucket} is owned by another shard")]
    BucketNotOwned {
        /// The bucket named.
        bucket: u16,
    },
    /// More than `filters_per_bucket_max` entries for one bucket.
    #[error("too many filters for bucket {bucket}")]
    TooManyFilters {
        /// The bucket named.
        bucket: u16,
    },
    /// A filter's Bloom parameters are not the relay's.
    #[error("filter for bucket {bucket} has the wrong Bloom parameters")]
    FilterParams {
        /// The bucket named.
        bucket: u16,
    },
    /// A filter has more bits set than a legitimate one can (`BloomParams::filter_bits_max`).
    #[error("filter for bucket {bucket} has {ones} bits set, more than {max}")]
    FilterSaturated {
        /// The bucket named.
        bucket: u16,
        /// Bits set in the filter.
        ones: u32,
        /// The most a filter of `FILTER_FINGERPRINTS_MAX` fingerprints sets.
        max: u32,
    },
    /// A window bound is not a multiple of the window length.
    #[error("subscription window range is not aligned to the window length")]
    RangeMisaligned,
    /// `window_to_s < window_from_s`.
    #[error("subscription window range ends before it starts")]
    RangeInverted,
    /// The range ends before the earliest window still accepted.
    #[error("subscription window range is entirely in the past")]
    RangeInPast,
    /// The range ends more than `subscription_windows_ahead_max` windows after the current one.
    #[error("subscription window range reaches too far ahead")]
    RangeTooFarAhead,
    /// The shard already indexes `subscribers_max` subscribers.
    #[error("too many subscribers in this shard")]
    TooManySubscribers,
    /// More entries than a reply can count (`u16::MAX`).
    #[error("too many entries in one subscribe")]
    TooManyEntries,
}

impl SubscribeError {
    /// The ERROR code the server sends for this refusal.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            SubscribeError::BucketOutOfRange { .. } | SubscribeError::BucketNotOwned { .. } => {
                ErrorCode::BUCKET_OUT_OF_RANGE
            }
            SubscribeError::TooManyFilters { .. } | SubscribeError::TooManyEntries => ErrorCode::TOO_MANY_FILTERS,
            SubscribeError::FilterParams { .. } => ErrorCode::MALFORMED,
            SubscribeError::FilterSaturated { .. } => ErrorCode::FILTER_SATURATED,
            SubscribeError::RangeMisaligned
            | SubscribeError::RangeInverted
            | SubscribeError::RangeInPast
            | SubscribeError::RangeTooFarAhead => ErrorCode::SUBSCRIPTION_RANGE,
            SubscribeError::TooManySubscribers => ErrorCode::TOO_MANY_SUBSCRIBERS,
        }
    }
}

/// One registered entry, as its subscriber remembers it (to remove it on replace or expiry).
#[derive(Clone, Copy, Debug)]
struct EntryRef {
    /// Bucket minus the shard's first bucket.
    bucket_local: u16,
    slot: Slot,
    window_to_s: u64,
}

/// A subscriber known to this shard.
#[derive(Debug)]
struct Subscriber {
    id: SubscriberKey,
    /// Empty for a free internal index (then it is on the free list).
    entries: Vec<EntryRef>,
    /// Sequence number of the last accepted proof delivered to this subscriber: a subscriber whose several
    /// filters match one proof gets it once.
    last_delivered_seq: u64,
}

/// What a slot stands for: everything a match needs, in one place, so that a matching slot costs one
/// memory access (the subscriber table is only read when the subscriber has several filters in the bucket).
#[derive(Clone, Copy, Debug)]
struct SlotInfo {
    window_from_s: u64,
    window_to_s: u64,
    id: SubscriberKey,
    /// Internal subscriber index.
    subscriber: u32,
    /// The subscriber has other filters in this bucket: dedupe its deliveries per proof.
    shares_bucket: bool,
}

/// Placeholder for slots not yet written (never read: the index only reports live slots).
const SLOT_UNUSED: SlotInfo =
    SlotInfo { window_from_s: 0, window_to_s: 0, id: SubscriberKey([0; 16]), subscriber: 0, shares_bucket: false };

/// One owned bucket: its index and what each slot stands for.
#[derive(Debug)]
struct BucketSubs {
    index: Index,
    /// Indexed by slot; entries of free slots are stale and never read (the index reports live slots only).
    slots: Vec<SlotInfo>,
}

/// All subscriptions of one shard.
#[derive(Debug)]
pub(crate) struct Subscriptions {
    ids: HashMap<SubscriberKey, u32, KeyedState>,
    subscribers: Vec<Subscriber>,
    free_subscribers: Vec<u32>,
    buckets: Vec<BucketSubs>,
    /// Per owned bucket, entries counted while validating one SUBSCRIBE (reset after each).
    scratch_counts: Vec<u16>,
    /// Entries registered over all buckets.
    entries: usize,
}

/// No proof has been delivered to a fresh subscriber.
const SEQ_NONE: u64 = u64::MAX;

impl Subscriptions {
    pub(crate) fn new(config: &EngineConfig) -> Self {
        let owned = config.owned_buckets();
        Self {
            ids: HashMap::with_hasher(KeyedState::new(config.hash_key)),
            subscribers: Vec::new(),
            free_subscribers: Vec::new(),
            buckets: (0..owned).map(|_| BucketSubs { index: Index::new(config.bloom), slots: Vec::new() }).collect(),
            scratch_counts: vec![0; owned],
            entries: 0,
        }
    }

    /// Subscribers with at least one entry.
    pub(crate) fn subscribers(&self) -> usize {
        self.ids.len()
    }

    /// Entries registered.
    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    /// Whether an owned bucket (local index) has any filter; lets the engine skip hashing Bloom positions.
    #[inline]
    pub(crate) fn bucket_has_filters(&self, bucket_local: usize) -> bool {
        !self.buckets[bucket_local].index.is_empty()
    }

    /// Checks every entry; nothing is changed except, on success, `scratch_counts` = entries per owned bucket
    /// (the caller reads then resets them).
    fn validate(
        &mut self,
        config: &EngineConfig,
        now_s: u64,
        entries: &[SubscribeEntry],
    ) -> Result<(), SubscribeError> {
        if entries.len() > u16::MAX as usize {
            return Err(SubscribeError::TooManyEntries);
        }
        let result = entries.iter().try_for_each(|e| {
            let bucket = e.bucket;
            if bucket >= config.num_buckets {
                return Err(SubscribeError::BucketOutOfRange { bucket });
            }
            if !config.owns(bucket) {
                return Err(SubscribeError::BucketNotOwned { bucket });
            }
            if e.filter.params() != config.bloom {
                return Err(SubscribeError::FilterParams { bucket });
            }
            // Checked here too (the server refuses it first): a filter restored from a journal written before
            // this check existed must not match every proof either.
            if e.filter.is_saturated() {
                let (ones, max) = (e.filter.count_ones(), config.bloom.filter_bits_max());
                return Err(SubscribeError::FilterSaturated { bucket, ones, max });
            }
            config.check_window_range(now_s, e.window_from_s, e.window_to_s)?;
            let count = &mut self.scratch_counts[(bucket - config.buckets.start) as usize];
            *count += 1;
            if *count > config.filters_per_bucket_max {
                return Err(SubscribeError::TooManyFilters { bucket });
            }
            Ok(())
        });
        if result.is_err() {
            self.reset_counts(config, entries);
        }
        result
    }

    /// Zeroes the per-bucket counts `validate` left for `entries`.
    fn reset_counts(&mut self, config: &EngineConfig, entries: &[SubscribeEntry]) {
        for e in entries {
            if config.owns(e.bucket) {
                self.scratch_counts[(e.bucket - config.buckets.start) as usize] = 0;
            }
        }
    }

    /// Replaces all of `id`'s entries with `entries` (validated first; all-or-nothing).
    pub(crate) fn replace(
        &mut self,
        config: &EngineConfig,
        now_s: u64,
        id: SubscriberKey,
        entries: &[SubscribeEntry],
    ) -> Result<u16, SubscribeError> {
        self.validate(config, now_s, entries)?;
        let result = self.apply(config, id, entries);
        self.reset_counts(config, entries);
        result
    }

    /// Applies validated entries (`scratch_counts` holds their per-bucket counts).
    fn apply(
        &mut self,
        config: &EngineConfig,
        id: SubscriberKey,
        entries: &[SubscribeEntry],
    ) -> Result<u16, SubscribeError> {
        if entries.is_empty() {
            self.remove(id);
            return Ok(0);
        }
        let internal = match self.ids.get(&id) {
            Some(&internal) => {
                self.clear_entries(internal);
                internal
            }
            None => {
                if self.ids.len() >= config.subscribers_max as usize {
                    return Err(SubscribeError::TooManySubscribers);
                }
                let internal = self.allocate(id);
                self.ids.insert(id, internal);
                internal
            }
        };
        let mut refs = std::mem::take(&mut self.subscribers[internal as usize].entries);
        for e in entries {
            let bucket_local = (e.bucket - config.buckets.start) as usize;
            let bucket = &mut self.buckets[bucket_local];
            let slot = bucket.index.insert(&e.filter);
            if bucket.slots.len() <= slot as usize {
                bucket.slots.resize(slot as usize + 1, SLOT_UNUSED);
            }
            bucket.slots[slot as usize] = SlotInfo {
                window_from_s: e.window_from_s,
                window_to_s: e.window_to_s,
                id,
                subscriber: internal,
                shares_bucket: self.scratch_counts[bucket_local] > 1,
            };
            refs.push(EntryRef { bucket_local: bucket_local as u16, slot, window_to_s: e.window_to_s });
        }
        self.entries += refs.len();
        self.subscribers[internal as usize].entries = refs;
        Ok(entries.len() as u16)
    }

    fn allocate(&mut self, id: SubscriberKey) -> u32 {
        match self.free_subscribers.pop() {
            Some(internal) => {
                let s = &mut self.subscribers[internal as usize];
                s.id = id;
                s.last_delivered_seq = SEQ_NONE;
                internal
            }
            None => {
                self.subscribers.push(Subscriber { id, entries: Vec::new(), last_delivered_seq: SEQ_NONE });
                (self.subscribers.len() - 1) as u32
            }
        }
    }

    /// Removes every entry of an internal subscriber from the indexes (keeps the entry vector's memory).
    fn clear_entries(&mut self, internal: u32) {
        let refs = &mut self.subscribers[internal as usize].entries;
        for r in refs.iter() {
            self.buckets[r.bucket_local as usize].index.remove(r.slot);
        }
        self.entries -= refs.len();
        refs.clear();
    }

    /// Forgets a subscriber; returns whether it was known.
    pub(crate) fn remove(&mut self, id: SubscriberKey) -> bool {
        match self.ids.remove(&id) {
            Some(internal) => {
                self.clear_entries(internal);
                self.free_subscribers.push(internal);
                true
            }
            None => false,
        }
    }

    /// Removes entries whose range ends before `earliest_s`; returns how many.
    pub(crate) fn expire_before(&mut self, earliest_s: u64) -> usize {
        let mut expired = 0;
        let mut emptied = Vec::new();
        for (internal, s) in self.subscribers.iter_mut().enumerate() {
            let before = s.entries.len();
            s.entries.retain(|r| {
                let keep = r.window_to_s >= earliest_s;
                if !keep {
                    self.buckets[r.bucket_local as usize].index.remove(r.slot);
                }
                keep
            });
            let removed = before - s.entries.len();
            expired += removed;
            if removed > 0 && s.entries.is_empty() {
                emptied.push(internal as u32);
            }
        }
        self.entries -= expired;
        for internal in emptied {
            let id = self.subscribers[internal as usize].id;
            self.ids.remove(&id);
            self.free_subscribers.push(internal);
        }
        expired
    }

    /// Prefetches the index rows a match of `positions` in `bucket_local` will read.
    #[inline]
    pub(crate) fn prefetch(&self, bucket_local: usize, positions: &BloomPositions) {
        self.buckets[bucket_local].index.prefetch(positions);
    }

    /// Calls `deliver(subscriber)` once per subscriber with a filter in `bucket_local` that covers
    /// `window_start_s` and matches `positions`. `seq` identifies the proof (delivered at most once each).
    #[inline]
    pub(crate) fn for_each_match(
        &mut self,
        bucket_local: usize,
        window_start_s: u64,
        positions: &BloomPositions,
        seq: u64,
        mut deliver: impl FnMut(SubscriberKey),
    ) {
        let bucket = &self.buckets[bucket_local];
        let subscribers = &mut self.subscribers;
        bucket.index.for_each_match(positions, |slot| {
            let info = &bucket.slots[slot as usize];
            if info.window_from_s <= window_start_s && window_start_s <= info.window_to_s {
                if info.shares_bucket {
                    let s = &mut subscribers[info.subscriber as usize];
                    if s.last_delivered_seq == seq {
                        return;
                    }
                    s.last_delivered_seq = seq;
                }
                deliver(info.id);
            }
        });
    }
}
