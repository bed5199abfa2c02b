//! `tessera perf e2e`: the W-e2e workload against a relay we start or a running one (docs/FOUNDATIONS.md §7).
//!
//! ```text
//! flags ─▶ E2eConfig ─▶ driver::loadgen::e2e::run (progress on stderr) ─▶ report on stdout: text | --json | --markdown
//! ```
//! Temporary top-level command: it moves under `tessera perf e2e` when the `perf` command group lands.

use std::io::Write as _;

use clap::Args;

use crate::driver::loadgen::e2e::{self, E2eConfig};

/// Arguments of `tessera perf e2e`.
#[derive(Args, Debug, Clone)]
pub struct E2eArgs {
    /// Target a running relay (ws://host:port) instead of starting one.
    #[arg(long, value_name = "URL")]
    pub relay: Option<String>,
    /// The running relay's process id, to measure its CPU time and peak RSS (with --relay).
    #[arg(long, value_name = "PID", requires = "relay")]
    pub relay_pid: Option<u32>,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Publisher connections.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub publishers: u64,
    /// Subscriber connections (one subscriber each, spread evenly over the 64 buckets).
    #[arg(long, default_value_t = 4800, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub subscribers: u64,
    /// Subscribers sharing one connection (W-e2e proper: 1; at most the relay's subscribers_per_connection_max).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub subscribers_per_conn: u64,
    /// Proofs per PUBLISH (at most the relay's proofs_per_batch_max).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub batch: u16,
    /// Unacknowledged PUBLISHes per publisher.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub inflight: u64,
    /// Run one fixed-rate phase at this many proofs/s instead of saturate + half rate.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Shards of the relay started here [default: available cores].
    #[arg(long, conflicts_with = "relay", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub shards: Option<u64>,
    /// Load generator executors (unpinned) [default: available cores].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: Option<u64>,
    /// Print the report as one JSON object.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print the report as a markdown table.
    #[arg(long)]
    pub markdown: bool,
}

impl E2eArgs {
    /// The run's configuration (defaults filled in).
    pub fn config(&self) -> E2eConfig {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        E2eConfig {
            relay: self.relay.clone(),
            relay_pid: self.relay_pid,
            seconds: self.seconds,
            publishers: self.publishers as usize,
            subscribers: self.subscribers as usize,
            subscribers_per_conn: self.subscribers_per_conn as usize,
            batch: self.batch,
            rate: self.rate,
            shards: self.shards.map_or(cores, |s| s as usize),
            threads: self.threads.map_or(cores, |t| t as usize),
            inflight_batches: self.inflight as usize,
        }
    }
}

/// Runs the workload and prints the report; returns the exit code (1 if the run failed or was not clean:
/// see [`crate::perf::report::Report::defects`]).
pub fn run(args: E2eArgs) -> i32 {
    super::init_tracing();
    match e2e::run(&args.config(), &mut std::io::stderr()) {
        Ok(report) => {
            let rendered = if args.json {
                report.to_json()
            } else if args.markdown {
                report.to_markdown()
            } else {
                report.to_text()
            };
            // A closed stdout (e.g. piped into `head`) is not a failure of the run.
            let _ = writeln!(std::io::stdout(), "{}", rendered.trim_end());
            let defects = report.defects();
            for d in &defects {
                eprintln!("perf e2e: the run is not clean: {d}");
            }
            i32::from(!defects.is_empty())
        }
        Err(e) => {
            eprintln!("perf e2e: {e}");
            1
        }
    }
}
