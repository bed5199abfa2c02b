//! Cover traffic on the wire (docs/FOUNDATIONS.md §4): a relay emits, per bucket per round, dummy counts consistent with
//! the (ε, δ) mechanism; dummies are valid proofs that reach subscribers like real ones; disabling cover is loud;
//! dummies do not force a log commit each.
//!
//! The relay runs with 1 s windows and 1 s rounds aligned on them, so every dummy's `window_start` names its round
//! exactly: the stopped relay's log gives, per (round, bucket), how many dummies it emitted (a filter matching
//! every proof is refused, FILTER_SATURATED); a legitimate subscriber receives some of them as false positives.

#[allow(dead_code)]
#[path = "support/readback.rs"]
mod readback;
mod relay_support;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::time::{Duration, Instant};

use relay_support::*;
use tessera::dp::{check_dummy_counts, CoverMechanism, CHECK_Z_DEFAULT};
use tessera::proto::derive::{bucket_of, fingerprint};
use tessera::proto::{Frame, Proof};

/// Complete rounds to observe: 10 rounds × 64 buckets = 640 counts, what the spread check needs for power.
const ROUNDS: u64 = 10;

#[test]
fn dummy_counts_per_bucket_per_round_follow_the_mechanism() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "window_s = 1\nclock_skew_s = 0\ncover_round_ms = 1000\ncover_traffic_delta = 1e-6\n")
        .unwrap();
    // ε = 0.5: t = 27 dummies per bucket per round (a flag: it overrides the test relays' light default).
    let mut relay = Relay::start(&[
        "--danger-exact-metrics",
        "--shards",
        "2",
        "--config",
        config.to_str().unwrap(),
        "--cover-traffic-epsilon",
        "0.5",
    ]);
    let (mut subscriber, params) = Client::hello(&relay);
    assert_eq!(params.window_s, 1);
    // A legitimate subscriber: 60 fingerprints per filter, 4 filters in every bucket. Dummies reach it as Bloom
    // false positives (~1.7 % per bucket: ~30 a second), exactly as they reach any real subscriber.
    let now = now_s();
    let filler: Vec<Proof> =
        (0..64 * 4 * 60u32).map(|i| proof(&commit_in_bucket((i % 64) as u16, i), now, 0)).collect();
    let mut slots = entries_matching(&filler, now - 1, now + ROUNDS + 20);
    assert_eq!(slots.len(), 1, "4 full filters per bucket fit one subscriber id");
    subscriber.subscribe(relay_support::subscriber(1), slots.remove(0));
    let first_round = now_s() + 1; // the first round that starts after the subscription
    let last_round = first_round + ROUNDS - 1;

    let mut delivered: HashSet<[u8; 32]> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(ROUNDS + 15);
    // Rounds end at last_round + 1; allow a second for the last dummies to be logged.
    while now_s() < last_round + 2 && Instant::now() < deadline {
        for frame in subscriber.recv() {
            let Frame::Deliver { proofs, .. } = frame else { continue };
            for proof in proofs.iter() {
                // Every dummy on the wire is a valid proof: its bucket and fingerprint derive from its commit.
                assert_eq!(bucket_of(proof.commit(), 64), proof.bucket());
                assert_eq!(proof.fingerprint(), &fingerprint(proof.commit(), proof.window_start()));
                delivered.insert(*proof.commit());
            }
        }
    }
    assert!(delivered.len() >= 50, "dummies reach subscribers like real proofs: {} delivered", delivered.len());
    let cover_proofs = relay.metric("tessera_cover_proofs_total", "");
    assert!(relay.metric("tessera_cover_rounds_total", "") >= ROUNDS);
    // Count every dummy the relay stored (nothing else was published), per (round, bucket), from its log.
    assert!(relay.terminate().success());
    let dir = relay.into_dir();
    let mut counts: HashMap<(u64, u16), u64> = HashMap::new();
    let mut stored: HashSet<[u8; 32]> = HashSet::new();
    for shard in ["shard-000", "shard-001"] {
        let back = readback::read_back_shard(&dir.path().join(shard)).expect("read the stopped relay's log");
        assert_eq!(back.invalid_slots, 0);
        for record in back.records {
            let proof = record.proof.view();
            assert_eq!(bucket_of(proof.commit(), 64), proof.bucket());
            assert_eq!(proof.fingerprint(), &fingerprint(proof.commit(), proof.window_start()));
            *counts.entry((proof.window_start(), proof.bucket())).or_default() += 1;
            stored.insert(*proof.commit());
        }
    }
    assert!(delivered.is_subset(&stored), "what was delivered is what was stored");
    assert!(stored.len() as u64 >= cover_proofs, "every dummy counted by the metric is in the log");
    let observed: Vec<u64> = (first_round..=last_round)
        .flat_map(|round| (0..64u16).map(move |bucket| (round, bucket)))
        .map(|key| counts.get(&key).copied().unwrap_or(0))
        .collect();
    assert_eq!(observed.len(), (ROUNDS * 64) as usize);
    let mechanism = CoverMechanism::from_f64(0.5, 1e-6).unwrap();
    let check = check_dummy_counts(&mechanism, &observed, CHECK_Z_DEFAULT).unwrap();
    assert!(check.is_consistent(), "dummy counts inconsistent with the mechanism: {check:?}");
    let mean = observed.iter().sum::<u64>() as f64 / observed.len() as f64;
    assert!(
        (mean - mechanism.shift_t() as f64).abs() < 2.0,
        "mean {mean} per bucket per round, t = {}",
        mechanism.shift_t()
    );
}

