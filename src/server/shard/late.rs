//! Late matching: a SUBSCRIBE whose windows reach back before it was applied is matched against the proofs
//! this shard already accepted and still retains, so a message sent before its recipient subscribed is not
//! lost (docs/PROTOCOL.md §5.6, docs/STORAGE.md §8).
//!
//! ```text
//! apply_subscribe: windows not covered by a previous entry of the subscriber in the same bucket whose filter
//!   includes the new one's bits ─▶ LateJob queued
//!   (SUBSCRIBED held back; at most LATE_SCANS_PER_CONNECTION_MAX per connection, else ERROR OVERLOADED)
//! driver: poll_late_work ─▶ handle_late_match (one step: ≤ LATE_STEP_PROOFS proofs examined, ~0.3 ms) ─▶ drain
//!   engine.late_match: retained fingerprints of the bucket, windows in range, seq < snapshot ─▶ filter test
//!   ─▶ record_late_match (idempotent: a match already in the mailbox writes nothing)
//! job done ─▶ SUBSCRIBED once durable (a FETCH after it returns the late matches)
//!          ─▶ the subscriber is connected: a FetchRead of the new matches (durable records) ─▶ DELIVER
//! ```
//! Jobs run in arrival order, one step per driver turn between other work, so a late SUBSCRIBE over an hour of a
//! busy bucket costs its shard time in slices and never holds a PUBLISH for long.

use super::{Clock, ShardServer};
use crate::engine::ScanCursor;
use crate::log::mailbox::SubscriberKey;
use crate::log::record::RecordSeq;
use crate::proto::{ErrorCode, SubscribeEntry};
use crate::server::metrics::ShardMetrics;
use crate::server::msg::{ConnAddr, Response};

/// Retained proofs one late-match step examines (≈ 20 ns each: ~0.3 ms a step).
pub const LATE_STEP_PROOFS: usize = 16_384;
/// Late scans one connection may have pending on one shard; more are refused with OVERLOADED (retry).
pub const LATE_SCANS_PER_CONNECTION_MAX: usize = 4;
/// Late matches of one job delivered live (the rest, and these too, are FETCHable).
const LATE_DELIVERIES_MAX: usize = 1_024;

/// One SUBSCRIBE part's late scan.
#[derive(Debug)]
pub(super) struct LateJob {
    origin: ConnAddr,
    subscriber: SubscriberKey,
    entries: Vec<SubscribeEntry>,
    /// (entry index, from, to): the windows to scan, not covered before.
    ranges: Vec<(usize, u64, u64)>,
    at: usize,
    cursor: ScanCursor,
    /// The log's next seq when the SUBSCRIBE was applied: later proofs were matched live.
    seq_end: RecordSeq,
    /// What SUBSCRIBED reports once the scan is done.
    result: Result<u16, ErrorCode>,
    /// New matches, for live delivery (at most LATE_DELIVERIES_MAX).
    delivered: Vec<RecordSeq>,
}

