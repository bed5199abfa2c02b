//! One shard of the relay as a sans-IO state machine: its connections, its part of the subscriber directory,
//! and its routing engine.
//!
//! ```text
//! on_message(conn, bytes) ─decode─▶ HELLO / PUBLISH / SUBSCRIBE / UNSUBSCRIBE / FETCH
//!     PUBLISH ─split by owner shard─▶ Request::Publish ─▶ handle_request (owner) ─▶ engine.handle_publish
//!                                        ├─▶ Response::Published ─▶ handle_response (conn's shard) ─▶ ACK / ERROR
//!                                        └─▶ deliveries ─directory─▶ Response::Deliver ─▶ subscriber's outbox
//! tick(clock) ─▶ engine tick, slow-consumer closes, gauges
//! storage durable ─▶ release_durable ─▶ held ACKs (Published) and SUBSCRIBEDs go out
//! ```
//! Nothing is acknowledged before it is durable: a shard stages its part of a PUBLISH (and a match record for
//! every delivery, which is what FETCH serves) in its [`ShardStorage`], takes a ticket, and holds the
//! `Published` response until the ticket is durable. SUBSCRIBE is persisted the same way. FETCH reads from
//! disk, so its per-shard parts are executed by the driver (`Request::Fetch` always goes to `out.requests`).
//! The driver moves `Request`s and `Response`s between shards, feeds received messages in, and pulls
//! outgoing messages with [`ShardServer::next_message`]. Requests and responses addressed to this shard are
//! handled inline. Time is an argument ([`Clock`]); nothing here blocks or does I/O.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use crossbeam::utils::CachePadded;

use super::config::{owner_shard, RelayConfig};
use super::conn::ConnState;
use super::metrics::{ShardMetrics, REJECTION_REASONS};
use super::msg::{ConnAddr, ConnId, Request, Response};
use super::outbox::Outbox;
use super::storage::{ShardStorage, StorageError};
use crate::engine::{EngineConfig, MemoryLog, Origin, Rejection, Shard};
use crate::log::mailbox::SubscriberKey;
use crate::proto::frame::{ErrorFrame, Hello, Publish, Subscribe};
use crate::proto::{
    Codec, ErrorCode, Frame, ProofBatch, RelayParams, Role, SubscribeEntry, SubscriberId, CIPHERTEXT_LEN, PROOF_LEN,
    PROTOCOL_VERSION,
};

/// The time as the driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Wall-clock Unix seconds (windows).
    pub unix_s: u64,
    /// Monotonic microseconds since the relay started (latencies, grace periods).
    pub mono_us: u64,
}

/// Why the relay closes a connection, and the WebSocket close code it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Too many protocol errors (1008, policy violation).
    ProtocolErrors,
    /// The send queue stayed full past the grace period (1008).
    SlowConsumer,
    /// A HELLO asked for an unsupported version (1002, protocol error).
    UnsupportedVersion,
    /// The relay is shutting down (1001, going away).
    Shutdown,
    /// The peer closed or the connection failed (1000, normal closure).
    PeerClosed,
    /// A message over `message_bytes_max` (1009, message too big).
    MessageTooBig,
}

impl CloseReason {
    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::ProtocolErrors | CloseReason::SlowConsumer => 1008,
            CloseReason::UnsupportedVersion => 1002,
            CloseReason::Shutdown => 1001,
            CloseReason::PeerClosed => 1000,
            CloseReason::MessageTooBig => 1009,
        }
    }

    /// Short text for the close frame.
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::ProtocolErrors => "too many protocol errors",
            CloseReason::SlowConsumer => "send queue full past the grace period",
            CloseReason::UnsupportedVersion => "unsupported protocol version",
            CloseReason::Shutdown => "relay shutting down",
            CloseReason::PeerClosed => "closed",
            CloseReason::MessageTooBig => "message over message_bytes_max",
        }
    }
}

/// Work produced for other shards by one call.
#[derive(Debug, Default)]
pub struct Outgoing {
    /// Requests to send (destination shard, request); the sender may wait when the channel is full.
    pub requests: Vec<(usize, Request)>,
    /// Responses to send (destination shard, response).
    pub responses: Vec<(usize, Response)>,
}

/// One connection held by this shard.
struct Conn {
    state: ConnState,
    outbox: Outbox,
    close: Option<CloseReason>,
}

