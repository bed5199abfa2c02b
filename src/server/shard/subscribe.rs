//! SUBSCRIBE and UNSUBSCRIBE: check a SUBSCRIBE whole, split it by owner shard, register and persist each
//! part, and answer SUBSCRIBED once every shard's part is durable.
//!
//! ```text
//! connection's shard: on_subscribe ─check_subscribe (all entries, before any shard applies it)─▶
//!                       Request::Subscribe to every shard (an empty part removes earlier entries there)
//! every shard:        apply_subscribe ─▶ engine index (replace) ─▶ directory ─▶ journal record (staged)
//!                       Response::Subscribed held until the log ticket is durable (durability.rs)
//! connection's shard: on_subscribed ─▶ SUBSCRIBED once all shards answered, or the first shard's ERROR
//! UNSUBSCRIBE:        only of a subscriber attached to this connection (else ignored): detach it here,
//!                       every shard removes its entries and persists the removal if it had any; no answer
//! ```
//! The wire id ([`SubscriberId`]) stays on the connection; shards, the directory and the disk know only the
//! key ([`SubscriberKey`], a one-way hash of it).

use std::collections::HashMap;

use super::{Clock, ShardServer};
use crate::log::mailbox::SubscriberKey;
use crate::log::subscriptions::SubscriptionError;
use crate::proto::frame::Subscribe;
use crate::proto::{ErrorCode, Frame, SubscribeEntry, SubscriberId, FILTER_FINGERPRINTS_MAX};
use crate::server::config::owner_shard;
use crate::server::metrics::ShardMetrics;
use crate::server::msg::{ConnAddr, ConnId, Request, Response};
use crate::server::refusal::{error_frame, Refusal};

impl ShardServer {
    pub(super) fn on_subscribe(&mut self, conn: ConnId, subscribe: Subscribe, clock: Clock) {
        let Subscribe { subscriber: wire, entries } = subscribe;
        let subscriber = SubscriberKey::of(&wire);
        if let Err(refusal) = self.check_subscribe(&entries, clock.unix_s) {
            // One ERROR, the previous entries stay (docs/PROTOCOL.md §5.6); only a saturated filter also
            // spends the protocol-error budget (`Refusal::is_protocol_error`).
            ShardMetrics::add(&self.m().subscribe_rejected, 1);
            match refusal {
                Refusal::TooManyFilters { .. } => ShardMetrics::add(&self.m().limit_subscriptions, 1),
                Refusal::FilterSaturated { .. } => ShardMetrics::add(&self.m().filters_saturated, 1),
                _ => {}
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
            // An over-full filter matches (nearly) every proof of its bucket: each then costs a delivery, a match
            // record and a mailbox entry per such entry. A filter of ≤ FILTER_FINGERPRINTS_MAX items never is.
            if entry.filter.is_saturated() {
                let (ones, max) = (entry.filter.count_ones(), entry.filter.params().filter_bits_max());
                let fingerprints = u32::from(FILTER_FINGERPRINTS_MAX);
                return Err(Refusal::FilterSaturated { entry: entry_index, ones, max, fingerprints });
            }
            let n = per_bucket.entry(entry.bucket).or_default();
            *n += 1;
            if *n > self.limits.filters_per_bucket_max {
                return Err(Refusal::TooManyFilters { bucket: entry.bucket, max: self.limits.filters_per_bucket_max });
            }
        }
        Ok(())
    }

    /// UNSUBSCRIBE: only a subscriber attached to this connection is removed (docs/PROTOCOL.md §4.7); any
    /// other id is ignored — no shard hears of it, so it can neither remove another connection's subscriber
    /// nor make shards create and journal state for random ids.
    pub(super) fn on_unsubscribe(&mut self, conn: ConnId, wire: SubscriberId, clock: Clock) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Some(subscriber) = c.state.detach_subscriber(&wire) else {
            tracing::debug!(shard = self.id, conn, "UNSUBSCRIBE of a subscriber not attached here: ignored");
            return;
        };
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

    /// This shard's part of an UNSUBSCRIBE: drop the entries and the directory entry; persist the removal
    /// only if entries were persisted here (a shard the subscriber never had entries on writes nothing).
    pub(super) fn apply_unsubscribe(&mut self, subscriber: SubscriberKey) {
        self.engine.handle_unsubscribe(subscriber);
        self.directory.remove(&subscriber);
        let persisted = self.log().subscriptions().get(&subscriber).is_some_and(|s| !s.entries.is_empty());
        if !persisted {
            self.update_subscription_gauges();
            return;
        }
        if let Err(e) = self.engine.log_mut().subscribe(subscriber, &[]) {
            tracing::warn!(shard = self.id, error = %e, "UNSUBSCRIBE not persisted");
        }
        self.update_subscription_gauges();
    }

    /// One shard's answer to a SUBSCRIBE from a connection of this shard.
    pub(super) fn on_subscribed(&mut self, conn: ConnId, subscriber: SubscriberKey, result: Result<u16, ErrorCode>) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        // Answered even if an UNSUBSCRIBE detached the subscriber meanwhile: every SUBSCRIBE gets its reply,
        // and the pending entry does not outlive it.
        match c.state.complete_subscribe(subscriber, result) {
            None => {}
            Some((wire, Ok(entries))) => {
                ShardMetrics::add(&self.m().subscribe_requests, 1);
                self.push_frame(conn, &Frame::Subscribed { subscriber: wire, entries });
            }
            Some((_, Err(code))) => {
                ShardMetrics::add(&self.m().subscribe_rejected, 1);
                self.push_frame(conn, &error_frame(code, 0, 0, "SUBSCRIBE refused by a shard"));
            }
        }
    }

