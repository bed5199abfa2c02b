//! Known-answer tests: the Rust derivations and codec against vectors generated independently in Python.
//!
//! `tests/vectors/derivations.json` (from `gen_derivations.py`, hashlib only) pins window_start, bucket,
//! fingerprint, Bloom positions and serialised filters; `tests/vectors/frames.json` (from `gen_frames.py`,
//! `struct` only) pins the encoded bytes of every frame type. Each vector is checked, none is skipped.

mod common;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::Value;
use tessera::proto::derive::{bloom_positions, bucket_from_digest, fingerprint_positions};
use tessera::proto::frame::{ErrorFrame, Publish, Subscribe};
use tessera::proto::{
    bucket_of, encode_frame, encode_message, fingerprint, window_start, BloomFilter, BloomParams, Codec, ErrorCode,
    Frame, Hello, Limits, Proof, ProofBatch, RelayParams, RelayPolicy, Role, SubscribeEntry, SubscriberId,
    CIPHERTEXT_LEN, PROTOCOL_VERSION,
};

use common::{hex, unhex, unhex_array};
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::scalar::Scalar;
use serde_json::json;
use sha2::{Digest, Sha256, Sha512};
use tessera::proto::claim::{
    subscriber_id, verify_claim, Claim, ClaimError, SubscriberKeyPair, LABEL_CLAIM, LABEL_CLAIM_NONCE,
    LABEL_SUBSCRIBER_ID, LABEL_SUBSCRIBER_KEY,
};

#[derive(Deserialize)]
struct Derivations {
    header: String,
    window_start: Vec<WindowCase>,
    bucket: Vec<BucketCase>,
    fingerprint: Vec<FingerprintCase>,
    bloom_positions: Vec<PositionsCase>,
    bloom_filter: Vec<FilterCase>,
}

#[derive(Deserialize)]
struct WindowCase {
    t: u64,
    window_s: u64,
    expected: u64,
}

#[derive(Deserialize)]
struct BucketCase {
    commit: String,
    num_buckets: u16,
    sha256_prefix_u16: u16,
    expected: u16,
}

#[derive(Deserialize)]
struct FingerprintCase {
    commit: String,
    window_start: u64,
    expected: String,
}

#[derive(Deserialize)]
struct PositionsCase {
    item: String,
    m_bits: u32,
    k: u8,
    expected: Vec<u32>,
}

#[derive(Deserialize)]
struct FilterCase {
    name: String,
    m_bits: u32,
    k: u8,
    items: Vec<String>,
    ones: u32,
    expected_hex: String,
}

fn derivations() -> Derivations {
    serde_json::from_str(include_str!("vectors/derivations.json")).expect("derivations.json parses")
}

#[test]
fn derivation_vectors_are_independent_and_plentiful() {
    let d = derivations();
    assert!(d.header.contains("INDEPENDENTLY") && d.header.contains("hashlib"), "{}", d.header);
    let total = d.window_start.len() + d.bucket.len() + d.fingerprint.len() + d.bloom_positions.len();
    assert!(total >= 32, "only {total} derivation vectors");
    // The edge cases the issue asks for are present.
    for n in [1, 7, 64, 100, 256, 65535] {
        assert!(d.bucket.iter().any(|c| c.num_buckets == n), "no bucket vector for {n} buckets");
    }
    for t in [0, 9, 10, 11, u64::MAX] {
        assert!(d.window_start.iter().any(|c| c.t == t && c.window_s == 10), "no window vector for t={t}");
    }
    for (m, k) in [(1024, 3), (2048, 5), (1000, 7)] {
        assert!(d.bloom_positions.iter().any(|c| c.m_bits == m && c.k == k), "no positions for m={m} k={k}");
    }
}

#[test]
fn window_start_vectors() {
    for c in derivations().window_start {
        assert_eq!(window_start(c.t, c.window_s), c.expected, "t={} window_s={}", c.t, c.window_s);
    }
}

#[test]
fn bucket_vectors() {
    for c in derivations().bucket {
        let commit: [u8; 32] = unhex_array(&c.commit);
        assert_eq!(bucket_of(&commit, c.num_buckets), c.expected, "commit {} mod {}", c.commit, c.num_buckets);
        // The two-byte formula (not "first byte mod 64"): the prefix reduces to the expected bucket.
        assert_eq!(c.sha256_prefix_u16 % c.num_buckets, c.expected);
        let mut digest = [0u8; 32];
        digest[..2].copy_from_slice(&c.sha256_prefix_u16.to_be_bytes());
        assert_eq!(bucket_from_digest(&digest, c.num_buckets), c.expected);
    }
}

