//! Durability with the real relay binary: ACKs only after fdatasync, FETCH for a subscriber that was away,
//! cursors and subscriptions across restarts, corruption found at start, and the SIGKILL crash test
//! Cover traffic is on: dummies may match the test filters (as false positives), so results are compared by
//! inclusion of what was published, never by exact equality.
//! (20 cycles here; a longer soak: `TESSERA_CRASH_CYCLES=500 cargo test --release --test relay_durability crash`).

#[allow(dead_code)]
#[path = "support/readback.rs"]
mod readback;
mod relay_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use relay_support::*;
use tessera::proto::derive::fingerprint;
use tessera::proto::{Frame, Proof, SubscriberId};

fn sub(n: u8) -> SubscriberId {
    relay_support::subscriber(n)
}

#[test]
fn a_subscriber_that_was_away_fetches_what_matched_meanwhile() {
    let relay = Relay::start(&["--danger-exact-metrics", "--shards", "2"]);
    let w = current_window();
    let watched = commits_in_bucket(11, 1, 3);
    let (mut subscriber, _) = Client::hello(&relay);
    subscriber.subscribe(sub(1), vec![entry(11, w - 10, w + 600, &watched)]);
    subscriber.close();

    let (mut publisher, _) = Client::hello(&relay);
    let mut proofs: Vec<_> = watched.iter().map(|c| proof(c, w, 1)).collect();
    proofs.extend(commits_in_bucket(12, 2, 50).iter().map(|c| proof(c, w, 2))); // another bucket: no match
    let seq = publisher.publish(&proofs);
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });

    // Back online on a new connection, without subscribing again: FETCH from the start.
    let (mut back, _) = Client::hello(&relay);
    let (fetched, cursor) = back.fetch_all(sub(1), 0, 100);
    let got = commits(&fetched);
    assert!(watched.iter().all(|c| got.contains(c)), "every matched proof is fetched");
    assert!(proofs[3..].iter().all(|p| !got.contains(p.view().commit())), "proofs of another bucket are not");
    // Past the last page, only new matches (cover dummies, as false positives) can appear.
    let (again, _, _) = back.fetch(sub(1), cursor, 100);
    assert!(commits(&again).is_disjoint(&got), "a continued cursor does not repeat what was fetched");
    // An unknown subscriber gets an empty page.
    assert!(back.fetch(sub(9), 0, 10).0.is_empty());
    assert!(relay.wait_metric("tessera_log_fdatasyncs_total", "", 1) >= 1, "the ACK waited for an fdatasync");
}

#[test]
fn the_default_relative_storage_directory_works() {
    let relay = Relay::start_with_default_storage(tempfile::tempdir().unwrap(), &["--shards", "2"]);
    assert!(relay.dir.path().join("tessera-data/shard-001").is_dir());
    let (mut publisher, _) = Client::hello(&relay);
    let w = current_window();
    let seq = publisher.publish(&commits_in_bucket(40, 5, 3).iter().map(|c| proof(c, w, 7)).collect::<Vec<_>>());
    assert_eq!(
        publisher.recv_until(|f| matches!(f, Frame::Ack { .. })),
        Frame::Ack { seq },
        "durable in ./tessera-data"
    );
    assert!(relay.start_line.contains("/tessera-data"), "{}", relay.start_line);
}

