//! The cover-traffic mechanism: per bucket per round, `D_b = min(max(0, t + Z), cap)` dummy proofs.
//!
//! ```text
//! (ε, δ) ──validate──▶ CoverMechanism { t = min{t : a^t/(1+a) ≤ δ}, cap = t + k_hi, DiscreteLaplace(ε) }
//!                        │ sample_dummies(rng) ─▶ D_b            (crate::dp::schedule, crate::sim)
//!                        └ t, δ achieved, E[D_b], moments, pmf  (dp plan, sims, crate::dp::check)
//! ```
//!
//! Why it is (ε, δ)-DP (docs/FOUNDATIONS.md §4): an observer sees `c + D_b` where one delivery changes `c` by 1. For
//! outputs where neither world is clamped, the ratio of probabilities is `a^{±1} = e^{∓ε}`. At the lower clamp
//! (`D_b = 0`, probability `P(Z ≤ −t) = a^t/(1+a)`) and at the upper cap (`D_b = cap`, probability
//! `P(Z ≥ cap − t) = a^{cap−t}/(1+a)`) one world has mass the other lacks; the hockey-stick divergence is at
//! most the sum of those two masses, which [`CoverMechanism::delta_achieved`] reports. `t` is the smallest
//! shift whose lower tail is ≤ δ: t(0.1, 10⁻⁶) = 132 (the continuous formula gives 131.2 and under-shifts).
//!
//! The cap bounds the schedule's memory. It sits where the upper tail is `≤ 2⁻⁶⁴` (`cap = 570` at ε = 0.1):
//! at 64 buckets and 8,640 rounds a day that is one clamp in ~10¹¹ years; when it happens it is counted.
//!
//! `t`, the tails and the moments are computed in f64 from ε as a rational. They are public parameters, not
//! secrets: float error there can move `t` only when `ln(1/(δ(1+a)))/ε` is within ~10⁻¹² of an integer, and
//! `t` is re-checked against δ on both sides to err towards the larger shift.

use rand_core::{CryptoRng, RngCore};

use super::epsilon::Epsilon;
use super::error::CoverConfigError;
use super::laplace::DiscreteLaplace;

/// Largest per-bucket per-round cap accepted. Bounds one round's schedule at `cap × owned buckets` slots of
/// 16 B (64 buckets: 64 MiB at this limit; ~0.6 MiB at ε = 0.1). ε = 0.001, δ = 10⁻⁶ needs 56,792.
pub const DUMMIES_PER_BUCKET_CAP_MAX: u32 = 65_536;
/// The upper clamp's probability per bucket per round is at most `2^-UPPER_TAIL_BITS`.
pub const UPPER_TAIL_BITS: u32 = 64;

/// One bucket-round's draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DummyDraw {
    /// Number of dummies to emit, `0 ..= cap`.
    pub count: u32,
    /// Whether `t + Z` exceeded the cap (probability ≤ 2⁻⁶⁴; counted in metrics, never expected).
    pub clamped: bool,
}

/// Mean, variance and fourth central moment of `D_b`, from the exact pmf (for the count check).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CountMoments {
    /// `E[D_b]`.
    pub mean: f64,
    /// `Var[D_b]`.
    pub variance: f64,
    /// `E[(D_b − mean)⁴]`.
    pub fourth_central: f64,
}

/// A validated cover-traffic mechanism. Cheap to copy; share one per relay (each shard has its own RNG).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CoverMechanism {
    /// The noise distribution; its ε is the ε actually used.
    laplace: DiscreteLaplace,
    /// δ asked for.
    delta_target: f64,
    /// The shift `t`.
    shift_t: u32,
    /// Largest `D_b` ever emitted.
    cap: u32,
}

