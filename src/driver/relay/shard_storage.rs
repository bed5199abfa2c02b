//! `ShardLog` (the durable log on glommio) as the server's [`ShardStorage`].
//!
//! Every method here is synchronous staging into the log's in-memory state; the committer task makes it
//! durable. A failed commit poisons the log (fail-stop): appends are then dropped and nothing more becomes
//! durable, so nothing is acknowledged, and the shard's durability task stops the relay.

use super::log_io::ShardLog;
use crate::engine::{LogPosition, LogSink};
use crate::log::mailbox::SubscriberKey;
use crate::log::record::RecordSeq;
use crate::log::subscriptions::SubscriptionError;
use crate::proto::{ProofRef, SubscribeEntry};
use crate::server::storage::{ShardStorage, StorageError};

/// Position handed to the engine for an append the poisoned log refused; never durable, never fetched.
const POSITION_REFUSED: LogPosition = LogPosition(u64::MAX);

impl LogSink for ShardLog {
    fn append(&mut self, proof: ProofRef<'_>, received_at_s: u64) -> LogPosition {
        match ShardLog::append(self, proof, received_at_s) {
            Ok(seq) => LogPosition(seq.0),
            Err(e) => {
                tracing::error!(error = %e, "append refused by the log");
                POSITION_REFUSED
            }
        }
    }
}

impl ShardStorage for ShardLog {
    fn can_accept(&self, proofs: u64) -> bool {
        ShardLog::can_accept(self, proofs)
    }

    fn record_match(&mut self, key: SubscriberKey, position: LogPosition) {
        if position == POSITION_REFUSED {
            return;
        }
        if let Err(e) = ShardLog::record_match(self, key, RecordSeq(position.0)) {
            tracing::error!(error = %e, "match record refused by the log");
        }
    }

    fn persist_subscription(&mut self, key: SubscriberKey, entries: &[SubscribeEntry]) -> Result<(), StorageError> {
        ShardLog::subscribe(self, key, entries).map(|_| ()).map_err(|e| match e {
            SubscriptionError::JournalBusy => StorageError::Busy,
            other => {
                tracing::error!(error = %other, "subscription not persisted");
                StorageError::Failed
            }
        })
    }

    fn ticket(&self) -> u64 {
        ShardLog::ticket(self)
    }

    fn is_durable(&self, ticket: u64) -> bool {
        self.is_ticket_durable(ticket)
    }
}
