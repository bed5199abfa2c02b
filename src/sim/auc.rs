//! Area under the ROC curve of a scoring adversary, with DeLong's 95 % confidence interval.
//!
//! ```text
//! scores of positives (world with the delivery), scores of negatives ──sort──▶ placement values
//!   ──▶ AUC = P(S₁ > S₀) + ½·P(S₁ = S₀)   (Mann–Whitney; ties count half)
//!   ──▶ Var = Var(V₁₀)/n₁ + Var(V₀₁)/n₀   (DeLong, DeLong & Clarke-Pearson 1988) ──▶ AUC ± z·√Var
//! ```
//!
//! Scores may be ±∞ (a perfect likelihood ratio); NaN is treated as the lowest score by `total_cmp` and never
//! produced by the simulators. O((n₁ + n₀) log n) time, O(n) extra memory (two sorted copies).

use crate::dp::stats::normal_quantile;

/// An AUC estimate with its two-sided confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct AucEstimate {
    /// Point estimate.
    pub auc: f64,
    /// Standard error (DeLong).
    pub std_error: f64,
    /// Lower end of the interval, clamped to [0, 1].
    pub ci_low: f64,
    /// Upper end of the interval, clamped to [0, 1].
    pub ci_high: f64,
}

/// Fraction of `sorted` strictly below `x` plus half the fraction equal to it.
fn placement(sorted: &[f64], x: f64) -> f64 {
    let below = sorted.partition_point(|s| s.total_cmp(&x).is_lt());
    let not_above = sorted.partition_point(|s| s.total_cmp(&x).is_le());
    (below as f64 + 0.5 * (not_above - below) as f64) / sorted.len() as f64
}

fn mean_and_variance(values: impl Iterator<Item = f64> + Clone, n: usize) -> (f64, f64) {
    let mean = values.clone().sum::<f64>() / n as f64;
    let var = if n > 1 { values.map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
    (mean, var)
}

/// AUC of "higher score means positive" with a DeLong interval at `confidence` (e.g. 0.95).
/// Returns `None` if either class is empty.
pub fn auc_with_ci(positives: &[f64], negatives: &[f64], confidence: f64) -> Option<AucEstimate> {
    if positives.is_empty() || negatives.is_empty() {
        return None;
    }
    let mut pos = positives.to_vec();
    let mut neg = negatives.to_vec();
    pos.sort_unstable_by(f64::total_cmp);
    neg.sort_unstable_by(f64::total_cmp);
    // V₁₀(x) = P(S₀ < x) + ½P(S₀ = x) for each positive; V₀₁(y) = P(S₁ > y) + ½P(S₁ = y) for each negative.
    let v10 = pos.iter().map(|&x| placement(&neg, x));
    let v01 = neg.iter().map(|&y| 1.0 - placement(&pos, y));
    let (auc, var10) = mean_and_variance(v10, pos.len());
    let (_, var01) = mean_and_variance(v01, neg.len());
    let std_error = (var10 / pos.len() as f64 + var01 / neg.len() as f64).sqrt();
    let z = normal_quantile(0.5 + confidence / 2.0);
    Some(AucEstimate {
        auc,
        std_error,
        ci_low: (auc - z * std_error).max(0.0),
        ci_high: (auc + z * std_error).min(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_small_cases() {
        let perfect = auc_with_ci(&[2.0, 3.0, f64::INFINITY], &[f64::NEG_INFINITY, 0.0, 1.0], 0.95).unwrap();
        assert_eq!((perfect.auc, perfect.std_error, perfect.ci_low, perfect.ci_high), (1.0, 0.0, 1.0, 1.0));
        let blind = auc_with_ci(&[1.0; 10], &[1.0; 10], 0.95).unwrap();
        assert_eq!(blind.auc, 0.5);
        // Pairs (x, y): 3 > {1, 2}, 2 > 1, 2 = 2, 1 < 2, 1 = 1: (2 + 1 + ½ + 0 + ½) / 6 = 4/6.
        let mixed = auc_with_ci(&[3.0, 2.0, 1.0], &[1.0, 2.0], 0.95).unwrap();
        assert!((mixed.auc - 4.0 / 6.0).abs() < 1e-12);
        assert!(auc_with_ci(&[], &[1.0], 0.95).is_none());
    }

    #[test]
    fn two_level_scores_match_the_closed_form() {
        // Positives high with p₁ = 0.6, negatives high with p₀ = 0.4: AUC = p₁(1−p₀) + ½(p₁p₀ + (1−p₁)(1−p₀)) = 0.6.
        let pos: Vec<f64> = (0..1000).map(|i| if i < 600 { 1.0 } else { 0.0 }).collect();
        let neg: Vec<f64> = (0..1000).map(|i| if i < 400 { 1.0 } else { 0.0 }).collect();
        let est = auc_with_ci(&pos, &neg, 0.95).unwrap();
        assert!((est.auc - 0.6).abs() < 1e-12);
        // DeLong SE: V₁₀ ∈ {0.8, 0.3} w.p. {0.6, 0.4} → var 0.06·(1000/999); same for V₀₁; √(2·0.06006/1000).
        assert!((est.std_error - (2.0 * 0.06 * 1000.0 / 999.0 / 1000.0f64).sqrt()).abs() < 1e-9, "{}", est.std_error);
        assert!(est.ci_low < 0.6 && est.ci_high > 0.6);
    }
}
