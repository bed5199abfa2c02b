//! Codes carried in ERROR frames (docs/PROTOCOL.md §Errors).
//!
//! A newtype over `u16` rather than an enum so that a client decodes codes a newer relay may add.

/// An ERROR frame's code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        impl ErrorCode {
            $($(#[$doc])* pub const $name: ErrorCode = ErrorCode($value);)*

            /// The code's name, or `None` for a code this build does not know.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    /// The message could not be decoded; `detail` = `DecodeError::code()`. The whole message is discarded.
    MALFORMED = 0x0001;
    /// HELLO asked for a protocol version this relay does not speak.
    UNSUPPORTED_VERSION = 0x0002;
    /// The first frame on a connection was not HELLO.
    HELLO_REQUIRED = 0x0003;
    /// A frame that is valid but not allowed from this side or role; `detail` = frame type.
    UNEXPECTED_FRAME = 0x0004;
    /// A WebSocket text message: the protocol is binary only; `detail` = 1 (the text opcode). Then close 1003.
    BINARY_REQUIRED = 0x0005;
    /// The relay is at `connections_max`.
    TOO_MANY_CONNECTIONS = 0x0010;
    /// The connection is at `subscribers_per_connection_max`.
    TOO_MANY_SUBSCRIBERS = 0x0011;
    /// A subscriber registered more than `filters_per_bucket_max` filters for one bucket.
    TOO_MANY_FILTERS = 0x0012;
    /// A subscription window range is misaligned, in the past, or beyond `subscription_windows_ahead_max`.
    SUBSCRIPTION_RANGE = 0x0013;
    /// A subscription names a bucket `>= num_buckets`.
    BUCKET_OUT_OF_RANGE = 0x0014;
    /// The relay cannot take more work right now (a bounded queue is full); retry after a delay.
    OVERLOADED = 0x0015;
    /// A SUBSCRIBE entry's filter has more bits set than `FILTER_FINGERPRINTS_MAX` fingerprints can set
    /// (`min(m, k · 60)`); `detail` = entry index. The SUBSCRIBE is not applied.
    FILTER_SATURATED = 0x0016;
    /// SUBSCRIBE, UNSUBSCRIBE or FETCH of a subscriber id not claimed on this connection (no valid CLAIM of
    /// it was received on it); `detail` = frame type. A protocol error: nothing is done.
    NOT_CLAIMED = 0x0017;
    /// A CLAIM whose key or signature does not verify for this connection; `detail` = 1 bad key, 2 non-canonical
    /// response, 3 mismatch. A protocol error: nothing is claimed.
    BAD_CLAIM = 0x0018;
    /// A proof's bucket is not the one derived from its commit (or is `>= num_buckets`); `detail` = index.
    PROOF_BAD_BUCKET = 0x0020;
    /// A proof's fingerprint is not the one derived from its commit and window; `detail` = index.
    PROOF_BAD_FINGERPRINT = 0x0021;
    /// A proof's window is older than the previous window (beyond the allowed skew); `detail` = index.
    PROOF_WINDOW_STALE = 0x0022;
    /// A proof's window is ahead of the relay's clock beyond the allowed skew; `detail` = index.
    PROOF_WINDOW_FUTURE = 0x0023;
    /// A proof's window start is not a multiple of the window length; `detail` = index.
    PROOF_WINDOW_MISALIGNED = 0x0024;
    /// A PUBLISH sequence number did not increase on this connection.
    SEQUENCE = 0x0030;
    /// The connection's send queue stayed full past the grace period; the relay closes it.
    SLOW_CONSUMER = 0x0031;
    /// The relay is shutting down; reconnect later.
    SHUTTING_DOWN = 0x0032;
    /// The relay could not make proofs durable; they are not acknowledged (publish again).
    STORAGE = 0x0040;
}

impl std::fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "ErrorCode({:#06x})", self.0),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}
