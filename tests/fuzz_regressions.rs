//! Replays the fuzz targets' committed seeds (fuzz/seeds/<target>/) through the same bodies the fuzzers run
//! (`tessera::fuzzing`), so `cargo test` exercises their code paths and keeps every past finding fixed
//! without cargo-fuzz (docs/FUZZING.md).
//!
//! ```text
//! fuzz/seeds/decode_message/*    ─▶ fuzzing::decode_message     (no panic; decoded ⇒ re-encodes the same)
//! fuzz/seeds/http_request_head/* ─▶ fuzzing::http_request_head  (no panic; parsed heads are well-formed)
//! fuzz/seeds/shard_session/*     ─▶ fuzzing::shard_session      (no panic; every reply decodes)
//! ```
//!
//! The hand-built seeds are written by `write_seeds` (ignored: run it by hand after changing the wire format,
//! `cargo test --test fuzz_regressions -- --ignored write_seeds`); the others were picked from fuzzing runs.

use std::fs;
use std::path::PathBuf;

use tessera::fuzzing::{self, op, session_proof, SESSION_AUTH_NONCE, SESSION_WINDOW_S};
use tessera::proto::frame::{Publish, Subscribe};
use tessera::proto::{
    encode_message, BloomFilter, BloomParams, Frame, Hello, ProofBatch, Role, SubscribeEntry, SubscriberId,
    SubscriberKeyPair, PROTOCOL_VERSION,
};

/// A target's body: arbitrary bytes in, a panic on a finding.
type Body = fn(&[u8]);

const TARGETS: [(&str, Body); 3] = [
    ("decode_message", fuzzing::decode_message),
    ("http_request_head", fuzzing::http_request_head),
    ("shard_session", |data| drop(fuzzing::shard_session(data))),
];

fn seeds_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target)
}

#[test]
fn every_committed_seed_replays_without_a_finding() {
    for (target, body) in TARGETS {
        let mut files: Vec<PathBuf> =
            fs::read_dir(seeds_dir(target)).expect("a seed folder per target").map(|e| e.unwrap().path()).collect();
        files.sort();
        assert!(files.len() >= 20, "{target}: only {} seeds", files.len());
        for file in files {
            let data = fs::read(&file).unwrap();
            // A panic names the target and the file: replay it with `cargo fuzz run <target> <file>`.
            eprintln!("{target}: {}", file.display());
            body(&data);
        }
    }
}

