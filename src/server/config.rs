//! Relay configuration: embedded defaults ← TOML file (`--config`) ← command-line flags.
//!
//! Every flag but `--config` has a TOML key of the same name with `_` for `-` (`--retention` is `retention_s`);
//! `window_s` and the `[limits]` table are file-only. tuning/relay.example.toml lists every key (a test in
//! `cli::relay` checks it). Validation turns each bad value, and a TOML key of the wrong type, into one line
//! that names it; the CLI prints that line and exits with status 2.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::dp::schedule::ROUND_US_MAX;
use crate::dp::{CoverConfigError, CoverMechanism};
use crate::proto::{Limits, NUM_BUCKETS_DEFAULT, WINDOW_SECONDS};

/// Default listening port (the documented one; the reference uses 8765).
pub const PORT_DEFAULT: u16 = 8100;
/// Default storage directory, relative to the working directory.
pub const STORAGE_DEFAULT: &str = "./tessera-data";
/// Default cover-traffic ε (docs/FOUNDATIONS.md §4).
pub const EPSILON_DEFAULT: f64 = 0.1;
/// Default cover-traffic δ.
pub const DELTA_DEFAULT: f64 = 1e-6;
/// Default retention: one hour, matching the subscription horizon (`subscription_windows_ahead_max`).
pub const RETENTION_S_DEFAULT: u64 = 3600;
/// Allowed clock skew between publishers and the relay when checking a proof's window.
pub const CLOCK_SKEW_S_DEFAULT: u64 = 2;
/// How long a connection's send queue may stay full before the relay closes it.
pub const SLOW_CONSUMER_GRACE_MS_DEFAULT: u64 = 5_000;
/// How long an upgraded WebSocket connection may take to send its HELLO before the relay closes it.
pub const HELLO_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Accepted sockets still in their HTTP request or WebSocket upgrade, relay-wide, before new ones are closed at
/// once: a reconnect storm of 20,000 clients/s with a 200 ms handshake keeps ~4,000 in flight; each costs a
/// descriptor, a task and a few KiB of buffers (≈ 16 MiB at the cap).
pub const HANDSHAKES_MAX_DEFAULT: u32 = 4_096;
/// How long an established connection (HELLO done) may go without sending anything — a message, a WebSocket
/// ping or the pong answering the relay's own ping — before the relay closes it: five minutes, far above any
/// keep-alive a client library sends, short enough that forgotten connections do not pile up.
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 300_000;
/// Longest idle timeout: a day.
pub const IDLE_TIMEOUT_MS_MAX: u64 = 86_400_000;
/// Sockets one source address (an IPv6 /64) may hold open on the main port, in their handshake or upgraded:
/// a household or an office behind one NAT address stays far below it, one host cannot take 65,536 places.
pub const CONNECTIONS_PER_IP_MAX_DEFAULT: u32 = 256;
/// The same for loopback sources: a local TLS proxy makes every client 127.0.0.1, and the load generator
/// opens thousands of connections from it, so by default loopback is bounded only by `connections_max`.
pub const CONNECTIONS_PER_LOOPBACK_MAX_DEFAULT: u32 = 65_536;
/// How long a plain HTTP exchange (request head in, response out: `/metrics`, `/healthz`, an error answer)
/// or the WebSocket upgrade (request head in, 101 out) may take; also bounds a response to a client that
/// does not read it.
pub const HTTP_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Longest HTTP timeout.
pub const HTTP_TIMEOUT_MS_MAX: u64 = 60_000;
/// Default cover round: one routing window (docs/FOUNDATIONS.md §4), so a round's dummies share their window.
pub const COVER_ROUND_MS_DEFAULT: u64 = WINDOW_SECONDS * 1000;
/// Shortest cover round: below it a round's ~8,450 dummies would arrive faster than rounds can be told apart.
pub const COVER_ROUND_MS_MIN: u64 = 100;
/// Longest HELLO timeout: past a minute a silent connection is no longer "still connecting".
pub const HELLO_TIMEOUT_MS_MAX: u64 = 60_000;
/// Most shards a relay runs (one per core); far above any machine this targets.
pub const SHARDS_MAX: usize = 256;

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {key} {value:?}: {reason}")]
pub struct ConfigError {
    /// The flag or key, as the user wrote it (e.g. `--cover-traffic-epsilon`).
    pub key: String,
    /// The offending value, as text.
    pub value: String,
    /// What is required.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: &str, value: impl ToString, reason: impl Into<String>) -> Self {
        Self { key: key.to_owned(), value: value.to_string(), reason: reason.into() }
    }
}

