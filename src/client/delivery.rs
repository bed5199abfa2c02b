//! Per-delivery values: everything both sides derive from `K` and a delivery id, so the recipient can
//! precompute the commits it expects before the sender has sent anything.
//!
//! ```text
//! did = u64_be(window_start) ‖ u8(direction) ‖ u32_be(seq)                               (13 bytes)
//! session_id    = HKDF-Expand(K, "tessera/v1/session"   ‖ did, 32)
//! ephemeral_key = HKDF-Expand(K, "tessera/v1/ephemeral" ‖ did, 32)
//! t             = wide(HKDF-Expand(K, "tessera/v1/blind" ‖ session_id, 64)) mod ℓ
//! Y'            = Y_sender + t·G          (sender: (x + t)·G, the same point)
//! commit        = SHA-256(Y' ‖ ephemeral_key ‖ session_id)
//! bucket, fingerprint from commit and window_start (proto::derive, docs/FOUNDATIONS.md §2)
//! key ‖ nonce   = HKDF-Expand(K, "tessera/v1/seal" ‖ did, 32 + 12)
//! ```
//! A delivery id is used at most once (the sender persists its sequence numbers), so each AES-GCM key and
//! nonce seal exactly one plaintext. Without `K`, commits are pseudorandom: a relay cannot link two
//! deliveries of the same pair, nor a delivery to `Y`.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::identity::{Identity, PublicKey};
use super::kdf::{hkdf_expand, scalar_from_hkdf, LABEL_BLIND, LABEL_EPHEMERAL, LABEL_SEAL, LABEL_SESSION};
use super::pairwise::{Direction, PairwiseSecret};
use crate::proto::derive::{bucket_of, fingerprint, Commit, Fingerprint};

/// Encoded length of a delivery id.
pub const DELIVERY_ID_LEN: usize = 13;
/// Length of a session id.
pub const SESSION_ID_LEN: usize = 32;
/// Length of an ephemeral key.
pub const EPHEMERAL_KEY_LEN: usize = 32;
/// AES-256-GCM key length.
pub const AEAD_KEY_LEN: usize = 32;
/// AES-GCM nonce length.
pub const AEAD_NONCE_LEN: usize = 12;

/// Deliveries one side may send to one contact in one window (sequence numbers `0..SEQS_PER_WINDOW`).
///
/// The recipient precomputes and registers one fingerprint per (window, seq), so this is a protocol
/// constant both sides share. 8 allows a 3 KiB message, or 8 short ones, per contact per 10 s window, and
/// keeps a one-hour horizon at 8 × 360 = 2,880 fingerprints per contact (SUBSCRIBE sizes that follow:
/// docs/PERFORMANCE.md §Client envelope).
pub const SEQS_PER_WINDOW: u32 = 8;

/// Identifies one delivery within a pair: window, direction, sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId {
    /// Start of the window the proof is published in (Unix seconds).
    pub window_start_s: u64,
    /// Who sends it.
    pub direction: Direction,
    /// `0..SEQS_PER_WINDOW`, never reused within (window, direction).
    pub seq: u32,
}

impl DeliveryId {
    /// `u64_be(window_start) ‖ u8(direction) ‖ u32_be(seq)`.
    pub fn to_bytes(&self) -> [u8; DELIVERY_ID_LEN] {
        let mut out = [0u8; DELIVERY_ID_LEN];
        out[..8].copy_from_slice(&self.window_start_s.to_be_bytes());
        out[8] = self.direction as u8;
        out[9..].copy_from_slice(&self.seq.to_be_bytes());
        out
    }
}

/// The values both sides derive for one delivery (before any point arithmetic).
pub struct DeliverySecrets {
    /// The delivery these belong to.
    pub id: DeliveryId,
    /// Hashed into the commit and into `t`.
    pub session_id: [u8; SESSION_ID_LEN],
    /// Hashed into the commit.
    pub ephemeral_key: [u8; EPHEMERAL_KEY_LEN],
    /// The blinding scalar `t` (wiped on drop).
    pub blind: Scalar,
}

impl Drop for DeliverySecrets {
    fn drop(&mut self) {
        self.blind.zeroize();
    }
}

impl DeliverySecrets {
    /// Derives session id, ephemeral key and `t` from `K`.
    pub fn derive(k: &PairwiseSecret, id: DeliveryId) -> Self {
        let did = id.to_bytes();
        let mut session_id = [0u8; SESSION_ID_LEN];
        hkdf_expand(k.as_bytes(), &[LABEL_SESSION, &did], &mut session_id);
        let mut ephemeral_key = [0u8; EPHEMERAL_KEY_LEN];
        hkdf_expand(k.as_bytes(), &[LABEL_EPHEMERAL, &did], &mut ephemeral_key);
        let blind = scalar_from_hkdf(k.as_bytes(), &[LABEL_BLIND, &session_id]);
        Self { id, session_id, ephemeral_key, blind }
    }

