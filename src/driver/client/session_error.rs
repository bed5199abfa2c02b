//! Why a client session operation failed, and which relay ERRORs end which operation.
//!
//! ```text
//! ERROR ─▶ ref_seq = a PUBLISH's seq ─▶ that send (Refused; SEQUENCE / STORAGE refuse the batch whole)
//!       ─▶ a SUBSCRIBE refusal (range, filters, subscribers, bucket) ─▶ SubscribeRefused
//!       ─▶ OVERLOADED, ref_seq 0 ─▶ the SUBSCRIBE in flight is resent later (subscribe_queue)
//!       ─▶ anything else with ref_seq 0 ─▶ Relay (SHUTTING_DOWN: reconnect)
//! ```
//! `is_connection_error` is what `recv --follow` and `chat` test before reconnecting.

use std::path::PathBuf;

use super::conn::ClientError;
use crate::client::{PlanError, RelayParamsError, SendError, StateError, StoreError};
use crate::proto::frame::ErrorFrame;
use crate::proto::ErrorCode;

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The relay could not be reached (DNS, TCP, WebSocket handshake or HELLO failed).
    #[error("cannot reach the relay at {url}: {source}")]
    Unreachable {
        /// The relay URL.
        url: String,
        /// What failed.
        source: ClientError,
    },
    /// The relay answered HELLO with parameters this client refuses (docs/PROTOCOL.md §4.2): reconnecting to it
    /// cannot help, so it is not a connection error.
    #[error("refusing the relay at {url}: {source}")]
    UnusableRelay {
        /// The relay URL.
        url: String,
        /// The field, its value and the accepted range.
        source: RelayParamsError,
    },
    /// No reply within the configured time.
    #[error("timed out after {after_ms} ms waiting for {what} from the relay")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// The bound that passed.
        after_ms: u64,
    },
    /// The relay refused proofs of a PUBLISH (the first refusal is shown; the others share its batch).
    #[error("the relay refused {refused} of {proofs} proofs: {} ({})", .error.code, .error.text)]
    Refused {
        /// The first ERROR naming the PUBLISH.
        error: ErrorFrame,
        /// Proofs refused (all of them for SEQUENCE and STORAGE, which refuse a PUBLISH whole).
        refused: usize,
        /// Proofs of the message.
        proofs: usize,
    },
    /// A message could not be queued for client cover (empty, too long, or the queue is full).
    #[error(transparent)]
    CoverQueue(#[from] crate::client::CoverQueueError),
    /// The relay refused a SUBSCRIBE (range, bucket, filter or subscriber limits); the previous one stays.
    #[error("the relay refused the subscription: {} ({})", .0.code, .0.text)]
    SubscribeRefused(ErrorFrame),
    /// The relay reported an error about the connection (shutting down, slow consumer, a protocol error).
    #[error("the relay reported {}: {}", .0.code, .0.text)]
    Relay(ErrorFrame),
    /// The connection closed.
    #[error("the connection to the relay closed")]
    ConnectionLost,
    /// The WebSocket failed, or the relay sent a message that does not decode.
    #[error(transparent)]
    Transport(ClientError),
    /// Another process uses this key directory.
    #[error("{0} is in use by another tessera process (one client per key directory)")]
    HomeInUse(PathBuf),
    /// The message cannot be sent (unknown contact, too long, clock went back…).
    #[error(transparent)]
    Send(#[from] SendError),
    /// The subscription cannot be planned within the relay's limits.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The client state cannot be built from the key directory (or with this relay's parameters).
    #[error(transparent)]
    State(#[from] StateError),
    /// The key directory failed (including writing `state.json`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SessionError {
    /// Whether reconnecting may help (the connection broke; nothing local is wrong).
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            SessionError::Unreachable { .. }
                | SessionError::Timeout { .. }
                | SessionError::ConnectionLost
                | SessionError::Transport(_)
        ) && !matches!(self, SessionError::Unreachable { source, .. } if source.is_trust_failure())
            || matches!(self, SessionError::Relay(e) if e.code == ErrorCode::SHUTTING_DOWN)
    }
}

/// Is `code` one of the refusals of a SUBSCRIBE (docs/PROTOCOL.md §5.6)?
pub(super) fn is_subscribe_refusal(code: ErrorCode) -> bool {
    [
        ErrorCode::TOO_MANY_SUBSCRIBERS,
        ErrorCode::TOO_MANY_FILTERS,
        ErrorCode::SUBSCRIPTION_RANGE,
        ErrorCode::BUCKET_OUT_OF_RANGE,
    ]
    .contains(&code)
}

/// Does an ERROR with this code refuse a PUBLISH whole (no ACK will cover it)?
pub(super) fn refuses_whole(code: ErrorCode) -> bool {
    code == ErrorCode::SEQUENCE || code == ErrorCode::STORAGE
}
