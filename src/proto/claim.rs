//! Capability subscriber ids: a subscriber id is the hash of a public key, and a connection may use an id
//! only after proving knowledge of that key's secret in a CLAIM (docs/PROTOCOL.md §4.12).
//!
//! ```text
//! client secret (32 B, CSPRNG, persisted) ──wide(SHA-512(SUBSCRIBER_KEY ‖ secret))──▶ x,  X = x·G (Ristretto255)
//! X ──SHA-256(SUBSCRIBER_ID ‖ X)[0..16]──▶ wire SubscriberId
//! CLAIM = X ‖ R ‖ s   over the transcript  node_id ‖ auth_nonce ‖ X   (auth_nonce: HELLO_REPLY, fresh per connection)
//!   r = wide(SHA-512(CLAIM_NONCE ‖ x ‖ aux ‖ transcript))   hedged nonce: aux is 32 fresh random bytes
//!   c = wide(SHA-512(CLAIM ‖ transcript ‖ R)),  s = r + c·x
//! relay: verify(CLAIM, node_id, auth_nonce) ─▶ s canonical, X decodes, compress(s·G − c·X) == R ─▶ id of X
//! ```
//! Why a signature and not an HMAC: the relay must check the proof, but must hold nothing that lets it (or a
//! copy of its disk) act as the subscriber. An HMAC keyed by the secret can only be checked by someone who
//! knows the secret; a Schnorr signature is checked with the public key, which the client sends in the CLAIM
//! itself, and the relay keeps nothing of it past the connection. Pure: randomness (`aux`) is an argument.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha256, Sha512};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::frame::{NodeId, SubscriberId};

/// SHA-512 prefix of a subscriber key's secret scalar (input: the 32-byte subscriber secret).
pub const LABEL_SUBSCRIBER_KEY: &[u8] = b"tessera/v1/subscriber-key";
/// SHA-256 prefix of a wire subscriber id (input: the 32-byte encoding of the subscriber key `X`).
pub const LABEL_SUBSCRIBER_ID: &[u8] = b"tessera/v1/subscriber-id";
/// SHA-512 prefix of a CLAIM's hedged Schnorr nonce.
pub const LABEL_CLAIM_NONCE: &[u8] = b"tessera/v1/claim-nonce";
/// SHA-512 prefix of a CLAIM's Fiat–Shamir challenge.
pub const LABEL_CLAIM: &[u8] = b"tessera/v1/claim-challenge";

/// Length of a per-connection authentication nonce (HELLO_REPLY `auth_nonce`).
pub const AUTH_NONCE_LEN: usize = 16;
/// Length of a subscriber secret.
pub const SUBSCRIBER_SECRET_LEN: usize = 32;
/// Length of a CLAIM body: `X ‖ R ‖ s`.
pub const CLAIM_LEN: usize = 32 + 64;

/// A per-connection nonce the relay draws from its CSPRNG and announces in HELLO_REPLY.
pub type AuthNonce = [u8; AUTH_NONCE_LEN];

/// CLAIM: proof that the sender knows the secret of `key`, bound to one relay connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The subscriber key `X` (a Ristretto255 encoding); the claimed id is `subscriber_id(key)`.
    pub key: [u8; 32],
    /// Schnorr signature `R ‖ s` over `node_id ‖ auth_nonce ‖ key`.
    pub signature: [u8; 64],
}

/// Why a CLAIM does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// `key` is not a canonical Ristretto255 encoding.
    #[error("subscriber key is not a valid Ristretto255 encoding")]
    BadKey,
    /// `s` is not reduced mod ℓ (a malleated signature).
    #[error("claim signature response is not a canonical scalar")]
    NonCanonicalResponse,
    /// `s·G − c·X ≠ R`: the sender does not know the secret, or signed another connection's nonce.
    #[error("claim signature does not verify for this connection")]
    Mismatch,
}

/// The wire id of subscriber key `key`: `SHA-256(LABEL_SUBSCRIBER_ID ‖ key)[0..16]`.
pub fn subscriber_id(key: &[u8; 32]) -> SubscriberId {
    let digest = Sha256::new().chain_update(LABEL_SUBSCRIBER_ID).chain_update(key).finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    SubscriberId(id)
}

