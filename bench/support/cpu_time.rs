//! Criterion measurement in thread CPU time instead of wall time, shared by benches with `#[path]`.
//!
//! The build machine is shared: CPU time leaves out the time this thread spent preempted, so the figures are per
//! core even when other jobs run (caches and a busy sibling hyperthread still slow it). Criterion's slope
//! estimate removes the constant cost of reading the clock.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::Criterion;
use tessera::driver::clock::thread_cpu_ns;

/// Thread CPU time as a criterion measurement (formatted like wall time).
pub struct ThreadCpuTime {
    wall: WallTime,
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

/// A criterion configured to measure thread CPU time.
pub fn cpu_time() -> Criterion<ThreadCpuTime> {
    Criterion::default().with_measurement(ThreadCpuTime { wall: WallTime })
}
