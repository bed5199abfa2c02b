//! The W-e2e report: figures per phase and for the run, rendered as JSON, a markdown table or text.
//!
//! ```text
//! runner ─▶ PhaseReport per phase (counters, CPU, latency percentiles) ─▶ Report ─▶ json | markdown | text
//! ```

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The reference relay's routed proofs/s on this machine (docs/FOUNDATIONS.md §3): the baseline of the ratio.
pub const REFERENCE_ROUTED_PER_S: f64 = 360.0;

/// Publish→deliver latency percentiles, µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Samples (delivered proofs sent during the phase).
    pub samples: u64,
}

impl Latency {
    /// Percentiles of a histogram of nanoseconds; `None` when it is empty.
    pub fn from_ns(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        Some(Self {
            p50: us(h.value_at_quantile(0.50)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1_000.0,
            samples: h.len(),
        })
    }
}

/// One measured phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PhaseReport {
    /// `saturate`, `half` or `fixed`.
    pub name: String,
    /// Target rate, proofs/s (`None` when saturating).
    pub target_per_s: Option<u64>,
    /// Measured duration, seconds.
    pub seconds: f64,
    /// Proofs acknowledged and not refused during the phase.
    pub routed: u64,
    /// `routed / seconds`.
    pub routed_per_s: f64,
    /// Proofs received by subscribers during the phase (addressed and Bloom false positives).
    pub delivered: u64,
    /// `delivered / seconds`.
    pub delivered_per_s: f64,
    /// Proofs sent during the phase, per second.
    pub sent_per_s: f64,
    /// Publish→deliver latency of proofs sent during the phase.
    pub latency_us: Option<Latency>,
    /// Publish→ACK latency of batches sent during the phase.
    pub ack_latency_us: Option<Latency>,
    /// How late paced batches went out after their due time (part of both latencies above).
    pub send_lag_us: Option<Latency>,
    /// Relay CPU-seconds (user + system) during the phase, when its process is known.
    pub relay_cpu_s: Option<f64>,
    /// Relay CPU-seconds per million routed proofs.
    pub relay_cpu_s_per_million: Option<f64>,
    /// Relay CPU use in cores (`relay_cpu_s / seconds`).
    pub relay_cores: Option<f64>,
    /// Load generator CPU use in cores.
    pub loadgen_cores: f64,
    /// CPU use of the whole machine, cores.
    pub machine_cores: Option<f64>,
    /// CPU use of everything else on the machine (other processes), cores: the measurement's noise.
    pub other_cores: Option<f64>,
    /// The relay's own latency histograms over the phase (bucket upper bounds), when its `/metrics` answered.
    pub relay_latency: Option<RelayLatency>,
    /// SUBSCRIBEs confirmed per second (window refreshes and commit-set rotations).
    pub subscribes_per_s: f64,
}

/// The relay's own view of latency in a phase, from its `/metrics` histograms: upper bounds of the buckets
/// holding each quantile (the buckets are 25 µs … 1 s, roughly ×2–2.5 apart).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RelayLatency {
    /// PUBLISH received → matched proof queued on its subscriber's connection, median, ≤ µs.
    pub deliver_queued_p50_us: Option<f64>,
    /// Same, 99th percentile, ≤ µs.
    pub deliver_queued_p99_us: Option<f64>,
    /// PUBLISH received → ACK queued, 99th percentile, ≤ µs.
    pub ack_queued_p99_us: Option<f64>,
}

/// Parameters of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Params {
    /// The relay's URL.
    pub relay: String,
    /// Whether the load generator started the relay itself.
    pub relay_started: bool,
    /// The relay's shards (when started here).
    pub shards: Option<usize>,
    /// Load generator executors.
    pub threads: usize,
    /// Publisher connections.
    pub publishers: usize,
    /// Subscribers.
    pub subscribers: usize,
    /// Subscribers per connection (W-e2e proper: 1).
    pub subscribers_per_conn: usize,
    /// Proofs per PUBLISH.
    pub batch: u16,
    /// Unacknowledged PUBLISHes per publisher.
    pub inflight_batches: usize,
    /// Measured seconds per phase.
    pub seconds: u64,
    /// Unmeasured warm-up before each phase, seconds.
    pub warmup_s: f64,
    /// Fraction of proofs addressed to a real subscriber.
    pub addressed_fraction: f64,
    /// Fingerprints per subscriber filter.
    pub fingerprints_per_filter: usize,
}

