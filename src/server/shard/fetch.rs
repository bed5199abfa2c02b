//! FETCH: every shard plans its page of the subscriber's match records, the driver reads the records from
//! disk, and the connection's shard merges the pages into one FETCH_REPLY.
//!
//! ```text
//! connection's shard: on_fetch (id claimed here) ─token (SipHash-2-4 PRF)─▶ Request::Fetch to every shard (≤ proofs_max / shards each)
//! every shard:        plan_fetch ─▶ LogState::fetch (cursor ─▶ durable matches) ─▶ FetchRead queued
//!                     driver: poll_fetch_read ─▶ read + verify the records ─▶ handle_fetch_read
//!                       ─▶ Response::Fetched (not held: a page is read only from durable records)
//! connection's shard: on_fetched ─▶ when every shard answered: FETCH_REPLY (cursor = token if any page had proofs)
//! ```

use std::hash::Hasher;

use bytes::{Bytes, BytesMut};
use siphasher::sip::SipHasher24;

use super::{Clock, ShardServer};
use crate::log::mailbox::SubscriberKey;
use crate::log::state::RecordLocation;
use crate::proto::{Frame, ProofBatch, SubscriberId, PROOF_LEN};
use crate::server::msg::{ConnAddr, ConnId, Request, Response};

/// Records to read from this shard's log — one shard's FETCH page, or late matches to deliver — executed by the
/// driver, which then calls [`ShardServer::handle_fetch_read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRead {
    /// The fetching connection (or the subscriber's connection, for a delivery).
    pub origin: ConnAddr,
    /// The FETCH's token (its reply cursor); 0 for a delivery.
    pub token: u64,
    /// `Some(subscriber)`: the records are late matches to DELIVER to it, not a FETCH page.
    pub deliver_to: Option<SubscriberKey>,
    /// Records to read, ascending seq; each must pass its CRC and position check after the read.
    pub reads: Vec<RecordLocation>,
    /// Whether this shard has more durable matches after this page.
    pub more: bool,
}

/// What the driver read for a [`FetchRead`].
#[derive(Debug, Default)]
pub struct FetchPage {
    /// The proofs of the records that passed verification, in the plan's order.
    pub proofs: Vec<Bytes>,
    /// Records that failed verification (skipped, never served).
    pub skipped: u64,
}

impl ShardServer {
    /// Fans a FETCH out to every shard (each returns at most its share of the page, so the reply never exceeds
    /// `proofs_per_batch_max`, which the configuration keeps at least the number of shards).
    pub(super) fn on_fetch(&mut self, conn: ConnId, wire: SubscriberId, cursor: u64, proofs_max: u16, clock: Clock) {
        self.fetches += 1;
        let token = fetch_token(&self.token_key, self.id, self.fetches);
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.state.begin_fetch(wire, cursor, token, self.shards as u16);
        let per_shard = (proofs_max as usize / self.shards).max(1) as u16;
        let origin = ConnAddr { shard: self.id, conn };
        let subscriber = SubscriberKey::of(&wire);
        for shard in 0..self.shards {
            let request = Request::Fetch { origin, subscriber, cursor, token, proofs_max: per_shard };
            self.send_request(shard, request, clock);
        }
    }

    /// This shard's page of a FETCH: which durable records to read (the new cursor is staged with it).
    pub(super) fn plan_fetch(
        &mut self,
        origin: ConnAddr,
        subscriber: SubscriberKey,
        cursor: u64,
        token: u64,
        proofs_max: u16,
    ) {
        let plan = self.engine.log_mut().fetch(subscriber, cursor, token, proofs_max.into());
        debug_assert!(plan.reads.windows(2).all(|w| w[0].seq < w[1].seq), "a page reads ascending seqs");
        debug_assert!(plan.reads.len() <= usize::from(proofs_max.max(1)), "a page holds at most proofs_max");
        self.fetch_reads.push_back(FetchRead { origin, token, deliver_to: None, reads: plan.reads, more: plan.more });
    }

    /// Queues a read of late matches to DELIVER to `subscriber` on connection `addr`.
    pub(super) fn queue_delivery_read(
        &mut self,
        addr: ConnAddr,
        subscriber: SubscriberKey,
        reads: Vec<RecordLocation>,
    ) {
        self.fetch_reads.push_back(FetchRead {
            origin: addr,
            token: 0,
            deliver_to: Some(subscriber),
            reads,
            more: false,
        });
    }

