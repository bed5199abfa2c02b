//! aarch64 AND-scan kernel: NEON, 2 words per step (NEON is part of the aarch64 baseline).

use std::arch::aarch64::*;

use super::portable;

/// NEON scan.
///
/// # Safety
/// The CPU supports NEON and every row holds at least `words` words.
#[target_feature(enable = "neon")]
pub unsafe fn and_rows_neon(rows: &[&[u64]], words: usize, on_word: &mut impl FnMut(usize, u64)) {
    const LANES: usize = 2;
    let mut i = 0;
    while i + LANES <= words {
        // SAFETY: i + 2 <= words <= every row's length, so each 16-byte load is in bounds.
        let mut acc = unsafe { vld1q_u64(rows[0].as_ptr().add(i)) };
        for row in &rows[1..] {
            // SAFETY: as above.
            acc = vandq_u64(acc, unsafe { vld1q_u64(row.as_ptr().add(i)) });
        }
        if vmaxvq_u32(vreinterpretq_u32_u64(acc)) != 0 {
            let (lo, hi) = (vgetq_lane_u64::<0>(acc), vgetq_lane_u64::<1>(acc));
            if lo != 0 {
                on_word(i, lo);
            }
            if hi != 0 {
                on_word(i + 1, hi);
            }
        }
        i += LANES;
    }
    portable::and_rows(rows, i, words, on_word);
}
