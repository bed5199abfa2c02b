//! Parsers for the text the load generator reads: `/proc` files, the relay's start line and its
//! Prometheus metrics. Pure functions over strings (the load generator does the reading).
//!
//! ```text
//! /proc/PID/stat   ─cpu_ticks─▶   utime + stime (clock ticks)
//! /proc/PID/status ─vm_hwm_kib─▶  peak resident set (KiB); ─vm_rss_kib─▶ current resident set (KiB)
//! /proc/cpuinfo    ─cpu_model─▶   "model name"
//! start line       ─start_line_url─▶ ws://host:port/; ─start_line_metrics_addr─▶ the metrics listener
//! /proc/stat       ─machine_ticks─▶ busy and total CPU ticks of the whole machine
//! GET /metrics     ─metric_sum─▶  a counter summed over shards
//!                  ─histogram_buckets─▶ a latency histogram summed over shards ─bucket_quantile─▶ upper bound
//! ```

/// `utime + stime` in clock ticks from the text of `/proc/PID/stat`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces: fields restart after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at indexes 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmHWM` (peak resident set) in KiB from the text of `/proc/PID/status`.
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status_kib(status, "VmHWM:")
}

/// `VmRSS` (current resident set) in KiB from the text of `/proc/PID/status`.
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    status_kib(status, "VmRSS:")
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The first `model name` of `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    let line = cpuinfo.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

/// (busy, total) CPU ticks of the whole machine from the text of `/proc/stat` (its aggregate `cpu` line).
pub fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map_while(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice: already counted in user and nice]
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// `ws://host:port/` (or `wss://`, a relay serving TLS) from the relay's start line (`tessera relay listening
/// on ws://host:port ...`).
pub fn start_line_url(line: &str) -> Option<String> {
    let url = line.split("listening on ").nth(1)?.split_whitespace().next()?;
    let (scheme, rest) = url.split_once("://").filter(|(s, _)| *s == "ws" || *s == "wss")?;
    let host_port = rest.trim_end_matches('/');
    (!host_port.is_empty()).then(|| format!("{scheme}://{host_port}/"))
}

/// The metrics listener's address from the relay's start line (`(metrics http://host:port/metrics)`).
pub fn start_line_metrics_addr(line: &str) -> Option<std::net::SocketAddr> {
    line.split("(metrics http://").nth(1)?.split('/').next()?.parse().ok()
}

/// The sum over shards of the Prometheus sample `name{...}` (lines `name{labels} value`).
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{");
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Cumulative buckets `(le, count)` of the Prometheus histogram `name`, summed over shards, in `le` order
/// (`+Inf` last).
pub fn histogram_buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some(le) = line.split("le=\"").nth(1).and_then(|rest| rest.split('"').next()) else { continue };
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
        let Some(count) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        match buckets.iter_mut().find(|(l, _)| *l == le) {
            Some((_, c)) => *c += count,
            None => buckets.push((le, count)),
        }
    }
    buckets.retain(|(le, _)| !le.is_nan());
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The upper bound of the bucket holding quantile `q` of the observations between two samples of the same
/// histogram (`before` may be empty); `None` if nothing was observed in between.
pub fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta = |le: f64, count: f64| count - before.iter().find(|(l, _)| *l == le).map_or(0.0, |(_, c)| *c);
    let total = after.last().map(|&(le, c)| delta(le, c))?;
    if total <= 0.0 {
        return None;
    }
    after.iter().find(|&&(le, c)| delta(le, c) >= q * total).map(|&(le, _)| le)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_with_spaces_in_the_name() {
        let stat = "4242 (tessera shard) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 3 0 1234 0 0";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn proc_status_peak_rss() {
        let status = "Name:\ttessera\nVmPeak:\t  900000 kB\nVmHWM:\t  123456 kB\nVmRSS:\t  100000 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(123_456));
        assert_eq!(vm_hwm_kib("Name: x\n"), None);
        assert_eq!(vm_rss_kib("VmHWM:\t  9 kB\nVmRSS:\t  7 kB\n"), Some(7));
    }

    #[test]
    fn cpuinfo_model() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14 96-Core Processor\n";
        assert_eq!(cpu_model(info).as_deref(), Some("AMD EPYC 9R14 96-Core Processor"));
    }

    #[test]
    fn start_line() {
        let line = "tessera relay listening on ws://127.0.0.1:41234 (metrics http://127.0.0.1:41234/metrics) shards=2";
        assert_eq!(start_line_url(line).as_deref(), Some("ws://127.0.0.1:41234/"));
        assert_eq!(start_line_metrics_addr(line), Some("127.0.0.1:41234".parse().unwrap()));
        assert_eq!(start_line_metrics_addr("error: storage locked"), None);
        assert_eq!(start_line_url("error: storage locked"), None);
        let tls = "tessera relay listening on wss://127.0.0.1:41234 (metrics https://127.0.0.1:41234/metrics) shards=2";
        assert_eq!(start_line_url(tls).as_deref(), Some("wss://127.0.0.1:41234/"));
    }

    #[test]
    fn machine_busy_and_total() {
        let stat = "cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 50 2 25 400 10 1 1 5 0 0\n";
        assert_eq!(machine_ticks(stat), Some((170, 990)));
        assert_eq!(machine_ticks("intr 1 2 3"), None);
    }

    #[test]
    fn histogram_quantiles_from_bucket_deltas() {
        let sample = |a: [u64; 3], b: [u64; 3]| {
            format!(
                "h_bucket{{shard=\"0\",le=\"0.001\"}} {}\nh_bucket{{shard=\"0\",le=\"0.01\"}} {}\n\
                 h_bucket{{shard=\"0\",le=\"+Inf\"}} {}\nh_bucket{{shard=\"1\",le=\"0.001\"}} {}\n\
                 h_bucket{{shard=\"1\",le=\"0.01\"}} {}\nh_bucket{{shard=\"1\",le=\"+Inf\"}} {}\nh_count{{shard=\"0\"}} 1\n",
                a[0], a[1], a[2], b[0], b[1], b[2]
            )
        };
        let before = histogram_buckets(&sample([10, 10, 10], [0, 0, 0]), "h");
        assert_eq!(before, vec![(0.001, 10.0), (0.01, 10.0), (f64::INFINITY, 10.0)]);
        // In between: 90 observations ≤ 1 ms, 9 in (1, 10] ms, 1 above.
        let after = histogram_buckets(&sample([60, 65, 66], [40, 44, 44]), "h");
        assert_eq!(bucket_quantile(&before, &after, 0.5), Some(0.001));
        assert_eq!(bucket_quantile(&before, &after, 0.99), Some(0.01));
        assert_eq!(bucket_quantile(&before, &after, 0.999), Some(f64::INFINITY));
        assert_eq!(bucket_quantile(&after, &after, 0.5), None, "nothing observed in between");
    }

    #[test]
    fn metrics_sum_over_shards() {
        let text =
            "# HELP x\ntessera_proofs_accepted_total{shard=\"0\"} 10\ntessera_proofs_accepted_total{shard=\"1\"} 5\n\
                    tessera_proofs_accepted_totalx{shard=\"0\"} 99\n";
        assert_eq!(metric_sum(text, "tessera_proofs_accepted_total"), Some(15.0));
        assert_eq!(metric_sum(text, "tessera_nothing"), None);
    }
}
