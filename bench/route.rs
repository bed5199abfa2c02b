//! W-route (docs/FOUNDATIONS.md §7): proofs/s through `Shard::handle_publish` on one core, everything included —
//! field checks, both derivation hashes, dedup, log-sink append (MemoryLog copy), Bloom positions, matching
//! against the bucket's 75 filters, delivery queueing and draining.
//!
//! `cargo bench --bench route -- --warm-up-time 1 --measurement-time 3`. Proof generation is untimed
//! (`iter_custom` times `handle_publish` + delivery drain only).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tessera::engine::workload::{RouteParams, RouteWorkload};
use tessera::engine::{MemoryLog, Origin, Shard};

/// `cargo test --benches` runs each bench once without `--bench`: use a small W-route so CI stays fast.
fn quick_test_mode() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

fn route(c: &mut Criterion) {
    let params = if quick_test_mode() {
        RouteParams {
            subscribers_per_bucket: 2,
            batch_proofs: 128,
            proofs_per_window: 1 << 14,
            ..RouteParams::default()
        }
    } else {
        RouteParams::default()
    };
    let mut workload = RouteWorkload::new(params, 1);
    let mut shard = Shard::new(workload.shard_config(), MemoryLog::preallocated(4096));
    let mut rejected = Vec::with_capacity(params.batch_proofs);
    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(params.batch_proofs as u64));
    group.bench_function("w_route_64x75_batch1024", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let (now_s, batch) = workload.next_batch(&mut shard);
                let start = Instant::now();
                let summary = shard.handle_publish(now_s, Origin::Client, &batch, &mut rejected);
                while let Some(delivery) = shard.poll_delivery() {
                    black_box(delivery);
                }
                timed += start.elapsed();
                assert_eq!(summary.accepted as usize, params.batch_proofs, "W-route proofs are all new and valid");
            }
            timed
        })
    });
    group.finish();
}

criterion_group!(benches, route);
criterion_main!(benches);
