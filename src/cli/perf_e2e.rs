//! `tessera perf e2e`: the W-e2e workload against a relay we start or a running one (docs/FOUNDATIONS.md §7).
//!
//! ```text
//! flags ─▶ E2eConfig ─▶ driver::loadgen::e2e::run (progress on stderr) ─▶ report on stdout: text | --json | --markdown
//! --tls:            our relay serves wss:// (a fresh self-signed pair), the clients trust it
//! --tls-compare N:  N rounds of [plain, TLS] runs back to back (the order alternates each round, so a drift of
//!                   the machine falls on both sides), each on a fresh relay ─▶ per-run rows and the medians:
//!                   TLS/plain routed throughput, relay CPU µs per routed proof with and without TLS; and in
//!                   each round a plain and a TLS handshake run (--handshakes connections each, default 2,000)
//! --handshakes N:   instead of W-e2e, open N connections through HELLO_REPLY (plain, or --tls) ─▶ per second,
//!                   relay CPU per connection (driver::loadgen::handshakes)
//! ```
//! Temporary top-level command: it moves under `tessera perf e2e` when the `perf` command group lands.

use std::io::Write as _;

use clap::Args;

use crate::driver::loadgen::e2e::{self, E2eConfig};
use crate::driver::loadgen::handshakes::{self, HandshakeConfig, HandshakeReport};

/// Connections per handshake run of `--tls-compare` when `--handshakes` is not given.
const HANDSHAKES_DEFAULT: u64 = 2_000;
/// Connections in flight per executor in a handshake run.
const HANDSHAKE_CONCURRENCY: usize = 16;

fn handshake_config(base: &E2eConfig, connections: u64, tls: bool) -> HandshakeConfig {
    HandshakeConfig { connections, concurrency: HANDSHAKE_CONCURRENCY, threads: base.threads, shards: base.shards, tls }
}

fn handshake_line(r: &HandshakeReport) -> String {
    let cpu = r.relay_cpu_us_each().map_or("-".to_owned(), |c| format!("{c:.0}"));
    format!(
        "handshakes {}: {} completed ({} failed) in {:.2} s: {:.0}/s, relay CPU {cpu} µs each",
        if r.tls { "TLS" } else { "plain" },
        r.completed,
        r.failed,
        r.seconds,
        r.per_s()
    )
}

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
    /// Start the relay with TLS (a fresh `cert new` pair in its temp dir) and connect over wss://.
    #[arg(long, conflicts_with = "relay")]
    pub tls: bool,
    /// With a wss:// --relay: also trust this PEM certificate (its CA or its self-signed certificate).
    #[arg(long, value_name = "FILE", requires = "relay")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Measure what TLS costs: ROUNDS × (a plain run and a TLS run, alternating which goes first), each on a
    /// relay started here; prints every run and the medians.
    #[arg(long, value_name = "ROUNDS", conflicts_with_all = ["relay", "tls", "json", "markdown"],
          value_parser = clap::value_parser!(u64).range(1..=100))]
    pub tls_compare: Option<u64>,
    /// Measure connection set-up instead: open N connections through HELLO_REPLY (TCP, TLS with --tls,
    /// WebSocket, HELLO), 16 in flight per load-generator executor; with --tls-compare, N per handshake run.
    #[arg(long, value_name = "N", conflicts_with_all = ["relay", "json", "markdown"],
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub handshakes: Option<u64>,
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
            tls: self.tls,
            tls_ca: self.tls_ca.clone(),
        }
    }
}

/// Runs the workload and prints the report; returns the exit code (1 if the run failed or was not clean:
/// see [`crate::perf::report::Report::defects`]).
pub fn run(args: E2eArgs) -> i32 {
    super::init_tracing();
    if let Some(rounds) = args.tls_compare {
        return compare_tls(&args.config(), rounds, args.handshakes.unwrap_or(HANDSHAKES_DEFAULT));
    }
    if let Some(connections) = args.handshakes {
        return match handshakes::run(&handshake_config(&args.config(), connections, args.tls)) {
            Ok(report) => {
                println!("{}", handshake_line(&report));
                i32::from(report.failed > 0)
            }
            Err(e) => {
                eprintln!("perf e2e --handshakes: {e}");
                1
            }
        };
    }
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

/// One run of `--tls-compare`.
struct CompareRow {
    round: u64,
    tls: bool,
    routed_per_s: f64,
    relay_cpu_us_per_proof: Option<f64>,
}

/// The median of `values` (`None` when empty).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (n > 0).then(|| if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 })
}

