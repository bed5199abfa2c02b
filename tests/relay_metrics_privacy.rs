//! `/metrics` cannot undo the cover traffic's noise, and the WebSocket upgrade refuses foreign browser origins
//! (docs/PRIVACY.md §Metrics, docs/PROTOCOL.md §2), on the real binary:
//!
//! ```text
//! scrape ─▶ PUBLISH N proofs (one round) ─▶ ACK ─▶ wait ─▶ scrape: no series (nor family sum) moved by N; the
//!   live proof counts moved by N + dummies; every hourly figure stayed put; nothing is labelled by bucket
//! GET /metrics on the client port ─▶ 404, one line; names rendered == the names docs/PRIVACY.md lists
//! upgrade with Origin: https://evil.example ─▶ 403, no session; with an allowed origin ─▶ HELLO works
//! ```

mod relay_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use relay_support::*;
use tessera::proto::{Frame, Proof};

/// Proofs published between the two scrapes: odd and unlike any count that moves by itself in a second.
const N: usize = 37;

fn unix_s() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

/// Every sample of a rendering: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The family a sample belongs to (its name without labels).
fn family(series: &str) -> &str {
    series.split('{').next().unwrap_or(series)
}

/// Family names of a rendering (`# TYPE` lines).
fn families(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(|l| Some(l.strip_prefix("# TYPE ")?.split(' ').next()?.to_owned())).collect()
}

#[test]
fn no_metric_moves_by_the_number_of_real_proofs_published() {
    // 1 s cover rounds at the test relays' ε = 4: about 256 dummies a second, at uniform times.
    let relay = Relay::start(&["--shards", "2", "--cover-round-ms", "1000"]);
    assert!(relay.wait_metric("tessera_cover_rounds_total", "", 4) >= 4, "cover traffic runs");
    let (mut publisher, _) = Client::hello(&relay);
    for attempt in 0u32.. {
        // Hourly figures move at hour boundaries by design: measure within one hour.
        while unix_s() % 3600 > 3590 {
            std::thread::sleep(Duration::from_millis(200));
        }
        let hour = unix_s() / 3600;
        let before = samples(&relay.http_get("/metrics"));
        let window = current_window();
        let salt = |i: u32| attempt * 1000 + i;
        let proofs: Vec<Proof> =
            (0..N as u32).map(|i| proof(&commit_in_bucket((i % 64) as u16, salt(i)), window, 0)).collect();
        let seq = publisher.publish(&proofs);
        assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
        std::thread::sleep(Duration::from_millis(1200));
        let after = samples(&relay.http_get("/metrics"));
        if unix_s() / 3600 != hour {
            assert!(attempt < 2, "the clock keeps crossing hours");
            continue;
        }
        let delta =
            |series: &str| after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0);
        let mut family_deltas: BTreeMap<&str, f64> = BTreeMap::new();
        for series in after.keys() {
            assert!(!series.contains("bucket=\""), "{series} is labelled by bucket");
            let d = delta(series);
            assert_ne!(d, N as f64, "{series} moved by exactly the {N} real proofs");
            *family_deltas.entry(family(series)).or_default() += d;
            if series.contains("_last_hour") || series.contains("_hour_end") {
                assert_eq!(d, 0.0, "{series} moved within the hour");
            }
        }
        for (name, d) in &family_deltas {
            assert_ne!(*d, N as f64, "{name} (all shards) moved by exactly the {N} real proofs");
        }
        // The live proof counts carry the real proofs and the dummies together.
        for name in ["tessera_proofs_accepted_total", "tessera_log_records_appended_total"] {
            let d = family_deltas[name];
            assert!(d > (N + 50) as f64, "{name} moved by {d}: real proofs and dummies together expected");
        }
        // What used to give the real count away is not live any more.
        for hidden in ["tessera_proofs_received_total", "tessera_cover_proofs_total", "tessera_acks_sent_total"] {
            assert!(!after.keys().any(|s| family(s) == hidden), "{hidden} is live");
        }
        return;
    }
}

#[test]
fn the_client_port_never_answers_metrics_and_the_names_are_the_documented_ones() {
    let relay = Relay::start(&["--shards", "1"]);
    for path in ["/metrics", "/healthz", "/"] {
        let answer = relay.client_http_get(path);
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(!answer.contains("tessera_"), "{answer}");
    }
    let rendered = families(&relay.http_get("/metrics"));
    let privacy = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PRIVACY.md")).unwrap();
    let section = privacy.split("\n## ").find(|s| s.starts_with("Metrics")).expect("docs/PRIVACY.md §Metrics");
    let documented: BTreeSet<String> = section
        .lines()
        .filter(|l| l.starts_with("| `tessera_"))
        .flat_map(|l| l.split('`').skip(1).step_by(2).filter(|n| n.starts_with("tessera_")).map(str::to_owned))
        .collect();
    let undocumented: Vec<_> = rendered.difference(&documented).collect();
    let gone: Vec<_> = documented.difference(&rendered).collect();
    assert!(
        undocumented.is_empty() && gone.is_empty(),
        "classify every metric in docs/PRIVACY.md §Metrics: rendered but not listed {undocumented:?}, listed but \
         not rendered {gone:?}"
    );
}

/// The raw answer to a WebSocket upgrade carrying `origin`.
fn upgrade_answer(relay: &Relay, path: &str, origin: &str) -> String {
    let mut stream = TcpStream::connect(&relay.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n",
        relay.addr
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn upgrades_from_browser_origins_are_refused_unless_allowed() {
    let relay = Relay::start(&["--shards", "1", "--allow-origin", "https://app.example"]);
    let refused = upgrade_answer(&relay, "/", "https://evil.example");
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert_eq!(refused.split("\r\n\r\n").nth(1).unwrap().lines().count(), 1, "one line: {refused}");
    assert!(Client::connect_with_origin(&relay, "https://evil.example").is_err());
    let wrong_path = upgrade_answer(&relay, "/ws", "https://app.example");
    assert!(wrong_path.starts_with("HTTP/1.1 404"), "{wrong_path}");
    assert_eq!(relay.metric("tessera_connections_accepted_total", ""), 0, "no session was opened");
    // The allowed origin, and a native client (no Origin), are served.
    let (mut allowed, _) = Client::hello_on(Client::connect_with_origin(&relay, "https://app.example").unwrap());
    let (mut native, _) = Client::hello(&relay);
    for (salt, client) in [&mut allowed, &mut native].into_iter().enumerate() {
        let seq = client.publish(&[proof(&commit_in_bucket(3, salt as u32), current_window(), 0)]);
        assert_eq!(client.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
    }
    assert_eq!(relay.metric("tessera_connections_accepted_total", ""), 2);
}
