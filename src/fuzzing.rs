//! The bodies of the fuzz targets (docs/FUZZING.md), shared by `fuzz/fuzz_targets/*` (libFuzzer, through
//! cargo-fuzz) and `tests/fuzz_regressions.rs` (replays the committed seeds in `cargo test`). Each takes
//! arbitrary bytes, drives one pure part of the relay with them and panics only when an invariant breaks: a
//! panic of the code under test or a failed check here is a finding either way.
//!
//! ```text
//! decode_message(bytes) ─▶ proto::Codec::decode_message ─▶ Ok: re-encodes to the same bytes │ Err: a typed code
//! http_request_head(bytes) ─▶ server::http::head_len ─▶ parse_request_head ─▶ the response the driver would write
//! shard_session(bytes) ─▶ ops ─▶ two sans-IO ShardServers wired together as the driver wires shards
//!     (HELLO done; messages, commits, late-match steps, ticks, reconnects) ─▶ every outgoing message decodes
//! ```
//!
//! Pure like what it drives: no I/O, no clock (time is part of the input), no randomness, so a crash input
//! replays the same way anywhere.
#![doc(hidden)]

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam::utils::CachePadded;

use crate::log::format::ShardParams;
use crate::log::state::LogState;
use crate::log::LogConfig;
use crate::proto::frame::Publish;
use crate::proto::{
    bucket_of, encode_message, fingerprint, BloomParams, Codec, Frame, Hello, Proof, ProofBatch, Role, CIPHERTEXT_LEN,
    PROTOCOL_VERSION, WINDOW_SECONDS,
};
use crate::server::close::CloseReason;
use crate::server::http::{self, Request};
use crate::server::metrics::ShardMetrics;
use crate::server::msg::{ConnId, Request as ShardRequest, Response};
use crate::server::shard::{Clock, FetchPage, ShardServer};
use crate::server::RelayConfig;

/// Target `decode_message`: the frame decoder on one WebSocket message.
pub fn decode_message(data: &[u8]) {
    let codec = Codec::default();
    let msg = Bytes::copy_from_slice(data);
    match codec.decode_message(&msg) {
        Ok(frames) => {
            assert!(!frames.is_empty() && frames.len() <= codec.limits.frames_per_message_max as usize);
            assert_eq!(encode_message(&frames), msg, "a decoded message re-encodes to the same bytes");
        }
        Err(e) => assert!(e.code() >= 1, "a decode error without a wire code: {e}"),
    }
}

/// Target `http_request_head`: the bytes a client sends before the WebSocket upgrade (or a plain GET), cut
/// where the driver cuts them, parsed, and answered as the driver answers.
pub fn http_request_head(data: &[u8]) {
    // The driver reads 2 KiB at a time and stops once it holds REQUEST_HEAD_BYTES_MAX bytes.
    let readable = data.len().min(http::REQUEST_HEAD_BYTES_MAX + 2047);
    let buf = &data[..readable];
    let Some(len) = http::head_len(buf) else { return };
    assert!(len <= buf.len() && buf[..len].ends_with(b"\r\n\r\n"), "head_len {len} is not a head end");
    match http::parse_request_head(&buf[..len]) {
        Ok(Request::WebSocket { path, key, origin }) => {
            assert!(path.starts_with('/') && !key.is_empty());
            let allowed = ["https://app.example".to_owned()];
            if let Err(refused) = http::check_upgrade(&path, origin.as_deref(), "/", &allowed) {
                drop(http::response(refused.status(), "text/plain", &format!("{refused}\n")));
            }
            let response = http::websocket_accept_response(&key);
            assert!(response.starts_with("HTTP/1.1 101 ") && response.ends_with("\r\n\r\n"));
        }
        Ok(Request::Get { path }) => {
            assert!(path.starts_with('/') && !path.contains('?'), "path {path:?}");
            drop(http::response("404 Not Found", "text/plain", &path));
        }
        Err(e) => drop(http::response("400 Bad Request", "text/plain", &format!("{e}\n"))),
    }
}

/// Start of the window the `shard_session` target's clock starts in.
pub const SESSION_WINDOW_S: u64 = 1_700_000_000 - 1_700_000_000 % WINDOW_SECONDS;
/// Shards in the `shard_session` target (two: SUBSCRIBE, FETCH and deliveries cross shards).
pub const SESSION_SHARDS: usize = 2;
/// Most late-match steps one op runs.
const LATE_STEPS_MAX: usize = 64;

