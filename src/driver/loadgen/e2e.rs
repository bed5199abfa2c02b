//! The W-e2e runner (docs/FOUNDATIONS.md §7): the relay as its own process, a load generator on loopback WebSocket with
//! P publisher connections and 4,800 subscriber connections, measured in phases.
//!
//! ```text
//! raise RLIMIT_NOFILE ─▶ relay: start our own child (--shards S) or use --relay [--relay-pid]
//!   ─▶ load generator executors (`super::start`): connect, SUBSCRIBE, wait until all are ready
//!   ─▶ phase "saturate": warm-up, then N s as fast as the in-flight windows allow ─▶ routed/s R
//!   ─▶ phase "half": warm-up, then N s paced open-loop at R/2 ─▶ publish→deliver latency at half load
//!      (or one phase "fixed" at --rate)
//!   each phase: counters and relay CPU time sampled at its edges, progress on stderr once a second
//!   ─▶ stop, join (latency histograms per phase), relay peak RSS and /metrics, SIGTERM ─▶ Report
//! ```
//! A warm-up precedes every phase and is not measured: it lets the previous phase's backlog drain and the
//! pacing settle, so the fixed-rate latency is not that of the saturated queue.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::process::{http_get, machine_ticks, raise_nofile_limit, ProcSample, RelayProcess, RelayProcessError};
use super::{LoadSpec, Shared};
use crate::driver::client::conn::{resolve, ClientError};
use crate::driver::loadgen;
use crate::driver::tls::TlsClientOptions;
use crate::perf::procfs::{bucket_quantile, cpu_model, histogram_buckets, metric_sum};
use crate::perf::report::{
    Addressed, Errors, Latency, Machine, Params, PhaseReport, RelayCounters, RelayLatency, Report,
    REFERENCE_ROUTED_PER_S,
};
use crate::perf::stats::{Mode, Snapshot};
use crate::perf::workload::{ADDRESSED_EVERY, FINGERPRINTS_PER_FILTER};

/// File descriptors needed beyond one per connection (executors' io_uring, listeners, files, stdio).
const FD_MARGIN: u64 = 256;
/// How long connecting and subscribing every connection may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest warm-up before a phase.
const WARMUP_MAX: Duration = Duration::from_secs(2);
/// Shortest warm-up before a phase.
const WARMUP_MIN: Duration = Duration::from_millis(250);

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct E2eConfig {
    /// A running relay to target (`ws://host:port`); `None` starts our own.
    pub relay: Option<String>,
    /// The targeted relay's process id, to measure its CPU and peak RSS.
    pub relay_pid: Option<u32>,
    /// Measured seconds per phase.
    pub seconds: u64,
    /// Publisher connections.
    pub publishers: usize,
    /// Subscribers.
    pub subscribers: usize,
    /// Subscribers per connection (W-e2e: 1, one connection each).
    pub subscribers_per_conn: usize,
    /// Proofs per PUBLISH.
    pub batch: u16,
    /// One fixed-rate phase at this many proofs/s instead of saturate + half.
    pub rate: Option<u64>,
    /// Shards of the relay we start.
    pub shards: usize,
    /// Load generator executors.
    pub threads: usize,
    /// Unacknowledged PUBLISHes per publisher.
    pub inflight_batches: usize,
    /// Start our relay with TLS (a fresh self-signed pair) and connect over wss://.
    pub tls: bool,
    /// A wss:// `relay`'s CA or self-signed certificate (beside the system roots).
    pub tls_ca: Option<std::path::PathBuf>,
}

