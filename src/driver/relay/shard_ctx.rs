//! What one shard's tasks share on its executor, and the driver's single drain step: every task that calls a
//! `ShardServer::handle_*` method calls [`ShardCtx::drain`] right after it, which executes what the server
//! queued (server/shard/mod.rs documents the order).
//!
//! ```text
//! task: server.handle_*(…) ─▶ drain(): take_work (same borrow, no await in between)
//!   requests  ─send─▶ request mesh   (may wait: backpressure on this task's publisher)
//!   responses ─send─▶ response mesh  (receivers never wait, so this always ends)
//!   FETCH reads ─▶ LogFiles::read_records ─▶ server.handle_fetch_read ─▶ take_work again
//!   wake-ups ─▶ connection writers (WakeFlag), closing connections get a watchdog
//!   commit kick ─▶ Committer::kick;  late scans pending ─▶ the late-matching task (shard_main.rs)
//! accept ─▶ accept_socket: fd reserve, source address, `handshakes_max` (else closed at once) ─▶ HTTP head / upgrade
//!   ─▶ admit (`connections_max`): the WebSocket session no longer counts as a handshake
//! committer (log_commit.rs) ─▶ RelayHost: server.poll_commit_job / handle_commit_written / handle_commit_done
//!   (+ drain: the replies it released go out)
//! ```

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::utils::CachePadded;
use glommio::channels::channel_mesh::Senders;

use super::admission::{BurstLog, FdBudget, SourceCounts, SourceKey};
use super::connection::ConnSignals;
use super::log_commit::{Committer, JobOutcome, LogHost};
use crate::driver::clock::unix_now_s;
use crate::driver::wake_flag::{Latch, WakeFlag};
use crate::log::commit::CommitDecision;
use crate::log::job::CommitJob;
use crate::log::LogCounters;
use crate::proto::Limits;
use crate::server::config::RelayConfig;
use crate::server::http;
use crate::server::metrics::{render_prometheus, ShardMetrics};
use crate::server::msg::{ConnId, Request, Response};
use crate::server::shard::{Clock, FetchPage, FetchRead, ShardServer};

/// How long a closing connection may take before its reader is stopped regardless.
const CLOSE_WATCHDOG: Duration = Duration::from_secs(2);

/// State shared by every shard (read-mostly; nothing here is touched per proof except the metrics).
pub struct Shared {
    /// The validated configuration.
    pub config: RelayConfig,
    /// The relay's node id.
    pub node_id: [u8; 16],
    /// Start of the monotonic clock.
    pub epoch: Instant,
    /// One metrics block per shard.
    pub metrics: Arc<[CachePadded<ShardMetrics>]>,
    /// Open WebSocket connections, all shards together (checked at accept).
    pub connections: AtomicU32,
    /// Sockets accepted on the main port whose task still runs, all shards together: those in their handshake
    /// (HTTP head, upgrade, a plain HTTP response) and the `connections` they became.
    pub sockets_serving: AtomicU32,
    /// Sockets per source address (`connections_per_ip_max`), main port only.
    pub sources: SourceCounts,
    /// File descriptors: accepted sockets are refused before they eat the log's reserve.
    pub fds: FdBudget,
    /// Set by SIGINT/SIGTERM.
    pub shutdown: Arc<AtomicBool>,
    /// The TLS configuration (`--tls-cert`, `--tls-key`), loaded once at start-up, read-only.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// What a shard tells the main thread during start-up, in this order (`startup::wait_ready` bounds the first
/// step, not the second: log recovery takes as long as the log needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// It joined both channel meshes: its executor runs and can reach every other shard.
    Joined,
    /// Its log is recovered and it listens; shard 0 names the metrics address it bound.
    Listening(Option<std::net::SocketAddr>),
    /// It cannot start (one line for the operator).
    Failed(String),
}

