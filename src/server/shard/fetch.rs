//! FETCH: every shard plans its page of the subscriber's match records, the driver reads the records from
//! disk, and the connection's shard merges the pages into one FETCH_REPLY.
//!
//! ```text
//! connection's shard: on_fetch ─token (keyed, unique)─▶ Request::Fetch to every shard (≤ proofs_max / shards each)
//! every shard:        plan_fetch ─▶ LogState::fetch (cursor ─▶ durable matches) ─▶ FetchRead queued
//!                     driver: poll_fetch_read ─▶ read + verify the records ─▶ handle_fetch_read
//!                       ─▶ Response::Fetched (not held: a page is read only from durable records)
//! connection's shard: on_fetched ─▶ when every shard answered: FETCH_REPLY (cursor = token if any page had proofs)
//! ```

use bytes::{Bytes, BytesMut};

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
        // Unique per FETCH (shard, counter) and non-zero (0 means "from the oldest"); keyed so that a client
        // cannot predict another FETCH's token.
        let token = mix64(self.token_key ^ ((self.id as u64) << 48) ^ self.fetches) | 1;
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

/// SplitMix64's finaliser: a bijective mix of 64 bits.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
