//! The standard workloads of docs/FOUNDATIONS.md §7 as deterministic generators, shared by `bench/` and `tessera perf`.
//!
//! ```text
//! RouteWorkload (W-route): 64 buckets × 75 subscribers, one filter of 60 fingerprints each (m=1024, k=3)
//!   next_batch ──▶ 1024 fresh proofs in the current window, 10% addressed to a real subscriber
//!   every `proofs_per_window` proofs the simulated clock moves one window: tick + every subscriber
//!   re-registers 60 fresh fingerprints for the new window (untimed setup, as clients would).
//! SubscribeWorkload (W-sub): 4,800 subscribers replacing their one-entry subscription, alternating
//!   between two precomputed filters each.
//! ```
//! Proof generation (the publisher's SHA-256 work) happens in `next_batch`, outside whatever the caller
//! times; the relay-side cost measured is `Shard::handle_publish` alone (plus draining its deliveries).

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::log::mailbox::SubscriberKey;
use crate::proto::{
    bucket_of, fingerprint, window_start, BloomFilter, BloomParams, Proof, ProofBatch, SubscribeEntry, CIPHERTEXT_LEN,
    NUM_BUCKETS_DEFAULT, WINDOW_SECONDS,
};

use super::config::EngineConfig;
use super::log_sink::LogSink;
use super::shard::Shard;

/// Start of the simulated clock: a realistic Unix time in the middle of a window.
pub const WORKLOAD_START_S: u64 = 1_700_000_005;

/// Parameters of W-route (defaults = docs/FOUNDATIONS.md §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteParams {
    /// Buckets (all owned by the one shard under test).
    pub buckets: u16,
    /// Subscribers per bucket, one filter each.
    pub subscribers_per_bucket: u32,
    /// Fingerprints in each filter.
    pub fingerprints_per_filter: u32,
    /// Proofs per 1,000 addressed to a real subscriber (the rest are random commits).
    pub addressed_per_mille: u32,
    /// Proofs per PUBLISH batch.
    pub batch_proofs: usize,
    /// Proofs per simulated window before the clock advances.
    pub proofs_per_window: u64,
}

impl Default for RouteParams {
    fn default() -> Self {
        Self {
            buckets: NUM_BUCKETS_DEFAULT,
            subscribers_per_bucket: 75,
            fingerprints_per_filter: 60,
            addressed_per_mille: 100,
            batch_proofs: 1024,
            proofs_per_window: 1 << 20,
        }
    }
}

/// One subscriber of W-route: its id, bucket, and the commits it expects in the current window.
struct Recipient {
    id: SubscriberKey,
    bucket: u16,
    expected: Vec<[u8; 32]>,
}

/// W-route generator.
pub struct RouteWorkload {
    params: RouteParams,
    rng: ChaCha8Rng,
    recipients: Vec<Recipient>,
    /// Simulated clock.
    now_s: u64,
    /// Proofs generated in the current window.
    in_window: u64,
    /// Addressed proofs generated in the current window (each uses a distinct expected commit).
    addressed_in_window: u64,
    ciphertext: [u8; CIPHERTEXT_LEN],
    /// Whether the current window's subscriptions are registered in the shard.
    registered: bool,
}

