//! Schnorr proof of knowledge of the blinded secret `x' = x + t`, bound to a commit and a message body.
//!
//! ```text
//! prove(x', Y', ctx, aux):
//!   r = wide(SHA-512("tessera/v1/schnorr-nonce" ‖ x' ‖ aux ‖ body))   hedged: deterministic in the secret
//!   R = r·G                                                           and message, plus 32 fresh random bytes
//!   c = wide(SHA-512("tessera/v1/schnorr-challenge" ‖ Y' ‖ R ‖ commit ‖ u64_be(window_start) ‖ body))
//!   s = r + c·x'
//!   proof = R ‖ s   (64 bytes)
//! verify(Y', proof, ctx):  s canonical, and compress(s·G − c·Y') == R
//! ```
//! The challenge covers the commit (and through it the bucket), the window, and every byte of the envelope
//! after the proof, so a proof cannot be moved to another delivery or another message. The nonce needs no
//! commit: `x'` is already unique per delivery (`t` is), so equal `(x', aux, body)` means an equal challenge,
//! and leaving it out lets the sender compute `R` and `Y'` together (`envelope::seal` encodes both with one
//! shared inversion). Verification
//! compares encodings (one compression) instead of decoding `R` (one square root): same cost, and a
//! non-canonical `R` fails automatically.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use zeroize::Zeroize;

use super::kdf::{scalar_from_sha512, LABEL_SCHNORR_CHALLENGE, LABEL_SCHNORR_NONCE};
use crate::proto::derive::Commit;

/// Length of a proof: `R ‖ s`.
pub const SCHNORR_PROOF_LEN: usize = 64;

/// Why a Schnorr proof does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchnorrError {
    /// `s` is not reduced mod ℓ (a malleated proof).
    #[error("Schnorr response is not a canonical scalar")]
    NonCanonicalResponse,
    /// `s·G − c·Y' ≠ R`: the prover does not know the secret of `Y'`, or the bound data differ.
    #[error("Schnorr proof does not verify against the expected blinded key")]
    Mismatch,
}

/// What the challenge binds besides `Y'` and `R`.
#[derive(Clone, Copy, Debug)]
pub struct ChallengeContext<'a> {
    /// The delivery's commit.
    pub commit: &'a Commit,
    /// The delivery's window start.
    pub window_start_s: u64,
    /// The envelope bytes after the proof (header, chunk, padding).
    pub body: &'a [u8],
}

/// The Fiat–Shamir challenge `c`.
pub fn challenge(y_blinded: &[u8; 32], r: &[u8; 32], ctx: &ChallengeContext<'_>) -> Scalar {
    scalar_from_sha512(&[
        LABEL_SCHNORR_CHALLENGE,
        y_blinded,
        r,
        ctx.commit,
        &ctx.window_start_s.to_be_bytes(),
        ctx.body,
    ])
}

/// The hedged nonce `r` for proving knowledge of `x_blinded` over `body`. `aux` is fresh randomness; the
/// nonce stays safe even if `aux` repeats, since it also hashes the secret and the message.
pub fn nonce(x_blinded: &Scalar, aux: &[u8; 32], body: &[u8]) -> Scalar {
    let mut x_bytes = x_blinded.to_bytes();
    let r = scalar_from_sha512(&[LABEL_SCHNORR_NONCE, &x_bytes, aux, body]);
    x_bytes.zeroize();
    r
}

/// Completes a proof from the nonce `r` (consumed and wiped), its encoding `big_r = r·G`, and `x_blinded`.
pub fn respond(
    mut r: Scalar,
    big_r: &[u8; 32],
    x_blinded: &Scalar,
    y_blinded: &[u8; 32],
    ctx: &ChallengeContext<'_>,
) -> [u8; SCHNORR_PROOF_LEN] {
    let c = challenge(y_blinded, big_r, ctx);
    let s = r + c * x_blinded;
    r.zeroize();
    let mut out = [0u8; SCHNORR_PROOF_LEN];
    out[..32].copy_from_slice(big_r);
    out[32..].copy_from_slice(s.as_bytes());
    out
}

