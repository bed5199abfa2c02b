//! The body of one shard's executor: accept loop, cross-shard receivers, tick and shutdown.
//!
//! ```text
//! listener (SO_REUSEPORT) ─accept─▶ place among handshakes_max? (else closed at once)
//!   ─▶ connection::serve: head, upgrade [admission task queue] ─▶ session [sessions queue] (task_queues.rs;
//!      HELLO deadline: hello_deadline.rs) ─▶ ShardServer (RefCell, this executor only)
//! request mesh  ─recv─▶ handle_request  ─drain─▶ responses ─send─▶ response mesh (receivers never wait)
//! response mesh ─recv─▶ handle_response ─drain─▶ connection outboxes ─▶ writers woken
//! tick (100 ms) ─▶ ShardServer::tick; shutdown flag ─▶ stop accepting, close all, drain, flush, return
//! log: open + recover ─▶ the ShardServer takes the log state (restores subscriptions and dedup);
//!      committer task (group commit, log_commit.rs) executes the server's commit jobs and releases held
//!      ACK / SUBSCRIBED; retention once before anything is appended, then every 10 s (every second while
//!      storage is full); FETCH pages read from disk in the drain step (shard_ctx.rs);
//!      late matching of SUBSCRIBEs that reach into the past, in bounded steps (server/shard/late.rs)
//! cover: each round, a CSPRNG schedule of min(cap, max(0, t + Z)) dummies per owned bucket at uniform times
//!        ─▶ at each due time, build the dummies for the current window ─▶ handle_cover (same path as real
//!        proofs)
//! ```
//! Every task follows the server's contract: call a `handle_*` method, then `ShardCtx::drain` before the next
//! await.
//! A failed commit is fail-stop: the relay exits (status 1) without acknowledging anything that was not
//! durable, and recovery at the next start decides what survived — except a want of space or descriptors
//! (ENOSPC, EDQUOT, EMFILE, ENFILE): the log stalls, refuses PUBLISH with ERROR(STORAGE), keeps serving FETCH,
//! retries, and resumes when space returns (`crate::log::stall`).

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers};
use glommio::net::TcpListener;

use super::connection;
use super::log_exec::LogFiles;
use super::log_io::{open_parts, shard_dir, LogIoConfig, LogIoError};
pub use super::shard_ctx::{Listener, Ready, ShardCtx, Shared};
use super::task_queues::spawn_into;
use crate::driver::clock::{unix_now_s, unix_now_us};
use crate::driver::wake_flag::WakeFlag;
use crate::log::commit::GroupCommitPolicy;
use crate::log::format::ShardParams;
use crate::log::recovery::RecoveryReport;
use crate::log::state::LogState;
use crate::log::LogConfig;
use crate::server::config::RelayConfig;
use crate::server::metrics::ShardMetrics;
use crate::server::msg::{Request, Response};
use crate::server::shard::ShardServer;

/// How often each shard runs its periodic work and checks the shutdown flag.
const TICK: Duration = Duration::from_millis(100);
/// How long shutdown waits for connections to drain before the executor returns anyway.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);
/// How often retention runs (deleting whole expired segments); a window is plenty.
const RETENTION_EVERY: Duration = Duration::from_secs(10);
/// How often retention runs while storage is full: it is what frees space, and the parked commit is retried
/// at least this often (`crate::log::stall::STALL_RETRY_US_MAX`).
const RETENTION_EVERY_STALLED: Duration = Duration::from_secs(1);
/// Windows of extra clock skew whose commitments recovery feeds back into dedup.
const DEDUP_SKEW_WINDOWS: u64 = 1;

