//! Paper cuts a new user and an operator hit (issue 12 §5), each checked on the real binary: usage errors name
//! what is missing, start-up errors exit with the status README promises, a config type error names its key,
//! help and `params` read as text, and `dp plan` prints the disk cover traffic needs.
//!
//! ```text
//! tessera <args> ──▶ exit status + stdout/stderr ──▶ assertions (a relay that should fail is given 60 s, then
//!                                                    killed and the test fails, so a wrong start never hangs)
//! ```

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a relay that must fail at start may take before the test gives up on it.
const START_FAILURE_WAIT: Duration = Duration::from_secs(60);

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera")).args(args).env_remove("TESSERA_HOME").output().expect("tessera runs")
}

/// Runs a relay that is expected to stop by itself at start; kills it (and fails) if it keeps running.
fn relay_expecting_failure(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("relay")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tessera runs");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > START_FAILURE_WAIT {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("relay {args:?} did not stop: {}", String::from_utf8_lossy(&out.stdout));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_missing_required_argument_is_named() {
    let out = tessera(&["send", "--to", "bob"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("required arguments were not provided") && stderr.contains("<TEXT>"), "{stderr}");
    assert!(stderr.contains("Usage: tessera send --to <NAME> <TEXT>"), "{stderr}");
    let out = tessera(&["enroll", "tessera1abc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--name"), "{}", text(&out.stderr));
}

#[test]
fn storage_and_port_errors_at_start_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let out = relay_expecting_failure(&["--storage", file.to_str().unwrap(), "--port", "0"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.lines().last().unwrap().contains("storage directory"), "{stderr}");

    // A port another process holds (without SO_REUSEPORT, so the relay's bind fails).
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let storage = dir.path().join("data");
    let storage = storage.to_str().unwrap();
    let out = relay_expecting_failure(&["--storage", storage, "--port", &port, "--shards", "1"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.lines().last().unwrap().contains(&format!("cannot listen on 127.0.0.1:{port}")), "{stderr}");
    let metrics_addr = format!("127.0.0.1:{port}");
    let out = relay_expecting_failure(&[
        "--storage",
        storage,
        "--port",
        "0",
        "--metrics-addr",
        &metrics_addr,
        "--shards",
        "1",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.lines().last().unwrap().contains(&format!("cannot listen on 127.0.0.1:{port}")), "{stderr}");
}

#[test]
fn a_config_type_error_names_the_key_and_what_it_expects() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "host = \"127.0.0.1\"\nport = \"abc\"\n").unwrap();
    let out = tessera(&["relay", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("invalid port \"abc\""), "{stderr}");
    assert!(stderr.contains("expected an integer in 0..=65535"), "{stderr}");
    assert!(stderr.contains("relay.toml"), "{stderr}");
}

#[test]
fn help_mentions_perf_e2e_and_readme_lists_each_command_once() {
    let out = tessera(&["--help"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("perf e2e"), "{}", text(&out.stdout));
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for command in ["`tessera id new`", "`tessera invite`", "`tessera relay`", "`tessera send"] {
        let rows = readme.lines().filter(|l| l.starts_with(&format!("| {command}"))).count();
        assert_eq!(rows, 1, "README's command table lists {command} {rows} times");
    }
    assert!(readme.contains("`enroll CODE --name NAME`"));
}

#[test]
fn params_prints_text_unless_json() {
    let out = tessera(&["params"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(!stdout.trim_start().starts_with('{'), "{stdout}");
    assert!(stdout.lines().any(|l| l.split_whitespace().take(2).eq(["window_seconds", "10"])), "{stdout}");
    let out = tessera(&["params", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (value["window_seconds"].as_u64(), value["limits"]["filters_per_bucket_max"].as_u64()),
        (Some(10), Some(4))
    );
}

#[test]
fn dp_plan_prints_the_disk_one_retention_period_needs() {
    let out = tessera(&["dp", "plan", "--epsilon", "0.1", "--delta", "1e-6"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("disk               1.78 GB per retention period (3600 s)"), "{stdout}");
    let out = tessera(&["dp", "plan", "--epsilon", "0.1", "--delta", "1e-6", "--retention", "2h", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["retention_seconds"].as_u64(), Some(7200));
    let disk = value["disk_bytes_per_retention"].as_f64().unwrap();
    assert!((disk / 1e9 - 3.559).abs() < 0.001, "{disk}");
    let out = tessera(&["dp", "plan", "--epsilon", "0.1", "--delta", "1e-6", "--retention", "1w"]);
    assert_eq!(out.status.code(), Some(2));
}
