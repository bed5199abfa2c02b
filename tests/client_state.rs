//! The sans-IO client end to end without a relay: two `ClientState`s exchange proofs directly.
//! Typed rejections (tampered ciphertext, wrong sender key, replay, another window), multi-part
//! reassembly, send counters, persistence, and subscriptions that cover every expected fingerprint.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tessera::client::delivery::{DeliveryId, DeliverySecrets, Routing, SealKey};
use tessera::client::envelope::{layout, EnvelopeError, ENVELOPE_VERSION};
use tessera::client::schnorr::{self, ChallengeContext, SchnorrError};
use tessera::client::{
    pair, ClientConfig, ClientState, Contact, Identity, OpenError, PersistedState, SendError, SubscribeMode,
    CHUNK_LEN_MAX, MESSAGE_LEN_MAX, SEQS_PER_WINDOW,
};
use tessera::proto::frame::Subscribe;
use tessera::proto::params::{proof_layout, CIPHERTEXT_LEN};
use tessera::proto::Proof;

const ALICE: [u8; 32] = [0xA1; 32];
const BOB: [u8; 32] = [0xB0; 32];
const T0: u64 = 1_700_000_003;

fn config() -> ClientConfig {
    ClientConfig { ahead_windows: 6, behind_windows: 6, renew_every_windows: 2, ..ClientConfig::default() }
}

fn client(me: [u8; 32], other: [u8; 32], name: &str, persisted: PersistedState) -> ClientState {
    let contact = Contact::new(name, *Identity::from_seed(&other).public(), vec![]).unwrap();
    ClientState::new(Identity::from_seed(&me), vec![contact], persisted, config()).unwrap()
}

fn pair_of_clients(rng: &mut ChaCha20Rng) -> (ClientState, ClientState) {
    let mut alice = client(ALICE, BOB, "bob", PersistedState::default());
    let mut bob = client(BOB, ALICE, "alice", PersistedState::default());
    alice.poll_subscribe(T0, rng).unwrap().unwrap();
    bob.poll_subscribe(T0, rng).unwrap().unwrap();
    (alice, bob)
}

fn with_byte(proof: &Proof, offset: usize, f: impl Fn(u8) -> u8) -> Proof {
    let mut bytes = *proof.as_bytes();
    bytes[offset] = f(bytes[offset]);
    Proof::from_slice(&bytes).unwrap()
}

#[test]
fn messages_flow_both_ways() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (mut alice, mut bob) = pair_of_clients(&mut rng);
    let to_bob = alice.prepare_send("bob", "hi Bob", T0, &mut rng).unwrap();
    assert_eq!(to_bob.len(), 1);
    let got = bob.handle_deliver(to_bob[0].view()).unwrap();
    assert_eq!(
        (got.contact.as_str(), got.text.as_str(), got.window_start_s, got.seq),
        ("alice", "hi Bob", 1_700_000_000, 0)
    );
    let to_alice = bob.prepare_send("alice", "hi Alice", T0 + 20, &mut rng).unwrap();
    let got = alice.handle_deliver(to_alice[0].view()).unwrap();
    assert_eq!((got.contact.as_str(), got.text.as_str(), got.window_start_s), ("bob", "hi Alice", 1_700_000_020));
    // Our own proofs are not for us: the direction is part of the delivery id.
    assert_eq!(alice.open(to_bob[0].view()), Err(OpenError::UnknownCommit));
    assert_eq!(bob.stats().messages, 1);
}

