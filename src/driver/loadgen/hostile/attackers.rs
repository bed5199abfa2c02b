//! The four hostile loads of `tessera perf hostile`, each on its own OS thread, each keeping its pressure up
//! until told to stop (a connection the relay closes is opened again), each counting what the relay did to it.
//!
//! ```text
//! Attack::start(plan)
//!   idle TCP   : N sockets that connect and send nothing          ─▶ reopened when the relay hangs up
//!   silent WS  : N sockets that finish the upgrade, never HELLO    ─▶ reopened when the relay hangs up
//!   saturating : N connections × 64 subscriber ids (each validly claimed), each SUBSCRIBE with all-ones filters over the longest
//!                window range, one entry per bucket ─▶ SUBSCRIBED (accepted: a defect) | ERROR (refused)
//!                | close (the relay's protocol-error budget, 8); then 5 s, then a new connection and round
//!   flooder    : PUBLISHes of refused proofs, pipelined, replies never read ─▶ blocked (backpressure) | closed
//! Attack::stop() ─▶ AttackCounters (what each saw)
//! ```
//! Source addresses rotate over `plan.sources` (127.0.1.x by default) so per-address limits see several hosts
//! and the healthy pair, on 127.0.0.1, is never refused for sharing an address with an attacker.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::raw_ws::{binary_frame, connect_from, recv, relay_hung_up, upgrade, Message};
use crate::perf::hostile::AttackCounts;
use crate::proto::frame::{Publish, Subscribe};
use crate::proto::{
    encode_message, BloomFilter, Codec, ErrorCode, Frame, Hello, Proof, ProofBatch, RelayParams, Role, SubscribeEntry,
    SubscriberKeyPair, CIPHERTEXT_LEN, PROTOCOL_VERSION,
};

/// How long one connect or upgrade may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the idle and silent attackers look for connections the relay closed.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// How long a saturating connection waits for the answer to one SUBSCRIBE.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a saturating attacker waits after its round of SUBSCRIBEs (or after the relay closed it) before it
/// reconnects and tries again: the attack of the issue (64 ids per connection, then disconnect), repeated, not a CPU-bound loop
/// (on one machine a tight loop would measure the attacker's CPU, not the relay's defences).
const SATURATING_ROUND_PAUSE: Duration = Duration::from_secs(5);
/// Subscriber ids per saturating connection (the relay's default per-connection cap).
const IDS_PER_CONNECTION: usize = 64;
/// Proofs per flooding PUBLISH: each is refused, so each earns the flooder one ERROR frame.
const FLOOD_PROOFS_PER_PUBLISH: usize = 64;
/// Largest relay frame payload an attacker reads (HELLO_REPLY, ERROR, SUBSCRIBED are far smaller).
const REPLY_PAYLOAD_BYTES_MAX: usize = 1 << 20;

/// What the attack does.
#[derive(Clone, Debug)]
pub struct AttackPlan {
    /// The relay's address.
    pub relay: SocketAddr,
    /// Source addresses the attackers rotate over.
    pub sources: Vec<IpAddr>,
    /// TCP connections that send nothing.
    pub idle_tcp: usize,
    /// WebSocket connections that finish the upgrade and send nothing.
    pub silent_ws: usize,
    /// Connections that SUBSCRIBE saturated filters.
    pub saturating: usize,
    /// Connections that pipeline PUBLISHes and never read.
    pub flooders: usize,
    /// Nice value of every attacker thread (0: the relay's and the healthy pair's priority; 19: the lowest).
    pub nice: i32,
}

/// Live counters, shared with the attacker threads.
#[derive(Default)]
struct Counters {
    idle_open: AtomicU64,
    idle_hung_up: AtomicU64,
    idle_connect_failed: AtomicU64,
    ws_open: AtomicU64,
    ws_hung_up: AtomicU64,
    ws_connect_failed: AtomicU64,
    saturating_sent: AtomicU64,
    saturating_accepted: AtomicU64,
    saturating_refused: AtomicU64,
    saturating_closed: AtomicU64,
    saturating_other: AtomicU64,
    flood_publishes: AtomicU64,
    flood_bytes: AtomicU64,
    flood_blocked_ms_max: AtomicU64,
    flood_closed: AtomicU64,
}

