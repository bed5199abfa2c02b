//! The W-e2e workload's pure parts (docs/FOUNDATIONS.md §7): proofs, subscriber commit sets and filters, the address
//! book that lets publishers address real subscribers, and the open-loop pacing schedule.
//!
//! ```text
//! CommitPool (random commits sorted by bucket) ─▶ CommitSet (15 commits in one subscriber's bucket)
//! subscriber: {previous set, active set} × windows {w, w+10} ─▶ 60 fingerprints ─▶ one Bloom filter ─▶ SUBSCRIBE
//! SUBSCRIBED ─▶ Book::confirm: publishers may now address the new active set
//! publisher: write_publish ─ 90% random commits, 10% Book::take(window) ─▶ one PUBLISH message
//! DELIVER ─▶ Stamp::read (send time, addressee, phase) ─▶ latency histogram, addressed/delivered counts
//! ```
//!
//! Why two commit sets and two windows (2 × 15 × 2 = 60 fingerprints, the W-route filter size): the relay
//! deduplicates by `(commit, window)`, so a subscriber offers only 15 fresh addressed slots per window with
//! one set. At hundreds of thousands of proofs/s, 10% addressed needs more, so a subscriber whose active set
//! is used up registers a fresh set (SUBSCRIBE replaces), keeping the previous set in its filter so that
//! proofs already sent to it still match. Windows: a filter registered during window `w` covers `w` and
//! `w + 10`; it is refreshed 2–8 s into the next window, when no proof of window `w − 10` can still be in
//! flight. Nothing here does I/O: randomness and time are arguments.

use bytes::{BufMut, BytesMut};
use rand_core::{CryptoRng, RngCore};

use crate::proto::codec::FRAME_HEADER_LEN;
use crate::proto::derive::{bucket_of, fingerprint, Commit};
use crate::proto::frame::frame_type;
use crate::proto::params::proof_layout as at;
use crate::proto::{BloomFilter, BloomParams, SubscribeEntry, CIPHERTEXT_LEN, PROOF_LEN, PROOF_VERSION};

/// Commits in one subscriber commit set.
pub const COMMITS_PER_SET: usize = 15;
/// Commit sets in one filter: the active one and the previous one (proofs sent to it may be in flight).
pub const SETS_PER_FILTER: usize = 2;
/// Windows one filter covers: the current one and the next, so that it keeps matching across a boundary.
pub const WINDOWS_PER_FILTER: usize = 2;
/// Fingerprints per filter: 60, the W-route filter size (false-positive rate ~0.42% at m = 1024, k = 3).
pub const FINGERPRINTS_PER_FILTER: usize = COMMITS_PER_SET * SETS_PER_FILTER * WINDOWS_PER_FILTER;
/// One proof in `ADDRESSED_EVERY` is addressed to a real subscriber: 10% (docs/FOUNDATIONS.md §7).
pub const ADDRESSED_EVERY: usize = 10;
/// Least time between two SUBSCRIBEs of one subscriber. A set stays in the filter for one rotation after it
/// stops being addressed, so a proof addressed to it has at least this long to be routed: 1 s is hundreds of
/// times the publish→ACK latency even at saturation (bounded by the in-flight batches).
pub const ROTATION_INTERVAL_MS_MIN: u64 = 1_000;
/// A subscription is refreshed this many milliseconds into the window after the one it was made in, at the
/// earliest: by then every proof of the window before has been routed.
pub const REFRESH_OFFSET_MS_MIN: u64 = 2_000;
/// ... and at the latest (exclusive): the refresh must land before the registered range ends.
pub const REFRESH_OFFSET_MS_MAX: u64 = 8_000;
/// Random commits kept per bucket in a `CommitPool` (the rest are dropped): 16 sets' worth.
pub const POOL_COMMITS_PER_BUCKET_MAX: usize = 16 * COMMITS_PER_SET;

/// Bytes of a proof's ciphertext used by the stamp; the rest stays zero (the relay treats it as opaque).
pub const STAMP_LEN: usize = 13;

