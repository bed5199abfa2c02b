//! `tessera perf idle-cover`: N connected idle clients sending client cover at the default rate, and what they
//! cost the relay (docs/PERFORMANCE.md §Client cover).
//!
//! ```text
//! flags ─▶ IdleCoverConfig ─▶ driver::loadgen::idle_cover::run (progress on stderr) ─▶ report: text | --json
//!       ─▶ exit 0 when every client connected and the cover costs ≤ 0.25 cores, 1 otherwise
//! ```

use std::io::Write as _;

use clap::Args;

use crate::driver::loadgen::idle_cover::{self, IdleCoverConfig};

/// Arguments of `tessera perf idle-cover`.
#[derive(Args, Debug, Clone)]
pub struct IdleCoverArgs {
    /// Connected clients, one connection each.
    #[arg(long, default_value_t = 4_800, value_parser = clap::value_parser!(u64).range(1..=20_000))]
    pub clients: u64,
    /// Client cover proofs per round per client.
    #[arg(long, default_value_t = crate::client::COVER_PROOFS_PER_ROUND_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::client::COVER_PROOFS_PER_ROUND_MAX)))]
    pub proofs_per_round: u32,
    /// Measured seconds per phase (relay alone, relay with the clients); a few rounds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Shards of the relay started here [default: available cores].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub shards: Option<u64>,
    /// Load generator threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub threads: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark and prints the report; returns the exit code.
pub fn run(args: IdleCoverArgs) -> i32 {
    super::init_tracing();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let config = IdleCoverConfig {
        clients: args.clients as usize,
        proofs_per_round: args.proofs_per_round,
        seconds: args.seconds,
        shards: args.shards.map_or(cores, |s| s as usize),
        threads: args.threads as usize,
    };
    match idle_cover::run(&config, &mut std::io::stderr()) {
        Ok(report) => {
            let rendered =
                if args.json { serde_json::to_string(&report).unwrap_or_default() } else { report.to_text() };
            let _ = writeln!(std::io::stdout(), "{rendered}");
            i32::from(!report.meets_target())
        }
        Err(e) => {
            eprintln!("perf idle-cover: {e}");
            1
        }
    }
}
