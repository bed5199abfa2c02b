//! The shard state machine: `handle_*` feeds it, `poll_*` drains it; no I/O, no clock, no allocation per proof.
//!
//! ```text
//! handle_publish(now, origin, batch), in chunks of CHUNK_PROOFS, two chunks in flight:
//!   prepare_chunk(c+1): field checks ─▶ both derivation hashes (SHA-NI, interleaved) ─▶ compare
//!                       ─▶ prefetch each verified proof's dedup line
//!   commit_chunk(c):    dedup(commit, window) ─▶ log.append ─▶ Bloom position hashes (interleaved)
//!                       ─▶ prefetch index rows ─▶ bucket index match ─▶ deliveries queue
//!   runs of accepted proofs ─▶ gossip outbox of every peer except the origin
//! handle_subscribe / handle_unsubscribe ─▶ subscriptions (replace semantics)
//! handle_tick(now) ─▶ expire dedup windows and subscription entries whose range ended
//! poll_delivery / poll_gossip ─▶ the driver sends them
//! ```
//! The shard's clock is the largest `now_s` it has been given: a clock that steps back is ignored until it
//! catches up, so windows never "un-expire" and the dedup ring never holds two live windows in one slot.

use std::collections::VecDeque;

use crate::index::simd::sha256::HashBackend;
use crate::log::scan::RetainedRecord;
use crate::proto::derive::BloomPositions;
use crate::proto::{Commit, ProofBatch, SubscribeEntry, PROOF_LEN};
use bytes::Bytes;
use sha2::Digest;

use super::config::EngineConfig;
use super::counters::ShardCounters;
use super::dedup::{commit_hash_bits, Dedup, DedupOutcome};
use super::gossip::{Gossip, Origin, PeerId};
use super::hashing::{BatchHasher, CHUNK_PROOFS};
use super::log_sink::LogSink;
use super::retained::{RetainedIndex, ScanCursor, ScanStep};
use super::subscriptions::{SubscribeError, Subscriptions};
use super::verify::{check_derivations, check_fields, Rejection, WindowCheck};
use crate::log::mailbox::SubscriberKey;
use crate::log::record::RecordSeq;

/// Largest batch `handle_publish` takes: rejection indexes are `u16`. The codec caps batches at
/// `Limits::proofs_per_batch_max` (a `u16`), so a decoded batch always fits.
pub const PUBLISH_BATCH_PROOFS_MAX: usize = u16::MAX as usize + 1;

/// Candidates hashed between two bursts of dedup prefetches (4 SHA-NI lanes × 2 derivations each).
const PREFETCH_GROUP_PROOFS: usize = 8;

/// One proof for one subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Who gets it.
    pub subscriber: SubscriberKey,
    /// `PROOF_LEN` bytes: a zero-copy slice of the published batch.
    pub proof: Bytes,
    /// The proof's sequence number in this shard's log (its match record points at it; FETCH cursors build
    /// on it).
    pub seq: RecordSeq,
    /// Send it live. `false` past `deliveries_per_proof_max` matches of this proof or
    /// `deliveries_per_second_max` live deliveries in this second: record the match for FETCH only.
    pub push: bool,
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
    pub last_seq: Option<RecordSeq>,
}

