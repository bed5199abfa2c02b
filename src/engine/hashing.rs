//! Batched derivation hashing: the SHA-256 work of a chunk of proofs, done in one interleaved pass.
//!
//! ```text
//! proofs of a chunk ──▶ blocks [commit] [commit ‖ window] …  ──one_block_states──▶ bucket, fingerprint
//! accepted proofs    ──▶ blocks [fp ‖ 0] [fp ‖ 1] [fp ‖ 2] … ──one_block_states──▶ k Bloom positions
//! ```
//! Every message is one SHA-256 block, padded here from fixed templates (the length field is constant per
//! kind), so hashing a chunk is a single call into the multi-buffer SHA-NI kernel
//! (`crate::index::simd::sha256`). Buffers are sized once for `CHUNK_PROOFS` proofs: no allocation per proof.

use crate::index::simd::sha256::{one_block_states, pad_one_block, Block, HashBackend};
use crate::proto::derive::{BloomPositions, Fingerprint};
use crate::proto::{BloomParams, ProofRef, BLOOM_K_MAX, COMMIT_LEN, FINGERPRINT_LEN};

/// Proofs hashed per pass. 64 gives the SHA kernel long runs and keeps the scratch (≤ 64 × 16 blocks of
/// 64 B for the largest k) in L1/L2.
pub const CHUNK_PROOFS: usize = 64;

/// Reusable buffers for one kind of message.
struct Lane {
    blocks: Vec<Block>,
    states: Vec<[u32; 8]>,
    len: usize,
}

impl Lane {
    fn with_capacity(blocks: usize) -> Self {
        Self { blocks: vec![[0u8; 64]; blocks], states: vec![[0u32; 8]; blocks], len: 0 }
    }
}

/// Scratch and backend for a shard's derivation hashing.
pub struct BatchHasher {
    backend: HashBackend,
    bloom: BloomParams,
    /// Two blocks per candidate proof: SHA-256(commit) then SHA-256(commit ‖ window).
    derivation: Lane,
    /// k blocks per accepted proof in a bucket with filters.
    positions: Lane,
    /// Templates with the padding and length already in place.
    commit_template: Block,
    fingerprint_template: Block,
    position_template: Block,
}

impl BatchHasher {
    /// Buffers for `CHUNK_PROOFS` proofs with Bloom parameters `bloom`, hashing with `backend`.
    pub fn new(backend: HashBackend, bloom: BloomParams) -> Self {
        Self {
            backend,
            bloom,
            derivation: Lane::with_capacity(2 * CHUNK_PROOFS),
            positions: Lane::with_capacity(bloom.k as usize * CHUNK_PROOFS),
            commit_template: pad_one_block(&[0u8; COMMIT_LEN]),
            fingerprint_template: pad_one_block(&[0u8; COMMIT_LEN + 8]),
            position_template: pad_one_block(&[0u8; FINGERPRINT_LEN + 2]),
        }
    }

    /// The backend in use.
    pub fn backend(&self) -> HashBackend {
        self.backend
    }

    /// Starts a new chunk.
    #[inline]
    pub fn clear(&mut self) {
        self.derivation.len = 0;
        self.positions.len = 0;
    }

    /// Queues the two derivation hashes of `proof`; returns its candidate number (0, 1, …).
    #[inline]
    pub fn push_derivations(&mut self, proof: ProofRef<'_>) -> usize {
        let c = self.derivation.len / 2;
        assert!(c < CHUNK_PROOFS, "at most CHUNK_PROOFS candidates per chunk");
        let bytes = proof.as_bytes();
        let commit = proof.commit();
        let mut block = self.commit_template;
        block[..COMMIT_LEN].copy_from_slice(commit);
        self.derivation.blocks[2 * c] = block;
        let mut block = self.fingerprint_template;
        block[..COMMIT_LEN].copy_from_slice(commit);
        // The proof carries window_start as u64 big-endian: exactly the bytes the fingerprint hashes.
        let at = crate::proto::params::proof_layout::WINDOW_START;
        block[COMMIT_LEN..COMMIT_LEN + 8].copy_from_slice(&bytes[at..at + 8]);
        self.derivation.blocks[2 * c + 1] = block;
        self.derivation.len += 2;
        c
    }

    /// Hashes every queued derivation block.
    #[inline]
    pub fn hash_derivations(&mut self) {
        self.hash_derivations_of(0..self.derivation.len / 2);
    }

