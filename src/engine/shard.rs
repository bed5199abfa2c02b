//! The shard state machine: `handle_*` feeds it, `poll_*` drains it; no I/O, no clock, no allocation per proof.
//!
//! ```text
//! handle_publish(now, origin, batch)
//!   for each proof: field checks ─▶ SHA-256 derivation checks ─▶ dedup(commit, window)
//!        ─▶ log.append ─▶ Bloom positions ─▶ bucket index match ─▶ deliveries queue
//!   runs of accepted proofs ─▶ gossip outbox of every peer except the origin
//! handle_subscribe / handle_unsubscribe ─▶ subscriptions (replace semantics)
//! handle_tick(now) ─▶ expire dedup windows and subscription entries whose range ended
//! poll_delivery / poll_gossip ─▶ the driver sends them
//! ```
//! The shard's clock is the largest `now_s` it has been given: a clock that steps back is ignored until it
//! catches up, so windows never "un-expire" and the dedup ring never holds two live windows in one slot.

use std::collections::VecDeque;

use crate::index::simd::sha256::HashBackend;
use crate::proto::derive::BloomPositions;
use crate::proto::{ProofBatch, SubscribeEntry, SubscriberId, PROOF_LEN};
use bytes::Bytes;

use super::config::EngineConfig;
use super::counters::ShardCounters;
use super::dedup::{commit_hash_bits, Dedup, DedupOutcome};
use super::gossip::{Gossip, Origin, PeerId};
use super::hashing::{BatchHasher, CHUNK_PROOFS};
use super::log_sink::{LogPosition, LogSink};
use super::subscriptions::{SubscribeError, Subscriptions};
use super::verify::{check_derivations, check_fields, Rejection, WindowCheck};

/// Largest batch `handle_publish` takes: rejection indexes are `u16`. The codec caps batches at
/// `Limits::proofs_per_batch_max` (a `u16`), so a decoded batch always fits.
pub const PUBLISH_BATCH_PROOFS_MAX: usize = u16::MAX as usize + 1;

/// One proof for one subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Who gets it.
    pub subscriber: SubscriberId,
    /// `PROOF_LEN` bytes: a zero-copy slice of the published batch.
    pub proof: Bytes,
    /// Where the proof is in this shard's log (FETCH cursors build on it).
    pub log_position: LogPosition,
}

/// What one `handle_publish` did. `accepted + duplicates + rejected` = batch length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishSummary {
    /// New proofs, logged and matched.
    pub accepted: u32,
    /// Valid proofs already accepted in their window.
    pub duplicates: u32,
    /// Proofs refused (each listed in `rejected` with its reason).
    pub rejected: u32,
    /// Log position of the last accepted proof: the batch may be acknowledged once the log is durable up to it.
    pub last_log_position: Option<LogPosition>,
}

/// What happened to one proof of the chunk being processed.
#[derive(Clone, Copy, Debug)]
enum Status {
    /// Passed the field checks; derivations not yet compared.
    Pending,
    Accepted(LogPosition),
    Duplicate,
    Rejected(Rejection),
}

/// A routing shard: owns a bucket range, its dedup table, subscription indexes and log sink.
pub struct Shard<L: LogSink> {
    config: EngineConfig,
    log: L,
    /// Largest `now_s` seen (monotonic shard clock).
    clock_s: u64,
    /// Earliest accepted window at the last expiry, so a tick within one window does no work.
    expired_before_s: u64,
    dedup: Dedup,
    /// Scratch and SIMD backend for the chunk's SHA-256 work.
    hasher: BatchHasher,
    subscriptions: Subscriptions,
    gossip: Gossip,
    deliveries: VecDeque<Delivery>,
    counters: ShardCounters,
    /// Matched proofs ever: identifies a proof while matching (one delivery per subscriber per proof).
    accepted_seq: u64,
}

impl<L: LogSink> std::fmt::Debug for Shard<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("config", &self.config).field("counters", &self.counters).finish_non_exhaustive()
    }
}