/// The machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Available cores.
    pub cores: usize,
}

/// Addressed proofs over the whole run (a delivery check: each should reach its addressee once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Addressed {
    /// Addressed proofs sent.
    pub sent: u64,
    /// Addressed proofs received by their addressee.
    pub delivered: u64,
    /// Proofs that should have been addressed but went out random (the subscriber had no fresh commit).
    pub skipped: u64,
}

/// Errors over the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Errors {
    /// Proofs refused one by one.
    pub proofs_rejected: u64,
    /// Proofs of PUBLISHes refused whole.
    pub proofs_refused: u64,
    /// Other ERROR frames.
    pub other: u64,
    /// Connections lost before the end.
    pub connections_lost: u64,
}

/// The relay's own counters at the end of the run (from its `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RelayCounters {
    /// `tessera_proofs_accepted_total`.
    pub proofs_accepted: u64,
    /// `tessera_proofs_duplicate_total`.
    pub proofs_duplicate: u64,
    /// `tessera_deliveries_queued_total`.
    pub deliveries_queued: u64,
    /// `tessera_deliveries_diverted_total` (send queue full).
    pub deliveries_diverted: u64,
    /// `tessera_deliveries_offline_total`.
    pub deliveries_offline: u64,
    /// `tessera_slow_consumer_closes_total`.
    pub slow_consumer_closes: u64,
    /// `tessera_cross_shard_requests_total`.
    pub cross_shard_requests: u64,
    /// `tessera_messages_out_total`.
    pub messages_out: u64,
}

/// The whole report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Always `W-e2e`.
    pub workload: String,
    /// The machine.
    pub machine: Machine,
    /// Parameters.
    pub params: Params,
    /// Measured phases, in order.
    pub phases: Vec<PhaseReport>,
    /// Routed proofs/s of the first phase (the saturating one unless `--rate`).
    pub routed_per_s: f64,
    /// Delivered proofs/s of the first phase.
    pub delivered_per_s: f64,
    /// Latency of the last phase (the fixed-rate one: half the saturated rate unless `--rate`).
    pub latency_us: Option<Latency>,
    /// Relay CPU-seconds per million routed proofs in the first phase.
    pub relay_cpu_s_per_million: Option<f64>,
    /// The relay's peak resident set, bytes.
    pub relay_peak_rss_bytes: Option<u64>,
    /// The reference relay's routed proofs/s on this machine.
    pub reference_routed_per_s: f64,
    /// `routed_per_s / reference_routed_per_s`.
    pub ratio_vs_reference: f64,
    /// Addressed proofs.
    pub addressed: Addressed,
    /// Errors.
    pub errors: Errors,
    /// The relay's counters, if its `/metrics` answered.
    pub relay_counters: Option<RelayCounters>,
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "n/a".to_owned(), |b| format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0)))
}

impl Report {
    /// What makes this run untrustworthy as a measurement, if anything: an addressed proof that did not
    /// reach its addressee, a rejected or refused proof, an unexpected ERROR or a lost connection.
    pub fn defects(&self) -> Vec<String> {
        let (a, e) = (self.addressed, self.errors);
        let mut out = Vec::new();
        if a.delivered < a.sent {
            out.push(format!("{} of {} addressed proofs did not reach their addressee", a.sent - a.delivered, a.sent));
        }
        for (n, what) in [
            (e.proofs_rejected, "proofs rejected"),
            (e.proofs_refused, "proofs refused"),
            (e.other, "other ERROR frames"),
            (e.connections_lost, "connections lost"),
        ] {
            if n > 0 {
                out.push(format!("{n} {what}"));
            }
        }
        out
    }

