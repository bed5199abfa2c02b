//! Issue 13 item 1 against the real binary: SUBSCRIBE filters with more bits set than a legitimate filter can
//! have are refused (ERROR FILTER_SATURATED), the largest filter our own client builds is not, and matches of
//! one proof past the live-delivery bound are still recorded for FETCH (nothing acknowledged is lost).
//!
//! ```text
//! attack:   N connections × 64 subscriber ids × (64 buckets, all-ones filter, [now − 10 s, now + 3,590 s])
//!           ─▶ ERROR(FILTER_SATURATED) for the first 8 (protocol errors), then close 1008; nothing registered,
//!              no match recorded
//! client:   subscription::plan (both modes) over 60 fingerprints with 180 distinct bits ─▶ SUBSCRIBED
//! bound:    1,088 subscribers matching one proof ─▶ 1,024 pushed live, 64 counted unpushed, all FETCHable
//! ```

mod relay_support;

use std::time::Duration;

use relay_support::*;
use tessera::client::subscription::{
    chunk_windows_for, plan, Expectation, PlanParams, SubscribeMode, FINGERPRINTS_PER_FILTER_DEFAULT,
};
use tessera::engine::config::DELIVERIES_PER_PROOF_MAX_DEFAULT;
use tessera::proto::derive::{bucket_of, fingerprint, fingerprint_positions};
use tessera::proto::frame::Subscribe;
use tessera::proto::{BloomParams, ErrorCode, Frame, SubscriberId, FILTER_FINGERPRINTS_MAX};
use tessera::server::conn::PROTOCOL_ERRORS_MAX;

fn sub(conn: u32, n: u32) -> SubscriberId {
    let mut secret = [0u8; 32];
    secret[..4].copy_from_slice(&conn.to_be_bytes());
    secret[4..8].copy_from_slice(&n.to_be_bytes());
    secret[31] = 0x5A;
    subscriber_for(secret)
}

/// Sends every SUBSCRIBE in one message each, then reads one answer per SUBSCRIBE (SUBSCRIBED or ERROR).
fn subscribe_all(client: &mut Client, subscribes: Vec<Subscribe>) -> Vec<Frame> {
    let n = subscribes.len();
    for s in subscribes {
        client.claim(s.subscriber);
        client.send(&[Frame::Subscribe(s)]);
    }
    let mut answers = Vec::new();
    while answers.len() < n {
        answers.extend(client.recv().into_iter().filter(|f| matches!(f, Frame::Subscribed { .. } | Frame::Error(_))));
    }
    answers
}