#[test]
fn long_messages_split_and_reassemble_in_any_order() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let (mut alice, mut bob) = pair_of_clients(&mut rng);
    let text: String = (0..CHUNK_LEN_MAX * 2 + 10).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let proofs = alice.prepare_send("bob", &text, T0, &mut rng).unwrap();
    assert_eq!(proofs.len(), 3);
    assert_eq!(bob.handle_deliver(proofs[2].view()), None);
    assert_eq!(bob.handle_deliver(proofs[0].view()), None);
    let got = bob.handle_deliver(proofs[1].view()).unwrap();
    assert_eq!(got.text, text);
    assert_eq!(got.seq, 0);
    // The next message continues after the three sequence numbers used.
    let next = alice.prepare_send("bob", "after", T0, &mut rng).unwrap();
    assert_eq!(bob.open(next[0].view()).unwrap().id.seq, 3);
    let too_long = "x".repeat(MESSAGE_LEN_MAX + 1);
    assert_eq!(
        alice.prepare_send("bob", &too_long, T0 + 10, &mut rng),
        Err(SendError::MessageTooLong { len: MESSAGE_LEN_MAX + 1, max: MESSAGE_LEN_MAX })
    );
    // A full-size message uses every sequence number of a fresh window.
    let full = "y".repeat(MESSAGE_LEN_MAX);
    let proofs = alice.prepare_send("bob", &full, T0 + 10, &mut rng).unwrap();
    assert_eq!(proofs.len(), SEQS_PER_WINDOW as usize);
    let mut out = None;
    for p in proofs.iter().rev() {
        out = out.or(bob.handle_deliver(p.view()));
    }
    assert_eq!(out.unwrap().text, full);
}

#[test]
fn typed_rejections() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let (mut alice, mut bob) = pair_of_clients(&mut rng);
    let proof = alice.prepare_send("bob", "original", T0, &mut rng).unwrap().remove(0);

    // Tampered ciphertext.
    let tampered = with_byte(&proof, proof_layout::CIPHERTEXT + 100, |b| b ^ 0x20);
    assert_eq!(bob.open(tampered.view()), Err(OpenError::Envelope(EnvelopeError::Tampered)));
    let tag_tampered = with_byte(&proof, proof_layout::LEN - 1, |b| b ^ 1);
    assert_eq!(bob.open(tag_tampered.view()), Err(OpenError::Envelope(EnvelopeError::Tampered)));
    // Another window in the header (a relay replaying the proof into a later window).
    let moved = with_byte(&proof, proof_layout::WINDOW_START + 7, |b| b.wrapping_add(10));
    assert_eq!(bob.open(moved.view()), Err(OpenError::WrongWindow { expected: 1_700_000_000, got: 1_700_000_010 }));
    // Bucket or fingerprint not those of the commit.
    let rebucketed = with_byte(&proof, proof_layout::BUCKET + 1, |b| b ^ 1);
    assert_eq!(bob.open(rebucketed.view()), Err(OpenError::HeaderMismatch));
    let refingerprinted = with_byte(&proof, proof_layout::FINGERPRINT, |b| b ^ 1);
    assert_eq!(bob.open(refingerprinted.view()), Err(OpenError::HeaderMismatch));
    // A dummy, and a proof for someone else.
    assert_eq!(bob.open(alice.dummy_proof(T0, &mut rng).view()), Err(OpenError::UnknownCommit));

    // None of those was consumed: the original still opens, once.
    assert_eq!(bob.handle_deliver(proof.view()).unwrap().text, "original");
    assert_eq!(bob.open(proof.view()), Err(OpenError::Replayed));
    assert_eq!(bob.handle_deliver(proof.view()), None);
    // Dedup comes before decryption: a tampered copy of an accepted delivery counts as a replay.
    assert_eq!(bob.handle_deliver(tampered.view()), None);
    let s = bob.stats();
    assert_eq!((s.messages, s.replayed, s.bad_envelope), (1, 2, 0));
}