    /// The next FETCH page to read from this shard's log.
    pub fn poll_fetch_read(&mut self) -> Option<FetchRead> {
        self.fetch_reads.pop_front()
    }

    /// The driver read `read`'s records (`None`: the read failed; an empty page is answered).
    pub fn handle_fetch_read(&mut self, read: FetchRead, page: Option<FetchPage>, clock: Clock) {
        self.begin(clock);
        if let Some(subscriber) = read.deliver_to {
            let proofs = page.map(|p| p.proofs).unwrap_or_default();
            self.deliver_read(read.origin, subscriber, proofs, clock);
            return;
        }
        let (proofs, more) = match page {
            Some(page) => {
                debug_assert!(page.proofs.len() as u64 + page.skipped == read.reads.len() as u64);
                self.engine.log_mut().note_fetch_reads(page.proofs.len() as u64, page.skipped);
                if page.skipped > 0 {
                    tracing::warn!(
                        shard = self.id,
                        skipped = page.skipped,
                        "FETCH skipped records that failed verification"
                    );
                }
                (page.proofs, read.more)
            }
            None => {
                tracing::error!(shard = self.id, "FETCH read failed; answering an empty page");
                (Vec::new(), false)
            }
        };
        let response = Response::Fetched { conn: read.origin.conn, token: read.token, proofs, more };
        self.send_response(read.origin.shard as usize, response, clock);
    }

    /// One shard's page of a FETCH from a connection of this shard; the reply goes out once all have answered.
    pub(super) fn on_fetched(&mut self, conn: ConnId, token: u64, proofs: Vec<Bytes>, more: bool) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Some(done) = c.state.complete_fetch(token, proofs, more) else { return };
        let mut region = BytesMut::with_capacity(done.proofs.len() * PROOF_LEN);
        for proof in &done.proofs {
            region.extend_from_slice(proof);
        }
        // Records passed their CRC when read, so their proofs are structurally valid.
        let proofs = ProofBatch::from_bytes(region.freeze()).unwrap_or_else(|_| ProofBatch::empty());
        let reply =
            Frame::FetchReply { subscriber: done.subscriber, next_cursor: done.next_cursor, more: done.more, proofs };
        self.push_frame(conn, &reply);
    }
}

/// A FETCH token (the reply's cursor): SipHash-2-4 keyed with the shard's secret 128-bit `key` over
/// `u16_be(shard) ‖ u64_be(counter)`, a PRF, so a client that saw any number of tokens cannot predict another;
/// never 0 (0 means "from the oldest"). Distinct (shard, counter) pairs collide with probability 2⁻⁶⁴ per pair:
/// a collision could only make two FETCHes of one connection share a cursor, never cross subscribers (each
/// shard stages cursors per subscriber key).
pub(super) fn fetch_token(key: &[u64; 2], shard: u16, counter: u64) -> u64 {
    let mut h = SipHasher24::new_with_keys(key[0], key[1]);
    h.write(&shard.to_be_bytes());
    h.write(&counter.to_be_bytes());
    h.finish().max(1)
}

/// The FETCH-token key, derived from the shard's secret `hash_key` (drawn by the driver from its CSPRNG) with
/// SipHash-2-4 as a PRF under a label of its own, so it is independent of the key of the hash tables.
pub(super) fn fetch_token_key(hash_key: [u64; 2]) -> [u64; 2] {
    let half = |i: u8| {
        let mut h = SipHasher24::new_with_keys(hash_key[0], hash_key[1]);
        h.write(b"tessera/v1/fetch-token-key");
        h.write(&[i]);
        h.finish()
    };
    [half(0), half(1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_keyed_non_zero_and_distinct() {
        let key = fetch_token_key([1, 2]);
        assert_ne!(key, fetch_token_key([1, 3]));
        let tokens: std::collections::HashSet<u64> =
            (0..2).flat_map(|shard| (1..=1000).map(move |n| fetch_token(&key, shard, n))).collect();
        assert_eq!(tokens.len(), 2000);
        assert!(!tokens.contains(&0));
        assert_ne!(fetch_token(&key, 0, 1), fetch_token(&fetch_token_key([1, 3]), 0, 1), "another key");
    }
}
