//! SUBSCRIBE and UNSUBSCRIBE: check a SUBSCRIBE whole, split it by owner shard, register and persist each
//! part, and answer SUBSCRIBED once every shard's part is durable.
//!
//! ```text
//! connection's shard: on_subscribe ─check_subscribe (all entries, before any shard applies it)─▶
//!                       Request::Subscribe to every shard (an empty part removes earlier entries there)
//! every shard:        apply_subscribe ─▶ engine index (replace) ─▶ directory ─▶ journal record (staged)
//!                       Response::Subscribed held until the log ticket is durable (durability.rs)
//! connection's shard: on_subscribed ─▶ SUBSCRIBED once all shards answered, or the first shard's ERROR
//! UNSUBSCRIBE:        every shard removes the entries and persists the removal; no answer
//! ```
//! The wire id ([`SubscriberId`]) stays on the connection; shards, the directory and the disk know only the
//! key ([`SubscriberKey`], a one-way hash of it).

use std::collections::HashMap;

use super::{subscriber_key, Clock, ShardServer};
use crate::log::mailbox::SubscriberKey;
use crate::log::subscriptions::SubscriptionError;
use crate::proto::frame::Subscribe;
use crate::proto::{ErrorCode, Frame, SubscribeEntry, SubscriberId};
use crate::server::config::owner_shard;
use crate::server::metrics::ShardMetrics;
use crate::server::msg::{ConnAddr, ConnId, Request, Response};
use crate::server::refusal::{error_frame, Refusal};

impl ShardServer {
    pub(super) fn on_subscribe(&mut self, conn: ConnId, subscribe: Subscribe, clock: Clock) {
        let Subscribe { subscriber: wire, entries } = subscribe;
        let subscriber = subscriber_key(&wire);
        if let Err(refusal) = self.check_subscribe(&entries, clock.unix_s) {
            // Not a protocol error (docs/PROTOCOL.md §5.6): one ERROR, the previous entries stay.
            ShardMetrics::add(&self.m().subscribe_rejected, 1);
            if matches!(refusal, Refusal::TooManyFilters { .. }) {
                ShardMetrics::add(&self.m().limit_subscriptions, 1);
            }
            self.refuse(conn, refusal);
            return;
        }
        let max = self.limits.subscribers_per_connection_max;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if !c.state.begin_subscribe(wire, subscriber, self.shards as u16, max as usize) {
            ShardMetrics::add(&self.m().subscribe_rejected, 1);
            ShardMetrics::add(&self.m().limit_subscriptions, 1);
            self.refuse(conn, Refusal::TooManySubscribers { max });
            return;
        }
        let mut per_shard: Vec<Vec<SubscribeEntry>> = vec![Vec::new(); self.shards];
        for entry in entries {
            per_shard[owner_shard(entry.bucket, self.shards, self.num_buckets)].push(entry);
        }
        let origin = ConnAddr { shard: self.id, conn };
        for (shard, entries) in per_shard.into_iter().enumerate() {
            let request = Request::Subscribe { origin, subscriber, entries, now_s: clock.unix_s };
            self.send_request(shard, request, clock);
        }
    }

