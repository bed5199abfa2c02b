//! The exact discrete Laplace (two-sided geometric) sampler: `P(Z = z) = (1−a)/(1+a) · a^{|z|}`, `a = e^{−ε}`.
//!
//! ```text
//! ε = num/den ──▶ loop { U ~ Unif[0, den)                          (fractional part of X, in units of 1/den)
//!                        accept with Bernoulli(exp(−U/den))      else restart
//!                        V ~ Geometric(1 − e^{−1})               (count of Bernoulli(e^{−1}) successes)
//!                        X = U + den·V                           (X ~ Geometric(1 − e^{−1/den}))
//!                        Y = ⌊X / num⌋                            (Y ~ Geometric(1 − e^{−num/den}))
//!                        B ~ Bernoulli(1/2)
//!                        if B and Y = 0: restart                 (else −0 and +0 would double-count zero)
//!                        return (1 − 2B)·Y }
//! ```
//!
//! This is Algorithm 2 of Canonne, Kamath and Steinke (2020) with scale `den/num = 1/ε`, built on the exact
//! Bernoulli samplers of `crate::dp::exact`. Integers only, every random bit from the caller's CSPRNG.
//!
//! Expected cost at ε = 0.1 (`1/10`): ≈ 1.5 passes of the first two steps (acceptance `E[e^{−U/10}] ≈ 0.66`),
//! ≈ 1.6 Bernoulli(e^{−1}) trials of ≈ 1.7 small draws each, one sign bit, sign rejection ≈ 2.5 %: about 60
//! random bits per sample, taken from a 64-bit pool (`crate::dp::exact::BitSource`): one or two generator words. The loop is uncapped for exactness (see `crate::dp::exact`); each pass succeeds with
//! probability ≥ 0.3 for every ε on the grid, so the tail of the pass count is below 0.7ⁿ.

use rand_core::{CryptoRng, RngCore};

use super::epsilon::Epsilon;
use super::exact::BitSource;

/// A discrete Laplace distribution with parameter `a = e^{−ε}`, ε rational; sampled exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscreteLaplace {
    /// ε = `num / den` in lowest terms (`s` and `t` of CKS Algorithm 2 are `num` and `den`).
    epsilon: Epsilon,
}

impl DiscreteLaplace {
    /// The distribution with privacy parameter ε (scale `1/ε`).
    pub fn new(epsilon: Epsilon) -> Self {
        Self { epsilon }
    }

    /// Its ε.
    pub fn epsilon(&self) -> Epsilon {
        self.epsilon
    }

    /// One exact sample.
    #[inline]
    pub fn sample<R: RngCore + CryptoRng + ?Sized>(&self, rng: &mut R) -> i64 {
        let num = self.epsilon.num() as u64;
        let den = self.epsilon.den() as u64;
        let mut bits = BitSource::new(rng);
        loop {
            let u = bits.uniform_below(den);
            if !bits.bernoulli_exp_neg_unit(u, den) {
                continue;
            }
            let mut v: u64 = 0;
            while bits.bernoulli_exp_neg_unit(1, 1) {
                v += 1;
            }
            // den ≤ 10⁶ and v is geometric with mean 0.58: no overflow is reachable (v would need ~2⁴⁴ successes).
            let x = u + den.saturating_mul(v);
            // ε = 1/den is the common case (0.1, 0.25, 0.5, 1): skip a 64-bit division (~40 cycles).
            let y = if num == 1 { x } else { x / num } as i64;
            let negative = bits.fair_bit();
            if negative && y == 0 {
                continue;
            }
            return if negative { -y } else { y };
        }
    }

    /// `ln P(Z = z)`, in f64 (for analysis and reporting only; never used to sample).
    pub fn ln_pmf(&self, z: i64) -> f64 {
        let eps = self.epsilon.as_f64();
        // (1 − a)/(1 + a) with a = e^{−ε}; −expm1(−ε) keeps precision for small ε.
        let norm = (-(-eps).exp_m1()).ln() - (-eps).exp().ln_1p();
        norm - eps * z.unsigned_abs() as f64
    }

    /// `P(Z ≤ −k) = P(Z ≥ k) = a^k / (1 + a)` for `k ≥ 0`, in log space.
    pub fn ln_tail(&self, k: u64) -> f64 {
        let eps = self.epsilon.as_f64();
        -eps * k as f64 - (-eps).exp().ln_1p()
    }

