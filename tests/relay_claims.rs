//! Capability subscriber ids against the real relay binary (issue 14 item 3; docs/PROTOCOL.md §4.12):
//!
//! - a connection that knows only an observed subscriber id cannot FETCH, UNSUBSCRIBE or re-SUBSCRIBE it: each
//!   is refused with `ERROR(NOT_CLAIMED)`, and the owner keeps its live DELIVERs and its FETCH;
//! - a CLAIM observed on one connection and replayed on another does not verify there (another nonce):
//!   `ERROR(BAD_CLAIM)`, and the id stays unusable;
//! - a CLAIM with a bad signature is refused and counted as a protocol error (the budget closes with 1008).
//!
//! Each test reads what the relay answers; a relay that got it wrong fails an assertion or times out (`WAIT`).

mod relay_support;

use relay_support::*;
use tessera::proto::frame::Subscribe;
use tessera::proto::{ErrorCode, Frame, SubscriberId};

/// The next ERROR on `client`, as (code, detail).
fn next_error(client: &mut Client) -> (ErrorCode, u32) {
    match client.recv_until(|f| matches!(f, Frame::Error(_))) {
        Frame::Error(e) => (e.code, e.detail),
        _ => unreachable!("recv_until returned the ERROR"),
    }
}

#[test]
fn an_observed_id_is_useless_to_another_connection() {
    let relay = Relay::start(&["--shards", "2"]);
    let w = current_window();
    let commit = commit_in_bucket(11, 0);
    let id = subscriber(0x71);
    let (mut owner, _) = Client::hello(&relay);
    assert_eq!(owner.subscribe(id, vec![entry(11, w - 10, w + 60, &[commit])]), 1);

    // The thief saw the id on the wire (SUBSCRIBE, DELIVER, FETCH all carry it) and nothing else.
    let (mut thief, _) = Client::hello(&relay);
    thief.send(&[Frame::Fetch { subscriber: id, cursor: 0, proofs_max: 16 }]);
    assert_eq!(next_error(&mut thief), (ErrorCode::NOT_CLAIMED, 0x31));
    thief.send(&[Frame::Unsubscribe { subscriber: id }]);
    assert_eq!(next_error(&mut thief), (ErrorCode::NOT_CLAIMED, 0x22));
    // Re-SUBSCRIBE with an empty filter set (would have taken over live delivery and dropped the owner's entries).
    thief.send(&[Frame::Subscribe(Subscribe { subscriber: id, entries: vec![entry(11, w - 10, w + 60, &[])] })]);
    assert_eq!(next_error(&mut thief), (ErrorCode::NOT_CLAIMED, 0x20));
    assert_eq!(relay.wait_metric("tessera_protocol_errors_total", "", 3), 3, "each is a protocol error");

    // The owner still gets its live DELIVER, and FETCH works for it.
    let (mut publisher, _) = Client::hello(&relay);
    let p = proof(&commit, w, 0x42);
    let seq = publisher.publish(std::slice::from_ref(&p));
    assert_eq!(publisher.recv_until(|f| matches!(f, Frame::Ack { .. })), Frame::Ack { seq });
    assert_eq!(&owner.recv_proofs(id, 1)[0][..], &p.as_bytes()[..]);
    let (fetched, cursor) = owner.fetch_all(id, 0, 16);
    assert_eq!(commits(&fetched), [commit].into(), "the owner fetches its match");
    assert_ne!(cursor, 0);
    // The thief never received anything for it.
    while let Some(frames) = thief.recv_within(std::time::Duration::from_millis(300)) {
        assert!(
            frames.iter().all(|f| !matches!(f, Frame::Deliver { .. } | Frame::FetchReply { .. })),
            "the thief received {frames:?}"
        );
    }
}

