//! The driver: everything runtime-specific (glommio executors, sockets, files, signals, clocks), so the
//! runtime could be swapped without touching the protocol, the engine, the server or the client state.
//!
//! ```text
//! relay/    the relay runtime: run_relay ─▶ one executor per shard ─▶ connections, durable log I/O
//! client/   the client runtime: conn (native-protocol WebSocket) ◀─ session (drives `crate::client` state)
//! loadgen/  the W-e2e load generator: e2e (runner) ─▶ process (relay child, /proc) + connections (client::conn)
//! leaf helpers shared by all three: clock (wall and thread CPU time), flock (lock files), wake_flag (wake-ups),
//!   tls (rustls configurations: certificate files, trust anchors, pins), tls_stream (plain or TLS stream)
//! ```
//! `loadgen` uses `crate::perf` (pure workload, stats, parsers, reports); `perf` never uses the driver.

pub mod client;
pub mod clock;
pub mod flock;
pub mod loadgen;
pub mod relay;
pub mod tls;
pub mod tls_stream;
pub mod wake_flag;
