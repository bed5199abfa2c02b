//! Client envelope costs, per core: seal + prove (sender), open + verify (recipient), the recipient's
//! per-delivery precomputation, and ring vs the aes-gcm crate for the 512-byte AES-256-GCM seal.
//!
//! Times are thread CPU time (see `ThreadCpuTime`), so throughput is per core even on a shared machine.
//! Targets (issue 6): seal + prove ≥ 50,000/s, open + verify ≥ 30,000/s per core. Run with
//! `cargo bench --bench envelope -- --warm-up-time 1 --measurement-time 3`; figures in docs/PERFORMANCE.md
//! §Client envelope.

use std::hint::black_box;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::{cpu_time, ThreadCpuTime};
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use tessera::client::delivery::{DeliveryId, DeliverySecrets, Routing};
use tessera::client::envelope::{self, ExpectedKey, Part};
use tessera::client::expect::{expect_window, half_point, ExpectSource};
use tessera::client::{pair, ClientConfig, ClientState, Contact, Direction, Identity, PersistedState};
use tessera::proto::{encode_message, Frame};

fn envelope_benches(c: &mut Criterion<ThreadCpuTime>) {
    let alice = Identity::from_seed(&[0xA1; 32]);
    let bob = Identity::from_seed(&[0xB0; 32]);
    let k = pair(&alice, bob.public()).expect("distinct keys").secret;
    let id = DeliveryId { window_start_s: 1_700_000_000, direction: Direction::LowToHigh, seq: 0 };
    let message = [b'm'; 120];
    let part = Part::new(0, 1, &message).expect("valid part");

    let proof = envelope::seal(&alice, &k, id, 64, part, &[7; 32]);
    let secrets = DeliverySecrets::derive(&k, id);
    let point = secrets.blinded_public(alice.public());
    let expected = ExpectedKey { point, bytes: point.compress().to_bytes() };
    let routing = Routing::new(secrets.commit(&expected.bytes), id.window_start_s, 64);
    assert!(envelope::open(&k, id, &expected, &routing, proof.view().ciphertext()).is_ok());

    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Elements(1));
    group.bench_function("seal_prove", |b| {
        b.iter(|| envelope::seal(black_box(&alice), &k, black_box(id), 64, part, &[7; 32]))
    });
    group.bench_function("open_verify", |b| {
        b.iter(|| envelope::open(&k, id, &expected, &routing, black_box(proof.view().ciphertext())))
    });
    let half = half_point(alice.public());
    let source = ExpectSource {
        contact: 0,
        public: alice.public(),
        public_half: &half,
        secret: &k,
        direction: Direction::LowToHigh,
    };
    group.throughput(Throughput::Elements(tessera::client::SEQS_PER_WINDOW.into()));
    group.bench_function("expect_window", |b| b.iter(|| expect_window(&source, black_box(1_700_000_000), 64)));
    group.finish();
}

/// AES-256-GCM over one envelope (496 B + tag, 42-byte AAD): `per_delivery_key` builds the key first, as
/// every seal and open does (one key per delivery); `prekeyed` is the bulk cipher alone (docs/FOUNDATIONS.md §6).
fn aead_benches(c: &mut Criterion<ThreadCpuTime>) {
    let key = [0x42u8; 32];
    let nonce = [0x24u8; 12];
    let aad = [0x11u8; 42];
    let mut group = c.benchmark_group("aes256gcm_seal_512B");
    group.throughput(Throughput::Bytes(512));
    let ring_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("32-byte key"));
    let crate_key = Aes256Gcm::new((&key).into());
    let mut buf = [0u8; 496];
    group.bench_function("ring_per_delivery_key", |b| {
        b.iter(|| {
            let sealing = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, black_box(&key)).expect("32-byte key"));
            sealing
                .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
                .expect("seal")
        })
    });
    group.bench_function("aes_gcm_crate_per_delivery_key", |b| {
        b.iter(|| {
            let cipher = Aes256Gcm::new(black_box(&key).into());
            cipher.encrypt_in_place_detached((&nonce).into(), &aad, &mut buf).expect("seal")
        })
    });
    group.bench_function("ring_prekeyed", |b| {
        b.iter(|| {
            ring_key
                .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), black_box(&mut buf))
                .expect("seal")
        })
    });
    group.bench_function("aes_gcm_crate_prekeyed", |b| {
        b.iter(|| crate_key.encrypt_in_place_detached((&nonce).into(), &aad, black_box(&mut buf)).expect("seal"))
    });
    group.finish();
}

