//! The durable append-only log of one shard, pure part: formats, recovery scanning, group commit, retention,
//! mailboxes for FETCH and persisted subscriptions. No I/O, no clock: `crate::driver::relay::log_io` executes what
//! this module decides (docs/STORAGE.md is the byte-by-byte description).
//!
//! ```text
//!  engine ── append(proof, received_at_s) ──▶ LogState ── take_job(now) ──▶ CommitJob ──▶ driver: write + fdatasync
//!         ── record_match(key, seq) ────────▶    │                                            │
//!  server ── subscribe / fetch ─────────────▶    │ ◀──────────── complete_job(id) ────────────┘ ─▶ ACK publishers
//!                                                │
//!  shard-NNN/seg-<n>.log    proof records (format, record)        retention: whole segments past the horizon,
//!  shard-NNN/seg-<n>.mbx    match records of seg n (mailbox)      with their .mbx (retention)
//!  shard-NNN/subs-<n>.journal  subscriptions + FETCH cursors (subscriptions)
//!  open: scan every file (scan, recovery) ─▶ truncate torn tails, skip corrupt records, rebuild dedup,
//!        mailboxes and subscriptions
//! ```
//!
//! - [`format`](mod@format): the 4 KiB header block of every file.
//! - [`record`]: the 584-byte proof record and [`RecordSeq`] (also what the engine's `LogSink::append` returns).
//! - [`layout`]: slots in blocks, staging appends as aligned block writes (tail-block rewrite).
//! - [`scan`]: recovery scanning (torn tail / torn holes / corrupt).
//! - [`commit`]: the group-commit policy (N records or D µs).
//! - [`job`]: a commit as plain data for the driver.
//! - [`mailbox`]: match records, per-subscriber index, FETCH cursors.
//! - [`subscriptions`]: the subscription journal.
//! - [`retention`]: which segments go, when the active one rolls.
//! - [`stall`]: a commit that failed for want of space: parked, retried with backoff, never acknowledged early.
//! - [`state`]: [`LogState`], the state machine tying these together.
//! - [`recovery`]: from scanned files back to a [`LogState`].
//! - [`config`], [`counters`]: knobs and metrics.

pub mod commit;
pub mod config;
pub mod counters;
pub mod format;
pub mod job;
pub mod layout;
pub mod mailbox;
pub mod record;
pub mod recovery;
pub mod retention;
pub mod scan;
pub mod stall;
pub mod state;
pub mod subscriptions;

/// The unit of every write and of the on-disk layout: 4 KiB. Direct I/O needs writes aligned to the device's
/// logical block (512 B here, 4 KiB on many NVMe drives); 4 KiB satisfies both and matches the page size.
pub const BLOCK_LEN: usize = 4096;

pub use commit::{CommitDecision, GroupCommit, GroupCommitPolicy};
pub use config::LogConfig;
pub use counters::LogCounters;
pub use format::{FileKind, ShardParams};
pub use job::{CommitJob, FileId};
pub use mailbox::{CursorState, SubscriberKey};
pub use record::{LogRecord, RecordSeq};
pub use recovery::{OpenError, Recovery, RecoveryReport};
pub use state::{FetchPlan, LogError, LogState, RecordLocation};
