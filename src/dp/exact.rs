//! Exact integer randomness: uniform integers, Bernoulli(n/d) and Bernoulli(exp(−γ)) for rational γ.
//!
//! ```text
//! CSPRNG words ──uniform_below(d)──▶ Bernoulli(n/d) ──(K-loop)──▶ Bernoulli(exp(−n/d)) ──▶ crate::dp::laplace
//! ```
//!
//! Everything here is integer arithmetic on the CSPRNG's output: no floating point, so no rounding to exploit
//! (Mironov 2012 recovers the noise of a floating-point Laplace from the low bits of its output). The
//! constructions are those of Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential Privacy"
//! (NeurIPS 2020), Algorithm 1, with Lemire's unbiased bounded integers (2019) underneath.
//!
//! The loops are rejection loops: they end with probability 1 and their iteration counts have geometric (or
//! faster) tails. They carry no iteration cap on purpose: any cap changes the output distribution, which is the
//! one thing this module must not do. Expected iterations are stated at each loop.

use rand_core::{CryptoRng, RngCore};

/// Uniform integer in `[0, n)`, exactly (Lemire's multiply-and-reject), for `n ≥ 1`.
///
/// Uses one 32-bit word when `n` fits in 32 bits (the common case: the sampler's denominators are ≤ 10⁶),
/// otherwise 64-bit words. Expected words per call < 2 (rejection probability < n / 2³² resp. n / 2⁶⁴).
#[inline]
pub fn uniform_below<R: RngCore + CryptoRng + ?Sized>(rng: &mut R, n: u64) -> u64 {
    debug_assert!(n >= 1);
    if n <= u32::MAX as u64 {
        uniform_below_u32(rng, n as u32) as u64
    } else {
        uniform_below_u64(rng, n)
    }
}

#[inline]
fn uniform_below_u32<R: RngCore + CryptoRng + ?Sized>(rng: &mut R, n: u32) -> u32 {
    let mut product = rng.next_u32() as u64 * n as u64;
    let mut low = product as u32;
    if low < n {
        // Reject the `2³² mod n` low values that would over-represent some outputs.
        let threshold = n.wrapping_neg() % n;
        while low < threshold {
            product = rng.next_u32() as u64 * n as u64;
            low = product as u32;
        }
    }
    (product >> 32) as u32
}

#[inline]
fn uniform_below_u64<R: RngCore + CryptoRng + ?Sized>(rng: &mut R, n: u64) -> u64 {
    let mut product = rng.next_u64() as u128 * n as u128;
    let mut low = product as u64;
    if low < n {
        let threshold = n.wrapping_neg() % n;
        while low < threshold {
            product = rng.next_u64() as u128 * n as u128;
            low = product as u64;
        }
    }
    (product >> 64) as u64
}

/// Bernoulli(`num / den`) exactly, for `0 ≤ num ≤ den`, `den ≥ 1`. Draws nothing when the outcome is certain
/// (`num == 0` or `num == den`): the first step of every Bernoulli(e^{−1}) is Bernoulli(1/1), and skipping
/// its word saves ~15 % of the sampler's randomness.
#[inline]
pub fn bernoulli_ratio<R: RngCore + CryptoRng + ?Sized>(rng: &mut R, num: u64, den: u64) -> bool {
    debug_assert!(num <= den && den >= 1);
    if num == 0 || num >= den {
        return num != 0;
    }
    uniform_below(rng, den) < num
}

/// One fair bit.
#[inline]
pub fn fair_bit<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> bool {
    rng.next_u32() & 1 == 1
}

/// Bernoulli(exp(−γ)) for `γ = num / den ∈ [0, 1]` (CKS 2020, Algorithm 1, first case).
///
/// Draw `A_K ~ Bernoulli(γ/K)` for `K = 1, 2, …` until the first `A_K = 0`; return whether that `K` is odd.
/// `P(K odd) = Σ_j (−1)^j γ^j / j! = e^{−γ}`. Expected draws `e^γ ≤ e`.
#[inline]
pub fn bernoulli_exp_neg_unit<R: RngCore + CryptoRng + ?Sized>(rng: &mut R, num: u64, den: u64) -> bool {
    debug_assert!(num <= den && den >= 1);
    let mut k: u64 = 1;
    // γ/K = num / (den·K). `den·K` saturates only past K ≈ 2⁴⁴ for den ≤ 10⁶, an event of probability
    // 1/(2⁴⁴)!; saturating keeps the code panic-free without affecting any reachable outcome.
    while bernoulli_ratio(rng, num, den.saturating_mul(k)) {
        k += 1;
    }
    k % 2 == 1
}

/// Bernoulli(exp(−γ)) for any rational `γ = num / den ≥ 0` (CKS 2020, Algorithm 1).
///
/// `e^{−γ} = (e^{−1})^{⌊γ⌋} · e^{−(γ − ⌊γ⌋)}`: ⌊γ⌋ independent Bernoulli(e^{−1}) trials, stopping at the first
/// failure, then one Bernoulli(e^{−frac}). Expected draws ≤ e · (1 + ⌊γ⌋).
pub fn bernoulli_exp_neg<R: RngCore + CryptoRng + ?Sized>(rng: &mut R, num: u64, den: u64) -> bool {
    debug_assert!(den >= 1);
    for _ in 0..num / den {
        if !bernoulli_exp_neg_unit(rng, 1, 1) {
            return false;
        }
    }
    bernoulli_exp_neg_unit(rng, num % den, den)
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    /// |observed − n·p| within 5 standard deviations of a binomial (false failure ≈ 6·10⁻⁷ per check; the
    /// seed is fixed, so the test is deterministic anyway).
    fn assert_binomial(hits: u64, n: u64, p: f64, what: &str) {
        let mean = n as f64 * p;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!((hits as f64 - mean).abs() <= 5.0 * sd.max(1.0), "{what}: {hits} hits of {n}, expected {mean:.1}");
    }

    #[test]
    fn uniform_below_is_uniform_and_in_range() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let n = 120_000u64;
        for bound in [1u64, 3, 7, 10, (1 << 32) + 5] {
            let mut low_half = 0u64;
            for _ in 0..n / 10 {
                let x = uniform_below(&mut rng, bound);
                assert!(x < bound);
                low_half += u64::from(x < bound / 2);
            }
            assert_binomial(low_half, n / 10, (bound / 2) as f64 / bound as f64, &format!("bound {bound}"));
        }
        // Bucket-level check for a small bound: each of 7 values ≈ 1/7.
        let mut counts = [0u64; 7];
        for _ in 0..n {
            counts[uniform_below(&mut rng, 7) as usize] += 1;
        }
        for c in counts {
            assert_binomial(c, n, 1.0 / 7.0, "uniform_below(7)");
        }
    }

    #[test]
    fn bernoulli_exp_neg_matches_exp() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let n = 40_000u64;
        for (num, den) in [(0u64, 1u64), (1, 10), (1, 2), (1, 1), (7, 3), (5, 2), (3, 1)] {
            let hits = (0..n).filter(|_| bernoulli_exp_neg(&mut rng, num, den)).count() as u64;
            let p = (-(num as f64) / den as f64).exp();
            assert_binomial(hits, n, p, &format!("exp(-{num}/{den})"));
        }
        assert!((0..100).all(|_| bernoulli_exp_neg(&mut rng, 0, 5)), "exp(0) = 1");
        assert!((0..100).all(|_| !bernoulli_ratio(&mut rng, 0, 5)), "ratio 0 is never true");
        assert!((0..100).all(|_| bernoulli_ratio(&mut rng, 5, 5)), "ratio 1 is always true");
    }
}