/// The `shard_session` ops, one byte each; `op % 8` selects, `op / 8` is the op's argument.
pub mod op {
    /// A WebSocket binary message on connection `arg % 2`: a big-endian u16 length, then that many bytes.
    pub const MESSAGE: u8 = 0;
    /// Every commit job of both shards is written and made durable.
    pub const COMMIT: u8 = 1;
    /// Late-match steps on both shards until none is pending (at most 64 each).
    pub const LATE: u8 = 2;
    /// The clock moves `arg` seconds (windows are 10 s; the slow-consumer grace is 5 s); both shards tick.
    pub const TICK: u8 = 3;
    /// Connection `arg % 2` closes (its subscribers are detached) and a new one takes its place, past HELLO.
    pub const RECONNECT: u8 = 4;
    /// Connection `arg % 2` publishes [`session_proof`]`(arg / 2)` (a valid proof; again: a duplicate), with
    /// sequence number 1 + the PUBLISHes this op sent on that connection before.
    pub const PUBLISH: u8 = 5;
    /// The client of connection `arg % 2` stops reading, or reads again (what was queued meanwhile is read).
    pub const STALL: u8 = 6;
    /// Retention runs on both shards at the current clock (between commits, as the driver runs it).
    pub const RETENTION: u8 = 7;
}

/// The `auth_nonce` of every `shard_session` connection (the relay's node id there is `[7; 16]`).
pub const SESSION_AUTH_NONCE: [u8; 16] = [3; 16];

/// A valid proof of the session's first window, numbered `n`.
pub fn session_proof(n: u8) -> Proof {
    let commit = [n; 32];
    let w = SESSION_WINDOW_S;
    Proof::new(
        bucket_of(&commit, crate::proto::NUM_BUCKETS_DEFAULT),
        w,
        &commit,
        &fingerprint(&commit, w),
        &[n; CIPHERTEXT_LEN],
    )
}

/// Target `shard_session`: a client's session against a two-shard relay core, as a sequence of ops (see
/// [`op`]). Connection `i` lives on shard `i`; both have sent HELLO. After every op the cross-shard queues,
/// FETCH reads, wake-ups and send queues are drained the way the driver drains them, and every message a
/// client would receive must decode with the limits the relay announced. Returns what the clients received
/// (for tests that check a seed reaches what it was built for).
pub fn shard_session(data: &[u8]) -> SessionSummary {
    let mut s = Session::new();
    let mut input = data;
    while let Some((&op, rest)) = input.split_first() {
        input = rest;
        let (kind, arg) = (op % 8, op / 8);
        let side = usize::from(arg % 2);
        match kind {
            op::MESSAGE => {
                let len = match input {
                    [a, b, rest @ ..] => {
                        input = rest;
                        usize::from(u16::from_be_bytes([*a, *b])).min(input.len())
                    }
                    _ => break,
                };
                let (msg, rest) = input.split_at(len);
                input = rest;
                s.message(side, &Bytes::copy_from_slice(msg));
            }
            op::COMMIT => s.commit(),
            op::LATE => s.late(),
            op::TICK => {
                s.clock.mono_us += u64::from(arg) * 1_000_000;
                s.clock.unix_s += u64::from(arg);
                for shard in 0..SESSION_SHARDS {
                    s.shards[shard].handle_tick(s.clock);
                    s.drain(shard);
                }
            }
            op::RECONNECT => {
                s.close(side);
                s.connect(side);
            }
            op::PUBLISH => s.publish(side, arg / 2),
            op::STALL => {
                s.stalled[side] = !s.stalled[side];
                s.drain(side);
            }
            _ => {
                debug_assert_eq!(kind, op::RETENTION);
                // Retention runs between commits: finish the in-flight ones first.
                s.commit();
                for shard in 0..SESSION_SHARDS {
                    drop(s.shards[shard].handle_retention(s.clock.unix_s, s.clock));
                    s.drain(shard);
                }
            }
        }
    }
    s.summary
}

