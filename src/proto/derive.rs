//! Byte-exact derivations shared with the reference implementation (docs/FOUNDATIONS.md §2).
//!
//! ```text
//! commit (32 B) ──SHA-256──▶ [0..2] u16_be mod num_buckets ─────────▶ bucket
//! commit ‖ u64_be(window_start) ──SHA-256──▶ [0..8] ────────────────▶ fingerprint
//! fingerprint ‖ u16_be(i) ──SHA-256──▶ [0..4] u32_be mod m, i < k ──▶ Bloom positions
//! ```
//!
//! Every function is pure; the hot path uses these single-item forms or the batched forms in
//! `crate::engine`, which must agree with them (checked by tests against `tests/vectors/derivations.json`).

use sha2::{Digest, Sha256};

use super::params::{BLOOM_K_MAX, COMMIT_LEN, FINGERPRINT_LEN};

/// A 32-byte commitment, opaque to relays.
pub type Commit = [u8; COMMIT_LEN];
/// An 8-byte fingerprint.
pub type Fingerprint = [u8; FINGERPRINT_LEN];

/// Start of the window containing Unix time `t_s` (seconds): `t - t % window_s`.
///
/// `window_s` must be non-zero (a configuration invariant checked at start-up).
#[inline]
pub fn window_start(t_s: u64, window_s: u64) -> u64 {
    debug_assert!(window_s > 0);
    t_s - t_s % window_s
}

/// Bucket of a commitment: `u16_be(SHA-256(commit)[0..2]) mod num_buckets`.
///
/// The reference uses the first **two** bytes (one marketing page says one byte; the formula wins).
#[inline]
pub fn bucket_of(commit: &Commit, num_buckets: u16) -> u16 {
    let digest = Sha256::digest(commit);
    bucket_from_digest(&digest.into(), num_buckets)
}

/// Bucket from an already computed `SHA-256(commit)` (lets batched hashing share the reduction).
#[inline]
pub fn bucket_from_digest(digest: &[u8; 32], num_buckets: u16) -> u16 {
    debug_assert!(num_buckets > 0);
    u16::from_be_bytes([digest[0], digest[1]]) % num_buckets
}

/// The 40-byte message hashed into a fingerprint: `commit ‖ u64_be(window_start)`.
#[inline]
pub fn fingerprint_input(commit: &Commit, window_start_s: u64) -> [u8; COMMIT_LEN + 8] {
    let mut buf = [0u8; COMMIT_LEN + 8];
    buf[..COMMIT_LEN].copy_from_slice(commit);
    buf[COMMIT_LEN..].copy_from_slice(&window_start_s.to_be_bytes());
    buf
}

/// Fingerprint of a commitment in a window: `SHA-256(commit ‖ u64_be(window_start))[0..8]`.
#[inline]
pub fn fingerprint(commit: &Commit, window_start_s: u64) -> Fingerprint {
    let digest = Sha256::digest(fingerprint_input(commit, window_start_s));
    let mut fp = [0u8; FINGERPRINT_LEN];
    fp.copy_from_slice(&digest[..FINGERPRINT_LEN]);
    fp
}

/// The `k` Bloom bit positions of `item`, held inline (no allocation); `k <= BLOOM_K_MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BloomPositions {
    positions: [u32; BLOOM_K_MAX],
    k: u8,
}

impl BloomPositions {
    /// Builds from explicit positions (used by batched hashing); `positions.len() <= BLOOM_K_MAX`.
    pub fn from_slice(positions: &[u32]) -> Self {
        assert!(positions.len() <= BLOOM_K_MAX, "k exceeds BLOOM_K_MAX");
        let mut out = [0u32; BLOOM_K_MAX];
        out[..positions.len()].copy_from_slice(positions);
        Self { positions: out, k: positions.len() as u8 }
    }

    /// The positions, one per hash function, in order `i = 0..k`.
    #[inline]
    pub fn as_slice(&self) -> &[u32] {
        &self.positions[..self.k as usize]
    }
}

/// Input of Bloom hash `i` for an 8-byte item: `item ‖ u16_be(i)`.
#[inline]
pub fn bloom_hash_input(item: &Fingerprint, i: u16) -> [u8; FINGERPRINT_LEN + 2] {
    let mut buf = [0u8; FINGERPRINT_LEN + 2];
    buf[..FINGERPRINT_LEN].copy_from_slice(item);
    buf[FINGERPRINT_LEN..].copy_from_slice(&i.to_be_bytes());
    buf
}

/// Bloom position from `SHA-256(item ‖ u16_be(i))`: `u32_be(digest[0..4]) mod m_bits`.
#[inline]
pub fn bloom_position_from_digest(digest: &[u8; 32], m_bits: u32) -> u32 {
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % m_bits
}

/// Bloom positions of an arbitrary byte string (the reference hashes the fingerprint bytes).
///
/// Position `i` (0..k) = `u32_be(SHA-256(item ‖ u16_be(i))[0..4]) mod m_bits`.
pub fn bloom_positions(item: &[u8], m_bits: u32, k: u8) -> BloomPositions {
    assert!(m_bits > 0 && (k as usize) <= BLOOM_K_MAX, "invalid Bloom parameters");
    let mut out = [0u32; BLOOM_K_MAX];
    for (i, slot) in out.iter_mut().enumerate().take(k as usize) {
        let mut hasher = Sha256::new();
        hasher.update(item);
        hasher.update((i as u16).to_be_bytes());
        *slot = bloom_position_from_digest(&hasher.finalize().into(), m_bits);
    }
    BloomPositions { positions: out, k }
}

/// Bloom positions of a fingerprint, hashing one fixed-size 10-byte block per position.
#[inline]
pub fn fingerprint_positions(fp: &Fingerprint, m_bits: u32, k: u8) -> BloomPositions {
    assert!(m_bits > 0 && (k as usize) <= BLOOM_K_MAX, "invalid Bloom parameters");
    let mut out = [0u32; BLOOM_K_MAX];
    for (i, slot) in out.iter_mut().enumerate().take(k as usize) {
        let digest = Sha256::digest(bloom_hash_input(fp, i as u16));
        *slot = bloom_position_from_digest(&digest.into(), m_bits);
    }
    BloomPositions { positions: out, k }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_start_boundaries() {
        assert_eq!(window_start(0, 10), 0);
        assert_eq!(window_start(9, 10), 0);
        assert_eq!(window_start(10, 10), 10);
        assert_eq!(window_start(1_700_000_019, 10), 1_700_000_010);
    }

    #[test]
    fn positions_agree_between_generic_and_fingerprint_forms() {
        let fp = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(bloom_positions(&fp, 1024, 3), fingerprint_positions(&fp, 1024, 3));
        assert_eq!(bloom_positions(&fp, 1000, 7), fingerprint_positions(&fp, 1000, 7));
    }
}