/// The relay's complete, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// Address to listen on.
    pub host: IpAddr,
    /// Port to listen on (0 = any free port; the bound port is printed at start).
    pub port: u16,
    /// Where `/metrics` and `/healthz` are served (never on `port`); `None` = loopback, `port` + 1 (an
    /// ephemeral port when `port` is 0): `edge::metrics_bind_addr`. A non-loopback address is logged.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// DANGER: `/metrics` also shows exact real (non-cover) counts live (docs/PRIVACY.md §Metrics); for tests
    /// and benchmarks; refused with a non-loopback metrics address. Logged loudly.
    pub danger_exact_metrics: bool,
    /// Browser origins allowed to open a WebSocket (`Origin` header); a request without `Origin` (a native
    /// client) is always accepted, one with an origin not listed is refused with 403.
    pub allowed_origins: Vec<String>,
    /// The one request path that accepts a WebSocket upgrade (docs/PROTOCOL.md §2).
    pub websocket_path: String,
    /// Storage directory (logs, persisted subscriptions).
    pub storage: PathBuf,
    /// Cover-traffic ε (> 0).
    pub cover_traffic_epsilon: f64,
    /// Cover-traffic δ (0 < δ < 1).
    pub cover_traffic_delta: f64,
    /// Turns cover traffic off: per-bucket counts then leak who talks. Logged loudly.
    pub danger_disable_cover_traffic: bool,
    /// Cover-traffic round length, milliseconds: each round every bucket gets `max(0, t + Z)` dummies.
    pub cover_round_ms: u64,
    /// Number of shards (executors, one per core).
    pub shards: usize,
    /// Number of buckets.
    pub num_buckets: u16,
    /// Window length, seconds (announced in HELLO_REPLY; the reference and the default use 10).
    pub window_s: u64,
    /// Allowed clock skew for proof windows, seconds.
    pub clock_skew_s: u64,
    /// How long proofs are kept for FETCH, seconds.
    pub retention_s: u64,
    /// Grace period before a connection with a full send queue is closed, milliseconds.
    pub slow_consumer_grace_ms: u64,
    /// An upgraded WebSocket connection whose first HELLO has not arrived this long after the upgrade is
    /// closed (it held a place among `connections_max`), milliseconds.
    pub hello_timeout_ms: u64,
    /// Accepted sockets still in their HTTP request head or upgrade (relay-wide; the metrics port counts its
    /// own); a socket accepted beyond it is closed at once.
    pub handshakes_max: u32,
    /// An established connection that sends nothing for this long is closed (the relay pings it halfway, so
    /// a live client's WebSocket library answers for it), milliseconds.
    pub idle_timeout_ms: u64,
    /// Sockets one source address (IPv6: one /64) may hold on the main port, handshakes included; more are
    /// closed at accept. Loopback sources use `connections_per_loopback_max` instead.
    pub connections_per_ip_max: u32,
    /// The same for loopback sources (127.0.0.0/8, ::1), all of them together.
    pub connections_per_loopback_max: u32,
    /// Deadline of a plain HTTP exchange or of the WebSocket upgrade (request head read, response written),
    /// milliseconds.
    pub http_timeout_ms: u64,
    /// DANGER: the log writes but never fdatasyncs, so an ACK no longer means durable. Only for measuring what
    /// durability costs (the "non-durable" W-e2e figure). Logged loudly.
    pub danger_log_skip_fdatasync: bool,
    /// Group commit: make a batch durable once it holds this many records (tuning/log.md).
    pub log_group_commit_records_max: u32,
    /// Group commit: or once its oldest record has waited this long, microseconds.
    pub log_group_commit_delay_us_max: u64,
    /// PEM certificate chain: with `tls_key`, the client port serves wss:// (TLS) instead of ws://.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Serve TLS (https://) on the metrics listener too, with the same certificate.
    pub metrics_tls: bool,
    /// DANGER: allow listening on a non-loopback address without TLS: every observer of the link then reads
    /// per-bucket PUBLISH counts, subscriber ids, and the identical bytes of a PUBLISH and its DELIVER. Logged
    /// loudly.
    pub danger_plaintext: bool,
    /// Limits announced in HELLO_REPLY and enforced.
    pub limits: Limits,
}

