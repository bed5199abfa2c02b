//! Storage stalls: what the log does when a commit fails for want of space (or of file descriptors) rather
//! than because the device failed. Pure policy and bookkeeping; `LogState` (state/stall.rs) applies it and
//! the driver executes the retries.
//!
//! ```text
//! commit fails ─▶ classify (driver): ENOSPC, EDQUOT, EMFILE, ENFILE, short write ─▶ recoverable ─▶ stall
//!                                    anything else (EIO, …) ───────────────────────▶ fatal ─▶ poisoned (fail-stop)
//! stall: the failed job and every later one are parked (kept by the driver, nothing acknowledged from them)
//!        ─▶ no new job is taken; the server refuses PUBLISH with ERROR(STORAGE) and skips cover traffic
//!        ─▶ retry due (backoff 100 ms, doubling, at most 1 s) ─▶ the parked jobs run again, oldest first,
//!           one at a time ─▶ all durable: the stall ends, waiting replies are released, new jobs start
//!                        └▶ fails again (recoverable): wait the next backoff;  fatal: poisoned
//! ```
//!
//! Why retrying the same job is safe: a job writes whole blocks at fixed offsets with bytes fixed when it
//! was taken (the tail block it shares with the previous job carries that job's records with identical
//! bytes), so executing it again gives the same disk contents; files it creates hold nothing that was
//! acknowledged, so a retry creates them afresh. A later job may have rewritten the tail block this one
//! ends in, so it is parked too and runs again after this one. Nothing from a parked job is acknowledged
//! before a retry of it completes, and that retry ends with its own fdatasync.
//! Time is an argument (µs on the committer's monotonic clock), never read here.

/// First retry delay after a commit stalled, µs: short, so that a transient shortage (another process's
/// temporary file) costs a fraction of a second.
pub const STALL_RETRY_US_MIN: u64 = 100_000;
/// Longest delay between retries, µs: 1 s. A retry of a still-full disk costs one create or fallocate that
/// fails at once; once space returns, the log resumes within this delay.
pub const STALL_RETRY_US_MAX: u64 = 1_000_000;
/// What a refused publisher is told to wait before publishing again, ms (the `detail` of
/// `ERROR(STORAGE)`): the longest retry delay, after which the log has tried again.
pub const STORAGE_RETRY_AFTER_MS: u32 = (STALL_RETRY_US_MAX / 1_000) as u32;

/// One storage stall: since when, how many attempts failed, when the next retry is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageStall {
    /// When the first commit failed, µs.
    pub since_us: u64,
    /// Failed attempts so far (the first commit counts).
    pub failures: u32,
    /// When the parked jobs may run again, µs.
    pub next_retry_us: u64,
}

impl StorageStall {
    /// A stall whose first failure was at `now_us`.
    pub fn new(now_us: u64) -> Self {
        Self { since_us: now_us, failures: 1, next_retry_us: now_us.saturating_add(STALL_RETRY_US_MIN) }
    }

    /// Another attempt failed at `now_us`: wait twice as long as last time, at most [`STALL_RETRY_US_MAX`].
    pub fn failed_again(&mut self, now_us: u64) {
        self.failures = self.failures.saturating_add(1);
        self.next_retry_us = now_us.saturating_add(Self::backoff_us(self.failures));
    }

    /// Delay after the `failures`-th failure: 100 ms, 200 ms, 400 ms, 800 ms, then 1 s.
    pub fn backoff_us(failures: u32) -> u64 {
        let doublings = failures.saturating_sub(1).min(16);
        (STALL_RETRY_US_MIN << doublings).min(STALL_RETRY_US_MAX)
    }

    /// Whether a retry is due at `now_us`.
    pub fn retry_due(&self, now_us: u64) -> bool {
        now_us >= self.next_retry_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_100_ms_to_at_most_a_second() {
        let mut s = StorageStall::new(5_000);
        assert_eq!((s.since_us, s.failures), (5_000, 1));
        assert!(!s.retry_due(5_000 + STALL_RETRY_US_MIN - 1));
        assert!(s.retry_due(5_000 + STALL_RETRY_US_MIN));
        let delays: Vec<u64> = (0..7)
            .map(|_| {
                s.failed_again(1_000_000);
                s.next_retry_us - 1_000_000
            })
            .collect();
        assert_eq!(delays, vec![200_000, 400_000, 800_000, 1_000_000, 1_000_000, 1_000_000, 1_000_000]);
        assert_eq!(s.since_us, 5_000, "the stall keeps its start");
        assert_eq!(StorageStall::backoff_us(u32::MAX), STALL_RETRY_US_MAX);
        assert_eq!(STORAGE_RETRY_AFTER_MS, 1_000);
    }
}
