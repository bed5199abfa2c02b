//! Tessera: a metadata-private messaging relay.
//!
//! # Layout
//!
//! Data flows from a client's WebSocket message to subscriber queues, the log and peers
//! (docs/ARCHITECTURE.md has the whole picture):
//!
//! ```text
//! client ──ws──▶ driver::relay::connection ──bytes──▶ server::ShardServer (the connection's shard): proto::codec
//!   PUBLISH ─split by owner shard─▶ bounded channel ─▶ owner shard: engine::Shard
//!       verify derivations ─▶ dedup (commit, window) ─▶ log (driver::relay::log_io, group commit)
//!       ─▶ index: match the fingerprint against the bucket's filters ─▶ match records (FETCH)
//!       ─▶ deliveries ─▶ subscriber's connection outbox ─▶ DELIVER      └─▶ gossip outboxes ─▶ peers
//!   ACK / SUBSCRIBED ◀── held until the log's ticket is durable (fdatasync)
//!   FETCH ─▶ every shard's mailbox for the subscriber ─▶ FETCH_REPLY
//! dp::CoverSchedule (per shard, per round) ─▶ dummy proofs ─▶ the same path as real proofs
//! ```
//!
//! - [`cli`]: command-line parsing and dispatch, one file per command group.
//! - [`client`]: identities, invites, the end-to-end envelope and the sans-IO client state (plus `store`, its key directory).
//! - [`dp`]: DP cover traffic — exact discrete Laplace sampler, per-round dummy schedule, dummy proofs, audit.
//! - [`driver`]: the only runtime-specific code (glommio, sockets, files, signals, clocks), by role: `relay`
//!   (one executor per shard, connections, log I/O), `client` (connection and session), `loadgen` (the W-e2e
//!   load generator: runner, relay child process, connections); shared leaves `clock`, `flock`, `wake_flag`.
//! - [`engine`]: the sans-IO routing shard — verify, dedup, log sink, match, deliveries and gossip outboxes.
//! - [`index`]: per-bucket subscription indexes (bit-sliced SIMD fast path, scalar oracle).
//! - [`log`]: the durable per-shard log, pure part (segment format, recovery scan, group commit, retention,
//!   FETCH mailboxes, persisted subscriptions); its I/O is `driver::relay::log_io` (glommio DMA files).
//! - [`perf`]: the pure half of the standard workloads (W-e2e): proofs, filters, pacing, counters, `/proc` and
//!   `/metrics` parsers, reports; the load generator that runs them is `driver::loadgen`.
//! - [`proto`]: the wire protocol — derivations (docs/FOUNDATIONS.md §2), Bloom filter, fixed-size proof, frame codec.
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
pub mod fuzzing;
pub mod index;
pub mod log;
pub mod perf;
pub mod proto;
pub mod server;
pub mod sim;