impl RelayConfig {
    /// Embedded defaults: everything needed to start with no file and no flag.
    pub fn defaults(available_cores: usize) -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: PORT_DEFAULT,
            metrics_addr: None,
            danger_exact_metrics: false,
            allowed_origins: Vec::new(),
            websocket_path: super::edge::WEBSOCKET_PATH_DEFAULT.to_owned(),
            storage: PathBuf::from(STORAGE_DEFAULT),
            cover_traffic_epsilon: EPSILON_DEFAULT,
            cover_traffic_delta: DELTA_DEFAULT,
            danger_disable_cover_traffic: false,
            cover_round_ms: COVER_ROUND_MS_DEFAULT,
            shards: available_cores.clamp(1, NUM_BUCKETS_DEFAULT as usize),
            num_buckets: NUM_BUCKETS_DEFAULT,
            window_s: WINDOW_SECONDS,
            clock_skew_s: CLOCK_SKEW_S_DEFAULT,
            retention_s: RETENTION_S_DEFAULT,
            slow_consumer_grace_ms: SLOW_CONSUMER_GRACE_MS_DEFAULT,
            hello_timeout_ms: HELLO_TIMEOUT_MS_DEFAULT,
            handshakes_max: HANDSHAKES_MAX_DEFAULT,
            idle_timeout_ms: IDLE_TIMEOUT_MS_DEFAULT,
            connections_per_ip_max: CONNECTIONS_PER_IP_MAX_DEFAULT,
            connections_per_loopback_max: CONNECTIONS_PER_LOOPBACK_MAX_DEFAULT,
            http_timeout_ms: HTTP_TIMEOUT_MS_DEFAULT,
            danger_log_skip_fdatasync: false,
            log_group_commit_records_max: crate::log::commit::GroupCommitPolicy::RECORDS_MAX_DEFAULT,
            log_group_commit_delay_us_max: crate::log::commit::GroupCommitPolicy::DELAY_US_MAX_DEFAULT,
            tls_cert: None,
            tls_key: None,
            metrics_tls: false,
            danger_plaintext: false,
            limits: Limits::default(),
        }
    }

    /// Applies a layer of optional settings (a file or the flags) on top of this configuration.
    pub fn apply(&mut self, layer: &ConfigLayer) -> Result<(), ConfigError> {
        if let Some(host) = &layer.host {
            self.host = host.parse().map_err(|_| ConfigError::new("host", host, "must be an IP address"))?;
        }
        set(&mut self.port, layer.port);
        super::edge::apply(self, layer)?;
        if let Some(storage) = &layer.storage {
            self.storage = parse_storage(storage)?;
        }
        set(&mut self.cover_traffic_epsilon, layer.cover_traffic_epsilon);
        set(&mut self.cover_traffic_delta, layer.cover_traffic_delta);
        set(&mut self.danger_disable_cover_traffic, layer.danger_disable_cover_traffic);
        set(&mut self.cover_round_ms, layer.cover_round_ms);
        set(&mut self.window_s, layer.window_s);
        set(&mut self.shards, layer.shards);
        set(&mut self.num_buckets, layer.num_buckets);
        set(&mut self.clock_skew_s, layer.clock_skew_s);
        set(&mut self.retention_s, layer.retention_s);
        set(&mut self.slow_consumer_grace_ms, layer.slow_consumer_grace_ms);
        set(&mut self.hello_timeout_ms, layer.hello_timeout_ms);
        set(&mut self.handshakes_max, layer.handshakes_max);
        set(&mut self.idle_timeout_ms, layer.idle_timeout_ms);
        set(&mut self.connections_per_ip_max, layer.connections_per_ip_max);
        set(&mut self.connections_per_loopback_max, layer.connections_per_loopback_max);
        set(&mut self.http_timeout_ms, layer.http_timeout_ms);
        set(&mut self.danger_log_skip_fdatasync, layer.danger_log_skip_fdatasync);
        set(&mut self.log_group_commit_records_max, layer.log_group_commit_records_max);
        set(&mut self.log_group_commit_delay_us_max, layer.log_group_commit_delay_us_max);
        if layer.tls_cert.is_some() {
            self.tls_cert.clone_from(&layer.tls_cert);
        }
        if layer.tls_key.is_some() {
            self.tls_key.clone_from(&layer.tls_key);
        }
        set(&mut self.metrics_tls, layer.metrics_tls);
        set(&mut self.danger_plaintext, layer.danger_plaintext);
        if let Some(l) = &layer.limits {
            let limits = &mut self.limits;
            set(&mut limits.message_bytes_max, l.message_bytes_max);
            set(&mut limits.frames_per_message_max, l.frames_per_message_max);
            set(&mut limits.proofs_per_batch_max, l.proofs_per_batch_max);
            set(&mut limits.entries_per_subscribe_max, l.entries_per_subscribe_max);
            set(&mut limits.filters_per_bucket_max, l.filters_per_bucket_max);
            set(&mut limits.subscribers_per_connection_max, l.subscribers_per_connection_max);
            set(&mut limits.subscription_windows_ahead_max, l.subscription_windows_ahead_max);
            set(&mut limits.connections_max, l.connections_max);
            set(&mut limits.send_queue_proofs_max, l.send_queue_proofs_max);
        }
        Ok(())
    }

    /// Whether the client port serves TLS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// TLS comes as a certificate and its key; a relay reachable beyond this machine speaks only TLS unless
    /// the operator says `danger_plaintext`.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let shown = |p: &Option<PathBuf>| p.as_ref().map_or_else(String::new, |p| p.display().to_string());
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err(ConfigError::new("tls-cert", shown(&self.tls_cert), "needs --tls-key")),
            (None, Some(_)) => return Err(ConfigError::new("tls-key", shown(&self.tls_key), "needs --tls-cert")),
            _ => {}
        }
        if self.metrics_tls && !self.tls() {
            return Err(ConfigError::new("metrics-tls", true, "needs --tls-cert and --tls-key"));
        }
        if !self.host.is_loopback() && !self.tls() && !self.danger_plaintext {
            return Err(ConfigError::new(
                "host",
                self.host,
                "is not a loopback address: serve TLS (--tls-cert, --tls-key; `tessera cert new` makes a pair) \
                 or pass --danger-plaintext",
            ));
        }
        Ok(())
    }

    /// Checks every value; the first bad one is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // The DP mechanism itself validates (ε, δ): ε on its exact rational grid, δ in (0, 1), bounded dummies.
        // Checked even when cover traffic is disabled, so that re-enabling it cannot fail later.
        if let Err(e) = self.cover_mechanism() {
            let (key, value) = match e {
                CoverConfigError::DeltaOutOfRange(_) => ("cover-traffic-delta", self.cover_traffic_delta),
                _ => ("cover-traffic-epsilon", self.cover_traffic_epsilon),
            };
            return Err(ConfigError::new(key, value, e.to_string()));
        }
        if !(COVER_ROUND_MS_MIN..=ROUND_US_MAX / 1000).contains(&self.cover_round_ms) {
            return Err(ConfigError::new(
                "cover-round-ms",
                self.cover_round_ms,
                format!("must be in {COVER_ROUND_MS_MIN}..={}", ROUND_US_MAX / 1000),
            ));
        }
        if self.window_s == 0 || self.window_s > 3600 {
            return Err(ConfigError::new("window-s", self.window_s, "must be in 1..=3600 seconds"));
        }
        if self.num_buckets == 0 {
            return Err(ConfigError::new("num-buckets", self.num_buckets, "must be at least 1"));
        }
        if self.shards == 0 || self.shards > SHARDS_MAX || self.shards > self.num_buckets as usize {
            return Err(ConfigError::new(
                "shards",
                self.shards,
                format!(
                    "must be 1..={} (and at most the number of buckets)",
                    SHARDS_MAX.min(self.num_buckets as usize)
                ),
            ));
        }
        self.validate_tls()?;
        super::edge::validate(self)?;
        if !(1..=HELLO_TIMEOUT_MS_MAX).contains(&self.hello_timeout_ms) {
            let reason = format!("must be in 1..={HELLO_TIMEOUT_MS_MAX} ms");
            return Err(ConfigError::new("hello-timeout-ms", self.hello_timeout_ms, reason));
        }
        if self.handshakes_max == 0 {
            return Err(ConfigError::new("handshakes-max", 0, "must be at least 1"));
        }
        if !(1..=IDLE_TIMEOUT_MS_MAX).contains(&self.idle_timeout_ms) {
            let reason = format!("must be in 1..={IDLE_TIMEOUT_MS_MAX} ms");
            return Err(ConfigError::new("idle-timeout-ms", self.idle_timeout_ms, reason));
        }
        if !(1..=HTTP_TIMEOUT_MS_MAX).contains(&self.http_timeout_ms) {
            let reason = format!("must be in 1..={HTTP_TIMEOUT_MS_MAX} ms");
            return Err(ConfigError::new("http-timeout-ms", self.http_timeout_ms, reason));
        }
        if self.connections_per_ip_max == 0 {
            return Err(ConfigError::new("connections-per-ip-max", 0, "must be at least 1"));
        }
        if self.connections_per_loopback_max == 0 {
            return Err(ConfigError::new("connections-per-loopback-max", 0, "must be at least 1"));
        }
        if self.clock_skew_s >= self.window_s {
            return Err(ConfigError::new("clock-skew-s", self.clock_skew_s, "must be shorter than the window"));
        }
        if self.log_group_commit_records_max == 0 {
            return Err(ConfigError::new("log-group-commit-records-max", 0, "must be at least 1 (1 = no grouping)"));
        }
        if self.log_group_commit_delay_us_max > 1_000_000 {
            let value = self.log_group_commit_delay_us_max;
            return Err(ConfigError::new("log-group-commit-delay-us-max", value, "must be at most 1,000,000 (1 s)"));
        }
        if self.retention_s < self.window_s * 2 {
            return Err(ConfigError::new("retention", self.retention_s, "must be at least two windows (20 s)"));
        }
        let l = &self.limits;
        let min_message = crate::proto::codec::FRAME_HEADER_LEN + 10 + crate::proto::PROOF_LEN;
        if (l.message_bytes_max as usize) < min_message || l.message_bytes_max > 64 << 20 {
            return Err(ConfigError::new(
                "limits.message_bytes_max",
                l.message_bytes_max,
                format!("must hold one proof ({min_message} bytes) and be at most 64 MiB"),
            ));
        }
        let checks: [(&str, u64); 8] = [
            ("limits.frames_per_message_max", l.frames_per_message_max.into()),
            ("limits.proofs_per_batch_max", l.proofs_per_batch_max.into()),
            ("limits.entries_per_subscribe_max", l.entries_per_subscribe_max.into()),
            ("limits.filters_per_bucket_max", l.filters_per_bucket_max.into()),
            ("limits.subscribers_per_connection_max", l.subscribers_per_connection_max.into()),
            ("limits.subscription_windows_ahead_max", l.subscription_windows_ahead_max.into()),
            ("limits.connections_max", l.connections_max.into()),
            ("limits.send_queue_proofs_max", l.send_queue_proofs_max.into()),
        ];
        for (key, value) in checks {
            if value == 0 {
                return Err(ConfigError::new(key, value, "must be at least 1"));
            }
        }
        if (l.proofs_per_batch_max as usize) < self.shards {
            // A FETCH asks every shard for its share of one page; each shard returns at least one proof.
            return Err(ConfigError::new(
                "limits.proofs_per_batch_max",
                l.proofs_per_batch_max,
                format!("must be at least the number of shards ({})", self.shards),
            ));
        }
        if (l.proofs_per_batch_max as usize) * crate::proto::PROOF_LEN + 64 > l.message_bytes_max as usize {
            return Err(ConfigError::new(
                "limits.proofs_per_batch_max",
                l.proofs_per_batch_max,
                "a full batch must fit in limits.message_bytes_max",
            ));
        }
        Ok(())
    }

    /// The cover-traffic mechanism for this configuration's (ε, δ).
    pub fn cover_mechanism(&self) -> Result<CoverMechanism, CoverConfigError> {
        CoverMechanism::from_f64(self.cover_traffic_epsilon, self.cover_traffic_delta)
    }

    /// Bucket range owned by shard `s`: `[s·B/S, (s+1)·B/S)` (docs/FOUNDATIONS.md §5).
    pub fn bucket_range(&self, shard: usize) -> std::ops::Range<u16> {
        shard_bucket_range(shard, self.shards, self.num_buckets)
    }
}

