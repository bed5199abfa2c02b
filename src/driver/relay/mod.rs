//! The relay runtime: glommio executors (one per shard), sockets, signals and the durable log's file I/O
//! around the sans-IO `server` core.
//!
//! ```text
//! run_relay: shards ≤ cores, lock storage (startup), node id, reserve port, raise RLIMIT_NOFILE (admission)
//!   ─▶ one executor per shard (pinned)
//!   shard_main::run: open the log (log_io::open_parts ◀─ log_open, log_files) ─▶ ShardServer owns its LogState
//!                    ─▶ ShardCtx (shard_ctx: the drain step) + committer (log_commit over log_exec's files)
//!                    ─▶ accept loops ─▶ connection::serve (WebSocket) | serve_http_only (/metrics) ─▶ cover, retention
//! ─▶ wait ready (startup::wait_ready: joined within 10 s, then listening; SIGINT/SIGTERM end the wait)
//! ─▶ measure the descriptors open (admission::FdBudget: sockets are refused before the log's reserve)
//! ─▶ print the start line ─▶ join (each shard returns after SIGINT/SIGTERM and draining)
//! ```
//! `log_io::ShardLog` is the standalone durable log (tests, tools) on the same committer and files.

pub mod admission;
pub mod connection;
pub mod epoch_signal;
pub mod frame_gate;
pub mod hello_deadline;
pub mod log_commit;
pub mod log_exec;
pub mod log_files;
pub mod log_io;
pub mod log_open;
pub mod shard_ctx;
pub mod shard_main;
pub mod startup;
pub mod task_queues;

use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::utils::CachePadded;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

use crate::server::config::RelayConfig;
use crate::server::metrics::ShardMetrics;
pub use startup::StartError;
use startup::Startup;

/// Capacity of each request channel between two shards, in messages (each up to one batch of proofs):
/// 64 × 1024 proofs × 564 B ≈ 37 MB in flight per pair at worst; enough to keep the owner busy.
const REQUEST_CHANNEL_MESSAGES: usize = 64;
/// Capacity of each response channel, in messages. Responses are small or carry deliveries; their receiver
/// never waits, so this only bounds bursts.
const RESPONSE_CHANNEL_MESSAGES: usize = 256;
/// io_uring registered memory per shard. The relay runs as an ordinary user with an 8 MiB memlock limit.
const IO_MEMORY_BYTES: usize = 1 << 20;
/// How long a signal during start-up waits for the shards that did start to stop cleanly (flush their log)
/// before the process exits without them.
const STOP_DURING_START_UP: Duration = Duration::from_secs(5);

/// What the relay printed at start, for callers that embed it (tests read the line from stdout).
#[derive(Debug, Clone)]
pub struct Started {
    /// The address every shard listens on.
    pub addr: std::net::SocketAddr,
}

