//! Per-shard metrics and their Prometheus text rendering (`GET /metrics`).
//!
//! Each shard writes only its own `ShardMetrics` (relaxed atomics on its own cache lines, so no lock and no
//! sharing on the data path); a `/metrics` request on any shard reads all of them. Latencies go into fixed
//! log-spaced buckets, which is what Prometheus histograms need (hdrhistogram is used by the load generator).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::metrics_hour::{HourWindow, SeriesKind};

/// Upper bounds of the latency buckets, microseconds (the last bucket, +Inf, is implicit).
pub const LATENCY_BUCKETS_US: [u64; 14] =
    [25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];

/// A histogram with fixed buckets, updated with relaxed atomics by one shard.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation in microseconds.
    pub fn record_us(&self, value_us: u64) {
        let i = LATENCY_BUCKETS_US.iter().position(|&b| value_us <= b).unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(value_us, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }
}

/// How a series may be shown by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Shown live: it counts cover and real proofs together (what the wire shows anyway), or it is not a
    /// proxy for proof counts (connections, errors, subscriptions).
    Live,
    /// Counts real (client) activity alone: shown only as a figure over the last whole hour.
    Hourly,
}

/// A counter or gauge of the table below: name, class, help, and where it lives.
type Entry = (&'static str, Class, &'static str, fn(&ShardMetrics) -> &AtomicU64);

