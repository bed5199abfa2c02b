//! Per-shard metrics and their Prometheus text rendering (`GET /metrics`).
//!
//! Each shard writes only its own `ShardMetrics` (relaxed atomics on its own cache lines, so no lock and no
//! sharing on the data path); a `/metrics` request on any shard reads all of them. Latencies go into fixed
//! log-spaced buckets, which is what Prometheus histograms need (hdrhistogram is used by the load generator).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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

macro_rules! shard_metrics {
    (
        counters { $($c:ident : $cname:literal, $chelp:literal;)* }
        gauges { $($g:ident : $gname:literal, $ghelp:literal;)* }
    ) => {
        /// One shard's counters and gauges.
        #[derive(Debug, Default)]
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
            /// Dummies sent per owned bucket in the last cover round.
            pub cover_round: CoverGauges,
        }

        const COUNTERS: &[(&str, &str, fn(&ShardMetrics) -> &AtomicU64)] = &[$(($cname, $chelp, |m| &m.$c),)*];
        const GAUGES: &[(&str, &str, fn(&ShardMetrics) -> &AtomicU64)] = &[$(($gname, $ghelp, |m| &m.$g),)*];
    };
}

/// Dummies per owned bucket in the shard's last cover round (the "dummies per bucket per round" metric).
/// Keep `/metrics` private (`--metrics-port` on an internal address): with it, real traffic per bucket is the
/// observed count minus these.
#[derive(Debug, Default)]
pub struct CoverGauges {
    first_bucket: u16,
    per_bucket: Box<[AtomicU64]>,
}

impl CoverGauges {
    /// Gauges for the buckets a shard owns.
    pub fn new(buckets: std::ops::Range<u16>) -> Self {
        Self { first_bucket: buckets.start, per_bucket: buckets.map(|_| AtomicU64::new(0)).collect() }
    }

    /// Records one round's `D_b`, in bucket order from the first owned bucket.
    pub fn store(&self, dummies_per_bucket: &[u32]) {
        for (slot, &d) in self.per_bucket.iter().zip(dummies_per_bucket) {
            slot.store(d.into(), Relaxed);
        }
    }
}

