//! Typed errors of the cover-traffic configuration, the round schedule, the dummy builder and the count check.
//!
//! Every rejection has its own variant so that the CLI and the relay's start-up can say exactly what is wrong
//! with a configuration (privacy parameters are correctness parameters: a silently "fixed" ε is a bug).

use super::epsilon::{EPSILON_MAX, EPSILON_MIN, EPSILON_RESOLUTION_DEN};
use super::mechanism::DUMMIES_PER_BUCKET_CAP_MAX;
use super::schedule::ROUND_US_MAX;

/// Why a cover-traffic configuration (ε, δ) was refused.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CoverConfigError {
    /// ε is NaN or infinite.
    #[error("cover-traffic epsilon {0} is not a finite number")]
    EpsilonNotFinite(f64),
    /// ε ≤ 0: there is no privacy guarantee to configure.
    #[error("cover-traffic epsilon {0} must be > 0")]
    EpsilonNotPositive(f64),
    /// ε rounds to zero at the sampler's resolution.
    #[error("cover-traffic epsilon {0} is below the minimum {EPSILON_MIN} (resolution 1/{EPSILON_RESOLUTION_DEN})")]
    EpsilonTooSmall(f64),
    /// ε above `EPSILON_MAX`: no noise is left; almost certainly a mistyped value.
    #[error("cover-traffic epsilon {0} is above the maximum {EPSILON_MAX}")]
    EpsilonTooLarge(f64),
    /// A rational ε with a zero denominator or numerator.
    #[error("cover-traffic epsilon {num}/{den} is not a positive rational")]
    EpsilonNotRational {
        /// Numerator given.
        num: u32,
        /// Denominator given.
        den: u32,
    },
    /// A rational ε whose reduced denominator does not divide `EPSILON_RESOLUTION_DEN`.
    #[error("cover-traffic epsilon {num}/{den} is not a multiple of 1/{EPSILON_RESOLUTION_DEN}")]
    EpsilonOffGrid {
        /// Numerator given.
        num: u32,
        /// Denominator given.
        den: u32,
    },
    /// δ is NaN, ≤ 0 or ≥ 1.
    #[error("cover-traffic delta {0} must lie strictly between 0 and 1")]
    DeltaOutOfRange(f64),
    /// (ε, δ) need more dummies per bucket per round than the schedule is allowed to hold.
    #[error(
        "cover traffic at these (epsilon, delta) needs up to {cap} dummies per bucket per round \
         (limit {DUMMIES_PER_BUCKET_CAP_MAX}); raise epsilon or delta"
    )]
    TooManyDummies {
        /// The per-bucket cap these parameters need.
        cap: u64,
    },
}

/// Why a round schedule could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The round length is zero.
    #[error("round length must be > 0 µs")]
    RoundLengthZero,
    /// The round length exceeds `ROUND_US_MAX`.
    #[error("round length {0} µs exceeds the maximum {ROUND_US_MAX} µs")]
    RoundTooLong(u64),
    /// `round_start_us + round_us` does not fit in a u64.
    #[error("round starting at {0} µs ends past the end of time")]
    RoundEndOverflow(u64),
    /// The owned bucket range is empty.
    #[error("owned bucket range {start}..{end} is empty")]
    BucketRangeEmpty {
        /// First bucket.
        start: u16,
        /// One past the last bucket.
        end: u16,
    },
    /// The owned bucket range goes past `num_buckets`.
    #[error("owned bucket range ends at {end}, past num_buckets = {num_buckets}")]
    BucketRangeOutOfBounds {
        /// One past the last bucket.
        end: u16,
        /// Number of buckets.
        num_buckets: u16,
    },
}

/// Why a dummy proof could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DummyError {
    /// `num_buckets` is zero.
    #[error("num_buckets must be > 0")]
    NoBuckets,
    /// The bucket is not below `num_buckets`.
    #[error("bucket {bucket} is not below num_buckets = {num_buckets}")]
    BucketOutOfRange {
        /// Bucket requested.
        bucket: u16,
        /// Number of buckets.
        num_buckets: u16,
    },
}

/// Why observed counts could not be checked against the mechanism.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// Fewer samples than the normal approximation of the check needs.
    #[error("{got} observed counts; the check needs at least {min}")]
    TooFewSamples {
        /// Counts given.
        got: usize,
        /// Minimum.
        min: usize,
    },
    /// The z tolerance is not a finite positive number.
    #[error("z tolerance {0} must be finite and > 0")]
    BadTolerance(f64),
}
