//! Protocol state of one connection: handshake, error budget, PUBLISH sequencing and cumulative ACKs,
//! the SUBSCRIBEs and FETCHes waiting for every shard's answer, and the subscribers it carries.
//!
//! A subscriber id may be used only once claimed on the connection (a CLAIM verified against this connection's
//! `auth_nonce`, docs/PROTOCOL.md §4.12); the claims live here and die with the connection.
//!
//! A subscriber is known on the wire by its id and everywhere else (engine, directory, disk) by its
//! key `SubscriberKey::of(id)`, so a copy of the disk cannot be used to FETCH. The connection keeps both.
//!
//! A PUBLISH is split by owner shard into `parts`; each part completes when its shard has logged its proofs
//! (and, with the durable log, made them durable). ACK(seq) is sent when every PUBLISH up to `seq` is complete,
//! so a cumulative ACK never covers a proof that could still be lost.

use std::collections::VecDeque;

use crate::log::mailbox::SubscriberKey;
use crate::proto::{AuthNonce, ErrorCode, Role, SubscriberId};

/// Protocol errors tolerated on one connection before it is closed with WebSocket code 1008.
pub const PROTOCOL_ERRORS_MAX: u32 = 8;

/// A PUBLISH waiting for its parts.
#[derive(Debug)]
struct PendingPublish {
    seq: u64,
    parts_remaining: u16,
    received_us: u64,
}

/// A SUBSCRIBE waiting for every shard's answer. It carries the wire id itself: an UNSUBSCRIBE may detach
/// the subscriber before the answers arrive, and the SUBSCRIBE is answered all the same.
#[derive(Debug)]
struct PendingSubscribe {
    /// The subscriber's wire id (for SUBSCRIBED).
    wire: SubscriberId,
    /// The subscriber's key (the shards answer with it).
    subscriber: SubscriberKey,
    shards_remaining: u16,
    entries: u16,
    error: Option<ErrorCode>,
}

/// A FETCH waiting for every shard's page.
#[derive(Debug)]
struct PendingFetch {
    /// The token the shards answer with; identifies this FETCH.
    token: u64,
    /// The subscriber's wire id (for FETCH_REPLY).
    wire: SubscriberId,
    /// The cursor the client sent (answered again if no shard had anything).
    cursor: u64,
    shards_remaining: u16,
    proofs: Vec<bytes::Bytes>,
    more: bool,
}

/// A completed FETCH, ready to answer.
#[derive(Debug, PartialEq, Eq)]
pub struct FetchDone {
    /// The subscriber's wire id.
    pub subscriber: SubscriberId,
    /// Cursor for the next FETCH.
    pub next_cursor: u64,
    /// Whether more proofs wait.
    pub more: bool,
    /// The proofs, shard by shard, each shard's oldest first.
    pub proofs: Vec<bytes::Bytes>,
}

/// Why a PUBLISH was refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceError {
    /// `seq` did not increase.
    NotIncreasing {
        /// The highest sequence seen.
        last: u64,
    },
}

/// State of one connection.
#[derive(Debug, Default)]
pub struct ConnState {
    /// Set by HELLO; `None` until then.
    pub role: Option<Role>,
    protocol_errors: u32,
    last_seq: Option<u64>,
    pending: VecDeque<PendingPublish>,
    subscribes: Vec<PendingSubscribe>,
    fetches: Vec<PendingFetch>,
    /// Subscribers registered from this connection as (wire id, internal id), bounded by
    /// `subscribers_per_connection_max`.
    subscribers: Vec<(SubscriberId, SubscriberKey)>,
    /// The nonce announced in this connection's HELLO_REPLY (drawn by the driver, fresh per connection).
    pub auth_nonce: AuthNonce,
    /// Ids claimed on this connection, bounded by `subscribers_per_connection_max`; never released before the
    /// connection ends (an UNSUBSCRIBE keeps the claim).
    claimed: Vec<SubscriberId>,
}

impl ConnState {
    /// Counts a protocol error; returns `true` when the budget is spent and the connection must close.
    pub fn protocol_error(&mut self) -> bool {
        self.protocol_errors += 1;
        self.protocol_errors >= PROTOCOL_ERRORS_MAX
    }

    /// A connection whose HELLO_REPLY will announce `auth_nonce`.
    pub fn with_auth_nonce(auth_nonce: AuthNonce) -> Self {
        Self { auth_nonce, ..Self::default() }
    }

    /// Records a verified claim of `id`; `false` (nothing recorded) when `claims_max` other ids are claimed
    /// already. Claiming an id again is a no-op.
    pub fn claim(&mut self, id: SubscriberId, claims_max: usize) -> bool {
        if self.claimed.contains(&id) {
            return true;
        }
        if self.claimed.len() >= claims_max {
            return false;
        }
        self.claimed.push(id);
        true
    }

    /// Whether `id` was claimed on this connection.
    pub fn is_claimed(&self, id: &SubscriberId) -> bool {
        self.claimed.contains(id)
    }