/// Proves knowledge of `x_blinded` for `y_blinded = x_blinded·G` (its encoding), computing `R` on its own.
pub fn prove(x_blinded: &Scalar, y_blinded: &[u8; 32], ctx: &ChallengeContext<'_>, aux: &[u8; 32]) -> [u8; 64] {
    let r = nonce(x_blinded, aux, ctx.body);
    let big_r = (&r * RISTRETTO_BASEPOINT_TABLE).compress().to_bytes();
    respond(r, &big_r, x_blinded, y_blinded, ctx)
}

/// Verifies `proof` against the expected blinded key (its point and encoding).
pub fn verify(
    y_point: &RistrettoPoint,
    y_blinded: &[u8; 32],
    proof: &[u8; SCHNORR_PROOF_LEN],
    ctx: &ChallengeContext<'_>,
) -> Result<(), SchnorrError> {
    let r: &[u8; 32] = proof[..32].try_into().expect("first half of a 64-byte array");
    let s_bytes: [u8; 32] = proof[32..].try_into().expect("second half of a 64-byte array");
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(SchnorrError::NonCanonicalResponse)?;
    let c = challenge(y_blinded, r, ctx);
    // Public data only: variable time is fine.
    let check = RistrettoPoint::vartime_double_scalar_mul_basepoint(&-c, y_point, &s).compress();
    // R and the recomputed point are public (they travel in the envelope): a plain comparison leaks nothing.
    if check.as_bytes() == r {
        Ok(())
    } else {
        Err(SchnorrError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (Scalar, RistrettoPoint, [u8; 32]) {
        let x = Scalar::from_bytes_mod_order([5; 32]);
        let y = &x * RISTRETTO_BASEPOINT_TABLE;
        (x, y, y.compress().to_bytes())
    }

    #[test]
    fn round_trip_and_binding() {
        let (x, y, yb) = fixture();
        let commit = [1u8; 32];
        let body = [2u8; 400];
        let ctx = ChallengeContext { commit: &commit, window_start_s: 10, body: &body };
        let proof = prove(&x, &yb, &ctx, &[0; 32]);
        assert_eq!(verify(&y, &yb, &proof, &ctx), Ok(()));

        let other_window = ChallengeContext { window_start_s: 20, ..ctx };
        assert_eq!(verify(&y, &yb, &proof, &other_window), Err(SchnorrError::Mismatch));
        let other_commit = [9u8; 32];
        let moved = ChallengeContext { commit: &other_commit, ..ctx };
        assert_eq!(verify(&y, &yb, &proof, &moved), Err(SchnorrError::Mismatch));
        let mut other_body = body;
        other_body[399] ^= 1;
        let edited = ChallengeContext { body: &other_body, ..ctx };
        assert_eq!(verify(&y, &yb, &proof, &edited), Err(SchnorrError::Mismatch));

        let wrong_x = x + Scalar::ONE;
        let forged = prove(&wrong_x, &yb, &ctx, &[0; 32]);
        assert_eq!(verify(&y, &yb, &forged, &ctx), Err(SchnorrError::Mismatch));

        // s + ℓ encodes the same residue but is not canonical.
        let mut malleated = proof;
        malleated[63] |= 0xf0;
        assert_eq!(verify(&y, &yb, &malleated, &ctx), Err(SchnorrError::NonCanonicalResponse));
    }

    #[test]
    fn hedged_nonce_depends_on_aux() {
        let (x, y, yb) = fixture();
        let commit = [1u8; 32];
        let ctx = ChallengeContext { commit: &commit, window_start_s: 10, body: &[] };
        let a = prove(&x, &yb, &ctx, &[0; 32]);
        let b = prove(&x, &yb, &ctx, &[1; 32]);
        assert_ne!(a[..32], b[..32]);
        assert_eq!(a, prove(&x, &yb, &ctx, &[0; 32]));
        assert_eq!(verify(&y, &yb, &b, &ctx), Ok(()));
    }
}
