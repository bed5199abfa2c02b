//! Behaviour of the shard engine through its public API: every rejection reason, dedup and its expiry,
//! subscribe/replace/unsubscribe, window-range matching, delivery once per subscriber, gossip except origin.

use bytes::Bytes;
use tessera::engine::{EngineConfig, MemoryLog, Origin, Rejection, Shard, SubscribeError};
use tessera::log::mailbox::SubscriberKey;
use tessera::log::record::RecordSeq;
use tessera::proto::{
    bucket_of, fingerprint, BloomFilter, BloomParams, Proof, ProofBatch, SubscribeEntry, CIPHERTEXT_LEN, PROOF_LEN,
};

/// A Unix time in the middle of a window (window start `T0`).
const T0: u64 = 1_700_000_000;
const NOW: u64 = T0 + 5;

fn commit(n: u32) -> [u8; 32] {
    let mut c = [0u8; 32];
    c[..4].copy_from_slice(&n.to_be_bytes());
    c[31] = 0xC0;
    c
}

/// A correctly derived proof for `commit(n)` in window `w`.
fn proof(n: u32, w: u64) -> Proof {
    let c = commit(n);
    Proof::new(bucket_of(&c, 64), w, &c, &fingerprint(&c, w), &[n as u8; CIPHERTEXT_LEN])
}

fn batch(proofs: &[Proof]) -> ProofBatch {
    ProofBatch::from_proofs(proofs.iter().map(|p| p.view()))
}

fn shard() -> Shard<MemoryLog> {
    Shard::new(EngineConfig::single_shard(), MemoryLog::new(1024))
}

fn sub(n: u8) -> SubscriberKey {
    SubscriberKey([n; 16])
}

/// A filter holding the fingerprints of `commit(n)` in window `w` for each `n`.
fn filter_for(ns: &[u32], w: u64) -> BloomFilter {
    let mut f = BloomFilter::new(BloomParams::default());
    for &n in ns {
        f.insert_fingerprint(&fingerprint(&commit(n), w));
    }
    f
}

fn entry(bucket: u16, from: u64, to: u64, filter: BloomFilter) -> SubscribeEntry {
    SubscribeEntry { bucket, window_from_s: from, window_to_s: to, filter }
}

/// An entry in the bucket of `commit(n)` for windows `[from, to]` matching `commit(n)` in window `w`.
fn entry_for(n: u32, w: u64, from: u64, to: u64) -> SubscribeEntry {
    entry(bucket_of(&commit(n), 64), from, to, filter_for(&[n], w))
}

fn drain(shard: &mut Shard<MemoryLog>) -> Vec<(SubscriberKey, Bytes, RecordSeq)> {
    std::iter::from_fn(|| shard.poll_delivery()).map(|d| (d.subscriber, d.proof, d.seq)).collect()
}

#[test]
fn valid_proof_is_logged_matched_and_delivered_zero_copy() {
    let mut s = shard();
    assert_eq!(s.handle_subscribe(NOW, sub(1), &[entry_for(7, T0, T0, T0 + 100)]), Ok(1));
    let b = batch(&[proof(6, T0), proof(7, T0)]);
    let mut rejected = Vec::new();
    let summary = s.handle_publish(NOW, Origin::Client, &b, &mut rejected);
    assert_eq!((summary.accepted, summary.duplicates, summary.rejected), (2, 0, 0));
    assert_eq!(summary.last_seq, Some(RecordSeq(1)));
    assert!(rejected.is_empty());
    let d = drain(&mut s);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].0, sub(1));
    assert_eq!(d[0].2, RecordSeq(1));
    assert_eq!(d[0].1.as_ref(), proof(7, T0).as_bytes());
    // Zero-copy: the delivery points into the batch's buffer.
    assert_eq!(d[0].1.as_ptr(), b.as_bytes()[PROOF_LEN..].as_ptr());
    assert_eq!(s.log().get(RecordSeq(1)).unwrap().0.commit(), &commit(7));
    assert_eq!(s.log().get(RecordSeq(1)).unwrap().1, NOW);
    let c = s.counters();
    assert_eq!((c.received, c.accepted, c.deliveries, c.subscribers, c.entries), (2, 2, 1, 1, 1));
}