/// The sans-IO state of one shard, over its storage `S`.
pub struct ShardServer<S: ShardStorage = MemoryLog> {
    /// This shard's index.
    id: u16,
    /// Number of shards (to find the owner of a bucket).
    shards: usize,
    /// Number of buckets.
    num_buckets: u16,
    /// Grace period before a stalled connection is closed.
    slow_consumer_grace_ms: u64,
    /// Limits announced and enforced.
    limits: crate::proto::Limits,
    /// Decoder with this relay's limits and Bloom parameters.
    codec: Codec,
    /// HELLO_REPLY, encoded once.
    hello_reply: Bytes,
    /// The routing engine for this shard's buckets; it owns the storage (its log sink).
    engine: Shard<S>,
    /// Responses held until their storage ticket is durable: (ticket, destination shard, response).
    pending_durable: std::collections::VecDeque<(u64, usize, Response)>,
    /// FETCHes started by this shard (makes each FETCH's token unique).
    fetches: u64,
    /// Secret mixed into FETCH tokens so they are not guessable from the outside.
    token_key: u64,
    /// Connections owned by this shard.
    conns: HashMap<ConnId, Conn>,
    /// Where each subscriber with entries in this shard is connected, if anywhere.
    directory: HashMap<SubscriberId, ConnAddr>,
    /// All shards' metrics; this shard writes only `metrics[id]`.
    metrics: Arc<[CachePadded<ShardMetrics>]>,
    /// Next connection id.
    next_conn: ConnId,
    /// Connections whose outbox received something since the driver last asked.
    wakeups: Vec<ConnId>,
    /// Scratch for engine rejections (reused: no allocation per batch on the happy path).
    rejected: Vec<(u16, Rejection)>,
}

impl<S: ShardStorage> ShardServer<S> {
    /// Shard `id` of a relay configured by `config`, over `storage`; `node_id` is announced in HELLO_REPLY,
    /// `hash_key` keys the engine's hash tables and FETCH tokens (secret, from the driver's CSPRNG: ids and
    /// commits are chosen by clients).
    pub fn new(
        id: u16,
        config: &RelayConfig,
        node_id: [u8; 16],
        hash_key: [u64; 2],
        metrics: Arc<[CachePadded<ShardMetrics>]>,
        storage: S,
    ) -> Self {
        let mut engine_config =
            EngineConfig::for_shard(id, config.shards as u16, config.num_buckets).with_hash_key(hash_key);
        engine_config.window_s = config.window_s;
        engine_config.clock_skew_s = config.clock_skew_s;
        engine_config.filters_per_bucket_max = config.limits.filters_per_bucket_max;
        engine_config.subscription_windows_ahead_max = config.limits.subscription_windows_ahead_max;
        let bloom = engine_config.bloom;
        let params = RelayParams {
            version: PROTOCOL_VERSION,
            num_buckets: config.num_buckets,
            window_s: config.window_s as u32,
            bloom,
            proof_len: PROOF_LEN as u32,
            ciphertext_len: CIPHERTEXT_LEN as u32,
            retention_s: config.retention_s.min(u32::MAX as u64) as u32,
            node_id,
            limits: config.limits,
        };
        let mut hello_reply = BytesMut::new();
        crate::proto::encode_frame(&Frame::HelloReply(params), &mut hello_reply);
        ShardMetrics::set(&metrics[id as usize].cover_traffic_disabled, config.danger_disable_cover_traffic as u64);
        Self {
            id,
            shards: config.shards,
            num_buckets: config.num_buckets,
            slow_consumer_grace_ms: config.slow_consumer_grace_ms,
            limits: config.limits,
            codec: Codec::new(config.limits, bloom),
            hello_reply: hello_reply.freeze(),
            engine: Shard::new(engine_config, storage),
            pending_durable: std::collections::VecDeque::new(),
            fetches: 0,
            token_key: hash_key[0] ^ hash_key[1].rotate_left(17),
            conns: HashMap::new(),
            directory: HashMap::new(),
            metrics,
            next_conn: 0,
            wakeups: Vec::new(),
            rejected: Vec::new(),
        }
    }

    fn m(&self) -> &ShardMetrics {
        &self.metrics[self.id as usize]
    }

    fn here(&self) -> usize {
        self.id as usize
    }