/// Someone who knows the pairwise secret (leaked) but not Alice's key tries to pass as Alice.
#[test]
fn wrong_sender_key_is_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let (_, bob) = pair_of_clients(&mut rng);
    let alice = Identity::from_seed(&ALICE);
    let mallory = Identity::from_seed(&[0x66; 32]);
    let pairing = pair(&alice, Identity::from_seed(&BOB).public()).unwrap();
    let id = DeliveryId { window_start_s: 1_700_000_000, direction: pairing.send_direction, seq: 0 };
    let secrets = DeliverySecrets::derive(&pairing.secret, id);
    // Alice's blinded key and commit are computable from public data and K.
    let alice_y = secrets.blinded_public(alice.public()).compress().to_bytes();
    let routing = Routing::new(secrets.commit(&alice_y), id.window_start_s, 64);
    let mallory_y = secrets.blinded_public(mallory.public()).compress().to_bytes();
    let (mallory_x, _) = secrets.blinded_secret(&mallory);

    let forge = |claimed_y: &[u8; 32]| -> Proof {
        let mut plain = [0u8; layout::END];
        plain[..32].copy_from_slice(claimed_y);
        plain[layout::VERSION] = ENVELOPE_VERSION;
        plain[layout::PART_COUNT] = 1;
        plain[layout::CHUNK_LEN + 1] = 4;
        plain[layout::CHUNK..layout::CHUNK + 4].copy_from_slice(b"evil");
        let ctx = ChallengeContext {
            commit: &routing.commit,
            window_start_s: id.window_start_s,
            body: &plain[layout::BODY..],
        };
        let proof = schnorr::prove(&mallory_x, claimed_y, &ctx, &[1; 32]);
        plain[layout::PROOF..layout::BODY].copy_from_slice(&proof);
        let seal = SealKey::derive(&pairing.secret, id);
        let key = ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, seal.key.as_ref()).unwrap(),
        );
        let mut ct = [0u8; CIPHERTEXT_LEN];
        ct[..layout::END].copy_from_slice(&plain);
        let tag = key
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(seal.nonce),
                ring::aead::Aad::from(routing.aad()),
                &mut ct[..layout::END],
            )
            .unwrap();
        ct[layout::END..].copy_from_slice(tag.as_ref());
        Proof::new(routing.bucket, routing.window_start_s, &routing.commit, &routing.fingerprint, &ct)
    };
    // Her own blinded key in the envelope: not Alice's.
    assert_eq!(bob.open(forge(&mallory_y).view()), Err(OpenError::Envelope(EnvelopeError::WrongSenderKey)));
    // Alice's blinded key, but a proof made with Mallory's secret.
    assert_eq!(
        bob.open(forge(&alice_y).view()),
        Err(OpenError::Envelope(EnvelopeError::BadProof(SchnorrError::Mismatch)))
    );
}

#[test]
fn send_counters_never_repeat() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let (mut alice, bob) = pair_of_clients(&mut rng);
    let mut seqs = Vec::new();
    for i in 0..SEQS_PER_WINDOW {
        let p = alice.prepare_send("bob", &format!("m{i}"), T0 + 1, &mut rng).unwrap();
        seqs.push(bob.open(p[0].view()).unwrap().id.seq);
    }
    assert_eq!(seqs, (0..SEQS_PER_WINDOW).collect::<Vec<_>>());
    assert_eq!(
        alice.prepare_send("bob", "one too many", T0 + 2, &mut rng),
        Err(SendError::WindowFull { free: 0, retry_at_s: 1_700_000_010 })
    );
    assert!(alice.is_dirty());

    // A restart resumes the counter; a clock that went back is refused.
    let saved = alice.persisted();
    let mut alice = client(ALICE, BOB, "bob", saved.clone());
    assert!(matches!(alice.prepare_send("bob", "again", T0 + 3, &mut rng), Err(SendError::WindowFull { .. })));
    assert_eq!(
        alice.prepare_send("bob", "past", T0 - 10, &mut rng),
        Err(SendError::ClockWentBack { last_window_s: 1_700_000_000, now_window_s: 1_699_999_990 })
    );
    let p = alice.prepare_send("bob", "next window", T0 + 10, &mut rng).unwrap();
    assert_eq!(
        bob.open(p[0].view()).unwrap().id,
        DeliveryId { seq: 0, window_start_s: 1_700_000_010, ..bob.open(p[0].view()).unwrap().id }
    );
    assert_eq!(alice.prepare_send("carol", "x", T0, &mut rng), Err(SendError::UnknownContact("carol".into())));
    assert_eq!(alice.prepare_send("bob", "", T0 + 10, &mut rng), Err(SendError::EmptyMessage));
    let json = serde_json::to_string(&saved).unwrap();
    assert_eq!(serde_json::from_str::<PersistedState>(&json).unwrap(), saved);
}

