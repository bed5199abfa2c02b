//! Disk full, with the real relay binary on a small tmpfs (docs/PROTOCOL.md §Limits "storage full",
//! docs/STORAGE.md §2): a full disk stops acknowledgements — PUBLISH is refused with `ERROR(STORAGE)` and a
//! retry hint, the batch whose commit hit ENOSPC stays pending — while FETCH keeps answering with what is
//! durable and the process stays up; when space returns, every pending PUBLISH is acknowledged and fetchable.
//! A restart on a disk full of expired data deletes it before the first append instead of crash-looping.
//!
//! The tests mount a tmpfs (they run as root here and in CI); where `mount` is refused they say why and skip.
//! The mount is undone by a guard, also when an assertion fails.

mod relay_support;
#[path = "support/tmpfs.rs"]
mod tmpfs;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use relay_support::*;
use tessera::proto::{ErrorCode, Frame, Proof, SubscriberId, WINDOW_SECONDS};
use tmpfs::{fill, tmpfs_or_skip};

fn sub(n: u8) -> SubscriberId {
    relay_support::subscriber(n)
}

/// `n` proofs with distinct commits (any bucket) in window `w`, unique to `salt`.
fn noise(salt: u32, n: usize, w: u64) -> Vec<Proof> {
    (0..n as u32)
        .map(|i| {
            let mut commit = [0x5Au8; 32];
            commit[..4].copy_from_slice(&salt.to_be_bytes());
            commit[4..8].copy_from_slice(&i.to_be_bytes());
            proof(&commit, w, 3)
        })
        .collect()
}

/// Frames received within `timeout` (several messages), stopping at the first that `stop` accepts.
fn frames_until(client: &mut Client, timeout: Duration, stop: impl Fn(&Frame) -> bool) -> Vec<Frame> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(frames) = client.recv_within(left.max(Duration::from_millis(1))) else { break };
        let done = frames.iter().any(&stop);
        got.extend(frames);
        if done {
            break;
        }
    }
    got
}

/// The ACK or ERROR answering the PUBLISH just sent, or `None` once the relay reports a stall and no answer
/// came (its commit is parked). Judged on the stall gauge, not on a delay: a slow commit is not a stall.
fn reply_or_stall(client: &mut Client, relay: &Relay) -> Option<Frame> {
    let is_reply = |f: &Frame| matches!(f, Frame::Ack { .. } | Frame::Error(_));
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(reply) = frames_until(client, Duration::from_millis(200), is_reply).into_iter().find(is_reply) {
            return Some(reply);
        }
        if relay.metric("tessera_log_storage_stalled", "") == 1 {
            // A reply already on its way (the stall began just after this PUBLISH was settled) still counts.
            return frames_until(client, Duration::from_millis(500), is_reply).into_iter().find(is_reply);
        }
    }
    panic!("neither a reply nor a stall within {WAIT:?}");
}

