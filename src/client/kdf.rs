//! The key-derivation primitives of the client and every domain-separation label, in one place.
//!
//! ```text
//! DH(x_A, Y_B) ──HKDF-SHA256(salt = PAIRWISE, info = Y_lo ‖ Y_hi)──▶ pairwise secret K (32 B, a PRK)
//! K ──HKDF-Expand(info = LABEL ‖ delivery id)──▶ session id, ephemeral key, AEAD key ‖ nonce
//! K ──HKDF-Expand(info = BLIND ‖ session id, 64 B)──▶ wide-reduced scalar t
//! SHA-512(LABEL ‖ …) ──wide reduction──▶ Schnorr nonce and challenge scalars
//! ```
//! HKDF and AES-GCM come from `ring` (docs/FOUNDATIONS.md §6: ring seals 512 B ~4× faster than the aes-gcm crate);
//! SHA-512 and SHA-256 from `sha2` (asm). Labels all start with `tessera/v1/`, so a change of the scheme is a
//! change of every label, and no two derivations share an input prefix. docs/PROTOCOL.md §End-to-end
//! envelope and key schedule lists them with their output lengths.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use ring::hkdf;
use sha2::{Digest, Sha512};
use zeroize::Zeroize;

/// Identity secret scalar: `x = wide(SHA-512(IDENTITY ‖ seed))`.
pub const LABEL_IDENTITY: &[u8] = b"tessera/v1/identity";
/// HKDF salt of the pairwise secret (its info is the two sorted public keys).
pub const LABEL_PAIRWISE: &[u8] = b"tessera/v1/pairwise";
/// HKDF-Expand label of a delivery's 32-byte session id.
pub const LABEL_SESSION: &[u8] = b"tessera/v1/session";
/// HKDF-Expand label of a delivery's 32-byte ephemeral key.
pub const LABEL_EPHEMERAL: &[u8] = b"tessera/v1/ephemeral";
/// HKDF-Expand label of the 64 bytes reduced into the blinding scalar `t` (info: label ‖ session id).
pub const LABEL_BLIND: &[u8] = b"tessera/v1/blind";
/// HKDF-Expand label of a delivery's AES-256-GCM key (32 B) ‖ nonce (12 B).
pub const LABEL_SEAL: &[u8] = b"tessera/v1/seal";
/// SHA-512 prefix of the hedged Schnorr nonce.
pub const LABEL_SCHNORR_NONCE: &[u8] = b"tessera/v1/schnorr-nonce";
/// SHA-512 prefix of the Fiat–Shamir challenge.
pub const LABEL_SCHNORR_CHALLENGE: &[u8] = b"tessera/v1/schnorr-challenge";
/// SHA-256 prefix of an invite code's checksum.
pub const LABEL_INVITE: &[u8] = b"tessera/v1/invite";
/// SHA-512 prefix of the safety code two contacts compare out of band (over both invites' canonical
/// payloads; `safety::safety_code`). The first safety code (80 bits of SHA-256 over the two keys, label
/// `tessera/v1/safety`) is retired: this label names its replacement, so no input of one is an input of the
/// other.
pub const LABEL_SAFETY: &[u8] = b"tessera/v1/safety-code";
/// SHA-256 prefix of the key that derives a client's filter padding from its identity seed.
pub const LABEL_PADDING: &[u8] = b"tessera/v1/padding";
/// AAD prefix of a passphrase-encrypted key file.
pub const LABEL_KEYFILE: &[u8] = b"tessera/v1/keyfile";
/// The labels of capability subscriber ids and their CLAIMs: defined in `proto::claim` (the relay verifies
/// claims, and proto sits below client), listed here with the others.
pub use crate::proto::claim::{LABEL_CLAIM, LABEL_CLAIM_NONCE, LABEL_SUBSCRIBER_ID, LABEL_SUBSCRIBER_KEY};

/// `1/2 mod ℓ = (ℓ + 1) / 2`, little-endian: lets points be computed halved so that
/// `RistrettoPoint::double_and_compress_batch` encodes several of them with one shared field inversion
/// instead of one inverse square root each.
pub static INV2: std::sync::LazyLock<Scalar> = std::sync::LazyLock::new(|| {
    const BYTES: [u8; 32] = [
        247, 233, 122, 46, 141, 49, 9, 44, 107, 206, 123, 81, 239, 124, 111, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 8,
    ];
    Option::from(Scalar::from_canonical_bytes(BYTES)).expect("(ℓ + 1) / 2 is below ℓ")
});

