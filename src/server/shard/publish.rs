//! PUBLISH and cover traffic: split a batch by owner shard, route each part through the engine, record a match
//! for every delivery, deliver to connected subscribers, and answer the publisher once its part is durable.
//!
//! ```text
//! connection's shard: on_publish ─split by owner─▶ Request::Publish (one per owner shard, in batch order)
//! owner shard:        route ─▶ engine.handle_publish ─▶ log append (staged) ─▶ deliveries
//!                       dispatch_deliveries: record_match for each (FETCH) ─▶ local outbox | Response::Deliver
//!                       (only those the engine marked `push`: at most deliveries_per_proof_max per proof and
//!                       deliveries_per_second_max per shard-second; the rest are counted deliveries_unpushed)
//!                       Response::Published held until the log ticket is durable (durability.rs)
//! connection's shard: on_published ─▶ ERROR per rejected proof; ACK once every earlier PUBLISH is complete
//! cover:              handle_cover ─▶ the same route, with nobody to answer
//! ```

use bytes::Bytes;

use super::{Clock, ShardServer};
use crate::engine::{Origin, Rejection};
use crate::log::mailbox::SubscriberKey;
use crate::proto::frame::Publish;
use crate::proto::{Frame, ProofBatch};
use crate::server::config::owner_shard;
use crate::server::conn::SequenceError;
use crate::server::metrics::{ShardMetrics, REJECTION_REASONS};
use crate::server::msg::{ConnAddr, ConnId, Request, Response};
use crate::server::refusal::{error_frame, Refusal};

impl ShardServer {
    pub(super) fn on_publish(&mut self, conn: ConnId, publish: Publish, clock: Clock) {
        let Publish { seq, proofs } = publish;
        ShardMetrics::add(&self.m().proofs_received, proofs.len() as u64);
        let origin = ConnAddr { shard: self.id, conn };
        // Split the batch by owner shard; a batch wholly owned by one shard is forwarded without copying.
        let mut groups: Vec<Vec<u16>> = vec![Vec::new(); self.shards];
        for (i, proof) in proofs.iter().enumerate() {
            // A bucket outside the relay's range is sent to the last shard, whose engine rejects it.
            let bucket = proof.bucket().min(self.num_buckets - 1);
            groups[owner_shard(bucket, self.shards, self.num_buckets)].push(i as u16);
        }
        let parts = groups.iter().filter(|g| !g.is_empty()).count() as u16;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if let Err(SequenceError::NotIncreasing { last }) = c.state.begin_publish(seq, parts, clock.mono_us) {
            self.refuse(conn, Refusal::SequenceNotIncreasing { seq, last });
            return;
        }
        let received_us = clock.mono_us;
        for (shard, indices) in groups.into_iter().enumerate() {
            if indices.is_empty() {
                continue;
            }
            let part = if indices.len() == proofs.len() {
                proofs.clone()
            } else {
                ProofBatch::from_proofs(indices.iter().map(|&i| proofs.get(i as usize)))
            };
            if shard != self.here() {
                ShardMetrics::add(&self.m().cross_shard_requests, 1);
            }
            self.send_request(shard, Request::Publish { origin, seq, proofs: part, indices, received_us }, clock);
        }
    }