/// Everything one shard's tasks share (lives on that shard's executor only).
pub struct ShardCtx {
    /// Shard index.
    pub id: usize,
    /// The sans-IO shard state; it owns the log state. Never borrowed across an await.
    pub server: RefCell<ShardServer>,
    /// Group commit for the server's log, and its files.
    pub committer: Committer<RelayHost>,
    /// Set at shutdown: the background tasks (cover, retention, late matching) finish their step and stop.
    pub stopping: Latch,
    /// Late scans are pending: wakes the late-matching task.
    pub late_kick: WakeFlag,
    /// Limits (copied out of the config for the connection layer).
    pub limits: Limits,
    pub(super) req_tx: Senders<Request>,
    pub(super) resp_tx: Senders<Response>,
    conns: RefCell<HashMap<ConnId, Rc<ConnSignals>>>,
    watchdogs: RefCell<HashMap<ConnId, Cell<bool>>>,
    /// Sockets accepted on the metrics listener (only shard 0 has it) whose task still runs.
    metrics_sockets: Cell<u32>,
    /// Refusals at accept (descriptor reserve, source limit) and accept errors, each logged once per burst.
    refusal_logs: [BurstLog; 3],
    /// State shared with the other shards.
    pub shared: Arc<Shared>,
    /// Where sessions and admission work run (`task_queues`).
    pub queues: super::task_queues::TaskQueues,
}

/// Which listener accepted a socket: each counts its own sockets in their handshake, so that a flood on the
/// public port cannot lock the operator out of a separate metrics port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The main (client) port: WebSocket only.
    Main,
    /// `--metrics-addr`: plain HTTP only.
    Metrics,
}

/// An accepted socket's place (see [`ShardCtx::accept_socket`]); given back when its task ends.
pub struct SocketPlace {
    ctx: Rc<ShardCtx>,
    listener: Listener,
    /// Its place among its source address's sockets, once taken.
    source: Option<SourceKey>,
    /// Whether it was counted among the sockets in their handshake.
    counted: bool,
}

impl Drop for SocketPlace {
    fn drop(&mut self) {
        let shared = &self.ctx.shared;
        shared.fds.give_back();
        if let Some(key) = self.source {
            shared.sources.give_back(key);
        }
        if !self.counted {
            return;
        }
        match self.listener {
            Listener::Main => {
                shared.sockets_serving.fetch_sub(1, Ordering::Relaxed);
            }
            Listener::Metrics => self.ctx.metrics_sockets.set(self.ctx.metrics_sockets.get() - 1),
        }
    }
}

/// Which burst log a refusal goes to.
#[derive(Debug, Clone, Copy)]
pub enum Refused {
    /// The descriptor reserve of the log.
    FdReserve = 0,
    /// The source address's limit.
    Source = 1,
    /// `accept` itself failed (typically EMFILE).
    AcceptError = 2,
}

/// Everything one `handle_*` call queued, taken out of the server in the same borrow.
#[derive(Default)]
struct Work {
    requests: Vec<(usize, Request)>,
    responses: Vec<(usize, Response)>,
    fetch_reads: Vec<FetchRead>,
}

impl ShardCtx {
    /// A shard's context over its server and the files of its log (built cyclically: the committer's host
    /// points back at the context).
    pub fn new(
        id: usize,
        server: ShardServer,
        files: super::log_exec::LogFiles,
        senders: (Senders<Request>, Senders<Response>),
        shared: Arc<Shared>,
    ) -> Rc<Self> {
        Rc::new_cyclic(|me| ShardCtx {
            id,
            server: RefCell::new(server),
            committer: Committer::new(RelayHost { ctx: me.clone(), epoch: shared.epoch }, files),
            stopping: Latch::default(),
            late_kick: WakeFlag::default(),
            limits: shared.config.limits,
            req_tx: senders.0,
            resp_tx: senders.1,
            conns: RefCell::new(HashMap::new()),
            watchdogs: RefCell::new(HashMap::new()),
            metrics_sockets: Cell::new(0),
            refusal_logs: Default::default(),
            shared,
            queues: super::task_queues::TaskQueues::create(),
        })
    }

