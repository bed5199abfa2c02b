//! Differential-privacy cover traffic: how many dummy proofs each bucket gets each round, when, and what they
//! look like (docs/FOUNDATIONS.md §4, docs/PRIVACY.md). Pure: randomness is a caller-supplied CSPRNG, time an argument.
//!
//! ```text
//! (ε f64, δ f64) ──Epsilon::from_f64──▶ ε = num/den ──CoverMechanism::new──▶ t, cap, δ achieved
//!                                                          │
//!   per shard, per round: CoverSchedule::for_round(&mechanism, RoundSpec { start, length, owned buckets }, rng)
//!        │  D_b = min(max(0, t + Z), cap)   Z ~ exact discrete Laplace (exact.rs → laplace.rs), integers only
//!        │  D_b slots at uniform times in the round, sorted
//!        ▼
//!   driver timer ──poll_due(now_us)──▶ slots ──build_dummy_proof(rng, bucket, B, window_start(now))──▶ engine
//!                                                                                     (same path as real proofs)
//!   analysis: audit.rs (ε lower bound), stats.rs (Clopper–Pearson), check.rs (observed counts vs mechanism)
//! ```
//!
//! RNG: production seeds `rand_chacha::ChaCha20Rng` from the OS (`SeedableRng::from_entropy`), one per shard, in
//! the driver. Seeded generators are for tests and the simulators only. Every function here takes
//! `&mut (impl RngCore + CryptoRng)`, so a non-cryptographic generator does not compile.
//!
//! - [`epsilon`]: ε as an exact rational (how the CLI's f64 becomes `num/den`).
//! - [`exact`]: uniform integers, Bernoulli(n/d), Bernoulli(exp(−γ)) — CKS 2020 Algorithm 1.
//! - [`laplace`]: the exact discrete Laplace sampler — CKS 2020 Algorithm 2.
//! - [`mechanism`]: (ε, δ) → shift `t`, cap, δ achieved, expected dummies; `sample_dummies`.
//! - [`schedule`]: one round's dummy slots for a bucket range, polled by time.
//! - [`plan`]: what a configuration costs (dummies and bytes per round, per day).
//! - [`dummy`]: dummy proofs indistinguishable from real ones.
//! - [`audit`], [`stats`]: the audited ε lower bound and the statistics under it.
//! - [`check`]: observed counts vs the mechanism (for the relay's end-to-end test).
//! - [`error`]: typed errors.

pub mod audit;
pub mod check;
pub mod client_plan;
pub mod dummy;
pub mod epsilon;
pub mod error;
pub mod exact;
pub mod laplace;
pub mod mechanism;
pub mod plan;
pub mod schedule;
pub mod stats;

pub use audit::{epsilon_lower_bound, EpsilonLowerBound, TestOutcomes};
pub use check::{check_dummy_counts, CountCheck, CHECK_Z_DEFAULT};
pub use client_plan::ClientCoverPlan;
pub use dummy::build_dummy_proof;
pub use epsilon::Epsilon;
pub use error::{CheckError, CoverConfigError, DummyError, ScheduleError};
pub use laplace::DiscreteLaplace;
pub use mechanism::{CountMoments, CoverMechanism, DummyDraw};
pub use plan::CoverPlan;
pub use schedule::{CoverSchedule, DummySlot, RoundSpec, ROUND_US_DEFAULT};
