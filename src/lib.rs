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
//! - [`dp`]: DP cover traffic — exact discrete Laplace sampler, per-round dummy schedule, dummy proofs, audit.
//! - [`proto`]: the wire protocol — derivations (DESIGN.md §2), Bloom filter, fixed-size proof, frame codec.
//!   Pure: no I/O, no clock, no randomness.
//! - [`sim`]: privacy simulators (`tessera sim`): linkability under cover policies, bucket anonymity, Bloom FPR.
#![warn(missing_docs)]

pub mod cli;
pub mod dp;
pub mod proto;
pub mod sim;
