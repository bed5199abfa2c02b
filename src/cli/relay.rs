//! `tessera relay`: runs the relay on embedded defaults, a TOML file and flags (flags win).

use std::path::PathBuf;

use clap::Args;

use crate::server::config::{ConfigError, ConfigLayer, RelayConfig};

/// Arguments of `tessera relay`. Every flag but `--config` has a TOML key of the same name (`-` → `_`;
/// `--retention` is `retention_s`); tuning/relay.example.toml lists them all (test below).
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
    /// Serve /metrics and /healthz on HOST:PORT, never on the client port [default: 127.0.0.1, --port + 1;
    /// an ephemeral port with --port 0]. A non-loopback address is logged.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// DANGER: /metrics also shows exact real (non-cover) counts live; tests and benchmarks only, loopback
    /// --metrics-addr only. Logged loudly.
    #[arg(long)]
    pub danger_exact_metrics: bool,
    /// A browser origin allowed to open a WebSocket (repeat for more); upgrades carrying any other Origin get
    /// 403. Requests without Origin (native clients) are always accepted.
    #[arg(long, visible_alias = "allow-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
    /// The request path that accepts WebSocket upgrades [default: /].
    #[arg(long, value_name = "PATH")]
    pub websocket_path: Option<String>,
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
    /// Number of shards, one executor per core; at most the available cores [default: available cores].
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
    /// Close an upgraded WebSocket connection that sends no HELLO within this long, ms [default: 10000].
    #[arg(long)]
    pub hello_timeout_ms: Option<u64>,
    /// Most accepted sockets still in their HTTP request or upgrade; more are closed at once [default: 4096].
    #[arg(long)]
    pub handshakes_max: Option<u32>,
    /// Close an established connection that sends nothing (no message, ping or pong) this long, ms; the relay
    /// pings it halfway [default: 300000].
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    /// Most sockets one source address (IPv6: one /64) may hold open, handshakes included; more are closed at
    /// accept [default: 256].
    #[arg(long)]
    pub connections_per_ip_max: Option<u32>,
    /// The same for loopback sources (a local proxy, the load generator), all together [default: 65536].
    #[arg(long)]
    pub connections_per_loopback_max: Option<u32>,
    /// Deadline of a plain HTTP exchange or of the WebSocket upgrade (request in, response out), ms
    /// [default: 10000].
    #[arg(long)]
    pub http_timeout_ms: Option<u64>,
    /// DANGER: never fdatasync the log (ACKs stop meaning durable); for measuring durability's cost. Logged loudly.
    #[arg(long)]
    pub danger_log_skip_fdatasync: bool,
    /// Group commit: make a batch durable once it holds this many records [default: 1024].
    #[arg(long)]
    pub log_group_commit_records_max: Option<u32>,
    /// Group commit: or once its oldest record waited this long, µs [default: 200].
    #[arg(long)]
    pub log_group_commit_delay_us_max: Option<u64>,
    /// PEM certificate chain: serve wss:// (TLS) on the client port (`tessera cert new` makes a pair).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve TLS (https://) on the --metrics-addr listener too, with the same certificate.
    #[arg(long)]
    pub metrics_tls: bool,
    /// DANGER: listen on a non-loopback address without TLS; the link then shows who publishes where. Logged loudly.
    #[arg(long)]
    pub danger_plaintext: bool,
}

impl RelayArgs {
    fn layer(&self) -> ConfigLayer {
        ConfigLayer {
            host: self.host.clone(),
            port: self.port,
            metrics_addr: self.metrics_addr.clone(),
            danger_exact_metrics: self.danger_exact_metrics.then_some(true),
            allowed_origins: (!self.allowed_origins.is_empty()).then(|| self.allowed_origins.clone()),
            websocket_path: self.websocket_path.clone(),
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
            hello_timeout_ms: self.hello_timeout_ms,
            handshakes_max: self.handshakes_max,
            idle_timeout_ms: self.idle_timeout_ms,
            connections_per_ip_max: self.connections_per_ip_max,
            connections_per_loopback_max: self.connections_per_loopback_max,
            http_timeout_ms: self.http_timeout_ms,
            danger_log_skip_fdatasync: self.danger_log_skip_fdatasync.then_some(true),
            log_group_commit_records_max: self.log_group_commit_records_max,
            log_group_commit_delay_us_max: self.log_group_commit_delay_us_max,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            metrics_tls: self.metrics_tls.then_some(true),
            danger_plaintext: self.danger_plaintext.then_some(true),
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
    use crate::server::config::LimitsLayer;

    /// Stops a deserialization once it has read the field list (the test below needs only that).
    #[derive(Debug)]
    struct Stop;

    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field list read")
        }
    }

    impl std::error::Error for Stop {}

    impl serde::de::Error for Stop {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Stop
        }
    }

    /// A deserializer that records the field list a derived `Deserialize` passes to `deserialize_struct`:
    /// the exact set of keys serde (with `deny_unknown_fields`) accepts, read from the code, not a copy.
    struct FieldNames<'a>(&'a std::cell::Cell<&'static [&'static str]>);

    impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
        type Error = Stop;

        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }

        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0.set(fields);
            Err(Stop)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    fn serde_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
        let fields = std::cell::Cell::new(&[][..]);
        assert!(T::deserialize(FieldNames(&fields)).is_err());
        fields.get()
    }

    /// The example file's line that sets `key` in `section` (`None`: the top level), commented out or not.
    fn example_line<'a>(example: &'a str, section: Option<&str>, key: &str) -> Option<&'a str> {
        let mut current = None;
        for line in example.lines() {
            let code = line.trim_start_matches(['#', ' ']);
            if let Some(name) = code.strip_prefix('[').and_then(|rest| rest.split(']').next()) {
                current = Some(name);
                continue;
            }
            let sets_key = code.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='));
            if current == section && sets_key {
                return Some(line);
            }
        }
        None
    }

    #[test]
    fn the_example_file_shows_every_key_and_flag() {
        let example =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/relay.example.toml")).unwrap();
        let keys = serde_fields::<ConfigLayer>();
        assert!(keys.len() > 10 && keys.contains(&"window_s") && keys.contains(&"limits"), "{keys:?}");
        for key in keys.iter().filter(|&&k| k != "limits") {
            assert!(example_line(&example, None, key).is_some(), "tuning/relay.example.toml lacks `{key}`");
        }
        assert!(example.lines().any(|l| l.trim() == "[limits]"));
        for key in serde_fields::<LimitsLayer>() {
            assert!(example_line(&example, Some("limits"), key).is_some(), "example lacks `limits.{key}`");
        }
        // Every flag with a TOML equivalent: its key exists, and the example names the flag on the key's line.
        let command = <RelayArgs as clap::Args>::augment_args(clap::Command::new("relay"));
        let mut flags = 0;
        for arg in command.get_arguments() {
            let Some(flag) = arg.get_long() else { continue };
            assert!(!arg.is_hide_set(), "--{flag} is hidden from `tessera relay --help`");
            if flag == "config" {
                continue;
            }
            let key = if flag == "retention" { "retention_s".to_owned() } else { flag.replace('-', "_") };
            assert!(keys.contains(&key.as_str()), "--{flag} has no config key {key}");
            let line = example_line(&example, None, &key).unwrap();
            assert!(line.contains(&format!("--{flag}")), "the example's `{key}` line does not name --{flag}: {line}");
            flags += 1;
        }
        // Keys without a flag: window_s (a protocol parameter) and the [limits] table.
        assert_eq!(flags, keys.len() - 2, "a key gained or lost its flag: update the example and README");
    }

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