impl ShardMetrics {
    /// Metrics for a shard owning `buckets`.
    pub fn for_buckets(buckets: std::ops::Range<u16>) -> Self {
        Self { cover_round: CoverGauges::new(buckets), ..Default::default() }
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
        proofs_received: "tessera_proofs_received_total", "Proofs received in PUBLISH frames (clients and peers).";
        proofs_accepted: "tessera_proofs_accepted_total", "Proofs verified, deduplicated and logged.";
        proofs_duplicate: "tessera_proofs_duplicate_total", "Proofs dropped as duplicates of an earlier (commit, window).";
        cover_proofs: "tessera_cover_proofs_total", "Dummy proofs this relay generated (cover traffic).";
        cover_rounds: "tessera_cover_rounds_total", "Cover-traffic rounds scheduled.";
        cover_clamped_buckets: "tessera_cover_clamped_buckets_total", "Bucket draws that hit the dummies-per-bucket cap (expected never).";
        deliveries_queued: "tessera_deliveries_queued_total", "Matched proofs queued on a subscriber's connection.";
        deliveries_written: "tessera_deliveries_written_total", "Matched proofs written to a subscriber's socket.";
        deliveries_diverted: "tessera_deliveries_diverted_total", "Matched proofs not queued because the subscriber's send queue was full.";
        deliveries_offline: "tessera_deliveries_offline_total", "Matched proofs whose subscriber had no open connection.";
        gossip_queued: "tessera_gossip_queued_total", "Proofs queued for peers.";
        subscribe_requests: "tessera_subscribe_requests_total", "SUBSCRIBE frames applied.";
        subscribe_rejected: "tessera_subscribe_rejected_total", "SUBSCRIBE frames refused (limits, ranges, buckets).";
        connections_accepted: "tessera_connections_accepted_total", "WebSocket connections accepted.";
        connections_refused: "tessera_connections_refused_total", "Connections refused at connections_max.";
        handshakes_refused: "tessera_handshakes_refused_total", "Sockets closed at accept: handshakes_max sockets were still in their HTTP request or upgrade.";
        hello_timeouts: "tessera_hello_timeouts_total", "WebSocket connections closed for sending no HELLO within hello_timeout_ms.";
        idle_timeouts: "tessera_idle_timeouts_total", "Established connections closed for sending nothing (not even a pong) within idle_timeout_ms.";
        connections_per_ip_refused: "tessera_connections_per_ip_refused_total", "Sockets closed at accept: their source address already held connections_per_ip_max (or connections_per_loopback_max) sockets.";
        fd_reserve_refused: "tessera_fd_reserve_refused_total", "Sockets closed at accept to keep the file descriptors the log needs (RLIMIT_NOFILE minus the reserve reached).";
        http_timeouts: "tessera_http_timeouts_total", "HTTP exchanges or WebSocket upgrades cut at http_timeout_ms (request head not read or response not written in time).";
        reply_backpressure: "tessera_reply_backpressure_total", "Times the relay stopped reading a connection because its queued replies (ACK, ERROR, ...) reached the reply backlog limit.";
        http_requests: "tessera_http_requests_total", "Plain HTTP requests (metrics, health, others).";
        messages_in: "tessera_messages_in_total", "WebSocket messages received.";
        messages_out: "tessera_messages_out_total", "WebSocket messages sent.";
        bytes_in: "tessera_bytes_in_total", "Payload bytes received in WebSocket messages.";
        bytes_out: "tessera_bytes_out_total", "Payload bytes sent in WebSocket messages.";
        frames_malformed: "tessera_frames_malformed_total", "Messages rejected by the decoder (ERROR MALFORMED sent).";
        errors_received: "tessera_errors_received_total", "ERROR frames received from clients or peers (logged, never answered).";
        protocol_errors: "tessera_protocol_errors_total", "Protocol errors (malformed, unexpected frame, bad sequence, limits).";
        limit_message_size: "tessera_limit_message_size_total", "Connections closed for a message over message_bytes_max (1009).";
        limit_batch: "tessera_limit_batch_total", "Messages rejected for more than proofs_per_batch_max proofs.";
        limit_subscriptions: "tessera_limit_subscriptions_total", "SUBSCRIBE refused for subscribers_per_connection_max or filters_per_bucket_max.";
        filters_saturated: "tessera_filters_saturated_total", "SUBSCRIBE refused (FILTER_SATURATED): a filter with more bits set than 60 fingerprints set.";
        deliveries_unpushed: "tessera_deliveries_unpushed_total", "Matches recorded for FETCH but not pushed: over the per-proof or per-shard-second delivery bound.";
        limit_protocol_errors: "tessera_limit_protocol_errors_total", "Connections closed after too many protocol errors (1008).";
        slow_consumer_closes: "tessera_slow_consumer_closes_total", "Connections closed because their send queue stayed full past the grace period.";
        cross_shard_requests: "tessera_cross_shard_requests_total", "Batches sent to another shard.";
        acks_sent: "tessera_acks_sent_total", "ACK frames sent.";
        late_scans: "tessera_late_scans_total", "SUBSCRIBE parts matched against retained proofs (windows not yet subscribed).";
        late_scans_refused: "tessera_late_scans_refused_total", "SUBSCRIBE parts refused (OVERLOADED): too many late scans pending on the connection.";
        late_proofs_examined: "tessera_late_proofs_examined_total", "Retained proofs examined by late scans.";
        late_matches: "tessera_late_matches_total", "New matches recorded by late scans (FETCHable; delivered if connected).";
        storage_refused_proofs: "tessera_storage_refused_proofs_total", "Proofs of PUBLISH batches refused with ERROR(STORAGE) while the log was stalled (storage full).";
        cover_skipped_storage: "tessera_cover_skipped_storage_total", "Dummy proofs not emitted while the log was stalled (storage full).";
    }
    gauges {
        connections_open: "tessera_connections_open", "Open WebSocket connections.";
        subscribers: "tessera_subscribers", "Subscribers with entries in this shard.";
        subscription_entries: "tessera_subscription_entries", "Registered (bucket, window range, filter) entries.";
        send_queue_proofs: "tessera_send_queue_proofs", "Proofs waiting in connection send queues.";
        dedup_entries: "tessera_dedup_entries", "Commitments remembered for deduplication.";
        cover_traffic_disabled: "tessera_danger_cover_traffic_disabled", "1 when cover traffic is disabled (danger: per-bucket counts leak).";
        retained_proofs: "tessera_retained_proofs", "Proofs held in the late-match index (12 bytes each).";
        late_scans_pending: "tessera_late_scans_pending", "Late scans waiting or in progress.";
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

/// Renders every shard's metrics in the Prometheus text exposition format (version 0.0.4).
pub fn render_prometheus(shards: &[crossbeam::utils::CachePadded<ShardMetrics>]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    for (name, help, get) in COUNTERS {
        family(&mut out, name, help, "counter", shards, |m| get(m).load(Relaxed));
    }
    for (name, help, get) in GAUGES {
        family(&mut out, name, help, "gauge", shards, |m| get(m).load(Relaxed));
    }
    let _ = writeln!(out, "# HELP tessera_proofs_rejected_total Proofs rejected by the engine, by reason.");
    let _ = writeln!(out, "# TYPE tessera_proofs_rejected_total counter");
    for (s, m) in shards.iter().enumerate() {
        for (reason, value) in REJECTION_REASONS.iter().zip(&m.proofs_rejected) {
            let _ = writeln!(
                out,
                "tessera_proofs_rejected_total{{shard=\"{s}\",reason=\"{reason}\"}} {}",
                value.load(Relaxed)
            );
        }
    }
    if let Some(first) = shards.first() {
        for (i, name) in first.log.names.iter().enumerate() {
            let (kind, suffix) = if LogGauges::is_gauge(name) { ("gauge", "") } else { ("counter", "_total") };
            let family_name = format!("tessera_log_{name}{suffix}");
            let help = format!("Durable log: {} (docs/STORAGE.md).", name.replace('_', " "));
            family(&mut out, &family_name, &help, kind, shards, |m| m.log.values[i].load(Relaxed));
        }
    }
    let _ = writeln!(out, "# HELP tessera_cover_dummies_last_round Dummies sent per bucket in the last cover round.");
    let _ = writeln!(out, "# TYPE tessera_cover_dummies_last_round gauge");
    for (s, m) in shards.iter().enumerate() {
        for (i, value) in m.cover_round.per_bucket.iter().enumerate() {
            let bucket = m.cover_round.first_bucket as usize + i;
            let _ = writeln!(
                out,
                "tessera_cover_dummies_last_round{{shard=\"{s}\",bucket=\"{bucket}\"}} {}",
                value.load(Relaxed)
            );
        }
    }
    histogram(&mut out, "tessera_publish_ack_latency_seconds", "PUBLISH received to ACK queued.", shards, |m| {
        &m.publish_ack_latency
    });
    histogram(
        &mut out,
        "tessera_publish_deliver_latency_seconds",
        "PUBLISH received to matched proof queued for its subscriber.",
        shards,
        |m| &m.publish_deliver_latency,
    );
    out
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

fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    shards: &[crossbeam::utils::CachePadded<ShardMetrics>],
    get: impl Fn(&ShardMetrics) -> &LatencyHistogram,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (s, m) in shards.iter().enumerate() {
        let h = get(m);
        let mut cumulative = 0;
        for (i, bound_us) in LATENCY_BUCKETS_US.iter().enumerate() {
            cumulative += h.buckets[i].load(Relaxed);
            let le = *bound_us as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{shard=\"{s}\",le=\"{le}\"}} {cumulative}");
        }
        cumulative += h.buckets[LATENCY_BUCKETS_US.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{shard=\"{s}\",le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum{{shard=\"{s}\"}} {}", h.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{shard=\"{s}\"}} {}", h.count.load(Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam::utils::CachePadded;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let shards: Vec<CachePadded<ShardMetrics>> =
            (0..2).map(|_| CachePadded::new(ShardMetrics::default())).collect();
        ShardMetrics::add(&shards[1].proofs_received, 7);
        ShardMetrics::set(&shards[0].connections_open, 3);
        shards[0].proofs_rejected[2].fetch_add(4, Relaxed);
        shards[0].publish_ack_latency.record_us(30);
        shards[0].publish_ack_latency.record_us(2_000_000);
        let text = render_prometheus(&shards);
        assert!(text.contains("tessera_proofs_received_total{shard=\"1\"} 7\n"));
        assert!(text.contains("tessera_connections_open{shard=\"0\"} 3\n"));
        assert!(text.contains("tessera_proofs_rejected_total{shard=\"0\",reason=\"bad_fingerprint\"} 4\n"));
        assert!(text.contains("tessera_publish_ack_latency_seconds_bucket{shard=\"0\",le=\"0.000025\"} 0\n"));
        assert!(text.contains("tessera_publish_ack_latency_seconds_bucket{shard=\"0\",le=\"0.00005\"} 1\n"));
        assert!(text.contains("tessera_publish_ack_latency_seconds_bucket{shard=\"0\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("tessera_publish_ack_latency_seconds_count{shard=\"0\"} 2\n"));
        let counters = crate::log::LogCounters { fdatasyncs: 5, segments: 2, ..Default::default() };
        shards[1].log.store(&counters);
        let text = render_prometheus(&shards);
        assert!(text.contains("tessera_log_fdatasyncs_total{shard=\"1\"} 5\n"), "{text}");
        assert!(text.contains("# TYPE tessera_log_segments gauge\n"));
    }
}