macro_rules! shard_metrics {
    (
        counters { $($c:ident : $cname:literal, $cclass:ident, $chelp:literal;)* }
        gauges { $($g:ident : $gname:literal, $gclass:ident, $ghelp:literal;)* }
    ) => {
        /// One shard's counters and gauges.
        #[derive(Debug)]
        pub struct ShardMetrics {
            $(#[doc = $chelp] pub $c: AtomicU64,)*
            $(#[doc = $ghelp] pub $g: AtomicU64,)*
            /// Proofs rejected, by reason (index = `Rejection` discriminant order of `REJECTION_REASONS`).
            pub proofs_rejected: [AtomicU64; REJECTION_REASONS.len()],
            /// Time from receiving a PUBLISH to queueing its ACK.
            pub publish_ack_latency: LatencyHistogram,
            /// Time from receiving a PUBLISH to queueing a matched proof on the subscriber's connection.
            pub publish_deliver_latency: LatencyHistogram,
            /// The durable log's counters, copied by the shard at each tick (order of `LogCounters::fields`).
            pub log: LogGauges,
            /// The Hourly series' figures for the last whole hour (order: `ShardMetrics::hourly_values`).
            pub hour: HourWindow,
        }

        const COUNTERS: &[Entry] = &[$(($cname, Class::$cclass, $chelp, |m| &m.$c),)*];
        const GAUGES: &[Entry] = &[$(($gname, Class::$gclass, $ghelp, |m| &m.$g),)*];

        impl Default for ShardMetrics {
            fn default() -> Self {
                let log = LogGauges::default();
                let hour = HourWindow::new(Layout::of(&log).kinds.len());
                Self {
                    $($c: AtomicU64::new(0),)*
                    $($g: AtomicU64::new(0),)*
                    proofs_rejected: Default::default(),
                    publish_ack_latency: Default::default(),
                    publish_deliver_latency: Default::default(),
                    log,
                    hour,
                }
            }
        }
    };
}

/// Where each group of Hourly series starts in `ShardMetrics::hourly_values`, and each series' kind.
struct Layout {
    kinds: Vec<SeriesKind>,
    gauges: usize,
    rejected: usize,
    log: usize,
    histograms: usize,
}

/// Series per histogram: the buckets (+Inf included), the sum and the count.
const HISTOGRAM_SERIES: usize = LATENCY_BUCKETS_US.len() + 3;

fn hourly(list: &[Entry]) -> impl Iterator<Item = &Entry> {
    list.iter().filter(|e| e.1 == Class::Hourly)
}

impl Layout {
    fn of(log: &LogGauges) -> Self {
        let mut kinds = vec![SeriesKind::Counter; hourly(COUNTERS).count()];
        let gauges = kinds.len();
        kinds.extend(std::iter::repeat_n(SeriesKind::Level, hourly(GAUGES).count()));
        let rejected = kinds.len();
        kinds.extend(std::iter::repeat_n(SeriesKind::Counter, REJECTION_REASONS.len()));
        let log_start = kinds.len();
        for name in log.names.iter().filter(|n| LogGauges::class(n) == Class::Hourly) {
            kinds.push(if LogGauges::is_gauge(name) { SeriesKind::Level } else { SeriesKind::Counter });
        }
        let histograms = kinds.len();
        kinds.extend(std::iter::repeat_n(SeriesKind::Counter, 2 * HISTOGRAM_SERIES));
        Self { kinds, gauges, rejected, log: log_start, histograms }
    }
}

impl ShardMetrics {
    /// Every Hourly series' current value, in the order the hour window and the renderer use (`Layout`).
    fn hourly_values(&self) -> Vec<u64> {
        let mut values = Vec::new();
        for list in [COUNTERS, GAUGES] {
            values.extend(hourly(list).map(|(_, _, _, get)| get(self).load(Relaxed)));
        }
        values.extend(self.proofs_rejected.iter().map(|v| v.load(Relaxed)));
        let log = self.log.names.iter().zip(self.log.values.iter());
        values.extend(log.filter(|(n, _)| LogGauges::class(n) == Class::Hourly).map(|(_, v)| v.load(Relaxed)));
        for h in [&self.publish_ack_latency, &self.publish_deliver_latency] {
            values.extend(h.buckets.iter().map(|b| b.load(Relaxed)));
            values.extend([h.sum_us.load(Relaxed), h.count.load(Relaxed)]);
        }
        values
    }

    /// Called by the owning shard on every tick with the wall clock (unix seconds, from the driver): at an
    /// hour boundary the Hourly series' figures move to the hour that just ended.
    pub fn roll_hour(&self, now_s: u64) {
        let layout = Layout::of(&self.log);
        self.hour.roll(now_s, &layout.kinds, || self.hourly_values());
    }
}

/// Snapshot of one shard's log counters (`crate::log::LogCounters::fields`), written by that shard only.
#[derive(Debug)]
pub struct LogGauges {
    names: Vec<&'static str>,
    values: Box<[AtomicU64]>,
}

impl Default for LogGauges {
    fn default() -> Self {
        let names: Vec<&'static str> = crate::log::LogCounters::default().fields().iter().map(|(n, _)| *n).collect();
        let values = names.iter().map(|_| AtomicU64::new(0)).collect();
        Self { names, values }
    }
}

impl LogGauges {
    /// Copies a counter snapshot.
    pub fn store(&self, counters: &crate::log::LogCounters) {
        for ((_, value), slot) in counters.fields().iter().zip(self.values.iter()) {
            slot.store(*value, Relaxed);
        }
    }

    /// A log series' class: the ones that count matches, FETCHes, or bytes and syncs (which grow with match
    /// records) are real-only; proof records count cover and real proofs together.
    fn class(name: &str) -> Class {
        match name {
            "matches_recorded"
            | "matches_late"
            | "match_records_deleted"
            | "mailbox_evicted"
            | "mailbox_entries"
            | "fetches"
            | "fetch_records_served"
            | "fetch_records_skipped_corrupt"
            | "bytes_written"
            | "fdatasyncs"
            // Dummies ride along with the next awaited commit (nobody waits for them): commits, and the records
            // staged between two of them, follow the real PUBLISH batches.
            | "commits" | "staged_records" => Class::Hourly,
            _ => Class::Live,
        }
    }

    /// Whether a log counter is a level (gauge) rather than a running total.
    fn is_gauge(name: &str) -> bool {
        name.starts_with("recovery_")
            || matches!(name, "segments" | "mailbox_entries" | "subscribers" | "staged_records" | "storage_stalled")
    }
}

/// Labels of `tessera_proofs_rejected_total{reason=...}`, in the order the driver indexes them.
pub const REJECTION_REASONS: [&str; 8] = [
    "bucket_not_owned",
    "bad_bucket",
    "bad_fingerprint",
    "window_stale",
    "window_future",
    "window_misaligned",
    "dedup_full",
    "log_failed",
];

shard_metrics! {
    counters {
        proofs_received: "tessera_proofs_received_total", Hourly, "Proofs received in PUBLISH frames (clients and peers).";
        proofs_accepted: "tessera_proofs_accepted_total", Live, "Proofs verified, deduplicated and logged: client, peer and cover proofs together (what the wire shows).";
        proofs_accepted_client: "tessera_proofs_accepted_client_total", Hourly, "Client and peer proofs verified, deduplicated and logged (no cover).";
        proofs_duplicate: "tessera_proofs_duplicate_total", Hourly, "Proofs dropped as duplicates of an earlier (commit, window).";
        cover_proofs: "tessera_cover_proofs_total", Hourly, "Dummy proofs this relay emitted (cover traffic).";
        cover_planned: "tessera_cover_dummies_planned_total", Hourly, "Dummy proofs the cover schedules drew (emitted or skipped).";
        cover_rounds: "tessera_cover_rounds_total", Live, "Cover-traffic rounds scheduled.";
        cover_clamped_buckets: "tessera_cover_clamped_buckets_total", Hourly, "Bucket draws that hit the dummies-per-bucket cap (expected never).";
        deliveries_queued: "tessera_deliveries_queued_total", Hourly, "Matched proofs queued on a subscriber's connection.";
        deliveries_written: "tessera_deliveries_written_total", Hourly, "Matched proofs written to a subscriber's socket.";
        deliveries_diverted: "tessera_deliveries_diverted_total", Hourly, "Matched proofs not queued because the subscriber's send queue was full.";
        deliveries_offline: "tessera_deliveries_offline_total", Hourly, "Matched proofs whose subscriber had no open connection.";
        gossip_queued: "tessera_gossip_queued_total", Live, "Proofs queued for peers (cover and real together).";
        subscribe_requests: "tessera_subscribe_requests_total", Live, "SUBSCRIBE frames applied.";
        subscribe_rejected: "tessera_subscribe_rejected_total", Live, "SUBSCRIBE frames refused (limits, ranges, buckets).";
        connections_accepted: "tessera_connections_accepted_total", Live, "WebSocket connections accepted.";
        connections_refused: "tessera_connections_refused_total", Live, "Connections refused at connections_max.";
        handshakes_refused: "tessera_handshakes_refused_total", Live, "Sockets closed at accept: handshakes_max sockets were still in their HTTP request or upgrade.";
        hello_timeouts: "tessera_hello_timeouts_total", Live, "WebSocket connections closed for sending no HELLO within hello_timeout_ms.";
        idle_timeouts: "tessera_idle_timeouts_total", Live, "Established connections closed for sending nothing (not even a pong) within idle_timeout_ms.";
        connections_per_ip_refused: "tessera_connections_per_ip_refused_total", Live, "Sockets closed at accept: their source address already held connections_per_ip_max (or connections_per_loopback_max) sockets.";
        fd_reserve_refused: "tessera_fd_reserve_refused_total", Live, "Sockets closed at accept to keep the file descriptors the log needs (RLIMIT_NOFILE minus the reserve reached).";
        http_timeouts: "tessera_http_timeouts_total", Live, "HTTP exchanges or WebSocket upgrades cut at http_timeout_ms (request head not read or response not written in time).";
        reply_backpressure: "tessera_reply_backpressure_total", Live, "Times the relay stopped reading a connection because its queued replies (ACK, ERROR, ...) reached the reply backlog limit.";
        http_requests: "tessera_http_requests_total", Live, "Plain HTTP requests (metrics, health, and the 404s of the client port).";
        messages_in: "tessera_messages_in_total", Hourly, "WebSocket messages received.";
        messages_out: "tessera_messages_out_total", Hourly, "WebSocket messages sent.";
        bytes_in: "tessera_bytes_in_total", Hourly, "Payload bytes received in WebSocket messages.";
        bytes_out: "tessera_bytes_out_total", Hourly, "Payload bytes sent in WebSocket messages.";
        frames_malformed: "tessera_frames_malformed_total", Live, "Messages rejected by the decoder (ERROR MALFORMED sent).";
        errors_received: "tessera_errors_received_total", Live, "ERROR frames received from clients or peers (logged, never answered).";
        protocol_errors: "tessera_protocol_errors_total", Live, "Protocol errors (malformed, unexpected frame, bad sequence, limits).";
        limit_message_size: "tessera_limit_message_size_total", Live, "Connections closed for a message over message_bytes_max (1009).";
        limit_batch: "tessera_limit_batch_total", Live, "Messages rejected for more than proofs_per_batch_max proofs.";
        limit_subscriptions: "tessera_limit_subscriptions_total", Live, "SUBSCRIBE refused for subscribers_per_connection_max or filters_per_bucket_max.";
        filters_saturated: "tessera_filters_saturated_total", Live, "SUBSCRIBE refused (FILTER_SATURATED): a filter with more bits set than 60 fingerprints set.";
        deliveries_unpushed: "tessera_deliveries_unpushed_total", Hourly, "Matches recorded for FETCH but not pushed: over the per-proof or per-shard-second delivery bound.";
        limit_protocol_errors: "tessera_limit_protocol_errors_total", Live, "Connections closed after too many protocol errors (1008).";
        slow_consumer_closes: "tessera_slow_consumer_closes_total", Live, "Connections closed because their send queue stayed full past the grace period.";
        cross_shard_requests: "tessera_cross_shard_requests_total", Hourly, "Batches sent to another shard.";
        acks_sent: "tessera_acks_sent_total", Hourly, "ACK frames sent.";
        late_scans: "tessera_late_scans_total", Live, "SUBSCRIBE parts matched against retained proofs (windows not yet subscribed).";
        late_scans_refused: "tessera_late_scans_refused_total", Live, "SUBSCRIBE parts refused (OVERLOADED): too many late scans pending on the connection.";
        late_proofs_examined: "tessera_late_proofs_examined_total", Live, "Retained proofs (cover and real) examined by late scans.";
        late_matches: "tessera_late_matches_total", Hourly, "New matches recorded by late scans (FETCHable; delivered if connected).";
        storage_refused_proofs: "tessera_storage_refused_proofs_total", Hourly, "Proofs of PUBLISH batches refused with ERROR(STORAGE) while the log was stalled (storage full).";
        cover_skipped_storage: "tessera_cover_skipped_storage_total", Hourly, "Dummy proofs not emitted while the log was stalled (storage full).";
    }
    gauges {
        connections_open: "tessera_connections_open", Live, "Open WebSocket connections.";
        subscribers: "tessera_subscribers", Live, "Subscribers with entries in this shard.";
        subscription_entries: "tessera_subscription_entries", Live, "Registered (bucket, window range, filter) entries.";
        send_queue_proofs: "tessera_send_queue_proofs", Hourly, "Proofs waiting in connection send queues.";
        dedup_entries: "tessera_dedup_entries", Live, "Commitments (cover and real) remembered for deduplication.";
        cover_traffic_disabled: "tessera_danger_cover_traffic_disabled", Live, "1 when cover traffic is disabled (danger: per-bucket counts leak).";
        exact_metrics: "tessera_danger_exact_metrics", Live, "1 when /metrics shows exact real counts live (danger_exact_metrics).";
        retained_proofs: "tessera_retained_proofs", Live, "Proofs (cover and real) held in the late-match index (12 bytes each).";
        late_scans_pending: "tessera_late_scans_pending", Live, "Late scans waiting or in progress.";
    }
}

impl ShardMetrics {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Sets a gauge.
    #[inline]
    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Relaxed);
    }
}

