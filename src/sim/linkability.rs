//! `tessera sim linkability`: can a global passive observer tell whether one delivery happened?
//!
//! ```text
//! world 0: bucket count = c + dummies(c)          world 1: bucket count = (c + 1) + dummies(c + 1)
//!            │  policy: none (0) | proportional (ρ·real) | DP (dp::CoverMechanism::sample_dummies)
//!            ▼
//! adversary knows c and the policy, scores each count by its log likelihood ratio ln P₁(y)/P₀(y)
//!            ▼
//! AUC ± 95 % CI (sim::auc)   vs bound e^ε/(1+e^ε)        overhead: dummies per round over B buckets
//! audit: threshold chosen on half the samples, TPR/FPR on the other half ─▶ dp::audit ε lower bound
//! ```
//!
//! This is the worst case differential privacy covers: the observer knows every other user's traffic exactly
//! (`c`), so only the mechanism's noise hides the delivery. The likelihood-ratio test is the most powerful
//! test (Neyman–Pearson), so its ROC is the outer envelope every other observer stays inside. For the DP
//! policy the likelihood ratio is computed from the exact pmf of `D_b` and the counts are drawn by
//! [`CoverMechanism::sample_dummies`] — the function the relay's schedule calls — so the sim measures the
//! shipped sampler, not a model of it. For pure ε-DP every test has AUC ≤ e^ε/(1+e^ε); the discrete
//! Laplace attains it (its log likelihood ratio is ±ε away from the clamps), so the measured AUC sits *at*
//! the bound, and its interval should straddle it.

use rand_core::{CryptoRng, RngCore};

use super::auc::{auc_with_ci, AucEstimate};
use crate::dp::audit::{epsilon_lower_bound, TestOutcomes};
use crate::dp::{CoverConfigError, CoverMechanism};

/// The ε values the issue asks for.
pub const EPSILONS_DEFAULT: [f64; 7] = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0];
/// Samples per world per policy: ±0.0014 on the AUC at ε = 0.1 (SE √(0.125/n)) and ~1 s in release.
pub const SAMPLES_PER_WORLD_DEFAULT: usize = 250_000;
/// δ of the DP policy (docs/FOUNDATIONS.md §4).
pub const DELTA_DEFAULT: f64 = 1e-6;
/// Real proofs in the observed bucket per round in the world without the delivery (known to the adversary).
pub const BACKGROUND_PER_BUCKET_DEFAULT: u32 = 10;
/// Proportional policy: this many dummies per real proof in the bucket.
pub const PROPORTIONAL_RATIO_DEFAULT: u32 = 1;
/// Confidence of every interval.
pub const CONFIDENCE: f64 = 0.95;
/// Log likelihood ratios are rounded to multiples of 1/LLR_GRID (see `Policy::log_likelihood_ratio`).
const LLR_GRID: f64 = 1e9;
/// Most thresholds tried when choosing the audit test (scores take ≤ 6 values for these policies).
const AUDIT_THRESHOLDS_MAX: usize = 256;

/// What the simulation runs.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkabilityConfig {
    /// Samples per world (with / without the delivery) per policy; half select the audit test, half score it.
    pub samples_per_world: usize,
    /// ε values of the DP policy.
    pub epsilons: Vec<f64>,
    /// δ of the DP policy (also the δ the audit subtracts).
    pub delta: f64,
    /// Real proofs per bucket per round without the delivery.
    pub background_per_bucket: u32,
    /// Dummies per real proof under the proportional policy.
    pub proportional_ratio: u32,
    /// Buckets per relay, for the overhead figure.
    pub buckets: u16,
}

impl Default for LinkabilityConfig {
    fn default() -> Self {
        Self {
            samples_per_world: SAMPLES_PER_WORLD_DEFAULT,
            epsilons: EPSILONS_DEFAULT.to_vec(),
            delta: DELTA_DEFAULT,
            background_per_bucket: BACKGROUND_PER_BUCKET_DEFAULT,
            proportional_ratio: PROPORTIONAL_RATIO_DEFAULT,
            buckets: crate::proto::NUM_BUCKETS_DEFAULT,
        }
    }
}

/// A cover-traffic policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Policy {
    /// No dummies (`danger_disable_cover_traffic`).
    None,
    /// `ratio` dummies per real proof: hides nothing, multiplies the signal.
    Proportional {
        /// Dummies per real proof.
        ratio: u32,
    },
    /// The relay's mechanism.
    Dp(CoverMechanism),
}

