//! The relay server's runtime-independent core: configuration, per-shard state machine, connection
//! protocol state, send queues, cross-shard messages, metrics and the small HTTP surface.
//!
//! ```text
//! driver ──handle_*──▶ shard::ShardServer ──poll_*──▶ driver (sockets, channels, log files)
//!                        ├─ conn (per-connection protocol state)   ├─ outbox (bounded send queues)
//!                        ├─ log (its LogState + group-commit kick)  ├─ msg (Request / Response between shards)
//!                        └─ refusal / close (typed ERRORs and close reasons)
//! ```
//! The `driver` module runs these under glommio; nothing here does I/O, reads a clock or waits.

pub mod close;
pub mod config;
pub mod conn;
pub mod edge;
pub mod http;
pub mod log;
pub mod metrics;
pub mod metrics_hour;
pub mod msg;
pub mod outbox;
pub mod refusal;
pub mod shard;

pub use config::RelayConfig;