impl CoverMechanism {
    /// Validates δ ∈ (0, 1) and computes `t` and the cap for an exact ε.
    pub fn new(epsilon: Epsilon, delta: f64) -> Result<Self, CoverConfigError> {
        if !(delta > 0.0 && delta < 1.0) {
            return Err(CoverConfigError::DeltaOutOfRange(delta));
        }
        let laplace = DiscreteLaplace::new(epsilon);
        let eps = epsilon.as_f64();
        let ln_delta = delta.ln();
        // Smallest t ≥ 0 with ln(a^t/(1+a)) = −εt − ln(1+a) ≤ ln δ.
        let ln_1pa = (-eps).exp().ln_1p();
        let lower_ok = |t: u64| -eps * t as f64 - ln_1pa <= ln_delta;
        let mut t = ((-ln_delta - ln_1pa) / eps).ceil().max(0.0) as u64;
        while !lower_ok(t) {
            t += 1;
        }
        while t > 0 && lower_ok(t - 1) {
            t -= 1;
        }
        // Smallest k with a^k/(1+a) ≤ 2^-64, k ≥ 1.
        let ln_upper = -(UPPER_TAIL_BITS as f64) * std::f64::consts::LN_2;
        let upper_ok = |k: u64| -eps * k as f64 - ln_1pa <= ln_upper;
        let mut k_hi = ((-ln_upper - ln_1pa) / eps).ceil().max(1.0) as u64;
        while !upper_ok(k_hi) {
            k_hi += 1;
        }
        while k_hi > 1 && upper_ok(k_hi - 1) {
            k_hi -= 1;
        }
        let cap = t + k_hi;
        if cap > DUMMIES_PER_BUCKET_CAP_MAX as u64 {
            return Err(CoverConfigError::TooManyDummies { cap });
        }
        Ok(Self { laplace, delta_target: delta, shift_t: t as u32, cap: cap as u32 })
    }

    /// [`CoverMechanism::new`] from the f64 values a command line gives (ε rounding: [`Epsilon::from_f64`]).
    pub fn from_f64(epsilon: f64, delta: f64) -> Result<Self, CoverConfigError> {
        Self::new(Epsilon::from_f64(epsilon)?, delta)
    }

    /// One bucket-round: `min(max(0, t + Z), cap)` with `Z` from the exact sampler. This is the only function
    /// that turns randomness into dummy counts; the relay's schedule and the simulators both call it.
    #[inline]
    pub fn sample_dummies<R: RngCore + CryptoRng + ?Sized>(&self, rng: &mut R) -> DummyDraw {
        let shifted = self.shift_t as i64 + self.laplace.sample(rng);
        if shifted > self.cap as i64 {
            return DummyDraw { count: self.cap, clamped: true };
        }
        // 0 ≤ max(0, shifted) ≤ cap ≤ DUMMIES_PER_BUCKET_CAP_MAX: fits in u32.
        DummyDraw { count: shifted.max(0) as u32, clamped: false }
    }

    /// The ε actually used (exact rational).
    pub fn epsilon(&self) -> Epsilon {
        self.laplace.epsilon()
    }

    /// The δ asked for.
    pub fn delta_target(&self) -> f64 {
        self.delta_target
    }

    /// The shift `t`.
    pub fn shift_t(&self) -> u32 {
        self.shift_t
    }

    /// Largest `D_b` the mechanism emits (bounds the schedule's memory).
    pub fn dummies_per_bucket_max(&self) -> u32 {
        self.cap
    }

    /// The noise distribution.
    pub fn laplace(&self) -> &DiscreteLaplace {
        &self.laplace
    }

    /// `P(D_b = 0) = P(Z ≤ −t) = a^t/(1+a)` (the lower clamp's δ contribution).
    pub fn delta_lower_tail(&self) -> f64 {
        self.ln_lower_tail().exp()
    }

    /// `P(D_b = cap) = P(Z ≥ cap − t) = a^{cap−t}/(1+a)` (≤ 2⁻⁶⁴).
    pub fn delta_upper_tail(&self) -> f64 {
        self.ln_upper_tail().exp()
    }

    /// The δ this mechanism achieves: lower plus upper clamp mass (≤ `delta_target`; e.g. 9.7154·10⁻⁷ for
    /// ε = 0.1, δ = 10⁻⁶).
    pub fn delta_achieved(&self) -> f64 {
        self.delta_lower_tail() + self.delta_upper_tail()
    }

