//! What a shard's server needs from its log, as a sans-IO interface.
//!
//! ```text
//! engine.handle_publish ─▶ LogSink::append (stage)      record_match(key, position) for every delivery
//! SUBSCRIBE/UNSUBSCRIBE ─▶ persist_subscription(key, entries)
//! ticket() after staging ─▶ ACK / SUBSCRIBED held until is_durable(ticket)
//! ```
//! The durable implementation is `driver::log_io::ShardLog` (glommio DMA, group commit); the in-memory
//! `engine::MemoryLog` is "durable" at once and keeps no match records (tests and benchmarks).

use crate::engine::{LogPosition, LogSink, MemoryLog};
use crate::log::mailbox::SubscriberKey;
use crate::proto::SubscribeEntry;

/// Why storage refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The log cannot take more right now (its staging bound or journal is full); retry shortly.
    #[error("storage is busy; retry shortly")]
    Busy,
    /// The log failed a commit and accepts nothing more: the relay must restart.
    #[error("storage failed; the relay must restart")]
    Failed,
}

/// A shard's log as its server sees it.
pub trait ShardStorage: LogSink {
    /// Whether `proofs` more proofs can be appended now (the driver waits otherwise: backpressure).
    fn can_accept(&self, proofs: u64) -> bool;
    /// Records that the proof at `position` matched subscriber `key`, so FETCH can return it.
    fn record_match(&mut self, key: SubscriberKey, position: LogPosition);
    /// Persists `key`'s subscription entries, replacing earlier ones (none = cleared).
    fn persist_subscription(&mut self, key: SubscriberKey, entries: &[SubscribeEntry]) -> Result<(), StorageError>;
    /// A ticket covering everything appended, recorded or persisted so far.
    fn ticket(&self) -> u64;
    /// Whether everything covered by `ticket` is durable.
    fn is_durable(&self, ticket: u64) -> bool;
}

impl ShardStorage for MemoryLog {
    fn can_accept(&self, _proofs: u64) -> bool {
        true
    }

    fn record_match(&mut self, _key: SubscriberKey, _position: LogPosition) {}

    fn persist_subscription(&mut self, _key: SubscriberKey, _entries: &[SubscribeEntry]) -> Result<(), StorageError> {
        Ok(())
    }

    fn ticket(&self) -> u64 {
        0
    }

    fn is_durable(&self, _ticket: u64) -> bool {
        true
    }
}
