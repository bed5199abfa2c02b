//! Connection set-up cost: how many clients per second a relay takes from TCP connect to HELLO_REPLY, plain or
//! TLS, and the relay CPU each costs.
//!
//! ```text
//! relay child (plain, or TLS with a fresh self-signed pair) ─▶ client config built once
//!   ─▶ T executors × C tasks: loop { ClientConn::connect (TCP, [TLS], WebSocket upgrade, HELLO ─▶ HELLO_REPLY);
//!                                    drop (FIN) } until N connections were started
//!   ─▶ wall time and relay CPU (/proc) between the first start and the last completion ─▶ HandshakeReport
//! ```
//! The connection is dropped right after HELLO_REPLY, so its teardown is part of the cost (as it is for a real
//! client population that comes and goes). TLS sessions are not resumed: every connection is a full handshake,
//! the relay's worst case.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

use super::e2e::E2eError;
use super::process::{ProcSample, RelayProcess, RelayProcessError};
use crate::driver::client::conn::{resolve, ClientConn, ClientError, ClientOptions};
use crate::driver::tls::TlsClientOptions;

/// io_uring registered memory per executor (a few sockets each).
const IO_MEMORY_BYTES: usize = 1 << 20;
/// A handshake client's WebSocket read buffer: it reads one HELLO_REPLY.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeConfig {
    /// Connections to open in all.
    pub connections: u64,
    /// Connections in flight per executor.
    pub concurrency: usize,
    /// Client executors.
    pub threads: usize,
    /// Shards of the relay started here.
    pub shards: usize,
    /// Serve and connect with TLS.
    pub tls: bool,
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct HandshakeReport {
    /// Whether the connections used TLS.
    pub tls: bool,
    /// Connections that reached HELLO_REPLY.
    pub completed: u64,
    /// Connections that failed.
    pub failed: u64,
    /// Wall seconds from the first connect to the last completion.
    pub seconds: f64,
    /// Relay CPU seconds over the same span (`None`: /proc unreadable).
    pub relay_cpu_s: Option<f64>,
}

impl HandshakeReport {
    /// Completed connections per second.
    pub fn per_s(&self) -> f64 {
        self.completed as f64 / self.seconds.max(1e-9)
    }

    /// Relay CPU microseconds per completed connection.
    pub fn relay_cpu_us_each(&self) -> Option<f64> {
        self.relay_cpu_s.map(|cpu| cpu * 1e6 / self.completed.max(1) as f64)
    }
}

/// Counters the executors share.
#[derive(Default)]
struct Counts {
    started: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
}

/// Starts a relay, opens `config.connections` connections through HELLO_REPLY, stops the relay.
pub fn run(config: &HandshakeConfig) -> Result<HandshakeReport, E2eError> {
    let exe = std::env::current_exe().map_err(|e| E2eError::Relay(RelayProcessError::Spawn(e)))?;
    let mut relay = RelayProcess::start(&exe, config.shards, config.tls)?;
    let url = relay.url.clone();
    let addr = resolve(&url)?;
    let tls = match &relay.tls_cert {
        Some(cert) => Some(
            crate::driver::tls::client_config(&TlsClientOptions { ca_file: Some(cert.clone()), pin: None })
                .map_err(ClientError::from)?,
        ),
        None => None,
    };
    let options = ClientOptions { read_buffer_bytes: READ_BUFFER_BYTES, tls, ..ClientOptions::default() };
    let counts = Arc::new(Counts::default());
    let (total, concurrency) = (config.connections, config.concurrency.max(1));
    let pid = relay.pid();
    let cpu_before = ProcSample::read(pid).map(|s| s.cpu_s);
    let start = Instant::now();
    let pool = LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(config.threads.max(1)))
        .name("tessera-handshakes")
        .io_memory(IO_MEMORY_BYTES)
        .on_all_shards({
            let counts = counts.clone();
            move || {
                let (counts, options, url) = (counts.clone(), options.clone(), url.clone());
                async move {
                    let tasks: Vec<_> = (0..concurrency)
                        .map(|_| {
                            let (counts, options, url) = (counts.clone(), options.clone(), url.clone());
                            glommio::spawn_local(async move {
                                while counts.started.fetch_add(1, Ordering::Relaxed) < total {
                                    match ClientConn::connect(&url, addr, options.clone()).await {
                                        Ok(conn) => drop(conn),
                                        Err(_) => {
                                            counts.failed.fetch_add(1, Ordering::Relaxed);
                                            continue;
                                        }
                                    }
                                    counts.completed.fetch_add(1, Ordering::Relaxed);
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await;
                    }
                }
            }
        })
        .map_err(|e| E2eError::LoadGen(format!("cannot start the client executors: {e}")))?;
    let _ = pool.join_all();
    let seconds = start.elapsed().as_secs_f64();
    let relay_cpu_s = cpu_before.zip(ProcSample::read(pid).map(|s| s.cpu_s)).map(|(a, b)| b - a);
    relay.stop();
    Ok(HandshakeReport {
        tls: config.tls,
        completed: counts.completed.load(Ordering::Relaxed),
        failed: counts.failed.load(Ordering::Relaxed),
        seconds,
        relay_cpu_s,
    })
}
