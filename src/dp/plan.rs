//! Capacity planning: what a cover-traffic configuration costs a relay (`tessera dp plan`, start-up logs).
//!
//! ```text
//! CoverMechanism + buckets B + round length R ──▶ E[D_b]·B dummies per round ──× 86,400/R──▶ per day
//!                                                        ├──× PROOF_LEN / R──▶ bytes per second per relay
//!                  retention T ──▶ T/R rounds ──────────┴──× disk bytes per record──▶ disk per retention
//! ```
//!
//! Bandwidth counts proof bytes only (each dummy is one `PROOF_LEN` proof entering the relay's pipeline: log,
//! matching, gossip); framing and per-peer fan-out multiply it and belong to the server's own budget.
//! Disk counts what the log keeps of each dummy: one record (`RECORD_LEN` = 584 B, 7 to a 4,096-byte block,
//! so 585.1 B of file each); a dummy matches no subscriber, so it adds no match record. Measured against an
//! idle relay's storage growth in README §Quick start.

use super::error::ScheduleError;
use super::mechanism::CoverMechanism;
use super::schedule::{DummySlot, ROUND_US_MAX};
use crate::log::layout::SlotLayout;
use crate::log::record::RECORD_LEN;
use crate::log::BLOCK_LEN;
use crate::proto::PROOF_LEN;

const SECONDS_PER_DAY: f64 = 86_400.0;

/// Every figure of a cover-traffic configuration.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CoverPlan {
    /// ε actually used, as a decimal.
    pub epsilon: f64,
    /// ε actually used, as the sampler's fraction `num/den`.
    pub epsilon_fraction: String,
    /// δ asked for.
    pub delta_target: f64,
    /// δ achieved (lower + upper clamp).
    pub delta_achieved: f64,
    /// Shift `t`.
    pub shift_t: u32,
    /// Largest `D_b` (cap).
    pub dummies_per_bucket_max: u32,
    /// Standard deviation of `D_b`.
    pub dummies_per_bucket_sd: f64,
    /// `E[D_b]`.
    pub dummies_per_bucket_per_round: f64,
    /// Buckets per relay.
    pub buckets: u32,
    /// Round length, seconds.
    pub round_seconds: f64,
    /// `E[D_b]·B`.
    pub dummies_per_round: f64,
    /// Rounds per day.
    pub rounds_per_day: f64,
    /// Dummies per day.
    pub dummies_per_day: f64,
    /// Bytes of one proof.
    pub proof_bytes: usize,
    /// Dummy proof bytes per second per relay.
    pub bytes_per_second: f64,
    /// Dummy proof bytes per day per relay.
    pub bytes_per_day: f64,
    /// Largest one round's schedule can get over all B buckets (`B × cap` slots), bytes.
    pub schedule_bytes_max: u64,
    /// Retention the disk figure is for, seconds (`--retention`).
    pub retention_seconds: u64,
    /// Log file bytes per dummy: one record plus its share of the block's unused tail.
    pub disk_bytes_per_proof: f64,
    /// Dummy bytes on disk after one retention period: dummies per round × rounds per retention × record.
    /// Retention frees whole segments, so the oldest segment of each shard adds up to one more segment
    /// (1/8 of retention, at most 64 MiB) until its newest proof expires.
    pub disk_bytes_per_retention: f64,
}