    /// Variance `2a / (1 − a)²`.
    pub fn variance(&self) -> f64 {
        let eps = self.epsilon.as_f64();
        let a = (-eps).exp();
        let one_minus_a = -(-eps).exp_m1();
        2.0 * a / (one_minus_a * one_minus_a)
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::dp::stats::chi_square_upper_quantile;

    /// Chi-square goodness of fit of `n` samples against the pmf: one cell per z in `[-half, half]`, the two tails
    /// pooled. Returns (statistic, degrees of freedom).
    fn chi_square(eps: f64, n: u64, seed: u64) -> (f64, usize) {
        let lap = DiscreteLaplace::new(Epsilon::from_f64(eps).unwrap());
        // Cells out to where the expected count drops to ~20 per cell (keeps every expected count ≥ 5).
        let half = ((n as f64 * (1.0 - (-eps).exp()) / 20.0).ln() / eps).floor().max(1.0) as i64;
        let mut cells = vec![0u64; (2 * half + 3) as usize];
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for _ in 0..n {
            let z = lap.sample(&mut rng);
            let cell = if z < -half {
                0
            } else if z > half {
                2 * half + 2
            } else {
                z + half + 1
            };
            cells[cell as usize] += 1;
        }
        let tail = lap.ln_tail(half as u64 + 1).exp();
        let mut stat = 0.0;
        for (i, &observed) in cells.iter().enumerate() {
            let p = if i == 0 || i == cells.len() - 1 { tail } else { lap.ln_pmf(i as i64 - half - 1).exp() };
            let expected = p * n as f64;
            stat += (observed as f64 - expected).powi(2) / expected;
        }
        (stat, cells.len() - 1)
    }

    #[test]
    fn histogram_matches_pmf_by_chi_square() {
        // Fixed seeds; the 0.999 quantile of χ²(df) bounds the statistic for a correct sampler.
        for (eps, n, seed) in
            [(0.1, 200_000, 1), (0.25, 100_000, 2), (1.0, 100_000, 3), (2.675, 100_000, 4), (8.0, 50_000, 5)]
        {
            let (stat, df) = chi_square(eps, n, seed);
            let limit = chi_square_upper_quantile(df, 0.999);
            assert!(stat < limit, "ε = {eps}: χ² = {stat:.1} over {df} df, limit {limit:.1}");
        }
    }

    /// The full-size run: `cargo test --release --lib dp::laplace -- --ignored --nocapture` (~10 s).
    #[test]
    #[ignore = "large n; run with: cargo test --release --lib dp::laplace -- --ignored --nocapture"]
    fn chi_square_large() {
        for (eps, seed) in [(0.1, 10), (0.5, 11), (4.0, 12)] {
            let (stat, df) = chi_square(eps, 20_000_000, seed);
            let limit = chi_square_upper_quantile(df, 0.999);
            println!("ε = {eps}: χ² = {stat:.1} over {df} df (0.999 quantile {limit:.1})");
            assert!(stat < limit, "ε = {eps}: χ² = {stat:.1} over {df} df, limit {limit:.1}");
        }
    }

    #[test]
    fn moments_and_symmetry_at_eps_0_1() {
        let lap = DiscreteLaplace::new(Epsilon::from_f64(0.1).unwrap());
        let mut rng = ChaCha20Rng::seed_from_u64(99);
        let n = 100_000;
        let (mut sum, mut sum_sq, mut zeros, mut positives) = (0i64, 0f64, 0u64, 0u64);
        for _ in 0..n {
            let z = lap.sample(&mut rng);
            sum += z;
            sum_sq += (z * z) as f64;
            zeros += u64::from(z == 0);
            positives += u64::from(z > 0);
        }
        let var = lap.variance();
        assert!((var - 199.833).abs() < 0.001, "analytic variance {var}");
        // Mean 0 within 5 standard errors; variance within 3 %; P(0) = (1−a)/(1+a) = 0.04996.
        assert!((sum as f64 / n as f64).abs() < 5.0 * (var / n as f64).sqrt(), "mean {}", sum as f64 / n as f64);
        assert!((sum_sq / n as f64 / var - 1.0).abs() < 0.03, "variance {}", sum_sq / n as f64);
        assert!((zeros as f64 / n as f64 - 0.04996).abs() < 0.004, "P(0) {}", zeros as f64 / n as f64);
        assert!((positives as f64 / n as f64 - 0.47502).abs() < 0.008, "P(>0) {}", positives as f64 / n as f64);
    }
}
