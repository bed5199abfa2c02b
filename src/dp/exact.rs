//! Exact integer randomness: uniform integers, Bernoulli(n/d) and Bernoulli(exp(−γ)) for rational γ.
//!
//! ```text
//! CSPRNG u64 words ──BitSource (bit pool)──▶ uniform_below(d) ──▶ Bernoulli(n/d)
//!                                                  ──(K-loop)──▶ Bernoulli(exp(−n/d)) ──▶ crate::dp::laplace
//! ```
//!
//! Everything here is integer arithmetic on the CSPRNG's output: no floating point, so no rounding to exploit
//! (Mironov 2012 recovers the noise of a floating-point Laplace from the low bits of its output). The
//! constructions are those of Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential Privacy"
//! (NeurIPS 2020), Algorithm 1.
//!
//! Most draws the sampler makes are tiny (a fair sign bit, Bernoulli(1/K) for K = 2, 3, …, a uniform digit in
//! `[0, 10)` at ε = 0.1), so [`BitSource`] hands out only the bits each needs from a 64-bit pool: ~60 bits per
//! discrete Laplace sample at ε = 0.1 instead of ~8 32-bit words. Bits are never reused; bits left over when the
//! pool is refilled are dropped, which keeps every draw independent.
//!
//! The loops are rejection loops: they end with probability 1 and their iteration counts have geometric (or
//! faster) tails. They carry no iteration cap on purpose: any cap changes the output distribution, which is the
//! one thing this module must not do. Expected iterations are stated at each loop.

use rand_core::{CryptoRng, RngCore};

/// Uniform integer in `[0, n)`, exactly (Lemire's multiply-and-reject, 2019), for `n ≥ 1`, straight from the
/// generator (used for emission times, where a draw is needed per dummy and no pool is kept).
///
/// One 32-bit word when `n` fits in 32 bits, otherwise 64-bit words. Expected words per call < 2.
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

/// Largest number of bits [`BitSource::uniform_below`] takes from the pool per try; wider ranges go to Lemire.
const POOL_DRAW_BITS_MAX: u32 = 32;
/// Bits drawn beyond `⌈log₂ n⌉` for a uniform integer below `n`: the multiply-and-reject retry probability is
/// below `2^-margin`, which keeps the retry branch predictable (a plain `⌈log₂ n⌉`-bit rejection retries up to
/// half the time, and the mispredictions cost more than the 8 extra bits).
const POOL_DRAW_MARGIN_BITS: u32 = 8;

/// A pool of random bits over a CSPRNG: refilled 64 bits at a time, spent a few bits per draw.
pub struct BitSource<'r, R: RngCore + CryptoRng + ?Sized> {
    /// The generator every bit comes from.
    rng: &'r mut R,
    /// Unspent bits, lowest first.
    pool: u64,
    /// How many low bits of `pool` are unspent.
    available: u32,
}

impl<'r, R: RngCore + CryptoRng + ?Sized> BitSource<'r, R> {
    /// An empty pool over `rng` (the first draw refills it).
    #[inline]
    pub fn new(rng: &'r mut R) -> Self {
        Self { rng, pool: 0, available: 0 }
    }

    /// `k` uniform bits, `1 ≤ k ≤ 32`.
    #[inline]
    fn take(&mut self, k: u32) -> u64 {
        debug_assert!((1..=POOL_DRAW_BITS_MAX).contains(&k));
        if self.available < k {
            // The leftover bits are dropped, never reused: draws stay independent.
            self.pool = self.rng.next_u64();
            self.available = 64;
        }
        let bits = self.pool & ((1u64 << k) - 1);
        self.pool >>= k;
        self.available -= k;
        bits
    }

    /// One fair bit.
    #[inline]
    pub fn fair_bit(&mut self) -> bool {
        self.take(1) == 1
    }

    /// Uniform integer in `[0, n)`, exactly, for `n ≥ 1`: Lemire's multiply-and-reject on a `b`-bit pool draw,
    /// `b = ⌈log₂ n⌉ + POOL_DRAW_MARGIN_BITS` (≤ 32), so a retry happens with probability < 2⁻⁸ and the branch
    /// stays predictable; ranges wider than 2²⁴ fall back to Lemire on 32/64-bit words. Draws nothing for `n == 1`.
    #[inline]
    pub fn uniform_below(&mut self, n: u64) -> u64 {
        debug_assert!(n >= 1);
        if n <= 1 {
            return 0;
        }
        let b = u64::BITS - (n - 1).leading_zeros() + POOL_DRAW_MARGIN_BITS;
        if b > POOL_DRAW_BITS_MAX {
            return uniform_below(self.rng, n);
        }
        let mask = (1u64 << b) - 1;
        // x < 2^b ≤ 2³² and n < 2²⁴: the product fits in a u64.
        let mut product = self.take(b) * n;
        let mut low = product & mask;
        if low < n {
            // Reject the `2^b mod n` low values that would over-represent some outputs.
            let threshold = (1u64 << b) % n;
            while low < threshold {
                product = self.take(b) * n;
                low = product & mask;
            }
        }
        product >> b
    }

