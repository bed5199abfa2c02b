//! Cover-traffic parameters against independently computed vectors (`tests/vectors/dp_cover.json`), and the
//! `tessera dp plan` / `tessera sim` commands end to end through the binary.

use std::process::Command;

use tessera::dp::CoverMechanism;

fn vectors() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/dp_cover.json"))
        .expect("tests/vectors/dp_cover.json is part of the repository");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("vector file is valid JSON");
    doc["vectors"].as_array().expect("`vectors` is an array").clone()
}

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs()
}

#[test]
fn mechanism_matches_the_vectors() {
    let rows = vectors();
    assert_eq!(rows.len(), 11);
    for v in rows {
        let (eps, delta) = (v["epsilon"].as_f64().unwrap(), v["delta"].as_f64().unwrap());
        let m = CoverMechanism::from_f64(eps, delta).unwrap();
        let what = format!("ε = {eps}, δ = {delta}");
        assert_eq!(m.shift_t() as u64, v["shift_t"].as_u64().unwrap(), "{what}");
        assert_eq!(m.dummies_per_bucket_max() as u64, v["dummies_per_bucket_max"].as_u64().unwrap(), "{what}");
        assert!(close(m.delta_lower_tail(), v["delta_lower_tail"].as_f64().unwrap(), 1e-9), "{what}");
        assert!(close(m.delta_achieved(), v["delta_achieved"].as_f64().unwrap(), 1e-9), "{what}");
        assert!(m.delta_achieved() <= delta, "{what}");
        let per_round = v["dummies_per_round_64_buckets"].as_f64().unwrap();
        assert!(close(m.expected_dummies_per_round(64), per_round, 1e-9), "{what}");
    }
}

fn tessera(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessera")).args(args).output().expect("the tessera binary runs")
}

#[test]
fn dp_plan_command() {
    let out = tessera(&["dp", "plan", "--epsilon", "0.1", "--delta", "1e-6", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["shift_t"], 132);
    assert_eq!(plan["epsilon_fraction"], "1/10");
    assert_eq!(plan["proof_bytes"], 564);
    assert!((plan["dummies_per_round"].as_f64().unwrap() - 8_448.0).abs() < 0.01);
    assert!((plan["dummies_per_day"].as_f64().unwrap() - 72_990_725.1).abs() < 1.0);
    let text =
        tessera(&["dp", "plan", "--epsilon", "0.25", "--delta", "1e-6", "--buckets", "32", "--round-seconds", "5"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("shift t            53") && text.contains("1696.0 dummies over 32 buckets"), "{text}");
    for bad in [
        ["--epsilon", "0", "--delta", "1e-6"],
        ["--epsilon", "0.1", "--delta", "1"],
        ["--epsilon", "nan", "--delta", "0.5"],
    ] {
        let out = tessera(&["dp", "plan", bad[0], bad[1], bad[2], bad[3]]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: cover-traffic"), "{bad:?}");
    }
}

#[test]
fn sim_commands_emit_json() {
    let out = tessera(&["sim", "linkability", "--samples", "2000", "--epsilons", "0.5,4", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = report["results"].as_array().unwrap();
    let policies: Vec<&str> = rows.iter().map(|r| r["policy"].as_str().unwrap()).collect();
    assert_eq!(policies, ["none", "proportional", "dp", "dp"]);
    assert_eq!(rows[3]["shift_t"], 4);
    assert_eq!(rows[0]["auc"]["auc"], 1.0);
    let out = tessera(&["sim", "anonymity", "--samples", "1000", "--trials", "1", "--users", "640", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["occupancy"][0]["users"], 640);
    assert_eq!(report["bloom"].as_array().unwrap().len(), 8);
}