/// Bucket range of shard `shard` among `shards` over `num_buckets` buckets.
pub fn shard_bucket_range(shard: usize, shards: usize, num_buckets: u16) -> std::ops::Range<u16> {
    let b = num_buckets as usize;
    ((shard * b / shards) as u16)..(((shard + 1) * b / shards) as u16)
}

/// Owner shard of `bucket` (inverse of [`shard_bucket_range`]).
#[inline]
pub fn owner_shard(bucket: u16, shards: usize, num_buckets: u16) -> usize {
    // The smallest s with bucket < (s+1)·B/S, i.e. floor(((bucket+1)·S − 1) / B).
    ((bucket as usize + 1) * shards - 1) / num_buckets as usize
}

fn set<T: Copy>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

/// `--storage` accepts a directory or `log:///absolute/path`.
fn parse_storage(value: &str) -> Result<PathBuf, ConfigError> {
    let path = match value.strip_prefix("log://") {
        Some(rest) if rest.starts_with('/') => rest,
        Some(_) => {
            return Err(ConfigError::new(
                "storage",
                value,
                "a log:// URL needs an absolute path (log:///var/lib/tessera)",
            ))
        }
        None if value.contains("://") => {
            return Err(ConfigError::new("storage", value, "only a directory or a log:///path URL is supported"))
        }
        None => value,
    };
    if path.is_empty() {
        return Err(ConfigError::new("storage", value, "must not be empty"));
    }
    Ok(PathBuf::from(path))
}

