//! Load generation and performance reports: the standard workloads of DESIGN.md §7 run against a real relay.
//!
//! ```text
//! cli::perf_e2e ─▶ e2e::run ─▶ driver::process (relay child, /proc, RLIMIT_NOFILE)
//!                           └▶ driver::loadgen (glommio connections) ─uses─▶ workload (proofs, filters, books, pacing)
//!                                                                         └▶ stats (counters, phase control)
//!               ◀─ report (JSON / markdown / text) ◀─ procfs (parsers of /proc, start line, /metrics)
//! ```
//! Everything here is runtime-independent; the sockets and executors are in `crate::driver`.

pub mod e2e;
pub mod procfs;
pub mod report;
pub mod stats;
pub mod workload;
