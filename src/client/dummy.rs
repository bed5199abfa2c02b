//! Dummy proofs: cover traffic a client (or relay) can publish, indistinguishable from real proofs to
//! anyone without a pairwise secret.
//!
//! ```text
//! commit     = 32 random bytes        (a real commit is a SHA-256 output: also uniform)
//! bucket, fp = derived from it (docs/FOUNDATIONS.md §2), so relays accept and route it like any other
//! ciphertext = 512 random bytes       (a real one is AES-GCM output: also uniform)
//! ```
//! Same size, same header derivations, uniform bytes: only the holder of a pairwise secret could tell, and
//! none expects this commit, so recipients drop it as an unknown commit (docs/FOUNDATIONS.md §4).

use rand_core::{CryptoRng, RngCore};

use crate::proto::derive::{bucket_of, fingerprint, window_start};
use crate::proto::params::CIPHERTEXT_LEN;
use crate::proto::proof::Proof;

/// A dummy proof for the window containing `now_s`.
pub fn dummy_proof<R: RngCore + CryptoRng>(now_s: u64, window_s: u64, num_buckets: u16, rng: &mut R) -> Proof {
    let mut commit = [0u8; 32];
    rng.fill_bytes(&mut commit);
    let mut ciphertext = [0u8; CIPHERTEXT_LEN];
    rng.fill_bytes(&mut ciphertext);
    let window = window_start(now_s, window_s);
    Proof::new(bucket_of(&commit, num_buckets), window, &commit, &fingerprint(&commit, window), &ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn dummy_has_valid_derivations() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let p = dummy_proof(1_700_000_007, 10, 64, &mut rng);
        let v = p.view();
        assert_eq!(v.window_start(), 1_700_000_000);
        assert_eq!(v.bucket(), bucket_of(v.commit(), 64));
        assert_eq!(v.fingerprint(), &fingerprint(v.commit(), 1_700_000_000));
        assert_eq!(p.as_bytes().len(), crate::proto::params::PROOF_LEN);
        assert_ne!(dummy_proof(1_700_000_007, 10, 64, &mut rng), p);
    }
}