#[test]
fn disabling_cover_traffic_is_loud_and_sends_no_dummy() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["relay", "--port", "0", "--shards", "1", "--danger-disable-cover-traffic", "--storage"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.contains("cover DISABLED (danger)"), "{line}");
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(stderr.contains("DANGER: cover traffic is disabled"), "{stderr}");

    let relay = Relay::start(&["--danger-exact-metrics", "--shards", "1", "--danger-disable-cover-traffic"]);
    assert_eq!(relay.metric("tessera_danger_cover_traffic_disabled", ""), 1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(relay.metric("tessera_cover_proofs_total", ""), 0);
    // Nothing is stored, so nothing can be delivered or fetched (a subscriber would get nothing at all).
    assert_eq!(relay.metric("tessera_proofs_accepted_total", ""), 0);
    assert_eq!(relay.metric("tessera_log_records_appended_total", ""), 0, "no dummy in the log");
}

#[test]
fn dummies_ride_along_instead_of_forcing_a_commit_each() {
    // ε = 0.5 with 1 s rounds: t = 27 dummies per bucket per round, ~1,700 a second over 64 buckets. Nobody waits
    // for a dummy's durability, so the log commits them at most about once a second per shard (docs/STORAGE.md
    // §2), where it used to make one write + fdatasync per dummy.
    let relay = Relay::start(&[
        "--danger-exact-metrics",
        "--shards",
        "2",
        "--cover-traffic-epsilon",
        "0.5",
        "--cover-round-ms",
        "1000",
    ]);
    let start = (relay.metric("tessera_cover_proofs_total", ""), relay.metric("tessera_log_fdatasyncs_total", ""));
    std::thread::sleep(Duration::from_secs(3));
    let dummies = relay.metric("tessera_cover_proofs_total", "") - start.0;
    let fdatasyncs = relay.metric("tessera_log_fdatasyncs_total", "") - start.1;
    assert!(dummies >= 1_000, "cover traffic flowed: {dummies} dummies in 3 s");
    // 2 shards × ~4 unawaited commits in 3 s × at most 3 files each, with room for a segment or journal roll.
    assert!(fdatasyncs <= 40, "{fdatasyncs} fdatasyncs for {dummies} dummies in 3 s");
}
