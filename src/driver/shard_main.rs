//! The body of one shard's executor: accept loop, cross-shard receivers, tick and shutdown.
//!
//! ```text
//! listener (SO_REUSEPORT) ─accept─▶ connection::serve ─▶ ShardServer (RefCell, this executor only)
//! request mesh  ─recv─▶ handle_request  ─▶ responses ─send─▶ response mesh (may wait: receivers never do)
//! response mesh ─recv─▶ handle_response ─▶ connection outboxes ─▶ writers woken
//! tick (100 ms) ─▶ ShardServer::tick; shutdown flag ─▶ stop accepting, close all, drain, return
//! ```

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam::utils::CachePadded;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::net::TcpListener;

use super::connection::{self, ConnSignals};
use super::signal::Signal;
use crate::proto::Limits;
use crate::server::config::RelayConfig;
use crate::server::http;
use crate::server::metrics::{render_prometheus, ShardMetrics};
use crate::server::msg::{ConnId, Request, Response};
use crate::server::shard::{Clock, Outgoing, ShardServer};

/// How often each shard runs its periodic work and checks the shutdown flag.
const TICK: Duration = Duration::from_millis(100);
/// How long shutdown waits for connections to drain before the executor returns anyway.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);
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
    /// Set by SIGINT/SIGTERM.
    pub shutdown: Arc<AtomicBool>,
}

/// What a shard tells the main thread once it is listening.
pub type Ready = Result<(usize, Option<std::net::SocketAddr>), String>;

/// Everything one shard's tasks share (lives on that shard's executor only).
pub struct ShardCtx {
    /// Shard index.
    pub id: usize,
    /// The sans-IO shard state.
    pub server: RefCell<ShardServer>,
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
        let unix_s = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Clock { unix_s, mono_us: self.shared.epoch.elapsed().as_micros() as u64 }
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

    /// Sends what one call produced to the other shards, waiting while a channel is full.
    pub async fn dispatch(&self, out: Outgoing) {
        for (shard, request) in out.requests {
            // Fails only when the destination has shut down; the request is then moot.
            let _ = self.req_tx.send_to(shard, request).await;
        }
        for (shard, response) in out.responses {
            let _ = self.resp_tx.send_to(shard, response).await;
        }
    }

    /// Wakes the writers of connections that have something queued, and arms a watchdog on closing ones.
    pub fn wake_connections(&self) {
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
    let server = ShardServer::new(id as u16, config, shared.node_id, rand::random(), shared.metrics.clone());
    let ctx = Rc::new(ShardCtx {
        id,
        server: RefCell::new(server),
        limits: config.limits,
        req_tx,
        resp_tx,
        conns: RefCell::new(HashMap::new()),
        watchdogs: RefCell::new(HashMap::new()),
        shared: shared.clone(),
    });
    spawn_receivers(&ctx, req_rx, resp_rx);
    // One signal per loop: a `Signal` has a single waiter.
    let (stop_accepting, stop_metrics) = (Rc::new(Signal::default()), Rc::new(Signal::default()));
    let acceptor = glommio::spawn_local(accept_loop(ctx.clone(), listener, stop_accepting.clone()));
    let metrics_acceptor =
        metrics_listener.map(|l| glommio::spawn_local(metrics_loop(ctx.clone(), l, stop_metrics.clone())));
    let metrics_addr =
        metrics_acceptor.as_ref().and(config.metrics_port).map(|p| std::net::SocketAddr::new(config.host, p));
    let _ = ready.send(Ok((id, metrics_addr)));

    while !shared.shutdown.load(Ordering::Relaxed) {
        glommio::timer::sleep(TICK).await;
        let clock = ctx.clock();
        ctx.server.borrow_mut().tick(clock);
        ctx.wake_connections();
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
    tracing::info!(shard = id, "shard stopped");
}

fn spawn_receivers(ctx: &Rc<ShardCtx>, mut req_rx: Receivers<Request>, mut resp_rx: Receivers<Response>) {
    for (_, receiver) in req_rx.streams() {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            while let Some(request) = receiver.recv().await {
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

async fn accept_loop(ctx: Rc<ShardCtx>, listener: TcpListener, stop: Rc<Signal>) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                glommio::spawn_local(connection::serve(ctx.clone(), stream)).detach();
            }
            Some(Err(e)) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!(shard = ctx.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn metrics_loop(ctx: Rc<ShardCtx>, listener: TcpListener, stop: Rc<Signal>) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                glommio::spawn_local(connection::serve_http_only(ctx.clone(), stream)).detach();
            }
            Some(Err(_)) => glommio::timer::sleep(Duration::from_millis(50)).await,
        }
    }
}
