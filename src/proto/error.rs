//! Why a received message was rejected by the decoder: one variant per distinct cause.
//!
//! The relay sends `ERROR(MALFORMED, detail = code())` and discards the whole message; nothing in a
//! message is acted on unless all of it decodes.

use super::proof::ProofError;

/// A decoding failure. Every variant is reachable from untrusted bytes and none of them panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message holds no frame at all.
    #[error("empty message")]
    EmptyMessage,
    /// The message is longer than `message_bytes_max`.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Message length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// More than `frames_per_message_max` frames.
    #[error("more than {max} frames in one message")]
    TooManyFrames {
        /// Limit.
        max: usize,
    },
    /// Fewer than 5 bytes remain where a frame header should start.
    #[error("truncated frame header at offset {offset}: {remaining} bytes left, 5 needed")]
    TruncatedHeader {
        /// Offset of the partial header.
        offset: usize,
        /// Bytes left in the message.
        remaining: usize,
    },
    /// A frame declares more body bytes than the message holds.
    #[error("frame {frame_type:#04x} declares {declared} body bytes, only {remaining} remain")]
    TruncatedBody {
        /// Frame type.
        frame_type: u8,
        /// Declared body length.
        declared: usize,
        /// Bytes left in the message.
        remaining: usize,
    },
    /// A frame declares a body larger than any frame may be.
    #[error("frame {frame_type:#04x} declares {len} body bytes, limit {max}")]
    FrameTooLarge {
        /// Frame type.
        frame_type: u8,
        /// Declared body length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The frame type byte is not one this version defines.
    #[error("unknown frame type {0:#04x}")]
    UnknownFrameType(u8),
    /// The body ends before the frame's fields do.
    #[error("frame {frame_type:#04x} body too short: {need} bytes needed, {have} present")]
    BodyTooShort {
        /// Frame type.
        frame_type: u8,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The body continues after the frame's last field.
    #[error("frame {frame_type:#04x} has {extra} trailing bytes")]
    TrailingBytes {
        /// Frame type.
        frame_type: u8,
        /// Extra bytes.
        extra: usize,
    },
    /// HELLO does not start with "TSRA".
    #[error("HELLO magic is not \"TSRA\"")]
    BadMagic,
    /// HELLO names a role other than client (1) or peer (2).
    #[error("unknown role {0}")]
    UnknownRole(u8),
    /// A flags or reserved field has bits this version does not define.
    #[error("frame {frame_type:#04x} has undefined flag bits {flags:#04x}")]
    BadFlags {
        /// Frame type.
        frame_type: u8,
        /// The flags byte.
        flags: u8,
    },
    /// A batch holds more proofs than `proofs_per_batch_max`.
    #[error("batch of {count} proofs exceeds the limit of {max}")]
    BatchTooLarge {
        /// Declared count.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// PUBLISH or DELIVER with zero proofs.
    #[error("frame {frame_type:#04x} carries no proof")]
    EmptyBatch {
        /// Frame type.
        frame_type: u8,
    },
    /// A proof in a batch is structurally invalid.
    #[error("proof {index} in the batch: {error}")]
    Proof {
        /// Index of the proof in its batch.
        index: usize,
        /// What is wrong with it.
        error: ProofError,
    },
    /// SUBSCRIBE with more entries than `entries_per_subscribe_max`.
    #[error("{count} subscribe entries exceed the limit of {max}")]
    TooManyEntries {
        /// Declared count.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// A filter's length is not `m / 8` for this relay's `m`.
    #[error("filter of {got} bytes, this relay's filters are {expected} bytes")]
    FilterLength {
        /// Declared length.
        got: usize,
        /// `m / 8`.
        expected: usize,
    },
    /// A subscription window range ends before it starts.
    #[error("window range {from}..={to} is empty")]
    WindowRange {
        /// First window start.
        from: u64,
        /// Last window start.
        to: u64,
    },
    /// FETCH asks for zero proofs or more than `proofs_per_batch_max`.
    #[error("FETCH page of {0} proofs is out of range")]
    FetchPageSize(u16),
    /// ERROR text longer than `ERROR_TEXT_BYTES_MAX`.
    #[error("error text of {0} bytes is too long")]
    TextTooLong(usize),
    /// ERROR text is not UTF-8.
    #[error("error text is not UTF-8")]
    TextNotUtf8,
    /// HELLO_REPLY carries parameters no relay could use (zero buckets, zero window, bad Bloom m/k, wrong proof size).
    #[error("relay parameters are invalid: {0}")]
    InvalidParams(&'static str),
}

impl DecodeError {
    /// Stable numeric code sent as the `detail` of ERROR(MALFORMED).
    pub fn code(&self) -> u32 {
        match self {
            DecodeError::EmptyMessage => 1,
            DecodeError::MessageTooLarge { .. } => 2,
            DecodeError::TooManyFrames { .. } => 3,
            DecodeError::TruncatedHeader { .. } => 4,
            DecodeError::TruncatedBody { .. } => 5,
            DecodeError::FrameTooLarge { .. } => 6,
            DecodeError::UnknownFrameType(_) => 7,
            DecodeError::BodyTooShort { .. } => 8,
            DecodeError::TrailingBytes { .. } => 9,
            DecodeError::BadMagic => 10,
            DecodeError::UnknownRole(_) => 11,
            DecodeError::BadFlags { .. } => 12,
            DecodeError::BatchTooLarge { .. } => 13,
            DecodeError::EmptyBatch { .. } => 14,
            DecodeError::Proof { error: ProofError::BadVersion(_), .. } => 15,
            DecodeError::Proof { error: ProofError::NonZeroReserved(_), .. } => 16,
            DecodeError::Proof { .. } => 17,
            DecodeError::TooManyEntries { .. } => 18,
            DecodeError::FilterLength { .. } => 19,
            DecodeError::WindowRange { .. } => 20,
            DecodeError::FetchPageSize(_) => 21,
            DecodeError::TextTooLong(_) => 22,
            DecodeError::TextNotUtf8 => 23,
            DecodeError::InvalidParams(_) => 24,
        }
    }
}
