//! Auditing: the ε a membership test *proves* a mechanism leaks, from its observed error rates.
//!
//! ```text
//! test "world with the delivery?" run on n₁ + n₀ samples ──(TP, FP)──▶ Clopper–Pearson 95 %
//!   ──▶ ε_lb = max(ln((TPR_lo − δ)/FPR_hi), ln((1 − FPR_hi − δ)/(1 − TPR_lo)))       (Jagielski et al. 2020;
//!                                                                                     Nasr et al. 2021)
//! ```
//!
//! An (ε, δ)-DP mechanism forces every test to satisfy `TPR ≤ e^ε·FPR + δ` and `1 − FPR ≤ e^ε·(1 − TPR) + δ`.
//! Using the pessimistic end of each confidence interval (lowest TPR, highest FPR) makes ε_lb a lower bound
//! on the true ε with ≥ 95 % confidence (each one-sided bound holds with 97.5 %). A mechanism whose ε_lb
//! exceeds its configured ε is broken — that is what `tessera sim linkability` and the tests check.

use super::stats::clopper_pearson;

/// Outcomes of a binary test: positives are samples from the world *with* the delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestOutcomes {
    /// Positives the test flagged.
    pub true_positives: u64,
    /// Positives run.
    pub positives: u64,
    /// Negatives the test flagged.
    pub false_positives: u64,
    /// Negatives run.
    pub negatives: u64,
}

/// An audited lower bound on ε, with the rates it came from.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct EpsilonLowerBound {
    /// The bound (≥ 0; 0 when the test shows nothing).
    pub epsilon_lb: f64,
    /// Lower confidence bound of the true-positive rate.
    pub tpr_lo: f64,
    /// Upper confidence bound of the false-positive rate.
    pub fpr_hi: f64,
}

/// ε_lb from a test's outcomes at `confidence` (two-sided Clopper–Pearson; use 0.95), against claimed δ.
pub fn epsilon_lower_bound(outcomes: TestOutcomes, delta: f64, confidence: f64) -> EpsilonLowerBound {
    let (tpr_lo, _) = clopper_pearson(outcomes.true_positives, outcomes.positives, confidence);
    let (_, fpr_hi) = clopper_pearson(outcomes.false_positives, outcomes.negatives, confidence);
    let ln_ratio = |num: f64, den: f64| if num > 0.0 && den > 0.0 { (num / den).ln() } else { f64::NEG_INFINITY };
    let epsilon_lb = ln_ratio(tpr_lo - delta, fpr_hi).max(ln_ratio(1.0 - fpr_hi - delta, 1.0 - tpr_lo)).max(0.0);
    EpsilonLowerBound { epsilon_lb, tpr_lo, fpr_hi }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(tp: u64, n1: u64, fp: u64, n0: u64) -> TestOutcomes {
        TestOutcomes { true_positives: tp, positives: n1, false_positives: fp, negatives: n0 }
    }

    #[test]
    fn blind_test_proves_nothing() {
        let lb = epsilon_lower_bound(outcomes(50_000, 100_000, 50_000, 100_000), 1e-6, 0.95);
        assert_eq!(lb.epsilon_lb, 0.0);
        assert!(lb.tpr_lo < 0.5 && lb.fpr_hi > 0.5);
    }

    #[test]
    fn bound_approaches_the_true_ratio_from_below() {
        // A test with TPR = 0.6, FPR = 0.2 (true ln(3) = 1.0986) on 10⁶ samples per world.
        let lb = epsilon_lower_bound(outcomes(600_000, 1_000_000, 200_000, 1_000_000), 0.0, 0.95);
        assert!(lb.epsilon_lb < 3f64.ln() && lb.epsilon_lb > 1.09, "{}", lb.epsilon_lb);
        // Second form: 1 − FPR = 0.9 vs 1 − TPR = 0.3 gives ln 3 too; swap roles to exercise it.
        let lb2 = epsilon_lower_bound(outcomes(700_000, 1_000_000, 100_000, 1_000_000), 0.0, 0.95);
        let want = (0.7f64 / 0.1).ln().max((0.9f64 / 0.3).ln());
        assert!(lb2.epsilon_lb < want && lb2.epsilon_lb > want - 0.02, "{}", lb2.epsilon_lb);
    }

    #[test]
    fn perfect_test_is_limited_by_sample_count() {
        // Zero false positives among n: FPR_hi = 1 − 0.025^{1/n} ≈ 3.69/n, so ε_lb ≈ ln(n/3.69).
        let lb = epsilon_lower_bound(outcomes(100_000, 100_000, 0, 100_000), 1e-6, 0.95);
        assert!((lb.epsilon_lb - (100_000f64 / 3.689).ln()).abs() < 0.01, "{}", lb.epsilon_lb);
    }

    #[test]
    fn delta_is_subtracted() {
        let no_delta = epsilon_lower_bound(outcomes(1_000, 1_000_000, 100, 1_000_000), 0.0, 0.95);
        let with_delta = epsilon_lower_bound(outcomes(1_000, 1_000_000, 100, 1_000_000), 5e-4, 0.95);
        assert!(with_delta.epsilon_lb < no_delta.epsilon_lb - 0.3);
    }
}