#[test]
fn a_replayed_claim_fails_on_another_connection() {
    let relay = Relay::start(&["--shards", "1"]);
    let id = subscriber(0x72);
    let (mut owner, _) = Client::hello(&relay);
    // The owner's CLAIM, as an observer of its connection saw it.
    let observed = owner.claim_frame(id);
    owner.send(&[Frame::Claim(observed), Frame::Fetch { subscriber: id, cursor: 0, proofs_max: 4 }]);
    assert!(matches!(
        owner.recv_until(|f| matches!(f, Frame::FetchReply { .. } | Frame::Error(_))),
        Frame::FetchReply { .. }
    ));

    let (mut replayer, params) = Client::hello(&relay);
    assert_ne!(params.auth_nonce, [0; 16]);
    replayer.send(&[Frame::Claim(observed)]);
    assert_eq!(next_error(&mut replayer), (ErrorCode::BAD_CLAIM, 3), "signed for the owner's nonce");
    replayer.send(&[Frame::Fetch { subscriber: id, cursor: 0, proofs_max: 4 }]);
    assert_eq!(next_error(&mut replayer), (ErrorCode::NOT_CLAIMED, 0x31), "nothing was claimed");
}

#[test]
fn a_bad_claim_is_refused_and_spends_the_protocol_error_budget() {
    let relay = Relay::start(&["--shards", "1"]);
    let (mut client, params) = Client::hello(&relay);
    let mut claim = client.claim_frame(subscriber(0x73));
    claim.signature[5] ^= 0x10;
    client.send(&[Frame::Claim(claim)]);
    assert_eq!(next_error(&mut client), (ErrorCode::BAD_CLAIM, 3));
    assert_eq!(relay.wait_metric("tessera_protocol_errors_total", "", 1), 1);
    // A key that is no Ristretto255 point, and a non-canonical response: detail 1 and 2.
    let mut not_a_point = client.claim_frame(subscriber(0x74));
    not_a_point.key = [0xFF; 32];
    let mut malleated = client.claim_frame(subscriber(0x75));
    malleated.signature[63] |= 0xF0;
    client.send(&[Frame::Claim(not_a_point), Frame::Claim(malleated)]);
    let mut errors = Vec::new();
    while errors.len() < 2 {
        // Both ERRORs may come in one message.
        errors.extend(client.recv().into_iter().filter_map(|f| match f {
            Frame::Error(e) => Some((e.code, e.detail)),
            _ => None,
        }));
    }
    assert_eq!(errors, vec![(ErrorCode::BAD_CLAIM, 1), (ErrorCode::BAD_CLAIM, 2)]);
    // The rest of the budget: the connection is closed with 1008.
    let budget = params.policy.protocol_errors_max as usize;
    let bad: Vec<Frame> = (3..budget).map(|_| Frame::Claim(claim)).collect();
    client.send(&bad);
    assert_eq!(client.recv_close(), Some(1008));
    assert_eq!(relay.wait_metric("tessera_limit_protocol_errors_total", "", 1), 1);
}

#[test]
fn claim_is_client_only() {
    // Peers (role 2) do not subscribe: a CLAIM from one is UNEXPECTED_FRAME.
    let relay = Relay::start(&["--shards", "1"]);
    let mut peer = Client::connect(&relay);
    peer.send(&[Frame::Hello(tessera::proto::Hello {
        version: tessera::proto::PROTOCOL_VERSION,
        role: tessera::proto::Role::Peer,
        node_id: [9; 16],
    })]);
    let params = match peer.recv_one() {
        Frame::HelloReply(params) => params,
        other => panic!("expected HELLO_REPLY, got {other:?}"),
    };
    let pair = tessera::proto::SubscriberKeyPair::from_secret(&[0x76; 32]);
    let claim = pair.claim(&params.node_id, &params.auth_nonce, &[0; 32]);
    peer.send(&[Frame::Claim(claim)]);
    assert_eq!(next_error(&mut peer), (ErrorCode::UNEXPECTED_FRAME, 0x23));
    let _: SubscriberId = pair.id();
}
