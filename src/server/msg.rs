//! Messages between shards (docs/FOUNDATIONS.md §5: frames cross shards in batches over bounded channels).
//!
//! Two meshes keep the shards free of wait cycles: **requests** (work for the owner of a bucket; a sender
//! may wait when the channel is full, which is the backpressure that reaches a fast publisher) and
//! **responses** (results and deliveries for a connection's shard; their receiver never waits on anything,
//! so every wait on a full request channel ends).
//!
//! Subscribers travel as their key ([`SubscriberKey`], a one-way hash of the wire id); only the connection
//! that carries a subscriber knows its wire id.

use bytes::Bytes;

use crate::engine::Rejection;
use crate::log::mailbox::SubscriberKey;
use crate::proto::{ErrorCode, ProofBatch, SubscribeEntry};

/// A connection's id, unique within its shard for the life of the process.
pub type ConnId = u64;

/// Where a connection lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnAddr {
    /// Shard that owns the connection.
    pub shard: u16,
    /// Connection id in that shard.
    pub conn: ConnId,
}

/// Work sent to the shard that owns the buckets concerned.
#[derive(Debug)]
pub enum Request {
    /// Route these proofs (all in the receiver's bucket range).
    Publish {
        /// The publishing connection.
        origin: ConnAddr,
        /// The PUBLISH sequence number.
        seq: u64,
        /// The proofs of the batch owned by the receiver.
        proofs: ProofBatch,
        /// Index of each proof in the original PUBLISH batch (for ERROR details).
        indices: Vec<u16>,
        /// Monotonic µs when the PUBLISH was received (latency metrics).
        received_us: u64,
    },
    /// Replace `subscriber`'s entries in the receiver's buckets and deliver its matches to `origin`.
    Subscribe {
        /// The subscribing connection.
        origin: ConnAddr,
        /// The subscriber.
        subscriber: SubscriberKey,
        /// Entries for the receiver's buckets (possibly none: that removes the previous ones).
        entries: Vec<SubscribeEntry>,
        /// Unix seconds at the connection's shard (for range checks).
        now_s: u64,
    },
    /// One shard's page of a FETCH (executed by the driver: it reads from disk).
    Fetch {
        /// The fetching connection.
        origin: ConnAddr,
        /// The subscriber.
        subscriber: SubscriberKey,
        /// The client's cursor.
        cursor: u64,
        /// The cursor this FETCH answers with, the same on every shard.
        token: u64,
        /// Most proofs this shard returns.
        proofs_max: u16,
    },
    /// Remove `subscriber`'s entries and forget its connection.
    Unsubscribe {
        /// The subscriber.
        subscriber: SubscriberKey,
    },
    /// The connection `origin` closed: keep `subscriber`'s entries but stop delivering to `origin`.
    Detach {
        /// The closed connection.
        origin: ConnAddr,
        /// The subscriber it carried.
        subscriber: SubscriberKey,
    },
}

/// Results and deliveries for a connection's shard.
#[derive(Debug)]
pub enum Response {
    /// The receiver's part of PUBLISH `seq` is done (its accepted proofs are logged).
    Published {
        /// The publishing connection.
        conn: ConnId,
        /// The PUBLISH sequence number.
        seq: u64,
        /// Rejected proofs: (index in the original batch, reason).
        rejected: Vec<(u16, Rejection)>,
        /// Monotonic µs when the PUBLISH was received.
        received_us: u64,
    },
    /// The receiver's part of a SUBSCRIBE is applied (or refused).
    Subscribed {
        /// The subscribing connection.
        conn: ConnId,
        /// The subscriber.
        subscriber: SubscriberKey,
        /// Entries registered (and durable) in the receiver, or why not.
        result: Result<u16, ErrorCode>,
    },
    /// One shard's FETCH page.
    Fetched {
        /// The fetching connection.
        conn: ConnId,
        /// The FETCH's token.
        token: u64,
        /// The proofs, oldest first (each `PROOF_LEN` bytes).
        proofs: Vec<Bytes>,
        /// Whether this shard has more.
        more: bool,
    },
    /// Matched proofs for a subscriber on one of the receiver's connections.
    Deliver {
        /// The subscriber's connection.
        conn: ConnId,
        /// The subscriber.
        subscriber: SubscriberKey,
        /// The proofs (each `PROOF_LEN` bytes).
        proofs: Vec<Bytes>,
        /// Monotonic µs when the earliest of these proofs' PUBLISH was received.
        received_us: u64,
    },
}