/// The running attack.
pub struct Attack {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
}

impl Attack {
    /// Starts every attacker thread.
    pub fn start(plan: &AttackPlan) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let mut threads = Vec::new();
        let nice = plan.nice;
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            let body = move || {
                set_thread_nice(nice);
                f()
            };
            // A thread fails to start only when the process is out of resources; the benchmark means nothing
            // without its attackers, so it stops there.
            std::thread::Builder::new().name(name.into()).spawn(body).expect("spawning an attacker thread")
        };
        let (p, s, c) = (plan.clone(), stop.clone(), counters.clone());
        threads.push(spawn("hostile-idle", Box::new(move || idle_tcp(&p, &s, &c))));
        let (p, s, c) = (plan.clone(), stop.clone(), counters.clone());
        threads.push(spawn("hostile-silent", Box::new(move || silent_ws(&p, &s, &c))));
        for i in 0..plan.saturating {
            let (p, s, c) = (plan.clone(), stop.clone(), counters.clone());
            threads.push(spawn("hostile-saturate", Box::new(move || saturating(&p, i, &s, &c))));
        }
        for i in 0..plan.flooders {
            let (p, s, c) = (plan.clone(), stop.clone(), counters.clone());
            threads.push(spawn("hostile-flood", Box::new(move || flooder(&p, i, &s, &c))));
        }
        Self { stop, counters, threads }
    }

    /// What the attackers have seen so far.
    pub fn counts(&self) -> AttackCounts {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AttackCounts {
            idle_open: get(&c.idle_open),
            idle_hung_up: get(&c.idle_hung_up),
            idle_connect_failed: get(&c.idle_connect_failed),
            silent_ws_open: get(&c.ws_open),
            silent_ws_hung_up: get(&c.ws_hung_up),
            silent_ws_connect_failed: get(&c.ws_connect_failed),
            saturating_subscribes_sent: get(&c.saturating_sent),
            saturating_accepted: get(&c.saturating_accepted),
            saturating_refused: get(&c.saturating_refused),
            saturating_closed_by_relay: get(&c.saturating_closed),
            saturating_other: get(&c.saturating_other),
            flood_publishes: get(&c.flood_publishes),
            flood_bytes: get(&c.flood_bytes),
            flood_longest_blocked_ms: get(&c.flood_blocked_ms_max),
            flood_closed_by_relay: get(&c.flood_closed),
        }
    }

    /// Stops every attacker and closes its connections.
    pub fn stop(mut self) -> AttackCounts {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.counts()
    }
}

fn source(plan: &AttackPlan, i: usize) -> IpAddr {
    plan.sources[i % plan.sources.len()]
}

/// Keeps `plan.idle_tcp` connections open that send nothing.
fn idle_tcp(plan: &AttackPlan, stop: &AtomicBool, c: &Counters) {
    let open = |i: usize| -> Option<TcpStream> {
        let s = connect_from(source(plan, i), plan.relay, CONNECT_TIMEOUT).ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    };
    hold(plan.idle_tcp, open, stop, &c.idle_open, &c.idle_hung_up, &c.idle_connect_failed);
}

/// Keeps `plan.silent_ws` upgraded WebSocket connections open that never send HELLO.
fn silent_ws(plan: &AttackPlan, stop: &AtomicBool, c: &Counters) {
    let open = |i: usize| -> Option<TcpStream> {
        let mut s = connect_from(source(plan, i + plan.idle_tcp), plan.relay, CONNECT_TIMEOUT).ok()?;
        s.set_read_timeout(Some(CONNECT_TIMEOUT)).ok()?;
        upgrade(&mut s, plan.relay).ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    };
    hold(plan.silent_ws, open, stop, &c.ws_open, &c.ws_hung_up, &c.ws_connect_failed);
}

