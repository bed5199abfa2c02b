//! What a session is configured with, and what its sends report: the options every wait of a session is
//! bounded by (and how it authenticates a wss:// relay and sends client cover), an acknowledged send, and a
//! send that waits for the next window.

use std::time::Duration;

use super::FETCH_PAGE_PROOFS;
use crate::client::COVER_PROOFS_PER_ROUND_DEFAULT;

/// Bounds on every wait of a session, and how it authenticates a wss:// relay.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// TCP connect, WebSocket handshake and HELLO together.
    pub connect_timeout: Duration,
    /// Each reply waited for: SUBSCRIBED, FETCH_REPLY, ACK.
    pub reply_timeout: Duration,
    /// Proofs per FETCH page (capped by the relay's limit).
    pub fetch_page_proofs: u16,
    /// When a contact's sequence numbers of the current window are used up (8 parts per 10 s), wait for the
    /// next window instead of failing with `SendError::WindowFull`.
    pub wait_for_free_window: bool,
    /// wss:// only: extra trust anchors (`--tls-ca`) and the relay certificate's pin (`--tls-pin`, or an invite's).
    pub tls: crate::driver::tls::TlsClientOptions,
    /// Client cover: proofs per round (the relay's window) whose self-addressed fingerprints the filters
    /// hold, and that a connected session publishes when `client_cover` is on (1..=8; docs/PRIVACY.md).
    pub cover_proofs_per_round: u32,
    /// Publish `cover_proofs_per_round` proofs every round while connected, real messages first (see
    /// `cover`). Off: messages go at once and the link shows when this client talks.
    pub client_cover: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(10),
            fetch_page_proofs: FETCH_PAGE_PROOFS,
            wait_for_free_window: true,
            tls: crate::driver::tls::TlsClientOptions::default(),
            cover_proofs_per_round: COVER_PROOFS_PER_ROUND_DEFAULT,
            client_cover: true,
        }
    }
}

/// A message handed to the relay and acknowledged as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Proofs (parts) it took.
    pub proofs: usize,
    /// The window it was sealed in (Unix seconds).
    pub window_start_s: u64,
}

/// A send that waits for the next window: this window's sequence numbers for the contact are used up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowWait {
    /// The contact.
    pub contact: String,
    /// Sequence numbers (message parts) still free for the contact in this window.
    pub free: u32,
    /// Parts the message needs.
    pub parts: u32,
    /// How long until the next window starts.
    pub wait: Duration,
}