    /// Hashes the derivation blocks of candidates `candidates` (lets the caller interleave its own work,
    /// such as prefetches, with the hashing of a chunk).
    #[inline]
    pub fn hash_derivations_of(&mut self, candidates: std::ops::Range<usize>) {
        let lane = &mut self.derivation;
        let blocks = 2 * candidates.start..2 * candidates.end;
        one_block_states(self.backend, &lane.blocks[blocks.clone()], &mut lane.states[blocks]);
    }

    /// Candidates queued with `push_derivations`.
    #[inline]
    pub fn candidates(&self) -> usize {
        self.derivation.len / 2
    }

    /// `u16_be(SHA-256(commit)[0..2])` of candidate `c` (reduce it mod num_buckets).
    #[inline]
    pub fn commit_prefix(&self, c: usize) -> u16 {
        (self.derivation.states[2 * c][0] >> 16) as u16
    }

    /// The fingerprint derived for candidate `c`: `SHA-256(commit ‖ window)[0..8]`.
    #[inline]
    pub fn derived_fingerprint(&self, c: usize) -> Fingerprint {
        let s = &self.derivation.states[2 * c + 1];
        (((s[0] as u64) << 32) | s[1] as u64).to_be_bytes()
    }

    /// The SHA-256(commit) state words of candidate `c` (a keyed table may hash them further).
    #[inline]
    pub fn commit_state(&self, c: usize) -> &[u32; 8] {
        &self.derivation.states[2 * c]
    }

    /// Queues the k Bloom-position hashes of `fp`; returns its number (0, 1, …).
    #[inline]
    pub fn push_positions(&mut self, fp: &Fingerprint) -> usize {
        let k = self.bloom.k as usize;
        let n = self.positions.len / k;
        assert!(n < CHUNK_PROOFS, "at most CHUNK_PROOFS position sets per chunk");
        for i in 0..k {
            let mut block = self.position_template;
            block[..FINGERPRINT_LEN].copy_from_slice(fp);
            block[FINGERPRINT_LEN..FINGERPRINT_LEN + 2].copy_from_slice(&(i as u16).to_be_bytes());
            self.positions.blocks[n * k + i] = block;
        }
        self.positions.len += k;
        n
    }

    /// Hashes every queued position block.
    #[inline]
    pub fn hash_positions(&mut self) {
        let lane = &mut self.positions;
        one_block_states(self.backend, &lane.blocks[..lane.len], &mut lane.states);
    }

    /// Bloom positions of set `n`: `u32_be(SHA-256(fp ‖ u16_be(i))[0..4]) mod m`.
    #[inline]
    pub fn positions(&self, n: usize) -> BloomPositions {
        let k = self.bloom.k as usize;
        let mut out = [0u32; BLOOM_K_MAX];
        for (i, p) in out.iter_mut().enumerate().take(k) {
            *p = self.positions.states[n * k + i][0] % self.bloom.m_bits;
        }
        BloomPositions::from_slice(&out[..k])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::derive::{bucket_of, fingerprint, fingerprint_positions};
    use crate::proto::{Proof, CIPHERTEXT_LEN};

    #[test]
    fn batched_hashes_equal_the_single_item_derivations() {
        let params = BloomParams::new(1000, 5).unwrap();
        let mut backends = vec![HashBackend::Portable];
        backends.extend((1..=4).map(|lanes| HashBackend::ShaNi { lanes }).filter(|b| b.is_available()));
        for backend in backends {
            let mut h = BatchHasher::new(backend, params);
            h.clear();
            let proofs: Vec<Proof> = (0..CHUNK_PROOFS as u8)
                .map(|n| {
                    let commit = [n; 32];
                    let w = 1_700_000_000 + 10 * n as u64;
                    Proof::new(0, w, &commit, &fingerprint(&commit, w), &[0; CIPHERTEXT_LEN])
                })
                .collect();
            for p in &proofs {
                h.push_derivations(p.view());
                h.push_positions(p.view().fingerprint());
            }
            h.hash_derivations();
            h.hash_positions();
            for (c, p) in proofs.iter().enumerate() {
                let v = p.view();
                assert_eq!(h.commit_prefix(c) % 64, bucket_of(v.commit(), 64), "{backend:?}");
                assert_eq!(h.commit_prefix(c) % 7, bucket_of(v.commit(), 7));
                assert_eq!(&h.derived_fingerprint(c), v.fingerprint());
                assert_eq!(h.positions(c), fingerprint_positions(v.fingerprint(), 1000, 5));
            }
        }
    }
}
