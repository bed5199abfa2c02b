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
//! - [`client`]: identities, invites, the end-to-end envelope and the sans-IO client state (plus `store`, its key directory).
//! - [`dp`]: DP cover traffic — exact discrete Laplace sampler, per-round dummy schedule, dummy proofs, audit.
//! - [`driver`]: glommio executors (one per core), sockets, signals — the only runtime-specific code.
//! - [`engine`]: the sans-IO routing shard — verify, dedup, log sink, match, deliveries and gossip outboxes.
//! - [`index`]: per-bucket subscription indexes (bit-sliced SIMD fast path, scalar oracle).
//! - [`log`]: the durable per-shard log, pure part (segment format, recovery scan, group commit, retention,
//!   FETCH mailboxes, persisted subscriptions); its I/O is `driver::log_io` (glommio DMA files).
//! - [`perf`]: load generation and reports for the standard workloads (W-e2e: a relay process under load).
//! - [`proto`]: the wire protocol — derivations (DESIGN.md §2), Bloom filter, fixed-size proof, frame codec.
//!   Pure: no I/O, no clock, no randomness.
//! - [`server`]: the relay's runtime-independent core — config, per-shard state machine, connection state,
//!   bounded send queues, cross-shard messages, metrics, the HTTP surface of `/metrics` and `/healthz`.
//! - [`sim`]: privacy simulators (`tessera sim`): linkability under cover policies, bucket anonymity, Bloom FPR.
#![warn(missing_docs)]

pub mod cli;
pub mod client;
pub mod dp;
pub mod driver;
pub mod engine;
pub mod index;
pub mod log;
pub mod perf;
pub mod proto;
pub mod server;
pub mod sim;