/// Bob subscribes, goes offline; Alice sends; Bob restarts from his saved state later and opens what a
/// FETCH would return (the relay kept it because Bob's filters already covered that future window).
#[test]
fn offline_recipient_opens_fetched_proofs_after_restart_and_dedups() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let (mut alice, mut bob) = pair_of_clients(&mut rng);
    let frames = bob.poll_subscribe(T0 + 1000, &mut rng).unwrap().unwrap();
    let saved = bob.persisted();
    drop(bob);

    let sent_at = T0 + 1000 + 40;
    let proofs = alice.prepare_send("bob", "while you were away", sent_at, &mut rng).unwrap();
    let p = proofs[0].view();
    assert!(covered(&frames, p.bucket(), p.window_start(), p.fingerprint()), "subscription covers a future window");

    let mut bob = client(BOB, ALICE, "alice", saved);
    // The subscriber secrets (so the ids and the CLAIMs that let a connection use them) and the cursors
    // survive the restart.
    let id = frames[0].subscriber;
    assert_eq!(bob.subscriber_ids(), &[id][..]);
    assert_eq!(bob.fetch_cursor(&id), 0);
    bob.set_fetch_cursor(id, 42);
    assert_eq!(client(BOB, ALICE, "alice", bob.persisted()).fetch_cursor(&id), 42);
    bob.advance(sent_at + 30);
    let got = bob.handle_deliver(p).unwrap();
    assert_eq!(got.text, "while you were away");
    let mut bob = client(BOB, ALICE, "alice", bob.persisted());
    bob.advance(sent_at + 31);
    assert_eq!(bob.open(p), Err(OpenError::Replayed));
}

/// A restart while a multi-part message is incomplete must not lose it: the held part is saved as not
/// received and the FETCH cursor as 0, so the next FETCH brings the part back.
#[test]
fn partial_message_survives_a_restart() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let (mut alice, mut bob) = pair_of_clients(&mut rng);
    let id = bob.subscriber_ids()[0];
    bob.set_fetch_cursor(id, 42);
    let text: String = (0..CHUNK_LEN_MAX + 5).map(|i| char::from(b'A' + (i % 26) as u8)).collect();
    let proofs = alice.prepare_send("bob", &text, T0, &mut rng).unwrap();
    assert_eq!(proofs.len(), 2);
    assert_eq!(bob.handle_deliver(proofs[0].view()), None);
    assert!(bob.has_partial_messages());
    let saved = bob.persisted();
    assert_eq!(saved.contacts.values().next().unwrap().received, Vec::<(u64, u32)>::new());
    assert_eq!(saved.fetch_cursors.values().copied().collect::<Vec<_>>(), vec![0]);
    // In memory the cursor is unchanged and the part is still a duplicate.
    assert_eq!(bob.fetch_cursor(&id), 42);
    assert_eq!(bob.open(proofs[0].view()), Err(OpenError::Replayed));

    let mut bob = client(BOB, ALICE, "alice", saved);
    bob.advance(T0);
    assert_eq!(bob.handle_deliver(proofs[1].view()), None);
    let got = bob.handle_deliver(proofs[0].view()).unwrap();
    assert_eq!((got.contact.as_str(), got.text.as_str(), got.seq), ("alice", text.as_str(), 0));
    assert!(!bob.has_partial_messages());
    bob.set_fetch_cursor(id, 43);
    let saved = bob.persisted();
    assert_eq!(saved.contacts.values().next().unwrap().received, vec![(1_700_000_000, 0), (1_700_000_000, 1)]);
    assert_eq!(saved.fetch_cursors.values().copied().collect::<Vec<_>>(), vec![43]);
}

fn covered(frames: &[Subscribe], bucket: u16, window: u64, fp: &[u8; 8]) -> bool {
    frames.iter().flat_map(|f| &f.entries).any(|e| {
        e.bucket == bucket && (e.window_from_s..=e.window_to_s).contains(&window) && e.filter.contains_fingerprint(fp)
    })
}

