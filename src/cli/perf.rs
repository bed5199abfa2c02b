//! `tessera perf route|subscribe`: the standard workloads (docs/FOUNDATIONS.md §7) as a command for capacity planners
//! and CI, printing one JSON object (or a line of text).
//!
//! ```text
//! engine::workload generator ──batch (untimed)──▶ Shard::handle_publish + delivery drain (timed) ──▶ totals
//! ```
//! Same generators and shard configuration as `bench/route.rs` and `bench/subscribe.rs`; one core (this
//! thread). Besides wall time, the timed region's thread CPU time is reported: on a shared machine it is
//! the steadier figure (wall time also counts the time other processes held the core).

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::json;

use crate::engine::workload::{RouteParams, RouteWorkload, SubscribeParams, SubscribeWorkload};
use crate::engine::{MemoryLog, Origin, Shard};
use crate::index::simd::sha256::HashBackend;
use crate::index::simd::Kernel;

/// Records the bench and this command keep in the in-memory log ring: 2.3 MiB, the size of a durable log's
/// group-commit buffer, which is reused the same way.
pub const PERF_LOG_RECORDS: usize = 4096;

/// Arguments of `tessera perf`.
#[derive(Args, Debug)]
pub struct PerfArgs {
    /// The workload to run.
    #[command(subcommand)]
    pub command: PerfCommand,
}

/// Workloads, one subcommand each.
#[derive(Subcommand, Debug)]
pub enum PerfCommand {
    /// W-route: proofs/s through one shard (verify, dedup, log append, match, deliveries).
    Route(RouteArgs),
    /// W-sub: subscribe/replace operations per second on one shard.
    Subscribe(SubscribeArgs),
    /// W-e2e: a relay process under load over loopback WebSocket (publishers, 4,800 subscribers).
    E2e(super::perf_e2e::E2eArgs),
    /// A healthy publisher/subscriber pair on an idle relay, then under hostile load (idle TCP, silent
    /// WebSockets, saturating subscribers, a reply flooder): throughput and p99 ratios, relay peak RSS.
    Hostile(super::perf_hostile::HostileArgs),
    /// N connected idle clients sending client cover at the default rate: relay cores they cost.
    IdleCover(super::perf_idle_cover::IdleCoverArgs),
}

/// Options shared by every workload.
#[derive(Args, Debug, Clone, Copy)]
pub struct CommonArgs {
    /// Seconds of measured work to accumulate (generation time is not counted).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
    /// Seed of the workload generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Arguments of `tessera perf route`.
#[derive(Args, Debug)]
pub struct RouteArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Proofs per PUBLISH batch.
    #[arg(long, default_value_t = 1024)]
    pub batch_proofs: usize,
    /// Subscribers per bucket (64 buckets).
    #[arg(long, default_value_t = 75)]
    pub subscribers_per_bucket: u32,
    /// Proofs per simulated 10 s window (the shard's dedup tables are sized for it: 128 B per proof).
    #[arg(long, default_value_t = 1 << 20)]
    pub proofs_per_window: u64,
    /// Keep the late-match index, as the relay does (every accepted proof's Bloom positions and seq, for
    /// SUBSCRIBEs that reach into the past).
    #[arg(long)]
    pub late_index: bool,
}

/// Arguments of `tessera perf subscribe`.
#[derive(Args, Debug)]
pub struct SubscribeArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Subscribers per bucket (64 buckets).
    #[arg(long, default_value_t = 75)]
    pub subscribers_per_bucket: u32,
}

/// Runs the workload; returns the exit code.
pub fn run(args: PerfArgs) -> i32 {
    let (common, report) = match args.command {
        PerfCommand::Route(a) => (a.common, route(&a)),
        PerfCommand::Subscribe(a) => (a.common, subscribe(&a)),
        PerfCommand::E2e(a) => return super::perf_e2e::run(a),
        PerfCommand::Hostile(a) => return super::perf_hostile::run(a),
        PerfCommand::IdleCover(a) => return super::perf_idle_cover::run(a),
    };
    if common.json {
        println!("{report}");
    } else {
        println!(
            "{}: {:.0} {}/s, {:.1} ns/op wall, {:.1} ns/op cpu ({})",
            report["workload"].as_str().unwrap_or_default(),
            report["ops_per_s"].as_f64().unwrap_or_default(),
            report["op"].as_str().unwrap_or_default(),
            report["ns_per_op"].as_f64().unwrap_or_default(),
            report["cpu_ns_per_op"].as_f64().unwrap_or_default(),
            report["cpu_model"].as_str().unwrap_or_default(),
        );
    }
    0
}

/// Wall and thread-CPU time of the timed regions.
#[derive(Default)]
struct Timer {
    wall: Duration,
    cpu: Duration,
}

impl Timer {
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let (wall, cpu) = (Instant::now(), thread_cpu_time());
        let out = f();
        self.wall += wall.elapsed();
        self.cpu += thread_cpu_time().saturating_sub(cpu);
        out
    }
}