#[test]
fn the_saturating_subscriber_attack_is_refused_and_costs_nothing_afterwards() {
    // The issue's attack, scaled down: 8 connections (not 100), each trying 64 subscriber ids with one all-ones
    // entry per bucket over [now − 10 s, now + 3,590 s]; the relay closes each after its eighth. Cover traffic
    // runs at ε = 0.5 (~1,700/s).
    const CONNECTIONS: u32 = 8;
    let relay = Relay::start(&[
        "--danger-exact-metrics",
        "--shards",
        "2",
        "--cover-traffic-epsilon",
        "0.5",
        "--cover-round-ms",
        "1000",
    ]);
    let w = current_window();
    for c in 0..CONNECTIONS {
        let (mut client, params) = Client::hello(&relay);
        let to = w + u64::from(params.limits.subscription_windows_ahead_max - 1) * 10;
        let subscribes: Vec<Subscribe> = (0..PROTOCOL_ERRORS_MAX)
            .map(|n| Subscribe {
                subscriber: sub(c, n),
                entries: (0..64).map(|b| match_all_entry(b, w - 10, to)).collect(),
            })
            .collect();
        // One at a time: the relay answers each of the first 8 with FILTER_SATURATED, each a protocol error (a
        // client that follows the spec never builds such a filter), and closes with 1008 after the eighth.
        for s in subscribes {
            let answer = subscribe_all(&mut client, vec![s]).remove(0);
            let Frame::Error(e) = answer else { panic!("a saturated SUBSCRIBE was accepted: {answer:?}") };
            assert_eq!((e.code, e.ref_seq, e.detail), (ErrorCode::FILTER_SATURATED, 0, 0), "{}", e.text);
            assert!(e.text.contains("1024 bits set"), "{}", e.text);
        }
        assert_eq!(client.recv_close(), Some(1008), "closed after the protocol-error budget");
    }
    let refused = u64::from(CONNECTIONS) * u64::from(PROTOCOL_ERRORS_MAX);
    assert_eq!(relay.metric("tessera_filters_saturated_total", ""), refused);
    assert_eq!(relay.metric("tessera_subscribe_rejected_total", ""), refused);
    assert_eq!(relay.metric("tessera_limit_protocol_errors_total", ""), u64::from(CONNECTIONS));
    assert_eq!(relay.metric("tessera_subscribers", ""), 0, "nothing registered");
    // Cover keeps flowing and matches nobody: no delivery, no match record, no mailbox entry.
    let cover_before = relay.metric("tessera_cover_proofs_total", "");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(relay.metric("tessera_cover_proofs_total", "") > cover_before + 500, "cover traffic flowed");
    assert_eq!(relay.metric("tessera_deliveries_offline_total", ""), 0);
    assert_eq!(relay.metric("tessera_log_matches_recorded_total", ""), 0);

    // A healthy pair still works, and the attackers' connections did not cost it anything.
    let commit = commit_in_bucket(17, 1);
    let (mut subscriber, _) = Client::hello(&relay);
    subscriber.subscribe(sub(99, 0), vec![entry(17, w, w + 60, &[commit])]);
    let (mut publisher, _) = Client::hello(&relay);
    let w = current_window();
    let seq = publisher.publish(&[proof(&commit, w, 1)]);
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
    assert_eq!(commits(&subscriber.recv_proofs(sub(99, 0), 1)), [commit].into());
}

/// `n` fingerprints whose `k` Bloom positions are all distinct from each other's: a filter of them has exactly
/// `k · n` bits set, the most `n` fingerprints can set.
fn spread_fingerprints(n: usize, bloom: BloomParams) -> Vec<[u8; 8]> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for i in 0u64.. {
        if out.len() == n {
            break;
        }
        let fp = i.to_be_bytes();
        let positions = fingerprint_positions(&fp, bloom.m_bits, bloom.k);
        let mut mine: Vec<u32> = positions.as_slice().to_vec();
        mine.sort_unstable();
        mine.dedup();
        if mine.len() == bloom.k as usize && mine.iter().all(|p| !seen.contains(p)) {
            seen.extend(mine);
            out.push(fp);
        }
    }
    out
}