#[test]
fn every_rejection_reason_is_distinct_and_changes_nothing() {
    let mut config = EngineConfig::for_shard(0, 2, 64); // owns buckets 0..32
    config.dedup_entries_per_window_max = 3;
    let mut s = Shard::new(config, MemoryLog::new(64));
    let owned = (0..).find(|&n| bucket_of(&commit(n), 64) < 32).unwrap();
    let foreign = (0..).find(|&n| bucket_of(&commit(n), 64) >= 32).unwrap();
    let good = proof(owned, T0);
    let field = |p: &Proof, at: usize, bytes: &[u8]| {
        let mut raw = *p.as_bytes();
        raw[at..at + bytes.len()].copy_from_slice(bytes);
        Proof::from_slice(&raw).unwrap()
    };
    let claimed = bucket_of(&commit(owned), 64);
    let cases = [
        (field(&good, 2, &64u16.to_be_bytes()), Rejection::BadBucket), // out of range
        (field(&good, 2, &((claimed + 1) % 32).to_be_bytes()), Rejection::BadBucket), // owned, not derived
        (proof(foreign, T0), Rejection::BucketNotOwned),
        (field(&good, 44, &[0; 8]), Rejection::BadFingerprint),
        (proof(owned, T0 - 20), Rejection::WindowStale),
        (proof(owned, T0 + 10), Rejection::WindowFuture),
        (field(&good, 4, &(T0 + 3).to_be_bytes()), Rejection::WindowMisaligned),
    ];
    let proofs: Vec<Proof> = cases.iter().map(|(p, _)| p.clone()).collect();
    let mut rejected = Vec::new();
    let summary = s.handle_publish(NOW, Origin::Client, &batch(&proofs), &mut rejected);
    assert_eq!((summary.accepted, summary.rejected, summary.last_seq), (0, 7, None));
    let expected: Vec<(u16, Rejection)> = cases.iter().enumerate().map(|(i, (_, r))| (i as u16, *r)).collect();
    assert_eq!(rejected, expected);
    let c = s.counters().clone();
    assert_eq!(c.rejected(Rejection::BadBucket), 2);
    for r in [
        Rejection::BucketNotOwned,
        Rejection::BadFingerprint,
        Rejection::WindowStale,
        Rejection::WindowFuture,
        Rejection::WindowMisaligned,
    ] {
        assert_eq!(c.rejected(r), 1, "{r:?}");
    }
    assert_eq!((c.rejected_total(), c.accepted, c.received), (7, 0, 7));
    assert!(s.log().is_empty());
    assert_eq!(s.dedup_entries(), 0);

    // A rejected proof did not poison dedup: the valid one with the same commit is accepted.
    rejected.clear();
    let summary = s.handle_publish(NOW, Origin::Client, &batch(std::slice::from_ref(&good)), &mut rejected);
    assert_eq!(summary.accepted, 1);

    // Dedup memory is bounded per window: the fourth distinct commit in one window is refused.
    let more: Vec<Proof> =
        (0..).filter(|&n| n != owned && bucket_of(&commit(n), 64) < 32).take(3).map(|n| proof(n, T0)).collect();
    let summary = s.handle_publish(NOW, Origin::Client, &batch(&more), &mut rejected);
    assert_eq!((summary.accepted, summary.rejected), (2, 1));
    assert_eq!(rejected, vec![(2, Rejection::DedupFull)]);
    assert_eq!(Rejection::DedupFull.error_code(), tessera::proto::ErrorCode::OVERLOADED);
}

#[test]
fn future_window_within_skew_and_previous_window_are_accepted() {
    let mut s = shard();
    let mut rejected = Vec::new();
    // 1 s before the boundary, skew 2 s: the next window is accepted; the previous one too.
    let now = T0 + 9;
    let b = batch(&[proof(1, T0 + 10), proof(2, T0 - 10), proof(3, T0 + 20)]);
    let summary = s.handle_publish(now, Origin::Client, &b, &mut rejected);
    assert_eq!(summary.accepted, 2);
    assert_eq!(rejected, vec![(2, Rejection::WindowFuture)]);
}