/// What the clients of a `shard_session` received, after the HELLO_REPLYs of the first two connections.
#[derive(Debug, Clone, Default)]
pub struct SessionSummary {
    /// Frames received, by frame type byte (`proto::frame::frame_type`).
    pub frames_by_type: Vec<(u8, u32)>,
    /// The code of every ERROR received, in order.
    pub error_codes: Vec<u16>,
    /// Proofs received in DELIVER and FETCH_REPLY frames.
    pub proofs_received: u32,
    /// Why the relay closed a client connection, for each it closed.
    pub closes: Vec<CloseReason>,
}

impl SessionSummary {
    /// Frames of type `frame_type` received.
    pub fn frames(&self, frame_type: u8) -> u32 {
        self.frames_by_type.iter().find(|(t, _)| *t == frame_type).map_or(0, |(_, n)| *n)
    }

    fn record(&mut self, frame: &Frame) {
        let t = frame.type_byte();
        match self.frames_by_type.iter_mut().find(|(seen, _)| *seen == t) {
            Some((_, n)) => *n += 1,
            None => self.frames_by_type.push((t, 1)),
        }
        match frame {
            Frame::Error(e) => self.error_codes.push(e.code.0),
            Frame::Deliver { proofs, .. } | Frame::FetchReply { proofs, .. } => {
                self.proofs_received += proofs.len() as u32;
            }
            _ => {}
        }
    }
}

/// A message from one shard to another, in flight.
enum Mail {
    Request(ShardRequest),
    Response(Response),
}

/// Two shards wired together, one client connection on each.
struct Session {
    shards: Vec<ShardServer>,
    /// The client connection on shard `i`, while open.
    conns: [Option<ConnId>; SESSION_SHARDS],
    /// Whether the client on shard `i` has stopped reading (its send queue fills; ticks may close it).
    stalled: [bool; SESSION_SHARDS],
    /// PUBLISH ops run on each side's connection (their sequence numbers are 1, 2, …).
    publishes: [u64; SESSION_SHARDS],
    clock: Clock,
    /// The client's decoder: the limits and Bloom parameters the relay announces.
    client_codec: Codec,
    mail: VecDeque<(usize, Mail)>,
    summary: SessionSummary,
}

impl Session {
    fn new() -> Self {
        let mut config = RelayConfig::defaults(SESSION_SHARDS);
        config.shards = SESSION_SHARDS;
        let metrics: Arc<[CachePadded<ShardMetrics>]> =
            (0..SESSION_SHARDS).map(|_| CachePadded::new(ShardMetrics::default())).collect();
        let shards = (0..SESSION_SHARDS)
            .map(|id| {
                let params = ShardParams::for_shard(
                    id as u16,
                    SESSION_SHARDS as u16,
                    config.num_buckets,
                    config.window_s as u32,
                );
                // Invariant: a fresh, empty log state with the default configuration is valid.
                let log = LogState::new(LogConfig::new(params)).expect("a fresh log state");
                ShardServer::new(id as u16, &config, [7; 16], [1, 2], metrics.clone(), log)
            })
            .collect();
        let mut s = Self {
            shards,
            conns: [None; SESSION_SHARDS],
            stalled: [false; SESSION_SHARDS],
            publishes: [0; SESSION_SHARDS],
            clock: Clock { unix_s: SESSION_WINDOW_S + 5, mono_us: 1_000_000 },
            client_codec: Codec::new(config.limits, BloomParams::default()),
            mail: VecDeque::new(),
            summary: SessionSummary::default(),
        };
        for side in 0..SESSION_SHARDS {
            s.connect(side);
        }
        s.summary = SessionSummary::default();
        s
    }

    fn connect(&mut self, side: usize) {
        // A fixed CLAIM nonce (and node id [7; 16]): seeds carry CLAIMs signed for it, so the fuzzer reaches
        // SUBSCRIBE and FETCH of claimed ids (a real relay draws a fresh nonce per connection).
        let conn = self.shards[side].handle_conn_open(self.clock, SESSION_AUTH_NONCE);
        self.conns[side] = Some(conn);
        self.publishes[side] = 0;
        self.stalled[side] = false;
        let hello = Frame::Hello(Hello { version: PROTOCOL_VERSION, role: Role::Client, node_id: [0; 16] });
        self.message(side, &encode_message(&[hello]));
    }

