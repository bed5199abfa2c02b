//! Dummy proofs: byte-for-byte the shape of a real proof, with valid derivations and random content.
//!
//! ```text
//! rng ──32 B──▶ commit ──bucket_of(commit) == b ?──no──▶ redraw
//!                  │ yes
//!                  ├─▶ fingerprint(commit, window_start)
//!                  └─▶ Proof::new(b, window_start, commit, fingerprint, 512 random bytes)   (564 B)
//! ```
//!
//! A real commit is a SHA-256 output and a real ciphertext is AES-GCM output: both indistinguishable from
//! uniform bytes. A uniform commit conditioned on deriving to bucket `b` has exactly the distribution of a real
//! commit routed to `b`, so nothing in a dummy — size, header, derivations, content — tells it apart; no field
//! marks it. Rejection sampling takes `num_buckets` draws on average (64 SHA-256s, ~3 µs at the default).

use rand_core::{CryptoRng, RngCore};

use super::error::DummyError;
use crate::proto::derive::{bucket_of, fingerprint, Commit};
use crate::proto::{Proof, CIPHERTEXT_LEN, COMMIT_LEN};

/// A dummy proof for `bucket` in the window starting at `window_start_s`.
///
/// Call it when the slot is emitted, with the window of the emission time, as a client would. The loop redraws
/// until the commit derives to `bucket`: each draw succeeds with probability ≥ ⌊65536/B⌋/65536 ≥ 1/(2B), so it
/// ends after B draws on average and after 50·B with probability ≥ 1 − e⁻²⁵; it is not capped, since a cap
/// would have to emit a proof that fails the relay's check or skip a dummy (biasing D_b).
pub fn build_dummy_proof<R: RngCore + CryptoRng + ?Sized>(
    rng: &mut R,
    bucket: u16,
    num_buckets: u16,
    window_start_s: u64,
) -> Result<Proof, DummyError> {
    if num_buckets == 0 {
        return Err(DummyError::NoBuckets);
    }
    if bucket >= num_buckets {
        return Err(DummyError::BucketOutOfRange { bucket, num_buckets });
    }
    let mut commit: Commit = [0u8; COMMIT_LEN];
    loop {
        rng.fill_bytes(&mut commit);
        if bucket_of(&commit, num_buckets) == bucket {
            break;
        }
    }
    let fp = fingerprint(&commit, window_start_s);
    let mut ciphertext = [0u8; CIPHERTEXT_LEN];
    rng.fill_bytes(&mut ciphertext);
    Ok(Proof::new(bucket, window_start_s, &commit, &fp, &ciphertext))
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::proto::{window_start, ProofRef, PROOF_LEN, WINDOW_SECONDS};

    #[test]
    fn dummies_pass_the_derivation_checks() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let window = window_start(1_700_000_123, WINDOW_SECONDS);
        for num_buckets in [1u16, 7, 64, 1000] {
            for bucket in [0, num_buckets / 2, num_buckets - 1] {
                let proof = build_dummy_proof(&mut rng, bucket, num_buckets, window).unwrap();
                assert_eq!(proof.as_bytes().len(), PROOF_LEN);
                // Parses like any proof off the wire.
                let parsed = Proof::from_slice(proof.as_bytes()).unwrap();
                let view: ProofRef<'_> = parsed.view();
                assert_eq!(view.bucket(), bucket);
                assert_eq!(view.window_start(), window);
                assert_eq!(bucket_of(view.commit(), num_buckets), bucket);
                assert_eq!(view.fingerprint(), &fingerprint(view.commit(), window));
                assert_eq!(&proof.as_bytes()[..2], &[1, 0], "version 1, reserved 0: no marker");
            }
        }
    }

    #[test]
    fn dummies_are_fresh_and_content_looks_uniform() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let a = build_dummy_proof(&mut rng, 3, 64, 1_700_000_000).unwrap();
        let b = build_dummy_proof(&mut rng, 3, 64, 1_700_000_000).unwrap();
        assert_ne!(a.view().commit(), b.view().commit());
        assert_ne!(a.view().ciphertext(), b.view().ciphertext());
        // Bits of 40 ciphertexts: 163,840 fair bits, ones within 5 SD (SD = 202) of half.
        let ones: u32 = (0..40)
            .map(|_| build_dummy_proof(&mut rng, 5, 64, 1_700_000_000).unwrap())
            .map(|p| p.view().ciphertext().iter().map(|x| x.count_ones()).sum::<u32>())
            .sum();
        assert!((ones as i64 - 81_920).abs() < 1_010, "{ones}");
    }

    #[test]
    fn bad_buckets_are_rejected() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        assert_eq!(build_dummy_proof(&mut rng, 0, 0, 0), Err(DummyError::NoBuckets));
        assert_eq!(
            build_dummy_proof(&mut rng, 64, 64, 0),
            Err(DummyError::BucketOutOfRange { bucket: 64, num_buckets: 64 })
        );
    }
}
