//! The routing engine: one sans-IO state machine per shard (core), fed batches by the driver.
//!
//! ```text
//! driver ──handle_publish(now, origin, batch)──▶ Shard ──verify──▶ dedup ──▶ LogSink::append
//!                                                   └──▶ match vs crate::index ──▶ poll_delivery ──▶ subscribers
//!                                                   └──▶ per-peer outbox ────────▶ poll_gossip ───▶ peers
//! driver ──handle_subscribe / handle_unsubscribe / handle_tick──▶ Shard
//! ```
//! Nothing here reads a clock, a socket, a file or an RNG: time is `now_s`, the log is a [`LogSink`], and
//! outputs are pulled with `poll_*`. One shard owns a contiguous bucket range ([`EngineConfig::for_shard`]).
//!
//! Files: `config` (limits and ownership), `verify` (per-proof checks, [`Rejection`]), `hashing` (a chunk's
//! SHA-256 work in one interleaved pass), `dedup` (by commit and window), `subscriptions` (replace semantics,
//! [`SubscribeError`]), `gossip` (outboxes), `log_sink` ([`LogSink`], [`MemoryLog`]), `counters`,
//! `keyed_hash`, `shard` (the state machine tying them together), `workload` (the standard workloads of
//! docs/FOUNDATIONS.md §7 for benches and `tessera perf`). Measured figures: docs/PERFORMANCE.md.

pub mod config;
pub mod counters;
pub mod dedup;
pub mod gossip;
pub mod hashing;
pub mod keyed_hash;
pub mod log_sink;
pub mod retained;
pub mod shard;
pub mod subscriptions;
pub mod verify;
pub mod workload;

pub use config::{ConfigError, EngineConfig};
pub use counters::ShardCounters;
pub use gossip::{Origin, PeerId};
pub use log_sink::{LogSink, MemoryLog};
pub use retained::{RetainedIndex, ScanCursor, ScanStep};
pub use shard::{Delivery, PublishSummary, Shard, PUBLISH_BATCH_PROOFS_MAX};
pub use subscriptions::SubscribeError;
pub use verify::Rejection;