/// The hand-built session seeds reach what they were built for (a regression in the harness would otherwise
/// leave the replay passing while exercising nothing).
#[test]
fn the_session_seeds_reach_what_they_were_built_for() {
    use tessera::proto::frame::frame_type as ft;
    use tessera::proto::ErrorCode as E;
    use tessera::server::close::CloseReason;
    for (name, data) in session_seeds() {
        let got = fuzzing::shard_session(&data);
        let errors: Vec<E> = got.error_codes.iter().map(|&c| E(c)).collect();
        let only = |code: E, n: usize| errors.len() == n && errors.iter().all(|&e| e == code);
        let ok = match name.trim_start_matches("seed-") {
            "late-subscribe-fetch"
            | "late-subscribe-every-bucket"
            | "reconnect-then-fetch"
            | "slow-reader-recovers" => {
                got.frames(ft::SUBSCRIBED) == 1 && got.frames(ft::FETCH_REPLY) >= 1 && got.proofs_received >= 2
            }
            "live-match-deliver" => got.frames(ft::DELIVER) == 1 && errors.is_empty(),
            "renew-with-grown-filter" => got.frames(ft::SUBSCRIBED) == 2 && got.frames(ft::DELIVER) == 1,
            "too-many-filters" => only(E::TOO_MANY_FILTERS, 1),
            "bucket-out-of-range" => only(E::BUCKET_OUT_OF_RANGE, 1),
            "window-too-far-ahead" | "window-in-the-past" | "window-misaligned" => only(E::SUBSCRIPTION_RANGE, 1),
            // Ids 65 and 66: their CLAIMs are over the limit (nothing claimed), so their SUBSCRIBEs are refused.
            "too-many-subscribers" => {
                let pair = [E::TOO_MANY_SUBSCRIBERS, E::NOT_CLAIMED];
                got.frames(ft::SUBSCRIBED) == 64 && errors == [pair, pair].concat()
            }
            "unclaimed-fetch" => only(E::NOT_CLAIMED, 1) && got.frames(ft::FETCH_REPLY) == 0,
            "bad-claim" => only(E::BAD_CLAIM, 1),
            "late-scans-per-connection" => errors.contains(&E::OVERLOADED),
            "protocol-errors-close" => got.closes == [CloseReason::ProtocolErrors] && got.frames(ft::FETCH_REPLY) == 1,
            "slow-reader-closed" => got.closes == [CloseReason::SlowConsumer] && got.proofs_received >= 16,
            "second-hello" => only(E::UNEXPECTED_FRAME, 1),
            "unsubscribe-unknown" => got.frames_by_type == [(ft::ACK, got.frames(ft::ACK))] && errors.is_empty(),
            "subscribe-unsubscribe" => got.frames(ft::SUBSCRIBED) == 1 && errors.is_empty(),
            "duplicate-publish" => got.frames(ft::ACK) >= 1 && errors.is_empty(),
            "publish-and-subscribe-batch" => got.frames(ft::FETCH_REPLY) == 2 && got.frames(ft::DELIVER) == 2,
            "ticks-and-retention" => got.frames(ft::SUBSCRIBED) == 1,
            // An all-ones filter: refused with FILTER_SATURATED (docs/PROTOCOL.md §5.6); the PUBLISH after it
            // is acknowledged as usual.
            "saturated-filter" => only(E::FILTER_SATURATED, 1) && got.frames(ft::ACK) >= 1,
            other => panic!("no expectation for seed {other}"),
        };
        assert!(ok, "{name} did not reach what it was built for: {got:?}");
    }
}

// ---- hand-built seeds -----------------------------------------------------------------------------------

/// Writes the hand-built seeds into fuzz/seeds/ (replacing same-named files, keeping the others).
#[test]
#[ignore = "writes files: run by hand after a wire change"]
fn write_seeds() {
    let all =
        [("decode_message", decode_seeds()), ("http_request_head", http_seeds()), ("shard_session", session_seeds())];
    for (target, seeds) in all {
        let dir = seeds_dir(target);
        fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds {
            fs::write(dir.join(name), data).unwrap();
        }
    }
}

const W: u64 = SESSION_WINDOW_S;
/// Session proofs each session seed publishes first (`Ops::retained`).
const RETAINED: u8 = 6;

fn entry(bucket: u16, from: u64, to: u64, proofs: &[u8]) -> SubscribeEntry {
    let mut filter = BloomFilter::new(BloomParams::default());
    for &n in proofs {
        filter.insert_fingerprint(session_proof(n).view().fingerprint());
    }
    SubscribeEntry { bucket, window_from_s: from, window_to_s: to, filter }
}

/// An entry for the bucket of proof `n` whose filter holds its fingerprint, over `[from, to]`.
fn entry_for(n: u8, from: u64, to: u64) -> SubscribeEntry {
    entry(session_proof(n).view().bucket(), from, to, &[n])
}

/// The subscriber keys of the seeds: key `n` has secret `[n; 32]`.
fn keys() -> &'static [SubscriberKeyPair] {
    static KEYS: std::sync::OnceLock<Vec<SubscriberKeyPair>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| (0..=255).map(|n| SubscriberKeyPair::from_secret(&[n; 32])).collect())
}

/// The id of key `n`.
fn sub(n: u8) -> SubscriberId {
    keys()[usize::from(n)].id()
}

/// The CLAIM of the key whose id is `id`, for a `shard_session` connection (node id [7; 16]), if a seed key.
fn claim_of(id: &SubscriberId) -> Option<Frame> {
    let key = keys().iter().find(|k| k.id() == *id)?;
    Some(Frame::Claim(key.claim(&[7; 16], &SESSION_AUTH_NONCE, &[0; 32])))
}

fn subscribe(id: u8, entries: Vec<SubscribeEntry>) -> Frame {
    Frame::Subscribe(Subscribe { subscriber: sub(id), entries })
}