fn route(args: &RouteArgs) -> serde_json::Value {
    let params = RouteParams {
        batch_proofs: args.batch_proofs.clamp(1, crate::engine::PUBLISH_BATCH_PROOFS_MAX),
        subscribers_per_bucket: args.subscribers_per_bucket,
        proofs_per_window: args.proofs_per_window.max(1),
        ..RouteParams::default()
    };
    let mut workload = RouteWorkload::new(params, args.common.seed);
    let mut shard = Shard::new(workload.shard_config(), MemoryLog::preallocated(PERF_LOG_RECORDS));
    if args.late_index {
        shard.retain_for_late_match(crate::server::config::RETENTION_S_DEFAULT);
    }
    let mut rejected = Vec::with_capacity(params.batch_proofs);
    let mut timer = Timer::default();
    let (mut proofs, mut deliveries) = (0u64, 0u64);
    let budget = Duration::from_secs_f64(args.common.seconds.max(0.0));
    while timer.wall < budget || proofs == 0 {
        let (now_s, batch) = workload.next_batch(&mut shard);
        deliveries += timer.time(|| {
            shard.handle_publish(now_s, Origin::Client, &batch, &mut rejected);
            std::iter::from_fn(|| shard.poll_delivery()).count() as u64
        });
        proofs += batch.len() as u64;
    }
    let c = shard.counters();
    report(
        "W-route",
        "proofs",
        proofs,
        &timer,
        json!({
            "buckets": params.buckets,
            "subscribers_per_bucket": params.subscribers_per_bucket,
            "late_index": args.late_index,
            "fingerprints_per_filter": params.fingerprints_per_filter,
            "addressed_per_mille": params.addressed_per_mille,
            "batch_proofs": params.batch_proofs,
            "proofs_per_window": params.proofs_per_window,
            "bloom_m_bits": 1024,
            "bloom_k": 3,
            "log_records": PERF_LOG_RECORDS,
        }),
        json!({
            "accepted": c.accepted,
            "duplicates": c.duplicates,
            "rejected": c.rejected_total(),
            "deliveries": deliveries,
        }),
    )
}

fn subscribe(args: &SubscribeArgs) -> serde_json::Value {
    let params = SubscribeParams { subscribers_per_bucket: args.subscribers_per_bucket, ..SubscribeParams::default() };
    let mut workload = SubscribeWorkload::new(params, args.common.seed);
    let mut shard = Shard::new(workload.shard_config(), MemoryLog::new(1));
    let now_s = workload.now_s();
    let registered = params.buckets as u64 * params.subscribers_per_bucket as u64;
    for _ in 0..registered {
        let (id, entry) = workload.next_op();
        shard.handle_subscribe(now_s, id, std::slice::from_ref(entry)).expect("W-sub entries are valid");
    }
    let mut timer = Timer::default();
    let mut ops = 0u64;
    let budget = Duration::from_secs_f64(args.common.seconds.max(0.0));
    // Operations are timed in groups: one clock read per 1,000 keeps timer overhead out of the figure.
    const GROUP: u64 = 1_000;
    while timer.wall < budget || ops == 0 {
        timer.time(|| {
            for _ in 0..GROUP {
                let (id, entry) = workload.next_op();
                let _ = std::hint::black_box(shard.handle_subscribe(now_s, id, std::slice::from_ref(entry)));
            }
        });
        ops += GROUP;
    }
    let c = shard.counters();
    report(
        "W-sub",
        "subscribes",
        ops,
        &timer,
        json!({
            "buckets": params.buckets,
            "subscribers_per_bucket": params.subscribers_per_bucket,
            "fingerprints_per_filter": params.fingerprints_per_filter,
            "entries_per_subscribe": 1,
            "bloom_m_bits": 1024,
            "bloom_k": 3,
        }),
        json!({ "subscribers": c.subscribers, "entries": c.entries, "subscribes_rejected": c.subscribes_rejected }),
    )
}

fn report(
    workload: &str,
    op: &str,
    ops: u64,
    timer: &Timer,
    parameters: serde_json::Value,
    totals: serde_json::Value,
) -> serde_json::Value {
    let wall_s = timer.wall.as_secs_f64().max(1e-9);
    let per_s = ops as f64 / wall_s;
    json!({
        "workload": workload,
        "op": op,
        "ops": ops,
        "seconds": wall_s,
        format!("{op}_per_s"): per_s,
        "ops_per_s": per_s,
        "ns_per_op": wall_s * 1e9 / ops as f64,
        "cpu_seconds": timer.cpu.as_secs_f64(),
        "cpu_ns_per_op": timer.cpu.as_secs_f64() * 1e9 / ops as f64,
        "parameters": parameters,
        "totals": totals,
        "hash_backend": HashBackend::detect().name(),
        "match_kernel": Kernel::detect().name(),
        "cpu_model": cpu_model(),
        "cores_used": 1,
    })
}

/// `model name` of the first CPU in /proc/cpuinfo, or "unknown".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// CPU time consumed by this thread.
fn thread_cpu_time() -> Duration {
    Duration::from_nanos(crate::driver::clock::thread_cpu_ns())
}