/// Renders every shard's metrics in the Prometheus text exposition format (version 0.0.4): the Live series
/// and the Hourly figures; with `exact` (danger_exact_metrics) every series live as well.
pub fn render_prometheus(shards: &[crossbeam::utils::CachePadded<ShardMetrics>], exact: bool) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let shown = |class: Class| exact || class == Class::Live;
    for (list, kind) in [(COUNTERS, "counter"), (GAUGES, "gauge")] {
        for (name, _, help, get) in list.iter().filter(|e| shown(e.1)) {
            family(&mut out, name, help, kind, shards, |m| get(m).load(Relaxed));
        }
    }
    if let Some(first) = shards.first() {
        for (i, name) in first.log.names.iter().enumerate().filter(|(_, n)| shown(LogGauges::class(n))) {
            let (kind, suffix) = if LogGauges::is_gauge(name) { ("gauge", "") } else { ("counter", "_total") };
            let family_name = format!("tessera_log_{name}{suffix}");
            let help = format!("Durable log: {} (docs/STORAGE.md).", name.replace('_', " "));
            family(&mut out, &family_name, &help, kind, shards, |m| m.log.values[i].load(Relaxed));
        }
    }
    if exact {
        let name = "tessera_proofs_rejected_total";
        rejected(&mut out, name, "counter", shards, |m, r| m.proofs_rejected[r].load(Relaxed));
        let live = |h: &LatencyHistogram| {
            let mut v = [0; HISTOGRAM_SERIES];
            for (slot, b) in v.iter_mut().zip(h.buckets.iter()) {
                *slot = b.load(Relaxed);
            }
            v[HISTOGRAM_SERIES - 2] = h.sum_us.load(Relaxed);
            v[HISTOGRAM_SERIES - 1] = h.count.load(Relaxed);
            v
        };
        histogram(&mut out, ACK_LATENCY.0, ACK_LATENCY.1, shards, |m| live(&m.publish_ack_latency));
        histogram(&mut out, DELIVER_LATENCY.0, DELIVER_LATENCY.1, shards, |m| live(&m.publish_deliver_latency));
    }
    render_hourly(&mut out, shards);
    out
}