fn fetch(id: u8, cursor: u64) -> Frame {
    Frame::Fetch { subscriber: sub(id), cursor, proofs_max: 16 }
}

fn publish(seq: u64, proofs: &[u8]) -> Frame {
    let proofs: Vec<_> = proofs.iter().map(|&n| session_proof(n)).collect();
    Frame::Publish(Publish { seq, proofs: ProofBatch::from_proofs(proofs.iter().map(|p| p.view())) })
}

/// A `shard_session` input: ops, each message op followed by its length and bytes.
#[derive(Default)]
struct Ops(Vec<u8>);

impl Ops {
    /// One message of `frames`, each seed key's id claimed first in it (as a client claims before use).
    fn msg(self, side: u8, frames: &[Frame]) -> Self {
        let mut claimed: Vec<SubscriberId> = Vec::new();
        let mut all = Vec::new();
        for frame in frames {
            let id = match frame {
                Frame::Subscribe(s) => Some(s.subscriber),
                Frame::Fetch { subscriber, .. } | Frame::Unsubscribe { subscriber } => Some(*subscriber),
                _ => None,
            };
            if let Some(id) = id.filter(|id| !claimed.contains(id)) {
                claimed.push(id);
                all.extend(claim_of(&id));
            }
        }
        all.extend(frames.iter().cloned());
        self.raw(side, &encode_message(&all))
    }
    fn raw(mut self, side: u8, bytes: &[u8]) -> Self {
        self.0.push(op::MESSAGE | (side << 3));
        self.0.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        self.0.extend_from_slice(bytes);
        self
    }
    fn op(mut self, kind: u8, arg: u8) -> Self {
        self.0.push(kind | (arg << 3));
        self
    }
    /// Proofs 0..RETAINED published (alternating connections) and durable: late matching has something to scan.
    fn retained() -> Self {
        (0..RETAINED).fold(Ops::default(), |o, n| o.op(op::PUBLISH, n * 2 + n % 2)).op(op::COMMIT, 0)
    }
    fn settle(self) -> Self {
        self.op(op::LATE, 0).op(op::COMMIT, 0)
    }
}