/// Renewal cost with the default configuration (one-hour horizon, padded every-bucket mode): planning the
/// filters of `n` contacts, and the size of the SUBSCRIBE frames. Under `cargo test --benches` (no
/// `--bench` flag) the horizon shrinks so the one-iteration run stays fast in the debug profile.
fn renewal_benches(c: &mut Criterion<ThreadCpuTime>) {
    let full = std::env::args().any(|a| a == "--bench");
    let base = ClientConfig::default();
    let config =
        if full { base } else { ClientConfig { ahead_windows: 3, behind_windows: 3, renew_every_windows: 1, ..base } };
    let mut group = c.benchmark_group("renewal");
    for n in [1usize, 5] {
        let contacts: Vec<Contact> = (0..n)
            .map(|i| {
                Contact::new(&format!("c{i}"), *Identity::from_seed(&[i as u8 + 1; 32]).public(), vec![])
                    .expect("contact")
            })
            .collect();
        let mut state = ClientState::new(Identity::from_seed(&[0xEE; 32]), contacts, PersistedState::default(), config)
            .expect("state");
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let now_s = 1_700_000_003;
        let frames = state.subscribe_now(now_s, &mut rng).expect("plan fits");
        let entries: usize = frames.iter().map(|f| f.entries.len()).sum();
        let bytes = encode_message(&frames.iter().cloned().map(Frame::Subscribe).collect::<Vec<_>>()).len();
        eprintln!(
            "renewal/{n}_contacts: {} expected deliveries, {} subscriber ids, {entries} entries, {bytes} bytes",
            state.expected_len(),
            frames.len()
        );
        group.bench_function(format!("subscribe_now_{n}_contacts"), |b| {
            b.iter(|| state.subscribe_now(black_box(now_s), &mut rng).expect("plan fits"))
        });
    }
    group.finish();
}

/// Where the time of an envelope goes, plus a calibration point: docs/FOUNDATIONS.md §6 measured SHA-256 of 36 bytes
/// at 47 ns on an idle core, so its figure here says how loaded the machine was during the run.
fn component_benches(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("components");
    group.bench_function("calibration_sha256_36B", |b| {
        b.iter(|| <sha2::Sha256 as sha2::Digest>::digest(black_box([7u8; 36])))
    });
    let x = Scalar::from_bytes_mod_order([9; 32]);
    let p = &x * RISTRETTO_BASEPOINT_TABLE;
    group.bench_function("fixed_base_mult", |b| b.iter(|| black_box(&x) * RISTRETTO_BASEPOINT_TABLE));
    group.bench_function("compress", |b| b.iter(|| black_box(&p).compress()));
    group.bench_function("double_and_compress_batch_2", |b| {
        b.iter(|| RistrettoPoint::double_and_compress_batch(black_box(&[p, p])))
    });
    group.bench_function("vartime_double_base_mult", |b| {
        b.iter(|| RistrettoPoint::vartime_double_scalar_mul_basepoint(black_box(&x), &p, &x))
    });
    let prk = [3u8; 32];
    group.bench_function("hkdf_expand_32B", |b| {
        b.iter(|| {
            let mut out = [0u8; 32];
            tessera::client::kdf::hkdf_expand(black_box(&prk), &[b"label", &[0u8; 13]], &mut out);
            out
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = cpu_time();
    targets = envelope_benches, aead_benches, component_benches, renewal_benches
}
criterion_main!(benches);
