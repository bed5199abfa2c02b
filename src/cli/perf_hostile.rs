//! `tessera perf hostile`: a healthy publisher/subscriber pair on an idle relay, then under hostile load
//! (docs/PERFORMANCE.md §Hostile load).
//!
//! ```text
//! flags ─▶ HostileConfig ─▶ driver::loadgen::hostile::run (progress on stderr) ─▶ report on stdout: text | --json
//!       ─▶ exit 0 when every target is met, 1 otherwise (each missed target on stderr)
//! ```

use std::io::Write as _;

use clap::Args;

use crate::driver::loadgen::hostile::{self, HostileConfig};

/// Arguments of `tessera perf hostile`.
#[derive(Args, Debug, Clone)]
pub struct HostileArgs {
    /// Measured seconds per phase of each healthy-pair run (saturate, then half rate).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// TCP connections that connect and send nothing.
    #[arg(long, default_value_t = 2000)]
    pub idle_tcp: usize,
    /// WebSocket connections that finish the upgrade and never send HELLO.
    #[arg(long, default_value_t = 200)]
    pub silent_ws: usize,
    /// Connections that SUBSCRIBE 64 ids with all-ones filters over the longest window range.
    #[arg(long, default_value_t = 100)]
    pub saturating: usize,
    /// Connections that pipeline PUBLISHes of refused proofs and never read a reply.
    #[arg(long, default_value_t = 1)]
    pub flooders: usize,
    /// Loopback source addresses (127.0.1.1 onwards) the attackers spread over.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=254))]
    pub sources: u64,
    /// What the attack may add to the relay's peak RSS over the highest peak of the idle relays on the same
    /// healthy runs, MiB.
    #[arg(long, default_value_t = 128)]
    pub rss_margin_mib: u64,
    /// Fixed rate of the latency runs (idle and under attack), proofs/s.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub latency_rate: u64,
    /// Shards of the relay started here [default: available cores].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub shards: Option<u64>,
    /// Subscribers on the healthy side, one connection each.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4800))]
    pub subscribers: u64,
    /// Load generator executors for the healthy pair [default: 1].
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: u64,
    /// Rounds of (idle relay, attacked relay) runs; the throughput and p99 targets judge the median of the
    /// rounds' ratios (one pair of runs on a small shared machine mostly measures its noise).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub rounds: u64,
    /// Nice value of the attacker threads: they stand in for other hosts, so by default they take CPU from the
    /// relay and the healthy pair only when those leave some (0 runs them at the same priority).
    #[arg(long, default_value_t = 19, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub attackers_nice: i32,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl HostileArgs {
    /// The run's configuration (defaults filled in).
    pub fn config(&self) -> HostileConfig {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        HostileConfig {
            seconds: self.seconds,
            shards: self.shards.map_or(cores, |s| s as usize),
            threads: self.threads as usize,
            subscribers: self.subscribers as usize,
            idle_tcp: self.idle_tcp,
            silent_ws: self.silent_ws,
            saturating: self.saturating,
            flooders: self.flooders,
            sources: self.sources as usize,
            rss_margin_bytes: self.rss_margin_mib << 20,
            latency_rate: self.latency_rate,
            rounds: self.rounds as usize,
            attackers_nice: self.attackers_nice,
        }
    }
}

/// Runs the benchmark and prints the report; returns the exit code (1 if a target was missed or the run failed).
pub fn run(args: HostileArgs) -> i32 {
    super::init_tracing();
    match hostile::run(&args.config(), &mut std::io::stderr()) {
        Ok(report) => {
            let rendered = if args.json { report.to_json() } else { report.to_text() };
            // A closed stdout (e.g. piped into `head`) is not a failure of the run.
            let _ = writeln!(std::io::stdout(), "{}", rendered.trim_end());
            let failures = report.failures();
            for f in &failures {
                eprintln!("perf hostile: target missed: {f}");
            }
            i32::from(!failures.is_empty())
        }
        Err(e) => {
            eprintln!("perf hostile: {e}");
            1
        }
    }
}