fn session_seeds() -> Vec<(String, Vec<u8>)> {
    let now = W;
    let late = |n: u8| entry_for(n, W - 60, W + 600);
    let every = |f: &dyn Fn(u8) -> SubscribeEntry| (0..RETAINED).map(f).collect::<Vec<_>>();
    let params = BloomParams::default();
    let full = BloomFilter::from_bytes(params, &vec![0xff; params.m_bits as usize / 8]).unwrap();
    let saturated = SubscribeEntry { bucket: 0, window_from_s: now, window_to_s: now + 3_540, filter: full };
    // One legitimate entry per bucket of proofs 100..120, its filter holding the fingerprints of those proofs.
    let mut buckets: Vec<u16> = (100..120).map(|n| session_proof(n).view().bucket()).collect();
    buckets.sort_unstable();
    buckets.dedup();
    let watch_all: Vec<SubscribeEntry> = buckets
        .iter()
        .map(|&bucket| {
            let in_bucket: Vec<u8> = (100..120).filter(|&n| session_proof(n).view().bucket() == bucket).collect();
            entry(bucket, now, now + 3_540, &in_bucket)
        })
        .collect();
    let seeds: Vec<(&str, Ops)> = vec![
        ("late-subscribe-fetch", Ops::default().msg(0, &[subscribe(1, vec![late(0)])]).settle().msg(0, &[fetch(1, 0)])),
        (
            "late-subscribe-every-bucket",
            Ops::default().msg(1, &[subscribe(2, every(&late))]).settle().msg(1, &[fetch(2, 0)]),
        ),
        (
            "live-match-deliver",
            Ops::default()
                .msg(0, &[subscribe(3, vec![entry_for(40, now, now + 600)])])
                .op(op::COMMIT, 0)
                .msg(1, &[publish(1_000, &[40])])
                .op(op::COMMIT, 0),
        ),
        ("duplicate-publish", Ops::default().op(op::PUBLISH, 0).op(op::PUBLISH, 3).op(op::COMMIT, 0)),
        (
            "subscribe-unsubscribe",
            Ops::default().msg(0, &[subscribe(4, every(&late)), Frame::Unsubscribe { subscriber: sub(4) }]).settle(),
        ),
        ("unsubscribe-unknown", Ops::default().msg(1, &[Frame::Unsubscribe { subscriber: sub(9) }])),
        (
            "unclaimed-fetch",
            Ops::default().msg(1, &[Frame::Fetch { subscriber: SubscriberId([9; 16]), cursor: 0, proofs_max: 4 }]),
        ),
        ("bad-claim", {
            let Some(Frame::Claim(mut claim)) = claim_of(&sub(9)) else { unreachable!("a seed key") };
            claim.signature[0] ^= 1;
            Ops::default().msg(0, &[Frame::Claim(claim)])
        }),
        (
            "saturated-filter",
            Ops::default()
                .msg(0, &[subscribe(5, vec![saturated.clone()])])
                .settle()
                .op(op::PUBLISH, 0)
                .op(op::COMMIT, 0),
        ),
        ("too-many-filters", Ops::default().msg(0, &[subscribe(6, vec![entry(0, now, now + 3_540, &[]); 5])])),
        ("bucket-out-of-range", Ops::default().msg(0, &[subscribe(7, vec![entry(64, now, now + 60, &[])])])),
        ("window-too-far-ahead", Ops::default().msg(0, &[subscribe(8, vec![entry(0, now, now + 400 * 60, &[])])])),
        ("window-in-the-past", Ops::default().msg(0, &[subscribe(8, vec![entry(0, now - 7_200, now - 3_600, &[])])])),
        ("window-misaligned", Ops::default().msg(0, &[subscribe(8, vec![entry(0, now + 5, now + 65, &[])])])),
        (
            "too-many-subscribers",
            (0..66)
                .fold(Ops::default(), |o, id| o.msg(0, &[subscribe(id, vec![entry(0, now, now + 60, &[])])]).settle()),
        ),
        (
            "late-scans-per-connection",
            (0..66)
                .fold(Ops::default(), |o, id| o.msg(0, &[subscribe(id, vec![entry(0, now, now + 60, &[])])]))
                .op(op::COMMIT, 0)
                .op(op::TICK, 1)
                .op(op::COMMIT, 0),
        ),
        (
            "reconnect-then-fetch",
            Ops::default()
                .msg(0, &[subscribe(10, vec![late(1)])])
                .settle()
                .op(op::RECONNECT, 0)
                .msg(0, &[fetch(10, 0), fetch(10, 12345)])
                .op(op::COMMIT, 0),
        ),
        (
            "renew-with-grown-filter",
            Ops::default()
                .msg(1, &[subscribe(11, vec![entry(session_proof(2).view().bucket(), W - 60, W + 600, &[2])])])
                .settle()
                .msg(1, &[subscribe(11, vec![entry(session_proof(2).view().bucket(), W - 60, W + 600, &[2, 3, 4])])])
                .settle(),
        ),
        (
            "ticks-and-retention",
            Ops::default()
                .msg(0, &[subscribe(12, vec![late(5)])])
                .op(op::TICK, 31)
                .op(op::TICK, 31)
                .op(op::RETENTION, 0)
                .settle(),
        ),
        (
            "protocol-errors-close",
            (0..12)
                .fold(Ops::default(), |o, _| o.raw(0, &[0xee, 0, 0, 0, 0]))
                .op(op::RECONNECT, 0)
                .msg(0, &[fetch(1, 0)]),
        ),
        (
            "second-hello",
            Ops::default()
                .msg(1, &[Frame::Hello(Hello { version: PROTOCOL_VERSION, role: Role::Client, node_id: [0; 16] })]),
        ),
        (
            "publish-and-subscribe-batch",
            Ops::default()
                .msg(0, &[subscribe(13, vec![late(0), late(1)]), publish(1_000, &[50, 51, 52]), fetch(13, 0)])
                .settle()
                .msg(0, &[fetch(13, 0)]),
        ),
        (
            "slow-reader-closed",
            (100..120)
                .fold(
                    Ops::default().msg(0, &[subscribe(14, watch_all.clone())]).op(op::COMMIT, 0).op(op::STALL, 0),
                    |o, n| o.msg(1, &[publish(u64::from(n), &[n])]),
                )
                .op(op::COMMIT, 0)
                .op(op::TICK, 6)
                .op(op::RECONNECT, 0)
                .msg(0, &[fetch(14, 0)]),
        ),
        (
            "slow-reader-recovers",
            Ops::default()
                .msg(0, &[subscribe(15, vec![late(3)])])
                .op(op::STALL, 0)
                .settle()
                .op(op::TICK, 1)
                .op(op::STALL, 0)
                .msg(0, &[fetch(15, 0)]),
        ),
    ];
    seeds.into_iter().map(|(name, ops)| (format!("seed-{name}"), [Ops::retained().0, ops.0].concat())).collect()
}

