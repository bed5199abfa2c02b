//! Known-answer vectors for the client key schedule, envelope, invite codes and safety code.
//!
//! `tests/vectors/client_keys.json`, `client_envelope.json` and `client_invite_v2.json` were produced by this
//! file's ignored `regenerate` test from fixed seeds (`TESSERA_REGEN_VECTORS=1 cargo test --test
//! client_vectors -- --ignored`) and checked independently by `tests/vectors/client_vectors_check.py`
//! (Python: `cryptography` for HKDF-SHA256 and AES-256-GCM, hashlib for SHA-256/512, and a from-RFC 9496
//! Ristretto255 for every point). The non-ignored tests recompute every value and compare.
//! `client_invite.json` is frozen: a version-1 invite code (and the retired first safety code), which must
//! keep decoding.

use std::path::PathBuf;

use serde_json::{json, Value};
use tessera::client::delivery::{DeliveryId, DeliverySecrets, Routing, SealKey};
use tessera::client::envelope::{self, layout, ExpectedKey, OpenedPart, Part};
use tessera::client::invite::parse_pin;
use tessera::client::kdf::{scalar_from_sha512, LABEL_IDENTITY, LABEL_SAFETY};
use tessera::client::pairwise::shared_point;
use tessera::client::schnorr::{self, ChallengeContext};
use tessera::client::{pair, safety_code, Direction, Identity, Invite, Relay};

const ALICE_SEED: [u8; 32] = [0xA1; 32];
const BOB_SEED: [u8; 32] = [0xB0; 32];
const NUM_BUCKETS: u16 = 64;
const AUX: [u8; 32] = [0x5C; 32];
const MESSAGE: &[u8] = b"Known-answer vector: hello Bob, it's Alice.";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(vectors_dir().join(name)).expect("vector file present");
    serde_json::from_str(&text).expect("vector file is JSON")
}

fn deliveries() -> Vec<DeliveryId> {
    vec![
        DeliveryId { window_start_s: 1_700_000_000, direction: Direction::LowToHigh, seq: 0 },
        DeliveryId { window_start_s: 1_700_000_000, direction: Direction::HighToLow, seq: 0 },
        DeliveryId { window_start_s: 1_700_000_010, direction: Direction::LowToHigh, seq: 7 },
    ]
}

fn keys_vector() -> Value {
    let alice = Identity::from_seed(&ALICE_SEED);
    let bob = Identity::from_seed(&BOB_SEED);
    let pairing = pair(&alice, bob.public()).expect("distinct keys");
    let sender_of = |d: Direction| if d == pairing.send_direction { &alice } else { &bob };
    let items: Vec<Value> = deliveries()
        .into_iter()
        .map(|id| {
            let secrets = DeliverySecrets::derive(&pairing.secret, id);
            let sender = sender_of(id.direction);
            let y = secrets.blinded_public(sender.public()).compress().to_bytes();
            let routing = Routing::new(secrets.commit(&y), id.window_start_s, NUM_BUCKETS);
            let seal = SealKey::derive(&pairing.secret, id);
            json!({
                "window_start": id.window_start_s,
                "direction": id.direction as u8,
                "seq": id.seq,
                "sender": if std::ptr::eq(sender, &alice) { "alice" } else { "bob" },
                "delivery_id": hex(&id.to_bytes()),
                "session_id": hex(&secrets.session_id),
                "ephemeral_key": hex(&secrets.ephemeral_key),
                "blind_scalar": hex(secrets.blind.as_bytes()),
                "blinded_public": hex(&y),
                "commit": hex(&routing.commit),
                "bucket": routing.bucket,
                "fingerprint": hex(&routing.fingerprint),
                "aead_key": hex(seal.key.as_ref()),
                "aead_nonce": hex(&seal.nonce),
            })
        })
        .collect();
    json!({
        "description": "Client key schedule (docs/PROTOCOL.md §End-to-end envelope and key schedule). Scalars are 32-byte little-endian.",
        "num_buckets": NUM_BUCKETS,
        "alice_seed": hex(&ALICE_SEED),
        "alice_scalar": hex(scalar_from_sha512(&[LABEL_IDENTITY, &ALICE_SEED]).as_bytes()),
        "alice_public": hex(alice.public().as_bytes()),
        "bob_seed": hex(&BOB_SEED),
        "bob_scalar": hex(scalar_from_sha512(&[LABEL_IDENTITY, &BOB_SEED]).as_bytes()),
        "bob_public": hex(bob.public().as_bytes()),
        "dh_shared": hex(shared_point(&alice, bob.public()).as_ref()),
        "pairwise_secret": hex(pairing.secret.as_bytes()),
        "alice_send_direction": pairing.send_direction as u8,
        "deliveries": items,
    })
}