/// What the load generator writes at the start of each proof's ciphertext (opaque to the relay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Send time, ns since the load generator's epoch (the scheduled time when paced: no coordinated omission).
    pub send_ns: u64,
    /// Index of the subscriber the proof is addressed to, if any.
    pub addressee: Option<u32>,
    /// Phase tag: 0 = not measured (warm-up), k = measured phase k.
    pub phase: u8,
}

impl Stamp {
    /// Writes the stamp into the first `STAMP_LEN` bytes of `ciphertext`.
    pub fn write(&self, ciphertext: &mut [u8]) {
        ciphertext[..8].copy_from_slice(&self.send_ns.to_be_bytes());
        let addressee = self.addressee.map_or(0, |i| i.saturating_add(1));
        ciphertext[8..12].copy_from_slice(&addressee.to_be_bytes());
        ciphertext[12] = self.phase;
    }

    /// Reads a stamp from a ciphertext written by [`write`](Self::write); `None` if it is too short.
    pub fn read(ciphertext: &[u8]) -> Option<Self> {
        let send_ns = u64::from_be_bytes(ciphertext.get(..8)?.try_into().ok()?);
        let addressee = u32::from_be_bytes(ciphertext.get(8..12)?.try_into().ok()?);
        let phase = *ciphertext.get(12)?;
        Some(Self { send_ns, addressee: addressee.checked_sub(1), phase })
    }
}

/// The commits one subscriber expects in its bucket.
pub type CommitSet = [Commit; COMMITS_PER_SET];

/// Random commits sorted by bucket, so that a subscriber's commits cost one SHA-256 each on average instead
/// of one per rejected draw (64 per commit for one fixed bucket of 64).
#[derive(Debug)]
pub struct CommitPool {
    by_bucket: Vec<Vec<Commit>>,
    num_buckets: u16,
}

impl CommitPool {
    /// An empty pool for `num_buckets` (≥ 1) buckets.
    pub fn new(num_buckets: u16) -> Self {
        let num_buckets = num_buckets.max(1);
        Self { by_bucket: vec![Vec::new(); num_buckets as usize], num_buckets }
    }

    /// A set of fresh random commits whose bucket is `bucket` (< `num_buckets`). Random 256-bit commits from
    /// a CSPRNG never repeat, so the relay never sees a set's `(commit, window)` as a duplicate.
    pub fn take_set(&mut self, bucket: u16, rng: &mut (impl RngCore + CryptoRng)) -> CommitSet {
        let wanted = bucket as usize % self.by_bucket.len();
        while self.by_bucket[wanted].len() < COMMITS_PER_SET {
            let mut commit = [0u8; 32];
            rng.fill_bytes(&mut commit);
            let b = bucket_of(&commit, self.num_buckets) as usize;
            if self.by_bucket[b].len() < POOL_COMMITS_PER_BUCKET_MAX {
                self.by_bucket[b].push(commit);
            }
        }
        let pool = &mut self.by_bucket[wanted];
        let rest = pool.len() - COMMITS_PER_SET;
        let mut set = [[0u8; 32]; COMMITS_PER_SET];
        set.copy_from_slice(&pool[rest..]);
        pool.truncate(rest);
        set
    }
}

/// A subscription's window range for a SUBSCRIBE made at `now_s`: the current window and the next.
pub fn subscription_range(now_s: u64, window_s: u64) -> (u64, u64) {
    let w = crate::proto::window_start(now_s, window_s);
    (w, w + window_s * (WINDOWS_PER_FILTER as u64 - 1))
}

/// When (Unix ms) a subscription made at `now_ms` is refreshed: `offset_ms` (clamped to
/// `[REFRESH_OFFSET_MS_MIN, REFRESH_OFFSET_MS_MAX)`) into the next window. Spreading `offset_ms` over
/// subscribers spreads their SUBSCRIBEs over the window instead of a burst at every boundary.
pub fn refresh_at_ms(now_ms: u64, window_s: u64, offset_ms: u64) -> u64 {
    let window_ms = window_s * 1_000;
    let offset_ms = offset_ms.clamp(REFRESH_OFFSET_MS_MIN, REFRESH_OFFSET_MS_MAX - 1).min(window_ms.saturating_sub(1));
    crate::proto::window_start(now_ms / 1_000, window_s) * 1_000 + window_ms + offset_ms
}