#[test]
fn the_largest_filters_our_client_builds_are_accepted() {
    // The client's cap is the relay's: a filter the client plans never holds more than the relay allows.
    assert!(FINGERPRINTS_PER_FILTER_DEFAULT as u32 <= u32::from(FILTER_FINGERPRINTS_MAX));
    let relay = Relay::start(&["--shards", "2"]);
    let (mut client, params) = Client::hello(&relay);
    let bloom = params.bloom;
    let w = current_window();
    let fps = spread_fingerprints(FINGERPRINTS_PER_FILTER_DEFAULT, bloom);
    // Bucket 5 expects 60 fingerprints in the current window, the others nothing.
    let items: Vec<Expectation> =
        fps.iter().map(|&fingerprint| Expectation { bucket: 5, window_start_s: w, fingerprint }).collect();
    let (from, to) = (w, w + 10 * 30);
    let mut planned = 0;
    for (m, mode) in
        [SubscribeMode::EveryBucketPadded, SubscribeMode::DangerMatchingBucketsOnly].into_iter().enumerate()
    {
        let plan_params = PlanParams {
            num_buckets: params.num_buckets,
            window_s: u64::from(params.window_s),
            bloom,
            fingerprints_per_filter_max: FINGERPRINTS_PER_FILTER_DEFAULT,
            chunk_windows: chunk_windows_for(6, params.num_buckets, FINGERPRINTS_PER_FILTER_DEFAULT),
            filters_per_bucket_max: params.limits.filters_per_bucket_max,
            entries_per_subscribe_max: params.limits.entries_per_subscribe_max,
            subscribers_max: params.limits.subscribers_per_connection_max,
            mode,
        };
        let slots = plan(&items, from, to, &plan_params, &[7; 32]).expect("a plan within the relay's limits");
        let fullest = slots.iter().flatten().map(|e| e.filter.count_ones()).max().unwrap();
        assert_eq!(fullest, bloom.filter_bits_max(), "{mode:?}: a filter of 60 spread fingerprints, 180 bits");
        for (i, entries) in slots.into_iter().enumerate() {
            let id = sub(1000 + i as u32, m as u32);
            let n = entries.len() as u16;
            assert_eq!(client.subscribe(id, entries), n, "{mode:?}: accepted whole");
            planned += 1;
        }
    }
    assert!(planned >= 2);
    assert_eq!(relay.metric("tessera_filters_saturated_total", ""), 0);
    // One bit more than the most 60 fingerprints can set is refused, naming the entry.
    let mut over = entry(5, w, w + 10, &[]);
    let mut bits = over.filter.as_bytes().to_vec();
    for j in 0..=bloom.filter_bits_max() as usize {
        bits[j / 8] |= 1 << (j % 8);
    }
    over.filter = tessera::proto::BloomFilter::from_bytes(bloom, &bits).unwrap();
    let fine = entry(6, w, w + 10, &[commit_in_bucket(6, 0)]);
    client.claim(sub(2000, 0));
    client.send(&[Frame::Subscribe(Subscribe { subscriber: sub(2000, 0), entries: vec![fine, over] })]);
    match client.recv_until(|f| matches!(f, Frame::Subscribed { .. } | Frame::Error(_))) {
        Frame::Error(e) => assert_eq!((e.code, e.detail), (ErrorCode::FILTER_SATURATED, 1), "{}", e.text),
        other => panic!("expected FILTER_SATURATED, got {other:?}"),
    }
}

#[test]
fn matches_past_the_live_bound_are_counted_and_still_fetchable() {
    // 17 connections × 64 subscriber ids = 1,088 subscribers whose (legitimate, 3-bit) filters all match one
    // proof: 1,024 get it live, the other 64 are counted and find it by FETCH.
    const CONNECTIONS: u32 = 17;
    let relay = Relay::start(&["--danger-exact-metrics", "--shards", "1", "--danger-disable-cover-traffic"]);
    let commit = commit_in_bucket(23, 7);
    let w = current_window();
    let mut subscribers = Vec::new();
    for c in 0..CONNECTIONS {
        let (mut client, _) = Client::hello(&relay);
        let subscribes: Vec<Subscribe> = (0..64)
            .map(|n| Subscribe { subscriber: sub(c, n), entries: vec![entry(23, w, w + 60, &[commit])] })
            .collect();
        for answer in subscribe_all(&mut client, subscribes) {
            assert!(matches!(answer, Frame::Subscribed { entries: 1, .. }), "{answer:?}");
        }
        subscribers.push(client);
    }
    let (mut publisher, _) = Client::hello(&relay);
    let p = proof(&commit, current_window(), 3);
    assert_eq!(bucket_of(&commit, 64), 23);
    assert_eq!(p.view().fingerprint(), &fingerprint(&commit, p.view().window_start()));
    let seq = publisher.publish(std::slice::from_ref(&p));
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
    let total = u64::from(CONNECTIONS) * 64;
    let bound = u64::from(DELIVERIES_PER_PROOF_MAX_DEFAULT);
    assert_eq!(relay.wait_metric("tessera_deliveries_unpushed_total", "", total - bound), total - bound);
    assert_eq!(relay.metric("tessera_deliveries_queued_total", ""), bound);
    assert_eq!(relay.wait_metric("tessera_log_matches_recorded_total", "", total), total, "every match recorded");
    // Every subscriber, pushed or not, finds the proof by FETCH once it is acknowledged.
    let want = [commit].into();
    for (c, client) in subscribers.iter_mut().enumerate() {
        for n in [0, 31, 63] {
            let (proofs, _) = client.fetch_all(sub(c as u32, n), 0, 16);
            assert_eq!(commits(&proofs), want, "subscriber ({c}, {n})");
        }
    }
}