/// One layer of optional settings: a TOML file or the command line.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    /// See [`RelayConfig::host`].
    pub host: Option<String>,
    /// See [`RelayConfig::port`].
    pub port: Option<u16>,
    /// See [`RelayConfig::metrics_addr`] (`HOST:PORT`).
    pub metrics_addr: Option<String>,
    /// See [`RelayConfig::danger_exact_metrics`].
    pub danger_exact_metrics: Option<bool>,
    /// See [`RelayConfig::allowed_origins`].
    pub allowed_origins: Option<Vec<String>>,
    /// See [`RelayConfig::websocket_path`].
    pub websocket_path: Option<String>,
    /// See [`RelayConfig::storage`].
    pub storage: Option<String>,
    /// See [`RelayConfig::cover_traffic_epsilon`].
    pub cover_traffic_epsilon: Option<f64>,
    /// See [`RelayConfig::cover_traffic_delta`].
    pub cover_traffic_delta: Option<f64>,
    /// See [`RelayConfig::danger_disable_cover_traffic`].
    pub danger_disable_cover_traffic: Option<bool>,
    /// See [`RelayConfig::cover_round_ms`].
    pub cover_round_ms: Option<u64>,
    /// See [`RelayConfig::window_s`]. A protocol parameter announced in HELLO_REPLY; clients follow it.
    pub window_s: Option<u64>,
    /// See [`RelayConfig::shards`].
    pub shards: Option<usize>,
    /// See [`RelayConfig::num_buckets`].
    pub num_buckets: Option<u16>,
    /// See [`RelayConfig::clock_skew_s`].
    pub clock_skew_s: Option<u64>,
    /// See [`RelayConfig::retention_s`].
    pub retention_s: Option<u64>,
    /// See [`RelayConfig::slow_consumer_grace_ms`].
    pub slow_consumer_grace_ms: Option<u64>,
    /// See [`RelayConfig::hello_timeout_ms`].
    pub hello_timeout_ms: Option<u64>,
    /// See [`RelayConfig::handshakes_max`].
    pub handshakes_max: Option<u32>,
    /// See [`RelayConfig::idle_timeout_ms`].
    pub idle_timeout_ms: Option<u64>,
    /// See [`RelayConfig::connections_per_ip_max`].
    pub connections_per_ip_max: Option<u32>,
    /// See [`RelayConfig::connections_per_loopback_max`].
    pub connections_per_loopback_max: Option<u32>,
    /// See [`RelayConfig::http_timeout_ms`].
    pub http_timeout_ms: Option<u64>,
    /// See [`RelayConfig::danger_log_skip_fdatasync`].
    pub danger_log_skip_fdatasync: Option<bool>,
    /// See [`RelayConfig::log_group_commit_records_max`].
    pub log_group_commit_records_max: Option<u32>,
    /// See [`RelayConfig::log_group_commit_delay_us_max`].
    pub log_group_commit_delay_us_max: Option<u64>,
    /// See [`RelayConfig::tls_cert`].
    pub tls_cert: Option<PathBuf>,
    /// See [`RelayConfig::tls_key`].
    pub tls_key: Option<PathBuf>,
    /// See [`RelayConfig::metrics_tls`].
    pub metrics_tls: Option<bool>,
    /// See [`RelayConfig::danger_plaintext`].
    pub danger_plaintext: Option<bool>,
    /// See [`Limits`].
    pub limits: Option<LimitsLayer>,
}