/// The SUBSCRIBE entry of a subscriber in `bucket` expecting `sets` over the windows of `range`.
pub fn subscribe_entry(bucket: u16, range: (u64, u64), window_s: u64, sets: &[&CommitSet]) -> SubscribeEntry {
    let mut filter = BloomFilter::new(BloomParams::default());
    let mut w = range.0;
    while w <= range.1 {
        for commit in sets.iter().flat_map(|set| set.iter()) {
            filter.insert_fingerprint(&fingerprint(commit, w));
        }
        w += window_s.max(1);
    }
    SubscribeEntry { bucket, window_from_s: range.0, window_to_s: range.1, filter }
}

/// One subscriber's addressable state, shared between its connection and every publisher (behind a lock).
#[derive(Debug, Default)]
pub struct Book {
    /// Window range the relay has confirmed.
    range: Option<(u64, u64)>,
    /// The set publishers address (confirmed by SUBSCRIBED).
    active: Option<CommitSet>,
    /// Window in which `used` commits of `active` were handed out.
    used_window_s: u64,
    /// Commits of `active` handed out in `used_window_s`; each `(commit, window)` is used once.
    used: usize,
    /// A publisher found `active` used up in the current window.
    exhausted: bool,
    /// A SUBSCRIBE sent and not yet confirmed: its new set and range.
    pending: Option<(CommitSet, (u64, u64))>,
    /// SUBSCRIBED received at least once.
    confirmed_once: bool,
}

impl Book {
    /// A commit of the active set not yet used in window `window_s`, if the confirmed range covers it.
    pub fn take(&mut self, window_s: u64) -> Option<Commit> {
        let (from, to) = self.range?;
        let active = self.active.as_ref()?;
        if window_s < from || window_s > to {
            return None;
        }
        if self.used_window_s != window_s {
            self.used_window_s = window_s;
            self.used = 0;
        }
        let commit = active.get(self.used).copied();
        match commit {
            Some(_) => self.used += 1,
            None => self.exhausted = true,
        }
        commit
    }

    /// A SUBSCRIBE registering `set` (plus the active one) over `range` was sent.
    pub fn begin(&mut self, set: CommitSet, range: (u64, u64)) {
        self.pending = Some((set, range));
    }

    /// SUBSCRIBED arrived: the pending set becomes the active one. Returns whether this was the first one.
    pub fn confirm(&mut self) -> bool {
        if let Some((set, range)) = self.pending.take() {
            self.active = Some(set);
            self.range = Some(range);
            self.used = 0;
            self.exhausted = false;
        }
        !std::mem::replace(&mut self.confirmed_once, true)
    }

    /// The pending SUBSCRIBE was refused (ERROR): nothing changes, the next rotation tries again.
    pub fn refuse(&mut self) {
        self.pending = None;
    }

    /// Whether a SUBSCRIBE is awaiting its SUBSCRIBED.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether publishers used up the active set in the current window.
    pub fn is_exhausted(&self) -> bool {
        self.exhausted
    }
}

/// Appends one PUBLISH message for proofs built by `proof_at`: `count` proofs, proof `i` from
/// `proof_at(i, &mut bytes)` which must fill all `PROOF_LEN` bytes.
pub fn write_publish(out: &mut BytesMut, seq: u64, count: u16, mut proof_at: impl FnMut(usize, &mut [u8])) {
    let body_len = 8 + 2 + count as usize * PROOF_LEN;
    out.reserve(FRAME_HEADER_LEN + body_len);
    out.put_u8(frame_type::PUBLISH);
    out.put_u32(body_len as u32);
    out.put_u64(seq);
    out.put_u16(count);
    for i in 0..count as usize {
        let start = out.len();
        out.put_bytes(0, PROOF_LEN);
        proof_at(i, &mut out[start..start + PROOF_LEN]);
    }
}