    /// Registers a new connection and returns its id.
    pub fn open_conn(&mut self, clock: Clock) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        let outbox = Outbox::new(
            self.limits.send_queue_proofs_max as usize,
            self.limits.frames_per_message_max as usize,
            self.limits.proofs_per_batch_max as usize,
            clock.mono_us / 1000,
        );
        self.conns.insert(id, Conn { state: ConnState::default(), outbox, close: None });
        ShardMetrics::add(&self.m().connections_accepted, 1);
        ShardMetrics::set(&self.m().connections_open, self.conns.len() as u64);
        id
    }

    /// Forgets a closed connection; its subscribers stay registered but are detached everywhere.
    pub fn close_conn(&mut self, conn: ConnId, clock: Clock) -> Outgoing {
        let mut out = Outgoing::default();
        let Some(c) = self.conns.remove(&conn) else { return out };
        ShardMetrics::set(&self.m().connections_open, self.conns.len() as u64);
        let origin = ConnAddr { shard: self.id, conn };
        for subscriber in c.state.subscribers() {
            for shard in 0..self.shards {
                self.send_request(shard, Request::Detach { origin, subscriber }, clock, &mut out);
            }
        }
        self.update_queue_gauge();
        out
    }

    /// Handles one received WebSocket binary message on `conn`.
    pub fn on_message(&mut self, conn: ConnId, msg: &Bytes, clock: Clock) -> Outgoing {
        let mut out = Outgoing::default();
        ShardMetrics::add(&self.m().messages_in, 1);
        ShardMetrics::add(&self.m().bytes_in, msg.len() as u64);
        if self.conns.get(&conn).is_none_or(|c| c.close.is_some()) {
            return out;
        }
        match self.codec.decode_message(msg) {
            Err(e) => {
                ShardMetrics::add(&self.m().frames_malformed, 1);
                if matches!(e, crate::proto::DecodeError::BatchTooLarge { .. }) {
                    ShardMetrics::add(&self.m().limit_batch, 1);
                }
                self.protocol_error(conn, ErrorCode::MALFORMED, 0, e.code(), &e.to_string());
            }
            Ok(frames) => {
                if let Some(frames) = self.admit_frames(conn, frames) {
                    for frame in frames {
                        self.on_frame(conn, frame, clock, &mut out);
                    }
                }
            }
        }
        out
    }

    /// Checks a decoded message against the connection state (docs/PROTOCOL.md §5): HELLO first, and every
    /// frame allowed for the role. A message is acted on only if all of its frames are allowed.
    fn admit_frames(&mut self, conn: ConnId, frames: Vec<Frame>) -> Option<Vec<Frame>> {
        let c = self.conns.get(&conn)?;
        let awaiting_hello = c.state.role.is_none();
        let role = match (c.state.role, frames.first()) {
            (Some(role), _) => role,
            (None, Some(Frame::Hello(hello))) => hello.role,
            (None, first) => {
                let detail = first.map_or(0, |f| f.type_byte().into());
                self.protocol_error(conn, ErrorCode::HELLO_REQUIRED, 0, detail, "the first frame must be HELLO");
                return None;
            }
        };
        let forbidden =
            frames.iter().enumerate().find(|(i, frame)| !frame_allowed(role, frame, awaiting_hello && *i == 0));
        if let Some((_, frame)) = forbidden {
            let detail = frame.type_byte().into();
            self.protocol_error(conn, ErrorCode::UNEXPECTED_FRAME, 0, detail, "frame not allowed on this connection");
            return None;
        }
        Some(frames)
    }

    fn on_frame(&mut self, conn: ConnId, frame: Frame, clock: Clock, out: &mut Outgoing) {
        if self.conns.get(&conn).is_none_or(|c| c.close.is_some()) {
            return;
        }
        match frame {
            Frame::Hello(hello) => self.on_hello(conn, hello),
            Frame::Publish(publish) => self.on_publish(conn, publish, clock, out),
            Frame::Subscribe(subscribe) => self.on_subscribe(conn, subscribe, clock, out),
            Frame::Unsubscribe { subscriber } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.state.remove_subscriber(&subscriber);
                }
                let subscriber = internal_id(&subscriber);
                for shard in 0..self.shards {
                    self.send_request(shard, Request::Unsubscribe { subscriber }, clock, out);
                }
            }
            Frame::Fetch { subscriber, cursor, proofs_max } => self.on_fetch(conn, subscriber, cursor, proofs_max, out),
            Frame::Error(e) => {
                // Logged and counted, never answered (an answer could start an error loop between peers).
                ShardMetrics::add(&self.m().errors_received, 1);
                tracing::debug!(conn, code = %e.code, text = %e.text, "ERROR received");
            }
            // `admit_frames` lets through only the frames above.
            _ => {}
        }
    }

    fn on_hello(&mut self, conn: ConnId, hello: Hello) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if hello.version < 1 {
            let text = format!("this relay speaks protocol version {PROTOCOL_VERSION}");
            let detail = PROTOCOL_VERSION.into();
            self.push_frame(conn, &error_frame(ErrorCode::UNSUPPORTED_VERSION, 0, detail, &text));
            self.close(conn, CloseReason::UnsupportedVersion);
            return;
        }
        c.state.role = Some(hello.role);
        let reply = self.hello_reply.clone();
        self.push_encoded(conn, reply);
    }

    fn on_publish(&mut self, conn: ConnId, publish: Publish, clock: Clock, out: &mut Outgoing) {
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
        if let Err(super::conn::SequenceError::NotIncreasing { last }) =
            c.state.begin_publish(seq, parts, clock.mono_us)
        {
            let text = format!("PUBLISH sequence {seq} does not increase (last {last})");
            self.protocol_error(conn, ErrorCode::SEQUENCE, seq, 0, &text);
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
            let request = Request::Publish { origin, seq, proofs: part, indices, received_us };
            if shard != self.here() {
                ShardMetrics::add(&self.m().cross_shard_requests, 1);
            }
            self.send_request(shard, request, clock, out);
        }
    }

    /// Fans a FETCH out to every shard (each returns at most its share of the page, so the reply never exceeds
    /// `proofs_per_batch_max`, which the configuration keeps at least the number of shards).
    fn on_fetch(&mut self, conn: ConnId, wire: SubscriberId, cursor: u64, proofs_max: u16, out: &mut Outgoing) {
        self.fetches += 1;
        // Unique per FETCH (shard, counter) and non-zero (0 means "from the oldest"); keyed so that a client
        // cannot predict another FETCH's token.
        let token = mix64(self.token_key ^ ((self.id as u64) << 48) ^ self.fetches) | 1;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.state.begin_fetch(wire, cursor, token, self.shards as u16);
        let per_shard = (proofs_max as usize / self.shards).max(1) as u16;
        let origin = ConnAddr { shard: self.id, conn };
        let subscriber = internal_id(&wire);
        for shard in 0..self.shards {
            let request = Request::Fetch { origin, subscriber, cursor, token, proofs_max: per_shard };
            out.requests.push((shard, request));
        }
    }

    fn on_subscribe(&mut self, conn: ConnId, subscribe: Subscribe, clock: Clock, out: &mut Outgoing) {
        let Subscribe { subscriber: wire, entries } = subscribe;
        let subscriber = internal_id(&wire);
        if let Err((code, detail, text)) = self.check_subscribe(&entries, clock.unix_s) {
            // Not a protocol error (docs/PROTOCOL.md §5.6): one ERROR, the previous entries stay.
            ShardMetrics::add(&self.m().subscribe_rejected, 1);
            if code == ErrorCode::TOO_MANY_FILTERS {
                ShardMetrics::add(&self.m().limit_subscriptions, 1);
            }
            self.push_frame(conn, &error_frame(code, 0, detail, &text));
            return;
        }
        let subscribers_max = self.limits.subscribers_per_connection_max as usize;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if !c.state.begin_subscribe(wire, subscriber, self.shards as u16, subscribers_max) {
            ShardMetrics::add(&self.m().subscribe_rejected, 1);
            ShardMetrics::add(&self.m().limit_subscriptions, 1);
            let text = format!("at most {subscribers_max} subscribers per connection");
            self.push_frame(conn, &error_frame(ErrorCode::TOO_MANY_SUBSCRIBERS, 0, subscribers_max as u32, &text));
            return;
        }
        let mut per_shard: Vec<Vec<SubscribeEntry>> = vec![Vec::new(); self.shards];
        for entry in entries {
            per_shard[owner_shard(entry.bucket, self.shards, self.num_buckets)].push(entry);
        }
        let origin = ConnAddr { shard: self.id, conn };
        for (shard, entries) in per_shard.into_iter().enumerate() {
            let request = Request::Subscribe { origin, subscriber, entries, now_s: clock.unix_s };
            self.send_request(shard, request, clock, out);
        }
    }

    /// Checks a SUBSCRIBE as a whole before any shard applies it, so it is applied everywhere or nowhere.
    /// Errors carry (code, detail, text) as docs/PROTOCOL.md §5.6 specifies.
    fn check_subscribe(&self, entries: &[SubscribeEntry], now_s: u64) -> Result<(), (ErrorCode, u32, String)> {
        let mut per_bucket: HashMap<u16, u16> = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            if entry.bucket >= self.num_buckets {
                let text = format!("entry {index}: bucket {} is not below {}", entry.bucket, self.num_buckets);
                return Err((ErrorCode::BUCKET_OUT_OF_RANGE, index as u32, text));
            }
            let range = self.engine.config().check_window_range(now_s, entry.window_from_s, entry.window_to_s);
            if let Err(e) = range {
                return Err((e.error_code(), index as u32, format!("entry {index}: {e}")));
            }
            let n = per_bucket.entry(entry.bucket).or_default();
            *n += 1;
            if *n > self.limits.filters_per_bucket_max {
                let max = self.limits.filters_per_bucket_max;
                return Err((
                    ErrorCode::TOO_MANY_FILTERS,
                    entry.bucket.into(),
                    format!("more than {max} filters for bucket {}", entry.bucket),
                ));
            }
        }
        Ok(())
    }

    /// Handles a request from another shard (or from this one).
    pub fn handle_request(&mut self, request: Request, clock: Clock) -> Outgoing {
        let mut out = Outgoing::default();
        self.apply_request(request, clock, &mut out);
        out
    }

    fn send_request(&mut self, shard: usize, request: Request, clock: Clock, out: &mut Outgoing) {
        if shard == self.here() && !matches!(request, Request::Fetch { .. }) {
            self.apply_request(request, clock, out);
        } else {
            out.requests.push((shard, request));
        }
    }

    fn send_response(&mut self, shard: usize, response: Response, clock: Clock, out: &mut Outgoing) {
        if shard == self.here() {
            self.handle_response(response, clock);
        } else {
            out.responses.push((shard, response));
        }
    }

    fn apply_request(&mut self, request: Request, clock: Clock, out: &mut Outgoing) {
        match request {
            Request::Publish { origin, seq, proofs, indices, received_us } => {
                self.route(origin, seq, &proofs, &indices, received_us, clock, out);
            }
            Request::Subscribe { origin, subscriber, entries, now_s } => {
                let result = match self.engine.handle_subscribe(now_s, subscriber, &entries) {
                    Err(e) => Err(e.error_code()),
                    Ok(n) => {
                        self.directory.insert(subscriber, origin);
                        let key = SubscriberKey(subscriber.0);
                        self.engine.log_mut().persist_subscription(key, &entries).map(|()| n).map_err(storage_code)
                    }
                };
                self.update_subscription_gauges();
                // SUBSCRIBED means applied and durable: a subscription outlives a crash once acknowledged.
                let response = Response::Subscribed { conn: origin.conn, subscriber, result };
                self.respond_when_durable(origin.shard as usize, response, clock, out);
            }
            Request::Unsubscribe { subscriber } => {
                self.engine.handle_unsubscribe(subscriber);
                self.directory.remove(&subscriber);
                if let Err(e) = self.engine.log_mut().persist_subscription(SubscriberKey(subscriber.0), &[]) {
                    tracing::warn!(shard = self.id, error = %e, "UNSUBSCRIBE not persisted");
                }
                self.update_subscription_gauges();
            }
            Request::Fetch { .. } => {
                // `send_request` never applies a FETCH inline: the driver reads its page from disk.
                debug_assert!(false, "Request::Fetch reached apply_request");
            }
            Request::Detach { origin, subscriber } => {
                if self.directory.get(&subscriber) == Some(&origin) {
                    self.directory.remove(&subscriber);
                }
            }
        }
    }

    /// Routes proofs owned by this shard and produces the publisher's response and the deliveries.
    #[allow(clippy::too_many_arguments)]
    fn route(
        &mut self,
        origin: ConnAddr,
        seq: u64,
        proofs: &ProofBatch,
        indices: &[u16],
        received_us: u64,
        clock: Clock,
        out: &mut Outgoing,
    ) {
        self.rejected.clear();
        let summary = self.engine.handle_publish(clock.unix_s, Origin::Client, proofs, &mut self.rejected);
        let m = &self.metrics[self.id as usize];
        ShardMetrics::add(&m.proofs_accepted, summary.accepted.into());
        ShardMetrics::add(&m.proofs_duplicate, summary.duplicates.into());
        let mut rejected = Vec::with_capacity(self.rejected.len());
        for &(i, reason) in &self.rejected {
            m.proofs_rejected[rejection_index(reason)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rejected.push((indices[i as usize], reason));
        }
        self.dispatch_deliveries(received_us, clock, out);
        let response = Response::Published { conn: origin.conn, seq, rejected, received_us };
        self.respond_when_durable(origin.shard as usize, response, clock, out);
    }

    /// Routes this relay's own dummy proofs (cover traffic) exactly like real ones — verified, deduplicated,
    /// logged, matched, delivered — with no publisher to answer.
    pub fn inject_cover(&mut self, proofs: &ProofBatch, clock: Clock) -> Outgoing {
        let mut out = Outgoing::default();
        self.rejected.clear();
        let summary = self.engine.handle_publish(clock.unix_s, Origin::Cover, proofs, &mut self.rejected);
        let m = &self.metrics[self.id as usize];
        ShardMetrics::add(&m.cover_proofs, proofs.len() as u64);
        if summary.rejected > 0 {
            // A dummy is built for the window of its emission time; only a clock step could make it fail.
            let first = self.rejected.first().map(|(_, reason)| *reason);
            tracing::warn!(shard = self.id, rejected = summary.rejected, ?first, "dummy proofs rejected");
        }
        self.dispatch_deliveries(clock.mono_us, clock, &mut out);
        out
    }

    /// Sends `response` once everything staged so far is durable (at once with nothing pending).
    fn respond_when_durable(&mut self, shard: usize, response: Response, clock: Clock, out: &mut Outgoing) {
        let ticket = self.engine.log().ticket();
        if self.pending_durable.is_empty() && self.engine.log().is_durable(ticket) {
            self.send_response(shard, response, clock, out);
        } else {
            self.pending_durable.push_back((ticket, shard, response));
        }
    }

    /// The oldest storage ticket a held response waits for (the driver waits on it, then calls
    /// [`release_durable`](Self::release_durable)).
    pub fn oldest_pending_ticket(&self) -> Option<u64> {
        self.pending_durable.front().map(|(ticket, _, _)| *ticket)
    }

    /// Sends every held response whose ticket is durable, in order.
    pub fn release_durable(&mut self, clock: Clock) -> Outgoing {
        let mut out = Outgoing::default();
        while let Some((ticket, _, _)) = self.pending_durable.front() {
            if !self.engine.log().is_durable(*ticket) {
                break;
            }
            let Some((_, shard, response)) = self.pending_durable.pop_front() else { break };
            self.send_response(shard, response, clock, &mut out);
        }
        out
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
        let restored = self.engine.handle_subscribe(now_s, SubscriberId(key.0), &live).is_ok();
        self.update_subscription_gauges();
        restored
    }

    /// Remembers a commitment accepted before a restart (dedup rebuilt from storage).
    pub fn restore_commit(&mut self, window_start_s: u64, commit: &crate::proto::Commit) {
        self.engine.restore_dedup(window_start_s, commit);
    }

    /// This shard's storage (the driver reads its counters).
    pub fn storage(&self) -> &S {
        self.engine.log()
    }

    /// Sends every delivery the engine queued to its subscriber's connection.
    fn dispatch_deliveries(&mut self, received_us: u64, clock: Clock, out: &mut Outgoing) {
        // (connection, subscriber, proofs) for connections on other shards, merged per subscriber.
        let mut remote: Vec<(ConnAddr, SubscriberId, Vec<Bytes>)> = Vec::new();
        while let Some(delivery) = self.engine.poll_delivery() {
            // Every match is recorded for FETCH (at least once, whatever happens to the live delivery).
            self.engine.log_mut().record_match(SubscriberKey(delivery.subscriber.0), delivery.log_position);
            match self.directory.get(&delivery.subscriber).copied() {
                None => ShardMetrics::add(&self.m().deliveries_offline, 1),
                Some(addr) if addr.shard == self.id => {
                    self.deliver_local(addr.conn, delivery.subscriber, delivery.proof, received_us, clock);
                }
                Some(addr) => match remote.iter_mut().rev().find(|(a, s, _)| *a == addr && *s == delivery.subscriber) {
                    Some((_, _, proofs)) => proofs.push(delivery.proof),
                    None => remote.push((addr, delivery.subscriber, vec![delivery.proof])),
                },
            }
        }
        for (addr, subscriber, proofs) in remote {
            let response = Response::Deliver { conn: addr.conn, subscriber, proofs, received_us };
            out.responses.push((addr.shard as usize, response));
        }
    }

    fn deliver_local(&mut self, conn: ConnId, subscriber: SubscriberId, proof: Bytes, received_us: u64, clock: Clock) {
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
                self.wakeups.push(conn);
            }
            Err(_) => ShardMetrics::add(&m.deliveries_diverted, 1),
        }
    }

    /// Handles a response from another shard (or from this one).
    pub fn handle_response(&mut self, response: Response, clock: Clock) {
        match response {
            Response::Published { conn, seq, rejected, received_us } => {
                for (index, reason) in rejected {
                    let text = format!("proof {index} rejected: {reason}");
                    self.push_frame(conn, &error_frame(reason.error_code(), seq, index.into(), &text));
                }
                let Some(c) = self.conns.get_mut(&conn) else { return };
                if let Some((ack_seq, _)) = c.state.complete_part(seq) {
                    self.push_frame(conn, &Frame::Ack { seq: ack_seq });
                    let m = &self.metrics[self.id as usize];
                    ShardMetrics::add(&m.acks_sent, 1);
                    m.publish_ack_latency.record_us(clock.mono_us.saturating_sub(received_us));
                }
            }
            Response::Subscribed { conn, subscriber, result } => {
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
            Response::Deliver { conn, subscriber, proofs, received_us } => {
                for proof in proofs {
                    self.deliver_local(conn, subscriber, proof, received_us, clock);
                }
            }
            Response::Fetched { conn, token, proofs, more } => {
                let Some(c) = self.conns.get_mut(&conn) else { return };
                let Some(done) = c.state.complete_fetch(token, proofs, more) else { return };
                let mut region = BytesMut::with_capacity(done.proofs.len() * PROOF_LEN);
                for proof in &done.proofs {
                    region.extend_from_slice(proof);
                }
                // Records passed their CRC when read, so their proofs are structurally valid.
                let proofs = ProofBatch::from_bytes(region.freeze()).unwrap_or_else(|_| ProofBatch::empty());
                let reply = Frame::FetchReply {
                    subscriber: done.subscriber,
                    next_cursor: done.next_cursor,
                    more: done.more,
                    proofs,
                };
                self.push_frame(conn, &reply);
            }
        }
    }

    /// Periodic work: expire windows, close stalled connections, refresh gauges.
    pub fn tick(&mut self, clock: Clock) {
        self.engine.handle_tick(clock.unix_s);
        let now_ms = clock.mono_us / 1000;
        let grace_ms = self.slow_consumer_grace_ms;
        let stalled: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.close.is_none() && c.outbox.stalled(now_ms, grace_ms))
            .map(|(&id, _)| id)
            .collect();
        for conn in stalled {
            ShardMetrics::add(&self.m().slow_consumer_closes, 1);
            self.push_frame(conn, &error_frame(ErrorCode::SLOW_CONSUMER, 0, 0, CloseReason::SlowConsumer.text()));
            self.close(conn, CloseReason::SlowConsumer);
        }
        self.update_queue_gauge();
        self.update_subscription_gauges();
    }

    /// Closes every connection (the writers drain what is queued, then send a close frame).
    pub fn shutdown(&mut self) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in ids {
            self.close(conn, CloseReason::Shutdown);
        }
    }

    /// The next outgoing WebSocket message for `conn`, if any.
    pub fn next_message(&mut self, conn: ConnId, clock: Clock) -> Option<Bytes> {
        let c = self.conns.get_mut(&conn)?;
        let (msg, proofs) = c.outbox.next_message(clock.mono_us / 1000)?;
        let m = &self.metrics[self.id as usize];
        ShardMetrics::add(&m.deliveries_written, proofs as u64);
        ShardMetrics::add(&m.messages_out, 1);
        ShardMetrics::add(&m.bytes_out, msg.len() as u64);
        Some(msg)
    }

    /// The writer of `conn` finished writing what it took (the stall clock restarts).
    pub fn written(&mut self, conn: ConnId, clock: Clock) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.outbox.written(clock.mono_us / 1000);
        }
    }

    /// Whether `conn` has queued outgoing data.
    pub fn has_outgoing(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| !c.outbox.is_empty())
    }

    /// The peer closed `conn` (or it failed): stop queueing for it and let its writer finish.
    pub fn peer_closed(&mut self, conn: ConnId) {
        self.close(conn, CloseReason::PeerClosed);
    }

    /// The WebSocket layer refused a message over `message_bytes_max` on `conn` (closed with 1009).
    pub fn message_too_big(&mut self, conn: ConnId) {
        ShardMetrics::add(&self.m().limit_message_size, 1);
        self.close(conn, CloseReason::MessageTooBig);
    }

    /// Queues a control frame on `conn` (used by the driver for errors it detects itself).
    pub fn push_control(&mut self, conn: ConnId, frame: &Frame) {
        self.push_frame(conn, frame);
    }

    /// Why `conn` is closing, once set; the writer closes after draining the outbox.
    pub fn close_reason(&self, conn: ConnId) -> Option<CloseReason> {
        self.conns.get(&conn).and_then(|c| c.close)
    }

    /// Connections with new outgoing data since the last call.
    pub fn take_wakeups(&mut self) -> Vec<ConnId> {
        let mut wakeups = std::mem::take(&mut self.wakeups);
        wakeups.sort_unstable();
        wakeups.dedup();
        wakeups
    }

    /// Number of open connections on this shard.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The metrics of every shard (for `/metrics`).
    pub fn metrics(&self) -> &Arc<[CachePadded<ShardMetrics>]> {
        &self.metrics
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.close.is_none() {
                tracing::debug!(shard = self.id, conn, ?reason, "closing connection");
                c.close = Some(reason);
                c.outbox.close();
                self.wakeups.push(conn);
            }
        }
    }

    fn protocol_error(&mut self, conn: ConnId, code: ErrorCode, ref_seq: u64, detail: u32, text: &str) {
        ShardMetrics::add(&self.m().protocol_errors, 1);
        self.push_frame(conn, &error_frame(code, ref_seq, detail, text));
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.state.protocol_error() {
            ShardMetrics::add(&self.m().limit_protocol_errors, 1);
            self.close(conn, CloseReason::ProtocolErrors);
        }
    }

    fn push_frame(&mut self, conn: ConnId, frame: &Frame) {
        let mut buf = BytesMut::new();
        crate::proto::encode_frame(frame, &mut buf);
        self.push_encoded(conn, buf.freeze());
    }

    fn push_encoded(&mut self, conn: ConnId, frame: Bytes) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        match c.outbox.push_encoded(frame) {
            Ok(()) => self.wakeups.push(conn),
            // A peer that never reads its ERRORs/ACKs is a slow consumer.
            Err(super::outbox::Refused::ControlFull) => {
                ShardMetrics::add(&self.m().slow_consumer_closes, 1);
                self.close(conn, CloseReason::SlowConsumer);
            }
            Err(_) => {}
        }
    }

    fn update_queue_gauge(&self) {
        let queued: usize = self.conns.values().map(|c| c.outbox.queued_proofs()).sum();
        ShardMetrics::set(&self.m().send_queue_proofs, queued as u64);
    }

    fn update_subscription_gauges(&self) {
        let counters = self.engine.counters();
        ShardMetrics::set(&self.m().subscribers, counters.subscribers);
        ShardMetrics::set(&self.m().subscription_entries, counters.entries);
    }
}

