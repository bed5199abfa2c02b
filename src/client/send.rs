//! Sending: a message becomes one sealed proof per part, on fresh sequence numbers of the current window.
//!
//! ```text
//! prepare_send(contact, text, now_s, rng)
//!   window = window_start(now_s); seq₀ = the contact's next free seq in this window (0 in a new window)
//!   parts  = split(text) (≤ SEQS_PER_WINDOW − seq₀, else WindowFull with the time to retry)
//!   counter ← seq₀ + parts            (persist before publishing: a reused seq reuses a GCM nonce)
//!   part i → envelope::seal(delivery (window, our direction, seq₀ + i), aux = 32 bytes from rng)
//! ```

use rand_core::{CryptoRng, RngCore};

use super::delivery::{DeliveryId, SEQS_PER_WINDOW};
use super::envelope::{self, Part, MESSAGE_LEN_MAX};
use super::reassembly::split;
use super::state::{ClientState, SendCounter};
use crate::proto::derive::window_start;
use crate::proto::proof::Proof;

/// Why a message cannot be sent now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No contact by that name.
    #[error("no contact named {0:?}")]
    UnknownContact(String),
    /// Nothing to send.
    #[error("the message is empty")]
    EmptyMessage,
    /// Longer than one window's worth of parts.
    #[error("the message is {len} bytes; at most {max} fit")]
    MessageTooLong {
        /// Bytes given.
        len: usize,
        /// `MESSAGE_LEN_MAX`.
        max: usize,
    },
    /// This window's sequence numbers for the contact do not leave room for the message.
    #[error("{free} of {SEQS_PER_WINDOW} slots left for this contact in this window; retry at {retry_at_s}")]
    WindowFull {
        /// Sequence numbers still free in this window.
        free: u32,
        /// Start of the next window (Unix seconds).
        retry_at_s: u64,
    },
    /// The clock is before the last window sent in: sending would risk a reused sequence number.
    #[error("the clock ({now_window_s}) is before the last window used ({last_window_s}); refusing to send")]
    ClockWentBack {
        /// Window of the last send.
        last_window_s: u64,
        /// Window now.
        now_window_s: u64,
    },
}

/// A message's length as the envelope takes it: not empty, at most `MESSAGE_LEN_MAX` bytes (shared by the
/// immediate send and the client-cover queue, `cover_schedule`).
pub fn check_message_len(text: &str) -> Result<(), SendError> {
    if text.is_empty() {
        return Err(SendError::EmptyMessage);
    }
    if text.len() > MESSAGE_LEN_MAX {
        return Err(SendError::MessageTooLong { len: text.len(), max: MESSAGE_LEN_MAX });
    }
    Ok(())
}

impl ClientState {
    /// Seals `text` to `contact` as one proof per part, in part order; publish them in the window of `now_s`.
    ///
    /// The contact's sequence counter is advanced before returning: the driver must persist `persisted()`
    /// durably before publishing, so a crash can never lead to the same sequence number being sealed twice.
    pub fn prepare_send<R: RngCore + CryptoRng>(
        &mut self,
        contact: &str,
        text: &str,
        now_s: u64,
        rng: &mut R,
    ) -> Result<Vec<Proof>, SendError> {
        let index = self.contact_index(contact).ok_or_else(|| SendError::UnknownContact(contact.to_owned()))?;
        check_message_len(text)?;
        let bytes = text.as_bytes();
        let window = window_start(now_s, self.config.window_s);
        let c = &mut self.contacts[index];
        let first_seq = match c.send {
            Some(s) if s.window_start_s > window => {
                return Err(SendError::ClockWentBack { last_window_s: s.window_start_s, now_window_s: window })
            }
            Some(s) if s.window_start_s == window => s.next_seq,
            _ => 0,
        };
        let chunks = split(bytes);
        // MESSAGE_LEN_MAX bounds the part count by SEQS_PER_WINDOW.
        let count = chunks.len() as u32;
        if first_seq + count > SEQS_PER_WINDOW {
            return Err(SendError::WindowFull {
                free: SEQS_PER_WINDOW - first_seq,
                retry_at_s: window + self.config.window_s,
            });
        }
        c.send = Some(SendCounter { window_start_s: window, next_seq: first_seq + count });
        self.dirty = true;

        let c = &self.contacts[index];
        let proofs = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let id = DeliveryId {
                    window_start_s: window,
                    direction: c.pairing.send_direction,
                    seq: first_seq + i as u32,
                };
                let part = Part::new(i as u8, count as u8, chunk).expect("split yields ≤ SEQS_PER_WINDOW full chunks");
                let mut aux = [0u8; 32];
                rng.fill_bytes(&mut aux);
                envelope::seal(&self.identity, &c.pairing.secret, id, self.config.num_buckets, part, &aux)
            })
            .collect();
        Ok(proofs)
    }
}
