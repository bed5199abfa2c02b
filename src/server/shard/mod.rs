//! One shard of the relay as a sans-IO state machine, in the style of quinn-proto: `handle_*` feeds it,
//! `poll_*` drains it. It owns its connections, its part of the subscriber directory, its routing engine and
//! its log state ([`ServerLog`]); it never does I/O, never reads a clock (time is a [`Clock`] argument) and
//! never waits.
//!
//! ```text
//! handle_message(conn, bytes) ─decode─▶ HELLO / PUBLISH / CLAIM / SUBSCRIBE / UNSUBSCRIBE / FETCH (this file)
//!   CLAIM ─verify against the connection's auth_nonce─▶ id usable on this connection           (claim.rs)
//!   PUBLISH ─split by owner─▶ Request::Publish ─▶ owner: engine ─▶ log ─▶ deliveries            (publish.rs)
//!              ACK held until durable ─▶ Response::Published ─▶ this shard ─▶ ACK / ERROR
//!   SUBSCRIBE ─checked whole─▶ Request::Subscribe per shard ─▶ index + journal ─▶ SUBSCRIBED  (subscribe.rs)
//!   FETCH ─▶ Request::Fetch per shard ─▶ FetchRead (the driver reads the disk) ─▶ FETCH_REPLY  (fetch.rs)
//! handle_cover ─▶ the relay's own dummies, routed like PUBLISH with nobody to answer          (publish.rs)
//! handle_late_match ─▶ a SUBSCRIBE reaching into the past, matched against retained proofs   (late.rs)
//! poll_commit_job ─▶ CommitJob ─driver writes + fdatasyncs─▶ handle_commit_done ─▶ held replies released
//! handle_tick(clock) ─▶ engine tick, slow-consumer closes, gauges                            (durability.rs)
//! ```
//!
//! # The driver's contract: call, then drain
//!
//! After every `handle_*` call (and before its next await), the driver drains what the call queued, in this
//! order:
//! 1. [`poll_request`](ShardServer::poll_request) until `None`: cross-shard requests. Sending may wait when
//!    the destination's channel is full — that wait is the backpressure that reaches a fast publisher.
//! 2. [`poll_response`](ShardServer::poll_response) until `None`: cross-shard responses. Their receivers
//!    never wait, so these sends always finish.
//! 3. [`poll_fetch_read`](ShardServer::poll_fetch_read) until `None`: FETCH pages to read from this shard's
//!    log; each read ends in [`handle_fetch_read`](ShardServer::handle_fetch_read) (then drain again).
//! 4. [`poll_wakeup`](ShardServer::poll_wakeup) until `None`: connections whose send queue got something (or
//!    that are closing); their writers then pull [`poll_message`](ShardServer::poll_message).
//! 5. [`poll_commit_kick`](ShardServer::poll_commit_kick): whether the committer should decide again; it
//!    then takes jobs with [`poll_commit_job`](ShardServer::poll_commit_job) and reports their outcome with
//!    `handle_commit_written` / `handle_commit_done` / `handle_commit_failed`.
//! 6. [`poll_late_work`](ShardServer::poll_late_work): whether late scans are pending; the driver then runs
//!    [`handle_late_match`](ShardServer::handle_late_match) steps (each bounded) between its other work.
//!
//! Requests and responses addressed to this shard are handled inline, so the queues hold only other
//! shards' messages. Every `handle_*` that can queue something asserts (in debug builds) that the
//! cross-shard queues were drained since the previous call: that is what keeps each of them bounded by one
//! call's output, and a connection's requests in the order its reader produced them. Handling a response
//! never queues a request (so the response meshes cannot wait on the request meshes: no wait cycle).

mod claim;
mod durability;
mod fetch;
mod late;
mod publish;
mod subscribe;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use crossbeam::utils::CachePadded;

use super::close::CloseReason;
use super::conn::ConnState;
use super::log::ServerLog;
use super::metrics::ShardMetrics;
use super::msg::{ConnAddr, ConnId, Request, Response};
use super::outbox::Outbox;
use super::refusal::{error_frame, Refusal};
use super::RelayConfig;
use crate::engine::{EngineConfig, Rejection, Shard};
use crate::log::mailbox::SubscriberKey;
use crate::log::state::LogState;
use crate::proto::claim::AUTH_NONCE_LEN;
use crate::proto::frame::{frame_type, Hello};
use crate::proto::{
    AuthNonce, Codec, ErrorCode, Frame, RelayParams, RelayPolicy, Role, CIPHERTEXT_LEN, FILTER_FINGERPRINTS_MAX,
    PROOF_LEN, PROTOCOL_VERSION,
};