fn decode_seeds() -> Vec<(String, Vec<u8>)> {
    let vectors: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/frames.json")).unwrap(),
    )
    .unwrap();
    let mut seeds: Vec<(String, Vec<u8>)> = vectors["messages"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("seed-vector-{i:02}"), unhex(m["hex"].as_str().unwrap())))
        .collect();
    // Every session seed's messages are decoder seeds too.
    for (name, data) in session_seeds() {
        let mut input = &data[..];
        let mut n = 0;
        while let Some((&op, rest)) = input.split_first() {
            input = rest;
            if op % 8 != op::MESSAGE {
                continue;
            }
            let len = usize::from(u16::from_be_bytes([input[0], input[1]]));
            seeds.push((format!("{name}-{n:02}"), input[2..2 + len].to_vec()));
            input = &input[2 + len..];
            n += 1;
            if n == 2 {
                break;
            }
        }
    }
    seeds
}

fn http_seeds() -> Vec<(String, Vec<u8>)> {
    let heads: [(&str, &str); 20] = [
        ("upgrade", "GET /ws HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"),
        ("upgrade-lowercase", "GET / HTTP/1.0\r\nupgrade: WebSocket\r\nsec-websocket-key: x\r\nsec-websocket-version: 13\r\n\r\nleftover"),
        ("upgrade-no-key", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"),
        ("upgrade-empty-key", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Key:   \r\nSec-WebSocket-Version: 13\r\n\r\n"),
        ("upgrade-version-8", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Version: 8\r\n\r\n"),
        ("metrics", "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("metrics-query", "GET /metrics?x=1&y=2 HTTP/1.1\r\n\r\n"),
        ("healthz", "GET /healthz HTTP/1.1\r\nAccept: */*\r\n\r\n"),
        ("not-found", "GET /nope HTTP/1.1\r\n\r\n"),
        ("post", "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        ("no-version", "GET /\r\n\r\n"),
        ("http2", "GET / HTTP/2\r\n\r\n"),
        ("absolute-target", "GET http://x/ HTTP/1.1\r\n\r\n"),
        ("extra-space", "GET  / HTTP/1.1\r\n\r\n"),
        ("no-colon", "GET / HTTP/1.1\r\nnocolon\r\n\r\n"),
        ("incomplete", "GET / HTTP/1.1\r\nHost: a\r\n"),
        ("bare-lf", "GET / HTTP/1.1\nHost: a\n\n"),
        ("repeated-upgrade", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nUpgrade: h2c\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n"),
        ("utf8-path", "GET /\u{e9}t\u{e9} HTTP/1.1\r\nX: \u{2603}\r\n\r\n"),
        ("empty-head", "\r\n\r\n"),
    ];
    let mut seeds: Vec<(String, Vec<u8>)> =
        heads.iter().map(|(name, head)| (format!("seed-{name}"), head.as_bytes().to_vec())).collect();
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(65));
    seeds.push(("seed-too-many-headers".into(), many.into_bytes()));
    let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(8 * 1024));
    seeds.push(("seed-head-too-large".into(), long.into_bytes()));
    seeds.push(("seed-not-utf8".into(), b"GET /\xff HTTP/1.1\r\n\r\n".to_vec()));
    seeds
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}