/// What happened to one proof of the chunk being processed.
#[derive(Clone, Copy, Debug)]
enum Status {
    /// Not yet looked at.
    Pending,
    /// Field checks and derivations passed; the number is its candidate index in the chunk's hasher.
    Verified(u8),
    Accepted(RecordSeq),
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
    /// Scratch and SIMD backend for the SHA-256 work of the two chunks in flight.
    hashers: [BatchHasher; 2],
    subscriptions: Subscriptions,
    gossip: Gossip,
    deliveries: VecDeque<Delivery>,
    counters: ShardCounters,
    /// Matched proofs ever: identifies a proof while matching (one delivery per subscriber per proof).
    accepted_seq: u64,
    /// Accepted proofs kept for late SUBSCRIBEs, and for how long (seconds); off unless enabled.
    retained: Option<(RetainedIndex, u64)>,
    /// Live deliveries left in the second `push_second_s` of the shard clock (`deliveries_per_second_max`).
    push_budget: u64,
    push_second_s: u64,
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
            dedup: Dedup::with_expected(
                config.window_s,
                config.dedup_entries_per_window_max,
                config.dedup_entries_per_window_expected,
                config.hash_key,
            ),
            hashers: [(); 2].map(|_| BatchHasher::new(HashBackend::detect(), config.bloom)),
            subscriptions: Subscriptions::new(&config),
            push_budget: config.deliveries_per_second_max,
            config,
            log,
            clock_s: 0,
            expired_before_s: 0,
            gossip: Gossip::default(),
            deliveries: VecDeque::new(),
            counters: ShardCounters::default(),
            accepted_seq: 0,
            retained: None,
            push_second_s: 0,
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
    /// hashes in one interleaved pass, then in order dedup → log → (Bloom positions, one pass) → match,
    /// with the next chunk's verification overlapping the current chunk's dedup memory accesses.
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
        // Two chunks in flight: chunk c+1 is verified (and its dedup lines prefetched) before chunk c is
        // committed, so the prefetches have a whole chunk of hashing and logging to arrive in.
        let mut status = [[Status::Pending; CHUNK_PROOFS]; 2];
        let chunks = batch.len().div_ceil(CHUNK_PROOFS);
        let span = |c: usize| c * CHUNK_PROOFS..((c + 1) * CHUNK_PROOFS).min(batch.len());
        if chunks > 0 {
            self.prepare_chunk(0, &windows, batch, span(0), &mut status[0]);
        }
        for c in 0..chunks {
            let (cur, next) = (c % 2, (c + 1) % 2);
            if c + 1 < chunks {
                self.prepare_chunk(next, &windows, batch, span(c + 1), &mut status[next]);
            }
            self.commit_chunk(cur, now_s, batch, span(c), &mut status[cur]);
            for (i, st) in span(c).zip(&status[cur]) {
                match *st {
                    Status::Accepted(position) => {
                        summary.accepted += 1;
                        summary.last_seq = Some(position);
                        run_start.get_or_insert(i);
                        continue;
                    }
                    Status::Duplicate => summary.duplicates += 1,
                    Status::Rejected(reason) => {
                        summary.rejected += 1;
                        rejected.push((i as u16, reason));
                    }
                    Status::Pending | Status::Verified(_) => {
                        unreachable!("commit_chunk resolves every proof of its chunk")
                    }
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

    /// Stage 1 of a chunk (proofs `span` of `batch`, scratch `hashers[h]`): field checks (no hashing for
    /// proofs that fail them), both derivation hashes of the chunk interleaved, derivation comparison, and a
    /// prefetch of each verified proof's dedup line.
    fn prepare_chunk(
        &mut self,
        h: usize,
        windows: &WindowCheck,
        batch: &ProofBatch,
        span: std::ops::Range<usize>,
        status: &mut [Status; CHUNK_PROOFS],
    ) {
        let hasher = &mut self.hashers[h];
        hasher.clear();
        // Batch index of each candidate (proof that passed the field checks), in order.
        let mut candidate_at = [0u32; CHUNK_PROOFS];
        for (i, st) in span.clone().zip(status.iter_mut()) {
            let proof = batch.get(i);
            *st = match check_fields(&self.config, windows, proof) {
                Ok(()) => {
                    let c = hasher.push_derivations(proof);
                    candidate_at[c] = i as u32;
                    Status::Verified(c as u8)
                }
                Err(reason) => {
                    self.counters.count_rejection(reason);
                    Status::Rejected(reason)
                }
            };
        }
        self.counters.received += span.len() as u64;
        // Hash in groups and prefetch each group's dedup lines as soon as they are known: prefetches spread
        // over the hashing instead of arriving in one burst that overflows the CPU's miss buffers.
        let candidates = hasher.candidates();
        for group in (0..candidates).step_by(PREFETCH_GROUP_PROOFS) {
            let group = group..(group + PREFETCH_GROUP_PROOFS).min(candidates);
            hasher.hash_derivations_of(group.clone());
            for c in group {
                let i = candidate_at[c] as usize;
                let proof = batch.get(i);
                let derived = hasher.derived_fingerprint(c);
                match check_derivations(&self.config, proof, hasher.commit_prefix(c), &derived) {
                    Ok(()) => self.dedup.prefetch(proof.window_start(), commit_hash_bits(hasher.commit_state(c))),
                    Err(reason) => {
                        self.counters.count_rejection(reason);
                        status[i - span.start] = Status::Rejected(reason);
                    }
                }
            }
        }
    }

    /// Stage 2 of a chunk prepared into `hashers[h]`: in batch order (the first copy of a duplicate wins)
    /// dedup and log; then the k Bloom positions of every accepted proof with filters in its bucket,
    /// interleaved; prefetch the index rows they select; match and queue deliveries.
    fn commit_chunk(
        &mut self,
        h: usize,
        now_s: u64,
        batch: &ProofBatch,
        span: std::ops::Range<usize>,
        status: &mut [Status; CHUNK_PROOFS],
    ) {
        let hasher = &mut self.hashers[h];
        // Proofs whose Bloom positions are hashed: those in buckets with filters (to match now) and, when the
        // late-match index is on, every accepted proof (it keeps the positions, so a late scan only tests bits).
        let mut to_hash = [(0u32, RecordSeq(0), false); CHUNK_PROOFS];
        let mut hashing = 0;
        let retain = self.retained.is_some();
        for (i, st) in span.zip(status.iter_mut()) {
            let Status::Verified(c) = *st else { continue };
            let proof = batch.get(i);
            let bits = commit_hash_bits(hasher.commit_state(c as usize));
            match self.dedup.insert(proof.commit(), proof.window_start(), bits) {
                DedupOutcome::New => {}
                DedupOutcome::Duplicate => {
                    self.counters.duplicates += 1;
                    *st = Status::Duplicate;
                    continue;
                }
                DedupOutcome::Full => {
                    self.counters.count_rejection(Rejection::DedupFull);
                    *st = Status::Rejected(Rejection::DedupFull);
                    continue;
                }
            }
            let position = match self.log.append(proof, now_s) {
                Ok(position) => position,
                Err(_) => {
                    self.counters.count_rejection(Rejection::LogFailed);
                    *st = Status::Rejected(Rejection::LogFailed);
                    continue;
                }
            };
            self.counters.accepted += 1;
            *st = Status::Accepted(position);
            let has_filters =
                self.subscriptions.bucket_has_filters((proof.bucket() - self.config.buckets.start) as usize);
            if has_filters || retain {
                hasher.push_positions(proof.fingerprint());
                to_hash[hashing] = (i as u32, position, has_filters);
                hashing += 1;
            }
        }
        if hashing == 0 {
            return;
        }
        hasher.hash_positions();
        let mut positions = [BloomPositions::from_slice(&[]); CHUNK_PROOFS];
        for (n, &(i, position, has_filters)) in to_hash[..hashing].iter().enumerate() {
            positions[n] = hasher.positions(n);
            let proof = batch.get(i as usize);
            let bucket_local = (proof.bucket() - self.config.buckets.start) as usize;
            if has_filters {
                self.subscriptions.prefetch(bucket_local, &positions[n]);
            }
            if let Some((retained, _)) = &mut self.retained {
                retained.push(bucket_local, proof.window_start(), &positions[n], position);
            }
        }
        if self.push_second_s != now_s {
            self.push_second_s = now_s;
            self.push_budget = self.config.deliveries_per_second_max;
        }
        let per_proof_max = u64::from(self.config.deliveries_per_proof_max);
        for (n, &(i, position, has_filters)) in to_hash[..hashing].iter().enumerate() {
            if !has_filters {
                continue;
            }
            let i = i as usize;
            let proof = batch.get(i);
            let seq = self.accepted_seq;
            self.accepted_seq += 1;
            let deliveries = &mut self.deliveries;
            let (mut matched, mut unpushed) = (0u64, 0u64);
            let budget = &mut self.push_budget;
            let bucket_local = (proof.bucket() - self.config.buckets.start) as usize;
            self.subscriptions.for_each_match(bucket_local, proof.window_start(), &positions[n], seq, |subscriber| {
                // Every match is queued (the server records it for FETCH); only the first ones within both
                // bounds are pushed live, so a proof matching many filters costs bounded network and outbox work.
                let push = matched < per_proof_max && *budget > 0;
                matched += 1;
                if push {
                    *budget -= 1;
                } else {
                    unpushed += 1;
                }
                deliveries.push_back(Delivery { subscriber, proof: batch.proof_bytes(i), seq: position, push });
            });
            self.counters.deliveries += matched;
            self.counters.deliveries_unpushed += unpushed;
        }
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
        subscriber: SubscriberKey,
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
    pub fn handle_unsubscribe(&mut self, subscriber: SubscriberKey) -> bool {
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
        if let Some((retained, retention_s)) = &mut self.retained {
            retained.expire_before(now_s.saturating_sub(*retention_s));
        }
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

    /// Remembers `(commit, window)` as already accepted, as rebuilt from the durable log at start, so that a
    /// publisher retrying after a crash gets a duplicate rather than a second copy. Returns whether it was new.
    pub fn restore_dedup(&mut self, window_start_s: u64, commit: &Commit) -> bool {
        let digest: [u8; 32] = sha2::Sha256::digest(commit).into();
        let word =
            |i: usize| u32::from_be_bytes([digest[4 * i], digest[4 * i + 1], digest[4 * i + 2], digest[4 * i + 3]]);
        let state = [word(0), word(1), word(2), word(3), word(4), word(5), word(6), word(7)];
        matches!(self.dedup.insert(commit, window_start_s, commit_hash_bits(&state)), DedupOutcome::New)
    }

    /// (commit, window) pairs remembered for dedup over all live windows.
    pub fn dedup_entries(&self) -> usize {
        self.dedup.len()
    }

    /// The counters.
    pub fn counters(&self) -> &ShardCounters {
        &self.counters
    }

    /// Keeps every accepted proof's fingerprint and sequence number for `retention_s` seconds, so that a
    /// SUBSCRIBE reaching into the past can be matched against what was already accepted
    /// ([`Shard::late_match`]). Costs `RetainedIndex::bytes_per_proof(k)` bytes per retained proof, and the
    /// Bloom-position hashing of proofs in buckets without filters (those with filters are hashed anyway).
    pub fn retain_for_late_match(&mut self, retention_s: u64) {
        let (buckets, k) = (self.config.buckets.len(), self.config.bloom.k as usize);
        self.retained.get_or_insert_with(|| (RetainedIndex::new(buckets, k), retention_s)).1 = retention_s;
    }

    /// Re-enters proofs accepted before a restart into the late-match index (recovery, in log order): their
    /// Bloom positions are hashed in batches, as for proofs accepted now.
    pub fn restore_retained(&mut self, records: &[RetainedRecord]) {
        let Some((retained, _)) = &mut self.retained else { return };
        let buckets = self.config.buckets.clone();
        let hasher = &mut self.hashers[0];
        // Only this shard's buckets, hashed in chunks as the engine hashes accepted proofs (no copy of the set).
        let mut owned = records.iter().filter(|r| buckets.contains(&r.bucket)).peekable();
        while owned.peek().is_some() {
            let chunk: Vec<&RetainedRecord> = owned.by_ref().take(CHUNK_PROOFS).collect();
            hasher.clear();
            for r in &chunk {
                hasher.push_positions(&r.fingerprint);
            }
            hasher.hash_positions();
            for (n, r) in chunk.iter().enumerate() {
                retained.push((r.bucket - buckets.start) as usize, r.window_start_s, &hasher.positions(n), r.seq);
            }
        }
    }

    /// Proofs held for late matching.
    pub fn retained_proofs(&self) -> u64 {
        self.retained.as_ref().map_or(0, |(r, _)| r.proofs())
    }

    /// One bounded step of matching `filter` against the retained proofs of `bucket` with windows in
    /// `from_s..=to_s` and sequence numbers below `seq_end` (the log's next seq when the SUBSCRIBE was applied:
    /// later proofs were matched live), from `cursor` on, examining at most `budget` proofs. Matched sequence
    /// numbers are pushed to `matched`.
    #[allow(clippy::too_many_arguments)]
    pub fn late_match(
        &mut self,
        bucket: u16,
        range: (u64, u64),
        seq_end: RecordSeq,
        filter: &crate::proto::BloomFilter,
        cursor: &mut ScanCursor,
        budget: usize,
        matched: &mut Vec<RecordSeq>,
    ) -> ScanStep {
        let Some((retained, _)) = &self.retained else { return ScanStep { examined: 0, done: true } };
        if !self.config.buckets.contains(&bucket) {
            return ScanStep { examined: 0, done: true };
        }
        let bucket_local = (bucket - self.config.buckets.start) as usize;
        retained.scan(bucket_local, range, seq_end, filter, cursor, budget, matched)
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