    /// The recipient's view: `Y' = Y_sender + t·G`.
    pub fn blinded_public(&self, sender: &PublicKey) -> RistrettoPoint {
        sender.point() + &self.blind * RISTRETTO_BASEPOINT_TABLE
    }

    /// The sender's view: `x' = x + t` and `Y' = x'·G` (the same point as [`Self::blinded_public`]).
    pub fn blinded_secret(&self, sender: &Identity) -> (Zeroizing<Scalar>, RistrettoPoint) {
        let x_blinded = Zeroizing::new(sender.secret() + self.blind);
        let y_blinded = &*x_blinded * RISTRETTO_BASEPOINT_TABLE;
        (x_blinded, y_blinded)
    }

    /// `SHA-256(Y' ‖ ephemeral_key ‖ session_id)`.
    pub fn commit(&self, y_blinded: &[u8; 32]) -> Commit {
        let mut hasher = Sha256::new();
        hasher.update(y_blinded);
        hasher.update(self.ephemeral_key);
        hasher.update(self.session_id);
        hasher.finalize().into()
    }
}

/// Where a delivery is routed: the proof header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routing {
    /// The commit.
    pub commit: Commit,
    /// `bucket_of(commit)`.
    pub bucket: u16,
    /// `fingerprint(commit, window_start)`.
    pub fingerprint: Fingerprint,
    /// The window start (Unix seconds).
    pub window_start_s: u64,
}

impl Routing {
    /// Derives bucket and fingerprint of `commit` in `window_start_s` (docs/FOUNDATIONS.md §2).
    pub fn new(commit: Commit, window_start_s: u64, num_buckets: u16) -> Self {
        Self {
            commit,
            bucket: bucket_of(&commit, num_buckets),
            fingerprint: fingerprint(&commit, window_start_s),
            window_start_s,
        }
    }

    /// AAD of the envelope: `commit ‖ u64_be(window_start) ‖ u16_be(bucket)` (42 bytes).
    pub fn aad(&self) -> [u8; 42] {
        let mut aad = [0u8; 42];
        aad[..32].copy_from_slice(&self.commit);
        aad[32..40].copy_from_slice(&self.window_start_s.to_be_bytes());
        aad[40..].copy_from_slice(&self.bucket.to_be_bytes());
        aad
    }
}

/// The AES-256-GCM key and nonce of one delivery (wiped on drop).
pub struct SealKey {
    /// 32-byte key.
    pub key: Zeroizing<[u8; AEAD_KEY_LEN]>,
    /// 12-byte nonce.
    pub nonce: [u8; AEAD_NONCE_LEN],
}

impl SealKey {
    /// `HKDF-Expand(K, "tessera/v1/seal" ‖ did, 44)` split into key ‖ nonce.
    pub fn derive(k: &PairwiseSecret, id: DeliveryId) -> Self {
        let mut okm = Zeroizing::new([0u8; AEAD_KEY_LEN + AEAD_NONCE_LEN]);
        hkdf_expand(k.as_bytes(), &[LABEL_SEAL, &id.to_bytes()], okm.as_mut());
        let mut key = Zeroizing::new([0u8; AEAD_KEY_LEN]);
        key.copy_from_slice(&okm[..AEAD_KEY_LEN]);
        let mut nonce = [0u8; AEAD_NONCE_LEN];
        nonce.copy_from_slice(&okm[AEAD_KEY_LEN..]);
        Self { key, nonce }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_and_recipient_compute_the_same_blinded_key() {
        let alice = Identity::from_seed(&[3; 32]);
        let k = PairwiseSecret::from_bytes([9; 32]);
        let id = DeliveryId { window_start_s: 1_700_000_000, direction: Direction::HighToLow, seq: 5 };
        let d = DeliverySecrets::derive(&k, id);
        let (_, sender_view) = d.blinded_secret(&alice);
        assert_eq!(sender_view, d.blinded_public(alice.public()));
        assert_ne!(sender_view, *alice.public().point());
        assert_eq!(id.to_bytes(), [0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00, 1, 0, 0, 0, 5]);
    }

    #[test]
    fn every_component_of_the_delivery_id_changes_the_derivations() {
        let k = PairwiseSecret::from_bytes([9; 32]);
        let base = DeliveryId { window_start_s: 100, direction: Direction::LowToHigh, seq: 0 };
        let variants = [
            base,
            DeliveryId { window_start_s: 110, ..base },
            DeliveryId { direction: Direction::HighToLow, ..base },
            DeliveryId { seq: 1, ..base },
        ];
        let sessions: Vec<_> = variants.iter().map(|&id| DeliverySecrets::derive(&k, id).session_id).collect();
        let nonces: Vec<_> = variants.iter().map(|&id| SealKey::derive(&k, id).nonce).collect();
        for i in 0..variants.len() {
            for j in i + 1..variants.len() {
                assert_ne!(sessions[i], sessions[j]);
                assert_ne!(nonces[i], nonces[j]);
            }
        }
    }
}
