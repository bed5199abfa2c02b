//! `tessera perf idle-cover`: what connected, idle clients sending client cover cost the relay.
//!
//! ```text
//! RelayProcess::start ─▶ settle ─▶ relay CPU over `seconds` (/proc/PID/stat): the idle relay's own cover
//!   ─▶ N clients on T threads: TCP (127.0.0.1) ─▶ upgrade ─▶ HELLO ─▶ SUBSCRIBE (a padded client's shape: one
//!      60-item filter per bucket holding its own cover fingerprints) ─▶ SUBSCRIBED
//!   ─▶ each client: client::CoverSchedule (the session's state machine) ─▶ k cover proofs (client::CoverKey)
//!      at one random instant per round ─▶ PUBLISH; replies (ACK, its cover DELIVERed back) drained and counted
//!   ─▶ relay CPU over `seconds` with the clients silent (their subscriptions' cost, no client cover)
//!   ─▶ clients send cover ─▶ one round of warm-up ─▶ relay CPU over `seconds` ─▶ cover = that − silent
//! ```
//! Blocking sockets with a write timeout for setup, then non-blocking: a thread sleeps until its earliest
//! send instant (a heap of instants) and drains replies every `DRAIN_EVERY`, so the load generator itself stays
//! light on the shared machine. Everything is bounded: N connections, one reply buffer per thread.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::hostile::raw_ws::{binary_frame, connect_from, recv, upgrade, Message};
use super::process::{raise_nofile_limit, ProcSample, RelayProcess};
use crate::client::{CoverKey, CoverSchedule};
use crate::driver::clock::unix_now_us;
use crate::proto::claim::SubscriberKeyPair;
use crate::proto::frame::{Publish, Subscribe};
use crate::proto::{
    encode_message, BloomFilter, Codec, Frame, Hello, ProofBatch, RelayParams, Role, SubscribeEntry, PROTOCOL_VERSION,
};

/// How often a thread reads what the relay sent its connections.
const DRAIN_EVERY: Duration = Duration::from_millis(250);
/// Setup timeouts (connect, upgrade, HELLO, SUBSCRIBED).
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the connection phase may take before the measurement starts with whoever connected.
const CONNECT_PHASE_MAX: Duration = Duration::from_secs(600);
/// Largest reply read during setup.
const REPLY_BYTES_MAX: usize = 1 << 20;
/// Items per filter, as a padded client fills them.
const FILTER_ITEMS: usize = 60;

/// What to run.
#[derive(Clone, Debug)]
pub struct IdleCoverConfig {
    /// Connected clients.
    pub clients: usize,
    /// Client cover proofs per round.
    pub proofs_per_round: u32,
    /// Measured seconds per phase (idle relay, relay with the clients).
    pub seconds: u64,
    /// Relay shards.
    pub shards: usize,
    /// Load generator threads.
    pub threads: usize,
}

/// What was measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IdleCoverReport {
    /// Clients asked for.
    pub clients: usize,
    /// Clients connected and subscribed.
    pub connected: usize,
    /// Proofs per round per client.
    pub proofs_per_round: u32,
    /// Round length, seconds (the relay's window).
    pub round_s: u64,
    /// Relay shards.
    pub shards: usize,
    /// Measured seconds per phase.
    pub seconds: f64,
    /// Relay CPU, cores, with no client (its own DP cover only).
    pub relay_cores_idle: f64,
    /// Relay CPU, cores, with the clients connected and subscribed but silent (what they cost without client
    /// cover: mostly matching the relay's own cover against their filters and DELIVERing the false positives).
    pub relay_cores_clients_silent: f64,
    /// Relay CPU, cores, with the clients sending cover.
    pub relay_cores_with_clients: f64,
    /// What the clients' cover costs: with cover minus silent.
    pub relay_cores_client_cover: f64,
    /// Proofs the clients published per second in the measured phase.
    pub proofs_per_s: f64,
    /// Bytes a client sent per second (WebSocket frames), on average.
    pub up_bytes_per_s_per_client: f64,
    /// Bytes a client received per second (its cover back, ACKs, Bloom false positives), on average.
    pub down_bytes_per_s_per_client: f64,
    /// Relay peak RSS, bytes.
    pub relay_peak_rss_bytes: u64,
}

