//! x86-64 AND-scan kernels: AVX2 (4 words per step) and AVX-512F (8 words per step).
//!
//! Each step loads one vector from every row, ANDs them, and only when the result is non-zero (rare: a
//! match or a false positive) spills it to report the words. Tails shorter than a vector use the portable
//! loop.

use std::arch::x86_64::*;

use super::portable;

/// AVX2 scan.
///
/// # Safety
/// The CPU supports AVX2 and every row holds at least `words` words.
#[target_feature(enable = "avx2")]
pub unsafe fn and_rows_avx2(rows: &[&[u64]], words: usize, on_word: &mut impl FnMut(usize, u64)) {
    const LANES: usize = 4;
    let mut i = 0;
    while i + LANES <= words {
        // SAFETY: i + 4 <= words <= every row's length, so each 32-byte unaligned load is in bounds.
        let mut acc = unsafe { _mm256_loadu_si256(rows[0].as_ptr().add(i).cast()) };
        for row in &rows[1..] {
            // SAFETY: as above.
            acc = _mm256_and_si256(acc, unsafe { _mm256_loadu_si256(row.as_ptr().add(i).cast()) });
        }
        if _mm256_testz_si256(acc, acc) == 0 {
            let mut lanes = [0u64; LANES];
            // SAFETY: `lanes` is 32 writable bytes.
            unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc) };
            for (j, &w) in lanes.iter().enumerate() {
                if w != 0 {
                    on_word(i + j, w);
                }
            }
        }
        i += LANES;
    }
    portable::and_rows(rows, i, words, on_word);
}

/// AVX-512F scan.
///
/// # Safety
/// The CPU supports AVX-512F and every row holds at least `words` words.
#[target_feature(enable = "avx512f")]
pub unsafe fn and_rows_avx512(rows: &[&[u64]], words: usize, on_word: &mut impl FnMut(usize, u64)) {
    const LANES: usize = 8;
    let mut i = 0;
    while i + LANES <= words {
        // SAFETY: i + 8 <= words <= every row's length, so each 64-byte unaligned load is in bounds.
        let mut acc = unsafe { _mm512_loadu_si512(rows[0].as_ptr().add(i).cast()) };
        for row in &rows[1..] {
            // SAFETY: as above.
            acc = _mm512_and_si512(acc, unsafe { _mm512_loadu_si512(row.as_ptr().add(i).cast()) });
        }
        let mut nonzero = _mm512_test_epi64_mask(acc, acc);
        if nonzero != 0 {
            let mut lanes = [0u64; LANES];
            // SAFETY: `lanes` is 64 writable bytes.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), acc) };
            while nonzero != 0 {
                let j = nonzero.trailing_zeros() as usize;
                on_word(i + j, lanes[j]);
                nonzero &= nonzero - 1;
            }
        }
        i += LANES;
    }
    portable::and_rows(rows, i, words, on_word);
}