#[test]
fn a_full_disk_stops_acks_keeps_fetch_answering_and_resumes_when_space_returns() {
    let Some(fs) = tmpfs_or_skip(16) else { return };
    let storage = fs.path().join("data");
    let filler = fs.path().join("filler");
    let mut relay = Relay::start_at(&storage, &["--danger-exact-metrics", "--shards", "1"]);
    let w = current_window();
    // One watched proof per batch below, all in bucket 7, subscribed for the next minute.
    let watched = commits_in_bucket(7, 1, 16);
    let (mut subscriber, _) = Client::hello(&relay);
    subscriber.subscribe(sub(1), vec![entry(7, w, w + 6 * WINDOW_SECONDS, &watched)]);
    let (mut publisher, _) = Client::hello(&relay);
    let seq = publisher.publish(&[proof(&watched[0], current_window(), 1)]);
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });

    let filled = fill(&filler);
    assert!(filled > 1 << 20, "the filler took the free space ({filled} B)");

    // 1,024-proof batches until one is not acknowledged: the segment's preallocated 4 MiB (7,168 records) runs
    // out and its next fallocate fails with ENOSPC.
    let mut acked = vec![0usize];
    let mut pending = None; // (seq, watched index) of the batch whose commit stalled
    let mut refused = None;
    for (k, commit) in watched.iter().enumerate().skip(1).take(12) {
        let w = current_window();
        let mut batch = vec![proof(commit, w, 2)];
        batch.extend(noise(k as u32, 1023, w));
        let seq = publisher.publish(&batch);
        match reply_or_stall(&mut publisher, &relay) {
            Some(Frame::Ack { seq: s }) => {
                assert_eq!(s, seq);
                acked.push(k);
            }
            // The stall began with a commit of cover traffic: this batch was refused at once.
            Some(Frame::Error(e)) if e.code == ErrorCode::STORAGE && e.ref_seq == seq => {
                refused = Some((seq, k));
                break;
            }
            Some(other) => panic!("unexpected reply {other:?}"),
            None => {
                pending = Some((seq, k));
                break;
            }
        }
    }
    assert!(pending.is_some() || refused.is_some(), "the disk never filled up (acked batches {acked:?})");
    assert_eq!(relay.exited(), None, "the relay stays up on a full disk");
    assert!(relay.wait_metric("tessera_log_storage_stalled", "", 1) == 1, "the stall is visible in /metrics");

    // Stalled: a PUBLISH is refused at once with ERROR(STORAGE), detail = the retry hint in ms; no ACK.
    let refused = refused.unwrap_or_else(|| {
        let k = pending.expect("pending or refused").1 + 1;
        let seq = publisher.publish(&[proof(&watched[k], current_window(), 4)]);
        let frames = frames_until(&mut publisher, WAIT, |f| matches!(f, Frame::Error(_)));
        assert!(frames.iter().all(|f| !matches!(f, Frame::Ack { .. })), "nothing is acknowledged: {frames:?}");
        match frames.last() {
            Some(Frame::Error(e)) => {
                assert_eq!((e.code, e.ref_seq, e.detail), (ErrorCode::STORAGE, seq, 1_000), "{e:?}");
            }
            other => panic!("expected ERROR(STORAGE), got {other:?}"),
        }
        (seq, k)
    });
    assert!(relay.metric("tessera_storage_refused_proofs_total", "") >= 1);

    // FETCH keeps answering with what is durable; the stalled and the refused batches are not in it.
    let fetched = commits(&subscriber.fetch_all(sub(1), 0, 100).0);
    assert!(acked.iter().all(|&k| fetched.contains(&watched[k])), "every acknowledged proof is fetchable");
    if let Some((_, k)) = pending {
        assert!(!fetched.contains(&watched[k]), "a stalled proof is not served before it is durable");
    }
    assert!(!fetched.contains(&watched[refused.1]), "a refused proof is not stored");
    assert!(relay.http_get("/healthz").ends_with("ok\n"));
    assert_eq!(relay.exited(), None);

    // Space returns: the stalled commit is retried (every second at most), the pending PUBLISH acknowledged —
    // the cumulative ACK also settles the refused one, which its ERROR already answered.
    std::fs::remove_file(&filler).unwrap();
    let last = refused.0;
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq: last });
    assert_eq!(relay.wait_metric_below("tessera_log_storage_stalled", 1), 0, "the stall ended");
    let retry = publisher.publish(&[proof(&watched[refused.1], current_window(), 5)]);
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq: retry });
    let fetched = commits(&subscriber.fetch_all(sub(1), 0, 100).0);
    let mut expected: Vec<usize> = acked.clone();
    expected.extend(pending.map(|p| p.1));
    expected.push(refused.1);
    for k in expected {
        assert!(fetched.contains(&watched[k]), "batch {k}'s watched proof is fetchable after the stall");
    }
    assert!(relay.metric("tessera_log_storage_stalls_total", "") >= 1);
    assert_eq!(relay.exited(), None);
    drop(relay); // before the tmpfs guard unmounts
}

#[test]
fn a_restart_on_a_disk_full_of_expired_data_deletes_it_before_the_first_append() {
    let Some(fs) = tmpfs_or_skip(48) else { return };
    let storage = fs.path().join("data");
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("relay.toml");
    // 1 s windows and a 2 s retention: segments roll every second and expire two seconds after their newest
    // proof, so the test waits seconds, not an hour.
    std::fs::write(&config, "window_s = 1\nclock_skew_s = 0\ncover_round_ms = 1000\ncover_traffic_delta = 1e-6\n")
        .unwrap();
    let args = ["--shards", "1", "--config", config.to_str().unwrap(), "--retention", "2"];

    // A first run leaves several segments (4 MiB preallocated each), then dies.
    let mut relay = Relay::start_at(&storage, &args);
    let (mut publisher, _) = Client::hello(&relay);
    for salt in 0..4 {
        let seq = publisher.publish(&noise(salt, 64, now_s()));
        assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
        std::thread::sleep(Duration::from_millis(1_100));
    }
    relay.kill();
    drop(publisher);
    let segments = segment_files(&storage);
    assert!(segments.len() >= 3, "the first run left several segments: {segments:?}");

    // The disk fills up with something else; the relay's data expires meanwhile.
    let filler = fs.path().join("filler");
    fill(&filler);
    std::thread::sleep(Duration::from_secs(3));

    // Restart on the full disk: retention deletes the expired segments before anything is appended (cover
    // included), so the first commits find room — no ENOSPC, no stall, no exit (the old relay exited here,
    // and a supervisor restarted it into the same failure).
    let mut relay = Relay::start_at(&storage, &args);
    let (mut publisher, _) = Client::hello(&relay);
    let seq = publisher.publish(&noise(100, 64, now_s()));
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
    assert!(relay.metric("tessera_log_segments_deleted_total", "") >= segments.len() as u64 - 1);
    assert_eq!(relay.metric("tessera_log_storage_stalls_total", ""), 0, "the first commit found room");
    assert!(filler.exists());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(relay.exited(), None, "the relay stays up");
    drop(relay);
}

/// The segment files of shard 0.
fn segment_files(storage: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(storage.join("shard-000"))
        .expect("shard dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}
