//! The relay's shard state machine driven by hand, with no runtime, socket or file: `handle_*` in, `poll_*`
//! out, commit jobs "executed" by reporting them done. Shows the contract server/shard/mod.rs documents:
//! a DELIVER goes out at once, while ACK and SUBSCRIBED wait until the commit that holds their records is
//! durable; a FETCH becomes a read of durable records only.

use std::sync::Arc;

use bytes::Bytes;
use crossbeam::utils::CachePadded;
use tessera::log::format::ShardParams;
use tessera::log::state::LogState;
use tessera::log::LogConfig;
use tessera::proto::frame::{Hello, Publish, Subscribe};
use tessera::proto::{
    bucket_of, encode_message, fingerprint, BloomFilter, BloomParams, Codec, Frame, Limits, Proof, ProofBatch, Role,
    SubscribeEntry, SubscriberKeyPair, CIPHERTEXT_LEN, PROTOCOL_VERSION, WINDOW_SECONDS,
};
use tessera::server::metrics::ShardMetrics;
use tessera::server::msg::ConnId;
use tessera::server::shard::{Clock, FetchPage, ShardServer};
use tessera::server::RelayConfig;

const W: u64 = 1_700_000_000 - 1_700_000_000 % WINDOW_SECONDS;
/// Every connection's CLAIM nonce here (a real driver draws a fresh one per connection).
const NONCE: [u8; 16] = [3; 16];

/// A subscriber key and the CLAIM of it for a connection of `server()` (node id [7; 16]).
fn keyed(n: u8) -> (SubscriberKeyPair, Frame) {
    let key = SubscriberKeyPair::from_secret(&[n; 32]);
    let claim = Frame::Claim(key.claim(&[7; 16], &NONCE, &[0; 32]));
    (key, claim)
}

fn clock(ms: u64) -> Clock {
    Clock { unix_s: W + 5, mono_us: ms * 1000 }
}

fn server() -> ShardServer {
    let mut config = RelayConfig::defaults(1);
    config.shards = 1;
    let metrics: Arc<[CachePadded<ShardMetrics>]> = vec![CachePadded::new(ShardMetrics::default())].into();
    let params = ShardParams::for_shard(0, 1, config.num_buckets, config.window_s as u32);
    let log = LogState::new(LogConfig::new(params)).expect("a fresh log state");
    ShardServer::new(0, &config, [7; 16], [1, 2], metrics, log)
}

fn proof(n: u8) -> Proof {
    let commit = [n; 32];
    Proof::new(bucket_of(&commit, 64), W, &commit, &fingerprint(&commit, W), &[n; CIPHERTEXT_LEN])
}

/// Everything queued for `conn`, decoded.
fn frames(s: &mut ShardServer, conn: ConnId) -> Vec<Frame> {
    let codec = Codec::new(Limits::default(), BloomParams::default());
    std::iter::from_fn(|| s.poll_message(conn, clock(0)))
        .flat_map(|msg| codec.decode_message(&msg).expect("the relay sends valid frames"))
        .collect()
}

/// One shard has no cross-shard traffic: every drain step finds those queues empty.
fn drain(s: &mut ShardServer) -> Vec<ConnId> {
    assert!(s.poll_request().is_none() && s.poll_response().is_none(), "a single shard sends nothing across");
    std::iter::from_fn(|| s.poll_wakeup()).collect()
}

/// Runs every commit job the log hands out, as a driver would after its writes and fdatasyncs succeed.
fn commit_all(s: &mut ShardServer, at_ms: u64) -> usize {
    let mut jobs = 0;
    while let Some(job) = s.poll_commit_job(W + 5, at_ms * 1000) {
        s.handle_commit_written(job.id);
        s.handle_commit_done(job.id, job.bytes(), clock(at_ms));
        jobs += 1;
    }
    jobs
}