impl CoverPlan {
    /// The plan for `buckets` buckets, rounds of `round_us` µs and proofs kept `retention_s` seconds.
    pub fn new(
        mechanism: &CoverMechanism,
        buckets: u16,
        round_us: u64,
        retention_s: u64,
    ) -> Result<Self, ScheduleError> {
        if round_us == 0 {
            return Err(ScheduleError::RoundLengthZero);
        }
        if round_us > ROUND_US_MAX {
            return Err(ScheduleError::RoundTooLong(round_us));
        }
        if buckets == 0 {
            return Err(ScheduleError::BucketRangeEmpty { start: 0, end: 0 });
        }
        let eps = mechanism.epsilon();
        let moments = mechanism.moments();
        let round_seconds = round_us as f64 / 1e6;
        let dummies_per_round = moments.mean * buckets as f64;
        let rounds_per_day = SECONDS_PER_DAY / round_seconds;
        let records_per_block = SlotLayout::new(RECORD_LEN).per_block() as f64;
        let disk_bytes_per_proof = BLOCK_LEN as f64 / records_per_block;
        let rounds_per_retention = retention_s as f64 / round_seconds;
        Ok(Self {
            epsilon: eps.as_f64(),
            epsilon_fraction: format!("{}/{}", eps.num(), eps.den()),
            delta_target: mechanism.delta_target(),
            delta_achieved: mechanism.delta_achieved(),
            shift_t: mechanism.shift_t(),
            dummies_per_bucket_max: mechanism.dummies_per_bucket_max(),
            dummies_per_bucket_sd: moments.variance.sqrt(),
            dummies_per_bucket_per_round: moments.mean,
            buckets: buckets as u32,
            round_seconds,
            dummies_per_round,
            rounds_per_day,
            dummies_per_day: dummies_per_round * rounds_per_day,
            proof_bytes: PROOF_LEN,
            bytes_per_second: dummies_per_round * PROOF_LEN as f64 / round_seconds,
            bytes_per_day: dummies_per_round * PROOF_LEN as f64 * rounds_per_day,
            schedule_bytes_max: buckets as u64
                * mechanism.dummies_per_bucket_max() as u64
                * std::mem::size_of::<DummySlot>() as u64,
            retention_seconds: retention_s,
            disk_bytes_per_proof,
            disk_bytes_per_retention: dummies_per_round * rounds_per_retention * disk_bytes_per_proof,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dp::ROUND_US_DEFAULT;

    #[test]
    fn design_point_figures() {
        let m = CoverMechanism::from_f64(0.1, 1e-6).unwrap();
        let p = CoverPlan::new(&m, 64, ROUND_US_DEFAULT, 3600).unwrap();
        assert_eq!((p.shift_t, p.epsilon_fraction.as_str(), p.dummies_per_bucket_max), (132, "1/10", 570));
        assert!((p.dummies_per_round - 8_448.0).abs() < 0.01);
        assert_eq!(p.rounds_per_day, 8_640.0);
        assert!((p.dummies_per_day - 72_990_720.0).abs() < 100.0, "{}", p.dummies_per_day);
        // 8,448 × 564 B / 10 s = 476,467 B/s ≈ 3.81 Mbit/s; 41.2 GB a day.
        assert!((p.bytes_per_second - 476_467.2).abs() < 1.0, "{}", p.bytes_per_second);
        assert!((p.bytes_per_day - 4.116_66e10).abs() < 1e7, "{}", p.bytes_per_day);
        assert!((p.dummies_per_bucket_sd - 14.136).abs() < 0.01, "{}", p.dummies_per_bucket_sd);
        assert_eq!(p.schedule_bytes_max, 64 * 570 * 16);
        // 8,448 dummies × 360 rounds × 4,096/7 B = 1.78 GB for one hour of retention.
        assert!((p.disk_bytes_per_proof - 585.142_857).abs() < 1e-3, "{}", p.disk_bytes_per_proof);
        assert!((p.disk_bytes_per_retention - 1_779_583_268.6).abs() < 1e4, "{}", p.disk_bytes_per_retention);
        let day = CoverPlan::new(&m, 64, ROUND_US_DEFAULT, 86_400).unwrap();
        assert!((day.disk_bytes_per_retention / p.disk_bytes_per_retention - 24.0).abs() < 1e-9);
    }

    #[test]
    fn invalid_rounds() {
        let m = CoverMechanism::from_f64(0.1, 1e-6).unwrap();
        assert_eq!(CoverPlan::new(&m, 64, 0, 3600), Err(ScheduleError::RoundLengthZero));
        let too_long = CoverPlan::new(&m, 64, ROUND_US_MAX + 1, 3600);
        assert_eq!(too_long, Err(ScheduleError::RoundTooLong(ROUND_US_MAX + 1)));
        assert!(CoverPlan::new(&m, 0, ROUND_US_DEFAULT, 3600).is_err());
    }
}