    /// Re-enters the proofs recovered from the log into the late-match index (at start, in log order).
    pub fn restore_retained(&mut self, records: &[crate::log::scan::RetainedRecord]) {
        self.engine.restore_retained(records);
    }

    /// Re-registers a subscription restored from storage at start (not persisted again). Entries whose range
    /// has ended are dropped first, so one expired entry does not refuse the subscriber's others; so are
    /// saturated filters (a journal written before they were refused), with a warning.
    pub fn restore_subscription(&mut self, now_s: u64, key: SubscriberKey, entries: &[SubscribeEntry]) -> bool {
        let config = self.engine.config();
        let saturated = entries.iter().filter(|e| e.filter.is_saturated()).count();
        if saturated > 0 {
            tracing::warn!(shard = self.id, saturated, "restored subscription: saturated filters dropped");
        }
        let live: Vec<SubscribeEntry> = entries
            .iter()
            .filter(|e| config.check_window_range(now_s, e.window_from_s, e.window_to_s).is_ok())
            .filter(|e| !e.filter.is_saturated())
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crossbeam::utils::CachePadded;

    use super::*;
    use crate::log::format::ShardParams;
    use crate::log::state::LogState;
    use crate::log::LogConfig;
    use crate::proto::frame::Hello;
    use crate::proto::{
        encode_message, BloomFilter, BloomParams, Codec, Limits, Role, SubscriberKeyPair, PROTOCOL_VERSION,
    };
    use crate::server::close::CloseReason;
    use crate::server::RelayConfig;

    const W: u64 = 1_700_000_000;

    fn clock(ms: u64) -> Clock {
        Clock { unix_s: W + 5, mono_us: ms * 1000 }
    }

    /// Shard 0 of `shards`.
    fn server(shards: usize) -> ShardServer {
        let mut config = RelayConfig::defaults(shards);
        config.shards = shards;
        let metrics: Arc<[CachePadded<ShardMetrics>]> =
            (0..shards).map(|_| CachePadded::new(ShardMetrics::default())).collect();
        let params = ShardParams::for_shard(0, shards as u16, config.num_buckets, config.window_s as u32);
        let log = LogState::new(LogConfig::new(params)).expect("a fresh log state");
        ShardServer::new(0, &config, [7; 16], [1, 2], metrics, log)
    }

    /// A connection past HELLO, its queue emptied.
    fn client(s: &mut ShardServer) -> ConnId {
        let conn = s.handle_conn_open(clock(0), [3; 16]);
        let hello = Frame::Hello(Hello { version: PROTOCOL_VERSION, role: Role::Client, node_id: [0; 16] });
        s.handle_message(conn, &encode_message(&[hello]), clock(0));
        frames(s, conn);
        conn
    }

    fn frames(s: &mut ShardServer, conn: ConnId) -> Vec<Frame> {
        let codec = Codec::new(Limits::default(), BloomParams::default());
        std::iter::from_fn(|| s.poll_message(conn, clock(0)))
            .flat_map(|msg| codec.decode_message(&msg).expect("valid frames"))
            .collect()
    }

    /// Drains the wake-ups and commits everything staged (as the driver does).
    fn settle(s: &mut ShardServer) {
        while s.poll_wakeup().is_some() {}
        while let Some(job) = s.poll_commit_job(W + 5, 1000) {
            s.handle_commit_written(job.id);
            s.handle_commit_done(job.id, job.bytes(), clock(1));
        }
    }

    /// A SUBSCRIBE of `wire` with one entry in bucket 0 (shard 0's).
    fn subscribe(wire: SubscriberId) -> Frame {
        let filter = BloomFilter::new(BloomParams::default());
        let entry = SubscribeEntry { bucket: 0, window_from_s: W, window_to_s: W + 60, filter };
        Frame::Subscribe(Subscribe { subscriber: wire, entries: vec![entry] })
    }

    fn subscribers(s: &ShardServer) -> (u64, usize) {
        (s.engine.counters().subscribers, s.log().subscriptions().len())
    }

    /// A CLAIM of `pair` for a connection of `server` (node id [7; 16], every connection's nonce [3; 16]).
    fn claim(pair: &SubscriberKeyPair) -> Frame {
        Frame::Claim(pair.claim(&[7; 16], &[3; 16], &[0; 32]))
    }

    /// A CLAIM of the key with secret `[n; 32]` for any connection of `server`, and that key's id.
    fn keyed(n: u8) -> (Frame, SubscriberId) {
        let pair = SubscriberKeyPair::from_secret(&[n; 32]);
        (claim(&pair), pair.id())
    }

    #[test]
    fn an_unsubscribe_of_an_id_not_attached_here_reaches_no_shard() {
        let mut s = server(2);
        let (owner, other) = (client(&mut s), client(&mut s));
        let (pair, own) = (SubscriberKeyPair::from_secret(&[4; 32]), SubscriberKeyPair::from_secret(&[9; 32]));
        let wire = pair.id();
        s.handle_message(owner, &encode_message(&[claim(&pair), subscribe(wire)]), clock(1));
        while s.poll_request().is_some() {}
        settle(&mut s);
        let before = subscribers(&s);
        assert_eq!(before.0, 1, "the owner's subscriber is registered here");
        // Another connection's own claimed id that is not attached there: ignored, no reply.
        s.handle_message(other, &encode_message(&[claim(&own), Frame::Unsubscribe { subscriber: own.id() }]), clock(2));
        assert!(s.poll_request().is_none(), "no shard hears of an UNSUBSCRIBE of an id not attached here");
        assert!(frames(&mut s, other).is_empty(), "ignored: no reply, not a protocol error");
        // The owner's id, seen on the wire but never claimed on this connection: refused.
        s.handle_message(other, &encode_message(&[Frame::Unsubscribe { subscriber: wire }]), clock(2));
        assert!(s.poll_request().is_none(), "no shard hears of an UNSUBSCRIBE of a foreign id");
        match &frames(&mut s, other)[..] {
            [Frame::Error(e)] => assert_eq!((e.code, e.detail), (ErrorCode::NOT_CLAIMED, 0x22)),
            other => panic!("expected ERROR(NOT_CLAIMED), got {other:?}"),
        }
        settle(&mut s);
        assert_eq!(subscribers(&s), before, "nothing removed, no state created");
        assert_eq!(s.directory.get(&SubscriberKey::of(&wire)).map(|a| a.conn), Some(owner));
    }

    #[test]
    fn claims_gate_subscribe_and_fetch_and_a_bad_claim_is_a_protocol_error() {
        let mut s = server(1);
        let (owner, thief) = (client(&mut s), client(&mut s));
        let pair = SubscriberKeyPair::from_secret(&[4; 32]);
        // Unclaimed: SUBSCRIBE and FETCH refused, nothing registered.
        let fetch = Frame::Fetch { subscriber: pair.id(), cursor: 0, proofs_max: 8 };
        s.handle_message(owner, &encode_message(&[subscribe(pair.id()), fetch.clone()]), clock(1));
        let codes: Vec<_> = frames(&mut s, owner)
            .into_iter()
            .map(|f| match f {
                Frame::Error(e) => (e.code, e.detail),
                other => panic!("expected ERRORs, got {other:?}"),
            })
            .collect();
        assert_eq!(codes, vec![(ErrorCode::NOT_CLAIMED, 0x20), (ErrorCode::NOT_CLAIMED, 0x31)]);
        assert_eq!(subscribers(&s).0, 0);
        // A tampered signature is refused and nothing is claimed.
        let mut forged = pair.claim(&[7; 16], &[3; 16], &[0; 32]);
        forged.signature[0] ^= 1;
        s.handle_message(thief, &encode_message(&[Frame::Claim(forged)]), clock(1));
        match &frames(&mut s, thief)[..] {
            [Frame::Error(e)] => assert_eq!(e.code, ErrorCode::BAD_CLAIM),
            other => panic!("expected ERROR(BAD_CLAIM), got {other:?}"),
        }
        assert!(!s.conns[&thief].state.is_claimed(&pair.id()));
        // Claimed: silent, then SUBSCRIBE is applied.
        s.handle_message(owner, &encode_message(&[claim(&pair), subscribe(pair.id())]), clock(1));
        settle(&mut s);
        assert!(matches!(&frames(&mut s, owner)[..], [Frame::Subscribed { entries: 1, .. }]));
    }

    #[test]
    fn claims_past_the_per_connection_limit_are_refused() {
        let mut config = RelayConfig::defaults(1);
        config.limits.subscribers_per_connection_max = 1;
        let metrics: Arc<[CachePadded<ShardMetrics>]> = vec![CachePadded::new(ShardMetrics::default())].into();
        let params = ShardParams::for_shard(0, 1, config.num_buckets, config.window_s as u32);
        let log = LogState::new(LogConfig::new(params)).expect("a fresh log state");
        let mut s = ShardServer::new(0, &config, [7; 16], [1, 2], metrics, log);
        let conn = client(&mut s);
        let (a, b) = (SubscriberKeyPair::from_secret(&[1; 32]), SubscriberKeyPair::from_secret(&[2; 32]));
        s.handle_message(conn, &encode_message(&[claim(&a), claim(&a), claim(&b)]), clock(1));
        match &frames(&mut s, conn)[..] {
            [Frame::Error(e)] => assert_eq!((e.code, e.detail), (ErrorCode::TOO_MANY_SUBSCRIBERS, 1)),
            other => panic!("expected one ERROR(TOO_MANY_SUBSCRIBERS), got {other:?}"),
        }
        assert!(s.conns[&conn].state.is_claimed(&a.id()) && !s.conns[&conn].state.is_claimed(&b.id()));
    }

    #[test]
    fn subscribe_then_unsubscribe_in_one_message_is_answered_and_leaves_nothing() {
        let mut s = server(1);
        let conn = client(&mut s);
        let (claimed, wire) = keyed(5);
        let message = encode_message(&[claimed, subscribe(wire), Frame::Unsubscribe { subscriber: wire }]);
        s.handle_message(conn, &message, clock(1));
        settle(&mut s);
        assert_eq!(frames(&mut s, conn), vec![Frame::Subscribed { subscriber: wire, entries: 1 }]);
        let c = &s.conns[&conn];
        assert_eq!((c.state.subscribes_pending(), c.state.subscribers().count()), (0, 0), "no pending entry leaks");
        assert_eq!(s.engine.counters().subscribers, 0, "the UNSUBSCRIBE removed what the SUBSCRIBE applied");
        assert!(s.directory.is_empty());
    }

    #[test]
    fn a_saturated_filter_is_refused_whole_and_dropped_from_a_restored_journal() {
        let mut s = server(1);
        let conn = client(&mut s);
        let saturated = BloomFilter::from_bytes(BloomParams::default(), &[0xFF; 128]).expect("128 bytes");
        let (claimed, wire) = keyed(8);
        let Frame::Subscribe(mut sub) = subscribe(wire) else { unreachable!() };
        sub.entries.push(SubscribeEntry { filter: saturated, ..sub.entries[0].clone() });
        s.handle_message(conn, &encode_message(&[claimed, Frame::Subscribe(sub.clone())]), clock(1));
        assert!(s.poll_request().is_none(), "refused before any shard hears of it");
        let Some(Frame::Error(e)) = frames(&mut s, conn).pop() else { panic!("an ERROR") };
        assert_eq!((e.code, e.detail), (ErrorCode::FILTER_SATURATED, 1));
        assert_eq!(s.m().filters_saturated.load(std::sync::atomic::Ordering::Relaxed), 1);
        // A journal written before the check: the saturated entry is dropped, the other one restored.
        assert!(s.restore_subscription(W + 5, SubscriberKey::of(&sub.subscriber), &sub.entries));
        assert_eq!(s.engine.counters().entries, 1);
    }

    #[test]
    fn saturated_filters_spend_the_protocol_error_budget() {
        // A well-behaved client never builds one, so the eighth closes the connection (1008) instead of the
        // relay decoding and refusing them for as long as the client writes.
        let mut s = server(1);
        let conn = client(&mut s);
        let saturated = BloomFilter::from_bytes(BloomParams::default(), &[0xFF; 128]).expect("128 bytes");
        let max = crate::server::conn::PROTOCOL_ERRORS_MAX;
        for n in 1..=max {
            let (claimed, wire) = keyed(n as u8);
            let Frame::Subscribe(mut sub) = subscribe(wire) else { unreachable!() };
            sub.entries[0].filter = saturated.clone();
            s.handle_message(conn, &encode_message(&[claimed, Frame::Subscribe(sub)]), clock(1));
            let expected = if n < max { None } else { Some(CloseReason::ProtocolErrors) };
            assert_eq!(s.close_reason(conn), expected, "after {n} saturated SUBSCRIBEs");
        }
        let refused = frames(&mut s, conn);
        assert_eq!(refused.len(), max as usize, "one ERROR each, the last one included: {refused:?}");
        assert!(refused.iter().all(|f| matches!(f, Frame::Error(e) if e.code == ErrorCode::FILTER_SATURATED)));
        assert_eq!(s.m().protocol_errors.load(std::sync::atomic::Ordering::Relaxed), u64::from(max));
    }

    #[test]
    fn an_unsubscribe_persists_a_removal_only_where_entries_were_persisted() {
        let mut s = server(1);
        let staged = |s: &ShardServer| s.log().subscriptions().staged_records();
        let conn = client(&mut s);
        let (claimed, wire) = keyed(6);
        s.apply_unsubscribe(SubscriberKey::of(&wire));
        assert_eq!(staged(&s), 0, "no journal record for a subscriber without entries here");
        assert_eq!(s.log().subscriptions().len(), 0, "and no state");
        s.handle_message(conn, &encode_message(&[claimed, subscribe(wire)]), clock(1));
        let subscribed = staged(&s);
        assert!(subscribed > 0);
        s.handle_message(conn, &encode_message(&[Frame::Unsubscribe { subscriber: wire }]), clock(2));
        assert_eq!(staged(&s), subscribed + 1, "the removal of persisted entries is journaled");
    }
}
