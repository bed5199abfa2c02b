//! W-sub (docs/FOUNDATIONS.md §7): subscribes/s on one core. 4,800 subscribers (64 buckets × 75) each replace their
//! one-entry subscription (a 60-fingerprint filter, m = 1024, k = 3) over and over, alternating between two
//! precomputed filters, so every operation clears one column of the bucket's bit-sliced index and sets
//! another. Includes validation, the subscriber map lookup and the slot bookkeeping.
//!
//! `cargo bench --bench subscribe -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tessera::engine::workload::{SubscribeParams, SubscribeWorkload};
use tessera::engine::{MemoryLog, Shard};

/// `cargo test --benches` runs each bench once without `--bench`: keep that mode small.
fn quick_test_mode() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

fn subscribe(c: &mut Criterion) {
    let params = if quick_test_mode() {
        SubscribeParams { subscribers_per_bucket: 2, ..SubscribeParams::default() }
    } else {
        SubscribeParams::default()
    };
    let mut workload = SubscribeWorkload::new(params, 1);
    let mut shard = Shard::new(workload.shard_config(), MemoryLog::new(1));
    let now_s = workload.now_s();
    // First pass registers everyone; the measured operations are replacements.
    for _ in 0..params.buckets as u32 * params.subscribers_per_bucket {
        let (id, entry) = workload.next_op();
        shard.handle_subscribe(now_s, id, std::slice::from_ref(entry)).expect("W-sub entries are valid");
    }
    let mut group = c.benchmark_group("subscribe");
    group.throughput(Throughput::Elements(1));
    group.bench_function("w_sub_replace_4800x1", |b| {
        b.iter(|| {
            let (id, entry) = workload.next_op();
            black_box(shard.handle_subscribe(now_s, id, std::slice::from_ref(entry)))
        })
    });
    group.finish();
}

criterion_group!(benches, subscribe);
criterion_main!(benches);