impl ShardServer {
    /// The windows of `entries` that `subscriber` was not already matched against here with a filter that
    /// catches at least as much: (entry index, from, to) ranges to late-match. A window is covered when one of
    /// the subscriber's previous entries (as persisted) for the same bucket spans it with a filter whose bits
    /// include every bit of the new filter — then every proof the new filter matches, the old one matched live.
    /// A changed filter (a contact added mid-range) is scanned again. Call before the entries replace the
    /// previous ones.
    pub(super) fn late_ranges(&self, subscriber: SubscriberKey, entries: &[SubscribeEntry]) -> Vec<(usize, u64, u64)> {
        let w = self.engine.config().window_s.max(1);
        let previous = self.log().subscriptions().get(&subscriber).map_or(&[][..], |s| &s.entries[..]);
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let mut covered: Vec<(u64, u64)> = previous
                .iter()
                .filter(|p| p.bucket == e.bucket && covers(&p.filter, &e.filter))
                .map(|p| (p.window_from_s, p.window_to_s))
                .collect();
            covered.sort_unstable();
            for (from, to) in uncovered((e.window_from_s, e.window_to_s), &covered, w) {
                out.push((i, from, to));
            }
        }
        out
    }

    /// Late scans pending for connection `origin`.
    fn late_pending(&self, origin: ConnAddr) -> usize {
        self.late_jobs.iter().filter(|j| j.origin == origin).count()
    }

    /// Whether a late scan for `origin` may be queued now (counts a refusal when not).
    pub(super) fn late_admit(&self, origin: ConnAddr) -> bool {
        let ok = self.late_pending(origin) < LATE_SCANS_PER_CONNECTION_MAX;
        if !ok {
            ShardMetrics::add(&self.m().late_scans_refused, 1);
        }
        ok
    }

    /// Queues the late scan of an applied SUBSCRIBE part; its SUBSCRIBED goes out when the scan is done.
    pub(super) fn queue_late_scan(
        &mut self,
        origin: ConnAddr,
        subscriber: SubscriberKey,
        entries: Vec<SubscribeEntry>,
        ranges: Vec<(usize, u64, u64)>,
        result: Result<u16, ErrorCode>,
    ) {
        debug_assert!(!ranges.is_empty() && ranges.iter().all(|&(i, from, to)| i < entries.len() && from <= to));
        let seq_end = self.log().next_seq();
        ShardMetrics::add(&self.m().late_scans, 1);
        self.late_jobs.push_back(LateJob {
            origin,
            subscriber,
            entries,
            ranges,
            at: 0,
            cursor: ScanCursor::default(),
            seq_end,
            result,
            delivered: Vec::new(),
        });
        ShardMetrics::set(&self.m().late_scans_pending, self.late_jobs.len() as u64);
    }

    /// Whether late scans are pending (the driver then calls [`handle_late_match`](Self::handle_late_match)
    /// between its other work until this is false).
    pub fn poll_late_work(&self) -> bool {
        !self.late_jobs.is_empty()
    }

    /// One bounded step of late matching (at most `LATE_STEP_PROOFS` proofs examined); drain after it.
    pub fn handle_late_match(&mut self, clock: Clock) {
        self.begin(clock);
        let mut budget = LATE_STEP_PROOFS;
        let mut matched = Vec::new();
        while budget > 0 {
            let Some(job) = self.late_jobs.front_mut() else { break };
            let Some(&(entry, from, to)) = job.ranges.get(job.at) else {
                self.finish_late_job(clock);
                continue;
            };
            let bucket = job.entries[entry].bucket;
            matched.clear();
            let step = self.engine.late_match(
                bucket,
                (from, to),
                job.seq_end,
                &job.entries[entry].filter,
                &mut job.cursor,
                budget,
                &mut matched,
            );
            budget = budget.saturating_sub(step.examined.max(1));
            if step.done {
                job.at += 1;
                job.cursor = ScanCursor::default();
            }
            let subscriber = job.subscriber;
            let mut new = 0u64;
            for &seq in &matched {
                match self.engine.log_mut().record_late_match(subscriber, seq) {
                    Ok(true) => {
                        new += 1;
                        let job = self.late_jobs.front_mut().expect("the job being scanned");
                        if job.delivered.len() < LATE_DELIVERIES_MAX {
                            job.delivered.push(seq);
                        }
                    }
                    Ok(false) => {}
                    Err(e) => tracing::error!(shard = self.id, error = %e, "late match refused by the log"),
                }
            }
            let m = &self.metrics[self.id as usize];
            ShardMetrics::add(&m.late_proofs_examined, step.examined as u64);
            ShardMetrics::add(&m.late_matches, new);
        }
        ShardMetrics::set(&self.m().late_scans_pending, self.late_jobs.len() as u64);
    }

    /// The front job scanned every range: answer SUBSCRIBED once durable, deliver the new matches if the
    /// subscriber is connected.
    fn finish_late_job(&mut self, clock: Clock) {
        let Some(job) = self.late_jobs.pop_front() else { return };
        let response = Response::Subscribed { conn: job.origin.conn, subscriber: job.subscriber, result: job.result };
        self.respond_when_durable(job.origin.shard as usize, response, clock);
        let Some(&addr) = self.directory.get(&job.subscriber) else { return };
        let durable = self.log().durable_through();
        let reads: Vec<_> = job
            .delivered
            .iter()
            .filter(|&&seq| durable.is_some_and(|d| seq <= d))
            .filter_map(|&seq| self.log().locate(seq))
            .collect();
        if !reads.is_empty() {
            self.queue_delivery_read(addr, job.subscriber, reads);
        }
    }

    /// Sends the proofs a late scan read for `subscriber` to its connection `addr`.
    pub(super) fn deliver_read(
        &mut self,
        addr: ConnAddr,
        subscriber: SubscriberKey,
        proofs: Vec<bytes::Bytes>,
        clock: Clock,
    ) {
        if addr.shard == self.id {
            for proof in proofs {
                self.deliver_local(addr.conn, subscriber, proof, clock.mono_us, clock);
            }
        } else if !proofs.is_empty() {
            let response = Response::Deliver { conn: addr.conn, subscriber, proofs, received_us: clock.mono_us };
            self.send_response(addr.shard as usize, response, clock);
        }
    }
}

/// Whether every bit of `new` is set in `old` (then anything `new` matches, `old` matched).
fn covers(old: &crate::proto::BloomFilter, new: &crate::proto::BloomFilter) -> bool {
    old.params() == new.params() && old.as_bytes().iter().zip(new.as_bytes()).all(|(o, n)| n & !o == 0)
}

/// The parts of the inclusive window range `want` not covered by any of `covered` (sorted), in windows of
/// `w` seconds.
fn uncovered(want: (u64, u64), covered: &[(u64, u64)], w: u64) -> Vec<(u64, u64)> {
    let (mut from, to) = want;
    let mut out = Vec::new();
    for &(c_from, c_to) in covered {
        if c_to < from || c_from > to {
            continue;
        }
        if c_from > from {
            out.push((from, c_from - w));
        }
        from = from.max(c_to.saturating_add(w));
        if from > to {
            return out;
        }
    }
    if from <= to {
        out.push((from, to));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{covers, uncovered};
    use crate::proto::{BloomFilter, BloomParams};

    #[test]
    fn a_filter_covers_another_when_it_has_all_its_bits() {
        let mut old = BloomFilter::new(BloomParams::default());
        old.insert_fingerprint(&[1; 8]);
        old.insert_fingerprint(&[2; 8]);
        let mut same = BloomFilter::new(BloomParams::default());
        same.insert_fingerprint(&[2; 8]);
        assert!(covers(&old, &same) && covers(&old, &old));
        let mut grown = old.clone();
        grown.insert_fingerprint(&[3; 8]);
        assert!(!covers(&old, &grown), "a filter with a new contact's fingerprints needs a late scan");
    }

    #[test]
    fn uncovered_windows_are_what_no_previous_entry_covered() {
        assert_eq!(uncovered((100, 200), &[], 10), vec![(100, 200)]);
        assert_eq!(uncovered((100, 200), &[(100, 200)], 10), vec![]);
        assert_eq!(uncovered((100, 200), &[(150, 300)], 10), vec![(100, 140)]);
        assert_eq!(uncovered((100, 200), &[(0, 120), (150, 160)], 10), vec![(130, 140), (170, 200)]);
        assert_eq!(uncovered((100, 200), &[(0, 50), (300, 400)], 10), vec![(100, 200)]);
    }
}