/// The latency histograms: name (with `_seconds`) and help.
const ACK_LATENCY: (&str, &str) = ("tessera_publish_ack_latency_seconds", "PUBLISH received to ACK queued.");
const DELIVER_LATENCY: (&str, &str) =
    ("tessera_publish_deliver_latency_seconds", "PUBLISH received to matched proof queued for its subscriber.");

/// The Hourly series as figures of the last whole hour: a counter `x_total` as `x_last_hour` (its increase
/// over the hour), a gauge `x` as `x_hour_end` (its value at the end of the hour), a histogram
/// `x_seconds` as `x_last_hour_seconds`; and the cover health ratio.
fn render_hourly(out: &mut String, shards: &[crossbeam::utils::CachePadded<ShardMetrics>]) {
    let Some(first) = shards.first() else { return };
    let layout = Layout::of(&first.log);
    let help = "End of the last whole hour that the *_last_hour and *_hour_end figures cover, unix seconds (0 until \
                one has passed since start).";
    family(out, "tessera_metrics_hour_end_seconds", help, "gauge", shards, |m| m.hour.last_end_s());
    for (i, (name, _, help, _)) in hourly(COUNTERS).enumerate() {
        let base = name.strip_suffix("_total").unwrap_or(name);
        let help = format!("{help} Over the last whole hour.");
        family(out, &format!("{base}_last_hour"), &help, "gauge", shards, |m| m.hour.last(i));
    }
    for (i, (name, _, help, _)) in hourly(GAUGES).enumerate() {
        let help = format!("{help} At the end of the last whole hour.");
        family(out, &format!("{name}_hour_end"), &help, "gauge", shards, |m| m.hour.last(layout.gauges + i));
    }
    let name = "tessera_proofs_rejected_last_hour";
    rejected(out, name, "gauge", shards, |m, r| m.hour.last(layout.rejected + r));
    let log_hourly = first.log.names.iter().filter(|n| LogGauges::class(n) == Class::Hourly);
    for (j, name) in log_hourly.enumerate() {
        let suffix = if LogGauges::is_gauge(name) { "hour_end" } else { "last_hour" };
        let help = format!("Durable log: {} (docs/STORAGE.md), {suffix}.", name.replace('_', " "));
        let i = layout.log + j;
        family(out, &format!("tessera_log_{name}_{suffix}"), &help, "gauge", shards, |m| m.hour.last(i));
    }
    for (k, (name, help)) in [ACK_LATENCY, DELIVER_LATENCY].into_iter().enumerate() {
        let base = name.strip_suffix("_seconds").unwrap_or(name);
        let start = layout.histograms + k * HISTOGRAM_SERIES;
        histogram(
            out,
            &format!("{base}_last_hour_seconds"),
            &format!("{help} Over the last whole hour."),
            shards,
            |m| std::array::from_fn(|j| m.hour.last(start + j)),
        );
    }
    // Cover health, relay-wide: dummies emitted over dummies planned in the last whole hour.
    let position = |wanted: &str| hourly(COUNTERS).position(|e| e.0 == wanted);
    if let (Some(emitted), Some(planned)) =
        (position("tessera_cover_proofs_total"), position("tessera_cover_dummies_planned_total"))
    {
        let sum = |i: usize| shards.iter().map(|m| m.hour.last(i)).sum::<u64>();
        let ratio = if sum(planned) == 0 { 0.0 } else { sum(emitted) as f64 / sum(planned) as f64 };
        let _ = writeln!(out, "# HELP tessera_cover_emitted_ratio_last_hour Dummies emitted / dummies planned over the last whole hour, all shards (1 = healthy; 0 before the first whole hour).");
        let _ = writeln!(out, "# TYPE tessera_cover_emitted_ratio_last_hour gauge");
        let _ = writeln!(out, "tessera_cover_emitted_ratio_last_hour {ratio}");
    }
}