/// Whether `role` may send `frame` (docs/PROTOCOL.md §5.3); HELLO only as the connection's first frame.
fn frame_allowed(role: Role, frame: &Frame, hello_allowed: bool) -> bool {
    match frame {
        Frame::Hello(_) => hello_allowed,
        Frame::Publish(_) | Frame::Error(_) => true,
        Frame::Subscribe(_) | Frame::Unsubscribe { .. } | Frame::Fetch { .. } => role == Role::Client,
        _ => false,
    }
}

/// The id the engine, the directory and storage know a subscriber by: its key (a hash of the wire id).
pub fn internal_id(wire: &SubscriberId) -> SubscriberId {
    SubscriberId(SubscriberKey::of(wire).0)
}

/// The ERROR code for a storage refusal.
fn storage_code(e: StorageError) -> ErrorCode {
    match e {
        StorageError::Busy => ErrorCode::OVERLOADED,
        StorageError::Failed => ErrorCode::STORAGE,
    }
}

/// SplitMix64's finaliser: a bijective mix of 64 bits.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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
    };
    debug_assert!(i < REJECTION_REASONS.len());
    i
}

fn error_frame(code: ErrorCode, ref_seq: u64, detail: u32, text: &str) -> Frame {
    Frame::Error(ErrorFrame { code, ref_seq, detail, text: text.to_owned() })
}
