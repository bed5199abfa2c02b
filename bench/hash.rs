//! The derivation hashing (DESIGN.md §2, §6): per proof SHA-256 of the commit (32 B), of commit ‖ window
//! (40 B) and k = 3 × fingerprint ‖ i (10 B). Compares sha2 0.10 (`asm`), sha2 0.11, ring, sha2's raw
//! `compress256` on a pre-padded block, and the engine's multi-buffer SHA-NI kernel at 1–4 lanes.
//! Throughput is in hashes; every input is one SHA-256 block.
//!
//! `cargo bench --bench hash -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tessera::index::simd::sha256::{one_block_states, pad_one_block, Block, HashBackend};

/// Hashes per measured iteration: one chunk of 64 proofs × 5 hashes, as the engine batches them.
const HASHES: usize = 320;

fn messages() -> Vec<Vec<u8>> {
    (0..HASHES)
        .map(|i| {
            let len = match i % 5 {
                0 => 32,
                1 => 40,
                _ => 10,
            };
            (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
        })
        .collect()
}

fn hash(c: &mut Criterion) {
    let msgs = messages();
    let blocks: Vec<Block> = msgs.iter().map(|m| pad_one_block(m)).collect();
    let mut group = c.benchmark_group("hash");
    group.throughput(Throughput::Elements(HASHES as u64));

    group.bench_function("sha2_0.10_asm_digest", |b| {
        use sha2::{Digest, Sha256};
        b.iter(|| {
            for m in &msgs {
                black_box(Sha256::digest(black_box(m)));
            }
        })
    });
    group.bench_function("sha2_0.11_digest", |b| {
        use sha2_v011::{Digest, Sha256};
        b.iter(|| {
            for m in &msgs {
                black_box(Sha256::digest(black_box(m)));
            }
        })
    });
    group.bench_function("ring_digest", |b| {
        b.iter(|| {
            for m in &msgs {
                black_box(ring::digest::digest(&ring::digest::SHA256, black_box(m)));
            }
        })
    });
    let mut states = vec![[0u32; 8]; HASHES];
    group.bench_function("sha2_0.10_compress256_padded", |b| {
        b.iter(|| one_block_states(HashBackend::Portable, black_box(&blocks), &mut states))
    });
    for lanes in 1..=4u8 {
        let backend = HashBackend::ShaNi { lanes };
        if !backend.is_available() {
            continue;
        }
        group.bench_function(format!("tessera_sha_ni_x{lanes}"), |b| {
            b.iter(|| one_block_states(backend, black_box(&blocks), &mut states))
        });
    }
    group.finish();
}

criterion_group!(benches, hash);
criterion_main!(benches);