fn rejected(
    out: &mut String,
    name: &str,
    kind: &str,
    shards: &[crossbeam::utils::CachePadded<ShardMetrics>],
    value: impl Fn(&ShardMetrics, usize) -> u64,
) {
    let _ = writeln!(out, "# HELP {name} Proofs rejected by the engine, by reason.");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (s, m) in shards.iter().enumerate() {
        for (r, reason) in REJECTION_REASONS.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{s}\",reason=\"{reason}\"}} {}", value(m, r));
        }
    }
}

fn family(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    shards: &[crossbeam::utils::CachePadded<ShardMetrics>],
    value: impl Fn(&ShardMetrics) -> u64,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (s, m) in shards.iter().enumerate() {
        let _ = writeln!(out, "{name}{{shard=\"{s}\"}} {}", value(m));
    }
}

/// A histogram from its series (per bucket, not cumulative; +Inf; sum in µs; count).
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    shards: &[crossbeam::utils::CachePadded<ShardMetrics>],
    series: impl Fn(&ShardMetrics) -> [u64; HISTOGRAM_SERIES],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (s, m) in shards.iter().enumerate() {
        let v = series(m);
        let mut cumulative = 0;
        for (i, bound_us) in LATENCY_BUCKETS_US.iter().enumerate() {
            cumulative += v[i];
            let le = *bound_us as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{shard=\"{s}\",le=\"{le}\"}} {cumulative}");
        }
        cumulative += v[LATENCY_BUCKETS_US.len()];
        let _ = writeln!(out, "{name}_bucket{{shard=\"{s}\",le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum{{shard=\"{s}\"}} {}", v[HISTOGRAM_SERIES - 2] as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{shard=\"{s}\"}} {}", v[HISTOGRAM_SERIES - 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam::utils::CachePadded;

    fn shards(n: usize) -> Vec<CachePadded<ShardMetrics>> {
        (0..n).map(|_| CachePadded::new(ShardMetrics::default())).collect()
    }

    /// Family names of a rendering (`# TYPE` lines).
    fn names(text: &str) -> Vec<&str> {
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect()
    }

    #[test]
    fn exact_renders_counters_gauges_and_histograms() {
        let shards = shards(2);
        ShardMetrics::add(&shards[1].proofs_received, 7);
        ShardMetrics::set(&shards[0].connections_open, 3);
        shards[0].proofs_rejected[2].fetch_add(4, Relaxed);
        shards[0].publish_ack_latency.record_us(30);
        shards[0].publish_ack_latency.record_us(2_000_000);
        let text = render_prometheus(&shards, true);
        assert!(text.contains("tessera_proofs_received_total{shard=\"1\"} 7\n"));
        assert!(text.contains("tessera_connections_open{shard=\"0\"} 3\n"));
        assert!(text.contains("tessera_proofs_rejected_total{shard=\"0\",reason=\"bad_fingerprint\"} 4\n"));
        assert!(text.contains("tessera_publish_ack_latency_seconds_bucket{shard=\"0\",le=\"0.000025\"} 0\n"));
        assert!(text.contains("tessera_publish_ack_latency_seconds_bucket{shard=\"0\",le=\"0.00005\"} 1\n"));
        assert!(text.contains("tessera_publish_ack_latency_seconds_bucket{shard=\"0\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("tessera_publish_ack_latency_seconds_count{shard=\"0\"} 2\n"));
        let counters = crate::log::LogCounters { fdatasyncs: 5, segments: 2, ..Default::default() };
        shards[1].log.store(&counters);
        let text = render_prometheus(&shards, true);
        assert!(text.contains("tessera_log_fdatasyncs_total{shard=\"1\"} 5\n"), "{text}");
        assert!(text.contains("# TYPE tessera_log_segments gauge\n"));
        // Exact adds series; it removes none of the default ones.
        let default = render_prometheus(&shards, false);
        let exact = names(&text);
        assert!(names(&default).iter().all(|n| exact.contains(n)));
    }

    #[test]
    fn by_default_real_only_series_change_only_at_hour_boundaries() {
        let shards = shards(1);
        let m = &shards[0];
        let hour = 1_700_000_000 / 3600 * 3600;
        m.roll_hour(hour + 10); // started within an hour: never published
        m.roll_hour(hour + 3600); // watched from here
        ShardMetrics::add(&m.proofs_accepted_client, 5);
        ShardMetrics::add(&m.proofs_accepted, 5 + 9);
        ShardMetrics::add(&m.cover_proofs, 9);
        ShardMetrics::add(&m.cover_planned, 10);
        ShardMetrics::add(&m.messages_in, 2);
        m.publish_ack_latency.record_us(30);
        m.proofs_rejected[3].fetch_add(1, Relaxed);
        let text = render_prometheus(&shards, false);
        // Live: only the combined count.
        assert!(text.contains("tessera_proofs_accepted_total{shard=\"0\"} 14\n"), "{text}");
        for hidden in
            ["tessera_proofs_accepted_client_total", "tessera_cover_proofs_total", "tessera_messages_in_total"]
        {
            assert!(!text.contains(hidden), "{hidden} is live");
        }
        assert!(!text.contains("tessera_publish_ack_latency_seconds_bucket"));
        assert!(!text.contains("bucket=\""), "nothing is labelled by bucket");
        assert!(text.contains("tessera_proofs_accepted_client_last_hour{shard=\"0\"} 0\n"));
        assert!(text.contains("tessera_metrics_hour_end_seconds{shard=\"0\"} 0\n"));
        m.roll_hour(hour + 7199);
        assert_eq!(render_prometheus(&shards, false), text, "nothing moves within the hour");
        m.roll_hour(hour + 7200);
        let text = render_prometheus(&shards, false);
        assert!(text.contains("tessera_proofs_accepted_client_last_hour{shard=\"0\"} 5\n"), "{text}");
        assert!(text.contains("tessera_cover_proofs_last_hour{shard=\"0\"} 9\n"));
        assert!(text.contains("tessera_cover_dummies_planned_last_hour{shard=\"0\"} 10\n"));
        assert!(text.contains("tessera_cover_emitted_ratio_last_hour 0.9\n"));
        assert!(text.contains("tessera_messages_in_last_hour{shard=\"0\"} 2\n"));
        assert!(text.contains("tessera_proofs_rejected_last_hour{shard=\"0\",reason=\"window_stale\"} 1\n"));
        assert!(text.contains("tessera_publish_ack_latency_last_hour_seconds_bucket{shard=\"0\",le=\"0.00005\"} 1\n"));
        assert!(text.contains("tessera_publish_ack_latency_last_hour_seconds_count{shard=\"0\"} 1\n"));
        assert!(text.contains(&format!("tessera_metrics_hour_end_seconds{{shard=\"0\"}} {}\n", hour + 7200)));
        assert!(text.contains("tessera_log_matches_recorded_last_hour{shard=\"0\"} 0\n"));
        assert!(text.contains("tessera_send_queue_proofs_hour_end{shard=\"0\"} 0\n"));
        let mut families = names(&text);
        let n = families.len();
        families.sort_unstable();
        families.dedup();
        assert_eq!(families.len(), n, "a family is rendered twice");
    }
}