/// Fills `proof` (`PROOF_LEN` bytes, zeroed) with a valid proof for `commit` in window `window_start_s`:
/// bucket and fingerprint derived as the relay checks them, the stamp at the start of the ciphertext.
pub fn fill_proof(proof: &mut [u8], commit: &Commit, window_start_s: u64, num_buckets: u16, stamp: &Stamp) {
    proof[at::VERSION] = PROOF_VERSION;
    proof[at::BUCKET..at::BUCKET + 2].copy_from_slice(&bucket_of(commit, num_buckets).to_be_bytes());
    proof[at::WINDOW_START..at::WINDOW_START + 8].copy_from_slice(&window_start_s.to_be_bytes());
    proof[at::COMMIT..at::COMMIT + 32].copy_from_slice(commit);
    proof[at::FINGERPRINT..at::FINGERPRINT + 8].copy_from_slice(&fingerprint(commit, window_start_s));
    stamp.write(&mut proof[at::CIPHERTEXT..at::CIPHERTEXT + CIPHERTEXT_LEN]);
}

/// Open-loop pacing: batch `n` is due at `start_ns + n × interval_ns`, whether or not earlier ones were late.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacer {
    start_ns: u64,
    interval_ns: u64,
    sent: u64,
}

impl Pacer {
    /// Batches of `batch` proofs at `rate_per_s` proofs/s (≥ 1), starting at `start_ns`.
    pub fn new(start_ns: u64, rate_per_s: u64, batch: u64) -> Self {
        let interval_ns = (batch.max(1) as u128 * 1_000_000_000 / rate_per_s.max(1) as u128) as u64;
        Self { start_ns, interval_ns: interval_ns.max(1), sent: 0 }
    }

    /// When the next batch is due, ns.
    pub fn due_ns(&self) -> u64 {
        self.start_ns + self.sent * self.interval_ns
    }

    /// The next batch was sent.
    pub fn advance(&mut self) {
        self.sent += 1;
    }

    /// Time between batches, ns.
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::Publish;
    use crate::proto::{Codec, Frame, ProofRef};
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn stamp_round_trips_and_marks_unaddressed() {
        let mut c = [0u8; CIPHERTEXT_LEN];
        let s = Stamp { send_ns: 0x0102_0304_0506_0708, addressee: Some(4799), phase: 2 };
        s.write(&mut c);
        assert_eq!(&c[..13], &[1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x12, 0xC0, 2]);
        assert_eq!(Stamp::read(&c), Some(s));
        let none = Stamp { send_ns: 5, addressee: None, phase: 0 };
        none.write(&mut c);
        assert_eq!(Stamp::read(&c), Some(none));
        assert_eq!(Stamp::read(&c[..12]), None);
    }