    fn close(&mut self, side: usize) {
        if let Some(conn) = self.conns[side].take() {
            self.shards[side].handle_peer_closed(conn);
            self.drain(side);
            self.shards[side].handle_conn_closed(conn, self.clock);
            self.drain(side);
        }
    }

    fn message(&mut self, side: usize, msg: &Bytes) {
        let Some(conn) = self.conns[side] else { return };
        self.shards[side].handle_message(conn, msg, self.clock);
        self.drain(side);
    }

    /// Publishes session proof `n` on `side`, with that connection's next sequence number.
    fn publish(&mut self, side: usize, n: u8) {
        self.publishes[side] += 1;
        let seq = self.publishes[side];
        let proofs = ProofBatch::from_proofs([session_proof(n).view()]);
        self.message(side, &encode_message(&[Frame::Publish(Publish { seq, proofs })]));
    }

    /// Runs every commit job of both shards to completion, as a driver whose writes all succeed.
    fn commit(&mut self) {
        for shard in 0..SESSION_SHARDS {
            while let Some(job) = self.shards[shard].poll_commit_job(self.clock.unix_s, self.clock.mono_us) {
                self.shards[shard].handle_commit_written(job.id);
                self.shards[shard].handle_commit_done(job.id, job.bytes(), self.clock);
                self.drain(shard);
            }
        }
    }

    fn late(&mut self) {
        for shard in 0..SESSION_SHARDS {
            for _ in 0..LATE_STEPS_MAX {
                if !self.shards[shard].poll_late_work() {
                    break;
                }
                self.shards[shard].handle_late_match(self.clock);
                self.drain(shard);
            }
        }
    }

    /// Drains what a call on `shard` queued, delivering cross-shard mail and writing out send queues until
    /// nothing is left (each call is followed by the drain of its own shard, so the drain contract holds).
    fn drain(&mut self, shard: usize) {
        self.collect(shard);
        loop {
            while let Some((to, mail)) = self.mail.pop_front() {
                match mail {
                    Mail::Request(r) => self.shards[to].handle_request(r, self.clock),
                    Mail::Response(r) => self.shards[to].handle_response(r, self.clock),
                }
                self.collect(to);
            }
            let mut closed = false;
            for side in 0..SESSION_SHARDS {
                closed |= self.flush(side);
            }
            if !closed && self.mail.is_empty() {
                return;
            }
        }
    }

    /// Takes `shard`'s cross-shard mail and answers its FETCH reads (with a valid proof per record).
    fn collect(&mut self, shard: usize) {
        loop {
            let s = &mut self.shards[shard];
            while let Some((to, r)) = s.poll_request() {
                self.mail.push_back((to, Mail::Request(r)));
            }
            while let Some((to, r)) = s.poll_response() {
                self.mail.push_back((to, Mail::Response(r)));
            }
            let Some(read) = s.poll_fetch_read() else { return };
            let proof = Bytes::copy_from_slice(session_proof(0).as_bytes());
            let page = FetchPage { proofs: vec![proof; read.reads.len()], skipped: 0 };
            s.handle_fetch_read(read, Some(page), self.clock);
        }
    }

    /// Writes out what the shard of `side` queued for its client, unless that client stopped reading (every
    /// message must decode); a closing connection ends once its queue is written, or at once when its client
    /// does not read (the driver's close drain expiring). Returns whether one ended.
    fn flush(&mut self, side: usize) -> bool {
        let s = &mut self.shards[side];
        while s.poll_wakeup().is_some() {}
        let Some(conn) = self.conns[side] else { return false };
        if !self.stalled[side] {
            let mut written = false;
            while let Some(msg) = s.poll_message(conn, self.clock) {
                written = true;
                match self.client_codec.decode_message(&msg) {
                    Ok(frames) => frames.iter().for_each(|f| self.summary.record(f)),
                    Err(e) => panic!("the relay sent a message its client cannot decode ({e}): {:02x?}", &msg[..]),
                }
            }
            if written {
                s.handle_written(conn, self.clock);
            }
        }
        let Some(reason) = s.close_reason(conn) else { return false };
        self.summary.closes.push(reason);
        self.conns[side] = None;
        s.handle_conn_closed(conn, self.clock);
        self.collect(side);
        true
    }
}