/// Runs the relay until SIGINT or SIGTERM; returns once every shard has drained.
pub fn run_relay(config: RelayConfig) -> Result<(), StartError> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    startup::check_shards(config.shards, cores)?;
    // Loaded once, before anything else is opened: a bad certificate is a configuration error (exit 2).
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::driver::tls::server_config(cert, key)?),
        _ => None,
    };
    let _lock = startup::lock_storage(&config.storage)?;
    // Absolute from here on: glommio cannot open a relative directory path (EBADF), and the start line is
    // clearer with the real location.
    let storage = std::fs::canonicalize(&config.storage)
        .map_err(|source| StartError::Storage { path: config.storage.display().to_string(), source })?;
    let node_id = startup::node_id(&config.storage, rand::random())?;
    let (reservation, addr) = startup::reserve_port(std::net::SocketAddr::new(config.host, config.port))?;
    // Resolved against the configured port (0 stays ephemeral for metrics too), before `port` is replaced by
    // the bound one.
    let metrics_addr = crate::server::edge::metrics_bind_addr(&config);
    if metrics_addr.port() != 0 {
        // Shard 0 binds the metrics address; trying it here first reports an address in use as the typed
        // `StartError::Bind` (a configuration error, exit 2) rather than as a shard's start-up failure.
        drop(startup::reserve_port(metrics_addr)?);
    }
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, shutdown.clone()).map_err(|e| StartError::Executor(e.to_string()))?;
    }
    if config.danger_disable_cover_traffic {
        tracing::warn!(
            "DANGER: cover traffic is disabled (--danger-disable-cover-traffic): per-bucket proof counts now \
             reveal real traffic to any observer; never run this way in production"
        );
    }
    if !metrics_addr.ip().is_loopback() {
        tracing::warn!(
            %metrics_addr,
            "/metrics and /healthz listen beyond loopback (--metrics-addr): firewall it to the scrapers; it shows \
             no real-only count below one hour, but connection and error counts are visible to whoever reaches it"
        );
    }
    if config.danger_exact_metrics {
        tracing::warn!(
            %metrics_addr,
            "DANGER: /metrics shows exact real (non-cover) counts live (--danger-exact-metrics): whoever reads it \
             can subtract the cover traffic's noise; tests and benchmarks only"
        );
    }
    if config.danger_plaintext && tls.is_none() {
        tracing::warn!(
            host = %config.host,
            "DANGER: serving plaintext ws:// (--danger-plaintext): anyone on the path reads per-bucket PUBLISH \
             counts and subscriber ids and links each DELIVER to its PUBLISH; use --tls-cert/--tls-key"
        );
    }
    if config.danger_log_skip_fdatasync {
        tracing::warn!(
            "DANGER: the log does not fdatasync (--danger-log-skip-fdatasync): acknowledged proofs can be lost in a \
             crash or power loss; use only to measure what durability costs"
        );
    }
    let shards = config.shards;
    let nofile = admission::raise_nofile_limit();
    let mut resolved = config.clone();
    resolved.port = addr.port();
    resolved.metrics_addr = Some(metrics_addr);
    resolved.storage = storage;
    let metrics = (0..shards).map(|_| CachePadded::new(ShardMetrics::default())).collect::<Vec<_>>().into();
    let shared = Arc::new(shard_main::Shared {
        config: resolved,
        node_id,
        epoch: Instant::now(),
        metrics,
        connections: AtomicU32::new(0),
        sockets_serving: AtomicU32::new(0),
        sources: admission::SourceCounts::new(config.connections_per_ip_max, config.connections_per_loopback_max),
        fds: admission::FdBudget::new(nofile, shards),
        shutdown,
        tls,
    });
    let requests = MeshBuilder::full(shards, REQUEST_CHANNEL_MESSAGES);
    let responses = MeshBuilder::full(shards, RESPONSE_CHANNEL_MESSAGES);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    // One shard per core (check_shards), each pinned to its own.
    let pool = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(shards, None))
        .name("tessera-shard")
        .io_memory(IO_MEMORY_BYTES)
        .on_all_shards({
            let shared = shared.clone();
            move || {
                let (shared, requests, responses, ready) =
                    (shared.clone(), requests.clone(), responses.clone(), ready_tx.clone());
                async move { shard_main::run(shared, requests, responses, ready).await }
            }
        })
        .map_err(|e| StartError::Executor(e.to_string()))?;
    let metrics_addr = match startup::wait_ready(&ready_rx, shards, &shared.shutdown, startup::JOIN_DEADLINE) {
        Startup::Listening(metrics_addr) => metrics_addr,
        Startup::Interrupted { all_joined } => {
            tracing::info!("stopped by a signal during start-up");
            stop_during_start_up(pool, all_joined);
            return Ok(());
        }
        Startup::Failed { error, all_joined } => {
            shared.shutdown.store(true, std::sync::atomic::Ordering::Relaxed);
            stop_during_start_up(pool, all_joined);
            return Err(error);
        }
    };
    drop(reservation);
    // Every shard has opened its log and listens: what is open now besides sockets and log files stays.
    if let Some(open) = admission::open_fds() {
        shared.fds.calibrate(open);
    }
    tracing::info!(
        nofile,
        sockets_max = shared.fds.sockets_max(),
        "file descriptors: sockets beyond these are refused"
    );
    println!("{}", start_line(&shared.config, addr, metrics_addr));
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, shards, "relay started");
    for result in pool.join_all() {
        if let Err(e) = result {
            tracing::error!(error = %e, "a shard failed");
        }
    }
    tracing::info!("relay stopped");
    Ok(())
}

/// Lets the shards that started stop cleanly (they see the shutdown flag), waiting at most
/// [`STOP_DURING_START_UP`]; a shard still in the meshes' join never returns, so without `all_joined` nobody
/// waits. The process then exits, ending any shard still recovering its log (recovery is crash-safe).
fn stop_during_start_up(pool: glommio::PoolThreadHandles<()>, all_joined: bool) {
    if !all_joined {
        return;
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let joiner = std::thread::spawn(move || {
        let _ = pool.join_all();
        let _ = done_tx.send(());
    });
    if done_rx.recv_timeout(STOP_DURING_START_UP).is_ok() {
        let _ = joiner.join();
    }
}

/// The one line printed at start: address, shards, bucket ranges and parameters.
pub fn start_line(config: &RelayConfig, addr: std::net::SocketAddr, metrics: Option<std::net::SocketAddr>) -> String {
    let ranges: Vec<String> = (0..config.shards)
        .map(|s| {
            let r = config.bucket_range(s);
            format!("{}..{}", r.start, r.end)
        })
        .collect();
    let metrics = metrics.unwrap_or(addr);
    let scheme = if config.tls() { "wss" } else { "ws" };
    let metrics_scheme = if config.tls() && config.metrics_tls { "https" } else { "http" };
    let plaintext = if config.danger_plaintext && !config.tls() { " plaintext=DANGER" } else { "" };
    let durability = if config.danger_log_skip_fdatasync { " durability=NONE (danger)" } else { "" };
    let cover = if config.danger_disable_cover_traffic {
        "DISABLED (danger)".to_owned()
    } else {
        format!("epsilon={} delta={}", config.cover_traffic_epsilon, config.cover_traffic_delta)
    };
    format!(
        "tessera relay listening on {scheme}://{addr} (metrics {metrics_scheme}://{metrics}/metrics) shards={} \
         buckets=[{}] window={}s bloom=m{}/k{} cover {} storage={} retention={}s{durability}{plaintext}",
        config.shards,
        ranges.join(" "),
        config.window_s,
        crate::proto::BLOOM_M_BITS_DEFAULT,
        crate::proto::BLOOM_K_DEFAULT,
        cover,
        config.storage.display(),
        config.retention_s,
    )
}
