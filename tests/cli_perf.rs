//! `tessera perf route|subscribe --json` prints one JSON object with the figures and parameters.

use std::process::Command;

fn perf(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera")).arg("perf").args(args).output().expect("run tessera");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON object on one line: {text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn route_reports_proofs_per_second_and_its_parameters() {
    // A small W-route (2 subscribers per bucket, 256-proof batches, small windows) keeps the debug build fast.
    let v = perf(&[
        "route",
        "--seconds",
        "0.05",
        "--json",
        "--subscribers-per-bucket",
        "2",
        "--batch-proofs",
        "256",
        "--proofs-per-window",
        "16384",
    ]);
    assert_eq!(v["workload"], "W-route");
    assert_eq!(v["parameters"]["buckets"], 64);
    assert_eq!(v["parameters"]["subscribers_per_bucket"], 2);
    assert_eq!(v["parameters"]["batch_proofs"], 256);
    assert_eq!(v["parameters"]["proofs_per_window"], 16384);
    assert_eq!(v["totals"]["rejected"], 0);
    let proofs = v["ops"].as_u64().unwrap();
    assert!(proofs >= 256 && proofs.is_multiple_of(256), "{proofs}");
    assert_eq!(v["totals"]["accepted"].as_u64(), Some(proofs));
    let per_s = v["proofs_per_s"].as_f64().unwrap();
    let ns = v["ns_per_op"].as_f64().unwrap();
    assert!((per_s * ns / 1e9 - 1.0).abs() < 1e-6, "proofs_per_s and ns_per_op agree");
    assert!(!v["cpu_model"].as_str().unwrap().is_empty());
}

#[test]
fn subscribe_reports_subscribes_per_second() {
    let v = perf(&["subscribe", "--seconds", "0.02", "--json", "--subscribers-per-bucket", "2"]);
    assert_eq!(v["workload"], "W-sub");
    assert_eq!(v["totals"]["subscribers"], 128);
    assert_eq!(v["totals"]["entries"], 128);
    assert_eq!(v["totals"]["subscribes_rejected"], 0);
    assert!(v["subscribes_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["ops"].as_u64().unwrap().is_multiple_of(1000));
}