/// `--tls-compare`: alternating plain and TLS runs, each on its own fresh relay; exit 1 if a run fails.
fn compare_tls(base: &E2eConfig, rounds: u64, connections: u64) -> i32 {
    let mut rows = Vec::new();
    let mut handshake_runs = Vec::new();
    for round in 1..=rounds {
        let order = if round % 2 == 1 { [false, true] } else { [true, false] };
        for tls in order {
            let config = E2eConfig { tls, relay: None, relay_pid: None, ..base.clone() };
            let report = match e2e::run(&config, &mut std::io::stderr()) {
                Ok(report) => report,
                Err(e) => {
                    eprintln!("perf e2e --tls-compare: round {round} ({}): {e}", if tls { "TLS" } else { "plain" });
                    return 1;
                }
            };
            for d in report.defects() {
                eprintln!("perf e2e --tls-compare: round {round}: the run is not clean: {d}");
            }
            // Relay CPU seconds per million routed proofs = µs per proof.
            let cpu = report.relay_cpu_s_per_million;
            rows.push(CompareRow { round, tls, routed_per_s: report.routed_per_s, relay_cpu_us_per_proof: cpu });
        }
        for tls in order {
            match handshakes::run(&handshake_config(base, connections, tls)) {
                Ok(report) => {
                    eprintln!("perf e2e --tls-compare: round {round}: {}", handshake_line(&report));
                    handshake_runs.push(report);
                }
                Err(e) => {
                    eprintln!("perf e2e --tls-compare: round {round}: handshakes: {e}");
                    return 1;
                }
            }
        }
    }
    let mut out = String::from("round  link   routed/s  relay CPU µs/proof\n");
    for r in &rows {
        let cpu = r.relay_cpu_us_per_proof.map_or("-".to_owned(), |c| format!("{c:.3}"));
        let link = if r.tls { "TLS" } else { "plain" };
        out += &format!("{:>5}  {link:<5} {:>9.0}  {cpu:>18}\n", r.round, r.routed_per_s);
    }
    let side = |tls: bool| {
        let of = |f: &dyn Fn(&CompareRow) -> Option<f64>| {
            median(rows.iter().filter(|r| r.tls == tls).filter_map(f).collect())
        };
        (of(&|r| Some(r.routed_per_s)), of(&|r| r.relay_cpu_us_per_proof))
    };
    let ((plain_routed, plain_cpu), (tls_routed, tls_cpu)) = (side(false), side(true));
    if let (Some(p), Some(t)) = (plain_routed, tls_routed) {
        out += &format!(
            "median routed/s: plain {p:.0}, TLS {t:.0}: TLS keeps {:.1}% (cost {:.1}%; target: cost ≤ 20%)\n",
            100.0 * t / p,
            100.0 * (1.0 - t / p)
        );
    }
    if let (Some(p), Some(t)) = (plain_cpu, tls_cpu) {
        out += &format!(
            "median relay CPU per proof: plain {p:.3} µs, TLS {t:.3} µs: TLS adds {:.3} µs (target: ≤ 1 µs)\n",
            t - p
        );
    }
    for tls in [false, true] {
        let runs: Vec<&HandshakeReport> = handshake_runs.iter().filter(|r| r.tls == tls).collect();
        let per_s = median(runs.iter().map(|r| r.per_s()).collect());
        let cpu = median(runs.iter().filter_map(|r| r.relay_cpu_us_each()).collect());
        let failed: u64 = runs.iter().map(|r| r.failed).sum();
        if let (Some(per_s), Some(cpu)) = (per_s, cpu) {
            let link = if tls { "TLS" } else { "plain" };
            out += &format!(
                "median handshakes {link}: {per_s:.0}/s, relay CPU {cpu:.0} µs each ({failed} failed, {connections} per run)\n"
            );
        }
    }
    let _ = write!(std::io::stdout(), "{out}");
    0
}

#[cfg(test)]
mod tests {
    #[test]
    fn medians() {
        assert_eq!(super::median(vec![]), None);
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(super::median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