impl IdleCoverReport {
    /// The target of docs/PERFORMANCE.md §Client cover: ≤ 0.25 cores for the clients' cover.
    pub fn meets_target(&self) -> bool {
        self.connected * 100 >= self.clients * 99 && self.relay_cores_client_cover <= 0.25
    }

    /// Human-readable lines.
    pub fn to_text(&self) -> String {
        format!(
            "idle-cover: {} of {} clients connected, {} proof(s) per {} s round each, relay {} shard(s), {:.0} s phases\n\
             relay CPU: {:.3} cores alone, {:.3} with the clients silent, {:.3} with them sending cover: client cover \
             costs {:.3} cores (target ≤ 0.25)\n\
             published {:.1} proofs/s; per client {:.1} B/s up, {:.1} B/s down; relay peak RSS {:.0} MiB",
            self.connected,
            self.clients,
            self.proofs_per_round,
            self.round_s,
            self.shards,
            self.seconds,
            self.relay_cores_idle,
            self.relay_cores_clients_silent,
            self.relay_cores_with_clients,
            self.relay_cores_client_cover,
            self.proofs_per_s,
            self.up_bytes_per_s_per_client,
            self.down_bytes_per_s_per_client,
            self.relay_peak_rss_bytes as f64 / (1u64 << 20) as f64,
        )
    }
}

/// Why the run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdleCoverError {
    /// The relay did not start.
    #[error(transparent)]
    Relay(#[from] super::process::RelayProcessError),
    /// The relay's URL or process could not be read.
    #[error("{0}")]
    Setup(String),
}

/// Counters shared by the client threads.
#[derive(Default)]
struct Counters {
    /// Clients whose setup ended, connected or not.
    attempted: AtomicU64,
    connected: AtomicU64,
    proofs: AtomicU64,
    up_bytes: AtomicU64,
    down_bytes: AtomicU64,
}

/// One connected client.
struct CoverClient {
    stream: TcpStream,
    schedule: CoverSchedule,
    key: CoverKey,
}

/// Runs the benchmark; progress lines go to `progress`.
pub fn run(config: &IdleCoverConfig, progress: &mut dyn Write) -> Result<IdleCoverReport, IdleCoverError> {
    let nofile = raise_nofile_limit().map_err(|e| IdleCoverError::Setup(format!("RLIMIT_NOFILE: {e}")))?;
    let _ = writeln!(progress, "idle-cover: open files limit {nofile}");
    let exe = std::env::current_exe().map_err(|e| IdleCoverError::Setup(e.to_string()))?;
    let mut relay = RelayProcess::start(&exe, config.shards, false)?;
    let addr: SocketAddr = relay
        .url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .parse()
        .map_err(|_| IdleCoverError::Setup(format!("relay URL {:?}", relay.url)))?;
    let pid = relay.pid();
    let cpu = || ProcSample::read(pid).map(|s| s.cpu_s).ok_or_else(|| IdleCoverError::Setup("relay /proc".into()));
    std::thread::sleep(Duration::from_secs(2));
    let _ = writeln!(
        progress,
        "idle-cover: relay at {} (pid {pid}); measuring it idle for {} s",
        relay.url, config.seconds
    );
    let measure = |seconds: u64| -> Result<(f64, f64), IdleCoverError> {
        let (c0, t0) = (cpu()?, Instant::now());
        std::thread::sleep(Duration::from_secs(seconds));
        let wall = t0.elapsed().as_secs_f64();
        Ok(((cpu()? - c0) / wall, wall))
    };
    let (idle, _) = measure(config.seconds)?;

    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sending = Arc::new(AtomicBool::new(false));
    let threads = config.threads.max(1);
    let round_s = Arc::new(AtomicU64::new(10));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let n = config.clients / threads + usize::from(t < config.clients % threads);
            let (counters, stop, round_s, k) =
                (counters.clone(), stop.clone(), round_s.clone(), config.proofs_per_round);
            let sending = sending.clone();
            std::thread::spawn(move || client_thread(addr, n, k, &counters, [&stop, &sending], &round_s))
        })
        .collect();
    // Every setup ends within a few SETUP_TIMEOUTs; a loaded machine connects ~100 clients a second.
    let deadline = Instant::now() + CONNECT_PHASE_MAX;
    while (counters.attempted.load(Ordering::Relaxed) as usize) < config.clients && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let connected = counters.connected.load(Ordering::Relaxed) as usize;
    let round = round_s.load(Ordering::Relaxed);
    let _ =
        writeln!(progress, "idle-cover: {connected} clients connected and subscribed; silent for {} s", config.seconds);
    std::thread::sleep(Duration::from_secs(2));
    let (silent, _) = measure(config.seconds)?;
    sending.store(true, Ordering::Relaxed);
    let _ = writeln!(progress, "idle-cover: clients send cover; one round of warm-up");
    std::thread::sleep(Duration::from_secs(round + 1));
    let _ = writeln!(progress, "idle-cover: measuring for {} s", config.seconds);
    let (p0, u0, d0) = (
        counters.proofs.load(Ordering::Relaxed),
        counters.up_bytes.load(Ordering::Relaxed),
        counters.down_bytes.load(Ordering::Relaxed),
    );
    let (with_clients, wall) = measure(config.seconds)?;
    let per_client = |now: u64, before: u64| (now - before) as f64 / wall / connected.max(1) as f64;
    let proofs_per_s = (counters.proofs.load(Ordering::Relaxed) - p0) as f64 / wall;
    let up = per_client(counters.up_bytes.load(Ordering::Relaxed), u0);
    let down = per_client(counters.down_bytes.load(Ordering::Relaxed), d0);
    let peak = ProcSample::read(pid).map_or(0, |s| s.peak_rss_bytes);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    relay.stop();
    Ok(IdleCoverReport {
        clients: config.clients,
        connected,
        proofs_per_round: config.proofs_per_round,
        round_s: round,
        shards: config.shards,
        seconds: wall,
        relay_cores_idle: idle,
        relay_cores_clients_silent: silent,
        relay_cores_with_clients: with_clients,
        relay_cores_client_cover: with_clients - silent,
        proofs_per_s,
        up_bytes_per_s_per_client: up,
        down_bytes_per_s_per_client: down,
        relay_peak_rss_bytes: peak,
    })
}