#[test]
fn fetch_cursor_and_subscriptions_survive_a_restart() {
    let relay = Relay::start(&["--shards", "2"]);
    let w = current_window();
    let watched = commits_in_bucket(20, 3, 6);
    let (mut subscriber, _) = Client::hello(&relay);
    subscriber.subscribe(sub(2), vec![entry(20, w - 10, w + 600, &watched)]);
    let (mut publisher, _) = Client::hello(&relay);
    let seq = publisher.publish(&watched[..3].iter().map(|c| proof(c, w, 3)).collect::<Vec<_>>());
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
    let (first, cursor) = subscriber.fetch_all(sub(2), 0, 64);
    assert!(watched[..3].iter().all(|c| commits(&first).contains(c)));
    drop((subscriber, publisher));

    // Restart (SIGTERM: a FETCH reply does not wait for its cursor to be durable, so a crash right after it
    // may repeat the page — at least once; the crash test covers SIGKILL) on the same storage: the
    // subscription is restored and still matches; the cursor continues.
    let mut relay = relay;
    assert!(relay.terminate().success());
    let relay = Relay::start_in(relay.into_dir(), &["--shards", "2"]);
    let (mut publisher, _) = Client::hello(&relay);
    let seq = publisher.publish(&watched[3..].iter().map(|c| proof(c, w, 4)).collect::<Vec<_>>());
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
    let (mut subscriber, _) = Client::hello(&relay);
    let (rest, _) = subscriber.fetch_all(sub(2), cursor, 64);
    let rest = commits(&rest);
    assert!(watched[3..].iter().all(|c| rest.contains(c)), "the restored subscription matched after the restart");
    assert!(watched[..3].iter().all(|c| !rest.contains(c)), "the cursor continued after the first pages");
    assert!(relay.metric("tessera_log_recovery_subscribers", "") >= 1);
}

#[test]
fn corruption_in_a_segment_is_found_at_start_and_never_served() {
    let relay = Relay::start(&["--shards", "1", "--danger-disable-cover-traffic"]);
    let w = current_window();
    // More than the log's in-flight window (4,096 records) after the damaged record: damage there is
    // corruption, not a torn write (docs/STORAGE.md §3).
    let watched: Vec<[u8; 32]> = (0..5_000u32)
        .map(|i| tessera::proto::derive::fingerprint(&[7; 32], i.into()).repeat(4).try_into().unwrap())
        .collect();
    let proofs: Vec<Proof> = watched.iter().map(|c| proof(c, w, 5)).collect();
    // Legitimate filters holding every watched proof's fingerprint, over as many subscriber ids as they need.
    let slots = entries_matching(&proofs, w - 10, w + 600);
    let ids: Vec<SubscriberId> = (0..slots.len()).map(|i| sub(30 + i as u8)).collect();
    let (mut subscriber, _) = Client::hello(&relay);
    for (id, entries) in ids.iter().zip(slots) {
        subscriber.subscribe(*id, entries);
    }
    let (mut publisher, _) = Client::hello(&relay);
    for chunk in proofs.chunks(1000) {
        let seq = publisher.publish(chunk);
        assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { seq: s } if *s == seq)), Frame::Ack { seq });
    }
    drop((subscriber, publisher));
    let dir = relay.into_dir();
    // Flip one byte inside the third proof record (after the 4 KiB header; 7 records of 584 B per block).
    let segment = dir.path().join("shard-000/seg-0000000000000000.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[4096 + 2 * 584 + 100] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();

    let relay = Relay::start_in(dir, &["--shards", "1", "--danger-disable-cover-traffic"]);
    assert_eq!(relay.metric("tessera_log_recovery_corrupt_records", ""), 1, "reported at start");
    let (mut subscriber, _) = Client::hello(&relay);
    let got: HashSet<[u8; 32]> = ids.iter().flat_map(|id| commits(&subscriber.fetch_all(*id, 0, 1024).0)).collect();
    assert_eq!(got.len(), watched.len() - 1, "the corrupt record is skipped, every other one served");
    assert!(!got.contains(&watched[2]));
}

/// xorshift64*: reproducible kill timings from a printed seed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Commits watched by the crash test's subscriber: 40 per bucket (4 filters of 10 commits × 6 windows).
const WATCHED_PER_BUCKET: usize = 40;
/// Windows from the test's first whose fingerprints the watched filters hold (a minute: the test takes seconds).
const WATCHED_WINDOWS: u64 = 6;