    /// Registers PUBLISH `seq` split into `parts` (≥ 1) shard parts.
    pub fn begin_publish(&mut self, seq: u64, parts: u16, received_us: u64) -> Result<(), SequenceError> {
        if let Some(last) = self.last_seq {
            if seq <= last {
                return Err(SequenceError::NotIncreasing { last });
            }
        }
        debug_assert!(parts > 0);
        self.last_seq = Some(seq);
        self.pending.push_back(PendingPublish { seq, parts_remaining: parts, received_us });
        Ok(())
    }

    /// One part of PUBLISH `seq` completed. Returns `(ack_seq, received_us)` when the completed prefix advanced:
    /// every PUBLISH up to `ack_seq` is done, and `received_us` is when the newest of them arrived.
    pub fn complete_part(&mut self, seq: u64) -> Option<(u64, u64)> {
        let pending = self.pending.iter_mut().find(|p| p.seq == seq)?;
        pending.parts_remaining = pending.parts_remaining.saturating_sub(1);
        let mut acked = None;
        while self.pending.front().is_some_and(|p| p.parts_remaining == 0) {
            let done = self.pending.pop_front().expect("front checked just above");
            acked = Some((done.seq, done.received_us));
        }
        acked
    }

    /// PUBLISH batches not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.pending.len()
    }

    /// Keys of the subscribers registered from this connection.
    pub fn subscribers(&self) -> impl Iterator<Item = SubscriberKey> + '_ {
        self.subscribers.iter().map(|(_, internal)| *internal)
    }

    /// The wire id of the subscriber with key `key`, if this connection carries it.
    pub fn wire_id(&self, key: &SubscriberKey) -> Option<SubscriberId> {
        self.subscribers.iter().find(|(_, k)| k == key).map(|(wire, _)| *wire)
    }

    /// Starts a SUBSCRIBE that every one of `shards` shards must answer. Refused (returns `false`) when it
    /// would exceed `subscribers_max` distinct subscribers on this connection.
    pub fn begin_subscribe(
        &mut self,
        wire: SubscriberId,
        key: SubscriberKey,
        shards: u16,
        subscribers_max: usize,
    ) -> bool {
        if !self.subscribers.iter().any(|(w, _)| *w == wire) {
            if self.subscribers.len() >= subscribers_max {
                return false;
            }
            self.subscribers.push((wire, key));
        }
        self.subscribes.push(PendingSubscribe {
            wire,
            subscriber: key,
            shards_remaining: shards,
            entries: 0,
            error: None,
        });
        true
    }

    /// Starts a FETCH answered by `shards` shards with `token`.
    pub fn begin_fetch(&mut self, wire: SubscriberId, cursor: u64, token: u64, shards: u16) {
        self.fetches.push(PendingFetch {
            token,
            wire,
            cursor,
            shards_remaining: shards,
            proofs: Vec::new(),
            more: false,
        });
    }

    /// One shard's page of the FETCH `token`. When every shard answered, returns the reply: the cursor is the
    /// token if any shard returned proofs (each shard then continues after its page), else the old cursor.
    pub fn complete_fetch(&mut self, token: u64, proofs: Vec<bytes::Bytes>, more: bool) -> Option<FetchDone> {
        let i = self.fetches.iter().position(|f| f.token == token)?;
        let pending = &mut self.fetches[i];
        pending.proofs.extend(proofs);
        pending.more |= more;
        pending.shards_remaining -= 1;
        if pending.shards_remaining > 0 {
            return None;
        }
        let done = self.fetches.remove(i);
        let next_cursor = if done.proofs.is_empty() { done.cursor } else { done.token };
        Some(FetchDone { subscriber: done.wire, next_cursor, more: done.more, proofs: done.proofs })
    }

    /// One shard answered a SUBSCRIBE. When all have, returns the subscriber's wire id and the total entries
    /// or the first error — whether or not the subscriber is still attached.
    pub fn complete_subscribe(
        &mut self,
        subscriber: SubscriberKey,
        result: Result<u16, ErrorCode>,
    ) -> Option<(SubscriberId, Result<u16, ErrorCode>)> {
        let i = self.subscribes.iter().position(|p| p.subscriber == subscriber)?;
        let pending = &mut self.subscribes[i];
        match result {
            Ok(n) => pending.entries += n,
            Err(code) => {
                pending.error.get_or_insert(code);
            }
        }
        pending.shards_remaining -= 1;
        if pending.shards_remaining > 0 {
            return None;
        }
        let done = self.subscribes.remove(i);
        Some((
            done.wire,
            match done.error {
                Some(code) => Err(code),
                None => Ok(done.entries),
            },
        ))
    }

    /// Detaches a subscriber by wire id (UNSUBSCRIBE); returns its key, or `None` when it is not attached to
    /// this connection (docs/PROTOCOL.md §4.7: such an UNSUBSCRIBE is ignored). SUBSCRIBEs of it still waiting
    /// for the shards stay pending and are answered.
    pub fn detach_subscriber(&mut self, wire: &SubscriberId) -> Option<SubscriberKey> {
        let i = self.subscribers.iter().position(|(w, _)| w == wire)?;
        Some(self.subscribers.swap_remove(i).1)
    }

    /// SUBSCRIBEs still waiting for a shard's answer.
    pub fn subscribes_pending(&self) -> usize {
        self.subscribes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_is_cumulative_over_completed_prefix() {
        let mut c = ConnState::default();
        c.begin_publish(1, 2, 10).unwrap();
        c.begin_publish(2, 1, 20).unwrap();
        c.begin_publish(5, 1, 30).unwrap();
        assert_eq!(c.begin_publish(5, 1, 40), Err(SequenceError::NotIncreasing { last: 5 }));
        assert_eq!(c.complete_part(2), None, "seq 1 still pending");
        assert_eq!(c.complete_part(1), None, "one part of seq 1 left");
        assert_eq!(c.complete_part(1), Some((2, 20)), "1 and 2 complete");
        assert_eq!(c.complete_part(5), Some((5, 30)));
        assert_eq!(c.unacked(), 0);
        assert_eq!(c.complete_part(99), None);
    }

    #[test]
    fn subscribe_waits_for_every_shard_and_reports_first_error() {
        let (a, b) = (SubscriberId([1; 16]), SubscriberId([2; 16]));
        let (ka, kb) = (SubscriberKey([11; 16]), SubscriberKey([12; 16]));
        let mut c = ConnState::default();
        assert!(c.begin_subscribe(a, ka, 2, 1));
        assert!(!c.begin_subscribe(b, kb, 2, 1), "second distinct subscriber over the limit");
        assert_eq!(c.wire_id(&ka), Some(a));
        assert_eq!(c.complete_subscribe(ka, Ok(3)), None);
        assert_eq!(c.complete_subscribe(ka, Ok(2)), Some((a, Ok(5))));
        assert!(c.begin_subscribe(a, ka, 2, 1), "same subscriber again is fine");
        assert_eq!(c.complete_subscribe(ka, Err(ErrorCode::SUBSCRIPTION_RANGE)), None);
        assert_eq!(c.complete_subscribe(ka, Ok(1)), Some((a, Err(ErrorCode::SUBSCRIPTION_RANGE))));
    }

    #[test]
    fn unsubscribe_detaches_only_attached_ids_and_pending_subscribes_still_complete() {
        let (a, b) = (SubscriberId([1; 16]), SubscriberId([2; 16]));
        let (ka, kb) = (SubscriberKey([11; 16]), SubscriberKey([12; 16]));
        let mut c = ConnState::default();
        assert_eq!(c.detach_subscriber(&a), None, "an id never attached here is ignored");
        assert!(c.begin_subscribe(a, ka, 2, 1));
        // UNSUBSCRIBE before the shards answered: detached at once, the SUBSCRIBE still answered (no leak).
        assert_eq!(c.detach_subscriber(&a), Some(ka));
        assert_eq!(c.detach_subscriber(&a), None, "already detached");
        assert_eq!(c.wire_id(&ka), None, "deliveries for it are dropped");
        assert_eq!(c.complete_subscribe(ka, Ok(1)), None);
        assert_eq!(c.complete_subscribe(ka, Ok(0)), Some((a, Ok(1))));
        assert_eq!(c.subscribes_pending(), 0);
        // The slot is free again: the cap counts attached subscribers.
        assert!(c.begin_subscribe(b, kb, 2, 1));
        assert_eq!(c.subscribers().collect::<Vec<_>>(), vec![kb]);
    }

    #[test]
    fn fetch_merges_shard_pages_and_keeps_the_cursor_when_empty() {
        let s = SubscriberId([3; 16]);
        let mut c = ConnState::default();
        c.begin_fetch(s, 7, 99, 2);
        assert_eq!(c.complete_fetch(99, vec![bytes::Bytes::from_static(b"p1")], false), None);
        let done = c.complete_fetch(99, vec![], true).unwrap();
        assert_eq!((done.subscriber, done.next_cursor, done.more, done.proofs.len()), (s, 99, true, 1));
        c.begin_fetch(s, 99, 100, 2);
        assert_eq!(c.complete_fetch(100, vec![], false), None);
        assert_eq!(c.complete_fetch(100, vec![], false).unwrap().next_cursor, 99, "nothing new: same cursor");
        assert_eq!(c.complete_fetch(5, vec![], false), None, "unknown token");
    }

    #[test]
    fn claims_are_bounded_and_idempotent() {
        let (a, b) = (SubscriberId([1; 16]), SubscriberId([2; 16]));
        let mut c = ConnState::with_auth_nonce([5; 16]);
        assert_eq!(c.auth_nonce, [5; 16]);
        assert!(!c.is_claimed(&a));
        assert!(c.claim(a, 1));
        assert!(c.claim(a, 1), "the same id again");
        assert!(!c.claim(b, 1), "a second id past the limit");
        assert!(c.is_claimed(&a) && !c.is_claimed(&b));
    }

    #[test]
    fn error_budget_closes_at_limit() {
        let mut c = ConnState::default();
        assert!((1..PROTOCOL_ERRORS_MAX).all(|_| !c.protocol_error()));
        assert!(c.protocol_error());
    }
}
