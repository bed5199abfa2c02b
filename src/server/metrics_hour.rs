//! Hourly figures: values that change only at hour boundaries, so that no two scrapes of `/metrics` less than
//! an hour apart can tell how much real (non-cover) traffic arrived between them (docs/PRIVACY.md §Metrics).
//!
//! ```text
//! shard tick (driver passes unix seconds) ─▶ HourWindow::roll(now_s, values)
//!   same hour ─▶ nothing (one atomic load)
//!   new hour  ─▶ last[i] = values[i] − start[i] (counters) or values[i] (levels), published only if the
//!               hour that ended was watched whole; start = values
//! /metrics (any shard) ─▶ HourWindow::last(i), last_end_s()
//! ```
//! The hour the relay started in is never published (it is shorter than an hour), and neither is an hour
//! whose start was seen late (a clock step): a figure over a shorter interval is exactly what this prevents.
//! Written only by the owning shard; read by any shard (relaxed atomics: a scrape racing a roll may mix two
//! hours' figures, each of them whole).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Seconds in the window every hourly figure covers.
pub const HOUR_S: u64 = 3600;
/// A roll this late after the boundary still counts as taken at the boundary (the driver ticks every 100 ms;
/// a stalled executor or a clock step beyond this voids the hour instead).
const ROLL_SLACK_S: u64 = 60;
/// `hour` before the first roll.
const NEVER: u64 = u64::MAX;

/// How a series' hourly figure is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    /// A running total: the figure is its increase over the hour.
    Counter,
    /// A level: the figure is its value at the end of the hour.
    Level,
}

/// One shard's hourly figures for a fixed list of series.
#[derive(Debug)]
pub struct HourWindow {
    /// Hour index (`unix_s / HOUR_S`) of the running hour, or `NEVER`.
    hour: AtomicU64,
    /// Whether the running hour's `start` was taken at its boundary.
    whole: AtomicBool,
    start: Box<[AtomicU64]>,
    last: Box<[AtomicU64]>,
    /// End of the hour `last` covers, unix seconds; 0 until a whole hour has passed.
    last_end_s: AtomicU64,
}

impl HourWindow {
    /// A window over `series` series.
    pub fn new(series: usize) -> Self {
        let zeros = || (0..series).map(|_| AtomicU64::new(0)).collect();
        Self {
            hour: AtomicU64::new(NEVER),
            whole: AtomicBool::new(false),
            start: zeros(),
            last: zeros(),
            last_end_s: AtomicU64::new(0),
        }
    }

    /// At `now_s` (wall clock, from the driver): at an hour change, publishes the hour that ended (if it was
    /// watched whole) and starts the next. `values` (called only then) returns every series' current value,
    /// in the order of `kinds`.
    pub fn roll(&self, now_s: u64, kinds: &[SeriesKind], values: impl FnOnce() -> Vec<u64>) {
        let hour = now_s / HOUR_S;
        let previous = self.hour.load(Relaxed);
        if previous == hour {
            return;
        }
        let values = values();
        debug_assert_eq!(values.len(), kinds.len(), "one value per series");
        let on_time = now_s % HOUR_S < ROLL_SLACK_S;
        if previous != NEVER && hour == previous + 1 && self.whole.load(Relaxed) && on_time {
            for (i, (&value, kind)) in values.iter().zip(kinds).enumerate().take(self.last.len()) {
                let figure = match kind {
                    SeriesKind::Counter => value.saturating_sub(self.start[i].load(Relaxed)),
                    SeriesKind::Level => value,
                };
                self.last[i].store(figure, Relaxed);
            }
            self.last_end_s.store(hour * HOUR_S, Relaxed);
        }
        for (slot, &value) in self.start.iter().zip(&values) {
            slot.store(value, Relaxed);
        }
        self.whole.store(previous != NEVER && on_time, Relaxed);
        self.hour.store(hour, Relaxed);
    }

    /// Series `i`'s figure for the last whole hour (0 before the first).
    pub fn last(&self, i: usize) -> u64 {
        self.last.get(i).map_or(0, |v| v.load(Relaxed))
    }

    /// End of the hour the figures cover, unix seconds (0: no whole hour yet).
    pub fn last_end_s(&self) -> u64 {
        self.last_end_s.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [SeriesKind; 2] = [SeriesKind::Counter, SeriesKind::Level];

    #[test]
    fn only_whole_hours_are_published() {
        let w = HourWindow::new(2);
        // Started mid-hour: that hour is never published.
        w.roll(10 * HOUR_S + 1800, &KINDS, || vec![5, 1]);
        assert_eq!((w.last(0), w.last(1), w.last_end_s()), (0, 0, 0));
        // Within the hour nothing changes, whatever the values.
        w.roll(10 * HOUR_S + 3599, &KINDS, || unreachable!("same hour: values not read"));
        // The first boundary ends a partial hour: still nothing, but the next hour is watched whole.
        w.roll(11 * HOUR_S, &KINDS, || vec![100, 2]);
        assert_eq!(w.last_end_s(), 0);
        w.roll(12 * HOUR_S + 1, &KINDS, || vec![130, 7]);
        assert_eq!((w.last(0), w.last(1), w.last_end_s()), (30, 7, 12 * HOUR_S));
        // A clock step over an hour voids the hour it lands in and the one it skipped.
        w.roll(14 * HOUR_S + 600, &KINDS, || vec![500, 9]);
        assert_eq!((w.last(0), w.last_end_s()), (30, 12 * HOUR_S));
        w.roll(15 * HOUR_S, &KINDS, || vec![600, 9]);
        assert_eq!((w.last(0), w.last_end_s()), (30, 12 * HOUR_S));
        w.roll(16 * HOUR_S + 2, &KINDS, || vec![640, 3]);
        assert_eq!((w.last(0), w.last(1), w.last_end_s()), (40, 3, 16 * HOUR_S));
    }
}