#[test]
fn fingerprint_vectors() {
    for c in derivations().fingerprint {
        let commit: [u8; 32] = unhex_array(&c.commit);
        assert_eq!(hex(&fingerprint(&commit, c.window_start)), c.expected, "commit {} ws {}", c.commit, c.window_start);
    }
}

#[test]
fn bloom_position_vectors() {
    for c in derivations().bloom_positions {
        let item = unhex(&c.item);
        let got = bloom_positions(&item, c.m_bits, c.k);
        assert_eq!(got.as_slice(), c.expected.as_slice(), "item {} m={} k={}", c.item, c.m_bits, c.k);
        // The fixed-size fingerprint path must agree wherever the item is a fingerprint.
        if let Ok(fp) = <[u8; 8]>::try_from(item.as_slice()) {
            assert_eq!(fingerprint_positions(&fp, c.m_bits, c.k).as_slice(), c.expected.as_slice());
        }
    }
}

#[test]
fn bloom_filter_vectors() {
    for c in derivations().bloom_filter {
        let params = BloomParams::new(c.m_bits, c.k).expect("vector parameters are valid");
        let mut generic = BloomFilter::new(params);
        let mut by_fingerprint = BloomFilter::new(params);
        for item in &c.items {
            let item = unhex(item);
            generic.insert(&item);
            match <[u8; 8]>::try_from(item.as_slice()) {
                Ok(fp) => by_fingerprint.insert_fingerprint(&fp),
                Err(_) => by_fingerprint.insert(&item),
            }
        }
        assert_eq!(hex(generic.as_bytes()), c.expected_hex, "{}", c.name);
        assert_eq!(by_fingerprint, generic, "{}", c.name);
        assert_eq!(generic.count_ones(), c.ones, "{}", c.name);
        assert_eq!(generic.as_bytes().len(), (c.m_bits / 8) as usize);
        assert!(c.items.iter().all(|i| generic.contains(&unhex(i))), "{}: an inserted item is missing", c.name);
        // And the serialised form reads back as the same filter.
        let read = BloomFilter::from_bytes(params, &unhex(&c.expected_hex)).expect("right length");
        assert_eq!(read, generic, "{}", c.name);
    }
}

// ---- frames ----

fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

fn u16_of(v: &Value) -> u16 {
    u16::try_from(u64_of(v)).expect("fits u16")
}

