//! Why the relay refuses a client's message or frame: one typed error per case, each knowing the ERROR frame
//! it becomes (code, `ref_seq`, `detail`, text; docs/PROTOCOL.md §5.6) and whether it counts against the
//! connection's protocol-error budget.
//!
//! ```text
//! ShardServer handle_* ─▶ Err(Refusal) ─▶ refuse(conn, refusal) ─▶ ERROR frame queued on the connection
//!                                                                 └─▶ protocol error? budget spent → close 1008
//! ```

use crate::engine::SubscribeError;
use crate::proto::frame::ErrorFrame;
use crate::proto::{ClaimError, DecodeError, ErrorCode, Frame};

/// The WebSocket opcode of a text frame (RFC 6455 §5.2): the `detail` of `ERROR(BINARY_REQUIRED)`.
const TEXT_OPCODE: u32 = 0x1;

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The message did not decode.
    #[error("{0}")]
    Malformed(DecodeError),
    /// The first frame of a connection was not HELLO.
    #[error("the first frame must be HELLO")]
    HelloRequired {
        /// Type byte of the frame received instead (0 for an empty message).
        frame_type: u8,
    },
    /// A frame this connection's role may not send (docs/PROTOCOL.md §5.3).
    #[error("frame not allowed on this connection")]
    UnexpectedFrame {
        /// Its type byte.
        frame_type: u8,
    },
    /// A WebSocket text message (docs/PROTOCOL.md §2: binary only). Its payload is never decoded.
    #[error("this relay accepts binary WebSocket messages only")]
    TextMessage,
    /// PUBLISH sequence numbers must increase.
    #[error("PUBLISH sequence {seq} does not increase (last {last})")]
    SequenceNotIncreasing {
        /// The sequence received.
        seq: u64,
        /// The highest one seen before.
        last: u64,
    },
    /// A SUBSCRIBE entry names a bucket beyond the relay's.
    #[error("entry {entry}: bucket {bucket} is not below {buckets}")]
    BucketOutOfRange {
        /// Index of the entry.
        entry: u32,
        /// Its bucket.
        bucket: u16,
        /// The relay's number of buckets.
        buckets: u16,
    },
    /// A SUBSCRIBE entry's window range is empty, in the past or too far ahead.
    #[error("entry {entry}: {source}")]
    WindowRange {
        /// Index of the entry.
        entry: u32,
        /// What is wrong with the range.
        source: SubscribeError,
    },
    /// A SUBSCRIBE entry's filter has more bits set than `FILTER_FINGERPRINTS_MAX` fingerprints can set.
    #[error(
        "entry {entry}: filter has {ones} bits set, a filter of at most {fingerprints} fingerprints sets at most {max}"
    )]
    FilterSaturated {
        /// Index of the entry.
        entry: u32,
        /// Bits set.
        ones: u32,
        /// `BloomParams::filter_bits_max`.
        max: u32,
        /// `FILTER_FINGERPRINTS_MAX`.
        fingerprints: u32,
    },
    /// More filters for one bucket than `filters_per_bucket_max`.
    #[error("more than {max} filters for bucket {bucket}")]
    TooManyFilters {
        /// The bucket.
        bucket: u16,
        /// The limit.
        max: u16,
    },
    /// More distinct subscribers (or claimed ids) on one connection than `subscribers_per_connection_max`.
    #[error("at most {max} subscribers per connection")]
    TooManySubscribers {
        /// The limit.
        max: u16,
    },
    /// SUBSCRIBE, UNSUBSCRIBE or FETCH of an id not claimed on this connection (docs/PROTOCOL.md §4.12).
    #[error("subscriber id not claimed on this connection: send CLAIM first")]
    NotClaimed {
        /// Type byte of the refused frame.
        frame_type: u8,
    },
    /// A CLAIM that does not verify for this connection.
    #[error("{0}")]
    BadClaim(ClaimError),
}