impl RouteWorkload {
    /// A generator with its own seeded RNG (same seed, same proofs).
    pub fn new(params: RouteParams, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut ciphertext = [0u8; CIPHERTEXT_LEN];
        rng.fill_bytes(&mut ciphertext);
        let mut recipients = Vec::new();
        for bucket in 0..params.buckets {
            for _ in 0..params.subscribers_per_bucket {
                let mut id = [0u8; 16];
                rng.fill_bytes(&mut id);
                recipients.push(Recipient { id: SubscriberKey(id), bucket, expected: Vec::new() });
            }
        }
        Self {
            params,
            rng,
            recipients,
            now_s: WORKLOAD_START_S,
            in_window: 0,
            addressed_in_window: 0,
            ciphertext,
            registered: false,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &RouteParams {
        &self.params
    }

    /// One shard owning every bucket, with dedup room for (and sized to) a whole simulated window.
    pub fn shard_config(&self) -> EngineConfig {
        let mut config = EngineConfig::for_shard(0, 1, self.params.buckets);
        let per_window = self.params.proofs_per_window as usize;
        config.dedup_entries_per_window_max = config.dedup_entries_per_window_max.max(per_window);
        // Sized for the traffic, as a relay would be: no rehash on the publish path after start-up.
        config.dedup_entries_per_window_expected = per_window;
        config
    }

    /// Draws every recipient's expected commits for the current window and registers its filter
    /// (covering this window and the next) in `shard`. Untimed setup.
    ///
    /// Random commits are dealt to the next recipient of their bucket that still needs one, so each
    /// commit costs one SHA-256 whatever the bucket count (no rejection sampling per bucket).
    fn register<L: LogSink>(&mut self, shard: &mut Shard<L>) {
        let w = window_start(self.now_s, WINDOW_SECONDS);
        shard.handle_tick(self.now_s);
        let per_bucket = self.params.subscribers_per_bucket as usize;
        let per_filter = self.params.fingerprints_per_filter as usize;
        let needed = per_bucket * per_filter;
        for r in &mut self.recipients {
            r.expected.clear();
        }
        let mut dealt = vec![0usize; self.params.buckets as usize];
        let mut missing = self.recipients.len() * per_filter;
        while missing > 0 {
            let mut c = [0u8; 32];
            self.rng.fill_bytes(&mut c);
            let bucket = bucket_of(&c, self.params.buckets) as usize;
            if dealt[bucket] < needed {
                // Recipients are stored bucket by bucket; deal round-robin within the bucket.
                let r = bucket * per_bucket + dealt[bucket] % per_bucket;
                self.recipients[r].expected.push(c);
                dealt[bucket] += 1;
                missing -= 1;
            }
        }
        for r in &self.recipients {
            let mut filter = BloomFilter::new(BloomParams::default());
            for c in &r.expected {
                filter.insert_fingerprint(&fingerprint(c, w));
            }
            let entry = SubscribeEntry { bucket: r.bucket, window_from_s: w, window_to_s: w + WINDOW_SECONDS, filter };
            shard
                .handle_subscribe(self.now_s, r.id, std::slice::from_ref(&entry))
                .expect("workload subscriptions are within every default limit");
        }
        self.registered = true;
    }

    /// The next batch and the clock to publish it at. Advances the simulated window (and re-registers the
    /// subscriptions in `shard`) when the current window is full. Generation is untimed setup.
    pub fn next_batch<L: LogSink>(&mut self, shard: &mut Shard<L>) -> (u64, ProofBatch) {
        if self.in_window >= self.params.proofs_per_window {
            self.now_s += WINDOW_SECONDS;
            self.in_window = 0;
            self.addressed_in_window = 0;
            self.registered = false;
        }
        if !self.registered {
            self.register(shard);
        }
        let w = window_start(self.now_s, WINDOW_SECONDS);
        let capacity = self.recipients.len() as u64 * self.params.fingerprints_per_filter as u64;
        let mut proofs = Vec::with_capacity(self.params.batch_proofs);
        for _ in 0..self.params.batch_proofs {
            let addressed =
                self.rng.gen_range(0..1000) < self.params.addressed_per_mille && self.addressed_in_window < capacity;
            let commit = if addressed {
                // Each expected commit is used once per window, so no proof is a duplicate.
                let k = self.addressed_in_window;
                self.addressed_in_window += 1;
                let r = (k % self.recipients.len() as u64) as usize;
                self.recipients[r].expected[(k / self.recipients.len() as u64) as usize]
            } else {
                let mut c = [0u8; 32];
                self.rng.fill_bytes(&mut c);
                c
            };
            let bucket = bucket_of(&commit, self.params.buckets);
            proofs.push(Proof::new(bucket, w, &commit, &fingerprint(&commit, w), &self.ciphertext));
        }
        self.in_window += self.params.batch_proofs as u64;
        (self.now_s, ProofBatch::from_proofs(proofs.iter().map(|p| p.view())))
    }
}

/// Parameters of W-sub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscribeParams {
    /// Buckets.
    pub buckets: u16,
    /// Subscribers per bucket (64 × 75 = 4,800 filters).
    pub subscribers_per_bucket: u32,
    /// Fingerprints per filter.
    pub fingerprints_per_filter: u32,
}

impl Default for SubscribeParams {
    fn default() -> Self {
        Self { buckets: NUM_BUCKETS_DEFAULT, subscribers_per_bucket: 75, fingerprints_per_filter: 60 }
    }
}

/// W-sub generator: precomputed (subscriber, entry) operations, replayed in a cycle.
pub struct SubscribeWorkload {
    params: SubscribeParams,
    /// Two alternative entries per subscriber: replacing A with B then B with A changes every bit.
    ops: Vec<(SubscriberKey, SubscribeEntry)>,
    next: usize,
}

impl SubscribeWorkload {
    /// Precomputes `2 × buckets × subscribers_per_bucket` subscribe operations.
    pub fn new(params: SubscribeParams, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w = window_start(WORKLOAD_START_S, WINDOW_SECONDS);
        let mut ids = Vec::new();
        for bucket in 0..params.buckets {
            for _ in 0..params.subscribers_per_bucket {
                let mut id = [0u8; 16];
                rng.fill_bytes(&mut id);
                ids.push((SubscriberKey(id), bucket));
            }
        }
        let mut ops = Vec::with_capacity(ids.len() * 2);
        for _round in 0..2 {
            for &(id, bucket) in &ids {
                let mut filter = BloomFilter::new(BloomParams::default());
                for _ in 0..params.fingerprints_per_filter {
                    filter.insert_fingerprint(&rng.gen::<[u8; 8]>());
                }
                ops.push((id, SubscribeEntry { bucket, window_from_s: w, window_to_s: w + WINDOW_SECONDS, filter }));
            }
        }
        Self { params, ops, next: 0 }
    }