#[test]
fn duplicates_are_counted_not_rejected_and_expire_with_their_window() {
    let mut s = shard();
    s.add_peer(1);
    s.handle_subscribe(NOW, sub(1), &[entry_for(5, T0, T0, T0 + 100)]).unwrap();
    let mut rejected = Vec::new();
    // Twice in one batch, then again in a second batch.
    let summary = s.handle_publish(NOW, Origin::Client, &batch(&[proof(5, T0), proof(5, T0)]), &mut rejected);
    assert_eq!((summary.accepted, summary.duplicates, summary.rejected), (1, 1, 0));
    let summary = s.handle_publish(NOW, Origin::Peer(2), &batch(&[proof(5, T0)]), &mut rejected);
    assert_eq!((summary.accepted, summary.duplicates, summary.last_seq), (0, 1, None));
    assert!(rejected.is_empty());
    assert_eq!(drain(&mut s).len(), 1, "one delivery for one accepted proof");
    assert_eq!(s.log().len(), 1);
    assert_eq!(s.counters().duplicates, 2);
    // Only the accepted copy was gossiped.
    assert_eq!(s.poll_gossip(1).map(|b| b.len()), Some(1));
    assert!(s.poll_gossip(1).is_none());
    // Same commit in the next window is a different (commit, window): accepted.
    let summary = s.handle_publish(T0 + 15, Origin::Client, &batch(&[proof(5, T0 + 10)]), &mut rejected);
    assert_eq!(summary.accepted, 1);
    assert_eq!(s.dedup_entries(), 2);
    // Once T0 is no longer acceptable, a tick forgets it; T0 + 10 is still live.
    s.handle_tick(T0 + 22);
    assert_eq!(s.dedup_entries(), 1);
    let summary = s.handle_publish(T0 + 22, Origin::Client, &batch(&[proof(5, T0)]), &mut rejected);
    assert_eq!(rejected, vec![(0, Rejection::WindowStale)]);
    assert_eq!(summary.duplicates, 0);
    s.handle_tick(T0 + 40);
    assert_eq!(s.dedup_entries(), 0);
}

#[test]
fn subscribe_replaces_all_entries_and_unsubscribe_removes_them() {
    let mut s = shard();
    let mut rejected = Vec::new();
    assert_eq!(s.handle_subscribe(NOW, sub(1), &[entry_for(1, T0, T0, T0 + 50), entry_for(2, T0, T0, T0 + 50)]), Ok(2));
    assert_eq!(s.counters().entries, 2);
    // Replace with a filter for commit 3 only: 1 and 2 no longer match.
    assert_eq!(s.handle_subscribe(NOW, sub(1), &[entry_for(3, T0, T0, T0 + 50)]), Ok(1));
    assert_eq!((s.counters().entries, s.counters().subscribers), (1, 1));
    s.handle_publish(NOW, Origin::Client, &batch(&[proof(1, T0), proof(2, T0), proof(3, T0)]), &mut rejected);
    let d = drain(&mut s);
    assert_eq!(d.len(), 1);
    assert_eq!(&d[0].1[12..44], &commit(3));
    // An empty SUBSCRIBE removes everything.
    assert_eq!(s.handle_subscribe(NOW, sub(1), &[]), Ok(0));
    assert_eq!((s.counters().entries, s.counters().subscribers), (0, 0));
    assert!(!s.handle_unsubscribe(sub(1)));
    s.handle_subscribe(NOW, sub(1), &[entry_for(4, T0, T0, T0 + 50)]).unwrap();
    assert!(s.handle_unsubscribe(sub(1)));
    assert!(!s.handle_unsubscribe(sub(1)));
    s.handle_publish(NOW, Origin::Client, &batch(&[proof(4, T0)]), &mut rejected);
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.counters().entries, 0);
}

