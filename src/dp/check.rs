//! Does a stream of observed per-bucket per-round dummy counts come from the configured mechanism?
//!
//! ```text
//! counts D_b,r observed on the wire (e.g. by the relay e2e test)
//!   ──sample mean, sample variance──▶ z-scores against E[D_b], Var[D_b] (exact pmf) ──▶ CountCheck
//! ```
//!
//! For `n` i.i.d. counts, the sample mean has standard error `σ/√n` and the sample variance has standard
//! error `√((μ₄ − σ⁴(n−3)/(n−1))/n)` (μ₄ the fourth central moment); with n ≥ `CHECK_SAMPLES_MIN` both are
//! close to normal, so `|z| ≤ z_max` is a test with false-alarm rate ≈ 2·(1 − Φ(z_max)) per statistic
//! (z_max = 5: ~6·10⁻⁷). This catches a wrong shift (the "μ ≈ 70" marketing figure is ~35 SE off at 64
//! counts), missing or much too narrow noise (variance 0, or the spread of a larger ε: the variance statistic
//! is weaker, since `D_b` has kurtosis ≈ 6, and needs a few hundred counts), and counts above the cap, which
//! the mechanism can never produce. It is a consistency check, not a proof: a subtly wrong sampler (say a
//! floating-point Laplace with the same mean and variance) passes it; the chi-square tests of `dp::laplace`
//! are the sampler's distribution test.
//!
//! Counts must be dummies only: subtract any real proofs the test sent to that bucket in that round.

use super::error::CheckError;
use super::mechanism::CoverMechanism;

/// Fewest counts accepted: below ~30 the normal approximation of the variance statistic is poor.
pub const CHECK_SAMPLES_MIN: usize = 30;
/// A tolerance that makes a false alarm negligible in a CI suite (two statistics, ~1.1·10⁻⁶ together).
pub const CHECK_Z_DEFAULT: f64 = 5.0;

/// The result of [`check_dummy_counts`]: every figure, so a failing test can print why.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct CountCheck {
    /// Counts checked.
    pub samples: usize,
    /// Observed mean.
    pub mean: f64,
    /// `E[D_b]` of the mechanism.
    pub mean_expected: f64,
    /// `(mean − E[D_b]) / (σ/√n)`.
    pub mean_z: f64,
    /// Observed (unbiased) sample variance.
    pub variance: f64,
    /// `Var[D_b]` of the mechanism.
    pub variance_expected: f64,
    /// `(variance − Var[D_b]) / SE(variance)`.
    pub variance_z: f64,
    /// Counts above the mechanism's cap (each one alone proves a mismatch).
    pub above_cap: usize,
    /// The tolerance used.
    pub z_max: f64,
}

impl CountCheck {
    /// Whether the counts are consistent with the mechanism: both |z| ≤ z_max and no count above the cap.
    pub fn is_consistent(&self) -> bool {
        self.mean_z.abs() <= self.z_max && self.variance_z.abs() <= self.z_max && self.above_cap == 0
    }
}

/// Checks observed dummy counts (one per bucket per round) against `mechanism` at tolerance `z_max`.
pub fn check_dummy_counts(mechanism: &CoverMechanism, counts: &[u64], z_max: f64) -> Result<CountCheck, CheckError> {
    if !(z_max.is_finite() && z_max > 0.0) {
        return Err(CheckError::BadTolerance(z_max));
    }
    if counts.len() < CHECK_SAMPLES_MIN {
        return Err(CheckError::TooFewSamples { got: counts.len(), min: CHECK_SAMPLES_MIN });
    }
    let n = counts.len() as f64;
    let mean = counts.iter().map(|&c| c as f64).sum::<f64>() / n;
    let variance = counts.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let moments = mechanism.moments();
    let sigma2 = moments.variance;
    let mean_z = (mean - moments.mean) / (sigma2 / n).sqrt();
    let var_of_variance = (moments.fourth_central - sigma2 * sigma2 * (n - 3.0) / (n - 1.0)) / n;
    let variance_z = (variance - sigma2) / var_of_variance.sqrt();
    let cap = mechanism.dummies_per_bucket_max() as u64;
    let above_cap = counts.iter().filter(|&&c| c > cap).count();
    Ok(CountCheck {
        samples: counts.len(),
        mean,
        mean_expected: moments.mean,
        mean_z,
        variance,
        variance_expected: sigma2,
        variance_z,
        above_cap,
        z_max,
    })
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    fn draws(m: &CoverMechanism, n: usize, seed: u64) -> Vec<u64> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        (0..n).map(|_| m.sample_dummies(&mut rng).count as u64).collect()
    }

    #[test]
    fn counts_from_the_mechanism_pass() {
        let m = CoverMechanism::from_f64(0.1, 1e-6).unwrap();
        // 3 rounds × 64 buckets, as an e2e test would see; and a larger sample.
        for (n, seed) in [(192, 1), (5_000, 2)] {
            let check = check_dummy_counts(&m, &draws(&m, n, seed), CHECK_Z_DEFAULT).unwrap();
            assert!(check.is_consistent(), "{check:?}");
            assert!((check.mean_expected - 132.0).abs() < 1e-4);
            assert!((check.variance_expected - 199.833).abs() < 1e-2);
        }
    }

    #[test]
    fn wrong_mechanisms_fail() {
        let m = CoverMechanism::from_f64(0.1, 1e-6).unwrap();
        // The marketing figure: μ ≈ 70 per bucket.
        let marketing: Vec<u64> = draws(&m, 192, 3).iter().map(|c| c.saturating_sub(62)).collect();
        let check = check_dummy_counts(&m, &marketing, CHECK_Z_DEFAULT).unwrap();
        assert!(!check.is_consistent() && check.mean_z < -55.0, "{check:?}");
        // No noise at all: every bucket exactly t (10 rounds × 64 buckets: the variance test needs more data
        // than the mean test, D_b being heavy-tailed with kurtosis ≈ 6).
        let constant = vec![132u64; 640];
        let check = check_dummy_counts(&m, &constant, CHECK_Z_DEFAULT).unwrap();
        assert!(!check.is_consistent() && check.variance_z < -5.0, "{check:?}");
        // Noise at ε = 0.25 (too little spread for ε = 0.1) with the right mean.
        let m25 = CoverMechanism::from_f64(0.25, 1e-6).unwrap();
        let narrow: Vec<u64> = draws(&m25, 640, 4).iter().map(|c| c + 132 - 53).collect();
        let check = check_dummy_counts(&m, &narrow, CHECK_Z_DEFAULT).unwrap();
        assert!(!check.is_consistent() && check.variance_z < -5.0, "{check:?}");
        // One impossible count.
        let mut over = draws(&m, 192, 5);
        over[7] = 571;
        assert_eq!(check_dummy_counts(&m, &over, CHECK_Z_DEFAULT).unwrap().above_cap, 1);
    }

    #[test]
    fn unusable_input_is_an_error() {
        let m = CoverMechanism::from_f64(0.1, 1e-6).unwrap();
        assert_eq!(check_dummy_counts(&m, &[132; 29], 5.0), Err(CheckError::TooFewSamples { got: 29, min: 30 }));
        assert_eq!(check_dummy_counts(&m, &[132; 40], 0.0), Err(CheckError::BadTolerance(0.0)));
    }
}
