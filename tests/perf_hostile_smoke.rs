//! `tessera perf hostile` end to end, scaled down: the real binary starts its relay, measures the healthy pair,
//! runs every kind of attacker and reports what each saw. The throughput and latency targets are not asserted
//! here (a debug build on a shared 2-core machine says nothing about them; docs/PERFORMANCE.md has the release
//! figures), but what the relay did to the attackers is, in each of two rounds: every saturating SUBSCRIBE
//! refused and the connection closed after the protocol-error budget, silent WebSockets
//! and idle sockets held, the flooder's writes blocked by backpressure rather than answered without bound.

use std::process::Command;

#[test]
fn perf_hostile_reports_the_pair_and_what_the_attackers_saw() {
    let output = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "perf",
            "hostile",
            "--seconds",
            "1",
            "--idle-tcp",
            "40",
            "--silent-ws",
            "10",
            "--saturating",
            "2",
            "--flooders",
            "1",
            "--latency-rate",
            "2000",
            "--rounds",
            "2",
            "--json",
        ])
        .env("RUST_LOG", "error")
        .output()
        .expect("run tessera perf hostile");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON object ({e}); stderr: {stderr}"));

    let rounds = report["rounds"].as_array().unwrap_or_else(|| panic!("rounds: {report}"));
    assert_eq!(rounds.len(), 2, "{report}");
    for round in rounds {
        assert!(round["idle"]["routed_per_s"].as_f64().unwrap() > 0.0, "{report}");
        assert!(round["attacked"]["routed_per_s"].as_f64().unwrap() > 0.0, "{report}");
        assert_eq!(round["idle"]["defects"], 0, "{report}\n{stderr}");
        assert_eq!(round["attacked"]["defects"], 0, "{report}\n{stderr}");
        let a = &round["attack"];
        assert_eq!(a["saturating_accepted"], 0, "a saturated filter was accepted: {report}");
        // Each saturated filter is a protocol error: 8 refusals, then the relay closes the connection.
        assert!(a["saturating_refused"].as_u64().unwrap() >= 2 * 8, "{report}");
        assert!(a["saturating_closed_by_relay"].as_u64().unwrap() >= 2, "{report}");
        assert!(a["silent_ws_open"].as_u64().unwrap() >= 9, "{report}");
        assert!(a["idle_open"].as_u64().unwrap() >= 36, "{report}");
        assert!(a["flood_publishes"].as_u64().unwrap() > 0, "{report}");
        assert!(round["rss"]["peak_under_attack_bytes"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(round["idle"]["latency_rate_per_s"], 2000, "{report}");
        let ratio = round["throughput_ratio"].as_f64().unwrap();
        assert!(ratio > 0.0, "{report}");
    }
    // The verdict's ratio is the median of the rounds' (two: their mean).
    let ratios: Vec<f64> = rounds.iter().map(|r| r["throughput_ratio"].as_f64().unwrap()).collect();
    let median = report["throughput_ratio"].as_f64().unwrap();
    assert!((median - (ratios[0] + ratios[1]) / 2.0).abs() < 1e-9, "{report}");
}
