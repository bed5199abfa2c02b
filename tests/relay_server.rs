//! The relay as a real process on 127.0.0.1: real WebSocket clients subscribe, publish and receive DELIVER;
//! cross-shard routing; malformed input; limits; slow subscribers; metrics; graceful shutdown.

mod relay_support;

use std::time::{Duration, Instant};

use relay_support::*;
use tessera::proto::frame::{ErrorFrame, Publish};
use tessera::proto::{ErrorCode, Frame, Proof, ProofBatch, SubscriberId, WINDOW_SECONDS};
use tessera::server::conn::PROTOCOL_ERRORS_MAX;

fn sub(n: u8) -> SubscriberId {
    relay_support::subscriber(n)
}

#[test]
fn subscribe_publish_deliver_and_ack() {
    let relay = Relay::start(&["--danger-exact-metrics", "--shards", "2"]);
    assert!(relay.start_line.contains("shards=2 buckets=[0..32 32..64]"), "{}", relay.start_line);
    let (mut subscriber, params) = Client::hello(&relay);
    assert_eq!((params.num_buckets, params.window_s, params.proof_len), (64, 10, 564));
    let w = current_window();
    let commit = commit_in_bucket(5, 0);
    let entries = subscriber.subscribe(sub(1), vec![entry(5, w - 10, w + 60, &[commit])]);
    assert_eq!(entries, 1);

    let (mut publisher, _) = Client::hello(&relay);
    let p = proof(&commit, w, 0xA1);
    let seq = publisher.publish(std::slice::from_ref(&p));
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
    let got = subscriber.recv_proofs(sub(1), 1);
    assert_eq!(&got[0][..], &p.as_bytes()[..], "the delivered proof is byte-for-byte the published one");
    assert_eq!(relay.wait_metric("tessera_deliveries_written_total", "", 1), 1);
    assert_eq!(relay.metric("tessera_proofs_accepted_client_total", ""), 1);
}

#[test]
fn proofs_for_another_shards_buckets_are_delivered() {
    // The subscriber's connection lives on one shard; buckets 3 and 60 belong to shards 0 and 1, so at least
    // one delivery (and one publish part) crosses shards whichever shard accepted each connection.
    let relay = Relay::start(&["--danger-exact-metrics", "--shards", "2"]);
    let w = current_window();
    let (c0, c1) = (commit_in_bucket(3, 0), commit_in_bucket(60, 0));
    let (mut subscriber, _) = Client::hello(&relay);
    subscriber.subscribe(sub(2), vec![entry(3, w - 10, w + 60, &[c0]), entry(60, w - 10, w + 60, &[c1])]);
    let (mut publisher, _) = Client::hello(&relay);
    let seq = publisher.publish(&[proof(&c0, w, 1), proof(&c1, w, 2)]);
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
    let mut got = subscriber.recv_proofs(sub(2), 2);
    got.sort_by_key(|p| p[2..4].to_vec());
    assert_eq!((got[0][3], got[1][3]), (3, 60), "both buckets delivered");
    assert!(relay.metric("tessera_cross_shard_requests_total", "") >= 1, "one publish part crossed shards");
}

