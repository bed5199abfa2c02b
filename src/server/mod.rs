//! The relay server's runtime-independent core: configuration, per-shard state machine, connection
//! protocol state, send queues, cross-shard messages, metrics and the small HTTP surface.
//!
//! The `driver` module runs these under glommio; tests can run them directly.

pub mod config;
pub mod conn;
pub mod http;
pub mod metrics;
pub mod msg;
pub mod outbox;
pub mod shard;