pub use durability::RetentionApplied;
pub use fetch::{FetchPage, FetchRead};
pub use late::{LATE_SCANS_PER_CONNECTION_MAX, LATE_STEP_PROOFS};

/// The time as the driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Wall-clock Unix seconds (windows).
    pub unix_s: u64,
    /// Monotonic microseconds since the relay started (latencies, grace periods, group commit).
    pub mono_us: u64,
}

/// One connection held by this shard.
struct Conn {
    state: ConnState,
    outbox: Outbox,
    close: Option<CloseReason>,
    /// Already in the wake-up queue (each connection is queued at most once).
    wake_queued: bool,
}

/// A response held until its log ticket is durable.
struct Held {
    ticket: u64,
    shard: usize,
    response: Response,
}

/// The sans-IO state of one shard.
pub struct ShardServer {
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
    /// HELLO_REPLY, encoded once; each connection's copy ends with its own `auth_nonce`.
    hello_reply: Bytes,
    /// This relay's node id (signed by every CLAIM).
    node_id: [u8; 16],
    /// The routing engine for this shard's buckets; it appends to this shard's log (owned through it).
    engine: Shard<ServerLog>,
    /// Responses held until their log ticket is durable, tickets non-decreasing.
    held: VecDeque<Held>,
    /// FETCHes started by this shard (makes each FETCH's token unique).
    fetches: u64,
    /// Secret SipHash-2-4 key of FETCH tokens, so they are not predictable from the outside (`fetch::fetch_token`).
    token_key: [u64; 2],
    /// Connections owned by this shard.
    conns: HashMap<ConnId, Conn>,
    /// Where each subscriber with entries in this shard is connected, if anywhere.
    directory: HashMap<SubscriberKey, ConnAddr>,
    /// All shards' metrics; this shard writes only `metrics[id]`.
    metrics: Arc<[CachePadded<ShardMetrics>]>,
    /// Next connection id.
    next_conn: ConnId,
    /// Requests for other shards, in production order (drained by the driver after every call).
    requests: VecDeque<(usize, Request)>,
    /// Responses for other shards (drained by the driver after every call).
    responses: VecDeque<(usize, Response)>,
    /// FETCH pages to read from this shard's log.
    fetch_reads: VecDeque<FetchRead>,
    /// Connections whose outbox received something (or that are closing) since the driver last polled.
    wakeups: VecDeque<ConnId>,
    /// Late scans of SUBSCRIBEs reaching into the past, in arrival order (late.rs).
    late_jobs: VecDeque<late::LateJob>,
    /// Scratch for engine rejections (reused: no allocation per batch on the happy path).
    rejected: Vec<(u16, Rejection)>,
    /// Scratch of `dispatch_deliveries`: index of each (connection, subscriber) group of remote deliveries.
    remote_groups: HashMap<(ConnAddr, SubscriberKey), usize>,
}

