//! Tessera: a metadata-private messaging relay.
//!
//! # Layout
//!
//! Data flows from a client's WebSocket message to subscriber queues and peers:
//!
//! ```text
//! client ──ws──▶ proto::codec ──frames──▶ shard (owner of the proof's bucket)
//!                                           ├─▶ verify derivations, dedup by (commit, window)
//!                                           ├─▶ log (append-only, durable before ACK)
//!                                           ├─▶ match fingerprint vs the bucket's filters ─▶ delivery queues ─▶ subscribers
//!                                           └─▶ gossip ─▶ peers
//! ```
//!
//! - [`cli`]: command-line parsing and dispatch, one file per command group.
//! - [`driver`]: I/O around the pure cores; `driver::log_io` is one shard's log on glommio DMA files.
//! - [`log`]: the durable per-shard log, pure part (segment format, recovery scan, group commit, retention,
//!   FETCH mailboxes, persisted subscriptions); its I/O is in `driver::log_io`.
//! - [`proto`]: the wire protocol — derivations (DESIGN.md §2), Bloom filter, fixed-size proof, frame codec.
//!   Pure: no I/O, no clock, no randomness.
#![warn(missing_docs)]

pub mod cli;
pub mod driver;
pub mod log;
pub mod proto;
