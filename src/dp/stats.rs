//! Statistics for the privacy analysis: Clopper–Pearson intervals, normal and χ² quantiles.
//!
//! ```text
//! (successes k, trials n) ──regularised incomplete beta, bisection──▶ Clopper–Pearson [lo, hi] ──▶ crate::dp::audit
//! confidence ──normal_quantile──▶ z for AUC intervals (crate::sim) and count checks (crate::dp::check)
//! ```
//!
//! Floating point is fine here: this is analysis of samples, never the sampling path. No statistics crate is
//! pulled in for three functions; each is a textbook method, checked against published values in the tests.

/// Iterations of the beta continued fraction: it converges in O(√max(a, b)) steps, i.e. ~3,200 at 10⁷ trials.
const BETA_CF_ITERATIONS_MAX: u32 = 20_000;
/// Bisection steps for a beta quantile: 2⁻¹²⁰ of the unit interval, far below f64 resolution of any bound.
const BISECTION_STEPS: u32 = 120;

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms; relative error ~10⁻¹⁵).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + G + 0.5;
    let mut sum = COEF[0];
    for (i, c) in COEF.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// Continued fraction of the incomplete beta (modified Lentz).
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=BETA_CF_ITERATIONS_MAX {
        let m = m as f64;
        let m2 = 2.0 * m;
        for aa in [m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))] {
            d = 1.0 + aa * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// Regularised incomplete beta `I_x(a, b)` for `a, b > 0`, `x ∈ [0, 1]`.
pub fn regularized_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (-x).ln_1p();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_continued_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_continued_fraction(b, a, 1.0 - x) / b
    }
}

/// The `p`-quantile of Beta(a, b), by bisection on `I_x(a, b)` (monotone in x).
pub fn beta_quantile(a: f64, b: f64, p: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..BISECTION_STEPS {
        let mid = 0.5 * (lo + hi);
        if regularized_beta(a, b, mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Two-sided Clopper–Pearson interval for `k` successes in `n` trials at `confidence` (e.g. 0.95): each side
/// holds with probability `1 − (1 − confidence)/2`. Returns `(lo, hi)`; `(0, 1)` when `n == 0`.
pub fn clopper_pearson(k: u64, n: u64, confidence: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let k = k.min(n);
    let tail = (1.0 - confidence) / 2.0;
    let (kf, nf) = (k as f64, n as f64);
    // Closed forms at the edges (exact, and faster than bisection for the tiny quantiles they need).
    let lo = if k == 0 {
        0.0
    } else if k == n {
        tail.powf(1.0 / nf)
    } else {
        beta_quantile(kf, nf - kf + 1.0, tail)
    };
    let hi = if k == n {
        1.0
    } else if k == 0 {
        1.0 - tail.powf(1.0 / nf)
    } else {
        beta_quantile(kf + 1.0, nf - kf, 1.0 - tail)
    };
    (lo, hi)
}

/// Standard normal quantile Φ⁻¹(p), `p ∈ (0, 1)` (Acklam's rational approximation, relative error < 1.2·10⁻⁹).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    const P_LOW: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

/// Upper `p`-quantile of χ²(df) by the Wilson–Hilferty cube approximation (within ~1.5 % for df ≥ 3 at
/// p = 0.999); used as a test threshold only.
pub fn chi_square_upper_quantile(df: usize, p: f64) -> f64 {
    let k = df as f64;
    let z = normal_quantile(p);
    let c = 2.0 / (9.0 * k);
    k * (1.0 - c + z * c.sqrt()).powi(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, tol: f64) {
        assert!((got - want).abs() <= tol, "got {got}, want {want} ± {tol}");
    }

    #[test]
    fn gamma_and_beta_known_values() {
        close(ln_gamma(1.0), 0.0, 1e-13);
        close(ln_gamma(5.0), 24f64.ln(), 1e-13);
        close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-13);
        // ln Γ(10⁶) by Stirling with the 1/(12x) term: (x−½)ln x − x + ½ln 2π + 1/(12x).
        let x = 1e6f64;
        close(ln_gamma(x), (x - 0.5) * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + 1.0 / (12.0 * x), 1e-6);
        close(regularized_beta(2.0, 3.0, 0.4), 0.5248, 1e-12); // 1 − (1−x)⁴ − 4x(1−x)³ at 0.4
        close(regularized_beta(1.0, 1.0, 0.3), 0.3, 1e-14);
    }

    #[test]
    fn clopper_pearson_published_values() {
        let (lo, hi) = clopper_pearson(5, 10, 0.95);
        close(lo, 0.187_086, 1e-6);
        close(hi, 0.812_914, 1e-6);
        let (lo, hi) = clopper_pearson(0, 10, 0.95);
        assert_eq!(lo, 0.0);
        close(hi, 0.308_497, 1e-6);
        let (lo, hi) = clopper_pearson(1, 10, 0.95);
        close(lo, 0.002_529, 1e-6);
        close(hi, 0.445_016, 1e-6);
        let (lo, hi) = clopper_pearson(10, 10, 0.95);
        close(lo, 0.691_503, 1e-6);
        assert_eq!(hi, 1.0);
        // Large n: the interval approaches the Wald interval 0.5 ± 1.96·√(0.25/n).
        let (lo, hi) = clopper_pearson(500_000, 1_000_000, 0.95);
        close(lo, 0.5 - 1.959_964 * (0.25f64 / 1e6).sqrt(), 2e-6);
        close(hi, 0.5 + 1.959_964 * (0.25f64 / 1e6).sqrt(), 2e-6);
        assert_eq!(clopper_pearson(0, 0, 0.95), (0.0, 1.0));
    }

    #[test]
    fn normal_and_chi_square_quantiles() {
        close(normal_quantile(0.975), 1.959_963_985, 1e-8);
        close(normal_quantile(0.5), 0.0, 1e-12);
        close(normal_quantile(0.001), -3.090_232_306, 1e-8);
        close(normal_quantile(0.999_999), 4.753_424_309, 1e-7);
        // χ²(30) 0.999 quantile is 59.703; χ²(100) is 149.449.
        close(chi_square_upper_quantile(30, 0.999), 59.703, 0.3);
        close(chi_square_upper_quantile(100, 0.999), 149.449, 0.3);
    }
}
