//! Messages between shards (DESIGN.md §5: frames cross shards in batches over bounded channels).
//!
//! Two meshes keep the shards free of wait cycles: **requests** (work for the owner of a bucket; a sender
//! may wait when the channel is full, which is the backpressure that reaches a fast publisher) and
//! **responses** (results and deliveries for a connection's shard; their receiver never waits on anything,
//! so every wait on a full request channel ends).

use bytes::Bytes;

use crate::engine::{Rejection, SubscribeError};
use crate::proto::{ProofBatch, SubscribeEntry, SubscriberId};

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
        subscriber: SubscriberId,
        /// Entries for the receiver's buckets (possibly none: that removes the previous ones).
        entries: Vec<SubscribeEntry>,
        /// Unix seconds at the connection's shard (for range checks).
        now_s: u64,
    },
    /// Remove `subscriber`'s entries and forget its connection.
    Unsubscribe {
        /// The subscriber.
        subscriber: SubscriberId,
    },
    /// The connection `origin` closed: keep `subscriber`'s entries but stop delivering to `origin`.
    Detach {
        /// The closed connection.
        origin: ConnAddr,
        /// The subscriber it carried.
        subscriber: SubscriberId,
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
        subscriber: SubscriberId,
        /// Entries registered in the receiver, or why not.
        result: Result<u16, SubscribeError>,
    },
    /// Matched proofs for a subscriber on one of the receiver's connections.
    Deliver {
        /// The subscriber's connection.
        conn: ConnId,
        /// The subscriber.
        subscriber: SubscriberId,
        /// The proofs (each `PROOF_LEN` bytes).
        proofs: Vec<Bytes>,
        /// Monotonic µs when the earliest of these proofs' PUBLISH was received.
        received_us: u64,
    },
}
