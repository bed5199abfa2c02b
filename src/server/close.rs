//! Why the relay closes a connection, and the WebSocket close code and text it sends.
//!
//! ```text
//! ShardServer decides (errors, slow consumer, shutdown, ...) ─▶ CloseReason on the connection
//!   ─▶ its writer drains the send queue ─▶ close frame (code, text) ─▶ reader stopped
//! ```

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Too many protocol errors (1008, policy violation).
    ProtocolErrors,
    /// The send queue stayed full past the grace period (1008).
    SlowConsumer,
    /// A HELLO asked for an unsupported version (1002, protocol error).
    UnsupportedVersion,
    /// The relay is shutting down (1001, going away).
    Shutdown,
    /// The peer closed or the connection failed (1000, normal closure).
    PeerClosed,
    /// A message over `message_bytes_max` (1009, message too big).
    MessageTooBig,
    /// A WebSocket text message: the protocol is binary only (1003, unsupported data).
    TextMessage,
    /// A frame that breaks RFC 6455 (unmasked, RSV bit, reserved opcode, bad control frame, stray
    /// continuation): the stream cannot be trusted to carry an ERROR frame (1002, protocol error).
    BadFraming,
}

impl CloseReason {
    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::ProtocolErrors | CloseReason::SlowConsumer => 1008,
            CloseReason::UnsupportedVersion | CloseReason::BadFraming => 1002,
            CloseReason::Shutdown => 1001,
            CloseReason::PeerClosed => 1000,
            CloseReason::MessageTooBig => 1009,
            CloseReason::TextMessage => 1003,
        }
    }

    /// Short text for the close frame.
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::ProtocolErrors => "too many protocol errors",
            CloseReason::SlowConsumer => "send queue full past the grace period",
            CloseReason::UnsupportedVersion => "unsupported protocol version",
            CloseReason::Shutdown => "relay shutting down",
            CloseReason::PeerClosed => "closed",
            CloseReason::MessageTooBig => "message over message_bytes_max",
            CloseReason::TextMessage => "binary messages only",
            CloseReason::BadFraming => "invalid WebSocket framing",
        }
    }
}
