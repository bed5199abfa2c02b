//! Command-line interface: one file per command group; `main.rs` only dispatches.

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

pub mod contacts;
pub mod dp;
pub mod home;
pub mod id;
pub mod messaging;
pub mod params;
pub mod perf;
pub mod perf_e2e;
pub mod relay;
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
    /// Run the relay (embedded defaults: 127.0.0.1:8100, ./tessera-data).
    Relay(relay::RelayArgs),
    /// Print the protocol parameters and limits this build uses.
    Params(params::ParamsArgs),
    /// Run a standard workload (W-route, W-sub) on one core and report its throughput.
    Perf(perf::PerfArgs),
    /// Create or show your identity (key pair) in the key directory.
    Id(id::IdArgs),
    /// Print your invite code: your public key and relays, for a contact to enroll.
    Invite(contacts::InviteArgs),
    /// Enroll a contact from their invite code.
    Enroll(contacts::EnrollArgs),
    /// Send a message to a contact; exits 0 once the relay has stored it durably.
    Send(messaging::SendArgs),
    /// Print the messages waiting for you (--follow: and keep printing as they arrive).
    Recv(messaging::RecvArgs),
    /// Chat with a contact: typed lines are sent, received messages printed; Ctrl-D ends.
    Chat(messaging::ChatArgs),
    /// Differential-privacy cover traffic: capacity planning.
    Dp(dp::DpArgs),
    /// Privacy simulators: linkability under cover policies, bucket anonymity, Bloom false positives.
    Sim(sim::SimArgs),
}

/// Parses the command line and runs the command; returns the process exit code.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One line naming the bad flag or value (clap's first line), exit status 2.
            let rendered = e.to_string();
            eprintln!("{}", rendered.lines().next().unwrap_or("invalid arguments"));
            return 2;
        }
        Err(e) => {
            // --help and --version.
            let _ = e.print();
            return 0;
        }
    };
    match cli.command {
        Command::Relay(args) => relay::run(args),
        Command::Params(args) => params::run(args),
        Command::Perf(args) => perf::run(args),
        Command::Id(args) => id::run(args),
        Command::Invite(args) => contacts::run_invite(args),
        Command::Enroll(args) => contacts::run_enroll(args),
        Command::Send(args) => messaging::run_send(args),
        Command::Recv(args) => messaging::run_recv(args),
        Command::Chat(args) => messaging::run_chat(args),
        Command::Dp(args) => dp::run(args),
        Command::Sim(args) => sim::run(args),
    }
}

/// Logs go to stderr through `tracing`; the level comes from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
