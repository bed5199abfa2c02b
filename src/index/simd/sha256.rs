//! Batched SHA-256 of one-block messages: the derivation hashing of the hot path (docs/FOUNDATIONS.md §2, §6).
//!
//! ```text
//! message (≤ 55 B) ──pad──▶ 64-byte block ──HashBackend──▶ state words [u32; 8] (digest = big-endian words)
//! ```
//! Each proof needs SHA-256(commit) (32 B), SHA-256(commit ‖ window) (40 B) and k × SHA-256(fp ‖ u16 i)
//! (10 B): all single blocks. `HashBackend::ShaNi` compresses `lanes` blocks at once with SHA-NI so their
//! round chains overlap; `Portable` calls `sha2::compress256` block by block (sha2 picks its own best path).

use crate::proto::COMMIT_LEN;

/// A padded 64-byte SHA-256 block.
pub type Block = [u8; 64];

/// SHA-256 initial state (FIPS 180-4 §5.3.3).
pub const IV: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// SHA-256 round constants (FIPS 180-4 §4.2.2).
pub const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
];

/// Longest message that fits one block: 64 − 1 (0x80 marker) − 8 (bit length).
pub const ONE_BLOCK_MESSAGE_MAX: usize = 55;

/// Pads `msg` (≤ 55 bytes) into its single SHA-256 block: `msg ‖ 0x80 ‖ 0… ‖ u64_be(bit length)`.
#[inline]
pub fn pad_one_block(msg: &[u8]) -> Block {
    assert!(msg.len() <= ONE_BLOCK_MESSAGE_MAX, "message does not fit one SHA-256 block");
    let mut block = [0u8; 64];
    block[..msg.len()].copy_from_slice(msg);
    block[msg.len()] = 0x80;
    block[56..].copy_from_slice(&((msg.len() as u64) * 8).to_be_bytes());
    block
}

/// The 32-byte digest of a final state.
#[inline]
pub fn digest_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

const _: () = assert!(COMMIT_LEN + 8 <= ONE_BLOCK_MESSAGE_MAX);

/// How one-block digests are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashBackend {
    /// `sha2::compress256`, one block at a time.
    Portable,
    /// SHA-NI with `lanes` (1, 2, 3 or 4) blocks interleaved (x86-64 with the SHA extensions).
    ShaNi {
        /// Blocks compressed together.
        lanes: u8,
    },
}

/// Interleave width chosen by the `hash` bench on an AMD EPYC (docs/PERFORMANCE.md §hash): two chains
/// keep the SHA unit busy; more lanes spill registers (SHA instructions only address xmm0–15).
pub const SHA_NI_LANES_DEFAULT: u8 = 4;

impl HashBackend {
    /// The fastest backend this CPU supports.
    pub fn detect() -> HashBackend {
        let ni = HashBackend::ShaNi { lanes: SHA_NI_LANES_DEFAULT };
        if ni.is_available() {
            ni
        } else {
            HashBackend::Portable
        }
    }

    /// Whether this CPU can run it (and `lanes` is supported).
    pub fn is_available(self) -> bool {
        match self {
            HashBackend::Portable => true,
            #[cfg(target_arch = "x86_64")]
            HashBackend::ShaNi { lanes } => {
                (1..=4).contains(&lanes)
                    && std::arch::is_x86_feature_detected!("sha")
                    && std::arch::is_x86_feature_detected!("sse4.1")
                    && std::arch::is_x86_feature_detected!("ssse3")
            }
            #[allow(unreachable_patterns)] // reachable only off x86-64
            _ => false,
        }
    }

    /// A short name for reports.
    pub fn name(self) -> String {
        match self {
            HashBackend::Portable => "sha2-compress256".to_string(),
            HashBackend::ShaNi { lanes } => format!("sha-ni-x{lanes}"),
        }
    }
}

/// Compresses every block from the IV: `out[i]` = state after `blocks[i]` (`out.len() >= blocks.len()`).
/// An unavailable backend falls back to `Portable`.
#[inline]
pub fn one_block_states(backend: HashBackend, blocks: &[Block], out: &mut [[u32; 8]]) {
    let out = &mut out[..blocks.len()];
    match backend {
        #[cfg(target_arch = "x86_64")]
        HashBackend::ShaNi { lanes } if backend.is_available() => match lanes {
            1 => ni_lanes::<1>(blocks, out),
            2 => ni_lanes::<2>(blocks, out),
            3 => ni_lanes::<3>(blocks, out),
            _ => ni_lanes::<4>(blocks, out),
        },
        _ => portable(blocks, out),
    }
}

fn portable(blocks: &[Block], out: &mut [[u32; 8]]) {
    for (block, state) in blocks.iter().zip(out) {
        *state = IV;
        sha2::compress256(state, std::slice::from_ref(block.into()));
    }
}

/// Groups of `N` through the SHA-NI kernel; the remainder one at a time.
#[cfg(target_arch = "x86_64")]
#[inline]
fn ni_lanes<const N: usize>(blocks: &[Block], out: &mut [[u32; 8]]) {
    let mut groups = blocks.chunks_exact(N);
    let mut outs = out.chunks_exact_mut(N);
    for (group, states) in (&mut groups).zip(&mut outs) {
        let group: &[Block; N] = group.try_into().expect("chunks_exact yields N blocks");
        let states: &mut [[u32; 8]; N] = states.try_into().expect("chunks_exact_mut yields N states");
        // SAFETY: the caller checked `HashBackend::is_available` (SHA, SSSE3, SSE4.1; SSE2 is x86-64 baseline).
        unsafe { super::sha256_ni::compress_iv::<N>(group, states) };
    }
    for (block, state) in groups.remainder().iter().zip(outs.into_remainder()) {
        // SAFETY: as above.
        unsafe { super::sha256_ni::compress_iv::<1>(std::array::from_ref(block), std::array::from_mut(state)) };
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn backends() -> Vec<HashBackend> {
        let mut all = vec![HashBackend::Portable];
        all.extend((1..=4).map(|lanes| HashBackend::ShaNi { lanes }).filter(|b| b.is_available()));
        all
    }

    #[test]
    fn every_backend_matches_sha2_for_every_one_block_length() {
        let messages: Vec<Vec<u8>> = (0..=ONE_BLOCK_MESSAGE_MAX)
            .map(|len| (0..len).map(|i| (i * 37 + len * 11) as u8).collect())
            .chain((0..13).map(|n| vec![n as u8; 40]))
            .collect();
        let blocks: Vec<Block> = messages.iter().map(|m| pad_one_block(m)).collect();
        for backend in backends() {
            let mut out = vec![[0u32; 8]; blocks.len()];
            one_block_states(backend, &blocks, &mut out);
            for (msg, state) in messages.iter().zip(&out) {
                assert_eq!(digest_bytes(state), <[u8; 32]>::from(Sha256::digest(msg)), "{backend:?} len {}", msg.len());
            }
        }
    }

    #[test]
    fn known_answer_abc() {
        let mut out = [[0u32; 8]];
        one_block_states(HashBackend::detect(), &[pad_one_block(b"abc")], &mut out);
        assert_eq!(out[0][0], 0xba7816bf);
        assert_eq!(out[0][7], 0xf20015ad);
    }
}
