//! The pure half of load generation and performance reports (the standard workloads of docs/FOUNDATIONS.md §7): what
//! the load generator sends, counts, parses and reports, with no sockets, processes or executors.
//!
//! ```text
//! the load generator (runtime side) ─uses─▶ workload (proofs, filters, books, pacing)
//!                                    └────▶ stats (counters, phase control)
//!                                    └────▶ procfs (parsers of /proc, the start line, /metrics)
//!                                    ─────▶ report (JSON / markdown / text)
//! ```
//! Nothing here does I/O or depends on the runtime, and nothing here imports the runtime's modules: the load
//! generator that drives these over sockets and a relay child process lives with the runtime and depends on
//! this module, never the other way round.

pub mod hostile;
pub mod procfs;
pub mod report;
pub mod stats;
pub mod workload;