#[test]
fn replies_wait_for_durability_and_deliveries_do_not() {
    let mut s = server();
    let conn = s.handle_conn_open(clock(0), NONCE);
    let hello = Frame::Hello(Hello { version: PROTOCOL_VERSION, role: Role::Client, node_id: [0; 16] });
    s.handle_message(conn, &encode_message(&[hello]), clock(1));
    assert_eq!(drain(&mut s), vec![conn]);
    assert!(matches!(frames(&mut s, conn)[..], [Frame::HelloReply(_)]));

    // SUBSCRIBE: applied at once, answered only once its journal record is durable.
    let p = proof(9);
    let mut filter = BloomFilter::new(BloomParams::default());
    filter.insert_fingerprint(p.view().fingerprint());
    let entry = SubscribeEntry { bucket: p.view().bucket(), window_from_s: W, window_to_s: W + 600, filter };
    let (key, claim) = keyed(5);
    let wire = key.id();
    let subscribe = Frame::Subscribe(Subscribe { subscriber: wire, entries: vec![entry] });
    s.handle_message(conn, &encode_message(&[claim, subscribe]), clock(2));
    drain(&mut s);
    assert!(!s.poll_late_work(), "nothing retained yet: no late scan");
    assert!(frames(&mut s, conn).is_empty(), "SUBSCRIBED waits for the commit");
    assert!(s.poll_commit_kick(), "somebody waits: the committer must decide again");
    assert!(commit_all(&mut s, 3) > 0);
    assert_eq!(drain(&mut s), vec![conn]);
    assert!(matches!(&frames(&mut s, conn)[..], [Frame::Subscribed { subscriber, entries: 1 }] if *subscriber == wire));

    // PUBLISH of a matching proof: DELIVER at once, ACK after the commit.
    let batch = ProofBatch::from_proofs([p.view()]);
    let publish = Frame::Publish(Publish { seq: 1, proofs: batch });
    s.handle_message(conn, &encode_message(&[publish]), clock(4));
    drain(&mut s);
    let got = frames(&mut s, conn);
    assert!(matches!(&got[..], [Frame::Deliver { .. }]), "only the DELIVER before durability: {got:?}");
    assert_eq!(s.held_replies(), 1);
    assert!(commit_all(&mut s, 5) > 0);
    drain(&mut s);
    assert_eq!(frames(&mut s, conn), vec![Frame::Ack { seq: 1 }]);
    assert_eq!(s.held_replies(), 0);

    // FETCH: the server asks its driver to read one durable record; the page it read becomes FETCH_REPLY.
    let fetch = Frame::Fetch { subscriber: wire, cursor: 0, proofs_max: 16 };
    s.handle_message(conn, &encode_message(&[fetch]), clock(6));
    let read = s.poll_fetch_read().expect("a page to read");
    assert_eq!(read.reads.len(), 1, "the one matched, durable record");
    assert!(s.poll_fetch_read().is_none());
    let proofs = vec![Bytes::copy_from_slice(p.as_bytes())];
    s.handle_fetch_read(read, Some(FetchPage { proofs, skipped: 0 }), clock(7));
    drain(&mut s);
    match &frames(&mut s, conn)[..] {
        [Frame::FetchReply { subscriber, next_cursor, more: false, proofs }] => {
            assert_eq!((*subscriber, proofs.len()), (wire, 1));
            assert_ne!(*next_cursor, 0, "the reply hands out the FETCH's token as the next cursor");
        }
        other => panic!("expected one FETCH_REPLY, got {other:?}"),
    }
}

#[test]
fn a_failed_commit_never_releases_an_ack() {
    let mut s = server();
    let conn = s.handle_conn_open(clock(0), NONCE);
    let hello = Frame::Hello(Hello { version: PROTOCOL_VERSION, role: Role::Client, node_id: [0; 16] });
    let batch = ProofBatch::from_proofs([proof(3).view()]);
    let publish = Frame::Publish(Publish { seq: 7, proofs: batch });
    s.handle_message(conn, &encode_message(&[hello, publish]), clock(1));
    drain(&mut s);
    frames(&mut s, conn);
    let job = s.poll_commit_job(W + 5, 2_000).expect("the proof is staged");
    s.handle_commit_failed(job.id);
    s.handle_tick(clock(3));
    drain(&mut s);
    assert!(frames(&mut s, conn).is_empty(), "no ACK for a proof whose commit failed");
    assert!(s.log().is_poisoned());
    assert!(s.poll_commit_job(W + 5, 4_000).is_none(), "fail-stop: nothing more is committed");
}

