//! The body of one shard's executor: accept loop, cross-shard receivers, tick and shutdown.
//!
//! ```text
//! listener (SO_REUSEPORT) ─accept─▶ connection::serve ─▶ ShardServer (RefCell, this executor only)
//! request mesh  ─recv─▶ handle_request  ─▶ responses ─send─▶ response mesh (may wait: receivers never do)
//! response mesh ─recv─▶ handle_response ─▶ connection outboxes ─▶ writers woken
//! tick (100 ms) ─▶ ShardServer::tick; shutdown flag ─▶ stop accepting, close all, drain, flush, return
//! log: open + recover ─▶ restore subscriptions and dedup; committer task (group commit);
//!      durability pump: wait for the oldest held ticket ─▶ release_durable ─▶ ACK / SUBSCRIBED go out;
//!      retention every window; FETCH pages read from disk for any shard's connection
//! cover: each round, a CSPRNG schedule of max(0, t + Z) dummies per owned bucket at uniform times ─▶ at each
//!        due time, build the dummies for the current window ─▶ inject_cover (same path as real proofs)
//! ```
//! A failed commit is fail-stop: the relay exits (status 1) without acknowledging anything that was not
//! durable, and recovery at the next start decides what survived.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::utils::CachePadded;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::net::TcpListener;

use super::connection::{self, ConnSignals};
use super::log_io::{shard_dir, LogIoConfig, ShardLog};
use crate::driver::clock::{unix_now_s, unix_now_us};
use crate::driver::wake_flag::{Latch, WakeFlag};
use crate::log::commit::GroupCommitPolicy;
use crate::log::format::ShardParams;
use crate::log::mailbox::SubscriberKey;
use crate::log::LogConfig;
use crate::proto::Limits;
use crate::server::config::RelayConfig;
use crate::server::http;
use crate::server::metrics::{render_prometheus, ShardMetrics};
use crate::server::msg::{ConnId, Request, Response};
use crate::server::shard::{Clock, ShardServer};

/// How often each shard runs its periodic work and checks the shutdown flag.
const TICK: Duration = Duration::from_millis(100);
/// How long shutdown waits for connections to drain before the executor returns anyway.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);
/// How long a closing connection may take before its reader is stopped regardless.
const CLOSE_WATCHDOG: Duration = Duration::from_secs(2);
/// How often retention runs (deleting whole expired segments); a window is plenty.
const RETENTION_EVERY: Duration = Duration::from_secs(10);
/// Windows of extra clock skew whose commitments recovery feeds back into dedup.
const DEDUP_SKEW_WINDOWS: u64 = 1;

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
    /// Set by SIGINT/SIGTERM.
    pub shutdown: Arc<AtomicBool>,
}

/// What a shard tells the main thread once it is listening.
pub type Ready = Result<(usize, Option<std::net::SocketAddr>), String>;

/// Everything one shard's tasks share (lives on that shard's executor only).
pub struct ShardCtx {
    /// Shard index.
    pub id: usize,
    /// The sans-IO shard state (its storage is a clone of `log`).
    pub server: RefCell<ShardServer>,
    /// This shard's durable log.
    pub log: ShardLog,
    /// Kicks the durability pump when the server may have started holding responses.
    durable_kick: WakeFlag,
    /// Set at shutdown: the background tasks (cover, retention, durability pump) finish their step and stop.
    stopping: Latch,
    /// Limits (copied out of the config for the connection layer).
    pub limits: Limits,
    req_tx: Senders<Request>,
    resp_tx: Senders<Response>,
    conns: RefCell<HashMap<ConnId, Rc<ConnSignals>>>,
    watchdogs: RefCell<HashMap<ConnId, Cell<bool>>>,
    shared: Arc<Shared>,
}

impl ShardCtx {
    /// The current time.
    pub fn clock(&self) -> Clock {
        Clock { unix_s: unix_now_s(), mono_us: self.shared.epoch.elapsed().as_micros() as u64 }
    }

