//! `tessera sim anonymity`: how many users share a bucket, and how often a Bloom filter matches a stranger.
//!
//! ```text
//! N users ──random commit──▶ proto::derive::bucket_of ──▶ occupancy per bucket ──▶ min (k-anonymity), median
//! n fingerprints ──proto::bloom insert──▶ filter ──random probes──▶ measured FPR ± CP 95 %  vs  (1−e^{−kn/m})^k
//! ```
//!
//! Bucket k-anonymity: a proof's bucket is public, so its sender hides among the users whose proofs fall in the
//! same bucket that round; the least-occupied bucket is the weakest guarantee (k = min occupancy). Cover
//! traffic hides how many proofs a bucket got, not who sent them: dummies add no real users. Bloom false
//! positives decide how much unrelated traffic a subscriber downloads alongside its own (its cover on fetch).

use rand_core::{CryptoRng, RngCore};

use crate::dp::stats::clopper_pearson;
use crate::proto::derive::{bucket_of, Fingerprint};
use crate::proto::{BloomFilter, BloomParams, NUM_BUCKETS_DEFAULT};

/// User counts the occupancy table covers.
pub const USERS_DEFAULT: [u64; 8] = [64, 256, 640, 1_000, 4_800, 10_000, 100_000, 1_000_000];
/// Independent assignments per user count (the min is a noisy statistic; 20 trials give its mean and worst).
pub const TRIALS_DEFAULT: u32 = 20;
/// Fingerprints per filter the FPR table covers (60 is the reference's design point).
pub const BLOOM_ITEMS_DEFAULT: [u32; 8] = [10, 20, 40, 60, 80, 100, 150, 200];
/// Non-member probes per Bloom row: the CP interval at the 0.42 % design point is about ±0.02 %.
pub const BLOOM_PROBES_DEFAULT: u64 = 400_000;
/// Filters per Bloom row (probes are spread across them so one unlucky filter does not dominate).
pub const BLOOM_FILTERS_PER_ROW: u64 = 200;
/// Largest user count simulated: one commit hash per user per trial, 20 M hashes ≈ 1 s.
pub const USERS_MAX: u64 = 20_000_000;

/// What the simulation runs.
#[derive(Clone, Debug, PartialEq)]
pub struct AnonymityConfig {
    /// User counts (each user sends one proof per round).
    pub users: Vec<u64>,
    /// Trials per user count.
    pub trials: u32,
    /// Number of buckets.
    pub num_buckets: u16,
    /// Fingerprints per filter, one Bloom row each.
    pub bloom_items: Vec<u32>,
    /// Probes per Bloom row.
    pub bloom_probes: u64,
    /// Bloom parameters.
    pub bloom: BloomParams,
}

impl Default for AnonymityConfig {
    fn default() -> Self {
        Self {
            users: USERS_DEFAULT.to_vec(),
            trials: TRIALS_DEFAULT,
            num_buckets: NUM_BUCKETS_DEFAULT,
            bloom_items: BLOOM_ITEMS_DEFAULT.to_vec(),
            bloom_probes: BLOOM_PROBES_DEFAULT,
            bloom: BloomParams::default(),
        }
    }
}

/// Occupancy for one user count.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct OccupancyRow {
    /// Users.
    pub users: u64,
    /// `users / num_buckets`.
    pub expected_per_bucket: f64,
    /// Minimum occupancy (the k of k-anonymity), mean over trials.
    pub min_mean: f64,
    /// Smallest minimum seen in any trial.
    pub min_worst: u64,
    /// Median occupancy, mean over trials.
    pub median_mean: f64,
    /// Empty buckets, mean over trials.
    pub empty_buckets_mean: f64,
}

/// False-positive rate for one filter load.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BloomRow {
    /// Fingerprints per filter.
    pub items: u32,
    /// `(1 − e^{−kn/m})^k`.
    pub analytic_fpr: f64,
    /// Hits / probes.
    pub measured_fpr: f64,
    /// Clopper–Pearson 95 % lower bound.
    pub ci_low: f64,
    /// Clopper–Pearson 95 % upper bound.
    pub ci_high: f64,
    /// Probes run.
    pub probes: u64,
}

/// The whole run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AnonymityReport {
    /// Number of buckets.
    pub num_buckets: u16,
    /// Trials per user count.
    pub trials: u32,
    /// Bloom filter size in bits.
    pub bloom_m_bits: u32,
    /// Bloom hash count.
    pub bloom_k: u8,
    /// Occupancy rows.
    pub occupancy: Vec<OccupancyRow>,
    /// Bloom rows.
    pub bloom: Vec<BloomRow>,
}

fn random_commit<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> [u8; 32] {
    let mut commit = [0u8; 32];
    rng.fill_bytes(&mut commit);
    commit
}

fn random_fingerprint<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Fingerprint {
    rng.next_u64().to_be_bytes()
}