    /// The parameters.
    pub fn params(&self) -> &SubscribeParams {
        &self.params
    }

    /// One shard owning every bucket.
    pub fn shard_config(&self) -> EngineConfig {
        EngineConfig::for_shard(0, 1, self.params.buckets)
    }

    /// The clock the operations are valid at.
    pub fn now_s(&self) -> u64 {
        WORKLOAD_START_S
    }

    /// The next operation, cycling (the first pass registers, later ones replace).
    #[inline]
    pub fn next_op(&mut self) -> (SubscriberKey, &SubscribeEntry) {
        let (id, entry) = &self.ops[self.next];
        self.next = (self.next + 1) % self.ops.len();
        (*id, entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{MemoryLog, Origin};

    #[test]
    fn route_workload_addresses_a_tenth_and_crosses_windows() {
        let params = RouteParams {
            buckets: 4,
            subscribers_per_bucket: 5,
            batch_proofs: 200,
            proofs_per_window: 400,
            ..RouteParams::default()
        };
        let mut w = RouteWorkload::new(params, 7);
        let mut shard = Shard::new(w.shard_config(), MemoryLog::new(16));
        let mut rejected = Vec::new();
        let mut delivered = 0;
        for _ in 0..5 {
            let (now, batch) = w.next_batch(&mut shard);
            let s = shard.handle_publish(now, Origin::Client, &batch, &mut rejected);
            assert_eq!((s.accepted, s.duplicates, s.rejected), (200, 0, 0));
            delivered += std::iter::from_fn(|| shard.poll_delivery()).count();
        }
        // ~10% of 1,000 addressed plus ~0.4% false positives × 5 filters per bucket.
        assert!((60..160).contains(&delivered), "{delivered}");
        assert_eq!(shard.counters().entries, 20);
        // Third window reached: clock moved twice.
        assert_eq!(shard.counters().accepted, 1000);
    }

    #[test]
    fn subscribe_workload_cycles_replacements() {
        let params = SubscribeParams { buckets: 2, subscribers_per_bucket: 3, fingerprints_per_filter: 60 };
        let mut w = SubscribeWorkload::new(params, 1);
        let mut shard = Shard::new(w.shard_config(), MemoryLog::new(1));
        for _ in 0..20 {
            let now = w.now_s();
            let (id, entry) = w.next_op();
            assert_eq!(shard.handle_subscribe(now, id, std::slice::from_ref(entry)), Ok(1));
        }
        assert_eq!((shard.counters().subscribers, shard.counters().entries, shard.counters().subscribes), (6, 6, 20));
    }
}