    /// This shard's metrics.
    pub fn metrics(&self) -> &ShardMetrics {
        &self.shared.metrics[self.id]
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
        Some(self.server.borrow_mut().open_conn(self.clock()))
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

    /// Sends what one call produced to the other shards, waiting while a channel is full. A FETCH part for
    /// this shard is read from disk here.
    pub async fn dispatch(&self, out: Outgoing) {
        for (shard, request) in out.requests {
            if shard == self.id {
                if let Some((dest, response)) = self.run_fetch(request).await {
                    self.send_response(dest, response).await;
                }
                continue;
            }
            // Fails only when the destination has shut down; the request is then moot.
            let _ = self.req_tx.send_to(shard, request).await;
        }
        for (shard, response) in out.responses {
            let _ = self.resp_tx.send_to(shard, response).await;
        }
    }

    async fn send_response(&self, shard: usize, response: Response) {
        if shard == self.id {
            self.server.borrow_mut().handle_response(response, self.clock());
            self.wake_connections();
        } else {
            let _ = self.resp_tx.send_to(shard, response).await;
        }
    }

    /// Reads this shard's page of a FETCH; returns the response and the shard to send it to.
    async fn run_fetch(&self, request: Request) -> Option<(usize, Response)> {
        let Request::Fetch { origin, subscriber, cursor, token, proofs_max } = request else {
            debug_assert!(false, "only FETCH parts are executed by the driver");
            return None;
        };
        let (proofs, more) = match self.log.fetch(SubscriberKey(subscriber.0), cursor, token, proofs_max.into()).await {
            Ok(page) => {
                (page.records.iter().map(|r| bytes::Bytes::copy_from_slice(r.proof.as_bytes())).collect(), page.more)
            }
            Err(e) => {
                tracing::error!(shard = self.id, error = %e, "FETCH read failed; answering an empty page");
                (Vec::new(), false)
            }
        };
        Some((origin.shard as usize, Response::Fetched { conn: origin.conn, token, proofs, more }))
    }

    /// Waits until the log can stage `proofs` more proofs (backpressure on whoever is publishing).
    pub async fn wait_log_room(&self, proofs: usize) {
        let proofs = (proofs as u64).min(crate::log::config::STAGED_RECORDS_MAX);
        while !self.log.can_accept(proofs) {
            let ticket = self.log.ticket();
            if self.log.wait_ticket(ticket).await.is_err() {
                return; // poisoned: the committer task stops the relay
            }
        }
    }

    /// Wakes the writers of connections that have something queued, and arms a watchdog on closing ones.
    pub fn wake_connections(&self) {
        self.durable_kick.notify();
        let wakeups = self.server.borrow_mut().take_wakeups();
        if wakeups.is_empty() {
            return;
        }
        let conns = self.conns.borrow();
        for conn in wakeups {
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
                &render_prometheus(&self.shared.metrics),
            ),
            "/healthz" if self.shared.shutdown.load(Ordering::Relaxed) => {
                http::response("503 Service Unavailable", "text/plain", "shutting down\n")
            }
            "/healthz" => http::response("200 OK", "text/plain", "ok\n"),
            _ => http::response("404 Not Found", "text/plain", "not found: try /metrics or /healthz\n"),
        }
    }
}

