//! Late matching with the real relay binary (issue 12): a proof published before anyone subscribed to it is
//! delivered to a subscriber that arrives later — by FETCH after SUBSCRIBED, and by DELIVER while it is
//! connected — including after a restart (the late-match index is rebuilt from the log). A renewal over the same
//! windows records nothing twice.

mod relay_support;

use relay_support::*;
use tessera::proto::Frame;

#[test]
fn a_proof_published_before_the_subscribe_is_fetched_and_delivered() {
    let relay = Relay::start(&["--danger-exact-metrics", "--shards", "2"]);
    let w = current_window();
    let watched = commits_in_bucket(21, 3, 4);
    let (mut publisher, _) = Client::hello(&relay);
    let proofs: Vec<_> = watched.iter().map(|c| proof(c, w, 5)).collect();
    let seq = publisher.publish(&proofs);
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });

    // Nobody had subscribed. Now a subscriber arrives with a range reaching back before it.
    let (mut late, _) = Client::hello(&relay);
    let id = relay_support::subscriber(0x4c);
    late.claim(id);
    late.send(&[Frame::Subscribe(tessera::proto::frame::Subscribe {
        subscriber: id,
        entries: vec![entry(21, w - 60, w + 600, &watched)],
    })]);
    let mut delivered = Vec::new();
    loop {
        match late.recv_one() {
            Frame::Subscribed { subscriber, .. } if subscriber == id => break,
            Frame::Deliver { subscriber, proofs, .. } if subscriber == id => {
                delivered.extend(proofs.iter().map(|p| bytes::Bytes::copy_from_slice(p.as_bytes())))
            }
            Frame::Error(e) => panic!("SUBSCRIBE refused: {e:?}"),
            _ => {}
        }
    }
    let (fetched, cursor) = late.fetch_all(id, 0, 100);
    let got = commits(&fetched);
    assert!(watched.iter().all(|c| got.contains(c)), "every proof published before the SUBSCRIBE is FETCHable");
    assert!(watched.iter().all(|c| commits(&delivered).contains(c)), "and was DELIVERed to the connected subscriber");
    assert!(relay.metric("tessera_late_matches_total", "") >= watched.len() as u64);

    // Renewing the same entry scans nothing new and records nothing twice.
    let matches_before = relay.metric("tessera_log_matches_recorded_total", "");
    late.subscribe(id, vec![entry(21, w - 60, w + 600, &watched)]);
    let (again, _, _) = late.fetch(id, cursor, 100);
    assert!(commits(&again).is_disjoint(&got), "a renewal does not make old matches new again");
    let matches_after = relay.metric("tessera_log_matches_recorded_total", "");
    assert!(matches_after - matches_before < watched.len() as u64, "no duplicate match records for the renewal");
}

#[test]
fn late_matching_survives_a_restart() {
    let mut relay = Relay::start(&["--shards", "2"]);
    let w = current_window();
    let watched = commits_in_bucket(33, 7, 3);
    let (mut publisher, _) = Client::hello(&relay);
    let seq = publisher.publish(&watched.iter().map(|c| proof(c, w, 9)).collect::<Vec<_>>());
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
    publisher.close();
    relay.kill(); // SIGKILL: the proofs are durable (ACKed), the index lives only in memory
    let relay = Relay::start_in(relay.into_dir(), &["--shards", "2"]);

    let (mut late, _) = Client::hello(&relay);
    let id = relay_support::subscriber(0x5d);
    late.subscribe(id, vec![entry(33, w - 60, w + 600, &watched)]);
    let (fetched, _) = late.fetch_all(id, 0, 100);
    let got = commits(&fetched);
    assert!(watched.iter().all(|c| got.contains(c)), "the late-match index is rebuilt from the log at start");
}
