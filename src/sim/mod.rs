//! Privacy simulators behind `tessera sim`: they drive the relay's own cover-traffic code and measure what a
//! global passive observer can learn.
//!
//! ```text
//! linkability: neighbouring worlds (with / without one delivery) ──policy (none | proportional | DP via
//!              dp::CoverMechanism::sample_dummies)──▶ per-bucket count ──optimal LR adversary──▶ AUC + CI,
//!              audited ε lower bound (dp::audit), dummies per round
//! anonymity:   N users' commits ──proto::derive::bucket_of──▶ bucket occupancy (min, median)
//!              random fingerprints ──proto::bloom──▶ false-positive rate, analytic vs measured
//! link observer: one client's rounds (talking or not) ──none | client::CoverSchedule──▶ proofs and send time
//!              per round on its link ──count / timing observer──▶ AUC + CI
//! ```
//!
//! Pure: each simulator takes its configuration and a seeded CSPRNG and returns a report; `crate::cli::sim`
//! prints it.

pub mod anonymity;
pub mod auc;
pub mod link_observer;
pub mod linkability;