    /// One JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report is plain data")
    }

    /// A markdown table with a few lines of context.
    pub fn to_markdown(&self) -> String {
        let p = &self.params;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "W-e2e: relay {} ({}), {} publishers × batch {} ({} in flight), {} subscribers ({} per connection), load generator {} threads, {} s per phase",
            p.relay,
            p.shards.map_or_else(|| "external".to_owned(), |n| format!("{n} shards")),
            p.publishers,
            p.batch,
            p.inflight_batches,
            p.subscribers,
            p.subscribers_per_conn,
            p.threads,
            p.seconds,
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "| phase | target proofs/s | routed proofs/s | delivered proofs/s | p50 µs | p99 µs | p99.9 µs | ACK p50 µs | ACK p99 µs | relay CPU-s / M routed | relay cores | load-gen cores | other cores | relay-internal p99 µs |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for ph in &self.phases {
            let l = ph.latency_us;
            let ack = ph.ack_latency_us;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | ≤ {} |",
                ph.name,
                ph.target_per_s.map_or_else(|| "max".to_owned(), |r| thousands(r as f64)),
                thousands(ph.routed_per_s),
                thousands(ph.delivered_per_s),
                opt(l.map(|l| l.p50), 0),
                opt(l.map(|l| l.p99), 0),
                opt(l.map(|l| l.p999), 0),
                opt(ack.map(|l| l.p50), 0),
                opt(ack.map(|l| l.p99), 0),
                opt(ph.relay_cpu_s_per_million, 2),
                opt(ph.relay_cores, 2),
                ph.loadgen_cores,
                opt(ph.other_cores, 2),
                opt(ph.relay_latency.and_then(|r| r.deliver_queued_p99_us), 0),
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "- relay peak RSS {}; {:.0}× the reference relay's {} routed proofs/s",
            mib(self.relay_peak_rss_bytes),
            self.ratio_vs_reference,
            self.reference_routed_per_s,
        );
        let _ = writeln!(s, "- machine: {}, {} cores", self.machine.cpu_model, self.machine.cores);
        s.push_str(&self.footer());
        s
    }

    /// Readable text.
    pub fn to_text(&self) -> String {
        let p = &self.params;
        let mut s = String::new();
        let _ =
            writeln!(s, "W-e2e against {} ({} shards)", p.relay, p.shards.map_or("?".to_owned(), |n| n.to_string()));
        let _ = writeln!(s, "  machine: {}, {} cores", self.machine.cpu_model, self.machine.cores);
        for ph in &self.phases {
            let _ = writeln!(
                s,
                "  {} ({}): routed {}/s, delivered {}/s, sent {}/s",
                ph.name,
                ph.target_per_s
                    .map_or_else(|| "saturating".to_owned(), |r| format!("target {}/s", thousands(r as f64))),
                thousands(ph.routed_per_s),
                thousands(ph.delivered_per_s),
                thousands(ph.sent_per_s),
            );
            for (what, l) in
                [("publish→deliver", ph.latency_us), ("publish→ACK", ph.ack_latency_us), ("pacing lag", ph.send_lag_us)]
            {
                if let Some(l) = l {
                    let _ = writeln!(
                        s,
                        "    {what} latency: p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs ({} samples)",
                        l.p50, l.p99, l.p999, l.max, l.samples
                    );
                }
            }
            let _ = writeln!(
                s,
                "    relay CPU {} s ({} per million routed, {} cores); load generator {:.2} cores; other processes {} cores",
                opt(ph.relay_cpu_s, 2),
                opt(ph.relay_cpu_s_per_million, 2),
                opt(ph.relay_cores, 2),
                ph.loadgen_cores,
                opt(ph.other_cores, 2),
            );
            if let Some(r) = ph.relay_latency {
                let _ = writeln!(
                    s,
                    "    inside the relay: PUBLISH → proof queued for its subscriber p50 ≤ {} µs, p99 ≤ {} µs; → ACK queued p99 ≤ {} µs",
                    opt(r.deliver_queued_p50_us, 0),
                    opt(r.deliver_queued_p99_us, 0),
                    opt(r.ack_queued_p99_us, 0),
                );
            }
        }
        let _ = writeln!(
            s,
            "  relay peak RSS {}; {:.0}× the reference relay's {} routed proofs/s",
            mib(self.relay_peak_rss_bytes),
            self.ratio_vs_reference,
            self.reference_routed_per_s,
        );
        for line in self.footer().lines() {
            let _ = writeln!(s, "  {}", line.trim_start_matches("- "));
        }
        s
    }

    fn footer(&self) -> String {
        let (a, e) = (self.addressed, self.errors);
        let mut s = String::new();
        let share = if a.sent > 0 { 100.0 * a.delivered as f64 / a.sent as f64 } else { 0.0 };
        let _ = writeln!(
            s,
            "- addressed proofs: {} sent, {} delivered to their addressee ({share:.2}%), {} sent random (no fresh commit)",
            a.sent, a.delivered, a.skipped
        );
        let _ = writeln!(
            s,
            "- errors: {} proofs rejected, {} refused, {} other ERRORs, {} connections lost",
            e.proofs_rejected, e.proofs_refused, e.other, e.connections_lost
        );
        if let Some(r) = self.relay_counters {
            let _ = writeln!(
                s,
                "- relay counters: {} accepted, {} duplicates, {} deliveries queued in {} messages out, {} diverted (send queue full), {} offline, {} slow-consumer closes, {} cross-shard batches",
                r.proofs_accepted,
                r.proofs_duplicate,
                r.deliveries_queued,
                r.messages_out,
                r.deliveries_diverted,
                r.deliveries_offline,
                r.slow_consumer_closes,
                r.cross_shard_requests
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut h = Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 1_000).unwrap();
        }
        let phase = PhaseReport {
            name: "half".into(),
            target_per_s: Some(1_000),
            seconds: 2.0,
            routed: 2_000,
            routed_per_s: 1_000.0,
            delivered: 800,
            delivered_per_s: 400.0,
            sent_per_s: 1_000.0,
            latency_us: Latency::from_ns(&h),
            ack_latency_us: None,
            send_lag_us: None,
            relay_cpu_s: Some(0.5),
            relay_cpu_s_per_million: Some(250.0),
            relay_cores: Some(0.25),
            loadgen_cores: 0.1,
            machine_cores: Some(0.5),
            other_cores: Some(0.15),
            relay_latency: None,
            subscribes_per_s: 3.0,
        };
        Report {
            workload: "W-e2e".into(),
            phases: vec![phase.clone()],
            routed_per_s: 1_234_567.0,
            latency_us: phase.latency_us,
            reference_routed_per_s: REFERENCE_ROUTED_PER_S,
            ratio_vs_reference: 1_234_567.0 / REFERENCE_ROUTED_PER_S,
            ..Report::default()
        }
    }

    #[test]
    fn a_run_is_clean_only_when_every_addressed_proof_arrived_and_nothing_failed() {
        let mut r = sample();
        r.addressed = Addressed { sent: 10, delivered: 10, skipped: 3 };
        assert!(r.defects().is_empty());
        r.addressed.delivered = 9;
        r.errors.connections_lost = 2;
        assert_eq!(
            r.defects(),
            ["1 of 10 addressed proofs did not reach their addressee", "2 connections lost"].map(String::from)
        );
    }

    #[test]
    fn latency_percentiles_in_microseconds() {
        let l = sample().latency_us.unwrap();
        assert_eq!(l.samples, 1000);
        assert!((499.0..=501.0).contains(&l.p50), "{l:?}");
        assert!((989.0..=991.0).contains(&l.p99), "{l:?}");
        assert!((998.0..=1000.5).contains(&l.p999), "{l:?}");
        assert!(Latency::from_ns(&Histogram::<u64>::new(3).unwrap()).is_none());
    }

    #[test]
    fn renderings_carry_the_figures() {
        let r = sample();
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["routed_per_s"], 1_234_567.0);
        assert_eq!(json["phases"][0]["name"], "half");
        assert_eq!(json["relay_peak_rss_bytes"], serde_json::Value::Null);
        let md = r.to_markdown();
        assert!(md.contains("| half | 1,000 | 1,000 | 400 | 500 | "), "{md}");
        assert!(md.contains("3429×"), "{md}");
        let text = r.to_text();
        assert!(text.contains("routed 1,000/s, delivered 400/s"), "{text}");
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(12.0), "12");
    }
}
