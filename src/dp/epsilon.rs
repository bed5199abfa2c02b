//! ε as an exact rational, the form the integer-only sampler needs.
//!
//! ```text
//! --cover-traffic-epsilon 0.1 (f64) ──Epsilon::from_f64──▶ 100000 / 1000000 ──gcd──▶ 1/10 ──▶ DiscreteLaplace
//! ```
//!
//! The exact sampler (Canonne–Kamath–Steinke 2020) needs `ε = num/den` with integers. We put ε on the grid of
//! multiples of `1/EPSILON_RESOLUTION_DEN` (10⁻⁶): a decimal written with at most six places (0.1, 0.25, 2,
//! 0.123456) is represented exactly (the f64 artefact of such a decimal is far below the grid step and is
//! rounded away). Any other value is rounded **down** to the grid, so the ε actually used is never larger than
//! the one asked for (privacy never weaker than configured); callers report [`Epsilon::as_f64`] when
//! [`Epsilon::is_exactly`] is false. The fraction is then reduced, so 0.1 runs the sampler with `1/10`.

use super::error::CoverConfigError;

/// Grid of representable ε: every ε is a multiple of `1 / EPSILON_RESOLUTION_DEN`. 10⁻⁶ keeps every decimal
/// an operator would type exact while bounding the sampler's denominator (uniform draws stay in a u32).
pub const EPSILON_RESOLUTION_DEN: u32 = 1_000_000;
/// Smallest ε: one grid step.
pub const EPSILON_MIN: f64 = 1.0 / EPSILON_RESOLUTION_DEN as f64;
/// Largest ε: at ε = 64 the noise parameter `a = e^{-ε}` is below 2⁻⁹²; nothing is left to protect, so a larger
/// value is almost certainly a mistyped configuration (a δ typed into ε, a missing decimal point).
pub const EPSILON_MAX: f64 = 64.0;

/// How far (in grid steps) an f64 may sit from a grid point and still count as that decimal: f64 rounding of a
/// six-place decimal ≤ 64 moves it by < 10⁻⁸ steps; 10⁻⁷ steps (10⁻¹³ in ε) leaves margin and nothing more.
const GRID_ARTEFACT_STEPS: f64 = 1e-7;

