//! Matching alone: Bloom positions given (computed once per proof), find every filter of one bucket that
//! contains them. Bit-sliced index with each available SIMD kernel vs the scalar per-filter oracle vs the
//! one-filter-at-a-time fastbloom baseline (docs/FOUNDATIONS.md §6: ~720 ns for 75 filters), at 1, 75, 1,000 and
//! 10,000 subscribers (one 60-fingerprint filter each, m = 1024, k = 3). 10% of the queries are members.
//!
//! fastbloom is measured two ways: `contains(fp)` (hashes the item once per filter, as a relay keeping one
//! filter object per subscriber does) and `contains_hash(h)` (hash once per proof, probe each filter).
//!
//! `cargo bench --bench match -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tessera::index::bitsliced::BitSlicedIndex;
use tessera::index::scalar::ScalarIndex;
use tessera::index::simd::Kernel;
use tessera::index::BucketIndex;
use tessera::proto::derive::{fingerprint_positions, BloomPositions};
use tessera::proto::{BloomFilter, BloomParams};

/// Queries per measured iteration (throughput is per query = per proof).
const QUERIES: usize = 256;
const FINGERPRINTS_PER_FILTER: usize = 60;

/// `cargo test --benches` runs each bench once without `--bench`: keep that mode small.
fn quick_test_mode() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

struct Setup {
    filters: Vec<BloomFilter>,
    fast: Vec<fastbloom::BloomFilter>,
    queries: Vec<(u64, BloomPositions)>,
}

fn setup(subscribers: usize, rng: &mut ChaCha8Rng) -> Setup {
    let params = BloomParams::default();
    let mut filters = Vec::with_capacity(subscribers);
    let mut fast = Vec::with_capacity(subscribers);
    let mut members = Vec::new();
    for _ in 0..subscribers {
        let mut f = BloomFilter::new(params);
        let mut fb = fastbloom::BloomFilter::with_num_bits(params.m_bits as usize).seed(&1).hashes(params.k as u32);
        for _ in 0..FINGERPRINTS_PER_FILTER {
            let fp: u64 = rng.gen();
            f.insert_fingerprint(&fp.to_be_bytes());
            fb.insert(&fp);
            members.push(fp);
        }
        filters.push(f);
        fast.push(fb);
    }
    let queries = (0..QUERIES)
        .map(|i| {
            let fp = if i % 10 == 0 { members[rng.gen_range(0..members.len())] } else { rng.gen() };
            (fp, fingerprint_positions(&fp.to_be_bytes(), params.m_bits, params.k))
        })
        .collect();
    Setup { filters, fast, queries }
}

fn matching(c: &mut Criterion) {
    let sizes: &[usize] = if quick_test_mode() { &[1, 75] } else { &[1, 75, 1_000, 10_000] };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut group = c.benchmark_group("match");
    group.throughput(Throughput::Elements(QUERIES as u64));
    for &subscribers in sizes {
        let s = setup(subscribers, &mut rng);
        for kernel in Kernel::available() {
            let mut index = BitSlicedIndex::with_kernel(BloomParams::default(), kernel);
            for f in &s.filters {
                index.insert(f);
            }
            group.bench_with_input(
                BenchmarkId::new(format!("bitsliced_{}", kernel.name()), subscribers),
                &s,
                |b, s| {
                    b.iter(|| {
                        let mut hits = 0u32;
                        for (_, positions) in &s.queries {
                            index.for_each_match(positions, |_| hits += 1);
                        }
                        black_box(hits)
                    })
                },
            );
        }
        let mut scalar = ScalarIndex::new();
        for f in &s.filters {
            scalar.insert(f);
        }
        group.bench_with_input(BenchmarkId::new("scalar_per_filter", subscribers), &s, |b, s| {
            b.iter(|| {
                let mut hits = 0u32;
                for (_, positions) in &s.queries {
                    scalar.for_each_match(positions, |_| hits += 1);
                }
                black_box(hits)
            })
        });
        group.bench_with_input(BenchmarkId::new("fastbloom_contains", subscribers), &s, |b, s| {
            b.iter(|| {
                let mut hits = 0u32;
                for (fp, _) in &s.queries {
                    hits += s.fast.iter().filter(|f| f.contains(fp)).count() as u32;
                }
                black_box(hits)
            })
        });
        group.bench_with_input(BenchmarkId::new("fastbloom_contains_hash", subscribers), &s, |b, s| {
            b.iter(|| {
                let mut hits = 0u32;
                for (fp, _) in &s.queries {
                    let h = s.fast[0].source_hash(fp);
                    hits += s.fast.iter().filter(|f| f.contains_hash(h)).count() as u32;
                }
                black_box(hits)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