/// Occupancy of `num_buckets` buckets by `users` users (users capped at `USERS_MAX`).
pub fn occupancy<R: RngCore + CryptoRng + ?Sized>(
    users: u64,
    trials: u32,
    num_buckets: u16,
    rng: &mut R,
) -> OccupancyRow {
    let users = users.min(USERS_MAX);
    let trials = trials.max(1);
    let buckets = num_buckets.max(1);
    let (mut min_sum, mut min_worst, mut median_sum, mut empty_sum) = (0u64, u64::MAX, 0f64, 0u64);
    let mut counts = vec![0u64; buckets as usize];
    for _ in 0..trials {
        counts.iter_mut().for_each(|c| *c = 0);
        for _ in 0..users {
            counts[bucket_of(&random_commit(rng), buckets) as usize] += 1;
        }
        counts.sort_unstable();
        let min = counts[0];
        min_sum += min;
        min_worst = min_worst.min(min);
        let mid = counts.len() / 2;
        median_sum += if counts.len().is_multiple_of(2) {
            (counts[mid - 1] + counts[mid]) as f64 / 2.0
        } else {
            counts[mid] as f64
        };
        empty_sum += counts.iter().filter(|&&c| c == 0).count() as u64;
    }
    let t = trials as f64;
    OccupancyRow {
        users,
        expected_per_bucket: users as f64 / buckets as f64,
        min_mean: min_sum as f64 / t,
        min_worst,
        median_mean: median_sum / t,
        empty_buckets_mean: empty_sum as f64 / t,
    }
}

/// Measured false-positive rate of filters holding `items` random fingerprints, over `probes` random probes.
pub fn bloom_fpr<R: RngCore + CryptoRng + ?Sized>(
    items: u32,
    probes: u64,
    params: BloomParams,
    rng: &mut R,
) -> BloomRow {
    let filters = BLOOM_FILTERS_PER_ROW.min(probes.max(1));
    let per_filter = probes.max(1).div_ceil(filters);
    let mut hits = 0u64;
    for _ in 0..filters {
        let mut filter = BloomFilter::new(params);
        for _ in 0..items {
            filter.insert_fingerprint(&random_fingerprint(rng));
        }
        // A random 64-bit probe equals one of ≤ 200 members with probability < 2⁻⁵⁶: every probe is a non-member.
        hits += (0..per_filter).filter(|_| filter.contains_fingerprint(&random_fingerprint(rng))).count() as u64;
    }
    let probes = filters * per_filter;
    let (ci_low, ci_high) = clopper_pearson(hits, probes, 0.95);
    BloomRow {
        items,
        analytic_fpr: params.false_positive_rate(items as u64),
        measured_fpr: hits as f64 / probes as f64,
        ci_low,
        ci_high,
        probes,
    }
}

/// Runs both tables.
pub fn run<R: RngCore + CryptoRng + ?Sized>(config: &AnonymityConfig, rng: &mut R) -> AnonymityReport {
    AnonymityReport {
        num_buckets: config.num_buckets,
        trials: config.trials,
        bloom_m_bits: config.bloom.m_bits,
        bloom_k: config.bloom.k,
        occupancy: config.users.iter().map(|&u| occupancy(u, config.trials, config.num_buckets, rng)).collect(),
        bloom: config.bloom_items.iter().map(|&n| bloom_fpr(n, config.bloom_probes, config.bloom, rng)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    #[test]
    fn occupancy_grows_with_users() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let small = occupancy(64, 10, 64, &mut rng);
        // 64 users in 64 buckets: ~e⁻¹ of the buckets are empty, so k = 0 — no anonymity in a bucket.
        assert_eq!(small.min_worst, 0);
        assert!((small.empty_buckets_mean - 64.0 * (63f64 / 64.0).powi(64)).abs() < 4.0, "{small:?}");
        let large = occupancy(16_000, 3, 64, &mut rng);
        // 250 per bucket, SD ≈ 15.7: the minimum of 64 sits ~2.4 SD low (≈ 212), the median near 250.
        assert!((large.median_mean - 250.0).abs() < 15.0, "{large:?}");
        assert!(large.min_mean > 180.0 && large.min_mean < 240.0, "{large:?}");
        assert_eq!(large.empty_buckets_mean, 0.0);
    }

    #[test]
    fn bloom_fpr_matches_the_analytic_rate() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for items in [60, 200] {
            let row = bloom_fpr(items, 20_000, BloomParams::default(), &mut rng);
            assert_eq!(row.probes, 20_000);
            // The analytic rate lies inside a 99.99 % interval around the measurement (probes are Bernoulli).
            let (lo, hi) = clopper_pearson((row.measured_fpr * 20_000.0).round() as u64, 20_000, 0.9999);
            assert!(lo <= row.analytic_fpr && row.analytic_fpr <= hi, "{row:?}");
        }
        assert!((BloomParams::default().false_positive_rate(60) - 0.00418).abs() < 1e-4);
    }
}