    /// Routes proofs owned by this shard and produces the publisher's response and the deliveries.
    pub(super) fn route(
        &mut self,
        origin: ConnAddr,
        seq: u64,
        proofs: &ProofBatch,
        indices: &[u16],
        received_us: u64,
        clock: Clock,
    ) {
        debug_assert_eq!(proofs.len(), indices.len(), "one batch index per proof of the part");
        if self.is_storage_stalled() {
            self.refuse_stalled(origin, seq, indices, received_us, clock);
            return;
        }
        self.rejected.clear();
        let summary = self.engine.handle_publish(clock.unix_s, Origin::Client, proofs, &mut self.rejected);
        let m = &self.metrics[self.id as usize];
        ShardMetrics::add(&m.proofs_accepted, summary.accepted.into());
        ShardMetrics::add(&m.proofs_accepted_client, summary.accepted.into());
        ShardMetrics::add(&m.proofs_duplicate, summary.duplicates.into());
        let mut rejected = Vec::with_capacity(self.rejected.len());
        for &(i, reason) in &self.rejected {
            m.proofs_rejected[rejection_index(reason)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rejected.push((indices[i as usize], reason));
        }
        self.dispatch_deliveries(received_us, clock);
        let response = Response::Published { conn: origin.conn, seq, rejected, received_us };
        self.respond_when_durable(origin.shard as usize, response, clock);
    }

    /// Routes this relay's own dummy proofs (cover traffic) exactly like real ones — verified, deduplicated,
    /// logged, matched, delivered — with no publisher to answer.
    pub fn handle_cover(&mut self, proofs: &ProofBatch, clock: Clock) {
        self.begin(clock);
        if self.is_storage_stalled() {
            // Not emitted (storage full): real PUBLISHes are refused meanwhile too, so no count needs hiding.
            ShardMetrics::add(&self.m().cover_skipped_storage, proofs.len() as u64);
            return;
        }
        self.rejected.clear();
        let summary = self.engine.handle_publish(clock.unix_s, Origin::Cover, proofs, &mut self.rejected);
        let m = &self.metrics[self.id as usize];
        ShardMetrics::add(&m.cover_proofs, proofs.len() as u64);
        // Cover and real together: the only live proof count (docs/PRIVACY.md §Metrics).
        ShardMetrics::add(&m.proofs_accepted, summary.accepted.into());
        if summary.rejected > 0 {
            // A dummy is built for the window of its emission time; only a clock step could make it fail.
            let first = self.rejected.first().map(|(_, reason)| *reason);
            tracing::warn!(shard = self.id, rejected = summary.rejected, ?first, "dummy proofs rejected");
        }
        self.dispatch_deliveries(clock.mono_us, clock);
    }

    /// Sends every delivery the engine queued to its subscriber's connection.
    fn dispatch_deliveries(&mut self, received_us: u64, clock: Clock) {
        // (connection, subscriber, proofs) for connections on other shards, merged per subscriber; the index
        // finds a subscriber's group in O(1) (a linear search made a proof matching K remote subscribers cost K²).
        let mut remote: Vec<(ConnAddr, SubscriberKey, Vec<Bytes>)> = Vec::new();
        self.remote_groups.clear();
        while let Some(delivery) = self.engine.poll_delivery() {
            // Every match is recorded for FETCH (at least once, whatever happens to the live delivery). It
            // fails only once the log is poisoned, and then nothing more is acknowledged anyway.
            if let Err(e) = self.engine.log_mut().record_match(delivery.subscriber, delivery.seq) {
                tracing::error!(shard = self.id, error = %e, "match record refused by the log");
            }
            if !delivery.push {
                // Over the engine's per-proof or per-second bound: FETCH has it; counted, not sent.
                ShardMetrics::add(&self.m().deliveries_unpushed, 1);
                continue;
            }
            match self.directory.get(&delivery.subscriber).copied() {
                None => ShardMetrics::add(&self.m().deliveries_offline, 1),
                Some(addr) if addr.shard == self.id => {
                    self.deliver_local(addr.conn, delivery.subscriber, delivery.proof, received_us, clock);
                }
                // Consecutive deliveries to one subscriber (a batch of its proofs) skip the index.
                Some(addr) if remote.last().is_some_and(|(a, s, _)| *a == addr && *s == delivery.subscriber) => {
                    if let Some((_, _, proofs)) = remote.last_mut() {
                        proofs.push(delivery.proof);
                    }
                }
                Some(addr) => match self.remote_groups.entry((addr, delivery.subscriber)) {
                    std::collections::hash_map::Entry::Occupied(group) => remote[*group.get()].2.push(delivery.proof),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(remote.len());
                        remote.push((addr, delivery.subscriber, vec![delivery.proof]));
                    }
                },
            }
        }
        for (addr, subscriber, proofs) in remote {
            let response = Response::Deliver { conn: addr.conn, subscriber, proofs, received_us };
            self.send_response(addr.shard as usize, response, clock);
        }
    }

    /// Queues one matched proof on a connection of this shard (counted and left to FETCH when its send
    /// queue is full or the subscriber left that connection).
    pub(super) fn deliver_local(
        &mut self,
        conn: ConnId,
        subscriber: SubscriberKey,
        proof: Bytes,
        received_us: u64,
        clock: Clock,
    ) {
        let m = &self.metrics[self.id as usize];
        let Some((c, wire)) = self.conns.get_mut(&conn).and_then(|c| c.state.wire_id(&subscriber).map(|w| (c, w)))
        else {
            ShardMetrics::add(&m.deliveries_offline, 1);
            return;
        };
        match c.outbox.push_proof(wire, proof) {
            Ok(()) => {
                ShardMetrics::add(&m.deliveries_queued, 1);
                m.publish_deliver_latency.record_us(clock.mono_us.saturating_sub(received_us));
                self.wake(conn);
            }
            Err(_) => ShardMetrics::add(&m.deliveries_diverted, 1),
        }
    }

    /// One owner shard's part of PUBLISH `seq` is durable: ERRORs for its rejected proofs, and the ACK once
    /// every earlier PUBLISH of the connection is complete too (ACKs are cumulative).
    pub(super) fn on_published(
        &mut self,
        conn: ConnId,
        seq: u64,
        rejected: Vec<(u16, Rejection)>,
        received_us: u64,
        clock: Clock,
    ) {
        let mut storage = false;
        for (index, reason) in rejected {
            if reason == Rejection::LogFailed {
                storage = true; // one ERROR(STORAGE) for the PUBLISH, not one per proof
                continue;
            }
            let text = format!("proof {index} rejected: {reason}");
            self.push_frame(conn, &error_frame(reason.error_code(), seq, index.into(), &text));
        }
        if storage {
            self.push_frame(conn, &super::durability::storage_refusal(seq));
        }
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if let Some((ack_seq, _)) = c.state.complete_part(seq) {
            debug_assert!(ack_seq >= seq, "an ACK covers the part that completed it");
            self.push_frame(conn, &Frame::Ack { seq: ack_seq });
            let m = &self.metrics[self.id as usize];
            ShardMetrics::add(&m.acks_sent, 1);
            m.publish_ack_latency.record_us(clock.mono_us.saturating_sub(received_us));
        }
    }
}

/// Index of a rejection reason in [`REJECTION_REASONS`].
fn rejection_index(reason: Rejection) -> usize {
    let i = match reason {
        Rejection::BucketNotOwned => 0,
        Rejection::BadBucket => 1,
        Rejection::BadFingerprint => 2,
        Rejection::WindowStale => 3,
        Rejection::WindowFuture => 4,
        Rejection::WindowMisaligned => 5,
        Rejection::DedupFull => 6,
        Rejection::LogFailed => 7,
    };
    debug_assert!(i < REJECTION_REASONS.len());
    i
}
