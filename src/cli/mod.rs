//! Command-line interface: one file per command group; `main.rs` only dispatches.

use clap::{Parser, Subcommand};

pub mod contacts;
pub mod home;
pub mod id;
pub mod params;

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
    /// Create or show your identity (key pair) in the key directory.
    Id(id::IdArgs),
    /// Print your invite code: your public key and relays, for a contact to enroll.
    Invite(contacts::InviteArgs),
    /// Enroll a contact from their invite code.
    Enroll(contacts::EnrollArgs),
}

/// Parses the command line and runs the command; returns the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Params(args) => params::run(args),
        Command::Id(args) => id::run(args),
        Command::Invite(args) => contacts::run_invite(args),
        Command::Enroll(args) => contacts::run_enroll(args),
    }
}