fn envelope_vector() -> Value {
    let alice = Identity::from_seed(&ALICE_SEED);
    let bob = Identity::from_seed(&BOB_SEED);
    let pairing = pair(&alice, bob.public()).expect("distinct keys");
    let id = DeliveryId { window_start_s: 1_700_000_000, direction: pairing.send_direction, seq: 2 };
    let proof = envelope::seal(&alice, &pairing.secret, id, NUM_BUCKETS, Part::new(1, 3, MESSAGE).expect("part"), &AUX);

    let secrets = DeliverySecrets::derive(&pairing.secret, id);
    let x_blinded = scalar_from_sha512(&[LABEL_IDENTITY, &ALICE_SEED]) + secrets.blind;
    let seal = SealKey::derive(&pairing.secret, id);
    let view = proof.view();
    let routing = Routing::new(*view.commit(), id.window_start_s, NUM_BUCKETS);
    let mut buf = *view.ciphertext();
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, seal.key.as_ref()).expect("key"),
    );
    let plain = key
        .open_in_place(
            ring::aead::Nonce::assume_unique_for_key(seal.nonce),
            ring::aead::Aad::from(routing.aad()),
            &mut buf,
        )
        .expect("opens")
        .to_vec();
    let body = &plain[layout::BODY..];
    let r = schnorr::nonce(&x_blinded, &AUX, body);
    let y: [u8; 32] = plain[..32].try_into().expect("Y'");
    let big_r: [u8; 32] = plain[32..64].try_into().expect("R");
    let ctx = ChallengeContext { commit: view.commit(), window_start_s: id.window_start_s, body };
    let c = schnorr::challenge(&y, &big_r, &ctx);
    json!({
        "description": "One envelope: Alice to Bob, part 1 of 3. Scalars are 32-byte little-endian.",
        "sender_seed": hex(&ALICE_SEED),
        "recipient_seed": hex(&BOB_SEED),
        "pairwise_secret": hex(pairing.secret.as_bytes()),
        "window_start": id.window_start_s,
        "direction": id.direction as u8,
        "seq": id.seq,
        "num_buckets": NUM_BUCKETS,
        "part_index": 1,
        "part_count": 3,
        "message": hex(MESSAGE),
        "aux": hex(&AUX),
        "blinded_secret": hex(x_blinded.as_bytes()),
        "nonce_scalar": hex(r.as_bytes()),
        "challenge_scalar": hex(c.as_bytes()),
        "aad": hex(&routing.aad()),
        "aead_key": hex(seal.key.as_ref()),
        "aead_nonce": hex(&seal.nonce),
        "plaintext": hex(&plain),
        "proof": hex(proof.as_bytes()),
    })
}

/// Pins of the v2 vector: fixed bytes standing for SHA-256 digests of relay certificates.
const ALICE_PIN: [u8; 32] = [0x3C; 32];

fn relay_json(relay: &Relay) -> Value {
    json!({ "url": relay.url, "pin": relay.pin.as_ref().map(|p| hex(p)) })
}

fn invite_json(invite: &Invite) -> Value {
    json!({
        "public": hex(invite.public.as_bytes()),
        "relays": invite.relays.iter().map(relay_json).collect::<Vec<_>>(),
        "payload": hex(&invite.payload()),
        "code": invite.encode(),
    })
}

/// Version-2 invites of Alice (one relay pinned) and Bob, and their safety code.
fn invite_v2_vector() -> Value {
    let alice = Identity::from_seed(&ALICE_SEED);
    let bob = Identity::from_seed(&BOB_SEED);
    let alice_relays = vec![
        Relay::new("wss://relay.example.org/tessera", Some(ALICE_PIN)).expect("valid relay"),
        Relay::from("ws://127.0.0.1:8100"),
    ];
    let alice_invite = Invite::new(*alice.public(), alice_relays).expect("valid invite");
    let bob_invite = Invite::new(*bob.public(), vec!["wss://bob.example.net:8443".into()]).expect("valid invite");
    json!({
        "description": "Version-2 invite codes of Alice (first relay pinned) and Bob, and their safety code: \
            SHA-512(label || u16be len(lo) || lo || u16be len(hi) || hi) over the sorted canonical payloads, \
            8 groups of (big-endian u64 of 8 digest bytes) mod 100000.",
        "label": String::from_utf8_lossy(LABEL_SAFETY),
        "alice": invite_json(&alice_invite),
        "bob": invite_json(&bob_invite),
        "safety_code": safety_code(&alice_invite, &bob_invite),
    })
}