/// An HKDF output length, as `ring` wants it.
struct OutLen(usize);

impl hkdf::KeyType for OutLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 Extract-then-Expand of `ikm` into `out` (RFC 5869).
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    expand_prk(&prk, info, out);
}

/// HKDF-SHA256 Expand with `prk` (a uniformly random 32-byte key, here the pairwise secret) as the PRK.
pub fn hkdf_expand(prk: &[u8; 32], info: &[&[u8]], out: &mut [u8]) {
    expand_prk(&hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, prk), info, out);
}

fn expand_prk(prk: &hkdf::Prk, info: &[&[u8]], out: &mut [u8]) {
    // Every caller asks for at most 64 bytes, far below HKDF-SHA256's 255 × 32 = 8160-byte limit, which is
    // the only way `expand`/`fill` can fail.
    prk.expand(info, OutLen(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF output length is at most 64 bytes, below the 8160-byte limit");
}

/// A scalar from 64 HKDF bytes, reduced mod ℓ (bias ≈ 2^-259); the bytes are wiped.
pub fn scalar_from_hkdf(prk: &[u8; 32], info: &[&[u8]]) -> Scalar {
    let mut wide = [0u8; 64];
    hkdf_expand(prk, info, &mut wide);
    let scalar = Scalar::from_bytes_mod_order_wide(&wide);
    wide.zeroize();
    scalar
}

/// A scalar from `SHA-512(parts[0] ‖ parts[1] ‖ …)`, reduced mod ℓ.
pub fn scalar_from_sha512(parts: &[&[u8]]) -> Scalar {
    let mut hasher = Sha512::new();
    for part in parts {
        hasher.update(part);
    }
    let mut wide: [u8; 64] = hasher.finalize().into();
    let scalar = Scalar::from_bytes_mod_order_wide(&wide);
    wide.zeroize();
    scalar
}

/// Encodings of `scalars[i]·G`, computed as `double(scalars[i]/2 · G)` with one batched inversion.
/// Constant time in the scalars (fixed-base table multiplication, then field arithmetic).
pub fn compress_base_mults(scalars: &[Scalar]) -> Vec<[u8; 32]> {
    let halves: Vec<RistrettoPoint> = scalars.iter().map(|s| &(s * *INV2) * RISTRETTO_BASEPOINT_TABLE).collect();
    RistrettoPoint::double_and_compress_batch(&halves).into_iter().map(|c| c.to_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_of_two_and_batched_encodings() {
        assert_eq!(*INV2 * Scalar::from(2u8), Scalar::ONE);
        let scalars = [Scalar::from(3u8), Scalar::from(1_000_000u64), -Scalar::from(5u8)];
        let batched = compress_base_mults(&scalars);
        for (s, enc) in scalars.iter().zip(&batched) {
            assert_eq!(enc, (s * RISTRETTO_BASEPOINT_TABLE).compress().as_bytes());
        }
    }

    /// RFC 5869 test case 1 (HKDF-SHA256, 42-byte output): checks the `ring` plumbing, not `ring`.
    #[test]
    fn rfc5869_case_1() {
        let ikm = [0x0b; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let mut okm = [0u8; 42];
        hkdf_sha256(&salt, &ikm, &[&info[..5], &info[5..]], &mut okm);
        let hex: String = okm.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
    }

    #[test]
    fn labels_are_prefix_free() {
        let labels = [
            LABEL_IDENTITY,
            LABEL_PAIRWISE,
            LABEL_SESSION,
            LABEL_EPHEMERAL,
            LABEL_BLIND,
            LABEL_SEAL,
            LABEL_SCHNORR_NONCE,
            LABEL_SCHNORR_CHALLENGE,
            LABEL_INVITE,
            LABEL_SAFETY,
            LABEL_KEYFILE,
            LABEL_PADDING,
        ];
        for (i, a) in labels.iter().enumerate() {
            for (j, b) in labels.iter().enumerate() {
                assert!(i == j || !a.starts_with(b), "{:?} starts with {:?}", a, b);
            }
        }
    }
}