/// Why the run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum E2eError {
    /// Not enough file descriptors for the connections.
    #[error("RLIMIT_NOFILE is {have} but {need} file descriptors are needed (raise the hard limit: ulimit -Hn)")]
    FileLimit {
        /// Needed.
        need: u64,
        /// The soft limit after raising it to the hard limit.
        have: u64,
    },
    /// The limit could not be read or raised.
    #[error("cannot raise RLIMIT_NOFILE: {0}")]
    Rlimit(std::io::Error),
    /// Our relay could not be started.
    #[error(transparent)]
    Relay(#[from] RelayProcessError),
    /// The relay URL is unusable.
    #[error(transparent)]
    Url(#[from] ClientError),
    /// The load generator failed (executors, connections).
    #[error("load generator: {0}")]
    LoadGen(String),
}

/// A phase to run.
struct PhasePlan {
    name: &'static str,
    mode: Mode,
    tag: u8,
}

/// What the runner measured in one phase, before latency is known.
struct Measured {
    plan_name: &'static str,
    target_per_s: Option<u64>,
    seconds: f64,
    delta: Snapshot,
    relay_cpu_s: Option<f64>,
    loadgen_cpu_s: f64,
    /// Busy CPU-seconds of the whole machine.
    machine_cpu_s: Option<f64>,
    relay_latency: Option<RelayLatency>,
}

/// Everything sampled at a phase edge.
struct Edge {
    counters: Snapshot,
    relay_cpu_s: Option<f64>,
    own_cpu_s: f64,
    machine: Option<(u64, u64)>,
    /// The relay's `/metrics` text (for its latency histograms).
    metrics: Option<String>,
    at: Instant,
}

impl Edge {
    fn sample(shared: &Shared, pid: Option<u32>) -> Self {
        Edge {
            metrics: shared.spec.metrics_addr.and_then(|addr| http_get(addr, "/metrics")),
            counters: shared.counters.snapshot(),
            relay_cpu_s: relay_cpu(pid),
            own_cpu_s: own_cpu(),
            machine: machine_ticks(),
            at: Instant::now(),
        }
    }
}

/// PUBLISH → delivery queued: the relay's own histogram.
const RELAY_DELIVER_HISTOGRAM: &str = "tessera_publish_deliver_latency_seconds";
/// PUBLISH → ACK queued: the relay's own histogram.
const RELAY_ACK_HISTOGRAM: &str = "tessera_publish_ack_latency_seconds";

/// The relay's latency quantiles between two `/metrics` samples, µs (bucket upper bounds).
fn relay_latency(before: &str, after: &str) -> RelayLatency {
    let quantile = |name: &str, q: f64| {
        let (b, a) = (histogram_buckets(before, name), histogram_buckets(after, name));
        bucket_quantile(&b, &a, q).filter(|le| le.is_finite()).map(|le| le * 1e6)
    };
    RelayLatency {
        deliver_queued_p50_us: quantile(RELAY_DELIVER_HISTOGRAM, 0.5),
        deliver_queued_p99_us: quantile(RELAY_DELIVER_HISTOGRAM, 0.99),
        ack_queued_p99_us: quantile(RELAY_ACK_HISTOGRAM, 0.99),
    }
}

/// The warm-up before each phase: a quarter of the phase, within [`WARMUP_MIN`, `WARMUP_MAX`].
pub fn warmup(seconds: u64) -> Duration {
    (Duration::from_secs(seconds) / 4).clamp(WARMUP_MIN, WARMUP_MAX)
}

/// Runs the workload; progress goes to `progress` once a second.
pub fn run(config: &E2eConfig, progress: &mut dyn Write) -> Result<Report, E2eError> {
    let have = raise_nofile_limit().map_err(E2eError::Rlimit)?;
    let connections = config.subscribers.div_ceil(config.subscribers_per_conn.max(1)) + config.publishers;
    let need = connections as u64 + FD_MARGIN;
    if have < need {
        return Err(E2eError::FileLimit { need, have });
    }
    let mut own = None;
    let (url, pid, metrics_addr) = match &config.relay {
        // A running relay's metrics: its default listener (loopback, port + 1) when it runs here.
        Some(url) => (url.clone(), config.relay_pid, None),
        None => {
            let exe = std::env::current_exe().map_err(|e| E2eError::Relay(RelayProcessError::Spawn(e)))?;
            let relay = RelayProcess::start(&exe, config.shards, config.tls)?;
            let _ = writeln!(progress, "perf e2e: started relay pid {}: {}", relay.pid(), relay.start_line);
            let metrics_addr = crate::perf::procfs::start_line_metrics_addr(&relay.start_line);
            let started = (relay.url.clone(), Some(relay.pid()), metrics_addr);
            own = Some(relay);
            started
        }
    };
    let addr = resolve(&url)?;
    let metrics_addr = metrics_addr.or_else(|| {
        let port = addr.port().checked_add(1)?;
        addr.ip().is_loopback().then(|| std::net::SocketAddr::new(addr.ip(), port))
    });
    let tls = if url.starts_with("wss://") {
        let ca_file = own.as_ref().and_then(|r| r.tls_cert.clone()).or_else(|| config.tls_ca.clone());
        Some(crate::driver::tls::client_config(&TlsClientOptions { ca_file, pin: None }).map_err(ClientError::from)?)
    } else {
        None
    };
    let phases = if config.rate.is_some() { 1 } else { 2 };
    let spec = LoadSpec {
        url: url.clone(),
        addr,
        metrics_addr,
        tls,
        publishers: config.publishers,
        subscribers: config.subscribers,
        subscribers_per_conn: config.subscribers_per_conn,
        batch: config.batch,
        inflight_batches: config.inflight_batches,
        threads: config.threads,
        phases,
    };
    let shared = Arc::new(Shared::new(spec));
    let pool = loadgen::start(shared.clone()).map_err(E2eError::LoadGen)?;
    let measured = drive(config, &shared, pid, progress);
    shared.control.stop();
    let histograms = pool.join(phases);
    let peak_rss_bytes = pid.and_then(ProcSample::read).map(|s| s.peak_rss_bytes);
    let relay_counters = metrics_addr.and_then(|a| http_get(a, "/metrics")).and_then(|text| relay_counters(&text));
    if let Some(relay) = own.as_mut() {
        if !relay.stop() {
            let _ = writeln!(progress, "perf e2e: the relay did not exit cleanly after SIGTERM");
        }
    }
    let measured = measured?;
    let total = shared.counters.snapshot();
    let phase_reports: Vec<PhaseReport> = measured
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let latency = |which: &[hdrhistogram::Histogram<u64>]| which.get(i + 1).and_then(Latency::from_ns);
            phase_report(m, latency(&histograms.deliver), latency(&histograms.ack), latency(&histograms.send_lag))
        })
        .collect();
    let first = phase_reports.first().cloned().unwrap_or_default();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| cpu_model(&s)).unwrap_or_default();
    Ok(Report {
        workload: "W-e2e".into(),
        machine: Machine { cpu_model, cores: std::thread::available_parallelism().map_or(1, |n| n.get()) },
        params: Params {
            relay: url,
            relay_started: own.is_some(),
            shards: own.is_some().then_some(config.shards),
            threads: config.threads,
            publishers: config.publishers,
            subscribers: config.subscribers,
            subscribers_per_conn: config.subscribers_per_conn,
            batch: config.batch,
            inflight_batches: config.inflight_batches,
            seconds: config.seconds,
            warmup_s: warmup(config.seconds).as_secs_f64(),
            addressed_fraction: 1.0 / ADDRESSED_EVERY as f64,
            fingerprints_per_filter: FINGERPRINTS_PER_FILTER,
        },
        routed_per_s: first.routed_per_s,
        delivered_per_s: first.delivered_per_s,
        latency_us: phase_reports.last().and_then(|p| p.latency_us),
        relay_cpu_s_per_million: first.relay_cpu_s_per_million,
        relay_peak_rss_bytes: peak_rss_bytes,
        reference_routed_per_s: REFERENCE_ROUTED_PER_S,
        ratio_vs_reference: first.routed_per_s / REFERENCE_ROUTED_PER_S,
        addressed: Addressed {
            sent: total.addressed_sent,
            delivered: total.addressed_delivered,
            skipped: total.addressed_skipped,
        },
        errors: Errors {
            proofs_rejected: total.proofs_rejected,
            proofs_refused: total.proofs_refused,
            other: total.errors_other,
            connections_lost: total.connections_lost,
        },
        relay_counters,
        phases: phase_reports,
    })
}

