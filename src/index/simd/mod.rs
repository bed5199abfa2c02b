//! Data-parallel kernels of the hot path, chosen at runtime: the bit-sliced AND scan and batched SHA-256.
//!
//! ```text
//! Kernel::detect() ──once per index / hasher──▶ Avx512 | Avx2 (x86-64) | Neon (aarch64) | Portable
//! and_rows(kernel, k rows of ⌈S/64⌉ words) ──▶ on_word(i, AND of word i) for each non-zero word
//! sha256_one_block(blocks) ──SHA-NI, lanes interleaved (x86-64) | sha2::compress256 (elsewhere)──▶ states
//! ```
//! Every `unsafe` block of the crate's hot path lives under this module, each with a `// SAFETY:` note; the
//! safe wrappers here check CPU support (a cached atomic load) and slice bounds before calling in, so a
//! `Kernel` value can never make a caller execute an unsupported instruction.

#[cfg(target_arch = "aarch64")]
mod neon;
pub mod portable;
pub mod sha256;
#[cfg(target_arch = "x86_64")]
mod sha256_ni;
#[cfg(target_arch = "x86_64")]
mod x86;

/// An implementation of the AND-scan kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kernel {
    /// Plain `u64` operations; runs everywhere.
    Portable,
    /// 256-bit AVX2 (x86-64).
    Avx2,
    /// 512-bit AVX-512F (x86-64).
    Avx512,
    /// 128-bit NEON (aarch64, always present there).
    Neon,
}

impl Kernel {
    /// The fastest kernel this CPU supports.
    pub fn detect() -> Kernel {
        [Kernel::Avx512, Kernel::Avx2, Kernel::Neon].into_iter().find(|k| k.is_available()).unwrap_or(Kernel::Portable)
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)] // which arms are reachable depends on the target
            _ => false,
        }
    }

    /// Every kernel this CPU supports, portable first (benches and differential tests iterate over them).
    pub fn available() -> impl Iterator<Item = Kernel> {
        [Kernel::Portable, Kernel::Avx2, Kernel::Avx512, Kernel::Neon].into_iter().filter(|k| k.is_available())
    }

    /// A short lowercase name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
            Kernel::Neon => "neon",
        }
    }
}

/// Hints the CPU to bring the cache line holding `ptr` into the caches. Never faults, whatever `ptr` is
/// (a prefetch of an unmapped address is dropped), so it is safe for any pointer; a no-op off x86-64.
#[inline(always)]
pub fn prefetch_read(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 has no architectural effect besides caching; SSE is part of the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// Rows up to this many words are scanned inline with scalar code whatever the kernel.
pub const SCALAR_WORDS_MAX: usize = 4;

/// ANDs the `rows` (equal lengths) word by word and calls `on_word(i, bits)` for every word index `i` whose
/// AND is non-zero, in ascending order. An unavailable `kernel` falls back to the portable one.
#[inline]
pub fn and_rows(kernel: Kernel, rows: &[&[u64]], mut on_word: impl FnMut(usize, u64)) {
    let Some(first) = rows.first() else { return };
    let words = first.len();
    assert!(rows.iter().all(|r| r.len() == words), "rows of one index have equal lengths");
    // Up to 256 subscribers (4 words) a vector step would be all tail: the inline scalar loop is faster than
    // a call into a `target_feature` function that cannot be inlined here.
    if words <= SCALAR_WORDS_MAX {
        return portable::and_rows(rows, 0, words, &mut on_word);
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 if kernel.is_available() => {
            // SAFETY: AVX-512F is available (checked just above) and every row holds `words` words (asserted).
            unsafe { x86::and_rows_avx512(rows, words, &mut on_word) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if kernel.is_available() => {
            // SAFETY: AVX2 is available (checked just above) and every row holds `words` words (asserted).
            unsafe { x86::and_rows_avx2(rows, words, &mut on_word) }
        }
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon if kernel.is_available() => {
            // SAFETY: NEON is available (checked just above) and every row holds `words` words (asserted).
            unsafe { neon::and_rows_neon(rows, words, &mut on_word) }
        }
        _ => portable::and_rows(rows, 0, words, &mut on_word),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows with a known AND, scanned by every available kernel at lengths around the vector widths.
    #[test]
    fn every_kernel_finds_the_same_words() {
        for words in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 157] {
            let a: Vec<u64> = (0..words as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1).collect();
            let b: Vec<u64> = (0..words as u64).map(|i| if i % 3 == 0 { !0 } else { 0 }).collect();
            let c: Vec<u64> = (0..words as u64).map(|i| if i % 2 == 0 { 0xFF } else { !0 }).collect();
            let expected: Vec<(usize, u64)> =
                (0..words).map(|i| (i, a[i] & b[i] & c[i])).filter(|&(_, w)| w != 0).collect();
            for kernel in Kernel::available() {
                let mut got = Vec::new();
                and_rows(kernel, &[&a, &b, &c], |i, w| got.push((i, w)));
                assert_eq!(got, expected, "{kernel:?} at {words} words");
                let mut single = Vec::new();
                and_rows(kernel, &[&a], |i, w| single.push((i, w)));
                assert_eq!(single.len(), words, "{kernel:?}: a has no zero word");
            }
        }
    }

    #[test]
    fn detect_picks_an_available_kernel() {
        assert!(Kernel::detect().is_available());
        assert_eq!(Kernel::available().next(), Some(Kernel::Portable));
    }
}