#[test]
fn crash_test_no_acknowledged_proof_is_lost_across_sigkills() {
    let cycles: u32 = std::env::var("TESSERA_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("crash test: {cycles} cycles, seed {seed}");
    let mut relay = Relay::start(&["--shards", "2"]);
    let w = current_window();
    // One subscriber, for the whole test, whose legitimate filters hold watched commits in every bucket for the
    // test's first windows; every batch carries one of them, so every acknowledged batch has a match record
    // that must survive with its proof (FETCH below). Every other acknowledged proof is checked in the log.
    let watched: Vec<[u8; 32]> = (0..64).flat_map(|b| commits_in_bucket(b, seed as u32, WATCHED_PER_BUCKET)).collect();
    let windows: Vec<u64> = (0..WATCHED_WINDOWS).map(|i| w + i * 10).collect();
    let entries: Vec<_> = watched
        .chunks(WATCHED_PER_BUCKET / 4)
        .map(|group| {
            let mut filter = tessera::proto::BloomFilter::new(tessera::proto::BloomParams::default());
            for c in group {
                windows.iter().for_each(|&window| filter.insert_fingerprint(&fingerprint(c, window)));
            }
            let bucket = tessera::proto::bucket_of(&group[0], 64);
            tessera::proto::SubscribeEntry { bucket, window_from_s: w - 10, window_to_s: w + 3000, filter }
        })
        .collect();
    let (mut subscriber, _) = Client::hello(&relay);
    subscriber.subscribe(sub(4), entries);
    drop(subscriber);

    let mut acknowledged: HashSet<[u8; 32]> = HashSet::new();
    let mut acknowledged_watched: HashSet<[u8; 32]> = HashSet::new();
    let mut next_watched = 0;
    let mut counter = 0u64;
    for cycle in 0..cycles {
        let (mut publisher, _) = Client::hello(&relay);
        let pid = relay.pid();
        let delay_ms = 30 + next_random(&mut seed) % 400;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(delay_ms));
            // SAFETY: signalling the relay child process started by this test.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
        // Publish under load until the relay dies; count a batch only once its ACK arrives.
        let deadline = Instant::now() + Duration::from_secs(10);
        'publish: while Instant::now() < deadline {
            let mut batch: Vec<[u8; 32]> = (0..64)
                .map(|_| {
                    counter += 1;
                    let mut c = [0u8; 32];
                    c[..8].copy_from_slice(&counter.to_be_bytes());
                    c[8..16].copy_from_slice(&seed.to_be_bytes());
                    c
                })
                .collect();
            let window = current_window();
            // Bucket-major order: consecutive batches watch different buckets' commits in turn.
            let watched_now = (windows.contains(&window) && next_watched < watched.len()).then(|| {
                let i = next_watched % 64 * WATCHED_PER_BUCKET + next_watched / 64;
                next_watched += 1;
                watched[i]
            });
            batch.extend(watched_now);
            let proofs: Vec<_> = batch.iter().map(|c| proof(c, window, 6)).collect();
            if !publisher.try_publish(&proofs) {
                break;
            }
            loop {
                match publisher.try_recv_frames() {
                    None => break 'publish,
                    Some(frames) if frames.iter().any(|f| matches!(f, Frame::Ack { .. })) => break,
                    Some(_) => {}
                }
            }
            acknowledged.extend(batch);
            acknowledged_watched.extend(watched_now);
        }
        killer.join().unwrap();
        relay.wait_exit();
        relay = Relay::start_in(relay.into_dir(), &["--shards", "2"]);
        eprintln!("cycle {cycle}: {} proofs acknowledged so far", acknowledged.len());
    }
    assert!(acknowledged.len() > 100, "the test must actually publish under load");
    eprintln!("{} watched proofs acknowledged (one per batch)", acknowledged_watched.len());
    assert!(!acknowledged_watched.is_empty(), "watched proofs were acknowledged");
    let (mut subscriber, _) = Client::hello(&relay);
    let (fetched, _) = subscriber.fetch_all(sub(4), 0, 1024);
    let fetched = commits(&fetched);
    let lost: Vec<_> = acknowledged_watched.difference(&fetched).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged matches lost (seed {seed})",
        lost.len(),
        acknowledged_watched.len()
    );
    // Every acknowledged proof is in the log the last relay recovered and stopped with.
    assert!(relay.terminate().success());
    let dir = relay.into_dir();
    let mut stored: HashSet<[u8; 32]> = HashSet::new();
    for shard in ["shard-000", "shard-001"] {
        let back = readback::read_back_shard(&dir.path().join(shard)).expect("read the stopped relay's log");
        stored.extend(back.records.iter().map(|r| *r.proof.view().commit()));
    }
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged proofs lost (seed {seed})", lost.len(), acknowledged.len());
}