/// Holds `n` connections made by `open`, reopening any the relay closes, until `stop`.
fn hold(
    n: usize,
    open: impl Fn(usize) -> Option<TcpStream>,
    stop: &AtomicBool,
    gauge: &AtomicU64,
    hung_up: &AtomicU64,
    failed: &AtomicU64,
) {
    let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    while !stop.load(Ordering::Relaxed) {
        for (i, slot) in conns.iter_mut().enumerate() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if slot.as_ref().is_some_and(relay_hung_up) {
                *slot = None;
                hung_up.fetch_add(1, Ordering::Relaxed);
            }
            if slot.is_none() {
                *slot = open(i);
                if slot.is_none() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        gauge.store(conns.iter().filter(|s| s.is_some()).count() as u64, Ordering::Relaxed);
        std::thread::sleep(POLL_EVERY);
    }
}

/// A connection past HELLO: the stream and the relay's parameters.
fn hello(plan: &AttackPlan, from: IpAddr) -> Option<(TcpStream, RelayParams)> {
    let mut s = connect_from(from, plan.relay, CONNECT_TIMEOUT).ok()?;
    s.set_read_timeout(Some(REPLY_TIMEOUT)).ok()?;
    upgrade(&mut s, plan.relay).ok()?;
    let hello = Frame::Hello(Hello { version: PROTOCOL_VERSION, role: Role::Client, node_id: [0; 16] });
    std::io::Write::write_all(&mut s, &binary_frame(&encode_message(&[hello]))).ok()?;
    loop {
        if let Message::Binary(payload) = recv(&mut s, REPLY_PAYLOAD_BYTES_MAX).ok()? {
            let frames = Codec::default().decode_message(&Bytes::from(payload)).ok()?;
            return match frames.into_iter().next()? {
                Frame::HelloReply(params) => Some((s, params)),
                _ => None,
            };
        }
    }
}

/// One saturating subscriber connection, reconnecting after each round of 64 SUBSCRIBEs.
fn saturating(plan: &AttackPlan, index: usize, stop: &AtomicBool, c: &Counters) {
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let Some((mut s, params)) = hello(plan, source(plan, index)) else {
            c.saturating_other.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(POLL_EVERY);
            continue;
        };
        let codec = Codec::new(params.limits, params.bloom);
        let window_s = u64::from(params.window_s.max(1));
        let now_s = (crate::driver::clock::unix_now_ns() / 1_000_000_000) as u64;
        let from = (now_s.saturating_sub(10) / window_s) * window_s;
        let ahead = u64::from(params.limits.subscription_windows_ahead_max);
        let to = (now_s / window_s) * window_s + ahead.saturating_sub(1) * window_s;
        // Exactly `byte_len` bytes for parameters the codec already accepted in HELLO_REPLY.
        let filter = BloomFilter::from_bytes(params.bloom, &vec![0xFF; params.bloom.byte_len()])
            .expect("an all-ones filter of the announced size is well formed");
        for id in 0..IDS_PER_CONNECTION {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            // A key of its own per id, claimed (validly) in the SUBSCRIBE's message: the attack is the filters.
            let mut secret = [0u8; 32];
            secret[..8].copy_from_slice(&(index as u64).to_be_bytes());
            secret[8..16].copy_from_slice(&(round << 8 | id as u64).to_be_bytes());
            let key = SubscriberKeyPair::from_secret(&secret);
            let claim = Frame::Claim(key.claim(&params.node_id, &params.auth_nonce, &[0; 32]));
            let entries = (0..params.num_buckets)
                .map(|bucket| SubscribeEntry { bucket, window_from_s: from, window_to_s: to, filter: filter.clone() })
                .collect();
            let frame = Frame::Subscribe(Subscribe { subscriber: key.id(), entries });
            if std::io::Write::write_all(&mut s, &binary_frame(&encode_message(&[claim, frame]))).is_err() {
                break;
            }
            c.saturating_sent.fetch_add(1, Ordering::Relaxed);
            let answer = subscribe_answer(&mut s, &codec);
            let counter = match answer {
                Answer::Subscribed => &c.saturating_accepted,
                Answer::Refused => &c.saturating_refused,
                // The relay spends a protocol error on each saturated filter and closes after the budget.
                Answer::Closed => &c.saturating_closed,
                Answer::Ended => &c.saturating_other,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if matches!(answer, Answer::Closed | Answer::Ended) {
                break;
            }
        }
        let round_end = Instant::now() + SATURATING_ROUND_PAUSE;
        while Instant::now() < round_end && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(POLL_EVERY);
        }
    }
}

