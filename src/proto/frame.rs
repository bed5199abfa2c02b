//! The native protocol's frames as Rust values (docs/PROTOCOL.md §Frames).
//!
//! A WebSocket binary message carries one or more frames; `crate::proto::codec` turns bytes into these
//! values and back. Proof-carrying frames hold a `ProofBatch` that points into the received message.

use super::bloom::{BloomFilter, BloomParams};
use super::claim::{AuthNonce, Claim};
use super::error_code::ErrorCode;
use super::limits::Limits;
use super::proof::ProofBatch;

/// Frame type bytes.
pub mod frame_type {
    /// Client or peer → relay: protocol version and role.
    pub const HELLO: u8 = 0x01;
    /// Relay → client: parameters and limits.
    pub const HELLO_REPLY: u8 = 0x02;
    /// Publisher → relay: a batch of proofs with a sequence number.
    pub const PUBLISH: u8 = 0x10;
    /// Relay → publisher: every batch with sequence ≤ `seq` is durable.
    pub const ACK: u8 = 0x11;
    /// Subscriber → relay: replace this subscriber's entries.
    pub const SUBSCRIBE: u8 = 0x20;
    /// Relay → subscriber: SUBSCRIBE applied.
    pub const SUBSCRIBED: u8 = 0x21;
    /// Subscriber → relay: drop this subscriber's entries.
    pub const UNSUBSCRIBE: u8 = 0x22;
    /// Client → relay: prove knowledge of a subscriber key's secret for this connection (version 3).
    pub const CLAIM: u8 = 0x23;
    /// Relay → subscriber: matched proofs.
    pub const DELIVER: u8 = 0x30;
    /// Subscriber → relay: proofs matched while away, from a cursor.
    pub const FETCH: u8 = 0x31;
    /// Relay → subscriber: a page of matched proofs and the next cursor.
    pub const FETCH_REPLY: u8 = 0x32;
    /// Either direction: a typed error.
    pub const ERROR: u8 = 0x7F;
}

/// Magic at the start of HELLO: ASCII "TSRA".
pub const HELLO_MAGIC: [u8; 4] = *b"TSRA";

/// Who opened the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// An end user's client (publisher and/or subscriber).
    Client = 1,
    /// Another relay gossiping proofs.
    Peer = 2,
}

/// A relay's or peer's random node id (not an identity of any user).
pub type NodeId = [u8; 16];

/// A subscriber id: `SHA-256(label ‖ X)[0..16]` of a subscriber key `X` whose secret the client drew from a
/// CSPRNG (`proto::claim`), unlinkable to its identity. Not a bearer capability: a connection may SUBSCRIBE,
/// UNSUBSCRIBE or FETCH it only after a CLAIM proving knowledge of the secret (docs/PROTOCOL.md §4.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberId(pub [u8; 16]);

/// HELLO: the first frame on every connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Highest protocol version the sender speaks.
    pub version: u16,
    /// Client or peer.
    pub role: Role,
    /// A peer's node id (all zero for clients); lets relays suppress gossip loops.
    pub node_id: NodeId,
}

/// HELLO_REPLY: the relay's parameters, so a client builds proofs and filters that this relay accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayParams {
    /// Protocol version the relay will speak on this connection.
    pub version: u16,
    /// Number of buckets.
    pub num_buckets: u16,
    /// Window length in seconds.
    pub window_s: u32,
    /// Bloom `m` and `k`.
    pub bloom: BloomParams,
    /// Proof length in bytes (564 in version 1).
    pub proof_len: u32,
    /// Ciphertext length in bytes (512 in version 1).
    pub ciphertext_len: u32,
    /// How long proofs are kept for FETCH, seconds.
    pub retention_s: u32,
    /// The relay's random node id.
    pub node_id: NodeId,
    /// Every limit this relay enforces.
    pub limits: Limits,
    /// What a client needs to predict the relay's behaviour (protocol version 2).
    pub policy: RelayPolicy,
    /// Fresh per connection (relay CSPRNG), signed by every CLAIM on it (protocol version 3).
    pub auth_nonce: AuthNonce,
}

impl RelayParams {
    /// What a relay on default settings announces, with `node_id`: for tests and tools that stand in for a
    /// relay (a real relay builds its own from its configuration).
    pub fn defaults(node_id: NodeId) -> Self {
        Self {
            version: super::params::PROTOCOL_VERSION,
            num_buckets: super::params::NUM_BUCKETS_DEFAULT,
            window_s: super::params::WINDOW_SECONDS as u32,
            bloom: BloomParams::default(),
            proof_len: super::params::PROOF_LEN as u32,
            ciphertext_len: super::params::CIPHERTEXT_LEN as u32,
            // The relay's default retention (`server::config::RETENTION_S_DEFAULT`; proto sits below server).
            retention_s: 3600,
            node_id,
            limits: Limits::default(),
            policy: RelayPolicy::default(),
            auth_nonce: [0; 16],
        }
    }
}