#[test]
fn a_stalled_commit_holds_its_ack_refuses_new_publishes_and_releases_on_retry() {
    use tessera::proto::ErrorCode;
    let mut s = server();
    let conn = s.handle_conn_open(clock(0), NONCE);
    let hello = Frame::Hello(Hello { version: PROTOCOL_VERSION, role: Role::Client, node_id: [0; 16] });
    let publish = |seq, n| Frame::Publish(Publish { seq, proofs: ProofBatch::from_proofs([proof(n).view()]) });
    s.handle_message(conn, &encode_message(&[hello, publish(7, 3)]), clock(1));
    drain(&mut s);
    frames(&mut s, conn);
    // The commit of seq 7 finds the disk full: parked, its ACK held.
    let job = s.poll_commit_job(W + 5, 2_000).expect("the proof is staged");
    s.handle_commit_stalled(job.id, clock(2));
    assert!(s.is_storage_stalled() && s.can_accept(1_024), "a stalled shard takes PUBLISH at once, to refuse it");
    // A new PUBLISH is refused at once: one ERROR(STORAGE) with the retry hint, nothing staged.
    let staged = s.log().counters().records_appended;
    s.handle_message(conn, &encode_message(&[publish(8, 4)]), clock(3));
    drain(&mut s);
    match &frames(&mut s, conn)[..] {
        [Frame::Error(e)] => assert_eq!((e.code, e.ref_seq, e.detail), (ErrorCode::STORAGE, 8, 1_000)),
        other => panic!("expected one ERROR(STORAGE), got {other:?}"),
    }
    assert_eq!(s.log().counters().records_appended, staged, "a refused proof is not appended (nor deduplicated)");
    s.handle_cover(&ProofBatch::from_proofs([proof(5).view()]), clock(3));
    assert_eq!(s.log().counters().records_appended, staged, "cover traffic pauses");
    assert_eq!(s.metrics()[0].cover_skipped_storage.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(s.poll_commit_job(W + 5, 4_000).is_none(), "no new commit while stalled");
    assert_eq!(s.poll_commit_retry(2_000 + 99_999), None, "the first retry is 100 ms after the failure");
    // Still full at the first retry; room at the second (200 ms later): the ACK covers 7 and the refused 8.
    assert_eq!(s.poll_commit_retry(2_000 + 100_000), Some(job.id));
    s.handle_commit_stalled(job.id, clock(102));
    assert_eq!(s.poll_commit_retry(102_000 + 199_999), None);
    assert_eq!(s.poll_commit_retry(102_000 + 200_000), Some(job.id));
    s.handle_commit_written(job.id);
    s.handle_commit_done(job.id, job.bytes(), clock(302));
    drain(&mut s);
    assert_eq!(frames(&mut s, conn), vec![Frame::Ack { seq: 8 }]);
    assert!(!s.is_storage_stalled() && !s.log().is_poisoned());
    // Accepted again.
    s.handle_message(conn, &encode_message(&[publish(9, 4)]), clock(303));
    drain(&mut s);
    commit_all(&mut s, 304);
    drain(&mut s);
    assert_eq!(frames(&mut s, conn), vec![Frame::Ack { seq: 9 }]);
}

#[test]
fn a_late_subscribe_is_matched_against_retained_proofs() {
    let mut s = server();
    // Alice publishes before anyone subscribed: the proof is stored, nobody matches it.
    let alice = s.handle_conn_open(clock(0), NONCE);
    let hello = Frame::Hello(Hello { version: PROTOCOL_VERSION, role: Role::Client, node_id: [0; 16] });
    let p = proof(42);
    let publish = Frame::Publish(Publish { seq: 1, proofs: ProofBatch::from_proofs([p.view()]) });
    s.handle_message(alice, &encode_message(&[hello.clone(), publish]), clock(1));
    drain(&mut s);
    commit_all(&mut s, 2);
    drain(&mut s);
    assert!(frames(&mut s, alice).contains(&Frame::Ack { seq: 1 }));

    // Bob subscribes afterwards, with a range that starts in the past.
    let bob = s.handle_conn_open(clock(3), NONCE);
    let mut filter = BloomFilter::new(BloomParams::default());
    filter.insert_fingerprint(p.view().fingerprint());
    let entry = SubscribeEntry { bucket: p.view().bucket(), window_from_s: W - 60, window_to_s: W + 600, filter };
    let (key, claim) = keyed(6);
    let wire = key.id();
    let subscribe = Frame::Subscribe(Subscribe { subscriber: wire, entries: vec![entry.clone()] });
    s.handle_message(bob, &encode_message(&[hello, claim, subscribe.clone()]), clock(4));
    drain(&mut s);
    frames(&mut s, bob); // HELLO_REPLY
    assert!(s.poll_late_work(), "the SUBSCRIBE reaches back before it was applied");
    while s.poll_late_work() {
        s.handle_late_match(clock(5));
        drain(&mut s);
    }
    // The late match is recorded; SUBSCRIBED waits for its commit; the connected subscriber gets a DELIVER read.
    let read = s.poll_fetch_read().expect("a read of the late match, to deliver it");
    assert_eq!(read.reads.len(), 1);
    s.handle_fetch_read(
        read,
        Some(FetchPage { proofs: vec![Bytes::copy_from_slice(p.as_bytes())], skipped: 0 }),
        clock(6),
    );
    drain(&mut s);
    assert!(matches!(&frames(&mut s, bob)[..], [Frame::Deliver { .. }]), "the late match is delivered live");
    commit_all(&mut s, 7);
    drain(&mut s);
    assert!(matches!(&frames(&mut s, bob)[..], [Frame::Subscribed { .. }]));

    // And it is FETCHable like any other match.
    let fetch = Frame::Fetch { subscriber: wire, cursor: 0, proofs_max: 16 };
    s.handle_message(bob, &encode_message(&[fetch]), clock(8));
    let read = s.poll_fetch_read().expect("a FETCH page");
    assert_eq!(read.reads.len(), 1, "the late match is in the mailbox");

    // Renewing the same entry scans nothing: its windows are already subscribed.
    s.handle_fetch_read(
        read,
        Some(FetchPage { proofs: vec![Bytes::copy_from_slice(p.as_bytes())], skipped: 0 }),
        clock(9),
    );
    drain(&mut s);
    s.handle_message(bob, &encode_message(&[subscribe]), clock(10));
    drain(&mut s);
    assert!(!s.poll_late_work(), "a renewal over subscribed windows needs no late scan");

    // A contact added mid-range: the same windows with a filter holding more fingerprints are scanned again,
    // and a proof only the new fingerprints match is found.
    let q =
        (43..=255).map(proof).find(|q| q.view().bucket() == p.view().bucket()).expect("another proof in the bucket");
    let publish = Frame::Publish(Publish { seq: 2, proofs: ProofBatch::from_proofs([q.view()]) });
    s.handle_message(alice, &encode_message(&[publish]), clock(11));
    drain(&mut s);
    commit_all(&mut s, 12);
    drain(&mut s);
    frames(&mut s, alice);
    frames(&mut s, bob);
    let mut grown = entry.filter.clone();
    grown.insert_fingerprint(q.view().fingerprint());
    let entries = vec![SubscribeEntry { filter: grown, ..entry }];
    let subscribe = Frame::Subscribe(Subscribe { subscriber: wire, entries });
    s.handle_message(bob, &encode_message(&[subscribe]), clock(13));
    drain(&mut s);
    assert!(s.poll_late_work(), "a filter with new fingerprints is matched against what was retained");
    while s.poll_late_work() {
        s.handle_late_match(clock(14));
        drain(&mut s);
    }
    let read = s.poll_fetch_read().expect("the new late match, to deliver");
    assert_eq!(read.reads.len(), 1);
}
