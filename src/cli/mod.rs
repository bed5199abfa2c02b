//! Command-line interface: one file per command group; `main.rs` only dispatches.

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

pub mod cert;
pub mod contacts;
pub mod cover_args;
pub mod dp;
pub mod home;
pub mod id;
pub mod messaging;
pub mod params;
pub mod perf;
pub mod perf_e2e;
pub mod perf_hostile;
pub mod perf_idle_cover;
pub mod relay;
pub mod relay_pin;
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
    Relay(Box<relay::RelayArgs>),
    /// Print the protocol parameters and limits this build uses.
    Params(params::ParamsArgs),
    /// Measure a standard workload: `perf route`, `perf subscribe` (one shard), `perf e2e` (a relay under load).
    Perf(perf::PerfArgs),
    /// Create or show your identity (key pair) in the key directory.
    Id(id::IdArgs),
    /// Print your invite code: your public key and relays, for a contact to enroll.
    Invite(contacts::InviteArgs),
    /// Enroll a contact from their invite code.
    Enroll(contacts::EnrollArgs),
    /// Print the safety code of a contact (or of every contact), to compare with them out of band.
    Safety(contacts::SafetyArgs),
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
    /// TLS certificates: `cert new` writes a self-signed pair for a relay and prints its pin.
    Cert(cert::CertArgs),
}

/// Parses the command line and runs the command; returns the process exit code.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // Clap's error with what names the problem (the missing arguments, a tip, the usage), exit status 2.
            eprintln!("{}", usage_error_text(&e.to_string()));
            return 2;
        }
        Err(e) => {
            // --help and --version.
            let _ = e.print();
            return 0;
        }
    };
    match cli.command {
        Command::Relay(args) => relay::run(*args),
        Command::Params(args) => params::run(args),
        Command::Perf(args) => perf::run(args),
        Command::Id(args) => id::run(args),
        Command::Invite(args) => contacts::run_invite(args),
        Command::Enroll(args) => contacts::run_enroll(args),
        Command::Safety(args) => contacts::run_safety(args),
        Command::Send(args) => messaging::run_send(args),
        Command::Recv(args) => messaging::run_recv(args),
        Command::Chat(args) => messaging::run_chat(args),
        Command::Dp(args) => dp::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Cert(args) => cert::run(args),
    }
}

/// Clap's rendered error without its closing "For more information, try '--help'." paragraph: a bad value
/// stays one line (`error: invalid value '70000' for '--port <PORT>': ...`), while a missing argument keeps the
/// indented list of the arguments it needs and the usage line, since its first line alone names none of them.
fn usage_error_text(rendered: &str) -> String {
    let kept: Vec<&str> = rendered.lines().filter(|line| !line.starts_with("For more information")).collect();
    let text = kept.join("\n");
    let text = text.trim();
    if text.is_empty() {
        "error: invalid arguments".to_owned()
    } else {
        text.to_owned()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(args: &[&str]) -> String {
        usage_error_text(&Cli::try_parse_from(args).unwrap_err().to_string())
    }

    #[test]
    fn a_missing_argument_is_named() {
        let text = parse_error(&["tessera", "send", "--to", "bob"]);
        assert!(text.starts_with("error: the following required arguments were not provided:"), "{text}");
        assert!(text.contains("<TEXT>"), "{text}");
        assert!(text.contains("Usage: tessera send"), "{text}");
        assert!(!text.contains("For more information"), "{text}");
        let text = parse_error(&["tessera", "send", "hello"]);
        assert!(text.contains("--to <NAME>"), "{text}");
    }

    #[test]
    fn a_bad_value_stays_one_line() {
        let text = parse_error(&["tessera", "relay", "--port", "70000"]);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("--port") && text.contains("70000"), "{text}");
    }
}