#[test]
fn malformed_messages_get_error_and_others_keep_being_served() {
    let relay = Relay::start(&["--shards", "2"]);
    let w = current_window();
    let commit = commit_in_bucket(7, 0);
    let (mut subscriber, _) = Client::hello(&relay);
    subscriber.subscribe(sub(3), vec![entry(7, w - 10, w + 60, &[commit])]);
    let (mut attacker, _) = Client::hello(&relay);
    let (mut publisher, _) = Client::hello(&relay);

    // Garbage: an unknown frame type, then a truncated header.
    attacker.send_raw(vec![0x55, 0, 0, 0, 0]);
    match attacker.recv_one() {
        Frame::Error(ErrorFrame { code, detail, .. }) => assert_eq!((code, detail), (ErrorCode::MALFORMED, 7)),
        other => panic!("expected ERROR, got {other:?}"),
    }
    attacker.send_raw(vec![0x10, 0, 0]);
    match attacker.recv_one() {
        Frame::Error(ErrorFrame { code, detail, .. }) => assert_eq!((code, detail), (ErrorCode::MALFORMED, 4)),
        other => panic!("expected ERROR, got {other:?}"),
    }
    // The attacker's connection still works, and so does everyone else's.
    let seq = attacker.publish(&[proof(&commit_in_bucket(8, 0), w, 0)]);
    assert_eq!(attacker.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
    let p = proof(&commit, w, 9);
    publisher.publish(std::slice::from_ref(&p));
    assert_eq!(&subscriber.recv_proofs(sub(3), 1)[0][..], &p.as_bytes()[..]);
    assert_eq!(relay.metric("tessera_frames_malformed_total", ""), 2);
}

#[test]
fn refused_sequence_numbers_are_not_protocol_errors() {
    // docs/PROTOCOL.md §5.4 and §5.7: ERROR(SEQUENCE) refuses the PUBLISH whole but spends no protocol-error
    // budget, so a client that repeats a sequence number more often than the budget stays connected.
    let relay = Relay::start(&["--shards", "1"]);
    let (mut client, _) = Client::hello(&relay);
    let w = current_window();
    let batch = |salt| ProofBatch::from_proofs([proof(&commit_in_bucket(4, salt), w, 1)].iter().map(|p| p.view()));
    client.send(&[Frame::Publish(Publish { seq: 5, proofs: batch(0) })]);
    assert_eq!(client.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq: 5 });
    for n in 0..2 * PROTOCOL_ERRORS_MAX {
        client.send(&[Frame::Publish(Publish { seq: 5 - u64::from(n % 2), proofs: batch(1) })]);
        match client.recv_until(|f| matches!(f, Frame::Error(_) | Frame::Ack { .. })) {
            Frame::Error(e) => assert_eq!((e.code, e.ref_seq), (ErrorCode::SEQUENCE, 5 - u64::from(n % 2))),
            other => panic!("expected ERROR(SEQUENCE), got {other:?}"),
        }
    }
    client.send(&[Frame::Publish(Publish { seq: 6, proofs: batch(2) })]);
    assert_eq!(client.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq: 6 });
    assert_eq!(relay.metric("tessera_protocol_errors_total", ""), 0);
}

#[test]
fn frames_before_hello_and_too_many_errors_close_with_1008() {
    let relay = Relay::start(&["--shards", "1"]);
    let mut client = Client::connect(&relay);
    client.send(&[Frame::Ack { seq: 1 }]);
    match client.recv_one() {
        Frame::Error(e) => assert_eq!(e.code, ErrorCode::HELLO_REQUIRED),
        other => panic!("expected ERROR, got {other:?}"),
    }
    for _ in 1..8 {
        client.send_raw(vec![0xFF]);
    }
    assert_eq!(client.recv_close(), Some(1008));
    assert_eq!(relay.wait_metric("tessera_limit_protocol_errors_total", "", 1), 1);
}