/// Runs shard `id` until shutdown; reports readiness (or the bind error) on `ready`.
pub async fn run(
    shared: Arc<Shared>,
    requests: MeshBuilder<Request, Full>,
    responses: MeshBuilder<Response, Full>,
    ready: std::sync::mpsc::Sender<Ready>,
) {
    let Ok((req_tx, req_rx)) = requests.join().await else {
        let _ = ready.send(Ready::Failed("cannot join the request mesh".into()));
        return;
    };
    let Ok((resp_tx, resp_rx)) = responses.join().await else {
        let _ = ready.send(Ready::Failed("cannot join the response mesh".into()));
        return;
    };
    let _ = ready.send(Ready::Joined);
    let id = req_tx.peer_id();
    let config = &shared.config;
    let addr = std::net::SocketAddr::new(config.host, config.port);
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Ready::Failed(format!("shard {id}: cannot listen on {addr}: {e}")));
            return;
        }
    };
    // Shard 0 serves /metrics and /healthz on their own listener (run_relay resolved the address).
    let metrics_listener = match (id, config.metrics_addr) {
        (0, Some(metrics_addr)) => match TcpListener::bind(metrics_addr) {
            Ok(l) => Some(l),
            Err(e) => {
                let _ = ready.send(Ready::Failed(format!("cannot listen on {metrics_addr} (--metrics-addr): {e}")));
                return;
            }
        },
        _ => None,
    };
    let now_s = unix_now_s();
    let (log, files, report) = match open_log(config, id, now_s).await {
        Ok(opened) => opened,
        Err(message) => {
            let _ = ready.send(Ready::Failed(message));
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
    let persisted: Vec<_> = log.subscriptions().iter().map(|(k, s)| (*k, s.entries.clone())).collect();
    let mut server = ShardServer::new(id as u16, config, shared.node_id, rand::random(), shared.metrics.clone(), log);
    for (key, entries) in &persisted {
        server.restore_subscription(now_s, *key, entries);
    }
    for (window_start_s, commit) in &report.live_commits {
        server.restore_commit(*window_start_s, commit);
    }
    server.restore_retained(&report.retained);
    let ctx = ShardCtx::new(id, server, files, (req_tx, resp_tx), shared.clone());
    // Retention before anything is appended (cover traffic included): a disk full of expired data is freed
    // before the first commit needs room, instead of that commit failing at every start.
    retention_pass(&ctx).await;
    ctx.metrics().log.store(&ctx.log_counters());
    ctx.report_log_files();
    let committer = ctx.committer.clone();
    glommio::spawn_local(async move {
        match committer.run().await {
            // Closing while storage is full: what was parked was never acknowledged; recovery sorts it out.
            Err(e) if e.is_recoverable() => tracing::warn!(shard = id, error = %e, "log closed with commits parked"),
            Err(e) => fail_stop(id, &e),
            Ok(()) => {}
        }
    })
    .detach();
    spawn_receivers(&ctx, req_rx, resp_rx);
    // Background tasks are awaited at shutdown (not detached): nothing may stage into the log while it closes.
    let mut background =
        vec![glommio::spawn_local(retention_loop(ctx.clone())), glommio::spawn_local(late_match_loop(ctx.clone()))];
    if !config.danger_disable_cover_traffic {
        match config.cover_mechanism() {
            Ok(mechanism) => background.push(glommio::spawn_local(cover_loop(ctx.clone(), mechanism))),
            // validate() built the same mechanism before any shard started.
            Err(e) => tracing::error!(shard = id, error = %e, "cover traffic not started"),
        }
    }
    // One signal per loop: a `WakeFlag` has a single waiter.
    let (stop_accepting, stop_metrics) = (Rc::new(WakeFlag::default()), Rc::new(WakeFlag::default()));
    // Accepting and everything before the upgrade run in the admission queue (task_queues.rs): the tasks an
    // accept loop spawns stay in its queue; a session moves to the sessions queue after the upgrade.
    let admission = ctx.queues.admission;
    let acceptor = spawn_into(
        accept_loop(ctx.clone(), (listener, Listener::Main), stop_accepting.clone(), connection::serve),
        admission,
    );
    // The bound address: with port 0 the kernel picked it, and the start line must name it.
    let metrics_bound = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let metrics_acceptor = metrics_listener.map(|l| {
        let serve = connection::serve_http_only;
        spawn_into(accept_loop(ctx.clone(), (l, Listener::Metrics), stop_metrics.clone(), serve), admission)
    });
    let metrics_addr = metrics_acceptor.as_ref().and(metrics_bound);
    let _ = ready.send(Ready::Listening(metrics_addr));

    while !shared.shutdown.load(Ordering::Relaxed) {
        glommio::timer::sleep(TICK).await;
        let clock = ctx.clock();
        ctx.server.borrow_mut().handle_tick(clock);
        ctx.drain().await;
        ctx.metrics().log.store(&ctx.log_counters());
        ctx.metrics().roll_hour(clock.unix_s);
        ctx.report_log_files();
    }
    // Shutdown: stop accepting, close every connection (writers drain and send 1001), wait for them.
    stop_accepting.notify();
    stop_metrics.notify();
    acceptor.await;
    if let Some(task) = metrics_acceptor {
        task.await;
    }
    ctx.server.borrow_mut().handle_shutdown();
    ctx.drain().await;
    let deadline = Instant::now() + SHUTDOWN_DRAIN;
    while ctx.server.borrow().connections() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    // Stop the background tasks, let the held ACKs of the last batches go out, then flush and close the log.
    ctx.stopping.set();
    for task in background {
        task.await;
    }
    if let Err(e) = ctx.committer.close().await {
        tracing::error!(shard = id, error = %e, "log flush at shutdown failed");
    }
    tracing::info!(shard = id, "shard stopped");
}

/// Opens (recovering) shard `id`'s log under the storage directory.
async fn open_log(config: &RelayConfig, id: usize, now_s: u64) -> Result<(LogState, LogFiles, RecoveryReport), String> {
    let params = ShardParams::for_shard(id as u16, config.shards as u16, config.num_buckets, config.window_s as u32);
    let mut log = LogConfig::new(params).with_retention_s(config.retention_s);
    log.danger_skip_fdatasync = config.danger_log_skip_fdatasync;
    log.commit = GroupCommitPolicy {
        records_max: config.log_group_commit_records_max,
        delay_us_max: config.log_group_commit_delay_us_max,
    };
    let dir = shard_dir(&config.storage, id as u16);
    let io = LogIoConfig { dir: dir.clone(), log, dedup_skew_windows: DEDUP_SKEW_WINDOWS };
    open_parts(io, now_s).await.map_err(|e| format!("shard {id}: cannot open its log in {}: {e}", dir.display()))
}

/// A failed commit: nothing more may be acknowledged. Exit so that a supervisor restarts the relay and
/// recovery decides what survived (docs/FOUNDATIONS.md §1: nothing acknowledged is lost).
fn fail_stop(shard: usize, error: &dyn std::fmt::Display) -> ! {
    tracing::error!(shard, %error, "the durable log failed; stopping the relay (restart it to recover)");
    std::process::exit(1)
}

/// Sleeps until wall-clock `target_us` (no-op if it has passed).
async fn sleep_until_us(target_us: u64) {
    let now_us = unix_now_us();
    if target_us > now_us {
        glommio::timer::sleep(Duration::from_micros(target_us - now_us)).await;
    }
}

/// Cover traffic for this shard's buckets (docs/FOUNDATIONS.md §4): every round, `max(0, t + Z)` dummies per bucket at
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
        // Only the round's total, and only as an hourly figure: a per-round count would be the noise itself.
        let m = ctx.metrics();
        let planned: u64 = schedule.dummies_per_bucket().iter().map(|&d| u64::from(d)).sum();
        ShardMetrics::add(&m.cover_planned, planned);
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
            ctx.server.borrow_mut().handle_cover(&batch, ctx.clock());
            ctx.drain().await;
        }
        futures_lite::future::or(sleep_until_us(schedule.round_end_us()), ctx.stopping.wait()).await;
        if ctx.stopping.is_set() {
            return;
        }
    }
}

