//! `tessera perf e2e` end to end: the real binary starts its own relay, runs both phases briefly with a small
//! workload, and prints one JSON report whose figures are consistent.

use std::process::Command;

#[test]
fn perf_e2e_reports_routed_delivered_and_ordered_latency() {
    let output = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["perf", "e2e", "--seconds", "1", "--subscribers", "128", "--publishers", "1", "--json"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tessera perf e2e");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "perf e2e failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is one JSON object");

    assert_eq!(report["workload"], "W-e2e");
    assert_eq!(report["params"]["subscribers"], 128);
    assert_eq!(report["params"]["relay_started"], true);
    let phases = report["phases"].as_array().expect("phases");
    assert_eq!(phases.iter().map(|p| p["name"].as_str().unwrap()).collect::<Vec<_>>(), ["saturate", "half"]);
    assert!(phases[0]["routed"].as_u64().unwrap() > 0, "{report}");
    assert!(phases[0]["delivered"].as_u64().unwrap() > 0, "{report}");
    assert!(report["routed_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["delivered_per_s"].as_f64().unwrap() > 0.0);
    // The half-rate phase targets half of what the saturating phase routed.
    let half = phases[1]["target_per_s"].as_f64().unwrap();
    let routed = report["routed_per_s"].as_f64().unwrap();
    assert!((half - routed / 2.0).abs() <= 1.0, "target {half} vs routed {routed}");

    let latency = &report["latency_us"];
    let (p50, p99, p999) =
        (latency["p50"].as_f64().unwrap(), latency["p99"].as_f64().unwrap(), latency["p999"].as_f64().unwrap());
    assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{latency}");
    assert!(latency["samples"].as_u64().unwrap() > 0);

    // The relay process was ours: its CPU time and peak memory are known.
    assert!(report["relay_cpu_s_per_million"].as_f64().unwrap() > 0.0);
    assert!(report["relay_peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
    // Every addressed proof reached its addressee, and nothing was refused or lost.
    let addressed = &report["addressed"];
    assert!(addressed["sent"].as_u64().unwrap() > 0);
    assert_eq!(addressed["delivered"], addressed["sent"], "{report}");
    assert_eq!(report["errors"]["proofs_rejected"], 0);
    assert_eq!(report["errors"]["connections_lost"], 0);
    assert_eq!(report["relay_counters"]["proofs_duplicate"], 0, "random commits never repeat");
}

/// `--tls`: the load runs over wss:// against a relay serving a fresh self-signed pair; the report is as
/// complete as over ws:// (the relay's counters come from its separate plain metrics port).
#[test]
fn perf_e2e_runs_over_tls_and_counts_handshakes() {
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args([&["perf", "e2e", "--threads", "1", "--shards", "1"][..], args].concat())
            .env("RUST_LOG", "warn")
            .output()
            .expect("run tessera perf e2e");
        assert!(output.status.success(), "perf e2e {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let json = run(&["--tls", "--seconds", "1", "--subscribers", "32", "--publishers", "1", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert!(report["params"]["relay"].as_str().unwrap().starts_with("wss://127.0.0.1:"), "{report}");
    assert!(report["routed_per_s"].as_f64().unwrap() > 0.0);
    let addressed = &report["addressed"];
    assert!(addressed["sent"].as_u64().unwrap() > 0);
    assert_eq!(addressed["delivered"], addressed["sent"], "{report}");
    assert!(report["relay_counters"].is_object(), "metrics read from the plain metrics port: {report}");

    for tls in [false, true] {
        let line = run(if tls { &["--handshakes", "40", "--tls"] } else { &["--handshakes", "40"] });
        let expected =
            if tls { "handshakes TLS: 40 completed (0 failed)" } else { "handshakes plain: 40 completed (0 failed)" };
        assert!(line.starts_with(expected), "{line}");
        assert!(line.contains("/s, relay CPU "), "{line}");
    }
}
