//! Receiving: a delivered proof is looked up by commit, checked, opened, verified, deduplicated and
//! reassembled; anything else is discarded silently (and counted).
//!
//! ```text
//! proof ─commit─▶ expected? ──no──▶ UnknownCommit   (Bloom false positive, dummy, someone else's)
//!         window = expected's? ──no──▶ WrongWindow
//!         bucket, fingerprint = expected's? ──no──▶ HeaderMismatch
//!         (window, seq) already accepted? ──yes──▶ Replayed
//!         envelope::open: tag, Y', Schnorr, body ──▶ Envelope(..)
//!         ──▶ mark received ──▶ reassembly ──▶ UTF-8 ──▶ ReceivedMessage { contact, time, text }
//! ```
//! `open` is the pure check with a typed error for each rejection; `handle_deliver` applies it and
//! discards rejections, as a client must: a relay delivers false positives and dummies routinely.

use super::delivery::DeliveryId;
use super::envelope::{self, EnvelopeError, OpenedPart};
use super::reassembly::ReassemblyError;
use super::state::ClientState;
use crate::proto::proof::{ProofBatch, ProofRef};

/// Why a delivered proof is not accepted. Each is a distinct rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// No contact's expected delivery has this commit (a false positive of our filter, or a dummy).
    #[error("no expected delivery has this commit")]
    UnknownCommit,
    /// The commit is expected in another window than the proof claims.
    #[error("proof claims window {got} but its commit belongs to window {expected}")]
    WrongWindow {
        /// Window of the expected delivery.
        expected: u64,
        /// Window in the proof header.
        got: u64,
    },
    /// Bucket or fingerprint differ from what the commit derives.
    #[error("proof header bucket or fingerprint does not match its commit")]
    HeaderMismatch,
    /// This delivery was already accepted.
    #[error("delivery already received (replayed proof)")]
    Replayed,
    /// The envelope does not open or verify.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// A proof that opened and verified: who sent it, which delivery, and the part it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Index of the contact (in `ClientState::contacts()` order).
    pub contact: usize,
    /// The delivery.
    pub id: DeliveryId,
    /// The part.
    pub part: OpenedPart,
}

/// A whole message received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The contact's local name.
    pub contact: String,
    /// Start of the window it was sent in (Unix seconds): the time shown to the user.
    pub window_start_s: u64,
    /// Sequence number of its first part (orders messages of one contact within a window).
    pub seq: u32,
    /// The text.
    pub text: String,
}

/// What `handle_deliver` did with proofs, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Parts accepted.
    pub parts_accepted: u64,
    /// Messages completed.
    pub messages: u64,
    /// Unknown commits (false positives, dummies).
    pub unknown: u64,
    /// Proofs whose header contradicts their commit's expected window, bucket or fingerprint.
    pub bad_header: u64,
    /// Replays.
    pub replayed: u64,
    /// Envelopes that failed to open or verify.
    pub bad_envelope: u64,
    /// Parts that did not fit their message, or messages that were not UTF-8.
    pub bad_message: u64,
    /// Our own cover proofs, recognised and dropped (`client::cover`).
    pub cover: u64,
}

impl ClientState {
    /// Checks and opens a delivered proof without changing any state.
    pub fn open(&self, proof: ProofRef<'_>) -> Result<Opened, OpenError> {
        let e = self.expected.get(proof.commit()).ok_or(OpenError::UnknownCommit)?;
        if proof.window_start() != e.id.window_start_s {
            return Err(OpenError::WrongWindow { expected: e.id.window_start_s, got: proof.window_start() });
        }
        if proof.bucket() != e.routing.bucket || proof.fingerprint() != &e.routing.fingerprint {
            return Err(OpenError::HeaderMismatch);
        }
        let contact = e.contact as usize;
        let c = &self.contacts[contact];
        if c.received.contains(&(e.id.window_start_s, e.id.seq)) {
            return Err(OpenError::Replayed);
        }
        let part = envelope::open(&c.pairing.secret, e.id, &e.key, &e.routing, proof.ciphertext())?;
        Ok(Opened { contact, id: e.id, part })
    }

    /// Handles one delivered proof: returns a message when this proof completes one; discards (and counts)
    /// everything that does not open, verify, or fit.
    pub fn handle_deliver(&mut self, proof: ProofRef<'_>) -> Option<ReceivedMessage> {
        let opened = match self.open(proof) {
            Ok(opened) => opened,
            Err(error) => {
                let counter = match error {
                    OpenError::UnknownCommit if self.is_own_cover(proof) => &mut self.stats.cover,
                    OpenError::UnknownCommit => &mut self.stats.unknown,
                    OpenError::WrongWindow { .. } | OpenError::HeaderMismatch => &mut self.stats.bad_header,
                    OpenError::Replayed => &mut self.stats.replayed,
                    OpenError::Envelope(_) => &mut self.stats.bad_envelope,
                };
                *counter += 1;
                return None;
            }
        };
        let id = opened.id;
        self.contacts[opened.contact].received.insert((id.window_start_s, id.seq));
        self.dirty = true;
        self.stats.parts_accepted += 1;
        let done: Result<_, ReassemblyError> =
            self.reassembly.insert(opened.contact as u32, id.window_start_s, id.seq, opened.part);
        let ((_, window_start_s, seq), bytes) = match done {
            Ok(Some(message)) => message,
            Ok(None) => return None,
            Err(_) => {
                self.stats.bad_message += 1;
                return None;
            }
        };
        let Ok(text) = String::from_utf8(bytes) else {
            self.stats.bad_message += 1;
            return None;
        };
        self.stats.messages += 1;
        Some(ReceivedMessage { contact: self.contacts[opened.contact].contact.name.clone(), window_start_s, seq, text })
    }

    /// Handles a DELIVER or FETCH_REPLY batch; returns the messages it completes, oldest first.
    pub fn handle_batch(&mut self, proofs: &ProofBatch) -> Vec<ReceivedMessage> {
        let mut messages: Vec<ReceivedMessage> = proofs.iter().filter_map(|p| self.handle_deliver(p)).collect();
        messages.sort_by(|a, b| (a.window_start_s, &a.contact, a.seq).cmp(&(b.window_start_s, &b.contact, b.seq)));
        messages
    }
}
