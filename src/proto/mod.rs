//! The protocol core: derivations, Bloom filters, fixed-size proofs and the frame codec.
//!
//! Pure: no sockets, no clocks, no randomness. Everything a relay or client exchanges on the wire is defined
//! here and in docs/PROTOCOL.md; the two must agree (tests/vectors/ pins both).

pub mod bloom;
pub mod claim;
pub mod codec;
pub mod derive;
pub mod error;
pub mod error_code;
pub mod frame;
pub mod limits;
pub mod params;
pub mod proof;

pub use bloom::{BloomError, BloomFilter, BloomParams};
pub use claim::{verify_claim, AuthNonce, Claim, ClaimError, SubscriberKeyPair};
pub use codec::{encode_frame, encode_message, Codec};
pub use derive::{bucket_of, fingerprint, window_start, Commit, Fingerprint};
pub use error::DecodeError;
pub use error_code::ErrorCode;
pub use frame::{Frame, Hello, RelayParams, RelayPolicy, Role, SubscribeEntry, SubscriberId};
pub use limits::Limits;
pub use params::*;
pub use proof::{Proof, ProofBatch, ProofError, ProofRef};