fn u32_of(v: &Value) -> u32 {
    u32::try_from(u64_of(v)).expect("fits u32")
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn subscriber(v: &Value) -> SubscriberId {
    SubscriberId(unhex_array(str_of(v)))
}

fn proofs(v: &Value) -> ProofBatch {
    let owned: Vec<Proof> = v
        .as_array()
        .expect("proof list")
        .iter()
        .map(|p| {
            assert_eq!(u64_of(&p["version"]), 1);
            assert_eq!(u64_of(&p["reserved"]), 0);
            let ciphertext: [u8; CIPHERTEXT_LEN] = unhex_array(str_of(&p["ciphertext"]));
            Proof::new(
                u16_of(&p["bucket"]),
                u64_of(&p["window_start"]),
                &unhex_array(str_of(&p["commit"])),
                &unhex_array(str_of(&p["fingerprint"])),
                &ciphertext,
            )
        })
        .collect();
    ProofBatch::from_proofs(owned.iter().map(|p| p.view()))
}

fn limits(v: &Value) -> Limits {
    Limits {
        message_bytes_max: u32_of(&v["message_bytes_max"]),
        frames_per_message_max: u16_of(&v["frames_per_message_max"]),
        proofs_per_batch_max: u16_of(&v["proofs_per_batch_max"]),
        entries_per_subscribe_max: u16_of(&v["entries_per_subscribe_max"]),
        filters_per_bucket_max: u16_of(&v["filters_per_bucket_max"]),
        subscribers_per_connection_max: u16_of(&v["subscribers_per_connection_max"]),
        subscription_windows_ahead_max: u32_of(&v["subscription_windows_ahead_max"]),
        connections_max: u32_of(&v["connections_max"]),
        send_queue_proofs_max: u32_of(&v["send_queue_proofs_max"]),
    }
}

fn policy(v: &Value) -> RelayPolicy {
    RelayPolicy {
        shards: u16_of(&v["shards"]),
        filter_fingerprints_max: u16_of(&v["filter_fingerprints_max"]),
        clock_skew_s: u32_of(&v["clock_skew_s"]),
        slow_consumer_grace_ms: u32_of(&v["slow_consumer_grace_ms"]),
        hello_timeout_ms: u32_of(&v["hello_timeout_ms"]),
        idle_timeout_ms: u32_of(&v["idle_timeout_ms"]),
        protocol_errors_max: u16_of(&v["protocol_errors_max"]),
    }
}

/// The frame a vector describes, built from its fields alone.
fn expected_frame(frame: &Value, bloom: BloomParams) -> Frame {
    let f = &frame["fields"];
    match str_of(&frame["type"]) {
        "HELLO" => Frame::Hello(Hello {
            version: u16_of(&f["version"]),
            role: match u64_of(&f["role"]) {
                1 => Role::Client,
                2 => Role::Peer,
                other => panic!("role {other}"),
            },
            node_id: unhex_array(str_of(&f["node_id"])),
        }),
        "HELLO_REPLY" => Frame::HelloReply(RelayParams {
            version: u16_of(&f["version"]),
            num_buckets: u16_of(&f["num_buckets"]),
            window_s: u32_of(&f["window_s"]),
            bloom: BloomParams::new(u32_of(&f["m_bits"]), u8::try_from(u64_of(&f["k"])).expect("k fits u8"))
                .expect("valid Bloom parameters"),
            proof_len: u32_of(&f["proof_len"]),
            ciphertext_len: u32_of(&f["ciphertext_len"]),
            retention_s: u32_of(&f["retention_s"]),
            node_id: unhex_array(str_of(&f["node_id"])),
            limits: limits(&f["limits"]),
            policy: policy(&f["policy"]),
            auth_nonce: unhex_array(str_of(&f["auth_nonce"])),
        }),
        "PUBLISH" => Frame::Publish(Publish { seq: u64_of(&f["seq"]), proofs: proofs(&f["proofs"]) }),
        "ACK" => Frame::Ack { seq: u64_of(&f["seq"]) },
        "SUBSCRIBE" => Frame::Subscribe(Subscribe {
            subscriber: subscriber(&f["subscriber"]),
            entries: f["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .map(|e| SubscribeEntry {
                    bucket: u16_of(&e["bucket"]),
                    window_from_s: u64_of(&e["window_from_s"]),
                    window_to_s: u64_of(&e["window_to_s"]),
                    filter: BloomFilter::from_bytes(bloom, &unhex(str_of(&e["filter"]))).expect("filter length"),
                })
                .collect(),
        }),
        "SUBSCRIBED" => Frame::Subscribed { subscriber: subscriber(&f["subscriber"]), entries: u16_of(&f["entries"]) },
        "UNSUBSCRIBE" => Frame::Unsubscribe { subscriber: subscriber(&f["subscriber"]) },
        "CLAIM" => {
            Frame::Claim(Claim { key: unhex_array(str_of(&f["key"])), signature: unhex_array(str_of(&f["signature"])) })
        }
        "DELIVER" => Frame::Deliver { subscriber: subscriber(&f["subscriber"]), proofs: proofs(&f["proofs"]) },
        "FETCH" => Frame::Fetch {
            subscriber: subscriber(&f["subscriber"]),
            cursor: u64_of(&f["cursor"]),
            proofs_max: u16_of(&f["proofs_max"]),
        },
        "FETCH_REPLY" => Frame::FetchReply {
            subscriber: subscriber(&f["subscriber"]),
            next_cursor: u64_of(&f["next_cursor"]),
            more: f["more"].as_bool().expect("bool"),
            proofs: proofs(&f["proofs"]),
        },
        "ERROR" => Frame::Error(ErrorFrame {
            code: ErrorCode(u16_of(&f["code"])),
            ref_seq: u64_of(&f["ref_seq"]),
            detail: u32_of(&f["detail"]),
            text: str_of(&f["text"]).to_owned(),
        }),
        other => panic!("unknown frame type in vectors: {other}"),
    }
}

