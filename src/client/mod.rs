//! The client: identities, pairwise enrolment, blinded Schnorr authentication, fixed-size envelopes, and
//! the sans-IO state that turns messages into proofs and delivered proofs back into messages.
//!
//! ```text
//! identity (seed ─▶ x, Y) ──┐                    invite code (Y, relays) ──enroll──▶ contact
//!                           ├─ DH + HKDF ─▶ pairwise secret K (both sides, order-independent)
//! contact's Y ──────────────┘
//! K, (window, direction, seq) ─▶ session id, ephemeral key, t ─▶ Y' = Y + t·G ─▶ commit ─▶ bucket, fingerprint
//! send:    text ─split─▶ parts ─▶ envelope::seal (Y', Schnorr proof of x + t, AES-256-GCM) ─▶ Proof (564 B)
//! receive: expected commits (precomputed) ─▶ filters ─▶ SUBSCRIBE; DELIVER ─▶ open ─▶ verify ─▶ dedup ─▶ text
//! ```
//! Everything here is pure — no sockets, no clock, no global RNG — except `store`, the thin file layer for
//! the key directory. The key schedule and envelope layout are specified in docs/PROTOCOL.md §End-to-end
//! envelope and key schedule, and pinned by `tests/vectors/client_*.json`.
//!
//! ```
//! use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
//! use tessera::client::{ClientConfig, ClientState, Contact, Identity, PersistedState};
//!
//! let mut rng = ChaCha20Rng::seed_from_u64(7);
//! let (alice_id, bob_id) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
//! let (alice_pk, bob_pk) = (*alice_id.public(), *bob_id.public());
//! // A short horizon keeps the example quick; the default registers an hour ahead.
//! let config = ClientConfig { ahead_windows: 2, behind_windows: 2, renew_every_windows: 1, ..Default::default() };
//! let (to_bob, to_alice) = (Contact::new("bob", bob_pk, vec![])?, Contact::new("alice", alice_pk, vec![])?);
//! let mut alice = ClientState::new(alice_id, vec![to_bob], PersistedState::default(), config)?;
//! let mut bob = ClientState::new(bob_id, vec![to_alice], PersistedState::default(), config)?;
//!
//! let now_s = 1_700_000_003;
//! let subscribe = bob.poll_subscribe(now_s, &mut rng)?.expect("first call subscribes");
//! assert!(!subscribe.is_empty());
//! let proofs = alice.prepare_send("bob", "hello bob", now_s, &mut rng)?;
//! let message = bob.handle_deliver(proofs[0].view()).expect("one-part message");
//! assert_eq!((message.contact.as_str(), message.text.as_str()), ("alice", "hello bob"));
//! assert!(bob.handle_deliver(proofs[0].view()).is_none()); // a replay is dropped
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod base32;
pub mod config;
pub mod contact;
pub mod delivery;
pub mod dummy;
pub mod envelope;
pub mod expect;
pub mod identity;
pub mod invite;
pub mod kdf;
pub mod keyfile;
pub mod pairwise;
pub mod persist;
pub mod reassembly;
pub mod receive;
pub mod renewal;
pub mod schnorr;
pub mod send;
pub mod state;
pub mod store;
pub mod subscription;

pub use config::{ClientConfig, ConfigError};
pub use contact::{Contact, ContactError};
pub use delivery::{DeliveryId, SEQS_PER_WINDOW};
pub use dummy::dummy_proof;
pub use envelope::{EnvelopeError, CHUNK_LEN_MAX, MESSAGE_LEN_MAX};
pub use identity::{Identity, KeyError, PublicKey};
pub use invite::{safety_code, Invite, InviteError};
pub use keyfile::{KdfParams, KeyFile, KeyFileError};
pub use pairwise::{pair, Direction, Pairing, PairwiseSecret};
pub use persist::PersistedState;
pub use receive::{OpenError, Opened, ReceiveStats, ReceivedMessage};
pub use send::SendError;
pub use state::{ClientState, StateError};
pub use store::{Home, StoreError};
pub use subscription::{PlanError, SubscribeMode};