impl ShardServer {
    /// Shard `id` of a relay configured by `config`, over its recovered `log`; `node_id` is announced in
    /// HELLO_REPLY, `hash_key` keys the engine's hash tables and FETCH tokens (secret, from the driver's
    /// CSPRNG: ids and commits are chosen by clients).
    pub fn new(
        id: u16,
        config: &RelayConfig,
        node_id: [u8; 16],
        hash_key: [u64; 2],
        metrics: Arc<[CachePadded<ShardMetrics>]>,
        log: LogState,
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
            policy: RelayPolicy {
                shards: config.shards as u16,
                filter_fingerprints_max: FILTER_FINGERPRINTS_MAX,
                clock_skew_s: config.clock_skew_s.min(u32::MAX.into()) as u32,
                slow_consumer_grace_ms: config.slow_consumer_grace_ms.min(u32::MAX.into()) as u32,
                hello_timeout_ms: config.hello_timeout_ms.min(u32::MAX.into()) as u32,
                idle_timeout_ms: config.idle_timeout_ms.min(u32::MAX.into()) as u32,
                protocol_errors_max: crate::server::conn::PROTOCOL_ERRORS_MAX.min(u16::MAX.into()) as u16,
            },
            // Replaced per connection (`on_hello`).
            auth_nonce: [0; AUTH_NONCE_LEN],
        };
        let mut hello_reply = BytesMut::new();
        crate::proto::encode_frame(&Frame::HelloReply(params), &mut hello_reply);
        ShardMetrics::set(&metrics[id as usize].cover_traffic_disabled, config.danger_disable_cover_traffic as u64);
        ShardMetrics::set(&metrics[id as usize].exact_metrics, config.danger_exact_metrics as u64);
        let mut engine = Shard::new(engine_config, ServerLog::new(log));
        engine.retain_for_late_match(config.retention_s);
        Self {
            id,
            shards: config.shards,
            num_buckets: config.num_buckets,
            slow_consumer_grace_ms: config.slow_consumer_grace_ms,
            limits: config.limits,
            codec: Codec::new(config.limits, bloom),
            hello_reply: hello_reply.freeze(),
            node_id,
            engine,
            held: VecDeque::new(),
            fetches: 0,
            token_key: fetch::fetch_token_key(hash_key),
            conns: HashMap::new(),
            directory: HashMap::new(),
            metrics,
            next_conn: 0,
            requests: VecDeque::new(),
            responses: VecDeque::new(),
            fetch_reads: VecDeque::new(),
            wakeups: VecDeque::new(),
            late_jobs: VecDeque::new(),
            rejected: Vec::new(),
            remote_groups: HashMap::new(),
        }
    }

    fn m(&self) -> &ShardMetrics {
        &self.metrics[self.id as usize]
    }

    fn here(&self) -> usize {
        self.id as usize
    }

    /// The driver drained the cross-shard queues since the previous call (see the module docs).
    fn assert_drained(&self) {
        debug_assert!(self.requests.is_empty(), "poll_request was not drained after the previous call");
        debug_assert!(self.responses.is_empty(), "poll_response was not drained after the previous call");
    }

    /// Starts a call at `clock`: checks the drain contract and gives the log the time.
    fn begin(&mut self, clock: Clock) {
        self.assert_drained();
        self.engine.log_mut().observe(clock.mono_us);
    }

    // ---- connections ---------------------------------------------------------------------------------

    /// Registers a new connection and returns its id. `auth_nonce` is announced in its HELLO_REPLY and signed
    /// by its CLAIMs: the driver draws it from its CSPRNG for every connection (never reused).
    pub fn handle_conn_open(&mut self, clock: Clock, auth_nonce: AuthNonce) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        let outbox = Outbox::new(
            self.limits.send_queue_proofs_max as usize,
            self.limits.frames_per_message_max as usize,
            self.limits.proofs_per_batch_max as usize,
            clock.mono_us / 1000,
        )
        .with_message_bytes_max(self.limits.message_bytes_max as usize);
        let state = ConnState::with_auth_nonce(auth_nonce);
        self.conns.insert(id, Conn { state, outbox, close: None, wake_queued: false });
        ShardMetrics::add(&self.m().connections_accepted, 1);
        ShardMetrics::set(&self.m().connections_open, self.conns.len() as u64);
        id
    }

    /// Forgets a finished connection; its subscribers stay registered but are detached on every shard.
    pub fn handle_conn_closed(&mut self, conn: ConnId, clock: Clock) {
        self.begin(clock);
        let Some(c) = self.conns.remove(&conn) else { return };
        ShardMetrics::set(&self.m().connections_open, self.conns.len() as u64);
        let origin = ConnAddr { shard: self.id, conn };
        for subscriber in c.state.subscribers() {
            for shard in 0..self.shards {
                self.send_request(shard, Request::Detach { origin, subscriber }, clock);
            }
        }
        self.update_queue_gauge();
    }

    /// Handles one received WebSocket binary message on `conn`.
    pub fn handle_message(&mut self, conn: ConnId, msg: &Bytes, clock: Clock) {
        self.begin(clock);
        ShardMetrics::add(&self.m().messages_in, 1);
        ShardMetrics::add(&self.m().bytes_in, msg.len() as u64);
        if self.conns.get(&conn).is_none_or(|c| c.close.is_some()) {
            return;
        }
        match self.codec.decode_message(msg) {
            Err(e) => {
                ShardMetrics::add(&self.m().frames_malformed, 1);
                if matches!(e, crate::proto::DecodeError::BatchTooLarge { .. }) {
                    ShardMetrics::add(&self.m().limit_batch, 1);
                }
                self.refuse(conn, Refusal::Malformed(e));
            }
            Ok(frames) => match self.admit_frames(conn, &frames) {
                Err(refusal) => self.refuse(conn, refusal),
                Ok(()) => {
                    for frame in frames {
                        self.on_frame(conn, frame, clock);
                    }
                }
            },
        }
    }

    /// Checks a decoded message against the connection state (docs/PROTOCOL.md §5): HELLO first, and every
    /// frame allowed for the role. A message is acted on only if all of its frames are allowed.
    fn admit_frames(&self, conn: ConnId, frames: &[Frame]) -> Result<(), Refusal> {
        let Some(c) = self.conns.get(&conn) else { return Ok(()) };
        let awaiting_hello = c.state.role.is_none();
        let role = match (c.state.role, frames.first()) {
            (Some(role), _) => role,
            (None, Some(Frame::Hello(hello))) => hello.role,
            (None, first) => return Err(Refusal::HelloRequired { frame_type: first.map_or(0, |f| f.type_byte()) }),
        };
        match frames.iter().enumerate().find(|(i, frame)| !frame_allowed(role, frame, awaiting_hello && *i == 0)) {
            Some((_, frame)) => Err(Refusal::UnexpectedFrame { frame_type: frame.type_byte() }),
            None => Ok(()),
        }
    }

    fn on_frame(&mut self, conn: ConnId, frame: Frame, clock: Clock) {
        if self.conns.get(&conn).is_none_or(|c| c.close.is_some()) {
            return;
        }
        match frame {
            Frame::Hello(hello) => self.on_hello(conn, hello),
            Frame::Publish(publish) => self.on_publish(conn, publish, clock),
            Frame::Claim(claim) => self.on_claim(conn, claim),
            Frame::Subscribe(subscribe) => {
                if self.check_claimed(conn, &subscribe.subscriber, frame_type::SUBSCRIBE) {
                    self.on_subscribe(conn, subscribe, clock);
                }
            }
            Frame::Unsubscribe { subscriber } => {
                if self.check_claimed(conn, &subscriber, frame_type::UNSUBSCRIBE) {
                    self.on_unsubscribe(conn, subscriber, clock);
                }
            }
            Frame::Fetch { subscriber, cursor, proofs_max } => {
                if self.check_claimed(conn, &subscriber, frame_type::FETCH) {
                    self.on_fetch(conn, subscriber, cursor, proofs_max, clock);
                }
            }
            Frame::Error(e) => {
                // Logged and counted, never answered (an answer could start an error loop between peers).
                ShardMetrics::add(&self.m().errors_received, 1);
                tracing::debug!(conn, code = %e.code, text = %e.text, "ERROR received");
            }
            // `admit_frames` lets through only the frames above.
            _ => debug_assert!(false, "admit_frames let an unexpected frame through"),
        }
    }

    fn on_hello(&mut self, conn: ConnId, hello: Hello) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        // A relay speaks exactly one version (docs/PROTOCOL.md §5.2): an older client could not decode this
        // HELLO_REPLY, so it is told which version to speak (ERROR's layout is the same in every version).
        if hello.version < PROTOCOL_VERSION {
            let text = format!("this relay speaks protocol version {PROTOCOL_VERSION}");
            let detail = PROTOCOL_VERSION.into();
            self.push_frame(conn, &error_frame(ErrorCode::UNSUPPORTED_VERSION, 0, detail, &text));
            self.close(conn, CloseReason::UnsupportedVersion);
            return;
        }
        c.state.role = Some(hello.role);
        // The template's last field is `auth_nonce` (docs/PROTOCOL.md §4.2): this connection's goes there.
        let mut reply = BytesMut::from(&self.hello_reply[..]);
        let at = reply.len() - AUTH_NONCE_LEN;
        reply[at..].copy_from_slice(&c.state.auth_nonce);
        self.push_encoded(conn, reply.freeze());
    }

    /// The peer closed `conn` (or it failed): stop queueing for it and let its writer finish.
    pub fn handle_peer_closed(&mut self, conn: ConnId) {
        self.close(conn, CloseReason::PeerClosed);
    }

    /// The WebSocket layer refused a message over `message_bytes_max` on `conn` (closed with 1009).
    pub fn handle_message_too_big(&mut self, conn: ConnId) {
        ShardMetrics::add(&self.m().limit_message_size, 1);
        self.close(conn, CloseReason::MessageTooBig);
    }

    /// `conn` sent a WebSocket frame that breaks RFC 6455 (docs/PROTOCOL.md §2 "Invalid WebSocket framing"):
    /// closed with 1002 and no ERROR frame; not a protocol error of §5.7 (the stream itself is unusable).
    pub fn handle_bad_framing(&mut self, conn: ConnId) {
        self.close(conn, CloseReason::BadFraming);
    }

    /// `conn` sent a WebSocket text message of `len_bytes` (0 when the WebSocket layer refused it as not
    /// UTF-8): the protocol is binary only (docs/PROTOCOL.md §2). The payload is never decoded, so it cannot
    /// skip what binary messages go through; the client gets `ERROR(BINARY_REQUIRED)` and close 1003.
    pub fn handle_text_message(&mut self, conn: ConnId, len_bytes: usize) {
        ShardMetrics::add(&self.m().messages_in, 1);
        ShardMetrics::add(&self.m().bytes_in, len_bytes as u64);
        if self.conns.get(&conn).is_none_or(|c| c.close.is_some()) {
            return;
        }
        ShardMetrics::add(&self.m().protocol_errors, 1);
        self.push_frame(conn, &Refusal::TextMessage.to_frame());
        self.close(conn, CloseReason::TextMessage);
    }

    /// The writer of `conn` finished writing what it took (the stall clock restarts).
    pub fn handle_written(&mut self, conn: ConnId, clock: Clock) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.outbox.written(clock.mono_us / 1000);
        }
    }

    /// Closes every connection (the writers drain what is queued, then send a close frame).
    pub fn handle_shutdown(&mut self) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in ids {
            self.close(conn, CloseReason::Shutdown);
        }
    }

    // ---- outputs ---------------------------------------------------------------------------------------

    /// The next request for another shard: (destination shard, request).
    pub fn poll_request(&mut self) -> Option<(usize, Request)> {
        self.requests.pop_front()
    }

    /// The next response for another shard: (destination shard, response).
    pub fn poll_response(&mut self) -> Option<(usize, Response)> {
        self.responses.pop_front()
    }

    /// The next connection whose writer should look at its send queue.
    pub fn poll_wakeup(&mut self) -> Option<ConnId> {
        let conn = self.wakeups.pop_front()?;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.wake_queued = false;
        }
        Some(conn)
    }

    /// The next outgoing WebSocket message for `conn`, if any (its writer calls this until `None`).
    pub fn poll_message(&mut self, conn: ConnId, clock: Clock) -> Option<Bytes> {
        let c = self.conns.get_mut(&conn)?;
        let (msg, proofs) = c.outbox.next_message(clock.mono_us / 1000)?;
        let m = &self.metrics[self.id as usize];
        ShardMetrics::add(&m.deliveries_written, proofs as u64);
        ShardMetrics::add(&m.messages_out, 1);
        ShardMetrics::add(&m.bytes_out, msg.len() as u64);
        Some(msg)
    }

    /// Whether `conn` has queued outgoing data.
    pub fn has_outgoing(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| !c.outbox.is_empty())
    }

    /// Whether the driver may read `conn`'s next message: its queued replies and its PUBLISHes still in
    /// progress are below their limits (`outbox::reply_room`).
    pub fn reply_room(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_none_or(|c| super::outbox::reply_room(c.outbox.control_bytes(), c.state.unacked()))
    }

    /// Why `conn` is closing, once set; the writer closes after draining the outbox.
    pub fn close_reason(&self, conn: ConnId) -> Option<CloseReason> {
        self.conns.get(&conn).and_then(|c| c.close)
    }

    /// Number of open connections on this shard.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The metrics of every shard (for `/metrics`).
    pub fn metrics(&self) -> &Arc<[CachePadded<ShardMetrics>]> {
        &self.metrics
    }

    // ---- routing between shards -----------------------------------------------------------------------

    /// Applies a request for this shard at once; queues one for another shard.
    fn send_request(&mut self, shard: usize, request: Request, clock: Clock) {
        if shard == self.here() {
            self.apply_request(request, clock);
        } else {
            debug_assert!(shard < self.shards, "request for shard {shard} of {}", self.shards);
            self.requests.push_back((shard, request));
        }
    }

    /// Handles a response for this shard at once; queues one for another shard.
    fn send_response(&mut self, shard: usize, response: Response, clock: Clock) {
        if shard == self.here() {
            self.apply_response(response, clock);
        } else {
            debug_assert!(shard < self.shards, "response for shard {shard} of {}", self.shards);
            self.responses.push_back((shard, response));
        }
    }

    /// Handles a request from another shard.
    pub fn handle_request(&mut self, request: Request, clock: Clock) {
        self.begin(clock);
        self.apply_request(request, clock);
    }

    fn apply_request(&mut self, request: Request, clock: Clock) {
        match request {
            Request::Publish { origin, seq, proofs, indices, received_us } => {
                self.route(origin, seq, &proofs, &indices, received_us, clock);
            }
            Request::Subscribe { origin, subscriber, entries, now_s } => {
                self.apply_subscribe(origin, subscriber, entries, now_s, clock);
            }
            Request::Unsubscribe { subscriber } => self.apply_unsubscribe(subscriber),
            Request::Fetch { origin, subscriber, cursor, token, proofs_max } => {
                self.plan_fetch(origin, subscriber, cursor, token, proofs_max);
            }
            Request::Detach { origin, subscriber } => {
                if self.directory.get(&subscriber) == Some(&origin) {
                    self.directory.remove(&subscriber);
                }
            }
        }
    }

    /// Handles a response from another shard. Never queues a request (the response meshes must not wait on
    /// the request meshes).
    pub fn handle_response(&mut self, response: Response, clock: Clock) {
        self.begin(clock);
        let requests_before = self.requests.len();
        self.apply_response(response, clock);
        debug_assert_eq!(self.requests.len(), requests_before, "a response queued a request");
    }

    fn apply_response(&mut self, response: Response, clock: Clock) {
        match response {
            Response::Published { conn, seq, rejected, received_us } => {
                self.on_published(conn, seq, rejected, received_us, clock);
            }
            Response::Subscribed { conn, subscriber, result } => self.on_subscribed(conn, subscriber, result),
            Response::Deliver { conn, subscriber, proofs, received_us } => {
                for proof in proofs {
                    self.deliver_local(conn, subscriber, proof, received_us, clock);
                }
            }
            Response::Fetched { conn, token, proofs, more } => self.on_fetched(conn, token, proofs, more),
        }
    }

    // ---- the send queues -------------------------------------------------------------------------------

    fn wake(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if !c.wake_queued {
                c.wake_queued = true;
                self.wakeups.push_back(conn);
            }
        }
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.close.is_none() {
                tracing::debug!(shard = self.id, conn, ?reason, "closing connection");
                c.close = Some(reason);
                c.outbox.close();
                self.wake(conn);
            }
        }
    }

    /// Answers a refused message or frame with its ERROR; a protocol error also spends the connection's
    /// budget, and the last one closes it.
    fn refuse(&mut self, conn: ConnId, refusal: Refusal) {
        if refusal.is_protocol_error() {
            ShardMetrics::add(&self.m().protocol_errors, 1);
        }
        self.push_frame(conn, &refusal.to_frame());
        if !refusal.is_protocol_error() {
            return;
        }
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
            Ok(()) => self.wake(conn),
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
        Frame::Claim(_) | Frame::Subscribe(_) | Frame::Unsubscribe { .. } | Frame::Fetch { .. } => role == Role::Client,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::log::format::ShardParams;
    use crate::log::LogConfig;

    #[test]
    fn a_text_message_is_refused_with_binary_required_and_closes_1003() {
        let config = RelayConfig::defaults(1);
        let metrics: Arc<[CachePadded<ShardMetrics>]> = vec![CachePadded::new(ShardMetrics::default())].into();
        let params = ShardParams::for_shard(0, 1, config.num_buckets, config.window_s as u32);
        let log = LogState::new(LogConfig::new(params)).expect("a fresh log state");
        let mut s = ShardServer::new(0, &config, [7; 16], [1, 2], metrics, log);
        let clock = Clock { unix_s: 1_700_000_000, mono_us: 0 };
        let conn = s.handle_conn_open(clock, [3; 16]);
        s.handle_text_message(conn, 15);
        s.handle_text_message(conn, 15);
        assert_eq!(s.close_reason(conn), Some(CloseReason::TextMessage));
        assert_eq!(CloseReason::TextMessage.code(), 1003);
        let codec = Codec::new(config.limits, crate::proto::BloomParams::default());
        let frames: Vec<Frame> = std::iter::from_fn(|| s.poll_message(conn, clock))
            .flat_map(|m| codec.decode_message(&m).expect("valid frames"))
            .collect();
        match &frames[..] {
            [Frame::Error(e)] => assert_eq!((e.code, e.ref_seq, e.detail), (ErrorCode::BINARY_REQUIRED, 0, 1)),
            other => panic!("expected one ERROR(BINARY_REQUIRED), got {other:?}"),
        }
    }
}