#[test]
fn a_failed_subscribe_changes_nothing() {
    let mut s = shard();
    s.handle_subscribe(NOW, sub(1), &[entry_for(1, T0, T0, T0 + 50)]).unwrap();
    let bad = [entry_for(2, T0, T0, T0 + 50), entry(3, T0 + 1, T0 + 50, filter_for(&[2], T0))];
    assert_eq!(s.handle_subscribe(NOW, sub(1), &bad), Err(SubscribeError::RangeMisaligned));
    assert_eq!(s.counters().subscribes_rejected, 1);
    let mut rejected = Vec::new();
    s.handle_publish(NOW, Origin::Client, &batch(&[proof(1, T0)]), &mut rejected);
    assert_eq!(drain(&mut s).len(), 1, "the old entry is still registered");
}

#[test]
fn subscribe_errors_each_have_their_reason() {
    let mut config = EngineConfig::for_shard(1, 2, 64); // owns 32..64
    config.subscribers_max = 1;
    config.filters_per_bucket_max = 2;
    let mut s = Shard::new(config, MemoryLog::new(4));
    let f = || filter_for(&[1], T0);
    let horizon = T0 + 360 * 10;
    let cases = [
        (vec![entry(64, T0, T0, f())], SubscribeError::BucketOutOfRange { bucket: 64 }),
        (vec![entry(3, T0, T0, f())], SubscribeError::BucketNotOwned { bucket: 3 }),
        (
            vec![entry(40, T0, T0, f()), entry(40, T0, T0, f()), entry(40, T0, T0, f())],
            SubscribeError::TooManyFilters { bucket: 40 },
        ),
        (
            vec![entry(40, T0, T0, BloomFilter::new(BloomParams::new(512, 3).unwrap()))],
            SubscribeError::FilterParams { bucket: 40 },
        ),
        (vec![entry(40, T0, T0 + 5, f())], SubscribeError::RangeMisaligned),
        (vec![entry(40, T0 + 10, T0, f())], SubscribeError::RangeInverted),
        (vec![entry(40, T0 - 100, T0 - 20, f())], SubscribeError::RangeInPast),
        (vec![entry(40, T0, horizon + 10, f())], SubscribeError::RangeTooFarAhead),
    ];
    for (entries, expected) in cases {
        assert_eq!(s.handle_subscribe(NOW, sub(1), &entries), Err(expected));
    }
    // Boundaries are accepted: previous window and the last window ahead; two filters in one bucket.
    assert_eq!(
        s.handle_subscribe(NOW, sub(1), &[entry(40, T0 - 10, T0 - 10, f()), entry(40, T0, horizon, f())]),
        Ok(2)
    );
    assert_eq!(s.handle_subscribe(NOW, sub(2), &[entry(40, T0, T0, f())]), Err(SubscribeError::TooManySubscribers));
    assert_eq!(SubscribeError::TooManySubscribers.error_code(), tessera::proto::ErrorCode::TOO_MANY_SUBSCRIBERS);
    assert_eq!(SubscribeError::RangeInPast.error_code(), tessera::proto::ErrorCode::SUBSCRIPTION_RANGE);
    assert_eq!(s.counters().subscribes_rejected, 9);
}

#[test]
fn entries_match_only_within_their_window_range_and_expire() {
    let mut s = shard();
    let mut rejected = Vec::new();
    let n = 9;
    // Registered ahead: covers windows T0+10 .. T0+20 only.
    let mut f = filter_for(&[n], T0);
    f.insert_fingerprint(&fingerprint(&commit(n), T0 + 10));
    f.insert_fingerprint(&fingerprint(&commit(n), T0 + 30));
    let bucket = bucket_of(&commit(n), 64);
    s.handle_subscribe(NOW, sub(1), &[entry(bucket, T0 + 10, T0 + 20, f)]).unwrap();
    s.handle_publish(NOW, Origin::Client, &batch(&[proof(n, T0)]), &mut rejected);
    assert!(drain(&mut s).is_empty(), "window T0 is before the range");
    s.handle_publish(T0 + 15, Origin::Client, &batch(&[proof(n, T0 + 10)]), &mut rejected);
    assert_eq!(drain(&mut s).len(), 1);
    // At T0+35 window T0+20 is still the previous window: the entry stays.
    s.handle_tick(T0 + 35);
    assert_eq!(s.counters().entries, 1);
    // At T0+45 no window of the range is accepted any more: the tick expires the entry.
    s.handle_tick(T0 + 45);
    assert_eq!((s.counters().entries, s.counters().subscribers, s.counters().entries_expired), (0, 0, 1));
    s.handle_publish(T0 + 45, Origin::Client, &batch(&[proof(n, T0 + 30)]), &mut rejected);
    assert!(drain(&mut s).is_empty());
    assert!(rejected.is_empty());
}