/// Deletes whole segments past the retention horizon, with their match records.
/// Runs pending late scans (SUBSCRIBEs reaching into the past) one bounded step at a time, yielding between
/// steps so that PUBLISH batches, deliveries and commits interleave with them.
async fn late_match_loop(ctx: Rc<ShardCtx>) {
    loop {
        futures_lite::future::or(ctx.late_kick.wait(), ctx.stopping.wait()).await;
        while !ctx.stopping.is_set() && ctx.server.borrow().poll_late_work() {
            ctx.server.borrow_mut().handle_late_match(ctx.clock());
            ctx.drain().await;
            futures_lite::future::yield_now().await;
        }
        if ctx.stopping.is_set() {
            return;
        }
    }
}

async fn retention_loop(ctx: Rc<ShardCtx>) {
    let mut last = Instant::now();
    loop {
        futures_lite::future::or(glommio::timer::sleep(RETENTION_EVERY_STALLED), ctx.stopping.wait()).await;
        if ctx.stopping.is_set() {
            return;
        }
        if last.elapsed() >= RETENTION_EVERY || ctx.server.borrow().is_storage_stalled() {
            last = Instant::now();
            retention_pass(&ctx).await;
        }
    }
}

/// One retention pass now; a failure for want of space or descriptors is retried at the next pass, any other
/// is fail-stop.
async fn retention_pass(ctx: &ShardCtx) {
    match apply_retention(ctx, unix_now_s()).await {
        Ok(segments) if segments > 0 => tracing::info!(shard = ctx.id, segments, "retention deleted segments"),
        Ok(_) => {}
        Err(e) if e.is_recoverable() => tracing::warn!(shard = ctx.id, error = %e, "retention pass deferred"),
        Err(e) => fail_stop(ctx.id, &e),
    }
}