/// Runs shard `id` until shutdown; reports readiness (or the bind error) on `ready`.
pub async fn run(
    shared: Arc<Shared>,
    requests: MeshBuilder<Request, Full>,
    responses: MeshBuilder<Response, Full>,
    ready: std::sync::mpsc::Sender<Ready>,
) {
    let Ok((req_tx, req_rx)) = requests.join().await else {
        let _ = ready.send(Err("cannot join the request mesh".into()));
        return;
    };
    let Ok((resp_tx, resp_rx)) = responses.join().await else {
        let _ = ready.send(Err("cannot join the response mesh".into()));
        return;
    };
    let id = req_tx.peer_id();
    let config = &shared.config;
    let addr = std::net::SocketAddr::new(config.host, config.port);
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: cannot listen on {addr}: {e}")));
            return;
        }
    };
    let metrics_listener = match (id, config.metrics_port) {
        (0, Some(port)) => match TcpListener::bind(std::net::SocketAddr::new(config.host, port)) {
            Ok(l) => Some(l),
            Err(e) => {
                let _ = ready.send(Err(format!("cannot listen on metrics port {port}: {e}")));
                return;
            }
        },
        _ => None,
    };
    let now_s = unix_now_s();
    let (log, report) = match open_log(config, id, now_s).await {
        Ok(opened) => opened,
        Err(message) => {
            let _ = ready.send(Err(message));
            return;
        }
    };
    let c = &report.counters;
    tracing::info!(
        shard = id,
        records = c.recovery_records,
        matches = c.recovery_matches,
        subscribers = c.recovery_subscribers,
        torn_truncated = c.recovery_torn_truncated,
        torn_holes = c.recovery_torn_holes,
        corrupt_records = c.recovery_corrupt_records,
        files_quarantined = c.recovery_files_quarantined,
        "log recovered"
    );
    let mut server =
        ShardServer::new(id as u16, config, shared.node_id, rand::random(), shared.metrics.clone(), log.clone());
    for (key, state) in log.subscriptions() {
        server.restore_subscription(now_s, key, &state.entries);
    }
    for (window_start_s, commit) in &report.live_commits {
        server.restore_commit(*window_start_s, commit);
    }
    shared.metrics[id].log.store(&log.counters());
    let committer = log.clone();
    glommio::spawn_local(async move {
        if let Err(e) = committer.run_committer().await {
            fail_stop(id, &e);
        }
    })
    .detach();
    let ctx = Rc::new(ShardCtx {
        id,
        server: RefCell::new(server),
        log,
        durable_kick: WakeFlag::default(),
        stopping: Latch::default(),
        limits: config.limits,
        req_tx,
        resp_tx,
        conns: RefCell::new(HashMap::new()),
        watchdogs: RefCell::new(HashMap::new()),
        shared: shared.clone(),
    });
    spawn_receivers(&ctx, req_rx, resp_rx);
    // Background tasks are awaited at shutdown (not detached): nothing may stage into the log while it closes.
    let mut background =
        vec![glommio::spawn_local(durability_pump(ctx.clone())), glommio::spawn_local(retention_loop(ctx.clone()))];
    if !config.danger_disable_cover_traffic {
        match config.cover_mechanism() {
            Ok(mechanism) => background.push(glommio::spawn_local(cover_loop(ctx.clone(), mechanism))),
            // validate() built the same mechanism before any shard started.
            Err(e) => tracing::error!(shard = id, error = %e, "cover traffic not started"),
        }
    }
    // One signal per loop: a `WakeFlag` has a single waiter.
    let (stop_accepting, stop_metrics) = (Rc::new(WakeFlag::default()), Rc::new(WakeFlag::default()));
    let acceptor = glommio::spawn_local(accept_loop(ctx.clone(), listener, stop_accepting.clone(), connection::serve));
    let metrics_acceptor = metrics_listener
        .map(|l| glommio::spawn_local(accept_loop(ctx.clone(), l, stop_metrics.clone(), connection::serve_http_only)));
    let metrics_addr =
        metrics_acceptor.as_ref().and(config.metrics_port).map(|p| std::net::SocketAddr::new(config.host, p));
    let _ = ready.send(Ok((id, metrics_addr)));

    while !shared.shutdown.load(Ordering::Relaxed) {
        glommio::timer::sleep(TICK).await;
        let clock = ctx.clock();
        ctx.server.borrow_mut().tick(clock);
        ctx.wake_connections();
        ctx.metrics().log.store(&ctx.log.counters());
    }
    // Shutdown: stop accepting, close every connection (writers drain and send 1001), wait for them.
    stop_accepting.notify();
    stop_metrics.notify();
    acceptor.await;
    if let Some(task) = metrics_acceptor {
        task.await;
    }
    ctx.server.borrow_mut().shutdown();
    ctx.wake_connections();
    let deadline = Instant::now() + SHUTDOWN_DRAIN;
    while ctx.server.borrow().connections() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    // Stop the background tasks, let the held ACKs of the last batches go out, then flush and close the log.
    ctx.stopping.set();
    for task in background {
        task.await;
    }
    let out = ctx.server.borrow_mut().release_durable(ctx.clock());
    ctx.dispatch(out).await;
    ctx.wake_connections();
    if let Err(e) = ctx.log.clone().close().await {
        tracing::error!(shard = id, error = %e, "log flush at shutdown failed");
    }
    tracing::info!(shard = id, "shard stopped");
}

