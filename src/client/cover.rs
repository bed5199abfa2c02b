//! Client cover proofs: the dummies a connected client publishes to itself, so its link carries the same
//! number of proofs every round whether it talks or not (optimistic indistinguishability).
//!
//! ```text
//! cover_key          = SHA-256("tessera/v1/cover" ‖ identity seed)                      (client-local secret)
//! commit(w, i)       = SHA-256(cover_key ‖ u64_be(w) ‖ u32_be(i))   for slot i < proofs_per_round of window w
//! bucket, fingerprint = derived from the commit (proto::derive), exactly like any other proof
//! ciphertext          = 512 random bytes (a real one is AES-GCM output: also uniform)
//! subscribe:  cover_expectations(w, i) join the contacts' expected fingerprints in the client's own filters
//! receive:    unknown commit ─▶ is_cover(commit, window)? ─▶ counted as cover and dropped (never shown)
//! ```
//! The relay cannot tell a cover proof from a real one: the commit is a SHA-256 output under a secret, the
//! header is derived the same way, the ciphertext is uniform, and it routes back to this client through the
//! filters it registered, like the delivery of a conversation with itself. Recognising one costs at most
//! `proofs_per_round` hashes per unknown commit, so nothing is stored per window. Each (window, slot) commit
//! is published at most once (the schedule sends one batch per round and window), so the relay's dedup never
//! sees a repeat.

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::delivery::SEQS_PER_WINDOW;
use super::identity::Identity;
use super::state::ClientState;
use super::subscription::Expectation;
use crate::proto::derive::{bucket_of, fingerprint, Commit};
use crate::proto::params::CIPHERTEXT_LEN;
use crate::proto::proof::{Proof, ProofRef};

/// Domain label of the cover key.
pub const LABEL_COVER: &[u8] = b"tessera/v1/cover";
/// Default proofs per round: one 564-byte proof per 10-second round is ~60 B/s up and down per client, and a
/// one-part message (≤ 394 bytes: most chat lines) goes out whole at the next slot.
pub const COVER_PROOFS_PER_ROUND_DEFAULT: u32 = 1;
/// Most proofs per round: a message part to one contact takes one of its `SEQS_PER_WINDOW` sequence numbers
/// of the window, so a round (one window) never needs more.
pub const COVER_PROOFS_PER_ROUND_MAX: u32 = SEQS_PER_WINDOW;

/// The client-local secret cover commits derive from.
pub struct CoverKey(Zeroizing<[u8; 32]>);

impl CoverKey {
    /// `SHA-256("tessera/v1/cover" ‖ seed)`: stable across runs, so renewals register the same fingerprints.
    pub fn derive(identity: &Identity) -> Self {
        Self(Zeroizing::new(Sha256::new().chain_update(LABEL_COVER).chain_update(identity.seed()).finalize().into()))
    }

    /// From raw bytes (tests, vectors).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The commit of cover slot `slot` of the window starting at `window_start_s`.
    pub fn commit(&self, window_start_s: u64, slot: u32) -> Commit {
        Sha256::new()
            .chain_update(self.0.as_slice())
            .chain_update(window_start_s.to_be_bytes())
            .chain_update(slot.to_be_bytes())
            .finalize()
            .into()
    }

    /// The cover proof of slot `slot` in the window starting at `window_start_s`.
    pub fn proof<R: RngCore + CryptoRng>(
        &self,
        window_start_s: u64,
        slot: u32,
        num_buckets: u16,
        rng: &mut R,
    ) -> Proof {
        let commit = self.commit(window_start_s, slot);
        let mut ciphertext = [0u8; CIPHERTEXT_LEN];
        rng.fill_bytes(&mut ciphertext);
        let fp = fingerprint(&commit, window_start_s);
        Proof::new(bucket_of(&commit, num_buckets), window_start_s, &commit, &fp, &ciphertext)
    }