#[test]
fn padded_subscriptions_cover_every_bucket_and_every_expected_delivery() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let (mut alice, mut bob) = pair_of_clients(&mut rng);
    let frames = bob.subscribe_now(T0, &mut rng).unwrap();
    let limits = bob.config().limits;
    let entries: Vec<_> = frames.iter().flat_map(|f| &f.entries).collect();
    let per_bucket: Vec<usize> = (0..64u16).map(|b| entries.iter().filter(|e| e.bucket == b).count()).collect();
    assert!(per_bucket.iter().all(|&n| n == per_bucket[0] && n >= 1), "{per_bucket:?}");
    for f in &frames {
        assert!(f.entries.len() <= usize::from(limits.entries_per_subscribe_max));
        for b in 0..64u16 {
            assert!(f.entries.iter().filter(|e| e.bucket == b).count() <= usize::from(limits.filters_per_bucket_max));
        }
    }
    // Every filter holds exactly 60 items, real or padding: bit counts differ only by hash collisions
    // (≈ 1024·(1 − e^{−180/1024}) ≈ 165 bits).
    assert!(entries.iter().all(|e| (140..=185).contains(&e.filter.count_ones())), "popcounts vary");
    // All windows from the previous to current + ahead, whatever Alice's sequence numbers.
    for (dt, seqs) in [(0u64, 1usize), (30, 3), (60, 1)] {
        let text = "z".repeat(CHUNK_LEN_MAX * (seqs - 1) + 1);
        for p in alice.prepare_send("bob", &text, T0 + dt, &mut rng).unwrap() {
            let v = p.view();
            assert!(covered(&frames, v.bucket(), v.window_start(), v.fingerprint()), "dt {dt}");
        }
    }
    assert_eq!(
        (frames[0].entries[0].window_from_s, entries.iter().map(|e| e.window_to_s).max()),
        (1_699_999_990, Some(1_700_000_060))
    );
}

#[test]
fn matching_only_mode_registers_fewer_buckets() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let contact = Contact::new("alice", *Identity::from_seed(&ALICE).public(), vec![]).unwrap();
    let cfg = ClientConfig {
        subscribe_mode: SubscribeMode::DangerMatchingBucketsOnly,
        ahead_windows: 3,
        renew_every_windows: 1,
        ..config()
    };
    let mut bob = ClientState::new(Identity::from_seed(&BOB), vec![contact], PersistedState::default(), cfg).unwrap();
    let frames = bob.subscribe_now(T0, &mut rng).unwrap();
    let buckets: std::collections::BTreeSet<u16> = frames.iter().flat_map(|f| &f.entries).map(|e| e.bucket).collect();
    // 5 windows × 8 expected deliveries land in at most 40 of the 64 buckets (≈ 30 expected).
    assert!((10..=40).contains(&buckets.len()), "{}", buckets.len());
}

#[test]
fn renewal_schedule() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut bob = client(BOB, ALICE, "alice", PersistedState::default());
    assert_eq!(bob.next_renewal_at_s(), 0);
    let first = bob.poll_subscribe(T0, &mut rng).unwrap().unwrap();
    // Sent in window 1_700_000_000; renew every 2 windows, 2 s before the boundary.
    assert_eq!(bob.next_renewal_at_s(), 1_700_000_018);
    assert_eq!(bob.poll_subscribe(1_700_000_017, &mut rng).unwrap(), None);
    let renewed = bob.poll_subscribe(1_700_000_018, &mut rng).unwrap().unwrap();
    // The renewal is for the window being entered: it starts one window before it.
    let from = |fs: &[Subscribe]| fs.iter().flat_map(|f| &f.entries).map(|e| e.window_from_s).min();
    let to = |fs: &[Subscribe]| fs.iter().flat_map(|f| &f.entries).map(|e| e.window_to_s).max();
    assert_eq!((from(&first), to(&first)), (Some(1_699_999_990), Some(1_700_000_060)));
    assert_eq!((from(&renewed), to(&renewed)), (Some(1_700_000_010), Some(1_700_000_080)));
    assert_eq!(first[0].subscriber, renewed[0].subscriber, "subscriber ids are stable (FETCH capability)");
    // Filters of a grid chunk both subscriptions cover are bit-for-bit the same (padding included), so
    // comparing renewals tells a relay nothing about which bits are real.
    let first_entries: Vec<_> = first.iter().flat_map(|f| &f.entries).collect();
    let shared: Vec<_> = renewed.iter().flat_map(|f| &f.entries).filter(|e| e.window_to_s <= 1_700_000_070).collect();
    assert_eq!(shared.len(), 64, "one filter per bucket for the chunk [1_700_000_000, 1_700_000_070]");
    for e in shared {
        assert!(first_entries.iter().any(|f| f.bucket == e.bucket && f.filter == e.filter), "{e:?}");
    }
    assert_eq!(bob.next_renewal_at_s(), 1_700_000_038);
    // Enrolling a contact makes a renewal due at once.
    bob.add_contact(Contact::new("carol", *Identity::from_seed(&[0xC4; 32]).public(), vec![]).unwrap()).unwrap();
    assert_eq!(bob.next_renewal_at_s(), 0);
    // Expectations slid with the horizon and cover both contacts.
    bob.poll_subscribe(1_700_000_019, &mut rng).unwrap().unwrap();
    assert_eq!(
        bob.expected_len(),
        2 * SEQS_PER_WINDOW as usize * bob.expected_windows().map(|(a, b)| (b - a) / 10 + 1).unwrap() as usize
    );
}

