//! Measures fdatasync latency on the disk holding `$TESSERA_PROBE_DIR` (default: the system temp dir) with
//! the log's own I/O path (glommio DMA writes), and sweeps the group-commit knobs through the real
//! `ShardLog` — the measurements behind the defaults in tuning/log.md.
//!
//! Timed, so not part of the normal run (the debug build is fine: the cost is the disk, not the CPU):
//! `cargo test --test log_fsync_probe -- --ignored --nocapture --test-threads 1`

mod support;

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use glommio::io::{DmaFile, OpenOptions};
use hdrhistogram::Histogram;
use tessera::driver::relay::log_io::{LogIoConfig, ShardLog};
use tessera::log::{GroupCommitPolicy, LogConfig, ShardParams};

/// Rounds of each case, interleaved so a noisy neighbour hits every case alike.
const ROUNDS: u64 = 5;
const PER_ROUND: u64 = 100;

fn line(name: &str, h: &Histogram<u64>) {
    println!(
        "| {name:<52} | {:>5} | {:>6} | {:>6} | {:>6} | {:>6} |",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.mean() as u64
    );
}

fn probe_dir() -> tempfile::TempDir {
    let base = std::env::var_os("TESSERA_PROBE_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    tempfile::tempdir_in(base).unwrap()
}

async fn open(path: &Path) -> DmaFile {
    // The first direct-I/O open on a thread decides glommio's polling mode; give it a non-empty file.
    if !path.exists() {
        std::fs::write(path, vec![0u8; 4096]).unwrap();
    }
    OpenOptions::new().read(true).write(true).dma_open(path).await.unwrap()
}

#[test]
#[ignore = "timed measurement; run explicitly (see the module docs)"]
fn fdatasync_latency() {
    let tmp = probe_dir();
    let dir = tmp.path().to_path_buf();
    support::run(move || async move {
        let grow = open(&dir.join("grow")).await;
        let pre = open(&dir.join("pre")).await;
        pre.pre_allocate(1 << 30, false).await.unwrap();
        let cases: [(&str, usize, bool); 5] = [
            ("4 KiB append, file grows", 4096, false),
            ("4 KiB into fallocated space", 4096, true),
            ("36 KiB (64 records) into fallocated space", 9 * 4096, true),
            ("148 KiB (256 records) into fallocated space", 37 * 4096, true),
            ("1.2 MiB (2,048 records) into fallocated space", 293 * 4096, true),
        ];
        let mut hists: Vec<Histogram<u64>> = cases.iter().map(|_| Histogram::new(3).unwrap()).collect();
        let (mut grow_off, mut pre_off) = (4096u64, 0u64);
        for round in 0..ROUNDS {
            for (i, &(_, bytes, prealloc)) in cases.iter().enumerate() {
                let f = if prealloc { &pre } else { &grow };
                for _ in 0..PER_ROUND {
                    let mut buf = f.alloc_dma_buffer(bytes);
                    buf.as_bytes_mut().fill(round as u8 + 1);
                    let off = if prealloc { &mut pre_off } else { &mut grow_off };
                    let t = Instant::now();
                    f.write_at(buf, *off).await.unwrap();
                    f.fdatasync().await.unwrap();
                    hists[i].record(t.elapsed().as_micros() as u64).unwrap();
                    *off += bytes as u64;
                }
            }
        }
        println!(
            "\n| write + fdatasync (glommio DMA)                      |     n | p50 µs | p90 µs | p99 µs | mean µs |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for (i, (name, _, _)) in cases.iter().enumerate() {
            line(name, &hists[i]);
        }
    });
}

/// Closed loop: `publishers` tasks each append `batch` proofs and wait for durability, repeatedly, for
/// `batches` rounds. Returns (records/s, ACK latency histogram in µs, commits).
async fn sweep_one(
    dir: &Path,
    policy: GroupCommitPolicy,
    publishers: u64,
    batch: u64,
    batches: u64,
) -> (f64, Histogram<u64>, u64) {
    let mut log = LogConfig::new(ShardParams::for_shard(0, 1, 64, 10));
    log.commit = policy;
    let cfg = LogIoConfig { dir: dir.to_path_buf(), log, dedup_skew_windows: 0 };
    let (log, _) = ShardLog::open(cfg, 1_000_000).await.unwrap();
    let committer = glommio::spawn_local(log.clone().run_committer());
    let hist = Rc::new(std::cell::RefCell::new(Histogram::<u64>::new(3).unwrap()));
    let proofs: Rc<Vec<_>> = Rc::new((0..batch).map(|i| support::proof(i, 1_000_000)).collect());
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..publishers)
        .map(|_| {
            let (log, hist, proofs) = (log.clone(), hist.clone(), proofs.clone());
            glommio::spawn_local(async move {
                for _ in 0..batches {
                    let t = Instant::now();
                    let mut last = None;
                    for proof in &proofs[..batch as usize] {
                        last = Some(log.append(proof.view(), 1_000_000).unwrap());
                    }
                    log.wait_durable(last.unwrap()).await.unwrap();
                    hist.borrow_mut().record(t.elapsed().as_micros() as u64).unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let commits = log.counters().commits;
    log.clone().close().await.unwrap();
    committer.await.unwrap();
    let h = hist.borrow().clone();
    ((publishers * batch * batches) as f64 / elapsed, h, commits)
}

#[test]
#[ignore = "timed measurement; run explicitly (see the module docs)"]
fn group_commit_sweep() {
    let tmp = probe_dir();
    let dir = tmp.path().to_path_buf();
    support::run(move || async move {
        println!("\n| N (records_max) | D (delay µs) | publishers × batch | records/s | ACK p50 µs | ACK p99 µs | records/commit |");
        println!("|---:|---:|---|---:|---:|---:|---:|");
        let cases: [(u32, u64, u64, u64); 9] = [
            (1, 0, 1, 1),
            (1, 0, 16, 16),
            (64, 500, 16, 16),
            (256, 0, 16, 16),
            (256, 200, 16, 16),
            (256, 500, 16, 16),
            (256, 2_000, 16, 16),
            (1_024, 500, 16, 16),
            (256, 500, 1, 1),
        ];
        for (i, (n, d, p, b)) in cases.into_iter().enumerate() {
            let sub = dir.join(format!("case-{i}"));
            let batches = if p * b == 1 { 300 } else { 60 };
            let (rate, h, commits) =
                sweep_one(&sub, GroupCommitPolicy { records_max: n, delay_us_max: d }, p, b, batches).await;
            let per_commit = (p * b * batches) as f64 / commits as f64;
            println!(
                "| {n} | {d} | {p} × {b} | {rate:.0} | {} | {} | {per_commit:.1} |",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99)
            );
        }
    });
}

#[test]
#[ignore = "timed measurement; run explicitly (see the module docs)"]
fn timer_precision() {
    support::run(|| async {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for _ in 0..200 {
            let t = Instant::now();
            glommio::timer::sleep(std::time::Duration::from_micros(500)).await;
            h.record(t.elapsed().as_micros() as u64).unwrap();
        }
        println!(
            "\n| glommio sleep(500 µs) | {} | p50 {} | p90 {} | p99 {} | max {} |",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.max()
        );
    });
}

/// Open loop: every `tick_us` a publisher appends `batch` proofs (one PUBLISH) and a waiter records the time
/// until they are durable. Returns (ACK histogram µs, commits, records).
async fn open_loop(
    dir: &Path,
    policy: GroupCommitPolicy,
    batch: u64,
    tick_us: u64,
    seconds: u64,
) -> (Histogram<u64>, u64, u64) {
    let mut log = LogConfig::new(ShardParams::for_shard(0, 1, 64, 10));
    log.commit = policy;
    let cfg = LogIoConfig { dir: dir.to_path_buf(), log, dedup_skew_windows: 0 };
    let (log, _) = ShardLog::open(cfg, 1_000_000).await.unwrap();
    log.flush().await.unwrap();
    let committer = glommio::spawn_local(log.clone().run_committer());
    let hist = Rc::new(std::cell::RefCell::new(Histogram::<u64>::new(3).unwrap()));
    let proofs: Vec<_> = (0..batch).map(|i| support::proof(i, 1_000_000)).collect();
    let start = Instant::now();
    let ticks = seconds * 1_000_000 / tick_us;
    let mut waiters = Vec::new();
    for t in 0..ticks {
        let due = start + std::time::Duration::from_micros(t * tick_us);
        let now = Instant::now();
        if due > now {
            glommio::timer::sleep(due - now).await;
        }
        let mut last = None;
        for p in &proofs {
            last = Some(log.append(p.view(), 1_000_000).unwrap());
        }
        let (log2, hist2, seq) = (log.clone(), hist.clone(), last.unwrap());
        waiters.push(glommio::spawn_local(async move {
            log2.wait_durable(seq).await.unwrap();
            hist2.borrow_mut().record(due.elapsed().as_micros() as u64).unwrap();
        }));
    }
    for w in waiters {
        w.await;
    }
    let c = log.counters();
    log.clone().close().await.unwrap();
    committer.await.unwrap();
    let h = hist.borrow().clone();
    (h, c.commits, c.records_durable)
}

#[test]
#[ignore = "timed measurement; run explicitly (see the module docs)"]
fn group_commit_open_loop() {
    let tmp = probe_dir();
    let dir = tmp.path().to_path_buf();
    support::run(move || async move {
        println!("\n| offered load | N | D µs | ACK p50 µs | ACK p90 µs | ACK p99 µs | commits/s | records/commit |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        let mut i = 0;
        for (label, batch, tick_us) in [
            ("2k proofs/s (16 every 8 ms)", 16u64, 8_000u64),
            ("32k proofs/s (32 every 1 ms)", 32, 1_000),
            ("128k proofs/s (128 every 1 ms)", 128, 1_000),
        ] {
            for (n, d) in [(1_024u32, 0u64), (1_024, 200), (1_024, 1_000), (256, 200)] {
                i += 1;
                let sub = dir.join(format!("ol-{i}"));
                let (h, commits, records) =
                    open_loop(&sub, GroupCommitPolicy { records_max: n, delay_us_max: d }, batch, tick_us, 2).await;
                println!(
                    "| {label} | {n} | {d} | {} | {} | {} | {:.0} | {:.1} |",
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.9),
                    h.value_at_quantile(0.99),
                    commits as f64 / 2.0,
                    records as f64 / commits as f64
                );
            }
        }
    });
}