    /// The current time.
    pub fn clock(&self) -> Clock {
        Clock { unix_s: unix_now_s(), mono_us: self.shared.epoch.elapsed().as_micros() as u64 }
    }

    /// This shard's metrics.
    pub fn metrics(&self) -> &ShardMetrics {
        &self.shared.metrics[self.id]
    }

    /// The log's counters (the server's state plus the files' fdatasyncs).
    pub fn log_counters(&self) -> LogCounters {
        let mut c = self.server.borrow().log().counters();
        c.fdatasyncs = self.committer.files().fdatasyncs();
        c
    }

    /// Reports what this shard's log holds open (segments and their mailboxes, the journal) to the descriptor
    /// budget; called at start and every tick.
    pub fn report_log_files(&self) {
        let segments = self.server.borrow().log().counters().segments;
        self.shared.fds.set_log_files(self.id, 2 * segments + 1);
    }

    /// Admits a WebSocket connection if the relay is below `connections_max`.
    pub fn admit(&self) -> Option<ConnId> {
        let max = self.limits.connections_max;
        let previous = self.shared.connections.fetch_add(1, Ordering::Relaxed);
        if previous >= max || self.shared.shutdown.load(Ordering::Relaxed) {
            self.shared.connections.fetch_sub(1, Ordering::Relaxed);
            ShardMetrics::add(&self.metrics().connections_refused, 1);
            return None;
        }
        // A fresh CLAIM nonce per connection from the thread's CSPRNG (docs/PROTOCOL.md §4.2 `auth_nonce`).
        Some(self.server.borrow_mut().handle_conn_open(self.clock(), rand::random()))
    }

    /// Takes a place for a socket just accepted on `listener` from `peer`, or `None` (counted, logged once per
    /// burst): the caller then closes it at once, before reading a byte. In this order:
    /// - the file descriptors the log needs stay free (`admission::FdBudget`);
    /// - on the main port, `peer`'s source address holds fewer than `connections_per_ip_max` sockets
    ///   (`connections_per_loopback_max` for loopback), handshakes and upgraded connections together;
    /// - fewer than `handshakes_max` sockets accepted there are still in their handshake. Such a socket runs a
    ///   task and holds a descriptor outside `connections_max` until its request head is read and its response
    ///   written (`http_timeout_ms` at most). On the main port the sockets in their handshake are those serving
    ///   minus the WebSocket sessions admitted (`admit` counts them).
    ///
    /// Relaxed counters: a cap may be passed by a few sockets when shards accept at the same instant.
    pub fn accept_socket(self: &Rc<Self>, listener: Listener, peer: Option<std::net::IpAddr>) -> Option<SocketPlace> {
        let shared = &self.shared;
        if !shared.fds.try_take() {
            ShardMetrics::add(&self.metrics().fd_reserve_refused, 1);
            self.log_refusal(Refused::FdReserve, "");
            return None;
        }
        // From here on dropping the place gives back everything it took.
        let mut place = SocketPlace { ctx: self.clone(), listener, source: None, counted: false };
        if let (Listener::Main, Some(ip)) = (listener, peer) {
            let key = SourceKey::of(ip);
            if !shared.sources.try_take(key) {
                ShardMetrics::add(&self.metrics().connections_per_ip_refused, 1);
                self.log_refusal(Refused::Source, &ip.to_string());
                return None;
            }
            place.source = Some(key);
        }
        let in_handshake = match listener {
            Listener::Main => {
                let serving = shared.sockets_serving.fetch_add(1, Ordering::Relaxed) + 1;
                serving.saturating_sub(shared.connections.load(Ordering::Relaxed))
            }
            Listener::Metrics => {
                self.metrics_sockets.set(self.metrics_sockets.get() + 1);
                self.metrics_sockets.get()
            }
        };
        place.counted = true;
        if in_handshake > shared.config.handshakes_max {
            ShardMetrics::add(&self.metrics().handshakes_refused, 1);
            return None;
        }
        Some(place)
    }

