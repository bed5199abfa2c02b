//! A user's long-term identity: a Ristretto255 key pair derived from a 32-byte seed.
//!
//! ```text
//! seed (32 random bytes, the only secret stored) ──SHA-512(IDENTITY ‖ seed), wide reduction──▶ x
//! x ──x·G──▶ Y (public key, 32-byte compressed Ristretto encoding)
//! ```
//! Keeping the seed rather than the scalar lets known-answer vectors start from fixed bytes and lets the key
//! file hold a fixed-size secret. Secrets live in `Zeroizing` buffers or are wiped in `Drop`; `Debug` never
//! prints them. `PublicKey` is always a valid, non-identity point: it is checked once when parsed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use super::kdf::{scalar_from_sha512, LABEL_IDENTITY};

/// Length of a public key: a compressed Ristretto point.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of the identity seed, the secret stored in the key file.
pub const SEED_LEN: usize = 32;

/// Why bytes are not a usable public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not exactly 32 bytes.
    #[error("a public key is {PUBLIC_KEY_LEN} bytes, got {0}")]
    WrongLength(usize),
    /// Not base64url (no padding).
    #[error("a public key must be base64url without padding")]
    BadBase64,
    /// Not the canonical encoding of a Ristretto point.
    #[error("not a canonical Ristretto255 point encoding")]
    NotCanonical,
    /// The identity element: no secret key corresponds to it and every DH with it is the identity.
    #[error("the identity point is not a valid public key")]
    IdentityPoint,
}

/// A validated public key: the compressed encoding and the decoded point.
#[derive(Clone, Copy)]
pub struct PublicKey {
    /// Canonical encoding: what is hashed, compared, ordered and written.
    bytes: [u8; PUBLIC_KEY_LEN],
    /// Decoded once at parse time so that every use skips the square root.
    point: RistrettoPoint,
}

impl PublicKey {
    /// Parses and validates a compressed Ristretto point.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let bytes: [u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| KeyError::WrongLength(bytes.len()))?;
        let point = CompressedRistretto(bytes).decompress().ok_or(KeyError::NotCanonical)?;
        if point.is_identity() {
            return Err(KeyError::IdentityPoint);
        }
        Ok(Self { bytes, point })
    }

    /// Parses the base64url (unpadded) form used in files.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        // 32 bytes are 43 characters; refuse anything longer before decoding it.
        if text.len() > 64 {
            return Err(KeyError::BadBase64);
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| KeyError::BadBase64)?;
        Self::from_bytes(&bytes)
    }

    fn from_point(point: RistrettoPoint) -> Self {
        Self { bytes: point.compress().to_bytes(), point }
    }

    /// The 32-byte canonical encoding.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.bytes
    }

    /// The decoded point.
    pub fn point(&self) -> &RistrettoPoint {
        &self.point
    }

    /// base64url without padding (43 characters).
    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.bytes)
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl Eq for PublicKey {}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

/// A key pair. The seed and the scalar are wiped when it is dropped.
pub struct Identity {
    /// The stored secret; everything else is derived from it.
    seed: Zeroizing<[u8; SEED_LEN]>,
    /// `x`, derived from the seed; wiped in `Drop`.
    secret: Scalar,
    /// `Y = x·G`.
    public: PublicKey,
}

impl Identity {
    /// A fresh identity from a CSPRNG.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// The identity of a seed (deterministic; used by the key file and test vectors).
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
        let secret = scalar_from_sha512(&[LABEL_IDENTITY, seed]);
        // x = 0 happens with probability 2^-252 (a SHA-512 preimage of a multiple of ℓ); it would give the
        // identity point, which `PublicKey` refuses everywhere else, so treat it as the broken invariant it is.
        assert!(secret != Scalar::ZERO, "identity seed hashed to the zero scalar");
        let public = PublicKey::from_point(&secret * RISTRETTO_BASEPOINT_TABLE);
        Self { seed: Zeroizing::new(*seed), secret, public }
    }

    /// The public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The seed, for writing the key file.
    pub fn seed(&self) -> &[u8; SEED_LEN] {
        &self.seed
    }

    /// The secret scalar `x`.
    pub(crate) fn secret(&self) -> &Scalar {
        &self.secret
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("public", &self.public).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_validation() {
        let id = Identity::from_seed(&[7; 32]);
        let pk = PublicKey::from_bytes(id.public().as_bytes()).unwrap();
        assert_eq!(&pk, id.public());
        assert_eq!(PublicKey::from_base64(&pk.to_base64()).unwrap(), pk);
        assert_eq!(PublicKey::from_bytes(&[0u8; 32]).unwrap_err(), KeyError::IdentityPoint);
        assert_eq!(PublicKey::from_bytes(&[0u8; 31]).unwrap_err(), KeyError::WrongLength(31));
        // 0xff.. is above the field prime: no canonical encoding starts that way.
        assert_eq!(PublicKey::from_bytes(&[0xff; 32]).unwrap_err(), KeyError::NotCanonical);
        assert_eq!(PublicKey::from_base64("!!").unwrap_err(), KeyError::BadBase64);
        assert!(!format!("{id:?}").contains(&format!("{:?}", id.seed())));
    }

    #[test]
    fn seed_determines_the_key() {
        let a = Identity::from_seed(&[1; 32]);
        let b = Identity::from_seed(&[1; 32]);
        let c = Identity::from_seed(&[2; 32]);
        assert_eq!(a.public(), b.public());
        assert_ne!(a.public(), c.public());
        assert_eq!(a.public().point(), &(a.secret() * RISTRETTO_BASEPOINT_TABLE));
    }
}
