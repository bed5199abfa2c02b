//! Every limit the relay enforces on its peers, with the reason for its default value.
//!
//! The relay announces these in HELLO_REPLY, the decoder enforces the structural ones (message size, frames
//! per message, proofs per batch, entries per subscribe), and the server enforces the rest. What happens when
//! each one is exceeded is specified in docs/PROTOCOL.md §Limits.

use super::params::PROOF_LEN;

/// Largest ERROR text, in bytes of UTF-8: enough for a sentence, too small to be a data channel.
pub const ERROR_TEXT_BYTES_MAX: usize = 256;

/// Limits a relay imposes on each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest WebSocket message (a batch of frames), bytes. 1 MiB, as the reference: it holds one full
    /// PUBLISH batch (`proofs_per_batch_max × 564 B` = 577,536 B) with room for a SUBSCRIBE in the same message.
    pub message_bytes_max: u32,
    /// Frames in one message. Bounds the per-message frame list the decoder allocates (64 × a few words).
    pub frames_per_message_max: u16,
    /// Proofs in one PUBLISH, DELIVER or FETCH_REPLY. 1024 amortises framing and per-batch work (hashing is
    /// interleaved across a batch) while keeping a batch's ack latency to one group commit.
    pub proofs_per_batch_max: u16,
    /// Entries in one SUBSCRIBE: all 64 buckets × 4 filters each (a client registering in every bucket, padded).
    pub entries_per_subscribe_max: u16,
    /// Filters one subscriber may register for one bucket: capacity for 4 × 60 expected fingerprints.
    pub filters_per_bucket_max: u16,
    /// Distinct subscriber ids one connection may register; bounds per-connection index memory
    /// (64 ids × 256 entries × 128 B = 2 MiB worst case).
    pub subscribers_per_connection_max: u16,
    /// How many windows ahead of the current one a subscription may reach: 360 windows = 1 hour at 10 s,
    /// the default retention, so registering ahead covers a full offline period and no more.
    pub subscription_windows_ahead_max: u32,
    /// Open connections per relay (all shards together); past it new connections are refused.
    pub connections_max: u32,
    /// Proofs queued for sending on one connection; past it deliveries go to FETCH storage and the
    /// connection is closed after a grace period (a slow subscriber never slows the others).
    pub send_queue_proofs_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            message_bytes_max: 1 << 20,
            frames_per_message_max: 64,
            proofs_per_batch_max: 1024,
            entries_per_subscribe_max: 256,
            filters_per_bucket_max: 4,
            subscribers_per_connection_max: 64,
            subscription_windows_ahead_max: 360,
            connections_max: 65_536,
            send_queue_proofs_max: 8_192,
        }
    }
}

impl Limits {
    /// Largest single frame body the decoder accepts: a message minus one frame header (0 for a limit too
    /// small to hold a header, rather than an underflow: `Limits` can be built from any configuration).
    pub fn frame_body_bytes_max(&self) -> usize {
        (self.message_bytes_max as usize).saturating_sub(super::codec::FRAME_HEADER_LEN)
    }

    /// Bytes of proofs one batch may carry.
    pub fn batch_bytes_max(&self) -> usize {
        self.proofs_per_batch_max as usize * PROOF_LEN
    }
}

const _: () = assert!(1024 * PROOF_LEN < (1 << 20));