/// Connects `n` clients, then (once `flags[1]`, sending, is set) serves their cover rounds until `flags[0]`, stop.
fn client_thread(addr: SocketAddr, n: usize, k: u32, c: &Counters, flags: [&AtomicBool; 2], round_s: &AtomicU64) {
    let [stop, sending] = flags;
    let mut rng = ChaCha20Rng::from_entropy();
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if let Some(client) = connect_client(addr, k, &mut rng, round_s) {
            c.connected.fetch_add(1, Ordering::Relaxed);
            clients.push(client);
        }
        c.attempted.fetch_add(1, Ordering::Relaxed);
    }
    let mut due: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    for (i, client) in clients.iter_mut().enumerate() {
        due.push(Reverse((client.schedule.next_slot_us(unix_now_us(), &mut rng), i)));
    }
    let mut buffer = vec![0u8; 64 << 10];
    let mut drained_at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = unix_now_us();
        while let Some(&Reverse((at, i))) = due.peek() {
            if at > now {
                break;
            }
            due.pop();
            let client = &mut clients[i];
            let slot = client.schedule.poll_slot(now, &mut rng).filter(|_| sending.load(Ordering::Relaxed));
            if let Some(slot) = slot {
                let proofs: Vec<_> =
                    (0..slot.dummies).map(|s| client.key.proof(slot.window_start_s, s, 64, &mut rng)).collect();
                let batch = ProofBatch::from_proofs(proofs.iter().map(|p| p.view()));
                let frame = binary_frame(&encode_message(&[Frame::Publish(Publish { seq: now, proofs: batch })]));
                if write_nonblocking(&mut client.stream, &frame) {
                    c.proofs.fetch_add(u64::from(slot.dummies), Ordering::Relaxed);
                    c.up_bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
                }
            }
            due.push(Reverse((client.schedule.next_slot_us(now, &mut rng), i)));
        }
        if drained_at.elapsed() >= DRAIN_EVERY {
            drained_at = Instant::now();
            for client in &mut clients {
                while let Ok(read) = client.stream.read(&mut buffer) {
                    if read == 0 {
                        break;
                    }
                    c.down_bytes.fetch_add(read as u64, Ordering::Relaxed);
                }
            }
        }
        let next =
            due.peek().map_or(DRAIN_EVERY, |Reverse((at, _))| Duration::from_micros(at.saturating_sub(unix_now_us())));
        std::thread::sleep(next.min(DRAIN_EVERY).max(Duration::from_millis(1)));
    }
}