    fn ln_lower_tail(&self) -> f64 {
        // P(Z ≤ −t) = a^t/(1+a), also at t = 0 (P(Z ≤ 0) = 1/(1+a)).
        self.laplace.ln_tail(self.shift_t as u64)
    }

    fn ln_upper_tail(&self) -> f64 {
        self.laplace.ln_tail((self.cap - self.shift_t) as u64)
    }

    /// `ln P(D_b = j)` from the exact pmf (−∞ outside `0 ..= cap`).
    pub fn ln_pmf(&self, j: i64) -> f64 {
        if j < 0 || j > self.cap as i64 {
            return f64::NEG_INFINITY;
        }
        if j == 0 {
            return self.ln_lower_tail();
        }
        if j == self.cap as i64 {
            return self.ln_upper_tail();
        }
        self.laplace.ln_pmf(j - self.shift_t as i64)
    }

    /// Mean, variance and fourth central moment of `D_b`, summed over the exact pmf (`cap + 1` terms).
    pub fn moments(&self) -> CountMoments {
        let pmf: Vec<f64> = (0..=self.cap as i64).map(|j| self.ln_pmf(j).exp()).collect();
        let mean: f64 = pmf.iter().enumerate().map(|(j, p)| j as f64 * p).sum();
        let central =
            |power: i32| -> f64 { pmf.iter().enumerate().map(|(j, p)| (j as f64 - mean).powi(power) * p).sum() };
        CountMoments { mean, variance: central(2), fourth_central: central(4) }
    }

    /// `E[D_b]`: `t + a^{t+1}/(1−a²)` minus the (≤ 2⁻⁶⁴) cap correction; 132.0000 at ε = 0.1, δ = 10⁻⁶.
    pub fn expected_dummies_per_bucket(&self) -> f64 {
        self.moments().mean
    }