    /// Bernoulli(`num / den`) exactly, for `0 ≤ num ≤ den`, `den ≥ 1`. Draws nothing when the outcome is
    /// certain (`num == 0` or `num == den`, e.g. the K = 1 step of every Bernoulli(e^{−1})).
    #[inline]
    pub fn bernoulli_ratio(&mut self, num: u64, den: u64) -> bool {
        debug_assert!(num <= den && den >= 1);
        if num == 0 || num >= den {
            return num != 0;
        }
        self.uniform_below(den) < num
    }

    /// Bernoulli(exp(−γ)) for `γ = num / den ∈ [0, 1]` (CKS 2020, Algorithm 1, first case).
    ///
    /// Draw `A_K ~ Bernoulli(γ/K)` for `K = 1, 2, …` until the first `A_K = 0`; return whether that `K` is odd.
    /// `P(K odd) = Σ_j (−1)^j γ^j / j! = e^{−γ}`. Expected draws `e^γ ≤ e`.
    #[inline]
    pub fn bernoulli_exp_neg_unit(&mut self, num: u64, den: u64) -> bool {
        debug_assert!(num <= den && den >= 1);
        let mut k: u64 = 1;
        // γ/K = num / (den·K). `den·K` saturates only past K ≈ 2⁴⁴ for den ≤ 10⁶, an event of probability
        // 1/(2⁴⁴)!; saturating keeps the code panic-free without affecting any reachable outcome.
        while self.bernoulli_ratio(num, den.saturating_mul(k)) {
            k += 1;
        }
        k % 2 == 1
    }

    /// Bernoulli(exp(−γ)) for any rational `γ = num / den ≥ 0` (CKS 2020, Algorithm 1).
    ///
    /// `e^{−γ} = (e^{−1})^{⌊γ⌋} · e^{−(γ − ⌊γ⌋)}`: ⌊γ⌋ independent Bernoulli(e^{−1}) trials, stopping at the first
    /// failure, then one Bernoulli(e^{−frac}). Expected draws ≤ e · (1 + ⌊γ⌋).
    pub fn bernoulli_exp_neg(&mut self, num: u64, den: u64) -> bool {
        debug_assert!(den >= 1);
        for _ in 0..num / den {
            if !self.bernoulli_exp_neg_unit(1, 1) {
                return false;
            }
        }
        self.bernoulli_exp_neg_unit(num % den, den)
    }
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
            let mut low_half = [0u64; 2];
            for _ in 0..n / 10 {
                let x = uniform_below(&mut rng, bound);
                let y = BitSource::new(&mut rng).uniform_below(bound);
                assert!(x < bound && y < bound);
                low_half[0] += u64::from(x < bound / 2);
                low_half[1] += u64::from(y < bound / 2);
            }
            for hits in low_half {
                assert_binomial(hits, n / 10, (bound / 2) as f64 / bound as f64, &format!("bound {bound}"));
            }
        }
        // Cell-level check for small bounds, through one long-lived pool (exercises refills mid-stream).
        let mut bits = BitSource::new(&mut rng);
        for bound in [2u64, 3, 7, 10, 33] {
            let mut counts = vec![0u64; bound as usize];
            for _ in 0..n {
                counts[bits.uniform_below(bound) as usize] += 1;
            }
            for c in counts {
                assert_binomial(c, n, 1.0 / bound as f64, &format!("pool uniform_below({bound})"));
            }
        }
        let mut counts = [0u64; 7];
        for _ in 0..n {
            counts[uniform_below(&mut rng, 7) as usize] += 1;
        }
        for c in counts {
            assert_binomial(c, n, 1.0 / 7.0, "uniform_below(7)");
        }
    }

    #[test]
    fn pool_spends_only_the_bits_it_needs() {
        // 64 fair bits come from exactly one u64 of the generator, lowest bit first.
        let mut reference = ChaCha20Rng::seed_from_u64(3);
        let word = reference.next_u64();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut bits = BitSource::new(&mut rng);
        let drawn: u64 = (0..64).map(|i| (bits.fair_bit() as u64) << i).sum();
        assert_eq!(drawn, word);
        // The 65th bit refills from the next word.
        assert_eq!(bits.fair_bit(), reference.next_u64() & 1 == 1);
    }

    #[test]
    fn bernoulli_exp_neg_matches_exp() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let mut bits = BitSource::new(&mut rng);
        let n = 40_000u64;
        for (num, den) in [(0u64, 1u64), (1, 10), (1, 2), (1, 1), (7, 3), (5, 2), (3, 1)] {
            let hits = (0..n).filter(|_| bits.bernoulli_exp_neg(num, den)).count() as u64;
            let p = (-(num as f64) / den as f64).exp();
            assert_binomial(hits, n, p, &format!("exp(-{num}/{den})"));
        }
        assert!((0..100).all(|_| bits.bernoulli_exp_neg(0, 5)), "exp(0) = 1");
        assert!((0..100).all(|_| !bits.bernoulli_ratio(0, 5)), "ratio 0 is never true");
        assert!((0..100).all(|_| bits.bernoulli_ratio(5, 5)), "ratio 1 is always true");
        let hits = (0..n).filter(|_| bits.bernoulli_ratio(3, 7)).count() as u64;
        assert_binomial(hits, n, 3.0 / 7.0, "ratio 3/7");
    }
}