/// Optional overrides of [`Limits`].
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct LimitsLayer {
    pub message_bytes_max: Option<u32>,
    pub frames_per_message_max: Option<u16>,
    pub proofs_per_batch_max: Option<u16>,
    pub entries_per_subscribe_max: Option<u16>,
    pub filters_per_bucket_max: Option<u16>,
    pub subscribers_per_connection_max: Option<u16>,
    pub subscription_windows_ahead_max: Option<u32>,
    pub connections_max: Option<u32>,
    pub send_queue_proofs_max: Option<u32>,
}

impl ConfigLayer {
    /// Reads a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("config", path.display(), format!("cannot read: {e}")))?;
        Self::from_toml(&text).map_err(|mut e| {
            e.reason = format!("{} (in {})", e.reason, path.display());
            e
        })
    }

    /// Parses TOML text; an unknown key or a wrong type names the key (`limits.connections_max`), the value as
    /// written and what was expected.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // The span covers the offending value (or, for an unknown key, the key itself).
            let written = e.span().map(|s| text[s].lines().next().unwrap_or("").trim().to_owned()).unwrap_or_default();
            let message = expected_in_words(e.message());
            match (toml_key_path(&e), e.message().starts_with("unknown field")) {
                (path, true) if path.is_empty() => ConfigError::new("config key", written, message),
                (path, true) => ConfigError::new("config key", format!("{path}.{written}"), message),
                (path, false) if path.is_empty() => ConfigError::new("config value", written, message),
                (path, false) => ConfigError::new(&path, unquote(&written), message),
            }
        })
    }
}

