//! `dp_sample`: throughput of the exact discrete Laplace sampler and of the cover-traffic pieces around it.
//!
//! Target (issue 7): ≥ 10 million `D_b` samples per second per core at ε = 0.1. Each iteration draws
//! `BATCH` samples so the per-sample figure is criterion's throughput. Also measured, for the server's CPU
//! budget: a full 64-bucket round schedule and one dummy proof (SHA-256 rejection sampling).
//! Times are thread CPU time (per core, robust to the shared build machine's load), as in `bench/envelope.rs`.
//! `cargo test --benches` runs each once (fast); figures come from `cargo bench --bench dp_sample`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::{cpu_time, ThreadCpuTime};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tessera::dp::{build_dummy_proof, CoverMechanism, CoverSchedule, RoundSpec, ROUND_US_DEFAULT};

/// Samples per iteration: large enough that loop overhead and criterion's timer are noise.
const BATCH: u64 = 4_096;

fn sampler(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("dp_sample");
    group.throughput(Throughput::Elements(BATCH));
    for eps in [0.1, 1.0, 8.0] {
        let mechanism = CoverMechanism::from_f64(eps, 1e-6).expect("valid design parameters");
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        group.bench_function(format!("dummies_eps_{eps}"), |b| {
            b.iter(|| {
                let mut total = 0u64;
                for _ in 0..BATCH {
                    total += mechanism.sample_dummies(&mut rng).count as u64;
                }
                black_box(total)
            })
        });
    }
    group.finish();
}

fn round(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("dp_round");
    let mechanism = CoverMechanism::from_f64(0.1, 1e-6).expect("valid design parameters");
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    group.bench_function("schedule_64_buckets_eps_0.1", |b| {
        b.iter(|| {
            let spec = RoundSpec {
                round_start_us: 1_700_000_000_000_000,
                round_us: ROUND_US_DEFAULT,
                buckets: 0..64,
                num_buckets: 64,
            };
            black_box(CoverSchedule::for_round(&mechanism, spec, &mut rng).expect("valid round").total())
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("dummy_proof_64_buckets", |b| {
        b.iter(|| black_box(build_dummy_proof(&mut rng, 17, 64, 1_700_000_000).expect("bucket < num_buckets")))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = cpu_time();
    targets = sampler, round
}
criterion_main!(benches);