/// The state file keeps subscriber secrets, and a restored state claims the same ids with them.
#[test]
fn subscriber_secrets_persist_and_claim_their_ids() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let (_, bob) = pair_of_clients(&mut rng);
    let saved = bob.persisted();
    assert_eq!(saved.version, 2);
    assert!(saved.subscriber_ids.is_empty(), "bare ids are no longer written");
    assert_eq!(saved.subscriber_secrets.len(), bob.subscriber_ids().len());
    assert!(saved.subscriber_secrets.iter().all(|s| s.len() == 64));
    let restored = client(BOB, ALICE, "alice", saved);
    assert_eq!(restored.subscriber_ids(), bob.subscriber_ids());
    let id = restored.subscriber_ids()[0];
    let claim = restored.claim(&id, &[1; 16], &[2; 16], &mut rng).expect("a claim for an id of the state");
    assert_eq!(tessera::proto::verify_claim(&claim, &[1; 16], &[2; 16]), Ok(id));
    assert!(restored.claim(&tessera::proto::SubscriberId([9; 16]), &[1; 16], &[2; 16], &mut rng).is_none());
    // A malformed secret is refused.
    let mut bad = bob.persisted();
    bad.subscriber_secrets[0] = "zz".into();
    let contact = Contact::new("alice", *Identity::from_seed(&ALICE).public(), vec![]).unwrap();
    assert!(ClientState::new(Identity::from_seed(&BOB), vec![contact], bad, config()).is_err());
}

/// A version-1 state file (bare subscriber ids, which no CLAIM can be made for): the ids and their cursors
/// are dropped, every contact counts as never covered, and the next subscription draws new secrets and
/// catches up every retained window; the file is rewritten as version 2.
#[test]
fn a_version_1_state_file_regenerates_its_secrets_and_subscribes_again() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let (_, bob) = pair_of_clients(&mut rng);
    let mut old = bob.persisted();
    old.version = 1;
    old.subscriber_ids = vec!["ab".repeat(16)];
    old.subscriber_secrets.clear();
    old.fetch_cursors = [("ab".repeat(16), 77)].into();
    let mut bob = client(BOB, ALICE, "alice", old);
    assert!(bob.subscriber_ids().is_empty(), "the old ids are dropped");
    assert!(bob.is_dirty(), "the migrated state is written back");
    let now = T0 + 120;
    assert_eq!(bob.next_renewal_at_s(), 0, "a subscription is due at once");
    let catch_up = bob.catch_up(now, &mut rng).unwrap();
    assert!(!catch_up.frames.is_empty(), "every retained window is caught up with the new ids");
    let frames = bob.subscribe_now(now, &mut rng).unwrap();
    let ids = bob.subscriber_ids().to_vec();
    assert!(!ids.is_empty() && frames.iter().all(|f| ids.contains(&f.subscriber)));
    assert!(!ids.contains(&tessera::proto::SubscriberId([0xab; 16])));
    let saved = bob.persisted();
    assert_eq!((saved.version, saved.subscriber_secrets.len()), (2, ids.len()));
    assert!(saved.subscriber_ids.is_empty() && !saved.fetch_cursors.values().any(|&c| c == 77));
    // An unknown version is still refused.
    let mut future = saved;
    future.version = 3;
    let contact = Contact::new("alice", *Identity::from_seed(&ALICE).public(), vec![]).unwrap();
    assert!(ClientState::new(Identity::from_seed(&BOB), vec![contact], future, config()).is_err());
}