    /// Logs a refusal at accept, once per burst (`admission::BurstLog`).
    pub fn log_refusal(&self, kind: Refused, detail: &str) {
        let Some(count) = self.refusal_logs[kind as usize].event(Instant::now()) else { return };
        let (shard, fds) = (self.id, &self.shared.fds);
        match kind {
            Refused::FdReserve => tracing::warn!(
                shard,
                refused = count,
                nofile = fds.nofile(),
                sockets_max = fds.sockets_max(),
                "sockets closed at accept to keep the file descriptors the log needs (raise RLIMIT_NOFILE)"
            ),
            Refused::Source => tracing::warn!(
                shard,
                refused = count,
                source = detail,
                "sockets closed at accept: their source address holds connections_per_ip_max sockets"
            ),
            Refused::AcceptError => tracing::warn!(shard, errors = count, error = detail, "accept failed"),
        }
    }

    /// How long an established connection may stay silent.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.shared.config.idle_timeout_ms)
    }

    /// Deadline of a plain HTTP exchange or of the WebSocket upgrade.
    pub fn http_timeout(&self) -> Duration {
        Duration::from_millis(self.shared.config.http_timeout_ms)
    }

    /// How long an upgraded connection may take to send HELLO.
    pub fn hello_timeout(&self) -> Duration {
        Duration::from_millis(self.shared.config.hello_timeout_ms)
    }

    /// Gives back an admitted connection's place.
    pub fn release(&self) {
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Creates the signals of a new connection.
    pub fn register(&self, conn: ConnId) -> Rc<ConnSignals> {
        let signals = Rc::new(ConnSignals::default());
        self.conns.borrow_mut().insert(conn, signals.clone());
        signals
    }

    /// Forgets a finished connection's signals.
    pub fn unregister(&self, conn: ConnId) {
        self.conns.borrow_mut().remove(&conn);
        self.watchdogs.borrow_mut().remove(&conn);
    }

    /// Takes what the last call queued (cross-shard messages, FETCH reads), wakes connections and the
    /// committer. Synchronous: it must run before the caller's next await.
    fn take_work(&self, work: &mut Work) {
        {
            let mut server = self.server.borrow_mut();
            work.requests.extend(std::iter::from_fn(|| server.poll_request()));
            work.responses.extend(std::iter::from_fn(|| server.poll_response()));
            work.fetch_reads.extend(std::iter::from_fn(|| server.poll_fetch_read()));
            if server.poll_commit_kick() {
                self.committer.kick();
            }
            if server.poll_late_work() {
                self.late_kick.notify();
            }
        }
        self.wake_connections();
    }

    /// The drain step: executes everything the server queued since the caller's last `handle_*` call (call it
    /// right after that call). Requests first (in production order), then responses, then FETCH reads.
    pub async fn drain(&self) {
        let mut work = Work::default();
        self.take_work(&mut work);
        loop {
            for (shard, request) in work.requests.drain(..) {
                // Fails only when the destination has shut down; the request is then moot.
                let _ = self.req_tx.send_to(shard, request).await;
            }
            for (shard, response) in work.responses.drain(..) {
                let _ = self.resp_tx.send_to(shard, response).await;
            }
            if work.fetch_reads.is_empty() {
                return;
            }
            let read = work.fetch_reads.remove(0);
            let page = match self.committer.files().read_records(&read.reads).await {
                Ok((records, skipped)) => {
                    let proofs =
                        records.iter().map(|r| bytes::Bytes::copy_from_slice(r.proof.as_bytes())).collect::<Vec<_>>();
                    Some(FetchPage { proofs, skipped })
                }
                Err(e) => {
                    tracing::error!(shard = self.id, error = %e, "FETCH read failed");
                    None
                }
            };
            self.server.borrow_mut().handle_fetch_read(read, page, self.clock());
            self.take_work(&mut work);
        }
    }

    /// Waits until the log can stage `proofs` more proofs (backpressure on whoever is publishing).
    pub async fn wait_log_room(&self, proofs: usize) {
        let proofs = (proofs as u64).min(crate::log::config::STAGED_RECORDS_MAX);
        // Fails only once the log is poisoned: the committer task then stops the relay.
        let _ = self.committer.wait_until(|_| self.server.borrow().can_accept(proofs)).await;
    }

    /// Wakes the writers of connections that have something queued, and arms a watchdog on closing ones.
    fn wake_connections(&self) {
        let conns = self.conns.borrow();
        loop {
            let Some(conn) = self.server.borrow_mut().poll_wakeup() else { break };
            let Some(signals) = conns.get(&conn) else { continue };
            signals.wake.notify();
            if self.server.borrow().close_reason(conn).is_some() {
                let mut watchdogs = self.watchdogs.borrow_mut();
                let armed = watchdogs.entry(conn).or_insert_with(|| Cell::new(false));
                if !armed.replace(true) {
                    let signals = signals.clone();
                    glommio::spawn_local(async move {
                        glommio::timer::sleep(CLOSE_WATCHDOG).await;
                        signals.stop_reader.notify();
                    })
                    .detach();
                }
            }
        }
    }

    /// The response to a plain HTTP GET.
    pub fn http_response(&self, path: &str) -> String {
        match path {
            "/metrics" => http::response(
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &render_prometheus(&self.shared.metrics, self.shared.config.danger_exact_metrics),
            ),
            "/healthz" if self.shared.shutdown.load(Ordering::Relaxed) => {
                http::response("503 Service Unavailable", "text/plain", "shutting down\n")
            }
            "/healthz" => http::response("200 OK", "text/plain", "ok\n"),
            _ => http::response("404 Not Found", "text/plain", "not found: try /metrics or /healthz\n"),
        }
    }
}