/// The dotted key path a TOML error belongs to (`port`, `limits.connections_max`), or "" if none.
///
/// `toml::de::Error` keeps the path privately and prints it as a last line "in `a.b`" when it has no input
/// to quote; the test `type_errors_name_the_key` pins that form.
fn toml_key_path(error: &toml::de::Error) -> String {
    let mut bare = error.clone();
    bare.set_input(None);
    let rendered = bare.to_string();
    rendered
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("in `").and_then(|rest| rest.strip_suffix('`')))
        .unwrap_or("")
        .to_owned()
}

/// serde names the Rust type it wanted ("expected u16"); an operator needs the TOML kind and its range.
fn expected_in_words(message: &str) -> String {
    const WORDS: [(&str, &str); 6] = [
        ("expected u16", "expected an integer in 0..=65535"),
        ("expected u32", "expected an integer in 0..=4294967295"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected f64", "expected a number"),
        ("expected struct LimitsLayer", "expected a table ([limits])"),
    ];
    for (rust, words) in WORDS {
        if let Some(head) = message.strip_suffix(rust) {
            return format!("{head}{words}");
        }
    }
    message.to_owned()
}

/// A TOML basic or literal string's contents (`"abc"` → `abc`), so that the error does not quote it twice.
fn unquote(written: &str) -> String {
    for quote in ['"', '\''] {
        if let Some(inner) = written.strip_prefix(quote).and_then(|rest| rest.strip_suffix(quote)) {
            return inner.to_owned();
        }
    }
    written.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_layers_override() {
        let mut c = RelayConfig::defaults(2);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!((c.port, c.shards, c.retention_s), (8100, 2, 3600));
        let file = ConfigLayer::from_toml("port = 9000\nshards = 4\n[limits]\nconnections_max = 10\n").unwrap();
        c.apply(&file).unwrap();
        c.apply(&ConfigLayer { port: Some(9001), ..Default::default() }).unwrap();
        assert_eq!((c.port, c.shards, c.limits.connections_max), (9001, 4, 10));
    }

    #[test]
    fn the_example_config_parses_and_validates() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/relay.example.toml")).unwrap();
        let mut c = RelayConfig::defaults(2);
        c.apply(&ConfigLayer::from_toml(&text).unwrap()).unwrap();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c, RelayConfig::defaults(2), "the example shows the embedded defaults");
    }

    #[test]
    fn bad_values_are_named() {
        let mut c = RelayConfig::defaults(2);
        c.cover_traffic_epsilon = 0.0;
        assert_eq!(c.validate().unwrap_err().key, "cover-traffic-epsilon");
        let mut c = RelayConfig::defaults(2);
        c.cover_traffic_delta = 1.0;
        assert_eq!(c.validate().unwrap_err().key, "cover-traffic-delta");
        let mut c = RelayConfig::defaults(2);
        c.shards = 65;
        assert_eq!(c.validate().unwrap_err().key, "shards");
        let mut c = RelayConfig::defaults(2);
        c.hello_timeout_ms = 0;
        assert_eq!(c.validate().unwrap_err().key, "hello-timeout-ms");
        c.hello_timeout_ms = HELLO_TIMEOUT_MS_MAX + 1;
        assert_eq!(c.validate().unwrap_err().key, "hello-timeout-ms");
        let mut c = RelayConfig::defaults(2);
        c.handshakes_max = 0;
        assert_eq!(c.validate().unwrap_err().key, "handshakes-max");
        let mut c = RelayConfig::defaults(2);
        c.idle_timeout_ms = 0;
        assert_eq!(c.validate().unwrap_err().key, "idle-timeout-ms");
        let mut c = RelayConfig::defaults(2);
        c.http_timeout_ms = HTTP_TIMEOUT_MS_MAX + 1;
        assert_eq!(c.validate().unwrap_err().key, "http-timeout-ms");
        let mut c = RelayConfig::defaults(2);
        c.connections_per_ip_max = 0;
        assert_eq!(c.validate().unwrap_err().key, "connections-per-ip-max");
        let err = ConfigLayer::from_toml("prot = 1\n").unwrap_err();
        assert!(err.reason.contains("unknown field"), "{err}");
        assert_eq!((err.key.as_str(), err.value.as_str()), ("config key", "prot"));
        let err = ConfigLayer::from_toml("[limits]\nconections_max = 1\n").unwrap_err();
        assert_eq!(err.value, "limits.conections_max", "{err}");
        assert_eq!(parse_storage("log:///var/x").unwrap(), PathBuf::from("/var/x"));
        assert!(parse_storage("sqlite:///x.db").is_err());
    }

    #[test]
    fn type_errors_name_the_key() {
        let err = ConfigLayer::from_toml("host = \"::1\"\nport = \"abc\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid port \"abc\": invalid type: string \"abc\", expected an integer in 0..=65535"
        );
        let err = ConfigLayer::from_toml("port = 70000\n").unwrap_err();
        assert_eq!((err.key.as_str(), err.value.as_str()), ("port", "70000"), "{err}");
        assert!(err.reason.ends_with("expected an integer in 0..=65535"), "{err}");
        let err = ConfigLayer::from_toml("[limits]\nconnections_max = -1\n").unwrap_err();
        assert_eq!(err.key, "limits.connections_max", "{err}");
        assert!(err.reason.contains("0..=4294967295"), "{err}");
        let err = ConfigLayer::from_toml("cover_traffic_epsilon = true\n").unwrap_err();
        assert_eq!(err.key, "cover_traffic_epsilon", "{err}");
        assert!(err.reason.ends_with("expected a number"), "{err}");
        // Not a key's value: a syntax error keeps the generic name and quotes the text.
        let err = ConfigLayer::from_toml("port = = 1\n").unwrap_err();
        assert_eq!(err.key, "config value", "{err}");
    }

    #[test]
    fn bucket_ranges_partition_and_invert() {
        for shards in 1..=16 {
            for nb in [16u16, 64, 100] {
                if shards > nb as usize {
                    continue;
                }
                let mut next = 0;
                for s in 0..shards {
                    let r = shard_bucket_range(s, shards, nb);
                    assert_eq!(r.start, next);
                    for b in r.clone() {
                        assert_eq!(owner_shard(b, shards, nb), s, "bucket {b} shards {shards} nb {nb}");
                    }
                    next = r.end;
                }
                assert_eq!(next, nb);
            }
        }
    }
}