fn wide(parts: &[&[u8]]) -> Scalar {
    let mut h = Sha512::new();
    for part in parts {
        h.update(part);
    }
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// The signed transcript: `node_id ‖ auth_nonce ‖ key` (16 + 16 + 32 bytes).
fn transcript(node_id: &NodeId, auth_nonce: &AuthNonce, key: &[u8; 32]) -> [u8; 64] {
    let mut t = [0u8; 64];
    t[..16].copy_from_slice(node_id);
    t[16..32].copy_from_slice(auth_nonce);
    t[32..].copy_from_slice(key);
    t
}

/// A subscriber's key pair, derived from its 32-byte secret (what the client persists).
#[derive(Clone, ZeroizeOnDrop)]
pub struct SubscriberKeyPair {
    secret: Scalar,
    #[zeroize(skip)]
    public: [u8; 32],
    #[zeroize(skip)]
    id: SubscriberId,
}

impl SubscriberKeyPair {
    /// `x = wide(SHA-512(LABEL_SUBSCRIBER_KEY ‖ secret))`, `X = x·G`, id = `subscriber_id(X)`.
    pub fn from_secret(secret: &[u8; SUBSCRIBER_SECRET_LEN]) -> Self {
        let x = wide(&[LABEL_SUBSCRIBER_KEY, secret]);
        let public = (&x * RISTRETTO_BASEPOINT_TABLE).compress().to_bytes();
        Self { secret: x, public, id: subscriber_id(&public) }
    }

    /// The wire id.
    pub fn id(&self) -> SubscriberId {
        self.id
    }

    /// The public key `X`.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// A CLAIM for the connection to relay `node_id` that announced `auth_nonce`; `aux` is 32 fresh random
    /// bytes (the nonce stays safe if they repeat: it also hashes the secret and the transcript).
    pub fn claim(&self, node_id: &NodeId, auth_nonce: &AuthNonce, aux: &[u8; 32]) -> Claim {
        let t = transcript(node_id, auth_nonce, &self.public);
        let mut x_bytes = self.secret.to_bytes();
        let mut r = wide(&[LABEL_CLAIM_NONCE, &x_bytes, aux, &t]);
        x_bytes.zeroize();
        let big_r = (&r * RISTRETTO_BASEPOINT_TABLE).compress().to_bytes();
        let c = wide(&[LABEL_CLAIM, &t, &big_r]);
        let s = r + c * self.secret;
        r.zeroize();
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&big_r);
        signature[32..].copy_from_slice(s.as_bytes());
        Claim { key: self.public, signature }
    }
}

impl std::fmt::Debug for SubscriberKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberKeyPair").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Verifies `claim` for the connection to relay `node_id` with `auth_nonce`; returns the claimed wire id.
/// Cost: one point decompression and one double-scalar multiplication (tens of µs), once per CLAIM.
pub fn verify_claim(claim: &Claim, node_id: &NodeId, auth_nonce: &AuthNonce) -> Result<SubscriberId, ClaimError> {
    let big_x = CompressedRistretto(claim.key).decompress().ok_or(ClaimError::BadKey)?;
    let r: [u8; 32] = claim.signature[..32].try_into().expect("first half of a 64-byte array");
    let s_bytes: [u8; 32] = claim.signature[32..].try_into().expect("second half of a 64-byte array");
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(ClaimError::NonCanonicalResponse)?;
    let t = transcript(node_id, auth_nonce, &claim.key);
    let c = wide(&[LABEL_CLAIM, &t, &r]);
    // Public data only: variable time is fine.
    let check = RistrettoPoint::vartime_double_scalar_mul_basepoint(&-c, &big_x, &s).compress();
    if check.as_bytes() == &r {
        Ok(subscriber_id(&claim.key))
    } else {
        Err(ClaimError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_verifies_only_for_its_connection() {
        let pair = SubscriberKeyPair::from_secret(&[9; 32]);
        let (node, nonce) = ([1; 16], [2; 16]);
        let claim = pair.claim(&node, &nonce, &[0; 32]);
        assert_eq!(verify_claim(&claim, &node, &nonce), Ok(pair.id()));
        assert_eq!(pair.id(), subscriber_id(pair.public()));
        assert_eq!(verify_claim(&claim, &node, &[3; 16]), Err(ClaimError::Mismatch), "another connection's nonce");
        assert_eq!(verify_claim(&claim, &[4; 16], &nonce), Err(ClaimError::Mismatch), "another relay");
        let other = SubscriberKeyPair::from_secret(&[8; 32]);
        let stolen = Claim { key: *other.public(), ..claim };
        assert_eq!(verify_claim(&stolen, &node, &nonce), Err(ClaimError::Mismatch), "a signature for another key");
        let mut malleated = claim;
        malleated.signature[63] |= 0xf0;
        assert_eq!(verify_claim(&malleated, &node, &nonce), Err(ClaimError::NonCanonicalResponse));
        let bad_key = Claim { key: [0xff; 32], ..claim };
        assert_eq!(verify_claim(&bad_key, &node, &nonce), Err(ClaimError::BadKey));
        assert_ne!(claim.signature, pair.claim(&node, &nonce, &[1; 32]).signature, "hedged by aux");
    }
}
