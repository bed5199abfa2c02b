//! `tessera dp plan`: the cost of a cover-traffic configuration (t, δ achieved, dummies, bandwidth, disk).
//!
//! Parses (ε, δ, buckets, round length, retention), validates them exactly as the relay does
//! (`dp::CoverMechanism`), and prints `dp::CoverPlan` as text or JSON. Exit code 2 on an invalid configuration.

use clap::{Args, Subcommand};

use crate::dp::{ClientCoverPlan, CoverMechanism, CoverPlan};
use crate::proto::{NUM_BUCKETS_DEFAULT, WINDOW_SECONDS};
use crate::server::config::RETENTION_S_DEFAULT;

/// Arguments of `tessera dp`.
#[derive(Args, Debug)]
pub struct DpArgs {
    /// The dp command to run.
    #[command(subcommand)]
    pub command: DpCommand,
}

/// `tessera dp` commands.
#[derive(Subcommand, Debug)]
pub enum DpCommand {
    /// Capacity plan for cover traffic: shift t, exact δ, dummies per round and per day, bandwidth and disk.
    Plan(PlanArgs),
}

/// Arguments of `tessera dp plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Privacy parameter ε (> 0; exact to 6 decimal places, otherwise rounded down).
    #[arg(long)]
    pub epsilon: f64,
    /// Privacy parameter δ (0 < δ < 1).
    #[arg(long)]
    pub delta: f64,
    /// Buckets per relay.
    #[arg(long, default_value_t = NUM_BUCKETS_DEFAULT, value_parser = clap::value_parser!(u16).range(1..))]
    pub buckets: u16,
    /// Round length in seconds (default: the routing window).
    #[arg(long, default_value_t = WINDOW_SECONDS as f64)]
    pub round_seconds: f64,
    /// Retention the disk figure is for: seconds, or with a unit (90s, 30m, 1h, 2d) [default: the relay's, 1h].
    #[arg(long, value_parser = crate::cli::relay::parse_duration_s, default_value_t = RETENTION_S_DEFAULT)]
    pub retention: u64,
    /// Client cover: proofs each connected client publishes per round (the bandwidth per client shown).
    #[arg(long, default_value_t = crate::client::COVER_PROOFS_PER_ROUND_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::client::COVER_PROOFS_PER_ROUND_MAX)))]
    pub client_cover_proofs_per_round: u32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `tessera dp`.
pub fn run(args: DpArgs) -> i32 {
    match args.command {
        DpCommand::Plan(plan) => run_plan(plan),
    }
}

fn run_plan(args: PlanArgs) -> i32 {
    let mechanism = match CoverMechanism::from_f64(args.epsilon, args.delta) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if !(args.round_seconds.is_finite() && args.round_seconds > 0.0) {
        eprintln!("error: --round-seconds {} must be a positive number", args.round_seconds);
        return 2;
    }
    let round_us = (args.round_seconds * 1e6).round() as u64;
    let plan = match CoverPlan::new(&mechanism, args.buckets, round_us, args.retention) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let rounded = !mechanism.epsilon().is_exactly(args.epsilon);
    // Clients round on the relay's window; the relay's cover round is the window by default.
    let client = ClientCoverPlan::new(args.client_cover_proofs_per_round, WINDOW_SECONDS as f64);
    if args.json {
        let mut value = serde_json::to_value(&plan).unwrap_or_default();
        value["epsilon_requested"] = serde_json::json!(args.epsilon);
        value["client_cover"] = serde_json::to_value(&client).unwrap_or_default();
        println!("{value}");
        return 0;
    }
    let eps = mechanism.epsilon();
    println!("cover traffic plan");
    println!(
        "  epsilon            {eps} (= {}){}",
        plan.epsilon_fraction,
        if rounded { format!(" — rounded down from {}", args.epsilon) } else { String::new() }
    );
    println!("  delta              {:e} target, {:.4e} achieved", plan.delta_target, plan.delta_achieved);
    println!("  shift t            {}", plan.shift_t);
    println!(
        "  per bucket/round   {:.2} dummies expected (sd {:.2}, cap {})",
        plan.dummies_per_bucket_per_round, plan.dummies_per_bucket_sd, plan.dummies_per_bucket_max
    );
    println!(
        "  per round          {:.1} dummies over {} buckets, round {} s",
        plan.dummies_per_round, plan.buckets, plan.round_seconds
    );
    println!("  per day            {:.0} dummies ({:.0} rounds)", plan.dummies_per_day, plan.rounds_per_day);
    println!(
        "  bandwidth          {:.0} B/s = {:.2} Mbit/s of {}-byte proofs per relay; {:.2} GB/day",
        plan.bytes_per_second,
        plan.bytes_per_second * 8.0 / 1e6,
        plan.proof_bytes,
        plan.bytes_per_day / 1e9
    );
    println!(
        "  disk               {:.2} GB per retention period ({} s) at {:.1} B per dummy on disk,",
        plan.disk_bytes_per_retention / 1e9,
        plan.retention_seconds,
        plan.disk_bytes_per_proof
    );
    // Retention deletes whole segments, so each shard's oldest one lingers until its newest proof expires.
    println!("                     plus up to one more segment per shard until its newest proof expires");
    println!("  schedule memory    ≤ {} KiB per round (all buckets at the cap)", plan.schedule_bytes_max / 1024);
    print_client(&client);
    0
}

/// The client-cover lines of the text plan.
fn print_client(c: &ClientCoverPlan) {
    println!("client cover (per connected client: recv --follow, chat)");
    println!(
        "  proofs per round   {} every {} s (the relay's window), real messages first",
        c.proofs_per_round, c.round_seconds
    );
    println!(
        "  bandwidth          {:.1} B/s up ({} B per round), {:.1} B/s down ({} B per round: its cover back + ACK)",
        c.up_bytes_per_second, c.up_bytes_per_round, c.down_bytes_per_second, c.down_bytes_per_round
    );
    println!(
        "  latency            a message waits for the round's random send instant: {:.1} s mean, {:.0} s at most",
        c.latency_mean_seconds, c.latency_max_seconds
    );
    println!("  relay load         {:.0} proofs/s for 4,800 connected clients", c.relay_proofs_per_second_4800_clients);
}