    /// Expected dummies per round over `buckets` buckets (8,448 for 64 buckets at ε = 0.1, δ = 10⁻⁶).
    pub fn expected_dummies_per_round(&self, buckets: u32) -> f64 {
        self.expected_dummies_per_bucket() * buckets as f64
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    #[test]
    fn shift_for_the_design_parameters_is_132() {
        let m = CoverMechanism::from_f64(0.1, 1e-6).unwrap();
        assert_eq!(m.shift_t(), 132);
        assert_eq!(m.dummies_per_bucket_max(), 570);
        assert!((m.delta_lower_tail() - 9.715_4e-7).abs() < 1e-10, "{}", m.delta_lower_tail());
        assert!(m.delta_upper_tail() <= 2f64.powi(-64));
        assert!(m.delta_achieved() <= 1e-6);
        // One step less would exceed δ: t is the smallest valid shift.
        let a = (-0.1f64).exp();
        assert!(a.powi(131) / (1.0 + a) > 1e-6);
        let per_round = m.expected_dummies_per_round(64);
        assert!((per_round - 8_448.0).abs() < 0.01, "{per_round}");
    }

    #[test]
    fn shift_is_minimal_for_every_simulated_epsilon() {
        for (eps, t) in [(0.1, 132u32), (0.25, 53), (0.5, 27), (1.0, 14), (2.0, 7), (4.0, 4), (8.0, 2)] {
            let m = CoverMechanism::from_f64(eps, 1e-6).unwrap();
            assert_eq!(m.shift_t(), t, "ε = {eps}");
            let a: f64 = (-eps).exp();
            assert!(a.powi(t as i32) / (1.0 + a) <= 1e-6 && a.powi(t as i32 - 1) / (1.0 + a) > 1e-6, "ε = {eps}");
        }
        // A large δ allows no shift at all.
        assert_eq!(CoverMechanism::from_f64(8.0, 0.9).unwrap().shift_t(), 1);
        assert_eq!(CoverMechanism::from_f64(8.0, 0.9999).unwrap().shift_t(), 0);
    }

    #[test]
    fn config_validation() {
        let eps = Epsilon::from_f64(0.1).unwrap();
        for bad in [0.0, 1.0, -1e-6, 1.5, f64::NAN] {
            assert!(matches!(CoverMechanism::new(eps, bad), Err(CoverConfigError::DeltaOutOfRange(_))), "{bad}");
        }
        assert_eq!(CoverMechanism::from_f64(0.0, 1e-6), Err(CoverConfigError::EpsilonNotPositive(0.0)));
        assert!(matches!(
            CoverMechanism::from_f64(0.0001, 1e-6),
            Err(CoverConfigError::TooManyDummies { cap }) if cap > DUMMIES_PER_BUCKET_CAP_MAX as u64
        ));
        assert_eq!(CoverMechanism::from_f64(0.001, 1e-6).unwrap().shift_t(), 13_123);
    }

    #[test]
    fn pmf_sums_to_one_and_moments_match_the_laplace() {
        let m = CoverMechanism::from_f64(0.1, 1e-6).unwrap();
        let total: f64 = (0..=570).map(|j| m.ln_pmf(j).exp()).sum();
        assert!((total - 1.0).abs() < 1e-12, "{total}");
        let mo = m.moments();
        // D_b is t + Z but for the clamps: variance 2a/(1−a)², kurtosis 6 + (1−a)²/(2a); the lower clamp moves
        // ~10⁻⁶ of mass by ~t, shifting the variance by ~10⁻⁵ relative.
        let a = (-0.1f64).exp();
        let var = 2.0 * a / (1.0 - a).powi(2);
        assert!((mo.variance - var).abs() / var < 5e-5, "{} vs {var}", mo.variance);
        let kurt = 6.0 + (1.0 - a).powi(2) / (2.0 * a);
        assert!((mo.fourth_central / var.powi(2) - kurt).abs() < 5e-3, "{}", mo.fourth_central / var.powi(2));
        assert_eq!(m.ln_pmf(-1), f64::NEG_INFINITY);
        assert_eq!(m.ln_pmf(571), f64::NEG_INFINITY);
    }

    /// The (ε, δ) claim itself: the hockey-stick divergence between the neighbouring worlds `c + D` and
    /// `c + 1 + D`, summed over every outcome of the exact pmf, in both directions, is at most δ achieved.
    #[test]
    fn hockey_stick_divergence_is_within_delta_achieved() {
        for (eps, delta) in [(0.1, 1e-6), (0.25, 1e-6), (0.5, 1e-3), (1.0, 1e-6), (2.0, 1e-9), (8.0, 1e-6)] {
            let m = CoverMechanism::from_f64(eps, delta).unwrap();
            let p = |j: i64| m.ln_pmf(j).exp();
            let e_eps = f64::exp(eps);
            let (mut d01, mut d10) = (0.0, 0.0);
            for j in 0..=m.dummies_per_bucket_max() as i64 + 1 {
                let (p0, p1) = (p(j), p(j - 1));
                d01 += (p0 - e_eps * p1).max(0.0);
                d10 += (p1 - e_eps * p0).max(0.0);
            }
            let worst = f64::max(d01, d10);
            // Interior terms are 0 in exact arithmetic; in f64 each leaves ~10⁻¹⁶ of rounding (pmf values up
            // to ~1 at large ε), hence the absolute slack of 10⁻¹⁴ (10⁸ times below the smallest δ here).
            let slack = 1e-14;
            assert!(worst <= m.delta_achieved() + slack, "ε = {eps}: {worst} > {}", m.delta_achieved());
            assert!(worst >= m.delta_lower_tail() - slack, "ε = {eps}: {worst}");
            assert!(m.delta_achieved() <= delta);
        }
    }

    #[test]
    fn samples_stay_in_range_and_average_t() {
        let m = CoverMechanism::from_f64(0.1, 1e-6).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let n = 20_000;
        let mut sum = 0u64;
        for _ in 0..n {
            let d = m.sample_dummies(&mut rng);
            assert!(d.count <= 570 && !d.clamped);
            sum += d.count as u64;
        }
        let mean = sum as f64 / n as f64;
        // SE = √(199.8 / 20000) = 0.1; 5 SE.
        assert!((mean - 132.0).abs() < 0.5, "{mean}");
    }
}