impl Policy {
    /// Short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Proportional { .. } => "proportional",
            Policy::Dp(_) => "dp",
        }
    }

    /// Dummies added to a bucket holding `real` real proofs.
    fn dummies<R: RngCore + CryptoRng + ?Sized>(&self, real: u64, rng: &mut R) -> u64 {
        match self {
            Policy::None => 0,
            Policy::Proportional { ratio } => real * *ratio as u64,
            Policy::Dp(m) => m.sample_dummies(rng).count as u64,
        }
    }

    /// ln P(y | delivery) − ln P(y | no delivery), for the adversary who knows the background `c`.
    fn log_likelihood_ratio(&self, c: u64, observed: u64) -> f64 {
        let (ln_p1, ln_p0) = match self {
            Policy::None => (ln_indicator(observed == c + 1), ln_indicator(observed == c)),
            Policy::Proportional { ratio } => {
                let r = *ratio as u64;
                (ln_indicator(observed == (c + 1) * (1 + r)), ln_indicator(observed == c * (1 + r)))
            }
            Policy::Dp(m) => {
                let d0 = observed as i64 - c as i64;
                (m.ln_pmf(d0 - 1), m.ln_pmf(d0))
            }
        };
        let llr = ln_p1 - ln_p0;
        if llr.is_nan() {
            // −∞ − −∞ (an output impossible in both worlds) never occurs for observed counts; score it neutral.
            return 0.0;
        }
        if llr.is_infinite() {
            return llr;
        }
        // Likelihood ratios equal in exact arithmetic (every count above t scores exactly +ε) must tie; the f64
        // difference of two pmf terms carries ~10⁻¹⁵ of noise that would order them arbitrarily (and bias the
        // tie-sensitive AUC). Distinct true values differ by far more than the 10⁻⁹ grid.
        (llr * LLR_GRID).round() / LLR_GRID
    }

    /// Expected dummies per round over `buckets` buckets, each holding `c` real proofs.
    fn expected_dummies_per_round(&self, c: u64, buckets: u16) -> f64 {
        match self {
            Policy::None => 0.0,
            Policy::Proportional { ratio } => (c * *ratio as u64) as f64 * buckets as f64,
            Policy::Dp(m) => m.expected_dummies_per_round(buckets as u32),
        }
    }
}

fn ln_indicator(b: bool) -> f64 {
    if b {
        0.0
    } else {
        f64::NEG_INFINITY
    }
}

/// The audit of one policy: the test chosen on the first half, its rates on the second.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct AuditResult {
    /// Audited lower bound on ε (95 %).
    pub epsilon_lb: f64,
    /// The test flags "delivery" when the log likelihood ratio is ≥ this.
    pub threshold_log_lr: f64,
    /// Observed true-positive rate on the held-out half.
    pub tpr: f64,
    /// Observed false-positive rate on the held-out half.
    pub fpr: f64,
    /// Clopper–Pearson lower bound of the TPR.
    pub tpr_lo: f64,
    /// Clopper–Pearson upper bound of the FPR.
    pub fpr_hi: f64,
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PolicyResult {
    /// `none`, `proportional` or `dp`.
    pub policy: &'static str,
    /// ε actually used by the DP policy.
    pub epsilon: Option<f64>,
    /// Shift `t` of the DP policy.
    pub shift_t: Option<u32>,
    /// AUC of the likelihood-ratio adversary with its 95 % interval.
    pub auc: AucEstimate,
    /// e^ε/(1+e^ε), the largest AUC any test can reach against pure ε-DP.
    pub auc_bound: Option<f64>,
    /// The audited ε lower bound.
    pub audit: AuditResult,
    /// Expected dummies per round over the configured buckets.
    pub dummies_per_round_expected: f64,
    /// Mean dummies per round measured in the world without the delivery.
    pub dummies_per_round_measured: f64,
}

/// The whole run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LinkabilityReport {
    /// Samples per world per policy.
    pub samples_per_world: usize,
    /// δ of the DP policy.
    pub delta: f64,
    /// Real proofs per bucket per round.
    pub background_per_bucket: u32,
    /// Buckets per relay (overhead figure).
    pub buckets: u16,
    /// One row per policy (none, proportional, then DP by ε).
    pub results: Vec<PolicyResult>,
}

/// Scores of both worlds for one policy, and the mean dummy count of world 0.
struct Samples {
    with_delivery: Vec<f64>,
    without: Vec<f64>,
    mean_dummies: f64,
}

fn simulate<R: RngCore + CryptoRng + ?Sized>(policy: &Policy, c: u64, n: usize, rng: &mut R) -> Samples {
    let mut with_delivery = Vec::with_capacity(n);
    let mut without = Vec::with_capacity(n);
    let mut dummies_total: u64 = 0;
    for _ in 0..n {
        let d0 = policy.dummies(c, rng);
        dummies_total += d0;
        without.push(policy.log_likelihood_ratio(c, c + d0));
        let y1 = c + 1 + policy.dummies(c + 1, rng);
        with_delivery.push(policy.log_likelihood_ratio(c, y1));
    }
    Samples { with_delivery, without, mean_dummies: dummies_total as f64 / n.max(1) as f64 }
}

