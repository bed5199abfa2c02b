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
//! catch up: windows since a contact was last covered (≤ retention) ─▶ past SUBSCRIBEs; older ─▶ gap notice
//! ```
//! Everything here is pure — no sockets, no clock, no global RNG — except `store`, the thin file layer for
//! the key directory. The key schedule and envelope layout are specified in docs/PROTOCOL.md §End-to-end
//! envelope and key schedule, and pinned by `tests/vectors/client_*.json`.
//!
//! Two parties enrol each other from invite codes and exchange a message through the sans-IO state (a
//! relay would carry the SUBSCRIBE frames and the proofs; here they are handed over directly):
//!
//! ```
//! use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
//! use tessera::client::{safety_code, ClientConfig, ClientState, Contact, Identity, Invite, PersistedState};
//!
//! let mut rng = ChaCha20Rng::seed_from_u64(7);
//! let (alice_id, bob_id) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
//! // Each prints an invite code (`tessera invite`) and enrols the other's (`tessera enroll CODE --name …`).
//! let alice_code = Invite::new(*alice_id.public(), vec!["ws://127.0.0.1:8100".into()])?.encode();
//! let bob_code = Invite::new(*bob_id.public(), vec!["ws://127.0.0.1:8100".into()])?.encode();
//! let (from_bob, from_alice) = (Invite::decode(&bob_code)?, Invite::decode(&alice_code)?);
//! // Both compare the safety code out of band: each computes it from its own invite and the other's.
//! let (mine_a, mine_b) = (Invite::decode(&alice_code)?, Invite::decode(&bob_code)?);
//! assert_eq!(safety_code(&mine_a, &from_bob), safety_code(&mine_b, &from_alice));
//! let to_bob = Contact::new("bob", from_bob.public, from_bob.relays)?;
//! let to_alice = Contact::new("alice", from_alice.public, from_alice.relays)?;
//!
//! // A short horizon keeps the example quick; `ClientConfig::for_relay` registers an hour ahead.
//! let config = ClientConfig { ahead_windows: 2, behind_windows: 2, renew_every_windows: 1, ..Default::default() };
//! let mut alice = ClientState::new(alice_id, vec![to_bob], PersistedState::default(), config)?;
//! let mut bob = ClientState::new(bob_id, vec![to_alice], PersistedState::default(), config)?;
//!
//! let now_s = 1_700_000_003;
//! let subscribe = bob.poll_subscribe(now_s, &mut rng)?.expect("first call subscribes");
//! assert!(!subscribe.is_empty()); // SUBSCRIBE frames for the relay
//! let proofs = alice.prepare_send("bob", "hello bob", now_s, &mut rng)?;
//! // (a driver persists `alice.persisted()` here, before publishing)
//! let message = bob.handle_deliver(proofs[0].view()).expect("one-part message");
//! assert_eq!((message.contact.as_str(), message.text.as_str()), ("alice", "hello bob"));
//! assert_eq!(message.window_start_s, 1_700_000_000);
//! assert!(bob.handle_deliver(proofs[0].view()).is_none()); // a replay is dropped
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Over a relay, [`crate::driver::client::session::Session`] drives the state: it persists before
//! publishing, subscribes and renews, FETCHes what was kept while offline, and waits for ACKs. This is what
//! `tessera send` and `tessera recv` do (glommio executor, key directory on disk):
//!
//! ```no_run
//! use std::path::Path;
//! use tessera::client::Home;
//! use tessera::driver::client::session::{run_local, Session, SessionOptions};
//!
//! let home = Home::open(Path::new("/home/alice/.tessera"))?;
//! let identity = home.read_identity()?.unlock(None)?; // Some(passphrase) if it is sealed
//! run_local(move || async move {
//!     let url = "ws://127.0.0.1:8100/";
//!     let mut session = Session::connect(url, home, identity, SessionOptions::default()).await?;
//!     for m in session.sync().await? {
//!         println!("{} {}: {}", m.window_start_s, m.contact, m.text); // what arrived while offline
//!     }
//!     let sent = session.send("bob", "hello bob").await?; // Ok once the relay stored it durably
//!     println!("sent in {} proof(s)", sent.proofs);
//!     let reply = session.next_message().await?; // live DELIVER; renews the subscription when due
//!     println!("{}: {}", reply.contact, reply.text);
//!     session.close().await;
//!     Ok::<(), tessera::driver::client::session::SessionError>(())
//! })??;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod base32;
pub mod bounds;
pub mod catchup;
pub mod claims;
pub mod config;
pub mod contact;
pub mod cover;
pub mod cover_schedule;
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
pub mod safety;
pub mod schnorr;
pub mod send;
pub mod state;
pub mod store;
pub mod subscription;

pub use bounds::{check_relay_params, RelayParamsError};
pub use catchup::{CatchUp, CoverageGap};
pub use config::{ClientConfig, ConfigError};
pub use contact::{Contact, ContactError};
pub use cover::{CoverKey, COVER_PROOFS_PER_ROUND_DEFAULT, COVER_PROOFS_PER_ROUND_MAX};
pub use cover_schedule::{CoverQueueError, CoverSchedule, Queued, QueuedPiece, Slot};
pub use delivery::{DeliveryId, SEQS_PER_WINDOW};
pub use dummy::dummy_proof;
pub use envelope::{EnvelopeError, CHUNK_LEN_MAX, MESSAGE_LEN_MAX};
pub use identity::{Identity, KeyError, PublicKey};
pub use invite::{Invite, InviteError, Relay};
pub use keyfile::{KdfParams, KeyFile, KeyFileError};
pub use pairwise::{pair, Direction, Pairing, PairwiseSecret};
pub use persist::PersistedState;
pub use receive::{OpenError, Opened, ReceiveStats, ReceivedMessage};
pub use safety::safety_code;
pub use send::SendError;
pub use state::{ClientState, StateError};
pub use store::{Home, StoreError};
pub use subscription::{PlanError, SubscribeMode};
