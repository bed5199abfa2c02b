//! The secret two enrolled contacts share, and which of them sends in which direction.
//!
//! ```text
//! A: x_A · Y_B ─┐
//!               ├─ same point Z ──HKDF-SHA256(salt = "tessera/v1/pairwise", ikm = Z, info = Y_lo ‖ Y_hi)──▶ K
//! B: x_B · Y_A ─┘
//! ```
//! `Y_lo`/`Y_hi` are the two public keys ordered by their 32-byte encodings, so both sides feed HKDF the
//! same bytes whoever computes it, and `K` is bound to exactly this pair of keys. The same ordering
//! defines the direction of a delivery: the holder of `Y_lo` sends `LowToHigh`.

use curve25519_dalek::traits::IsIdentity;
use zeroize::Zeroizing;

use super::identity::{Identity, PublicKey};
use super::kdf::{hkdf_sha256, LABEL_PAIRWISE};

/// Length of the pairwise secret `K`.
pub const PAIRWISE_SECRET_LEN: usize = 32;

/// Why no pairwise secret can be derived with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PairwiseError {
    /// The contact's key is our own: there would be no direction to tell the two sides apart.
    #[error("the contact's public key is your own")]
    OwnKey,
}

/// Which side of a pair sends a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Direction {
    /// Sent by the holder of the lexicographically smaller public key encoding.
    LowToHigh = 0,
    /// Sent by the holder of the larger one.
    HighToLow = 1,
}

impl Direction {
    /// The other direction.
    pub fn reverse(self) -> Self {
        match self {
            Direction::LowToHigh => Direction::HighToLow,
            Direction::HighToLow => Direction::LowToHigh,
        }
    }
}

/// `K`: a uniformly random 32-byte key (an HKDF output), used as the PRK of every per-delivery derivation.
/// Wiped on drop.
#[derive(Clone)]
pub struct PairwiseSecret(Zeroizing<[u8; PAIRWISE_SECRET_LEN]>);

impl PairwiseSecret {
    /// Wraps known bytes (test vectors, benches).
    pub fn from_bytes(bytes: [u8; PAIRWISE_SECRET_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; PAIRWISE_SECRET_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for PairwiseSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairwiseSecret(..)")
    }
}

/// What one side knows about its pair: the secret and the direction it sends in.
#[derive(Clone, Debug)]
pub struct Pairing {
    /// `K`.
    pub secret: PairwiseSecret,
    /// The direction of deliveries we send; we receive the reverse.
    pub send_direction: Direction,
}

/// The two keys ordered by encoding: `(lo, hi)`.
fn ordered<'a>(a: &'a PublicKey, b: &'a PublicKey) -> (&'a PublicKey, &'a PublicKey) {
    if a.as_bytes() <= b.as_bytes() {
        (a, b)
    } else {
        (b, a)
    }
}

/// The Diffie–Hellman point `x_me · Y_them`, compressed (wiped on drop).
pub fn shared_point(me: &Identity, them: &PublicKey) -> Zeroizing<[u8; 32]> {
    let point = me.secret() * them.point();
    // Ristretto255 has prime order and `them` is not the identity, and x ≠ 0 (checked in `Identity`), so
    // the product cannot be the identity.
    assert!(!point.is_identity(), "DH of a non-zero scalar and a non-identity point of prime order");
    Zeroizing::new(point.compress().to_bytes())
}

/// Derives `K` and our sending direction for the pair (`me`, `them`).
pub fn pair(me: &Identity, them: &PublicKey) -> Result<Pairing, PairwiseError> {
    if me.public() == them {
        return Err(PairwiseError::OwnKey);
    }
    let z = shared_point(me, them);
    let (lo, hi) = ordered(me.public(), them);
    let mut k = Zeroizing::new([0u8; PAIRWISE_SECRET_LEN]);
    hkdf_sha256(LABEL_PAIRWISE, z.as_ref(), &[lo.as_bytes(), hi.as_bytes()], k.as_mut());
    let send_direction = if lo == me.public() { Direction::LowToHigh } else { Direction::HighToLow };
    Ok(Pairing { secret: PairwiseSecret(k), send_direction })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree_and_directions_differ() {
        let alice = Identity::from_seed(&[0xA1; 32]);
        let bob = Identity::from_seed(&[0xB0; 32]);
        let carol = Identity::from_seed(&[0xC4; 32]);
        let ab = pair(&alice, bob.public()).unwrap();
        let ba = pair(&bob, alice.public()).unwrap();
        assert_eq!(ab.secret.as_bytes(), ba.secret.as_bytes());
        assert_eq!(ab.send_direction, ba.send_direction.reverse());
        assert_eq!(*shared_point(&alice, bob.public()), *shared_point(&bob, alice.public()));
        let ac = pair(&alice, carol.public()).unwrap();
        assert_ne!(ab.secret.as_bytes(), ac.secret.as_bytes());
        assert_eq!(pair(&alice, alice.public()).unwrap_err(), PairwiseError::OwnKey);
    }
}