impl Refusal {
    /// The ERROR code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::Malformed(_) => ErrorCode::MALFORMED,
            Refusal::HelloRequired { .. } => ErrorCode::HELLO_REQUIRED,
            Refusal::UnexpectedFrame { .. } => ErrorCode::UNEXPECTED_FRAME,
            Refusal::TextMessage => ErrorCode::BINARY_REQUIRED,
            Refusal::SequenceNotIncreasing { .. } => ErrorCode::SEQUENCE,
            Refusal::BucketOutOfRange { .. } => ErrorCode::BUCKET_OUT_OF_RANGE,
            Refusal::WindowRange { source, .. } => source.error_code(),
            Refusal::TooManyFilters { .. } => ErrorCode::TOO_MANY_FILTERS,
            Refusal::TooManySubscribers { .. } => ErrorCode::TOO_MANY_SUBSCRIBERS,
            Refusal::FilterSaturated { .. } => ErrorCode::FILTER_SATURATED,
            Refusal::NotClaimed { .. } => ErrorCode::NOT_CLAIMED,
            Refusal::BadClaim(_) => ErrorCode::BAD_CLAIM,
        }
    }

    /// The ERROR's `detail` field (docs/PROTOCOL.md §5.6 says what it holds for each code).
    pub fn detail(&self) -> u32 {
        match self {
            Refusal::Malformed(e) => e.code(),
            Refusal::HelloRequired { frame_type }
            | Refusal::UnexpectedFrame { frame_type }
            | Refusal::NotClaimed { frame_type } => (*frame_type).into(),
            Refusal::BadClaim(e) => match e {
                ClaimError::BadKey => 1,
                ClaimError::NonCanonicalResponse => 2,
                _ => 3,
            },
            Refusal::TextMessage => TEXT_OPCODE,
            Refusal::SequenceNotIncreasing { .. } => 0,
            Refusal::BucketOutOfRange { entry, .. }
            | Refusal::WindowRange { entry, .. }
            | Refusal::FilterSaturated { entry, .. } => *entry,
            Refusal::TooManyFilters { bucket, .. } => (*bucket).into(),
            Refusal::TooManySubscribers { max } => (*max).into(),
        }
    }

    /// The ERROR's `ref_seq`: the PUBLISH it answers, else 0.
    pub fn ref_seq(&self) -> u64 {
        match self {
            Refusal::SequenceNotIncreasing { seq, .. } => *seq,
            _ => 0,
        }
    }

    /// Whether it counts against the connection's protocol-error budget (docs/PROTOCOL.md §5.7). A refused
    /// sequence number does not (§5.4: the PUBLISH is refused whole and costs the relay nothing more), nor does
    /// a refused SUBSCRIBE (§5.6: one ERROR, the previous entries stay) — except a saturated filter: no client
    /// that follows the spec builds one (at most `FILTER_FINGERPRINTS_MAX` fingerprints per filter), and each
    /// costs the relay a decode and a popcount of every entry, so a connection that keeps sending them is
    /// closed after the budget rather than served at the rate it can write (docs/PERFORMANCE.md §Hostile load).
    /// An unclaimed id and a CLAIM that does not verify are protocol errors too: a client that follows the spec
    /// claims its own ids with its own keys, so these come only from someone trying ids that are not theirs.
    pub fn is_protocol_error(&self) -> bool {
        matches!(
            self,
            Refusal::Malformed(_)
                | Refusal::HelloRequired { .. }
                | Refusal::UnexpectedFrame { .. }
                | Refusal::TextMessage
                | Refusal::FilterSaturated { .. }
                | Refusal::NotClaimed { .. }
                | Refusal::BadClaim(_)
        )
    }

    /// The ERROR frame sent to the client.
    pub fn to_frame(&self) -> Frame {
        error_frame(self.code(), self.ref_seq(), self.detail(), &self.to_string())
    }
}

/// An ERROR frame.
pub fn error_frame(code: ErrorCode, ref_seq: u64, detail: u32, text: &str) -> Frame {
    Frame::Error(ErrorFrame { code, ref_seq, detail, text: text.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_code_detail_and_ref_seq() {
        let r = Refusal::SequenceNotIncreasing { seq: 9, last: 12 };
        let Frame::Error(e) = r.to_frame() else { panic!("an ERROR frame") };
        assert_eq!((e.code, e.ref_seq, e.detail), (ErrorCode::SEQUENCE, 9, 0));
        assert_eq!(e.text, "PUBLISH sequence 9 does not increase (last 12)");
        assert!(!r.is_protocol_error());
        let r = Refusal::TooManyFilters { bucket: 7, max: 75 };
        assert_eq!((r.code(), r.detail(), r.is_protocol_error()), (ErrorCode::TOO_MANY_FILTERS, 7, false));
        assert_eq!(r.to_string(), "more than 75 filters for bucket 7");
        let r = Refusal::BucketOutOfRange { entry: 2, bucket: 70, buckets: 64 };
        assert_eq!((r.detail(), r.to_string().as_str()), (2, "entry 2: bucket 70 is not below 64"));
        let r = Refusal::FilterSaturated { entry: 3, ones: 1024, max: 180, fingerprints: 60 };
        assert_eq!((r.code(), r.detail(), r.is_protocol_error()), (ErrorCode::FILTER_SATURATED, 3, true));
        assert!(r.to_string().starts_with("entry 3: filter has 1024 bits set"), "{r}");
        let r = Refusal::TextMessage;
        assert_eq!(
            (r.code(), r.ref_seq(), r.detail(), r.is_protocol_error()),
            (ErrorCode::BINARY_REQUIRED, 0, 1, true)
        );
        let r = Refusal::NotClaimed { frame_type: 0x31 };
        assert_eq!((r.code(), r.detail(), r.is_protocol_error()), (ErrorCode::NOT_CLAIMED, 0x31, true));
        let r = Refusal::BadClaim(ClaimError::Mismatch);
        assert_eq!((r.code(), r.detail(), r.is_protocol_error()), (ErrorCode::BAD_CLAIM, 3, true));
    }
}