/// Lowers the calling thread's CPU priority to `nice` (Linux: a nice value is per thread). The attackers stand in
/// for hosts elsewhere on the network; on one small machine the kernel would otherwise share the cores among
/// the ~100 attacker threads and the relay's few in proportion to their number, and the benchmark would
/// measure the attackers' own CPU rather than what the relay's defences cost (docs/PERFORMANCE.md §Hostile
/// load). Best effort: a failure leaves the thread at its priority, which only makes the attack heavier.
fn set_thread_nice(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: gettid has no preconditions; setpriority only reads its integer arguments, and `who` is this
    // thread's own id, so it changes nothing but this thread's scheduling priority.
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) } != 0;
    if failed {
        tracing::warn!(nice, "could not lower an attacker thread's priority: {}", std::io::Error::last_os_error());
    }
}

/// How the relay answered one saturating SUBSCRIBE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// SUBSCRIBED: the saturated filter was accepted (a defect).
    Subscribed,
    /// An ERROR other than OVERLOADED.
    Refused,
    /// A close frame.
    Closed,
    /// The connection ended without one, timed out or sent something undecodable.
    Ended,
}

fn subscribe_answer(s: &mut TcpStream, codec: &Codec) -> Answer {
    loop {
        let Ok(message) = recv(s, REPLY_PAYLOAD_BYTES_MAX) else { return Answer::Ended };
        match message {
            Message::Binary(payload) => {
                let Ok(frames) = codec.decode_message(&Bytes::from(payload)) else { return Answer::Ended };
                for frame in frames {
                    match frame {
                        Frame::Subscribed { .. } => return Answer::Subscribed,
                        Frame::Error(e) if e.code != ErrorCode::OVERLOADED => return Answer::Refused,
                        _ => {}
                    }
                }
            }
            Message::Close(_) => return Answer::Closed,
            Message::Other => {}
        }
    }
}

/// A publisher that pipelines PUBLISHes of refused proofs and never reads a reply.
fn flooder(plan: &AttackPlan, index: usize, stop: &AtomicBool, c: &Counters) {
    // Window 0 is long past: every proof is refused as stale and earns one ERROR frame.
    let proof = Proof::new(0, 0, &[7; 32], &[9; 8], &[0; CIPHERTEXT_LEN]);
    let batch = ProofBatch::from_proofs(std::iter::repeat_n(proof.view(), FLOOD_PROOFS_PER_PUBLISH));
    while !stop.load(Ordering::Relaxed) {
        let Some((mut s, _params)) = hello(plan, source(plan, index + 1)) else {
            std::thread::sleep(POLL_EVERY);
            continue;
        };
        let _ = s.set_write_timeout(Some(POLL_EVERY));
        let mut seq = 0u64;
        let mut blocked_since: Option<Instant> = None;
        let mut pending: Vec<u8> = Vec::new();
        let mut written = 0usize;
        while !stop.load(Ordering::Relaxed) {
            if written == pending.len() {
                seq += 1;
                let publish = Frame::Publish(Publish { seq, proofs: batch.clone() });
                pending = binary_frame(&encode_message(&[publish]));
                written = 0;
            }
            match std::io::Write::write(&mut s, &pending[written..]) {
                Ok(0) => break,
                Ok(n) => {
                    written += n;
                    c.flood_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    if written == pending.len() {
                        c.flood_publishes.fetch_add(1, Ordering::Relaxed);
                    }
                    blocked_since = None;
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    let since = *blocked_since.get_or_insert_with(Instant::now);
                    c.flood_blocked_ms_max.fetch_max(since.elapsed().as_millis() as u64, Ordering::Relaxed);
                }
                Err(_) => break,
            }
        }
        if !stop.load(Ordering::Relaxed) {
            c.flood_closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
