//! Drivers: the thin I/O layers around the pure cores (glommio executors, files, sockets).
//!
//! - [`log_io`]: one shard's durable log on glommio DMA files (group commit, recovery, retention, FETCH reads),
//!   with [`log_open`] (recovery at open), [`log_files`] (direct-I/O primitives), [`log_signal`] (wake-ups)
//!   and [`log_readback`] (blocking read-back for tests and tooling).

pub mod log_files;
pub mod log_io;
pub mod log_open;
pub mod log_readback;
pub mod log_signal;