#[test]
fn one_delivery_per_subscriber_even_with_several_matching_filters() {
    let mut s = shard();
    let mut rejected = Vec::new();
    let e = entry_for(4, T0, T0, T0 + 10);
    s.handle_subscribe(NOW, sub(1), &[e.clone(), e.clone()]).unwrap();
    s.handle_subscribe(NOW, sub(2), &[e]).unwrap();
    s.handle_publish(NOW, Origin::Client, &batch(&[proof(4, T0)]), &mut rejected);
    let mut who: Vec<SubscriberKey> = drain(&mut s).into_iter().map(|d| d.0).collect();
    who.sort();
    assert_eq!(who, vec![sub(1), sub(2)]);
    assert_eq!(s.counters().deliveries, 2);
}

#[test]
fn gossip_floods_every_peer_except_the_origin_within_bounds() {
    let mut config = EngineConfig::single_shard();
    config.gossip_queue_proofs_max = 4;
    let mut s = Shard::new(config, MemoryLog::new(64));
    for p in [1, 2, 3] {
        s.add_peer(p);
    }
    let mut rejected = Vec::new();
    let b = batch(&[proof(1, T0), proof(2, T0), proof(3, T0)]);
    s.handle_publish(NOW, Origin::Peer(2), &b, &mut rejected);
    assert_eq!((s.gossip_queued(1), s.gossip_queued(2), s.gossip_queued(3)), (3, 0, 3));
    let g = s.poll_gossip(1).unwrap();
    assert_eq!(g, b);
    assert_eq!(g.as_bytes().as_ptr(), b.as_bytes().as_ptr(), "gossip is zero-copy");
    assert!(s.poll_gossip(2).is_none());
    // A rejected proof in the middle splits the run; Cover proofs are gossiped like client ones.
    let mut bad = *proof(5, T0).as_bytes();
    bad[44] ^= 1;
    let b2 = batch(&[proof(4, T0), Proof::from_slice(&bad).unwrap(), proof(6, T0)]);
    s.handle_publish(NOW, Origin::Cover, &b2, &mut rejected);
    assert_eq!(s.poll_gossip(2).unwrap().len(), 1);
    assert_eq!(s.poll_gossip(2).unwrap().get(0).commit(), &commit(6));
    // Peer 3 had 3 queued, bound 4: one more fits, one is dropped.
    assert_eq!(s.gossip_queued(3), 4);
    assert_eq!(s.counters().gossip_dropped, 1);
    assert_eq!(s.counters().gossip_queued, 3 + 3 + 2 + 2 + 1);
    s.remove_peer(3);
    assert!(s.poll_gossip(3).is_none());
    assert_eq!(s.counters().peers, 2);
}

#[test]
fn clock_never_steps_back() {
    let mut s = shard();
    let mut rejected = Vec::new();
    s.handle_tick(T0 + 100);
    // A stale `now` is ignored: the window T0 stays expired.
    s.handle_publish(NOW, Origin::Client, &batch(&[proof(1, T0)]), &mut rejected);
    assert_eq!(rejected, vec![(0, Rejection::WindowStale)]);
}