/// Writes a whole small frame on a non-blocking socket, retrying briefly; `false` if it could not.
fn write_nonblocking(stream: &mut TcpStream, mut bytes: &[u8]) -> bool {
    let deadline = Instant::now() + Duration::from_millis(100);
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(_) => return false,
        }
    }
    true
}

/// TCP, upgrade, HELLO, SUBSCRIBE (one filter per bucket: its cover fingerprints padded to `FILTER_ITEMS`),
/// SUBSCRIBED; then non-blocking.
fn connect_client(addr: SocketAddr, k: u32, rng: &mut ChaCha20Rng, round_s: &AtomicU64) -> Option<CoverClient> {
    let mut s = connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), addr, SETUP_TIMEOUT).ok()?;
    s.set_read_timeout(Some(SETUP_TIMEOUT)).ok()?;
    s.set_write_timeout(Some(SETUP_TIMEOUT)).ok()?;
    upgrade(&mut s, addr).ok()?;
    let hello = Frame::Hello(Hello { version: PROTOCOL_VERSION, role: Role::Client, node_id: [0; 16] });
    s.write_all(&binary_frame(&encode_message(&[hello]))).ok()?;
    let params: RelayParams = match first_frame(&mut s, &Codec::default())? {
        Frame::HelloReply(params) => params,
        _ => return None,
    };
    let codec = Codec::new(params.limits, params.bloom);
    let ws = u64::from(params.window_s.max(1));
    round_s.store(ws, Ordering::Relaxed);
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let key = CoverKey::from_bytes(secret);
    let now_s = unix_now_us() / 1_000_000;
    let current = now_s - now_s % ws;
    let (from, to) =
        (current - ws, current + u64::from(params.limits.subscription_windows_ahead_max.saturating_sub(2)) * ws);
    let mut filters: Vec<(BloomFilter, usize)> =
        (0..params.num_buckets).map(|_| (BloomFilter::new(params.bloom), 0)).collect();
    for e in key.expectations(from, to, ws, k, params.num_buckets) {
        let (filter, items) = &mut filters[usize::from(e.bucket)];
        filter.insert_fingerprint(&e.fingerprint);
        *items += 1;
    }
    let entries = filters
        .into_iter()
        .enumerate()
        .map(|(bucket, (mut filter, items))| {
            for _ in items..FILTER_ITEMS {
                let mut fp = [0u8; 8];
                rng.fill_bytes(&mut fp);
                filter.insert_fingerprint(&fp);
            }
            SubscribeEntry { bucket: bucket as u16, window_from_s: from, window_to_s: to, filter }
        })
        .collect();
    // A capability id: claimed on this connection in the SUBSCRIBE's message (docs/PROTOCOL.md §4.12).
    let mut subscriber_secret = [0u8; 32];
    rng.fill_bytes(&mut subscriber_secret);
    let subscriber = SubscriberKeyPair::from_secret(&subscriber_secret);
    let mut aux = [0u8; 32];
    rng.fill_bytes(&mut aux);
    let claim = Frame::Claim(subscriber.claim(&params.node_id, &params.auth_nonce, &aux));
    let subscribe = Frame::Subscribe(Subscribe { subscriber: subscriber.id(), entries });
    s.write_all(&binary_frame(&encode_message(&[claim, subscribe]))).ok()?;
    // Bounded even when the relay keeps sending other frames (DELIVERs of Bloom false positives).
    let deadline = Instant::now() + SETUP_TIMEOUT;
    while Instant::now() < deadline {
        match first_frame(&mut s, &codec)? {
            Frame::Subscribed { .. } => break,
            Frame::Error(_) => return None,
            _ => {}
        }
    }
    if Instant::now() >= deadline {
        return None;
    }
    s.set_nonblocking(true).ok()?;
    Some(CoverClient { stream: s, schedule: CoverSchedule::new(k, ws), key })
}

/// The first frame of the next binary message.
fn first_frame(s: &mut TcpStream, codec: &Codec) -> Option<Frame> {
    loop {
        if let Message::Binary(payload) = recv(s, REPLY_BYTES_MAX).ok()? {
            return codec.decode_message(&Bytes::from(payload)).ok()?.into_iter().next();
        }
    }
}
