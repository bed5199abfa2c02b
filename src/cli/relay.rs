//! `tessera relay`: runs the relay on embedded defaults, a TOML file and flags (flags win).

use std::path::PathBuf;

use clap::Args;

use crate::server::config::{ConfigError, ConfigLayer, RelayConfig};

/// Arguments of `tessera relay`. Every flag has a TOML key of the same name (`-` → `_`).
#[derive(Args, Debug, Default)]
pub struct RelayArgs {
    /// TOML configuration file (see tuning/relay.example.toml); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on; 0 picks a free one (printed at start) [default: 8100].
    #[arg(long)]
    pub port: Option<u16>,
    /// Serve /metrics and /healthz on this port instead of the main one.
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// Storage directory, or log:///absolute/path [default: ./tessera-data].
    #[arg(long, visible_alias = "data-dir")]
    pub storage: Option<String>,
    /// Cover-traffic epsilon, > 0 [default: 0.1].
    #[arg(long)]
    pub cover_traffic_epsilon: Option<f64>,
    /// Cover-traffic delta, in (0, 1) [default: 1e-6].
    #[arg(long)]
    pub cover_traffic_delta: Option<f64>,
    /// DANGER: send no cover traffic; per-bucket counts then reveal who talks. Logged loudly.
    #[arg(long)]
    pub danger_disable_cover_traffic: bool,
    /// Cover-traffic round length, ms [default: 10000, one window].
    #[arg(long)]
    pub cover_round_ms: Option<u64>,
    /// Number of shards, one executor per core [default: available cores].
    #[arg(long)]
    pub shards: Option<usize>,
    /// Number of buckets [default: 64].
    #[arg(long)]
    pub num_buckets: Option<u16>,
    /// Allowed publisher clock skew, seconds [default: 2].
    #[arg(long)]
    pub clock_skew_s: Option<u64>,
    /// How long proofs are kept for FETCH: seconds, or with a unit (90s, 30m, 1h, 2d) [default: 1h].
    #[arg(long, value_parser = parse_duration_s)]
    pub retention: Option<u64>,
    /// Grace period before a connection whose writes make no progress is closed, ms [default: 5000].
    #[arg(long)]
    pub slow_consumer_grace_ms: Option<u64>,
    /// DANGER: never fdatasync the log (ACKs stop meaning durable); for measuring durability's cost. Logged loudly.
    #[arg(long)]
    pub danger_log_skip_fdatasync: bool,
    /// Group commit: make a batch durable once it holds this many records [default: 1024].
    #[arg(long)]
    pub log_group_commit_records_max: Option<u32>,
    /// Group commit: or once its oldest record waited this long, µs [default: 200].
    #[arg(long)]
    pub log_group_commit_delay_us_max: Option<u64>,
}

impl RelayArgs {
    fn layer(&self) -> ConfigLayer {
        ConfigLayer {
            host: self.host.clone(),
            port: self.port,
            metrics_port: self.metrics_port,
            storage: self.storage.clone(),
            cover_traffic_epsilon: self.cover_traffic_epsilon,
            cover_traffic_delta: self.cover_traffic_delta,
            danger_disable_cover_traffic: self.danger_disable_cover_traffic.then_some(true),
            cover_round_ms: self.cover_round_ms,
            window_s: None,
            shards: self.shards,
            num_buckets: self.num_buckets,
            clock_skew_s: self.clock_skew_s,
            retention_s: self.retention,
            slow_consumer_grace_ms: self.slow_consumer_grace_ms,
            danger_log_skip_fdatasync: self.danger_log_skip_fdatasync.then_some(true),
            log_group_commit_records_max: self.log_group_commit_records_max,
            log_group_commit_delay_us_max: self.log_group_commit_delay_us_max,
            limits: None,
        }
    }

    /// The validated configuration: defaults ← file ← flags.
    pub fn resolve(&self) -> Result<RelayConfig, ConfigError> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mut config = RelayConfig::defaults(cores);
        if let Some(path) = &self.config {
            config.apply(&ConfigLayer::from_file(path)?)?;
        }
        config.apply(&self.layer())?;
        config.validate()?;
        Ok(config)
    }
}

/// `3600`, `90s`, `30m`, `1h`, `2d` → seconds.
pub fn parse_duration_s(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration (e.g. 3600, 90s, 30m, 1h, 2d)"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    value.checked_mul(scale).ok_or_else(|| format!("{text:?} is too long"))
}

/// Runs the relay; returns the exit code: 2 for an invalid value, a storage directory it cannot use or a port
/// it cannot listen on (`StartError::exit_code`), 1 for any other failure.
pub fn run(args: RelayArgs) -> i32 {
    crate::cli::init_tracing();
    let config = match args.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tessera relay: {e}");
            return 2;
        }
    };
    match crate::driver::relay::run_relay(config) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tessera relay: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_s("3600"), Ok(3600));
        assert_eq!(parse_duration_s("90s"), Ok(90));
        assert_eq!(parse_duration_s("30m"), Ok(1800));
        assert_eq!(parse_duration_s("1h"), Ok(3600));
        assert_eq!(parse_duration_s("2d"), Ok(172_800));
        assert!(parse_duration_s("1w").is_err());
        assert!(parse_duration_s("h").is_err());
    }

    #[test]
    fn flags_override_file_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(&file, "port = 9000\ncover_traffic_epsilon = 0.5\n").unwrap();
        let args = RelayArgs { config: Some(file.clone()), port: Some(9100), ..Default::default() };
        let config = args.resolve().unwrap();
        assert_eq!((config.port, config.cover_traffic_epsilon), (9100, 0.5));
        let bad = RelayArgs { config: Some(file), cover_traffic_epsilon: Some(-1.0), ..Default::default() };
        assert!(bad.resolve().unwrap_err().to_string().contains("cover-traffic-epsilon"));
    }
}