impl<L: LogSink> Shard<L> {
    /// A shard with no subscribers and no peers.
    ///
    /// Panics if `config.validate()` fails: the driver validates configuration at start-up, so an invalid one
    /// here is a programming error.
    pub fn new(config: EngineConfig, log: L) -> Self {
        if let Err(e) = config.validate() {
            panic!("invalid engine configuration (validate it at start-up): {e}");
        }
        Self {
            dedup: Dedup::new(config.window_s, config.dedup_entries_per_window_max, config.hash_key),
            hasher: BatchHasher::new(HashBackend::detect(), config.bloom),
            subscriptions: Subscriptions::new(&config),
            config,
            log,
            clock_s: 0,
            expired_before_s: 0,
            gossip: Gossip::default(),
            deliveries: VecDeque::new(),
            counters: ShardCounters::default(),
            accepted_seq: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Advances the monotonic shard clock and returns it.
    #[inline]
    fn observe_clock(&mut self, now_s: u64) -> u64 {
        self.clock_s = self.clock_s.max(now_s);
        self.clock_s
    }

    /// Verifies, deduplicates, logs, matches and gossips a batch. Rejections are pushed to `rejected` as
    /// (index in batch, reason), in index order. The batch must hold at most `PUBLISH_BATCH_PROOFS_MAX` proofs.
    ///
    /// Proofs are processed in chunks of `CHUNK_PROOFS`: cheap field checks, then the chunk's derivation
    /// hashes in one interleaved pass, then in order dedup → log → (Bloom positions, one pass) → match.
    pub fn handle_publish(
        &mut self,
        now_s: u64,
        origin: Origin,
        batch: &ProofBatch,
        rejected: &mut Vec<(u16, Rejection)>,
    ) -> PublishSummary {
        assert!(batch.len() <= PUBLISH_BATCH_PROOFS_MAX, "batch larger than the codec allows");
        let now_s = self.observe_clock(now_s);
        let windows = WindowCheck::new(&self.config, now_s);
        let except = match origin {
            Origin::Peer(peer) => Some(peer),
            Origin::Client | Origin::Cover => None,
        };
        let mut summary = PublishSummary::default();
        let mut run_start = None;
        let mut status = [Status::Pending; CHUNK_PROOFS];
        for base in (0..batch.len()).step_by(CHUNK_PROOFS) {
            let status = &mut status[..CHUNK_PROOFS.min(batch.len() - base)];
            self.process_chunk(now_s, &windows, batch, base, status);
            for (j, st) in status.iter().enumerate() {
                let i = base + j;
                match *st {
                    Status::Accepted(position) => {
                        summary.accepted += 1;
                        summary.last_log_position = Some(position);
                        run_start.get_or_insert(i);
                        continue;
                    }
                    Status::Duplicate => summary.duplicates += 1,
                    Status::Rejected(reason) => {
                        summary.rejected += 1;
                        rejected.push((i as u16, reason));
                    }
                    Status::Pending => unreachable!("process_chunk resolves every proof of its chunk"),
                }
                if let Some(start) = run_start.take() {
                    self.queue_gossip(batch, start..i, except);
                }
            }
        }
        if let Some(start) = run_start {
            self.queue_gossip(batch, start..batch.len(), except);
        }
        summary
    }

    /// Resolves proofs `base..base + status.len()` of `batch` into `status`.
    #[inline(never)]
    fn process_chunk(
        &mut self,
        now_s: u64,
        windows: &WindowCheck,
        batch: &ProofBatch,
        base: usize,
        status: &mut [Status],
    ) {
        self.hasher.clear();
        // 1. Field checks (no hashing for proofs that fail them); queue the derivation hashes of the rest.
        for (j, st) in status.iter_mut().enumerate() {
            let proof = batch.get(base + j);
            *st = match check_fields(&self.config, windows, proof) {
                Ok(()) => {
                    self.hasher.push_derivations(proof);
                    Status::Pending
                }
                Err(reason) => self.reject(reason),
            };
        }
        self.counters.received += status.len() as u64;
        // 2. Both derivation hashes of the whole chunk, interleaved; then prefetch every candidate's dedup slot
        //    so that the table's cache misses overlap instead of queueing one by one in step 3.
        self.hasher.hash_derivations();
        let mut candidate = 0;
        for (j, st) in status.iter().enumerate() {
            if matches!(st, Status::Pending) {
                let bits = commit_hash_bits(self.hasher.commit_state(candidate));
                self.dedup.prefetch(batch.get(base + j).window_start(), bits);
                candidate += 1;
            }
        }
        // 3. In batch order (the first copy of a duplicate wins): compare, dedup, log, queue positions.
        let mut to_match = [(0u16, LogPosition(0)); CHUNK_PROOFS];
        let mut matching = 0;
        let mut candidate = 0;
        for (j, st) in status.iter_mut().enumerate() {
            if !matches!(st, Status::Pending) {
                continue;
            }
            let c = candidate;
            candidate += 1;
            let proof = batch.get(base + j);
            let derived = self.hasher.derived_fingerprint(c);
            if let Err(reason) = check_derivations(&self.config, proof, self.hasher.commit_prefix(c), &derived) {
                *st = self.reject(reason);
                continue;
            }
            let bits = commit_hash_bits(self.hasher.commit_state(c));
            match self.dedup.insert(proof.commit(), proof.window_start(), bits) {
                DedupOutcome::New => {}
                DedupOutcome::Duplicate => {
                    self.counters.duplicates += 1;
                    *st = Status::Duplicate;
                    continue;
                }
                DedupOutcome::Full => {
                    *st = self.reject(Rejection::DedupFull);
                    continue;
                }
            }
            let position = self.log.append(proof, now_s);
            self.counters.accepted += 1;
            *st = Status::Accepted(position);
            if self.subscriptions.bucket_has_filters((proof.bucket() - self.config.buckets.start) as usize) {
                self.hasher.push_positions(proof.fingerprint());
                to_match[matching] = (j as u16, position);
                matching += 1;
            }
        }
        if matching == 0 {
            return;
        }
        // 4. The k Bloom positions of every accepted proof with filters in its bucket, interleaved; prefetch
        //    the index rows they select for the whole chunk, then match.
        self.hasher.hash_positions();
        let mut positions = [BloomPositions::from_slice(&[]); CHUNK_PROOFS];
        for (n, &(j, _)) in to_match[..matching].iter().enumerate() {
            positions[n] = self.hasher.positions(n);
            let bucket_local = (batch.get(base + j as usize).bucket() - self.config.buckets.start) as usize;
            self.subscriptions.prefetch(bucket_local, &positions[n]);
        }
        for (n, &(j, position)) in to_match[..matching].iter().enumerate() {
            let i = base + j as usize;
            let proof = batch.get(i);
            let seq = self.accepted_seq;
            self.accepted_seq += 1;
            let deliveries = &mut self.deliveries;
            let mut matched = 0u64;
            let bucket_local = (proof.bucket() - self.config.buckets.start) as usize;
            self.subscriptions.for_each_match(bucket_local, proof.window_start(), &positions[n], seq, |subscriber| {
                matched += 1;
                deliveries.push_back(Delivery { subscriber, proof: batch.proof_bytes(i), log_position: position });
            });
            self.counters.deliveries += matched;
        }
    }

    #[inline]
    fn reject(&mut self, reason: Rejection) -> Status {
        self.counters.count_rejection(reason);
        Status::Rejected(reason)
    }

    fn queue_gossip(&mut self, batch: &ProofBatch, range: std::ops::Range<usize>, except: Option<PeerId>) {
        if self.gossip.peers() == 0 {
            return;
        }
        let run = batch.as_bytes().slice(range.start * PROOF_LEN..range.end * PROOF_LEN);
        let outcome = self.gossip.queue_run(&run, except, self.config.gossip_queue_proofs_max);
        self.counters.gossip_queued += outcome.queued;
        self.counters.gossip_dropped += outcome.dropped;
    }

    /// Replaces ALL of `subscriber`'s entries in this shard with `entries` (an empty slice removes them).
    /// Returns the number of entries now registered. All-or-nothing: on error nothing changed.
    pub fn handle_subscribe(
        &mut self,
        now_s: u64,
        subscriber: SubscriberId,
        entries: &[SubscribeEntry],
    ) -> Result<u16, SubscribeError> {
        let now_s = self.observe_clock(now_s);
        let result = self.subscriptions.replace(&self.config, now_s, subscriber, entries);
        match result {
            Ok(_) => self.counters.subscribes += 1,
            Err(_) => self.counters.subscribes_rejected += 1,
        }
        self.update_gauges();
        result
    }

    /// Removes all of `subscriber`'s entries; returns whether it had any.
    pub fn handle_unsubscribe(&mut self, subscriber: SubscriberId) -> bool {
        let known = self.subscriptions.remove(subscriber);
        self.update_gauges();
        known
    }

    /// Expires dedup windows and subscription entries whose range ended. Cheap when the earliest accepted
    /// window has not moved since the last call.
    pub fn handle_tick(&mut self, now_s: u64) {
        let now_s = self.observe_clock(now_s);
        let (earliest_s, _) = self.config.accepted_windows(now_s);
        if earliest_s <= self.expired_before_s {
            return;
        }
        self.expired_before_s = earliest_s;
        self.dedup.expire_before(earliest_s);
        self.counters.entries_expired += self.subscriptions.expire_before(earliest_s) as u64;
        self.update_gauges();
    }

    fn update_gauges(&mut self) {
        self.counters.subscribers = self.subscriptions.subscribers() as u64;
        self.counters.entries = self.subscriptions.entries() as u64;
        self.counters.peers = self.gossip.peers() as u64;
    }

    /// The next queued delivery; drain after each `handle_publish`.
    pub fn poll_delivery(&mut self) -> Option<Delivery> {
        self.deliveries.pop_front()
    }

    /// Attaches a peer: accepted proofs are gossiped to it from now on.
    pub fn add_peer(&mut self, peer: PeerId) {
        self.gossip.add_peer(peer);
        self.update_gauges();
    }

    /// Detaches a peer and drops its queued gossip.
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.gossip.remove_peer(peer);
        self.update_gauges();
    }

    /// The next batch of gossip for `peer`, if any.
    pub fn poll_gossip(&mut self, peer: PeerId) -> Option<ProofBatch> {
        self.gossip.poll(peer)
    }

    /// Proofs waiting in `peer`'s gossip outbox.
    pub fn gossip_queued(&self, peer: PeerId) -> usize {
        self.gossip.queued(peer)
    }

    /// (commit, window) pairs remembered for dedup over all live windows.
    pub fn dedup_entries(&self) -> usize {
        self.dedup.len()
    }

    /// The counters.
    pub fn counters(&self) -> &ShardCounters {
        &self.counters
    }

    /// The log sink.
    pub fn log(&self) -> &L {
        &self.log
    }

    /// The log sink, mutably (the driver flushes a durable log through it).
    pub fn log_mut(&mut self) -> &mut L {
        &mut self.log
    }
}
