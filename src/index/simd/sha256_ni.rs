//! Multi-buffer SHA-256 of one-block messages with the x86 SHA extensions (SHA-NI).
//!
//! One SHA-256 block is 32 dependent `sha256rnds2` steps; a single message leaves the SHA unit idle
//! between them (latency > reciprocal throughput). Compressing `N` independent blocks in one function lets
//! the scheduler interleave their round chains. Every message the relay hashes per proof (commit, commit ‖
//! window, fingerprint ‖ i) fits in one block, so the state always starts from the IV and no block chaining
//! is needed. Checked against `sha2` by the tests in `super::sha256`.

use std::arch::x86_64::*;

use super::sha256::{Block, IV, K};

/// Four rounds (one 4-word group `G`) for every lane. `G` is a literal so that every array index below is a
/// compile-time constant: the lanes' state and schedule then live in registers, not on the stack.
macro_rules! group {
    ($g:literal, $n:ident, $abef:ident, $cdgh:ident, $w:ident) => {{
        // SAFETY (of the caller): K4[$g] is 16 readable bytes.
        let k = unsafe { _mm_loadu_si128(K4[$g].as_ptr().cast()) };
        for l in 0..$n {
            let msg = if $g < 4 {
                $w[l][$g % 4]
            } else {
                // W[t..t+4] from W[t-16..t]: σ0 terms (msg1), the W[t-7] terms (alignr), σ1 terms (msg2).
                let (w0, w1, w2, w3) = ($w[l][$g % 4], $w[l][($g + 1) % 4], $w[l][($g + 2) % 4], $w[l][($g + 3) % 4]);
                let t = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
                let next = _mm_sha256msg2_epu32(t, w3);
                $w[l][$g % 4] = next;
                next
            };
            let wk = _mm_add_epi32(msg, k);
            $cdgh[l] = _mm_sha256rnds2_epu32($cdgh[l], $abef[l], wk);
            $abef[l] = _mm_sha256rnds2_epu32($abef[l], $cdgh[l], _mm_shuffle_epi32(wk, 0x0E));
        }
    }};
}

/// Round constants grouped by four, loaded as one vector per group.
static K4: [[u32; 4]; 16] = {
    let mut out = [[0u32; 4]; 16];
    let mut i = 0;
    while i < 64 {
        out[i / 4][i % 4] = K[i];
        i += 1;
    }
    out
};

/// Compresses `N` blocks from the IV: `out[l]` = the SHA-256 state words after `blocks[l]`.
///
/// # Safety
/// The CPU supports SHA, SSE2, SSSE3 and SSE4.1.
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
pub unsafe fn compress_iv<const N: usize>(blocks: &[Block; N], out: &mut [[u32; 8]; N]) {
    // Big-endian 32-bit words: byte shuffle within each lane.
    let bswap = _mm_set_epi64x(0x0C0D_0E0F_0809_0A0Bu64 as i64, 0x0405_0607_0001_0203u64 as i64);
    // The rounds instructions keep the state as (A, B, E, F) and (C, D, G, H), A in the highest lane.
    let abef_iv = _mm_set_epi32(IV[0] as i32, IV[1] as i32, IV[4] as i32, IV[5] as i32);
    let cdgh_iv = _mm_set_epi32(IV[2] as i32, IV[3] as i32, IV[6] as i32, IV[7] as i32);
    let mut abef = [abef_iv; N];
    let mut cdgh = [cdgh_iv; N];
    // Message schedule: a rolling window of four 4-word groups per lane.
    let mut w = [[_mm_setzero_si128(); 4]; N];
    for l in 0..N {
        for (j, wj) in w[l].iter_mut().enumerate() {
            // SAFETY: a block is 64 bytes; group j reads bytes 16j..16j+16 (unaligned load).
            *wj = _mm_shuffle_epi8(unsafe { _mm_loadu_si128(blocks[l].as_ptr().add(16 * j).cast()) }, bswap);
        }
    }
    group!(0, N, abef, cdgh, w);
    group!(1, N, abef, cdgh, w);
    group!(2, N, abef, cdgh, w);
    group!(3, N, abef, cdgh, w);
    group!(4, N, abef, cdgh, w);
    group!(5, N, abef, cdgh, w);
    group!(6, N, abef, cdgh, w);
    group!(7, N, abef, cdgh, w);
    group!(8, N, abef, cdgh, w);
    group!(9, N, abef, cdgh, w);
    group!(10, N, abef, cdgh, w);
    group!(11, N, abef, cdgh, w);
    group!(12, N, abef, cdgh, w);
    group!(13, N, abef, cdgh, w);
    group!(14, N, abef, cdgh, w);
    group!(15, N, abef, cdgh, w);
    for l in 0..N {
        let abef = _mm_add_epi32(abef[l], abef_iv);
        let cdgh = _mm_add_epi32(cdgh[l], cdgh_iv);
        // Back to (A, B, C, D) and (E, F, G, H) in memory order.
        let feba = _mm_shuffle_epi32(abef, 0x1B);
        let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
        let dcba = _mm_blend_epi16(feba, dchg, 0xF0);
        let hgef = _mm_alignr_epi8(dchg, feba, 8);
        // SAFETY: out[l] is 8 writable u32 = 32 bytes; two unaligned 16-byte stores.
        unsafe {
            _mm_storeu_si128(out[l].as_mut_ptr().cast(), dcba);
            _mm_storeu_si128(out[l].as_mut_ptr().add(4).cast(), hgef);
        }
    }
}
