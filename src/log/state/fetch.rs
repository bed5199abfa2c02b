//! The read side of [`LogState`]: where a record is, and what one FETCH page returns.
//!
//! ```text
//! seq ──▶ segment_index (binary search on first seqs) ──▶ locate ──▶ RecordLocation { file_seq, offset }
//! fetch(key, cursor, next_token) ──▶ cursor resolved (never below the oldest retained seq)
//!        ──▶ mailbox page of durable matches ──▶ new cursor position stored under next_token (journaled)
//!        ──▶ FetchPlan { reads: locations, next_cursor, more } ──▶ driver reads, verifies, note_fetch_reads
//! ```

use super::{FetchPlan, LogState, RecordLocation, FETCH_PAGE_MAX};
use crate::log::mailbox::{CursorState, SubscriberKey};
use crate::log::record::RecordSeq;

impl LogState {
    /// Index into `segments` of the segment holding `seq`, if any (`record_match` uses it too).
    pub(super) fn segment_index(&self, seq: RecordSeq) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.first_seq() <= seq.0).checked_sub(1)?;
        (seq.0 < self.segments[i].end_seq()).then_some(i)
    }

    /// Where the placed record `seq` is (`None`: deleted, not yet placed, or never assigned).
    pub fn locate(&self, seq: RecordSeq) -> Option<RecordLocation> {
        let seg = &self.segments[self.segment_index(seq)?];
        let slot = seq.0 - seg.first_seq();
        Some(RecordLocation { seq, file_seq: seg.header.file_seq, offset: seg.records.layout().slot_offset(slot) })
    }

    /// Every segment's `(file_seq, first seq, end seq)`, oldest first (for reading everything back).
    pub fn segment_ranges(&self) -> Vec<(u64, RecordSeq, RecordSeq)> {
        self.segments.iter().map(|s| (s.header.file_seq, RecordSeq(s.first_seq()), RecordSeq(s.end_seq()))).collect()
    }

    /// Plans one FETCH page for `key` from `cursor`; when the page is not empty its new position is stored
    /// under `next_token` (chosen by the caller, non-zero, the same on every shard for one FETCH) and
    /// persisted with the next commit.
    pub fn fetch(
        &mut self,
        key: SubscriberKey,
        cursor: u64,
        next_token: u64,
        proofs_max: usize,
        now_us: u64,
    ) -> FetchPlan {
        let state: CursorState = self.subs.get(&key).map(|s| s.cursor).unwrap_or_default();
        let start = state.resolve(cursor).max(self.oldest_retained_seq);
        let max = proofs_max.clamp(1, FETCH_PAGE_MAX);
        let page = self.mailbox.page(&key, start, self.durable_through, max);
        self.counters.fetches += 1;
        debug_assert!(next_token != 0, "token 0 means 'from the oldest'");
        if page.seqs.is_empty() {
            // Remember `next_token` here too, at the same position: on a relay with several shards, the reply
            // carries it whenever another shard's page was not empty, and a shard that did not know it would
            // start over from its oldest entry — and two shards could keep restarting each other forever.
            // (Only for a known subscriber: a FETCH for an unknown id creates no state.)
            if self.subs.get(&key).is_some() {
                self.subs.set_cursor(key, state.advance(cursor, start, next_token, start));
                self.commit.on_staged(1, now_us);
            }
            return FetchPlan { reads: Vec::new(), next_cursor: cursor, more: false };
        }
        self.subs.set_cursor(key, state.advance(cursor, start, next_token, page.next_pos));
        self.commit.on_staged(1, now_us);
        let reads = page.seqs.iter().filter_map(|&s| self.locate(s)).collect();
        FetchPlan { reads, next_cursor: next_token, more: page.more }
    }

    /// Counts what a FETCH read: `served` records returned, `skipped` failing verification (never served).
    pub fn note_fetch_reads(&mut self, served: u64, skipped: u64) {
        self.counters.fetch_records_served += served;
        self.counters.fetch_records_skipped_corrupt += skipped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::state::test_support::{config, proof, run};

    #[test]
    fn fetch_pages_advance_the_cursor_and_only_serve_durable_records() {
        let mut s = LogState::new(config()).unwrap();
        let mut disk = Default::default();
        let k = SubscriberKey([1; 16]);
        for i in 0..10 {
            s.append(proof(i).view(), 100, 0).unwrap();
            if i % 3 == 0 {
                s.record_match(k, RecordSeq(i), 0).unwrap();
            }
        }
        let p = s.fetch(k, 0, 11, 2, 0);
        assert_eq!(p, FetchPlan { reads: vec![], next_cursor: 0, more: false }, "nothing durable yet");
        run(&mut s, 100, &mut disk);
        let p = s.fetch(k, 0, 11, 2, 0);
        assert_eq!(p.reads.iter().map(|r| r.seq.0).collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!((p.next_cursor, p.more), (11, true));
        let p2 = s.fetch(k, 11, 12, 2, 0);
        assert_eq!(p2.reads.iter().map(|r| r.seq.0).collect::<Vec<_>>(), vec![6, 9]);
        assert_eq!((p2.next_cursor, p2.more), (12, false));
        // The reply with cursor 12 was lost: asking again with 11 replays the same page.
        let p3 = s.fetch(k, 11, 13, 2, 0);
        assert_eq!(p3.reads, p2.reads);
        let p4 = s.fetch(k, 13, 14, 2, 0);
        assert_eq!((p4.reads.len(), p4.next_cursor), (0, 13), "empty page keeps the cursor");
        assert_eq!(s.counters().fetches, 5);
        // Another shard's page was not empty, so the client continues with 14: this shard knows it and
        // stays at its end instead of starting over; the cursor it was given (13) still resolves too.
        let p5 = s.fetch(k, 14, 15, 2, 0);
        assert_eq!((p5.reads.len(), p5.more), (0, false), "a token handed out with an empty page is known");
        let p6 = s.fetch(k, 14, 16, 2, 0);
        assert_eq!(p6.reads.len(), 0, "and the one before it");
        // A FETCH for an id this shard has never seen creates no state.
        let stranger = SubscriberKey([9; 16]);
        s.fetch(stranger, 0, 17, 2, 0);
        assert!(s.subscriptions().get(&stranger).is_none());
    }
}