#[test]
fn frame_vectors_decode_and_reencode() {
    let doc: Value = serde_json::from_str(include_str!("vectors/frames.json")).expect("frames.json parses");
    assert!(str_of(&doc["header"]).contains("INDEPENDENTLY"));
    let messages = doc["messages"].as_array().expect("messages");
    let mut types_seen = std::collections::BTreeSet::new();
    for m in messages {
        let name = str_of(&m["name"]);
        let bloom = match m.get("codec") {
            Some(c) => BloomParams::new(u32_of(&c["m_bits"]), u8::try_from(u64_of(&c["k"])).expect("k"))
                .expect("valid codec Bloom parameters"),
            None => BloomParams::default(),
        };
        let codec = Codec::new(Limits::default(), bloom);
        let wire = unhex(str_of(&m["hex"]));
        let expected: Vec<Frame> =
            m["frames"].as_array().expect("frames").iter().map(|f| expected_frame(f, bloom)).collect();
        for (frame, vector) in expected.iter().zip(m["frames"].as_array().expect("frames")) {
            assert_eq!(u64::from(frame.type_byte()), u64_of(&vector["type_byte"]), "{name}");
            types_seen.insert(frame.type_byte());
        }

        let decoded = codec.decode_message(&Bytes::from(wire.clone())).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, expected, "{name}: decoded fields differ");

        assert_eq!(hex(&encode_message(&expected)), hex(&wire), "{name}: re-encoded bytes differ");
        let mut one_by_one = BytesMut::new();
        for frame in &decoded {
            encode_frame(frame, &mut one_by_one);
        }
        assert_eq!(one_by_one.as_ref(), wire.as_slice(), "{name}: frame-by-frame encoding differs");
    }
    assert_eq!(types_seen.len(), 12, "every frame type has a vector: {types_seen:?}");
}

