//! `tessera perf hostile` end to end, scaled down: the real binary starts its relay, measures the healthy pair,
//! runs every kind of attacker and reports what each saw. The throughput and latency targets are not asserted
//! here (a debug build on a shared 2-core machine says nothing about them; docs/PERFORMANCE.md has the release
//! figures), but what the relay did to the attackers is: every saturating SUBSCRIBE refused, silent WebSockets
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
            "--json",
        ])
        .env("RUST_LOG", "error")
        .output()
        .expect("run tessera perf hostile");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON object ({e}); stderr: {stderr}"));

    assert!(report["idle"]["routed_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["attacked"]["routed_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["idle"]["defects"], 0, "{report}\n{stderr}");
    assert_eq!(report["attacked"]["defects"], 0, "{report}\n{stderr}");
    let a = &report["attack"];
    assert!(a["saturating_subscribes_sent"].as_u64().unwrap() >= 2, "{report}");
    assert_eq!(a["saturating_accepted"], 0, "a saturated filter was accepted: {report}");
    assert_eq!(a["saturating_refused"], a["saturating_subscribes_sent"], "{report}");
    assert!(a["silent_ws_open"].as_u64().unwrap() >= 9, "{report}");
    assert!(a["idle_open"].as_u64().unwrap() >= 36, "{report}");
    assert!(a["flood_publishes"].as_u64().unwrap() > 0, "{report}");
    assert!(report["rss"]["peak_under_attack_bytes"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["idle"]["latency_rate_per_s"], 2000, "{report}");
}