/// One retention pass at `now_s`: with no commit running, let the server drop what expired before the active
/// segment and delete its files (no commit needed: this is what frees space when storage is full); then, if
/// all of the active segment expired too and storage is not stalled, roll it (one commit) and delete it.
/// Returns the segments deleted.
async fn apply_retention(ctx: &ShardCtx, now_s: u64) -> Result<u64, LogIoError> {
    let mut deleted = delete_expired(ctx, now_s).await?;
    if ctx.server.borrow().plan_retention(now_s).roll_active && !ctx.server.borrow().is_storage_stalled() {
        ctx.server.borrow_mut().request_log_roll();
        ctx.committer.flush().await?; // fails fast (recoverable) if the roll's commit stalls
        deleted += delete_expired(ctx, now_s).await?;
    }
    Ok(deleted)
}

/// Deletes the expired segments before the active one; returns how many.
async fn delete_expired(ctx: &ShardCtx, now_s: u64) -> Result<u64, LogIoError> {
    ctx.committer.pause().await?;
    let applied = ctx.server.borrow_mut().handle_retention(now_s, ctx.clock());
    ctx.drain().await;
    let result = ctx.committer.files().delete(&applied.files).await;
    ctx.committer.resume();
    result?;
    Ok(applied.files.iter().filter(|f| f.kind == crate::log::FileKind::Segment).count() as u64)
}

fn spawn_receivers(ctx: &Rc<ShardCtx>, mut req_rx: Receivers<Request>, mut resp_rx: Receivers<Response>) {
    for (_, receiver) in req_rx.streams() {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            while let Some(request) = receiver.recv().await {
                if let Request::Publish { proofs, .. } = &request {
                    ctx.wait_log_room(proofs.len()).await;
                }
                let clock = ctx.clock();
                ctx.server.borrow_mut().handle_request(request, clock);
                ctx.drain().await;
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
                ctx.drain().await; // wake-ups only: handling a response queues no request
                futures_lite::future::yield_now().await;
            }
        })
        .detach();
    }
}

/// Accepts connections until `stop`, serving each on its own task with `serve` while it holds a place
/// (`ShardCtx::accept_socket`: descriptor reserve, source address, `handshakes_max`); a socket refused a place
/// is closed at once (dropped), before any byte is read.
async fn accept_loop<F, Fut>(ctx: Rc<ShardCtx>, listener: (TcpListener, Listener), stop: Rc<WakeFlag>, serve: F)
where
    F: Fn(Rc<ShardCtx>, glommio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (listener, kind) = listener;
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                let peer = stream.peer_addr().ok().map(|a| a.ip());
                let Some(place) = ctx.accept_socket(kind, peer) else { continue };
                let task = serve(ctx.clone(), stream);
                glommio::spawn_local(async move {
                    task.await;
                    drop(place);
                })
                .detach();
            }
            Some(Err(e)) => {
                // Typically EMFILE (descriptors used outside the budget): back off briefly instead of spinning,
                // and log once per burst, not every 50 ms.
                ctx.log_refusal(super::shard_ctx::Refused::AcceptError, &e.to_string());
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