#[test]
fn batches_larger_than_a_chunk_keep_order_and_dedup_across_chunks() {
    let mut s = shard();
    s.add_peer(1);
    s.handle_subscribe(NOW, sub(1), &[entry_for(70, T0, T0, T0 + 10)]).unwrap();
    let mut proofs: Vec<Proof> = (0..150).map(|n| proof(n, T0)).collect();
    proofs[100] = proof(10, T0); // duplicate of index 10, in a later chunk
    let mut bad = *proofs[64].as_bytes();
    bad[44] ^= 0xFF;
    proofs[64] = Proof::from_slice(&bad).unwrap(); // first proof of the second chunk
    proofs[63] = proof(63, T0 + 40); // last proof of the first chunk
    let b = batch(&proofs);
    let mut rejected = Vec::new();
    let summary = s.handle_publish(NOW, Origin::Client, &b, &mut rejected);
    assert_eq!((summary.accepted, summary.duplicates, summary.rejected), (147, 1, 2));
    assert_eq!(rejected, vec![(63, Rejection::WindowFuture), (64, Rejection::BadFingerprint)]);
    assert_eq!(summary.last_seq, Some(RecordSeq(146)));
    // Log order is batch order minus the refused and duplicate proofs.
    assert_eq!(s.log().get(RecordSeq(63)).unwrap().0.commit(), &commit(65));
    let d = drain(&mut s);
    assert!(d.iter().any(|(who, p, _)| *who == sub(1) && p[12..44] == commit(70)));
    // Gossip runs split at 63..65 and at 100: [0, 63), [65, 100), [101, 150).
    let runs: Vec<usize> = std::iter::from_fn(|| s.poll_gossip(1)).map(|g| g.len()).collect();
    assert_eq!(runs, vec![63, 35, 49]);
}

#[test]
fn a_saturated_filter_is_refused_and_one_of_the_most_fingerprints_is_not() {
    let mut s = shard();
    let bucket = bucket_of(&commit(7), 64);
    let all_ones = BloomFilter::from_bytes(BloomParams::default(), &[0xFF; 128]).unwrap();
    assert_eq!(
        s.handle_subscribe(NOW, sub(1), &[entry(bucket, T0, T0 + 100, all_ones)]),
        Err(SubscribeError::FilterSaturated { bucket, ones: 1024, max: 180 })
    );
    let ns: Vec<u32> = (0..u32::from(tessera::proto::FILTER_FINGERPRINTS_MAX)).collect();
    assert_eq!(s.handle_subscribe(NOW, sub(1), &[entry(bucket, T0, T0 + 100, filter_for(&ns, T0))]), Ok(1));
}

#[test]
fn matches_over_the_per_proof_and_per_second_bounds_are_queued_but_not_pushed() {
    let mut config = EngineConfig::single_shard();
    config.deliveries_per_proof_max = 3;
    config.deliveries_per_second_max = 5;
    let mut s = Shard::new(config, MemoryLog::new(1024));
    for n in 0..4 {
        s.handle_subscribe(NOW, sub(n), &[entry_for(7, T0, T0, T0 + 100), entry_for(8, T0, T0, T0 + 100)]).unwrap();
    }
    let pushed = |s: &mut Shard<MemoryLog>| -> (usize, usize) {
        let d: Vec<_> = std::iter::from_fn(|| s.poll_delivery()).collect();
        (d.len(), d.iter().filter(|d| d.push).count())
    };
    let mut rejected = Vec::new();
    // Proof 7 matches 4 subscribers: 3 pushed (per proof), all 4 queued (the server records each for FETCH).
    s.handle_publish(NOW, Origin::Client, &batch(&[proof(7, T0)]), &mut rejected);
    assert_eq!(pushed(&mut s), (4, 3));
    // Proof 8 in the same second: 2 left of the 5 per second.
    s.handle_publish(NOW, Origin::Client, &batch(&[proof(8, T0)]), &mut rejected);
    assert_eq!(pushed(&mut s), (4, 2));
    assert_eq!((s.counters().deliveries, s.counters().deliveries_unpushed), (8, 3));
    // The next second has a fresh budget.
    s.handle_publish(NOW + 1, Origin::Client, &batch(&[proof(7, T0 + 10)]), &mut rejected);
    assert_eq!(pushed(&mut s), (0, 0), "a filter for window T0 does not match window T0 + 10");
    s.handle_subscribe(NOW + 1, sub(9), &[entry_for(9, T0, T0, T0 + 100)]).unwrap();
    s.handle_publish(NOW + 1, Origin::Client, &batch(&[proof(9, T0)]), &mut rejected);
    assert_eq!(pushed(&mut s), (1, 1));
}
