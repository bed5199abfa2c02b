//! Command-line interface: one file per command group; `main.rs` only dispatches.

use clap::{Parser, Subcommand};

pub mod dp;
pub mod params;
pub mod sim;

/// Tessera: a metadata-private messaging relay.
#[derive(Parser, Debug)]
#[command(name = "tessera", version, about, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the protocol parameters and limits this build uses.
    Params(params::ParamsArgs),
    /// Differential-privacy cover traffic: capacity planning.
    Dp(dp::DpArgs),
    /// Privacy simulators: linkability under cover policies, bucket anonymity, Bloom false positives.
    Sim(sim::SimArgs),
}

/// Parses the command line and runs the command; returns the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Params(args) => params::run(args),
        Command::Dp(args) => dp::run(args),
        Command::Sim(args) => sim::run(args),
    }
}
