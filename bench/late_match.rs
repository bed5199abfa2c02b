//! Late matching (issue 12): one late SUBSCRIBE entry (a 60-fingerprint filter, m = 1024, k = 3) matched against
//! one retained hour of its bucket at the W-e2e rate — 100,000 proofs/s over 64 buckets = 1,562.5 proofs/s per
//! bucket, 360 windows of 10 s, 5,625,000 proofs — through `RetainedIndex::scan` in steps of `LATE_STEP_PROOFS`,
//! as the relay runs it. Reports the whole scan (target ≤ 100 ms of shard time) and one step (what a PUBLISH can
//! wait behind it: target ≤ 1 ms), plus the index's memory per proof.
//!
//! `cargo bench --bench late_match -- --warm-up-time 1 --measurement-time 5`.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tessera::engine::{RetainedIndex, ScanCursor};
use tessera::log::record::RecordSeq;
use tessera::proto::derive::fingerprint_positions;
use tessera::proto::{BloomFilter, BloomParams};
use tessera::server::shard::LATE_STEP_PROOFS;

const WINDOW_S: u64 = 10;
const WINDOWS_PER_HOUR: u64 = 360;
/// 100,000 proofs/s over 64 buckets, for 10 s.
const PROOFS_PER_BUCKET_WINDOW: u64 = 15_625;
const FINGERPRINTS_PER_FILTER: usize = 60;

/// `cargo test --benches` runs each bench once without `--bench`: keep that mode small.
fn quick_test_mode() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// One bucket's retained hour (the shard's other buckets' proofs interleave in seq: stride 64).
fn bucket_hour(windows: u64, rng: &mut ChaCha8Rng) -> (RetainedIndex, BloomFilter) {
    let params = BloomParams::default();
    let mut index = RetainedIndex::new(1, params.k as usize);
    let mut filter = BloomFilter::new(params);
    let mut seq = 0u64;
    for w in 0..windows {
        for _ in 0..PROOFS_PER_BUCKET_WINDOW {
            let fp: u64 = rng.gen();
            let positions = fingerprint_positions(&fp.to_be_bytes(), params.m_bits, params.k);
            index.push(0, 1_700_000_000 + w * WINDOW_S, &positions, RecordSeq(seq));
            seq += 64;
        }
    }
    for _ in 0..FINGERPRINTS_PER_FILTER {
        filter.insert_fingerprint(&rng.gen::<u64>().to_be_bytes());
    }
    (index, filter)
}

/// The whole scan in relay-sized steps; returns (matches, steps, slowest step in µs).
fn scan_all(index: &RetainedIndex, filter: &BloomFilter) -> (usize, usize, f64) {
    let (mut cursor, mut matched, mut steps, mut slowest_us) = (ScanCursor::default(), Vec::new(), 0, 0f64);
    let range = (0, u64::MAX);
    loop {
        let t = Instant::now();
        let step = index.scan(0, range, RecordSeq(u64::MAX), filter, &mut cursor, LATE_STEP_PROOFS, &mut matched);
        slowest_us = slowest_us.max(t.elapsed().as_secs_f64() * 1e6);
        steps += 1;
        if step.done {
            return (matched.len(), steps, slowest_us);
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let windows = if quick_test_mode() { 4 } else { WINDOWS_PER_HOUR };
    let (index, filter) = bucket_hour(windows, &mut rng);
    let (matches, steps, slowest_us) = scan_all(&index, &filter);
    println!(
        "late_match: {} proofs ({} windows), {} bytes of index per proof, {steps} steps of {LATE_STEP_PROOFS}, \
         slowest step {slowest_us:.0} µs, {matches} false-positive matches",
        index.proofs(),
        windows,
        RetainedIndex::bytes_per_proof(BloomParams::default().k as usize),
    );
    let mut g = c.benchmark_group("late_match");
    g.sample_size(10);
    g.throughput(Throughput::Elements(index.proofs()));
    g.bench_function("bucket_hour_scan", |b| b.iter(|| black_box(scan_all(&index, &filter))));
    g.throughput(Throughput::Elements(LATE_STEP_PROOFS as u64));
    g.bench_function("one_step", |b| {
        b.iter(|| {
            let (mut cursor, mut matched) = (ScanCursor::default(), Vec::new());
            let step =
                index.scan(0, (0, u64::MAX), RecordSeq(u64::MAX), &filter, &mut cursor, LATE_STEP_PROOFS, &mut matched);
            black_box((step, matched))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