/// Chooses the threshold on the first half of each world's scores, scores it on the second half.
fn audit(with_delivery: &[f64], without: &[f64], delta: f64) -> AuditResult {
    let (pos_a, pos_b) = with_delivery.split_at(with_delivery.len() / 2);
    let (neg_a, neg_b) = without.split_at(without.len() / 2);
    let sorted = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_unstable_by(f64::total_cmp);
        v
    };
    let (pos_a, neg_a, pos_b, neg_b) = (sorted(pos_a), sorted(neg_a), sorted(pos_b), sorted(neg_b));
    let at_least = |v: &[f64], tau: f64| (v.len() - v.partition_point(|s| s.total_cmp(&tau).is_lt())) as u64;
    let outcomes = |pos: &[f64], neg: &[f64], tau: f64| TestOutcomes {
        true_positives: at_least(pos, tau),
        positives: pos.len() as u64,
        false_positives: at_least(neg, tau),
        negatives: neg.len() as u64,
    };
    let mut candidates: Vec<f64> = pos_a.iter().chain(&neg_a).copied().collect();
    candidates.sort_unstable_by(f64::total_cmp);
    candidates.dedup_by(|a, b| a.total_cmp(b).is_eq());
    let step = candidates.len().div_ceil(AUDIT_THRESHOLDS_MAX).max(1);
    let mut best = (f64::NEG_INFINITY, f64::INFINITY);
    for &tau in candidates.iter().step_by(step) {
        let lb = epsilon_lower_bound(outcomes(&pos_a, &neg_a, tau), delta, CONFIDENCE).epsilon_lb;
        if lb > best.0 {
            best = (lb, tau);
        }
    }
    let tau = best.1;
    let held_out = outcomes(&pos_b, &neg_b, tau);
    let lb = epsilon_lower_bound(held_out, delta, CONFIDENCE);
    AuditResult {
        epsilon_lb: lb.epsilon_lb,
        threshold_log_lr: tau,
        tpr: held_out.true_positives as f64 / held_out.positives.max(1) as f64,
        fpr: held_out.false_positives as f64 / held_out.negatives.max(1) as f64,
        tpr_lo: lb.tpr_lo,
        fpr_hi: lb.fpr_hi,
    }
}

/// Evaluates one policy.
pub fn evaluate<R: RngCore + CryptoRng + ?Sized>(
    policy: &Policy,
    config: &LinkabilityConfig,
    rng: &mut R,
) -> PolicyResult {
    let c = config.background_per_bucket as u64;
    let n = config.samples_per_world.max(2);
    let samples = simulate(policy, c, n, rng);
    let auc = auc_with_ci(&samples.with_delivery, &samples.without, CONFIDENCE)
        .expect("n ≥ 2 samples in each world (max(2) above)");
    let (epsilon, shift_t, auc_bound) = match policy {
        Policy::Dp(m) => {
            let eps = m.epsilon().as_f64();
            (Some(eps), Some(m.shift_t()), Some(1.0 / (1.0 + (-eps).exp())))
        }
        _ => (None, None, None),
    };
    PolicyResult {
        policy: policy.name(),
        epsilon,
        shift_t,
        auc,
        auc_bound,
        audit: audit(&samples.with_delivery, &samples.without, config.delta),
        dummies_per_round_expected: policy.expected_dummies_per_round(c, config.buckets),
        dummies_per_round_measured: samples.mean_dummies * config.buckets as f64,
    }
}

