//! Portable kernels: plain `u64` operations, the fallback on every CPU and the tail of the vector kernels.

/// ANDs words `from..words` of `rows` and reports the non-zero ones (see `super::and_rows`).
#[inline]
pub fn and_rows(rows: &[&[u64]], from: usize, words: usize, on_word: &mut impl FnMut(usize, u64)) {
    match rows {
        // k = 3 is the protocol default: a fixed three-way AND lets the compiler keep it branch-free.
        [a, b, c] => {
            for i in from..words {
                let w = a[i] & b[i] & c[i];
                if w != 0 {
                    on_word(i, w);
                }
            }
        }
        _ => {
            for i in from..words {
                let w = rows.iter().fold(!0u64, |acc, r| acc & r[i]);
                if w != 0 {
                    on_word(i, w);
                }
            }
        }
    }
}