    #[test]
    fn pool_sets_are_in_their_bucket_and_distinct() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let mut pool = CommitPool::new(64);
        let a = pool.take_set(5, &mut rng);
        let b = pool.take_set(5, &mut rng);
        assert!(a.iter().chain(b.iter()).all(|c| bucket_of(c, 64) == 5));
        let mut all: Vec<_> = a.iter().chain(b.iter()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 2 * COMMITS_PER_SET);
        // The draws for bucket 5 filled other buckets: a set for bucket 9 now needs few or no new draws.
        assert!(pool.by_bucket[9].len() <= POOL_COMMITS_PER_BUCKET_MAX);
        assert!(pool.take_set(9, &mut rng).iter().all(|c| bucket_of(c, 64) == 9));
    }

    #[test]
    fn ranges_and_refresh_times() {
        assert_eq!(subscription_range(1_000_007, 10), (1_000_000, 1_000_010));
        assert_eq!(refresh_at_ms(1_000_007_250, 10, 5_500), 1_000_015_500);
        assert_eq!(refresh_at_ms(1_000_000_000, 10, 0), 1_000_012_000, "clamped to the minimum offset");
        assert_eq!(refresh_at_ms(1_000_009_999, 10, 99_000), 1_000_017_999, "clamped below the maximum offset");
    }

    #[test]
    fn entry_matches_every_commit_of_its_sets_in_both_windows() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut pool = CommitPool::new(64);
        let (a, b) = (pool.take_set(3, &mut rng), pool.take_set(3, &mut rng));
        let entry = subscribe_entry(3, (100, 110), 10, &[&a, &b]);
        assert_eq!((entry.bucket, entry.window_from_s, entry.window_to_s), (3, 100, 110));
        for commit in a.iter().chain(b.iter()) {
            assert!(entry.filter.contains_fingerprint(&fingerprint(commit, 100)));
            assert!(entry.filter.contains_fingerprint(&fingerprint(commit, 110)));
        }
        // 60 fingerprints × 3 positions set at most 180 of 1024 bits.
        assert!(entry.filter.count_ones() <= (FINGERPRINTS_PER_FILTER * 3) as u32);
        assert!(entry.filter.count_ones() > 150);
    }

    #[test]
    fn book_hands_out_each_commit_once_per_window_and_rotates() {
        let mut book = Book::default();
        assert_eq!(book.take(100), None, "nothing confirmed yet");
        let set: CommitSet = std::array::from_fn(|i| [i as u8; 32]);
        book.begin(set, (100, 110));
        assert!(book.is_pending());
        assert_eq!(book.take(100), None, "not before SUBSCRIBED");
        assert!(book.confirm(), "first confirmation");
        let taken: Vec<_> = (0..COMMITS_PER_SET).map(|_| book.take(100).unwrap()[0]).collect();
        assert_eq!(taken, (0..COMMITS_PER_SET as u8).collect::<Vec<_>>());
        assert!(!book.is_exhausted());
        assert_eq!(book.take(100), None);
        assert!(book.is_exhausted());
        assert_eq!(book.take(110).unwrap()[0], 0, "a new window makes every commit fresh again");
        assert_eq!(book.take(120), None, "outside the confirmed range");
        let next: CommitSet = std::array::from_fn(|i| [100 + i as u8; 32]);
        book.begin(next, (110, 120));
        assert!(!book.confirm(), "not the first confirmation");
        assert!(!book.is_exhausted() && !book.is_pending());
        assert_eq!(book.take(120).unwrap()[0], 100);
        book.begin(set, (110, 120));
        book.refuse();
        assert!(!book.is_pending());
        assert_eq!(book.take(120).unwrap()[0], 101, "a refused SUBSCRIBE changes nothing");
    }

    #[test]
    fn publish_message_decodes_to_the_proofs_written() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let commits: Vec<Commit> = (0..3)
            .map(|_| {
                let mut c = [0u8; 32];
                rng.fill_bytes(&mut c);
                c
            })
            .collect();
        let mut out = BytesMut::new();
        write_publish(&mut out, 42, 3, |i, proof| {
            let stamp = Stamp { send_ns: i as u64, addressee: None, phase: 1 };
            fill_proof(proof, &commits[i], 1_000_000, 64, &stamp);
        });
        let frames = Codec::default().decode_message(&out.freeze()).unwrap();
        let [Frame::Publish(Publish { seq, proofs })] = frames.as_slice() else { panic!("one PUBLISH: {frames:?}") };
        assert_eq!((*seq, proofs.len()), (42, 3));
        for (i, p) in proofs.iter().enumerate() {
            let p: ProofRef<'_> = p;
            assert_eq!(p.commit(), &commits[i]);
            assert_eq!(p.bucket(), bucket_of(&commits[i], 64));
            assert_eq!(p.fingerprint(), &fingerprint(&commits[i], 1_000_000));
            assert_eq!(Stamp::read(p.ciphertext()).unwrap().send_ns, i as u64);
            assert!(p.ciphertext()[STAMP_LEN..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn pacer_is_open_loop() {
        let mut p = Pacer::new(1_000, 100_000, 256);
        assert_eq!(p.interval_ns(), 2_560_000);
        assert_eq!(p.due_ns(), 1_000);
        p.advance();
        p.advance();
        assert_eq!(p.due_ns(), 1_000 + 2 * 2_560_000, "due times do not move when batches are late");
    }
}
