//! Per-proof checks before a proof may touch shared state: claimed bucket, window, then derivations.
//!
//! ```text
//! claimed bucket < num_buckets? ─▶ owned by this shard? ─▶ window aligned? ─▶ not ahead of now+skew?
//!   ─▶ not before the previous window of now−skew? ─▶ SHA-256(commit) gives the bucket?
//!   ─▶ SHA-256(commit ‖ window) gives the fingerprint? ─▶ accepted (then dedup)
//! ```
//! The cheap field checks run first so that hostile proofs cost no hashing. The two derivation hashes are
//! computed by the caller (batched, `crate::engine::hashing`); this file only compares.

use crate::proto::derive::Fingerprint;
use crate::proto::{ErrorCode, ProofRef};

use super::config::EngineConfig;

/// Why a proof was refused. Each reason has its own counter and ERROR code; a rejected proof changes
/// nothing else in the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The proof's bucket belongs to another shard. The server routes by the claimed bucket, so this
    /// means a misrouted proof, not a misbehaving publisher.
    #[error("bucket is owned by another shard")]
    BucketNotOwned,
    /// The claimed bucket is `>= num_buckets` or is not the one derived from the commit.
    #[error("bucket is not the one derived from the commit")]
    BadBucket,
    /// The fingerprint is not the one derived from the commit and window.
    #[error("fingerprint is not the one derived from the commit and window")]
    BadFingerprint,
    /// The window is older than the previous window (beyond the allowed skew).
    #[error("window is older than the previous window")]
    WindowStale,
    /// The window is ahead of the relay's clock beyond the allowed skew.
    #[error("window is ahead of the relay's clock")]
    WindowFuture,
    /// The window start is not a multiple of the window length.
    #[error("window start is not a multiple of the window length")]
    WindowMisaligned,
    /// The shard's dedup memory for this window is full (`dedup_entries_per_window_max`); retry later.
    #[error("dedup table for this window is full")]
    DedupFull,
    /// The shard's log refused the append: it failed a commit earlier and accepts nothing until the relay
    /// restarts (fail-stop). Never acknowledged.
    #[error("the shard's log failed and accepts nothing more")]
    LogFailed,
}

impl Rejection {
    /// The ERROR code the server sends for this rejection (`detail` = the proof's index in its batch).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Rejection::BucketNotOwned | Rejection::BadBucket => ErrorCode::PROOF_BAD_BUCKET,
            Rejection::BadFingerprint => ErrorCode::PROOF_BAD_FINGERPRINT,
            Rejection::WindowStale => ErrorCode::PROOF_WINDOW_STALE,
            Rejection::WindowFuture => ErrorCode::PROOF_WINDOW_FUTURE,
            Rejection::WindowMisaligned => ErrorCode::PROOF_WINDOW_MISALIGNED,
            Rejection::DedupFull => ErrorCode::OVERLOADED,
            Rejection::LogFailed => ErrorCode::STORAGE,
        }
    }
}

/// The accepted window range at one instant, computed once per batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowCheck {
    /// Window length, seconds.
    pub window_s: u64,
    /// Earliest accepted window start.
    pub earliest_s: u64,
    /// Latest accepted window start.
    pub latest_s: u64,
}

impl WindowCheck {
    /// The range `config` accepts at `now_s`.
    pub fn new(config: &EngineConfig, now_s: u64) -> Self {
        let (earliest_s, latest_s) = config.accepted_windows(now_s);
        Self { window_s: config.window_s, earliest_s, latest_s }
    }

    /// Checks a window start.
    #[inline]
    pub fn check(&self, window_start_s: u64) -> Result<(), Rejection> {
        if !window_start_s.is_multiple_of(self.window_s) {
            Err(Rejection::WindowMisaligned)
        } else if window_start_s > self.latest_s {
            Err(Rejection::WindowFuture)
        } else if window_start_s < self.earliest_s {
            Err(Rejection::WindowStale)
        } else {
            Ok(())
        }
    }
}

/// The checks that need no hashing: claimed bucket in range and owned, window acceptable.
#[inline]
pub fn check_fields(config: &EngineConfig, windows: &WindowCheck, proof: ProofRef<'_>) -> Result<(), Rejection> {
    let bucket = proof.bucket();
    if bucket >= config.num_buckets {
        return Err(Rejection::BadBucket);
    }
    if !config.owns(bucket) {
        return Err(Rejection::BucketNotOwned);
    }
    windows.check(proof.window_start())
}

/// Compares the claimed bucket and fingerprint with the derived ones: `commit_prefix` =
/// `u16_be(SHA-256(commit)[0..2])`, `derived_fingerprint` = `SHA-256(commit ‖ u64_be(window_start))[0..8]`.
#[inline]
pub fn check_derivations(
    config: &EngineConfig,
    proof: ProofRef<'_>,
    commit_prefix: u16,
    derived_fingerprint: &Fingerprint,
) -> Result<(), Rejection> {
    if commit_prefix % config.num_buckets != proof.bucket() {
        return Err(Rejection::BadBucket);
    }
    if derived_fingerprint != proof.fingerprint() {
        return Err(Rejection::BadFingerprint);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_check_order_and_bounds() {
        let w = WindowCheck { window_s: 10, earliest_s: 990, latest_s: 1000 };
        assert_eq!(w.check(995), Err(Rejection::WindowMisaligned));
        assert_eq!(w.check(1010), Err(Rejection::WindowFuture));
        assert_eq!(w.check(980), Err(Rejection::WindowStale));
        assert_eq!(w.check(990), Ok(()));
        assert_eq!(w.check(1000), Ok(()));
    }

    #[test]
    fn error_codes_are_distinct_where_the_protocol_distinguishes() {
        assert_eq!(Rejection::BadFingerprint.error_code(), ErrorCode::PROOF_BAD_FINGERPRINT);
        assert_eq!(Rejection::WindowStale.error_code(), ErrorCode::PROOF_WINDOW_STALE);
        assert_eq!(Rejection::WindowFuture.error_code(), ErrorCode::PROOF_WINDOW_FUTURE);
        assert_eq!(Rejection::WindowMisaligned.error_code(), ErrorCode::PROOF_WINDOW_MISALIGNED);
        assert_eq!(Rejection::BadBucket.error_code(), ErrorCode::PROOF_BAD_BUCKET);
        assert_eq!(Rejection::DedupFull.error_code(), ErrorCode::OVERLOADED);
    }
}