/// The part of HELLO_REPLY (protocol version 2) that lets a client predict what the relay will do: its
/// clock tolerance, how FETCH pages split, its timeouts and how full a filter may be (docs/PROTOCOL.md §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayPolicy {
    /// Shards (cores) the relay runs; shard `s` owns buckets `[s·B/S, (s+1)·B/S)` and a FETCH asks each
    /// shard for `max(1, ⌊proofs_max / shards⌋)` proofs.
    pub shards: u16,
    /// Most fingerprints a legitimate filter holds: a filter with more than `min(m, k·n)` bits set is refused.
    pub filter_fingerprints_max: u16,
    /// Clock skew the relay tolerates when it checks a proof's window or a subscription's range, seconds.
    pub clock_skew_s: u32,
    /// How long a connection may make no write progress while data waits before SLOW_CONSUMER, ms.
    pub slow_consumer_grace_ms: u32,
    /// How long after the WebSocket upgrade the first HELLO may take, ms.
    pub hello_timeout_ms: u32,
    /// How long a connection may stay silent (no message received) before it is closed, ms; 0 = never.
    pub idle_timeout_ms: u32,
    /// Protocol errors after which the relay closes the connection (1008).
    pub protocol_errors_max: u16,
}

impl Default for RelayPolicy {
    /// What a relay with the default configuration and one shard announces.
    fn default() -> Self {
        Self {
            shards: 1,
            filter_fingerprints_max: super::params::FILTER_FINGERPRINTS_MAX,
            clock_skew_s: 2,
            slow_consumer_grace_ms: 5_000,
            hello_timeout_ms: 10_000,
            idle_timeout_ms: 0,
            protocol_errors_max: 8,
        }
    }
}

/// PUBLISH: proofs from a publisher (or a gossiping peer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// Publisher-chosen sequence number, increasing per connection; ACKs are cumulative over it.
    pub seq: u64,
    /// 1..=`proofs_per_batch_max` proofs.
    pub proofs: ProofBatch,
}

/// One (bucket, window range, filter) registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeEntry {
    /// Bucket the filter applies to.
    pub bucket: u16,
    /// First window start covered (Unix seconds, a multiple of the window length).
    pub window_from_s: u64,
    /// Last window start covered, inclusive (`>= window_from_s`).
    pub window_to_s: u64,
    /// The filter of fingerprints expected in that bucket over that range.
    pub filter: BloomFilter,
}

/// SUBSCRIBE: replaces all of `subscriber`'s previous entries with `entries`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// The subscriber's random id.
    pub subscriber: SubscriberId,
    /// 0..=`entries_per_subscribe_max` entries (zero entries = unsubscribe everything but stay attached).
    pub entries: Vec<SubscribeEntry>,
}

/// ERROR: a typed error with a short human-readable text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFrame {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Sequence number of the PUBLISH it refers to, or 0.
    pub ref_seq: u64,
    /// Code-specific detail (e.g. index of a rejected proof in its batch, or a decode error code).
    pub detail: u32,
    /// At most `ERROR_TEXT_BYTES_MAX` bytes of UTF-8.
    pub text: String,
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`RelayParams`].
    HelloReply(RelayParams),
    /// See [`Publish`].
    Publish(Publish),
    /// Every PUBLISH with sequence ≤ `seq` on this connection is durable.
    Ack {
        /// Cumulative sequence number.
        seq: u64,
    },
    /// See [`Subscribe`].
    Subscribe(Subscribe),
    /// The SUBSCRIBE for `subscriber` was applied with `entries` entries.
    Subscribed {
        /// The subscriber.
        subscriber: SubscriberId,
        /// Number of entries now registered.
        entries: u16,
    },
    /// See [`Claim`]: the sender may use `subscriber_id(key)` on this connection.
    Claim(Claim),
    /// Drop all entries of `subscriber` and detach it from this connection.
    Unsubscribe {
        /// The subscriber.
        subscriber: SubscriberId,
    },
    /// Proofs matched by one of `subscriber`'s filters.
    Deliver {
        /// The subscriber.
        subscriber: SubscriberId,
        /// 1..=`proofs_per_batch_max` proofs.
        proofs: ProofBatch,
    },
    /// Ask for proofs matched for `subscriber`, starting at `cursor`.
    Fetch {
        /// The subscriber.
        subscriber: SubscriberId,
        /// Opaque position returned by the previous FETCH_REPLY (0 = from the oldest retained).
        cursor: u64,
        /// Largest page wanted, `1..=proofs_per_batch_max`.
        proofs_max: u16,
    },
    /// A page of matched proofs.
    FetchReply {
        /// The subscriber.
        subscriber: SubscriberId,
        /// Cursor to send in the next FETCH.
        next_cursor: u64,
        /// Whether more proofs are waiting past `next_cursor`.
        more: bool,
        /// 0..=`proofs_per_batch_max` proofs, oldest first.
        proofs: ProofBatch,
    },
    /// See [`ErrorFrame`].
    Error(ErrorFrame),
}

impl Frame {
    /// The frame's type byte.
    pub fn type_byte(&self) -> u8 {
        use frame_type::*;
        match self {
            Frame::Hello(_) => HELLO,
            Frame::HelloReply(_) => HELLO_REPLY,
            Frame::Publish(_) => PUBLISH,
            Frame::Ack { .. } => ACK,
            Frame::Subscribe(_) => SUBSCRIBE,
            Frame::Subscribed { .. } => SUBSCRIBED,
            Frame::Unsubscribe { .. } => UNSUBSCRIBE,
            Frame::Claim(_) => CLAIM,
            Frame::Deliver { .. } => DELIVER,
            Frame::Fetch { .. } => FETCH,
            Frame::FetchReply { .. } => FETCH_REPLY,
            Frame::Error(_) => ERROR,
        }
    }
}
