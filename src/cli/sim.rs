//! `tessera sim linkability | anonymity`: the privacy simulators, printed as a table or JSON.
//!
//! Each command builds its `crate::sim` configuration from flags, runs it with a ChaCha20 generator seeded by
//! `--seed` (reproducible reports; the relay itself seeds from the OS), and prints the report.

use clap::{Args, Subcommand};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::sim::anonymity::{self, AnonymityConfig};
use crate::sim::link_observer::{self, LinkObserverConfig, LinkObserverResult};
use crate::sim::linkability::{self, LinkabilityConfig, LinkabilityReport};

/// Arguments of `tessera sim`.
#[derive(Args, Debug)]
pub struct SimArgs {
    /// The simulator to run.
    #[command(subcommand)]
    pub command: SimCommand,
}

/// `tessera sim` commands.
#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// Can a global passive observer of per-bucket counts detect one delivery? (none / proportional / DP cover)
    Linkability(LinkabilityArgs),
    /// Bucket k-anonymity against the number of users, and the Bloom false-positive rate.
    Anonymity(AnonymityArgs),
}

/// Arguments of `tessera sim linkability`.
#[derive(Args, Debug)]
pub struct LinkabilityArgs {
    /// Samples per world (with / without the delivery) per policy.
    #[arg(long, default_value_t = linkability::SAMPLES_PER_WORLD_DEFAULT as u64, value_parser = clap::value_parser!(u64).range(4..=100_000_000))]
    pub samples: u64,
    /// ε values of the DP policy, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = linkability::EPSILONS_DEFAULT)]
    pub epsilons: Vec<f64>,
    /// δ of the DP policy.
    #[arg(long, default_value_t = linkability::DELTA_DEFAULT)]
    pub delta: f64,
    /// Real proofs per bucket per round, known to the observer.
    #[arg(long, default_value_t = linkability::BACKGROUND_PER_BUCKET_DEFAULT)]
    pub background: u32,
    /// Buckets per relay (for the overhead column).
    #[arg(long, default_value_t = crate::proto::NUM_BUCKETS_DEFAULT, value_parser = clap::value_parser!(u16).range(1..))]
    pub buckets: u16,
    /// Link observer: rounds of one client simulated per policy (without / with client cover).
    #[arg(long, default_value_t = link_observer::LINK_ROUNDS_DEFAULT as u64, value_parser = clap::value_parser!(u64).range(100..=10_000_000))]
    pub link_rounds: u64,
    /// Link observer: client cover proofs per round.
    #[arg(long, default_value_t = crate::client::COVER_PROOFS_PER_ROUND_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::client::COVER_PROOFS_PER_ROUND_MAX)))]
    pub client_cover_proofs_per_round: u32,
    /// Seed of the simulation's ChaCha20 generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `tessera sim anonymity`.
#[derive(Args, Debug)]
pub struct AnonymityArgs {
    /// Bloom probes per filter load.
    #[arg(long, default_value_t = anonymity::BLOOM_PROBES_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub samples: u64,
    /// Trials per user count for the occupancy table.
    #[arg(long, default_value_t = anonymity::TRIALS_DEFAULT, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub trials: u32,
    /// User counts, comma-separated (each capped at 20,000,000).
    #[arg(long, value_delimiter = ',', default_values_t = anonymity::USERS_DEFAULT)]
    pub users: Vec<u64>,
    /// Number of buckets.
    #[arg(long, default_value_t = crate::proto::NUM_BUCKETS_DEFAULT, value_parser = clap::value_parser!(u16).range(1..))]
    pub buckets: u16,
    /// Seed of the simulation's ChaCha20 generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs `tessera sim`.
pub fn run(args: SimArgs) -> i32 {
    match args.command {
        SimCommand::Linkability(a) => run_linkability(a),
        SimCommand::Anonymity(a) => run_anonymity(a),
    }
}

fn run_linkability(args: LinkabilityArgs) -> i32 {
    let config = LinkabilityConfig {
        // Range-checked by clap to ≤ 10⁸.
        samples_per_world: args.samples as usize,
        epsilons: args.epsilons,
        delta: args.delta,
        background_per_bucket: args.background,
        buckets: args.buckets,
        ..LinkabilityConfig::default()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(args.seed);
    let report = match linkability::run(&config, &mut rng) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let link_config = LinkObserverConfig {
        // Range-checked by clap to ≤ 10⁷.
        rounds: args.link_rounds as usize,
        proofs_per_round: args.client_cover_proofs_per_round,
        ..LinkObserverConfig::default()
    };
    let link = link_observer::run(&link_config, &mut rng);
    if args.json {
        let mut value = serde_json::to_value(&report).unwrap_or_default();
        value["link_observer"] = serde_json::json!({ "config": link_config, "results": link });
        println!("{value}");
    } else {
        print_linkability(&report, args.seed);
        print_link_observer(&link_config, &link);
    }
    0
}

fn print_link_observer(c: &LinkObserverConfig, rows: &[LinkObserverResult]) {
    println!();
    println!(
        "link observer: watches one client's link and guesses per round whether it talks ({} rounds; talks with p = {}, \
         {} % of messages 2 parts); client cover = {} proof(s) per 10 s round",
        c.rounds,
        c.talk_probability,
        c.two_part_probability * 100.0,
        c.proofs_per_round
    );
    println!(
        "{:<13} {:<8} {:<26} {:>10}  {:>13} {:>12}",
        "policy", "observer", "AUC [95% CI]", "0.5 + hw", "proofs/round", "latency (s)"
    );
    for r in rows {
        println!(
            "{:<13} {:<8} {:<26} {:>10.4}  {:>13.3} {:>12.2}",
            r.policy,
            r.observer,
            format!("{:.4} [{:.4}, {:.4}]", r.auc.auc, r.auc.ci_low, r.auc.ci_high),
            0.5 + r.half_width,
            r.proofs_per_round_measured,
            r.latency_mean_s
        );
    }
    println!("(target with client cover: AUC ≤ 0.5 + hw, the interval's half-width: no signal)");
}

fn print_linkability(r: &LinkabilityReport, seed: u64) {
    println!(
        "linkability: observer knows every other proof (c = {} per bucket per round) and sees one bucket's count;",
        r.background_per_bucket
    );
    println!(
        "worlds with / without one delivery, {} samples each per policy (seed {seed}); δ = {:e}; 95 % intervals",
        r.samples_per_world, r.delta
    );
    println!(
        "{:<13} {:>5} {:>4}  {:<26} {:>7}  {:>7}  {:>15} {:>15}",
        "policy", "ε", "t", "AUC [95% CI]", "bound", "ε_lb", "dummies/round", "measured"
    );
    for row in &r.results {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "{:<13} {:>5} {:>4}  {:<26} {:>7}  {:>7.3}  {:>15.1} {:>15.1}",
            row.policy,
            opt(row.epsilon.map(|e| format!("{e}"))),
            opt(row.shift_t.map(|t| t.to_string())),
            format!("{:.4} [{:.4}, {:.4}]", row.auc.auc, row.auc.ci_low, row.auc.ci_high),
            opt(row.auc_bound.map(|b| format!("{b:.4}"))),
            row.audit.epsilon_lb,
            row.dummies_per_round_expected,
            row.dummies_per_round_measured,
        );
    }
    println!(
        "(dummies per round over {} buckets; ε_lb of none/proportional is limited only by the sample count)",
        r.buckets
    );
}

fn run_anonymity(args: AnonymityArgs) -> i32 {
    let config = AnonymityConfig {
        users: args.users,
        trials: args.trials,
        num_buckets: args.buckets,
        bloom_probes: args.samples,
        ..AnonymityConfig::default()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(args.seed);
    let report = anonymity::run(&config, &mut rng);
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
        return 0;
    }
    println!("bucket occupancy: {} buckets, {} trials per row (seed {})", report.num_buckets, report.trials, args.seed);
    println!(
        "{:>10} {:>12} {:>10} {:>10} {:>12} {:>10}",
        "users", "expected", "min(mean)", "min(worst)", "median", "empty"
    );
    for row in &report.occupancy {
        println!(
            "{:>10} {:>12.1} {:>10.1} {:>10} {:>12.1} {:>10.2}",
            row.users, row.expected_per_bucket, row.min_mean, row.min_worst, row.median_mean, row.empty_buckets_mean
        );
    }
    println!();
    println!("Bloom false-positive rate: m = {} bits, k = {}", report.bloom_m_bits, report.bloom_k);
    println!("{:>6} {:>10} {:>10} {:>22} {:>10}", "items", "analytic", "measured", "95% CI", "probes");
    for row in &report.bloom {
        println!(
            "{:>6} {:>9.4}% {:>9.4}% {:>22} {:>10}",
            row.items,
            row.analytic_fpr * 100.0,
            row.measured_fpr * 100.0,
            format!("[{:.4}%, {:.4}%]", row.ci_low * 100.0, row.ci_high * 100.0),
            row.probes
        );
    }
    0
}