#[test]
fn invalid_proofs_are_rejected_with_typed_errors_and_the_batch_is_acked() {
    let relay = Relay::start(&["--danger-exact-metrics", "--shards", "2"]);
    let (mut publisher, _) = Client::hello(&relay);
    let w = current_window();
    let good = proof(&commit_in_bucket(1, 0), w, 0);
    let mut wrong_bucket = *proof(&commit_in_bucket(2, 0), w, 0).as_bytes();
    wrong_bucket[3] = 9; // bucket 2 → 9: not the one its commit derives
    let mut wrong_fp = *proof(&commit_in_bucket(3, 0), w, 0).as_bytes();
    wrong_fp[44] ^= 1;
    let stale = proof(&commit_in_bucket(4, 0), w - 10 * WINDOW_SECONDS, 0);
    let batch: Vec<_> = [*good.as_bytes(), wrong_bucket, wrong_fp, *stale.as_bytes()]
        .iter()
        .map(|b| tessera::proto::Proof::from_slice(b).unwrap())
        .collect();
    let seq = publisher.publish(&batch);
    let mut errors = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut acked = false;
    while !(acked && errors.len() == 3) && Instant::now() < deadline {
        for frame in publisher.recv() {
            match frame {
                Frame::Error(e) => errors.push((e.code, e.ref_seq, e.detail)),
                Frame::Ack { seq: s } => acked = s == seq,
                _ => {}
            }
        }
    }
    errors.sort_by_key(|e| e.2);
    assert!(acked);
    assert_eq!(
        errors,
        vec![
            (ErrorCode::PROOF_BAD_BUCKET, seq, 1),
            (ErrorCode::PROOF_BAD_FINGERPRINT, seq, 2),
            (ErrorCode::PROOF_WINDOW_STALE, seq, 3)
        ]
    );
    assert_eq!(relay.metric("tessera_proofs_rejected_total", "reason=\"bad_bucket\""), 1);
    assert_eq!(relay.metric("tessera_proofs_rejected_total", "reason=\"bad_fingerprint\""), 1);
    assert_eq!(relay.metric("tessera_proofs_rejected_total", "reason=\"window_stale\""), 1);
    assert_eq!(relay.metric("tessera_proofs_accepted_client_total", ""), 1);
}

#[test]
fn a_subscriber_that_stops_reading_does_not_stall_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "slow_consumer_grace_ms = 1000\n[limits]\nsend_queue_proofs_max = 256\n").unwrap();
    let relay = Relay::start(&["--danger-exact-metrics", "--shards", "2", "--config", config.to_str().unwrap()]);
    let w = current_window();
    let noise: Vec<[u8; 32]> = (0..40 * 500u32)
        .map(|i| tessera::proto::derive::fingerprint(&[9; 32], i.into()).repeat(4).try_into().unwrap())
        .collect();
    let batches: Vec<Vec<Proof>> =
        noise.chunks(500).map(|chunk| chunk.iter().map(|c| proof(c, w, 7)).collect()).collect();
    // The slow subscriber's (legitimate) filters match every noise proof, in every bucket (so deliveries to it
    // come from both shards), and it never reads; its small receive buffer (no auto-tuning) makes the relay's
    // writes to it block quickly.
    let (mut slow, _) = Client::hello_on(Client::connect_small_buffer(&relay, 16 * 1024));
    for (i, entries) in entries_matching(&batches.concat(), w - 10, w + 60).into_iter().enumerate() {
        slow.subscribe(sub(40 + i as u8), entries);
    }
    let watched = commits_in_bucket(9, 1, 20);
    let (mut fast, _) = Client::hello(&relay);
    fast.subscribe(sub(5), vec![entry(9, w - 10, w + 60, &watched)]);

    let (mut publisher, _) = Client::hello(&relay);
    let started = Instant::now();
    let mut last_seq = 0;
    for (batch, mut proofs) in batches.into_iter().enumerate() {
        if let Some(c) = watched.get(batch) {
            proofs.push(proof(c, w, 8));
        }
        last_seq = publisher.publish(&proofs);
    }
    // The publisher is acknowledged and the fast subscriber gets all its proofs while the slow one is stuck.
    assert_eq!(
        publisher.recv_until(|f| matches!(f, Frame::Ack { seq } if *seq == last_seq)),
        Frame::Ack { seq: last_seq }
    );
    let got = fast.recv_proofs(sub(5), watched.len());
    assert!(got.len() >= watched.len());
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(relay.wait_metric("tessera_deliveries_diverted_total", "", 1) >= 1, "slow subscriber's overflow counted");
    assert_eq!(relay.wait_metric("tessera_slow_consumer_closes_total", "", 1), 1, "closed after the grace period");
    drop(slow);
}