/// Runs none, proportional and DP at every configured ε.
pub fn run<R: RngCore + CryptoRng + ?Sized>(
    config: &LinkabilityConfig,
    rng: &mut R,
) -> Result<LinkabilityReport, CoverConfigError> {
    let mut policies = vec![Policy::None, Policy::Proportional { ratio: config.proportional_ratio }];
    for &eps in &config.epsilons {
        policies.push(Policy::Dp(CoverMechanism::from_f64(eps, config.delta)?));
    }
    let results = policies.iter().map(|p| evaluate(p, config, rng)).collect();
    Ok(LinkabilityReport {
        samples_per_world: config.samples_per_world,
        delta: config.delta,
        background_per_bucket: config.background_per_bucket,
        buckets: config.buckets,
        results,
    })
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    fn config(samples_per_world: usize) -> LinkabilityConfig {
        LinkabilityConfig { samples_per_world, ..LinkabilityConfig::default() }
    }

    #[test]
    fn no_cover_and_proportional_cover_are_fully_linkable() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let cfg = config(20_000);
        for policy in [Policy::None, Policy::Proportional { ratio: 1 }] {
            let r = evaluate(&policy, &cfg, &mut rng);
            assert!(r.auc.auc >= 0.99, "{r:?}");
            assert_eq!(r.auc.auc, 1.0);
            // Zero errors on 10,000 held-out samples per world: ε_lb = ln(10⁴/3.69) ≈ 7.9.
            assert!(r.audit.epsilon_lb > 7.8, "{r:?}");
        }
        let prop = evaluate(&Policy::Proportional { ratio: 1 }, &cfg, &mut rng);
        assert_eq!(prop.dummies_per_round_expected, 640.0);
        assert_eq!(prop.dummies_per_round_measured, 640.0);
    }

    #[test]
    fn audited_epsilon_never_exceeds_the_configured_epsilon() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let report = run(&config(20_000), &mut rng).unwrap();
        assert_eq!(report.results.len(), 9);
        for r in report.results.iter().filter(|r| r.policy == "dp") {
            let eps = r.epsilon.unwrap();
            assert!(r.audit.epsilon_lb <= eps, "ε = {eps}: ε_lb = {}", r.audit.epsilon_lb);
            // The discrete Laplace attains the bound e^ε/(1+e^ε): the AUC sits within 4 standard errors of it
            // (a 95 % interval would miss it at one of seven ε about a third of the time; 4 SE: 4·10⁻⁴ overall).
            let bound = r.auc_bound.unwrap();
            let z = (r.auc.auc - bound) / r.auc.std_error;
            assert!(z.abs() <= 4.0, "ε = {eps}: {:?} vs {bound} (z = {z:.2})", r.auc);
            let expected = CoverMechanism::from_f64(eps, 1e-6).unwrap().expected_dummies_per_round(64);
            assert!((r.dummies_per_round_expected - expected).abs() < 1e-9);
        }
        let at_8 = report.results.last().unwrap();
        assert_eq!(at_8.epsilon, Some(8.0));
        // With this many samples the audit proves most of ε at large ε (it is a lower bound, so this checks power).
        assert!(at_8.audit.epsilon_lb > 5.0, "{:?}", at_8.audit);
    }

    #[test]
    fn auc_at_epsilon_0_1_is_consistent_with_the_strict_bound() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let m = CoverMechanism::from_f64(0.1, 1e-6).unwrap();
        let r = evaluate(&Policy::Dp(m), &config(100_000), &mut rng);
        assert!(r.auc.ci_low <= 0.525, "{:?}", r.auc);
        assert!((r.auc.auc - 0.52498).abs() < 0.005, "{:?}", r.auc);
        assert!((r.auc_bound.unwrap() - 0.524_979).abs() < 1e-6);
        assert!((r.dummies_per_round_expected - 8_448.0).abs() < 0.01);
        assert!((r.dummies_per_round_measured - 8_448.0).abs() < 30.0, "{}", r.dummies_per_round_measured);
    }

    /// The release-size run: `cargo test --release --lib sim::linkability -- --ignored --nocapture` (~5 s).
    #[test]
    #[ignore = "large; run with: cargo test --release --lib sim::linkability -- --ignored --nocapture"]
    fn auc_at_epsilon_0_1_large() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let m = CoverMechanism::from_f64(0.1, 1e-6).unwrap();
        let r = evaluate(&Policy::Dp(m), &config(4_000_000), &mut rng);
        println!("ε = 0.1, 4·10⁶ samples per world: {:?}, {:?}", r.auc, r.audit);
        assert!(r.auc.ci_low <= 0.525 && r.auc.ci_high >= 0.524, "{:?}", r.auc);
        assert!(r.audit.epsilon_lb <= 0.1, "{:?}", r.audit);
    }

    #[test]
    fn log_likelihood_ratio_of_the_dp_policy() {
        let m = CoverMechanism::from_f64(0.1, 1e-6).unwrap();
        let p = Policy::Dp(m);
        let c = 10;
        // D = y − c: 0 only without the delivery; 1 is likelier with it (a/(1−a) ≈ 9.5); t ± 1 differ by ε.
        assert_eq!(p.log_likelihood_ratio(c, c), f64::NEG_INFINITY);
        assert!((p.log_likelihood_ratio(c, c + 1) - (0.904_837f64 / 0.095_163).ln()).abs() < 1e-4);
        // Exactly ±ε for every interior count: equal ratios tie.
        assert!((c + 2..=c + 132).all(|y| p.log_likelihood_ratio(c, y) == -0.1));
        assert!((c + 133..=c + 569).all(|y| p.log_likelihood_ratio(c, y) == 0.1));
        assert_eq!(p.log_likelihood_ratio(c, c + 571), f64::INFINITY);
    }
}