    /// Checks a SUBSCRIBE as a whole before any shard applies it, so it is applied everywhere or nowhere.
    fn check_subscribe(&self, entries: &[SubscribeEntry], now_s: u64) -> Result<(), Refusal> {
        let mut per_bucket: HashMap<u16, u16> = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let entry_index = index as u32;
            if entry.bucket >= self.num_buckets {
                let (bucket, buckets) = (entry.bucket, self.num_buckets);
                return Err(Refusal::BucketOutOfRange { entry: entry_index, bucket, buckets });
            }
            let range = self.engine.config().check_window_range(now_s, entry.window_from_s, entry.window_to_s);
            range.map_err(|source| Refusal::WindowRange { entry: entry_index, source })?;
            let n = per_bucket.entry(entry.bucket).or_default();
            *n += 1;
            if *n > self.limits.filters_per_bucket_max {
                return Err(Refusal::TooManyFilters { bucket: entry.bucket, max: self.limits.filters_per_bucket_max });
            }
        }
        Ok(())
    }

    pub(super) fn on_unsubscribe(&mut self, conn: ConnId, wire: SubscriberId, clock: Clock) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state.remove_subscriber(&wire);
        }
        let subscriber = subscriber_key(&wire);
        for shard in 0..self.shards {
            self.send_request(shard, Request::Unsubscribe { subscriber }, clock);
        }
    }

    /// This shard's part of a SUBSCRIBE: replace the subscriber's entries in the index, remember its
    /// connection, persist the entries, and answer once that is durable (a subscription outlives a crash
    /// once acknowledged).
    pub(super) fn apply_subscribe(
        &mut self,
        origin: ConnAddr,
        subscriber: SubscriberKey,
        entries: Vec<SubscribeEntry>,
        now_s: u64,
        clock: Clock,
    ) {
        // Windows this subscriber was not subscribed to here before: matched against retained proofs (late.rs).
        let late = if self.engine.retained_proofs() == 0 { Vec::new() } else { self.late_ranges(subscriber, &entries) };
        if !late.is_empty() && !self.late_admit(origin) {
            let response = Response::Subscribed { conn: origin.conn, subscriber, result: Err(ErrorCode::OVERLOADED) };
            self.respond_when_durable(origin.shard as usize, response, clock);
            return;
        }
        let result = match self.engine.handle_subscribe(now_s, subscriber, &entries) {
            Err(e) => Err(e.error_code()),
            Ok(n) => {
                self.directory.insert(subscriber, origin);
                self.engine.log_mut().subscribe(subscriber, &entries).map(|_| n).map_err(|e| {
                    tracing::warn!(shard = self.id, error = %e, "subscription not persisted");
                    persist_error_code(&e)
                })
            }
        };
        self.update_subscription_gauges();
        if result.is_ok() && !late.is_empty() {
            // SUBSCRIBED (applied and durable) waits for the late matches too: a FETCH after it returns them.
            self.queue_late_scan(origin, subscriber, entries, late, result);
            return;
        }
        let response = Response::Subscribed { conn: origin.conn, subscriber, result };
        self.respond_when_durable(origin.shard as usize, response, clock);
    }

    pub(super) fn apply_unsubscribe(&mut self, subscriber: SubscriberKey) {
        self.engine.handle_unsubscribe(subscriber);
        self.directory.remove(&subscriber);
        if let Err(e) = self.engine.log_mut().subscribe(subscriber, &[]) {
            tracing::warn!(shard = self.id, error = %e, "UNSUBSCRIBE not persisted");
        }
        self.update_subscription_gauges();
    }

    /// One shard's answer to a SUBSCRIBE from a connection of this shard.
    pub(super) fn on_subscribed(&mut self, conn: ConnId, subscriber: SubscriberKey, result: Result<u16, ErrorCode>) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Some(wire) = c.state.wire_id(&subscriber) else { return };
        match c.state.complete_subscribe(subscriber, result) {
            None => {}
            Some(Ok(entries)) => {
                ShardMetrics::add(&self.m().subscribe_requests, 1);
                self.push_frame(conn, &Frame::Subscribed { subscriber: wire, entries });
            }
            Some(Err(code)) => {
                ShardMetrics::add(&self.m().subscribe_rejected, 1);
                self.push_frame(conn, &error_frame(code, 0, 0, "SUBSCRIBE refused by a shard"));
            }
        }
    }

    /// Re-enters the proofs recovered from the log into the late-match index (at start, in log order).
    pub fn restore_retained(&mut self, records: &[crate::log::scan::RetainedRecord]) {
        let records: Vec<_> = records.iter().map(|r| (r.bucket, r.window_start_s, r.fingerprint, r.seq)).collect();
        self.engine.restore_retained(&records);
    }

    /// Re-registers a subscription restored from storage at start (not persisted again). Entries whose range
    /// has ended are dropped first, so one expired entry does not refuse the subscriber's others.
    pub fn restore_subscription(&mut self, now_s: u64, key: SubscriberKey, entries: &[SubscribeEntry]) -> bool {
        let config = self.engine.config();
        let live: Vec<SubscribeEntry> = entries
            .iter()
            .filter(|e| config.check_window_range(now_s, e.window_from_s, e.window_to_s).is_ok())
            .cloned()
            .collect();
        if live.is_empty() {
            return false;
        }
        let restored = self.engine.handle_subscribe(now_s, key, &live).is_ok();
        self.update_subscription_gauges();
        restored
    }
}

/// The ERROR for a subscription the log could not persist: a full journal is transient (retry), anything
/// else means the log failed.
fn persist_error_code(e: &SubscriptionError) -> ErrorCode {
    match e {
        SubscriptionError::JournalBusy => ErrorCode::OVERLOADED,
        _ => ErrorCode::STORAGE,
    }
}