#[test]
fn subscription_limits_are_enforced_and_named() {
    let relay = Relay::start(&["--shards", "2"]);
    let (mut client, params) = Client::hello(&relay);
    let w = current_window();
    let too_many: Vec<_> =
        (0..=params.limits.filters_per_bucket_max).map(|_| entry(4, w, w + 10, &[commit_in_bucket(4, 0)])).collect();
    client.claim(sub(6));
    client.send(&[Frame::Subscribe(tessera::proto::frame::Subscribe { subscriber: sub(6), entries: too_many })]);
    assert!(matches!(client.recv_one(), Frame::Error(e) if e.code == ErrorCode::TOO_MANY_FILTERS));
    let far = entry(4, w, w + 10 * 10_000, &[]);
    client.send(&[Frame::Subscribe(tessera::proto::frame::Subscribe { subscriber: sub(6), entries: vec![far] })]);
    assert!(matches!(client.recv_one(), Frame::Error(e) if e.code == ErrorCode::SUBSCRIPTION_RANGE));
    let out_of_range = entry(64, w, w + 10, &[]);
    client.send(&[Frame::Subscribe(tessera::proto::frame::Subscribe {
        subscriber: sub(6),
        entries: vec![out_of_range],
    })]);
    assert!(matches!(client.recv_one(), Frame::Error(e) if e.code == ErrorCode::BUCKET_OUT_OF_RANGE));
    assert_eq!(relay.metric("tessera_subscribe_rejected_total", ""), 3);
    assert_eq!(relay.metric("tessera_limit_subscriptions_total", ""), 1);
}

#[test]
fn connection_limit_and_oversized_messages() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "[limits]\nconnections_max = 2\nmessage_bytes_max = 65536\nproofs_per_batch_max = 64\n")
        .unwrap();
    let relay = Relay::start(&["--shards", "1", "--config", config.to_str().unwrap()]);
    let (mut a, params) = Client::hello(&relay);
    assert_eq!(params.limits.connections_max, 2);
    let (_b, _) = Client::hello(&relay);
    let mut c = Client::connect(&relay);
    assert!(matches!(c.recv_one(), Frame::Error(e) if e.code == ErrorCode::TOO_MANY_CONNECTIONS));
    assert_eq!(relay.metric("tessera_connections_refused_total", ""), 1);
    // A message over message_bytes_max is refused from its header and the connection closed (1009).
    a.send_raw(vec![0u8; 70_000]);
    assert_eq!(a.recv_close(), Some(1009));
    assert_eq!(relay.wait_metric("tessera_limit_message_size_total", "", 1), 1);
}

#[test]
fn metrics_and_health_are_served_on_their_own_loopback_listener_only() {
    let relay = Relay::start(&["--shards", "2"]);
    assert!(relay.metrics_addr.starts_with("127.0.0.1:") && relay.metrics_addr != relay.addr, "{}", relay.start_line);
    let health = relay.http_get("/healthz");
    assert!(health.starts_with("HTTP/1.1 200 OK") && health.ends_with("ok\n"), "{health}");
    let metrics = relay.http_get("/metrics");
    assert!(metrics.contains("# TYPE tessera_proofs_accepted_total counter"));
    assert!(metrics.contains("tessera_publish_deliver_latency_last_hour_seconds_bucket{shard=\"1\",le=\"+Inf\"}"));
    assert!(relay.http_get("/nope").starts_with("HTTP/1.1 404"));
    // The client port never answers /metrics or /healthz: one line, no figures.
    for path in ["/metrics", "/healthz"] {
        let answer = relay.client_http_get(path);
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(body.lines().count(), 1, "{body}");
        assert!(!body.contains("tessera_") && body.contains("--metrics-addr"), "{body}");
    }
}

#[test]
fn sigterm_closes_connections_with_1001_and_exits_zero() {
    let mut relay = Relay::start(&["--shards", "2"]);
    let (mut client, _) = Client::hello(&relay);
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(relay.pid(), libc::SIGTERM) };
    assert_eq!(client.recv_close(), Some(1001), "close frame: going away");
    let status = relay.wait_exit();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn bad_flags_and_config_values_exit_2_with_one_line() {
    let bin = env!("CARGO_BIN_EXE_tessera");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    let out = run(&["relay", "--cover-traffic-delta", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cover-traffic-delta") && stderr.contains('2'), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "shards = \"many\"\n").unwrap();
    let out = run(&["relay", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    let out = run(&["relay", "--port", "70000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("70000"));
}
