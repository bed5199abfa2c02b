//! The driver's clocks, in one place: wall-clock time since the Unix epoch at the resolution each caller needs,
//! and the calling thread's CPU time.
//!
//! ```text
//! SystemTime::now() ─▶ unix_now_s  (windows, records, retention, the client's state)
//!                   ─▶ unix_now_ms (the load generator's windows and publish stamps)
//!                   ─▶ unix_now_us (cover rounds, aligned on wall-clock µs like windows)
//!                   ─▶ unix_now_ns (unique names of temporary directories)
//! CLOCK_THREAD_CPUTIME_ID ─▶ thread_cpu_ns (`tessera perf` and the benches: per-core CPU time)
//! ```
//! A wall clock set before 1970 reads as 0 rather than failing: every caller treats time as best effort, and
//! the sans-IO cores that consume it are written to tolerate a clock that jumps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time since the Unix epoch (zero if the clock is set before it).
fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Seconds since the Unix epoch.
pub fn unix_now_s() -> u64 {
    since_epoch().as_secs()
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> u64 {
    since_epoch().as_millis() as u64
}

/// Microseconds since the Unix epoch.
pub fn unix_now_us() -> u64 {
    since_epoch().as_micros() as u64
}

/// Nanoseconds since the Unix epoch (u128: a u64 of nanoseconds ends in 2554).
pub fn unix_now_ns() -> u128 {
    since_epoch().as_nanos()
}

/// CPU time consumed by the calling thread, nanoseconds (`CLOCK_THREAD_CPUTIME_ID`): what benchmarks and
/// `tessera perf` report per core on a shared machine (time spent preempted is left out).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and CLOCK_THREAD_CPUTIME_ID is
    // supported on every Linux this project runs on (glommio needs ≥ 5.8).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    // Only EINVAL/EFAULT are possible, and neither can happen with the arguments above.
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_advances_with_work() {
        let start = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(thread_cpu_ns() > start, "{x}");
    }

    #[test]
    fn wall_clock_resolutions_agree() {
        let (s, ms, us, ns) = (unix_now_s(), unix_now_ms(), unix_now_us(), unix_now_ns());
        assert!(s > 1_600_000_000, "the clock is set: {s}");
        // Read in order, each at least the previous one scaled (and within a second of it).
        assert!(ms / 1_000 >= s && ms / 1_000 <= s + 1, "{s} {ms}");
        assert!(us / 1_000 >= ms && us / 1_000 <= ms + 1_000, "{ms} {us}");
        assert!(ns / 1_000 >= u128::from(us) && ns / 1_000 <= u128::from(us) + 1_000_000, "{us} {ns}");
    }
}