/// Waits for every connection, then runs the phases.
fn drive(
    config: &E2eConfig,
    shared: &Shared,
    pid: Option<u32>,
    progress: &mut dyn Write,
) -> Result<Vec<Measured>, E2eError> {
    wait_ready(shared, progress)?;
    let first = match config.rate {
        Some(rate) => PhasePlan { name: "fixed", mode: Mode::Rate(rate), tag: 1 },
        None => PhasePlan { name: "saturate", mode: Mode::Saturate, tag: 1 },
    };
    let mut measured = vec![run_phase(config, shared, pid, &first, progress)?];
    if config.rate.is_none() {
        let half = (measured[0].delta.routed() as f64 / measured[0].seconds / 2.0).round().max(1.0) as u64;
        let plan = PhasePlan { name: "half", mode: Mode::Rate(half), tag: 2 };
        measured.push(run_phase(config, shared, pid, &plan, progress)?);
    }
    Ok(measured)
}

fn check_failure(shared: &Shared) -> Result<(), E2eError> {
    match shared.failure() {
        Some(message) => Err(E2eError::LoadGen(message)),
        None => Ok(()),
    }
}

fn wait_ready(shared: &Shared, progress: &mut dyn Write) -> Result<(), E2eError> {
    let (subscribers, publishers) = (shared.spec.subscribers as u64, shared.spec.publishers as u64);
    let start = Instant::now();
    let mut next_report = start + Duration::from_secs(1);
    loop {
        check_failure(shared)?;
        let s = shared.counters.snapshot();
        if s.subscribers_ready >= subscribers && s.publishers_ready >= publishers {
            let _ = writeln!(
                progress,
                "perf e2e: {subscribers} subscribers and {publishers} publishers ready in {:.1} s",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if start.elapsed() > SETUP_TIMEOUT {
            return Err(E2eError::LoadGen(format!(
                "only {}/{subscribers} subscribers and {}/{publishers} publishers ready after {} s",
                s.subscribers_ready,
                s.publishers_ready,
                SETUP_TIMEOUT.as_secs()
            )));
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(1);
            let _ = writeln!(
                progress,
                "perf e2e: connecting: {}/{subscribers} subscribers, {}/{publishers} publishers",
                s.subscribers_ready, s.publishers_ready
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn relay_cpu(pid: Option<u32>) -> Option<f64> {
    pid.and_then(ProcSample::read).map(|s| s.cpu_s)
}

fn own_cpu() -> f64 {
    ProcSample::read(std::process::id()).map_or(0.0, |s| s.cpu_s)
}

fn run_phase(
    config: &E2eConfig,
    shared: &Shared,
    pid: Option<u32>,
    plan: &PhasePlan,
    progress: &mut dyn Write,
) -> Result<Measured, E2eError> {
    let target = match plan.mode {
        Mode::Rate(r) => format!("{r} proofs/s"),
        _ => "max".to_owned(),
    };
    let _ = writeln!(progress, "perf e2e: phase {} (target {target}): warm-up", plan.name);
    shared.control.set(plan.mode, 0);
    std::thread::sleep(warmup(config.seconds));
    check_failure(shared)?;
    let start = Edge::sample(shared, pid);
    shared.control.set(plan.mode, plan.tag);
    let (s0, t0) = (start.counters, start.at);
    let (mut last, mut last_cpu, mut last_t) = (s0, start.relay_cpu_s, t0);
    let end = t0 + Duration::from_secs(config.seconds);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(1).min(end.saturating_duration_since(Instant::now())));
        check_failure(shared)?;
        let (s, cpu, now) = (shared.counters.snapshot(), relay_cpu(pid), Instant::now());
        let dt = now.duration_since(last_t).as_secs_f64().max(1e-9);
        let d = s.since(&last);
        let cores = match (cpu, last_cpu) {
            (Some(a), Some(b)) => format!("{:.2}", (a - b) / dt),
            _ => "n/a".to_owned(),
        };
        let _ = writeln!(
            progress,
            "perf e2e: {} {:>4.1}/{} s: routed {:>9.0}/s delivered {:>8.0}/s sent {:>9.0}/s relay cores {cores} \
             subscribes {:.0}/s errors {}",
            plan.name,
            now.duration_since(t0).as_secs_f64(),
            config.seconds,
            d.routed() as f64 / dt,
            d.delivered as f64 / dt,
            d.proofs_sent as f64 / dt,
            d.subscribes_confirmed as f64 / dt,
            s.errors_other + s.proofs_rejected + s.proofs_refused + s.connections_lost,
        );
        (last, last_cpu, last_t) = (s, cpu, now);
    }
    let end = Edge::sample(shared, pid);
    let ticks_per_s = super::process::clock_ticks_per_s() as f64;
    Ok(Measured {
        plan_name: plan.name,
        target_per_s: match plan.mode {
            Mode::Rate(r) => Some(r),
            _ => None,
        },
        seconds: end.at.duration_since(t0).as_secs_f64(),
        delta: end.counters.since(&s0),
        relay_cpu_s: start.relay_cpu_s.zip(end.relay_cpu_s).map(|(a, b)| b - a),
        loadgen_cpu_s: end.own_cpu_s - start.own_cpu_s,
        // /proc/stat ticks are summed over CPUs: busy ticks / ticks per second = busy CPU-seconds.
        machine_cpu_s: start.machine.zip(end.machine).map(|((b0, _), (b1, _))| (b1 - b0) as f64 / ticks_per_s),
        relay_latency: start.metrics.as_deref().zip(end.metrics.as_deref()).map(|(a, b)| relay_latency(a, b)),
    })
}

fn phase_report(
    m: &Measured,
    latency_us: Option<Latency>,
    ack_latency_us: Option<Latency>,
    send_lag_us: Option<Latency>,
) -> PhaseReport {
    let per_s = |n: u64| n as f64 / m.seconds.max(1e-9);
    let routed = m.delta.routed();
    PhaseReport {
        name: m.plan_name.to_owned(),
        target_per_s: m.target_per_s,
        seconds: m.seconds,
        routed,
        routed_per_s: per_s(routed),
        delivered: m.delta.delivered,
        delivered_per_s: per_s(m.delta.delivered),
        sent_per_s: per_s(m.delta.proofs_sent),
        latency_us,
        ack_latency_us,
        send_lag_us,
        relay_cpu_s: m.relay_cpu_s,
        relay_cpu_s_per_million: m.relay_cpu_s.filter(|_| routed > 0).map(|cpu| cpu / routed as f64 * 1e6),
        relay_cores: m.relay_cpu_s.map(|cpu| cpu / m.seconds.max(1e-9)),
        loadgen_cores: m.loadgen_cpu_s / m.seconds.max(1e-9),
        machine_cores: m.machine_cpu_s.map(|cpu| cpu / m.seconds.max(1e-9)),
        other_cores: m
            .machine_cpu_s
            .map(|cpu| (cpu - m.relay_cpu_s.unwrap_or(0.0) - m.loadgen_cpu_s).max(0.0) / m.seconds.max(1e-9)),
        relay_latency: m.relay_latency,
        subscribes_per_s: per_s(m.delta.subscribes_confirmed),
    }
}

/// The relay's exact counters: only a relay run with `--danger-exact-metrics` (ours is) shows them live; any
/// other shows real-only counts as hourly figures (docs/PRIVACY.md §Metrics), useless for one run: `None`.
fn relay_counters(text: &str) -> Option<RelayCounters> {
    metric_sum(text, "tessera_proofs_accepted_client_total")?;
    let get = |name: &str| metric_sum(text, name).unwrap_or(0.0) as u64;
    Some(RelayCounters {
        proofs_accepted: get("tessera_proofs_accepted_client_total"),
        proofs_duplicate: get("tessera_proofs_duplicate_total"),
        deliveries_queued: get("tessera_deliveries_queued_total"),
        deliveries_diverted: get("tessera_deliveries_diverted_total"),
        deliveries_offline: get("tessera_deliveries_offline_total"),
        slow_consumer_closes: get("tessera_slow_consumer_closes_total"),
        cross_shard_requests: get("tessera_cross_shard_requests_total"),
        messages_out: get("tessera_messages_out_total"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_is_a_quarter_within_bounds() {
        assert_eq!(warmup(1), Duration::from_millis(250));
        assert_eq!(warmup(4), Duration::from_secs(1));
        assert_eq!(warmup(60), Duration::from_secs(2));
    }
}
