//! `log_append`: how fast one shard's log takes proofs, in records/s and MB/s.
//!
//! - `pure`: the sans-IO path alone (encode + CRC + stage + lay out in blocks + pair check), no disk.
//! - `durable/group_commit_256`: batches of 256 appends made durable by one commit (write + fdatasync),
//!   through the real `ShardLog` on glommio DMA files — the default group commit size.
//! - `durable/no_group_commit`: every append committed on its own (one fdatasync per record).
//!
//! The durable figures are bounded by fdatasync on the disk under `$TMPDIR` (tuning/log.md measures it);
//! `cargo test --benches` runs each once, in well under a second.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use tessera::driver::relay::log_io::{LogIoConfig, ShardLog};
use tessera::log::record::RECORD_LEN;
use tessera::log::{GroupCommitPolicy, LogConfig, LogState, ShardParams};
use tessera::proto::params::CIPHERTEXT_LEN;
use tessera::proto::proof::Proof;

const NOW_S: u64 = 1_700_000_000;

fn proofs(n: usize) -> Vec<Proof> {
    (0..n)
        .map(|i| {
            let mut commit = [0u8; 32];
            commit[..8].copy_from_slice(&(i as u64).to_be_bytes());
            Proof::new((i % 64) as u16, NOW_S, &commit, &[i as u8; 8], &[i as u8; CIPHERTEXT_LEN])
        })
        .collect()
}

fn config(policy: GroupCommitPolicy) -> LogConfig {
    let mut c = LogConfig::new(ShardParams::for_shard(0, 1, 64, 10));
    c.commit = policy;
    c
}

fn pure(c: &mut Criterion) {
    let mut g = c.benchmark_group("log_append");
    let batch = 256usize;
    let ps = proofs(batch);
    g.throughput(Throughput::ElementsAndBytes { elements: batch as u64, bytes: (batch * RECORD_LEN) as u64 });
    g.bench_function(BenchmarkId::new("pure", batch), |b| {
        let mut state = LogState::new(config(GroupCommitPolicy::default())).unwrap();
        b.iter(|| {
            for p in &ps {
                black_box(state.append(p.view(), NOW_S, 0).unwrap());
            }
            let job = state.take_job(NOW_S, 0).unwrap();
            black_box(&job.writes);
            state.complete_job(job.id, job.bytes());
        })
    });
    g.finish();
}

/// An executor for the durable benches (1 MiB of registered I/O memory: RLIMIT_MEMLOCK is small here).
fn executor() -> LocalExecutor {
    LocalExecutorBuilder::new(Placement::Unbound).io_memory(1 << 20).make().expect("executor")
}

/// Opens a fresh log, runs `iters` rounds of (`batch` appends, then flush), returns the time of the rounds.
fn durable_rounds(ex: &LocalExecutor, ps: &[Proof], policy: GroupCommitPolicy, iters: u64) -> Duration {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("shard-000");
    ex.run(async move {
        let cfg = LogIoConfig { dir, log: config(policy), dedup_skew_windows: 0 };
        let (log, _) = ShardLog::open(cfg, NOW_S).await.expect("open");
        log.flush().await.expect("initial files");
        let t = Instant::now();
        for _ in 0..iters {
            for p in ps {
                black_box(log.append(p.view(), NOW_S).expect("append"));
                if policy.records_max == 1 {
                    log.flush().await.expect("commit");
                }
            }
            log.flush().await.expect("commit");
        }
        let elapsed = t.elapsed();
        log.close().await.expect("close");
        elapsed
    })
}

fn durable(c: &mut Criterion) {
    let ex = executor();
    let mut g = c.benchmark_group("log_append/durable");
    g.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    for (name, batch, policy) in [
        ("group_commit_256", 256usize, GroupCommitPolicy::default()),
        ("no_group_commit", 8usize, GroupCommitPolicy::NONE),
    ] {
        let ps = proofs(batch);
        g.throughput(Throughput::ElementsAndBytes { elements: batch as u64, bytes: (batch * RECORD_LEN) as u64 });
        g.bench_function(name, |b| b.iter_custom(|iters| durable_rounds(&ex, &ps, policy, iters)));
    }
    g.finish();
}

criterion_group!(benches, pure, durable);
criterion_main!(benches);
