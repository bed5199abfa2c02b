//! W-route (docs/FOUNDATIONS.md §7): proofs/s through `Shard::handle_publish` on one core, everything included —
//! field checks, both derivation hashes, dedup, log-sink append (MemoryLog copy), Bloom positions, matching
//! against the bucket's 75 filters, delivery queueing and draining.
//!
//! `w_route_64x75_batch1024_late_index` is the same with the late-match index on, as the relay runs it (every
//! accepted proof's Bloom positions and seq kept for SUBSCRIBEs that reach into the past).
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
    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(params.batch_proofs as u64));
    for (name, late_index) in [("w_route_64x75_batch1024", false), ("w_route_64x75_batch1024_late_index", true)] {
        let mut workload = RouteWorkload::new(params, 1);
        let mut shard = Shard::new(workload.shard_config(), MemoryLog::preallocated(4096));
        if late_index {
            shard.retain_for_late_match(3_600);
        }
        let mut rejected = Vec::with_capacity(params.batch_proofs);
        group.bench_function(name, |b| {
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
    }
    group.finish();
}

criterion_group!(benches, route);
criterion_main!(benches);