/// The committer's view of a relay shard: its `ShardServer` owns the log state.
pub struct RelayHost {
    ctx: Weak<ShardCtx>,
    epoch: Instant,
}

impl RelayHost {
    fn with_server<R>(&self, default: R, f: impl FnOnce(&mut ShardServer) -> R) -> R {
        match self.ctx.upgrade() {
            Some(ctx) => f(&mut ctx.server.borrow_mut()),
            None => default, // the shard is gone: nothing more to commit
        }
    }
}

impl LogHost for RelayHost {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn decide(&self, now_us: u64) -> CommitDecision {
        self.with_server(CommitDecision::Idle, |s| s.commit_decision(now_us))
    }

    fn take_job(&self, now_s: u64, now_us: u64) -> Option<CommitJob> {
        self.with_server(None, |s| s.poll_commit_job(now_s, now_us))
    }

    fn job_written(&self, id: u64) {
        self.with_server((), |s| s.handle_commit_written(id));
    }

    fn job_finished(&self, id: u64, outcome: JobOutcome) -> impl Future<Output = ()> {
        let ctx = self.ctx.upgrade();
        async move {
            let Some(ctx) = ctx else { return };
            match outcome {
                JobOutcome::Durable { bytes } => {
                    let clock = ctx.clock();
                    ctx.server.borrow_mut().handle_commit_done(id, bytes, clock);
                    ctx.drain().await; // the replies it released
                }
                JobOutcome::Stalled => {
                    let clock = ctx.clock();
                    ctx.server.borrow_mut().handle_commit_stalled(id, clock);
                }
                JobOutcome::Failed => ctx.server.borrow_mut().handle_commit_failed(id),
            }
        }
    }

    fn commits_in_flight(&self) -> usize {
        self.with_server(0, |s| s.log().commits_in_flight())
    }

    fn is_poisoned(&self) -> bool {
        self.with_server(true, |s| s.log().is_poisoned())
    }

    fn is_stalled(&self) -> bool {
        self.with_server(false, |s| s.is_storage_stalled())
    }

    fn is_parked(&self, id: u64) -> bool {
        self.with_server(false, |s| s.log().is_parked(id))
    }

    fn take_retry(&self, now_us: u64) -> Option<u64> {
        self.with_server(None, |s| s.poll_commit_retry(now_us))
    }
}