/// Opens (recovering) shard `id`'s log under the storage directory.
async fn open_log(
    config: &RelayConfig,
    id: usize,
    now_s: u64,
) -> Result<(ShardLog, crate::log::recovery::RecoveryReport), String> {
    let params = ShardParams::for_shard(id as u16, config.shards as u16, config.num_buckets, config.window_s as u32);
    let mut log = LogConfig::new(params).with_retention_s(config.retention_s);
    log.danger_skip_fdatasync = config.danger_log_skip_fdatasync;
    log.commit = GroupCommitPolicy {
        records_max: config.log_group_commit_records_max,
        delay_us_max: config.log_group_commit_delay_us_max,
    };
    let dir = shard_dir(&config.storage, id as u16);
    let io = LogIoConfig { dir: dir.clone(), log, dedup_skew_windows: DEDUP_SKEW_WINDOWS };
    ShardLog::open(io, now_s).await.map_err(|e| format!("shard {id}: cannot open its log in {}: {e}", dir.display()))
}

/// A failed commit: nothing more may be acknowledged. Exit so that a supervisor restarts the relay and
/// recovery decides what survived (DESIGN.md §1: nothing acknowledged is lost).
fn fail_stop(shard: usize, error: &dyn std::fmt::Display) -> ! {
    tracing::error!(shard, %error, "the durable log failed; stopping the relay (restart it to recover)");
    std::process::exit(1)
}

/// Sends held responses (ACKs, SUBSCRIBEDs) once the storage tickets they wait for are durable.
async fn durability_pump(ctx: Rc<ShardCtx>) {
    while !ctx.stopping.is_set() {
        let ticket = ctx.server.borrow().oldest_pending_ticket();
        match ticket {
            None => futures_lite::future::or(ctx.durable_kick.wait(), ctx.stopping.wait()).await,
            Some(ticket) => {
                let durable = futures_lite::future::or(async { Some(ctx.log.wait_ticket(ticket).await) }, async {
                    ctx.stopping.wait().await;
                    None
                });
                match durable.await {
                    None => break,
                    Some(Err(e)) => fail_stop(ctx.id, &e),
                    Some(Ok(())) => {}
                }
                let out = ctx.server.borrow_mut().release_durable(ctx.clock());
                ctx.dispatch(out).await;
                ctx.wake_connections();
            }
        }
    }
}

/// Sleeps until wall-clock `target_us` (no-op if it has passed).
async fn sleep_until_us(target_us: u64) {
    let now_us = unix_now_us();
    if target_us > now_us {
        glommio::timer::sleep(Duration::from_micros(target_us - now_us)).await;
    }
}