#[test]
#[ignore = "writes tests/vectors/client_*.json; run with TESSERA_REGEN_VECTORS=1 after a deliberate change"]
fn regenerate() {
    if std::env::var_os("TESSERA_REGEN_VECTORS").is_none() {
        return;
    }
    for (name, value) in [
        ("client_keys.json", keys_vector()),
        ("client_envelope.json", envelope_vector()),
        ("client_invite_v2.json", invite_v2_vector()),
    ] {
        let text = serde_json::to_string_pretty(&value).expect("serialises") + "\n";
        std::fs::write(vectors_dir().join(name), text).expect("write vector");
    }
}

#[test]
fn key_schedule_matches_vectors() {
    assert_eq!(keys_vector(), load("client_keys.json"));
}

#[test]
fn envelope_matches_vectors() {
    assert_eq!(envelope_vector(), load("client_envelope.json"));
}

/// `client_invite.json` is frozen: a version-1 code (no pins), which this build still reads. Its `safety_code`
/// is the retired first safety code and is not recomputed.
#[test]
fn v1_invite_vector_still_decodes() {
    let v = load("client_invite.json");
    let decoded = Invite::decode(v["code"].as_str().expect("code")).expect("decodes");
    assert_eq!(hex(decoded.public.as_bytes()), v["public"].as_str().expect("public"));
    let urls: Vec<&str> = decoded.relays.iter().map(|r| r.url.as_str()).collect();
    let expected: Vec<&str> =
        v["relays"].as_array().expect("relays").iter().map(|u| u.as_str().expect("url")).collect();
    assert_eq!(urls, expected);
    assert!(decoded.relays.iter().all(|r| r.pin.is_none()));
    // Re-encoded, it is a version-2 code of the same contents.
    assert_ne!(decoded.encode(), v["code"].as_str().expect("code"));
    assert_eq!(Invite::decode(&decoded.encode()).expect("decodes"), decoded);
}

#[test]
fn invite_v2_matches_vectors() {
    let v = load("client_invite_v2.json");
    assert_eq!(invite_v2_vector(), v);
    // Decoding the stored codes alone gives the stored contents and safety code.
    let decode = |side: &str| {
        let invite = Invite::decode(v[side]["code"].as_str().expect("code")).expect("decodes");
        assert_eq!(hex(&invite.payload()), v[side]["payload"].as_str().expect("payload"));
        for (relay, stored) in invite.relays.iter().zip(v[side]["relays"].as_array().expect("relays")) {
            assert_eq!(relay.url, stored["url"].as_str().expect("url"));
            assert_eq!(relay.pin, stored["pin"].as_str().map(|p| parse_pin(p).expect("pin")));
        }
        invite
    };
    let (alice, bob) = (decode("alice"), decode("bob"));
    let code = v["safety_code"].as_str().expect("safety code");
    assert_eq!(safety_code(&alice, &bob), code);
    assert_eq!(safety_code(&bob, &alice), code);
}

/// The stored proof opens for Bob and yields the stored message part.
#[test]
fn stored_envelope_opens() {
    let v = load("client_envelope.json");
    let proof_hex = v["proof"].as_str().expect("proof");
    let bytes: Vec<u8> =
        (0..proof_hex.len()).step_by(2).map(|i| u8::from_str_radix(&proof_hex[i..i + 2], 16).expect("hex")).collect();
    let proof = tessera::proto::Proof::from_slice(&bytes).expect("valid proof");
    let alice = Identity::from_seed(&ALICE_SEED);
    let bob = Identity::from_seed(&BOB_SEED);
    let pairing = pair(&bob, alice.public()).expect("distinct");
    let id = DeliveryId { window_start_s: 1_700_000_000, direction: pairing.send_direction.reverse(), seq: 2 };
    let secrets = DeliverySecrets::derive(&pairing.secret, id);
    let point = secrets.blinded_public(alice.public());
    let expected = ExpectedKey { point, bytes: point.compress().to_bytes() };
    let routing = Routing::new(secrets.commit(&expected.bytes), id.window_start_s, NUM_BUCKETS);
    let part = envelope::open(&pairing.secret, id, &expected, &routing, proof.view().ciphertext()).expect("opens");
    assert_eq!(part, OpenedPart { index: 1, count: 3, chunk: MESSAGE.to_vec() });
}