    /// Whether `commit` is one of our first `proofs_per_round` cover commits of `window_start_s`.
    pub fn is_cover(&self, commit: &Commit, window_start_s: u64, proofs_per_round: u32) -> bool {
        (0..proofs_per_round.min(COVER_PROOFS_PER_ROUND_MAX)).any(|slot| &self.commit(window_start_s, slot) == commit)
    }

    /// The fingerprints our own filters must hold for cover of windows `from_s..=to_s` (`proofs_per_round`
    /// per window, none when cover is off), for the subscription planner.
    pub fn expectations(
        &self,
        from_s: u64,
        to_s: u64,
        window_s: u64,
        proofs_per_round: u32,
        num_buckets: u16,
    ) -> Vec<Expectation> {
        let mut out = Vec::new();
        if window_s == 0 || proofs_per_round == 0 {
            return out;
        }
        let mut w = from_s;
        while w <= to_s {
            for slot in 0..proofs_per_round.min(COVER_PROOFS_PER_ROUND_MAX) {
                let commit = self.commit(w, slot);
                out.push(Expectation {
                    bucket: bucket_of(&commit, num_buckets),
                    window_start_s: w,
                    fingerprint: fingerprint(&commit, w),
                });
            }
            w += window_s;
        }
        out
    }
}

impl ClientState {
    /// Cover fingerprints registered per window (`ClientConfig::cover_proofs_per_round`, capped).
    pub(super) fn cover_per_window(&self) -> u64 {
        u64::from(self.config.cover_proofs_per_round.min(COVER_PROOFS_PER_ROUND_MAX))
    }

    /// The cover key of this identity.
    pub fn cover_key(&self) -> CoverKey {
        CoverKey::derive(&self.identity)
    }

    /// Our cover fingerprints over windows `from_s..=to_s`, for the subscription planner.
    pub(super) fn cover_expectations(&self, from_s: u64, to_s: u64) -> Vec<Expectation> {
        let c = &self.config;
        self.cover_key().expectations(from_s, to_s, c.window_s, c.cover_proofs_per_round, c.num_buckets)
    }

    /// Cover proof `slot` of the window starting at `window_start_s`, addressed to ourselves.
    pub fn cover_proof<R: RngCore + CryptoRng>(&self, window_start_s: u64, slot: u32, rng: &mut R) -> Proof {
        self.cover_key().proof(window_start_s, slot, self.config.num_buckets, rng)
    }

    /// Whether a delivered proof is one of our own cover proofs (then it is dropped, never shown).
    pub fn is_own_cover(&self, proof: ProofRef<'_>) -> bool {
        let k = self.config.cover_proofs_per_round;
        k > 0 && self.cover_key().is_cover(proof.commit(), proof.window_start(), k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn cover_proofs_are_well_formed_and_recognised() {
        let key = CoverKey::from_bytes([7; 32]);
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let p = key.proof(1_700_000_000, 1, 64, &mut rng);
        let v = p.view();
        assert_eq!(v.bucket(), bucket_of(v.commit(), 64));
        assert_eq!(v.fingerprint(), &fingerprint(v.commit(), 1_700_000_000));
        assert!(key.is_cover(v.commit(), 1_700_000_000, 2));
        // Slot 1 is not among the first one, another window's commits differ, another key's too.
        assert!(!key.is_cover(v.commit(), 1_700_000_000, 1));
        assert!(!key.is_cover(v.commit(), 1_700_000_010, 2));
        assert!(!CoverKey::from_bytes([8; 32]).is_cover(v.commit(), 1_700_000_000, 2));
        let e = key.expectations(1_700_000_000, 1_700_000_010, 10, 2, 64);
        assert_eq!(e.len(), 4);
        assert_eq!((e[1].bucket, e[1].fingerprint), (v.bucket(), *v.fingerprint()));
        assert!(key.expectations(0, 100, 10, 0, 64).is_empty());
    }
}
