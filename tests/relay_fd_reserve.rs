//! Running out of file descriptors against the real binary (issue 13, item 2): under a small RLIMIT_NOFILE,
//! clients open connections until the relay refuses them; the log must still roll its segments (each roll
//! opens two files) and every PUBLISH must still be acknowledged. Before the reserve, sockets took the last
//! descriptors, the roll failed with EMFILE and the relay exited.
//!
//! ```text
//! relay (RLIMIT_NOFILE 64, 1 shard, retention 20 s: a segment rolls every 2.5 s)
//!   clients connect until refused (closed at accept: tessera_fd_reserve_refused_total)
//!   one of them publishes for ~6 s ─▶ every PUBLISH ACKed, ≥ 2 new segments, the relay still runs
//! ```

mod relay_support;

use std::time::{Duration, Instant};

use relay_support::*;
use tessera::proto::Frame;

/// Segment files (`*.log`) under the relay's storage.
fn segment_files(relay: &Relay) -> usize {
    let mut count = 0;
    let mut dirs = vec![relay.dir.path().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).expect("storage dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "log") {
                count += 1;
            }
        }
    }
    count
}

#[test]
fn sockets_are_refused_before_the_log_runs_out_of_descriptors() {
    let relay = Relay::start_with_nofile(&["--shards", "1", "--retention", "20s"], 64);
    let mut clients = Vec::new();
    while clients.len() < 100 {
        match Client::try_hello(&relay, Duration::from_secs(2)) {
            Some(client) => clients.push(client),
            None => break,
        }
    }
    assert!(clients.len() >= 4, "only {} connections fit under RLIMIT_NOFILE 64", clients.len());
    assert!(clients.len() < 100, "nothing was refused under RLIMIT_NOFILE 64");
    println!("{} connections open under RLIMIT_NOFILE 64, then refused", clients.len());
    let segments_before = segment_files(&relay);
    let publisher = &mut clients[0];
    let started = Instant::now();
    let mut salt = 0;
    while started.elapsed() < Duration::from_secs(6) {
        salt += 1;
        let seq = publisher.publish(&[proof(&commit_in_bucket(4, salt), current_window(), 1)]);
        match publisher.try_recv_frames() {
            Some(frames) => assert!(frames.contains(&Frame::Ack { seq }), "PUBLISH {seq} answered {frames:?}"),
            None => panic!("the relay closed the connection or exited after {:?}", started.elapsed()),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut relay = relay;
    assert!(relay.is_running(), "the relay exited");
    let rolled = segment_files(&relay) - segments_before;
    assert!(rolled >= 2, "only {rolled} segments were created while publishing");
    // Places come back: half the clients leave (the log's new files took some of theirs), the metrics can be
    // read and a newcomer is served.
    clients.truncate(clients.len() / 2);
    std::thread::sleep(Duration::from_millis(300));
    assert!(relay.wait_metric("tessera_fd_reserve_refused_total", "", 1) >= 1);
    let (mut newcomer, _) = Client::hello(&relay);
    let seq = newcomer.publish(&[proof(&commit_in_bucket(4, 99_999), current_window(), 1)]);
    assert_eq!(newcomer.recv_until(|f| matches!(f, Frame::Ack { .. } | Frame::Error(_))), Frame::Ack { seq });
}