#[test]
fn hello_reply_vectors_speak_this_protocol_version() {
    // The vectors are regenerated when the wire changes: every HELLO_REPLY in them is of the version this crate
    // speaks, and the defaults vector is what a relay with the default configuration announces.
    let doc: Value = serde_json::from_str(include_str!("vectors/frames.json")).expect("frames.json parses");
    let replies: Vec<&Value> = doc["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .flat_map(|m| m["frames"].as_array().expect("frames"))
        .filter(|f| str_of(&f["type"]) == "HELLO_REPLY")
        .collect();
    assert!(replies.len() >= 2);
    for f in &replies {
        assert_eq!(u16_of(&f["fields"]["version"]), PROTOCOL_VERSION);
    }
    let defaults = &replies[0]["fields"];
    assert_eq!(limits(&defaults["limits"]), Limits::default());
    let relay = tessera::server::config::RelayConfig::defaults(1);
    let announced = RelayPolicy {
        shards: relay.shards as u16,
        clock_skew_s: relay.clock_skew_s as u32,
        slow_consumer_grace_ms: relay.slow_consumer_grace_ms as u32,
        hello_timeout_ms: relay.hello_timeout_ms as u32,
        ..RelayPolicy::default()
    };
    assert_eq!(announced, RelayPolicy::default(), "RelayPolicy::default() is what a default relay announces");
    assert_eq!(policy(&defaults["policy"]), RelayPolicy::default());
    assert_eq!(RelayPolicy::default().protocol_errors_max as u32, tessera::server::conn::PROTOCOL_ERRORS_MAX);
}

#[test]
fn encode_deliver_fast_path_matches_vector() {
    // The server's DELIVER fast path must produce the same bytes as the generic encoder / the vector.
    let doc: Value = serde_json::from_str(include_str!("vectors/frames.json")).expect("frames.json parses");
    let m = doc["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| str_of(&m["name"]) == "DELIVER two proofs")
        .expect("DELIVER vector");
    let f = &m["frames"][0]["fields"];
    let batch = proofs(&f["proofs"]);
    let mut out = BytesMut::new();
    tessera::proto::codec::encode_deliver(&subscriber(&f["subscriber"]), batch.iter().map(|p| p.as_bytes()), &mut out);
    assert_eq!(hex(&out), str_of(&m["hex"]));
}

// ---- CLAIM: a fixed-key signature vector (tests/vectors/claim.json) ----

const CLAIM_SECRET: [u8; 32] = [0x5E; 32];
const CLAIM_NODE_ID: [u8; 16] = [0x0D; 16];
const CLAIM_AUTH_NONCE: [u8; 16] = [0xA7; 16];
const CLAIM_AUX: [u8; 32] = [0xC3; 32];

fn wide(parts: &[&[u8]]) -> Scalar {
    let mut h = Sha512::new();
    for part in parts {
        h.update(part);
    }
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// Every intermediate value of one claim, recomputed here from docs/PROTOCOL.md §4.12 (not through
/// `proto::claim`'s internals), and the claim `proto::claim` makes: they must agree.
fn claim_vector() -> Value {
    let x = wide(&[LABEL_SUBSCRIBER_KEY, &CLAIM_SECRET]);
    let big_x = (&x * RISTRETTO_BASEPOINT_TABLE).compress().to_bytes();
    let id: [u8; 16] = Sha256::new().chain_update(LABEL_SUBSCRIBER_ID).chain_update(big_x).finalize()[..16]
        .try_into()
        .expect("16 bytes");
    let mut transcript = Vec::new();
    transcript.extend_from_slice(&CLAIM_NODE_ID);
    transcript.extend_from_slice(&CLAIM_AUTH_NONCE);
    transcript.extend_from_slice(&big_x);
    let r = wide(&[LABEL_CLAIM_NONCE, x.as_bytes(), &CLAIM_AUX, &transcript]);
    let big_r = (&r * RISTRETTO_BASEPOINT_TABLE).compress().to_bytes();
    let c = wide(&[LABEL_CLAIM, &transcript, &big_r]);
    let s = r + c * x;

    let pair = SubscriberKeyPair::from_secret(&CLAIM_SECRET);
    let claim = pair.claim(&CLAIM_NODE_ID, &CLAIM_AUTH_NONCE, &CLAIM_AUX);
    assert_eq!((pair.public(), pair.id().0), (&big_x, id), "key and id as specified");
    assert_eq!((&claim.signature[..32], &claim.signature[32..]), (&big_r[..], &s.as_bytes()[..]), "R ‖ s");
    json!({
        "header": "A CLAIM (docs/PROTOCOL.md §4.12) for a fixed subscriber secret, with every intermediate value. \
                   Written by tests/vectors.rs (regenerate: TESSERA_REGEN_VECTORS=1 cargo test --test vectors -- \
                   --ignored); checked independently by tests/vectors/client_vectors_check.py.",
        "labels": {
            "subscriber_key": String::from_utf8_lossy(LABEL_SUBSCRIBER_KEY),
            "subscriber_id": String::from_utf8_lossy(LABEL_SUBSCRIBER_ID),
            "claim_nonce": String::from_utf8_lossy(LABEL_CLAIM_NONCE),
            "claim": String::from_utf8_lossy(LABEL_CLAIM),
        },
        "secret": hex(&CLAIM_SECRET),
        "scalar_x": hex(x.as_bytes()),
        "public_key": hex(&big_x),
        "subscriber_id": hex(&id),
        "node_id": hex(&CLAIM_NODE_ID),
        "auth_nonce": hex(&CLAIM_AUTH_NONCE),
        "aux": hex(&CLAIM_AUX),
        "transcript": hex(&transcript),
        "nonce_r": hex(r.as_bytes()),
        "commitment_R": hex(&big_r),
        "challenge_c": hex(c.as_bytes()),
        "response_s": hex(s.as_bytes()),
        "signature": hex(&claim.signature),
        "frame": hex(&encode_message(&[Frame::Claim(claim)])),
    })
}

#[test]
#[ignore = "writes tests/vectors/claim.json; run with TESSERA_REGEN_VECTORS=1 after a deliberate change"]
fn regenerate_claim_vector() {
    if std::env::var_os("TESSERA_REGEN_VECTORS").is_none() {
        return;
    }
    let text = serde_json::to_string_pretty(&claim_vector()).expect("serialises") + "\n";
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/claim.json"), text).expect("write vector");
}

#[test]
fn claim_vector_matches_and_verifies_only_for_its_connection() {
    let v: Value = serde_json::from_str(include_str!("vectors/claim.json")).expect("claim.json parses");
    assert_eq!(claim_vector(), v);
    let claim = Claim { key: unhex_array(str_of(&v["public_key"])), signature: unhex_array(str_of(&v["signature"])) };
    let id = verify_claim(&claim, &CLAIM_NODE_ID, &CLAIM_AUTH_NONCE).expect("the vector verifies");
    assert_eq!(hex(&id.0), str_of(&v["subscriber_id"]));
    assert_eq!(id, subscriber_id(&claim.key));
    // Replayed on another connection (another nonce) or to another relay: refused.
    assert_eq!(verify_claim(&claim, &CLAIM_NODE_ID, &[0; 16]), Err(ClaimError::Mismatch));
    assert_eq!(verify_claim(&claim, &[0; 16], &CLAIM_AUTH_NONCE), Err(ClaimError::Mismatch));
    // The frame decodes to the same claim.
    let frames = Codec::default().decode_message(&Bytes::from(unhex(str_of(&v["frame"])))).expect("decodes");
    assert_eq!(frames, vec![Frame::Claim(claim)]);
}