/// A privacy parameter ε = `num / den` in lowest terms, `den` dividing `EPSILON_RESOLUTION_DEN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epsilon {
    /// Numerator (> 0).
    num: u32,
    /// Denominator (> 0, divides `EPSILON_RESOLUTION_DEN`).
    den: u32,
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Epsilon {
    /// ε from the f64 a command line gives: exact for decimals with ≤ 6 places, otherwise rounded down to the
    /// 10⁻⁶ grid (see the module docs). Rejects NaN, ±∞, ε ≤ 0, ε < `EPSILON_MIN`, ε > `EPSILON_MAX`.
    pub fn from_f64(requested: f64) -> Result<Self, CoverConfigError> {
        if !requested.is_finite() {
            return Err(CoverConfigError::EpsilonNotFinite(requested));
        }
        if requested <= 0.0 {
            return Err(CoverConfigError::EpsilonNotPositive(requested));
        }
        if requested > EPSILON_MAX {
            return Err(CoverConfigError::EpsilonTooLarge(requested));
        }
        let scaled = requested * EPSILON_RESOLUTION_DEN as f64;
        let nearest = scaled.round();
        let steps = if (scaled - nearest).abs() <= GRID_ARTEFACT_STEPS { nearest } else { scaled.floor() };
        // steps ≤ 64 · 10⁶ < 2³², checked above; the cast cannot truncate.
        let steps = steps as u32;
        if steps == 0 {
            return Err(CoverConfigError::EpsilonTooSmall(requested));
        }
        Self::new(steps, EPSILON_RESOLUTION_DEN)
    }

    /// ε = `num / den` exactly; reduced to lowest terms. The reduced `den` must divide `EPSILON_RESOLUTION_DEN`.
    pub fn new(num: u32, den: u32) -> Result<Self, CoverConfigError> {
        if num == 0 || den == 0 {
            return Err(CoverConfigError::EpsilonNotRational { num, den });
        }
        let g = gcd(num, den);
        let (rn, rd) = (num / g, den / g);
        if !EPSILON_RESOLUTION_DEN.is_multiple_of(rd) {
            return Err(CoverConfigError::EpsilonOffGrid { num, den });
        }
        let value = rn as f64 / rd as f64;
        if value > EPSILON_MAX {
            return Err(CoverConfigError::EpsilonTooLarge(value));
        }
        Ok(Self { num: rn, den: rd })
    }

    /// Numerator of the reduced fraction.
    #[inline]
    pub fn num(&self) -> u32 {
        self.num
    }

    /// Denominator of the reduced fraction.
    #[inline]
    pub fn den(&self) -> u32 {
        self.den
    }

    /// ε as f64, for reporting and for the (non-sampling) planning arithmetic.
    #[inline]
    pub fn as_f64(&self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// Whether this ε equals `requested` up to the f64 artefact of a six-place decimal (false: it was rounded
    /// down and the caller should report the ε actually used).
    pub fn is_exactly(&self, requested: f64) -> bool {
        (self.as_f64() - requested).abs() <= GRID_ARTEFACT_STEPS / EPSILON_RESOLUTION_DEN as f64
    }
}

impl std::fmt::Display for Epsilon {
    /// Decimal form with at most six places (exact, since `den` divides 10⁶).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let micros = self.num as u64 * (EPSILON_RESOLUTION_DEN / self.den) as u64;
        let (whole, frac) = (micros / EPSILON_RESOLUTION_DEN as u64, micros % EPSILON_RESOLUTION_DEN as u64);
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{frac:06}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_and_reduced() {
        for (requested, num, den, text) in [
            (0.1, 1, 10, "0.1"),
            (0.25, 1, 4, "0.25"),
            (0.5, 1, 2, "0.5"),
            (1.0, 1, 1, "1"),
            (2.0, 2, 1, "2"),
            (8.0, 8, 1, "8"),
            (0.3, 3, 10, "0.3"),
            (0.7, 7, 10, "0.7"),
            (2.675, 107, 40, "2.675"),
            (0.000001, 1, 1_000_000, "0.000001"),
            (64.0, 64, 1, "64"),
        ] {
            let e = Epsilon::from_f64(requested).unwrap();
            assert_eq!((e.num(), e.den()), (num, den), "{requested}");
            assert_eq!(e.to_string(), text);
            assert!(e.is_exactly(requested), "{requested}");
        }
    }

    #[test]
    fn off_grid_values_round_down() {
        let e = Epsilon::from_f64(0.1234567).unwrap();
        assert_eq!((e.num(), e.den()), (1_929, 15_625)); // 123456 / 10⁶ reduced by 64
        assert_eq!(e.to_string(), "0.123456");
        assert!(!e.is_exactly(0.1234567));
        assert!(e.as_f64() <= 0.1234567);
        // Just below a grid point: floored to the step below, never rounded up to 0.1.
        assert_eq!(Epsilon::from_f64(0.09999995).unwrap().to_string(), "0.099999");
    }

    #[test]
    fn rejections_are_typed() {
        assert_eq!(Epsilon::from_f64(0.0), Err(CoverConfigError::EpsilonNotPositive(0.0)));
        assert_eq!(Epsilon::from_f64(-0.1), Err(CoverConfigError::EpsilonNotPositive(-0.1)));
        assert!(matches!(Epsilon::from_f64(f64::NAN), Err(CoverConfigError::EpsilonNotFinite(_))));
        assert_eq!(Epsilon::from_f64(f64::INFINITY), Err(CoverConfigError::EpsilonNotFinite(f64::INFINITY)));
        assert_eq!(Epsilon::from_f64(1e-7), Err(CoverConfigError::EpsilonTooSmall(1e-7)));
        assert_eq!(Epsilon::from_f64(64.5), Err(CoverConfigError::EpsilonTooLarge(64.5)));
        assert_eq!(Epsilon::new(0, 3), Err(CoverConfigError::EpsilonNotRational { num: 0, den: 3 }));
        assert_eq!(Epsilon::new(1, 0), Err(CoverConfigError::EpsilonNotRational { num: 1, den: 0 }));
        assert_eq!(Epsilon::new(1, 3), Err(CoverConfigError::EpsilonOffGrid { num: 1, den: 3 }));
        assert_eq!(Epsilon::new(65, 1), Err(CoverConfigError::EpsilonTooLarge(65.0)));
        assert_eq!(Epsilon::new(30, 300).unwrap(), Epsilon::from_f64(0.1).unwrap());
    }
}