/// Cover traffic for this shard's buckets (DESIGN.md §4): every round, `max(0, t + Z)` dummies per bucket at
/// independent uniform times, each built when it is emitted and routed like a real proof. Rounds are aligned on
/// multiples of the round length. At start the current round is already under way: its overdue dummies go out
/// at once, so the round's count still carries its full noise (only their timing is bunched, once).
async fn cover_loop(ctx: Rc<ShardCtx>, mechanism: crate::dp::CoverMechanism) {
    use rand_core::SeedableRng;
    let config = &ctx.shared.config;
    let mut rng = rand_chacha::ChaCha20Rng::from_entropy();
    let round_us = config.cover_round_ms * 1000;
    let (buckets, num_buckets, window_s) = (config.bucket_range(ctx.id), config.num_buckets, config.window_s);
    loop {
        let now_us = unix_now_us();
        let spec = crate::dp::RoundSpec {
            round_start_us: now_us - now_us % round_us,
            round_us,
            buckets: buckets.clone(),
            num_buckets,
        };
        let mut schedule = match crate::dp::CoverSchedule::for_round(&mechanism, spec, &mut rng) {
            Ok(schedule) => schedule,
            Err(e) => {
                tracing::error!(shard = ctx.id, error = %e, "cover schedule failed; cover traffic stopped");
                return;
            }
        };
        let m = ctx.metrics();
        m.cover_round.store(schedule.dummies_per_bucket());
        ShardMetrics::add(&m.cover_rounds, 1);
        ShardMetrics::add(&m.cover_clamped_buckets, schedule.clamped_buckets().into());
        while let Some(due_us) = schedule.next_due_us() {
            futures_lite::future::or(sleep_until_us(due_us), ctx.stopping.wait()).await;
            if ctx.stopping.is_set() {
                return;
            }
            let now_us = unix_now_us();
            let window = crate::proto::window_start(now_us / 1_000_000, window_s);
            let mut proofs = Vec::new();
            for slot in schedule.poll_due(now_us) {
                match crate::dp::build_dummy_proof(&mut rng, slot.bucket, num_buckets, window) {
                    Ok(proof) => proofs.push(proof),
                    Err(e) => tracing::error!(shard = ctx.id, error = %e, "dummy proof not built"),
                }
            }
            let batch = crate::proto::ProofBatch::from_proofs(proofs.iter().map(|p| p.view()));
            ctx.wait_log_room(batch.len()).await;
            let out = ctx.server.borrow_mut().inject_cover(&batch, ctx.clock());
            ctx.dispatch(out).await;
            ctx.wake_connections();
        }
        futures_lite::future::or(sleep_until_us(schedule.round_end_us()), ctx.stopping.wait()).await;
        if ctx.stopping.is_set() {
            return;
        }
    }
}

/// Deletes whole segments past the retention horizon, with their match records.
async fn retention_loop(ctx: Rc<ShardCtx>) {
    loop {
        futures_lite::future::or(glommio::timer::sleep(RETENTION_EVERY), ctx.stopping.wait()).await;
        if ctx.stopping.is_set() {
            return;
        }
        match ctx.log.apply_retention(unix_now_s()).await {
            Ok(outcome) if outcome.segments_deleted > 0 => {
                tracing::info!(shard = ctx.id, segments = outcome.segments_deleted, "retention deleted segments");
            }
            Ok(_) => {}
            Err(e) => fail_stop(ctx.id, &e),
        }
    }
}

fn spawn_receivers(ctx: &Rc<ShardCtx>, mut req_rx: Receivers<Request>, mut resp_rx: Receivers<Response>) {
    for (_, receiver) in req_rx.streams() {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            while let Some(request) = receiver.recv().await {
                if let Request::Fetch { .. } = request {
                    if let Some((dest, response)) = ctx.run_fetch(request).await {
                        ctx.send_response(dest, response).await;
                    }
                    continue;
                }
                if let Request::Publish { proofs, .. } = &request {
                    ctx.wait_log_room(proofs.len()).await;
                }
                let clock = ctx.clock();
                let out = ctx.server.borrow_mut().handle_request(request, clock);
                ctx.dispatch(out).await;
                ctx.wake_connections();
                // Let writers run between batches (see connection.rs: glommio tasks are cooperative).
                futures_lite::future::yield_now().await;
            }
        })
        .detach();
    }
    for (_, receiver) in resp_rx.streams() {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            // Never waits on anything but the channel: this is what keeps the meshes free of wait cycles.
            while let Some(response) = receiver.recv().await {
                let clock = ctx.clock();
                ctx.server.borrow_mut().handle_response(response, clock);
                ctx.wake_connections();
                futures_lite::future::yield_now().await;
            }
        })
        .detach();
    }
}

/// Accepts connections until `stop`, serving each on its own task with `serve`.
async fn accept_loop<F, Fut>(ctx: Rc<ShardCtx>, listener: TcpListener, stop: Rc<WakeFlag>, serve: F)
where
    F: Fn(Rc<ShardCtx>, glommio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                glommio::spawn_local(serve(ctx.clone(), stream)).detach();
            }
            Some(Err(e)) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!(shard = ctx.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
