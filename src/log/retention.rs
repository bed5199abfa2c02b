//! Retention: which whole segments are past the horizon, and when the active segment rolls.
//!
//! ```text
//! segments (oldest → newest):  [seg 4][seg 5][seg 6][seg 7 active]
//! newest received_at + retention ≤ now ?  yes    yes    no      (never deleted while active)
//! plan: delete 4, 5 (and their mailbox companions); oldest retained seq = seg 6's first seq
//! ```
//!
//! Only a prefix is deleted, so "oldest retained seq" is one number that trims every subscriber's mailbox.
//! A segment is deleted when its *newest* record is older than the horizon, so every record is kept at least
//! `retention_s` after it was accepted (a clock stepping backwards delays deletion, never advances it). The
//! active segment is never deleted — its header carries the next record seq across restarts — so when it is
//! entirely past the horizon the plan asks to roll it first; the next plan then deletes it.
//! Segments also roll by age (`span_s_max`), so an idle shard's records do not sit in one segment that can
//! only be deleted when its last, newest record expires.

use super::record::RecordSeq;

/// Default retention: one hour (the README states it; `--retention` overrides). It matches the 360 windows a
/// subscription may reach ahead (`Limits::subscription_windows_ahead_max`), so a recipient offline up to the
/// retention period finds everything addressed to it.
pub const RETENTION_S_DEFAULT: u64 = 3_600;

/// Segments per retention period the age-based roll aims for: deletion then lags the horizon by at most
/// 1/8 of the retention (7.5 minutes at one hour), for 8–9 segment files per shard.
pub const SEGMENTS_PER_RETENTION: u64 = 8;

/// What retention needs to know about one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    /// File sequence (segments are given oldest first).
    pub file_seq: u64,
    /// Seq of the segment's slot 0.
    pub first_record_seq: RecordSeq,
    /// Largest acceptance time of a record in it (`None`: no record).
    pub newest_received_at_s: Option<u64>,
    /// Whether appends go to it.
    pub active: bool,
}

/// The outcome of planning.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Segments (and their mailbox files) to delete, oldest first.
    pub delete: Vec<u64>,
    /// Whether the active segment is entirely past the horizon and should roll so that it can be deleted.
    pub roll_active: bool,
    /// First seq still retained after the deletions (mailbox entries below it are dropped).
    pub oldest_retained_seq: RecordSeq,
}

/// Plans retention at `now_s` over `segments` (oldest first).
pub fn plan(segments: &[SegmentSummary], now_s: u64, retention_s: u64) -> RetentionPlan {
    let expired = |s: &SegmentSummary| s.newest_received_at_s.is_none_or(|t| t.saturating_add(retention_s) <= now_s);
    let mut plan = RetentionPlan::default();
    for s in segments {
        if s.active || !expired(s) {
            plan.oldest_retained_seq = s.first_record_seq;
            plan.roll_active = s.active && s.newest_received_at_s.is_some() && expired(s);
            return plan;
        }
        plan.delete.push(s.file_seq);
    }
    plan
}

/// Whether the active segment should roll before taking a record accepted at `now_s`: it is full, or its
/// oldest record is `span_s_max` old.
pub fn should_roll(
    slots_used: u64,
    records_max: u32,
    oldest_received_at_s: Option<u64>,
    now_s: u64,
    span_s_max: u64,
) -> bool {
    slots_used >= records_max as u64 || oldest_received_at_s.is_some_and(|t| now_s >= t.saturating_add(span_s_max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(file_seq: u64, first: u64, newest: Option<u64>, active: bool) -> SegmentSummary {
        SegmentSummary { file_seq, first_record_seq: RecordSeq(first), newest_received_at_s: newest, active }
    }

    #[test]
    fn deletes_the_expired_prefix_and_nothing_else() {
        let segs = [
            seg(4, 0, Some(100), false),
            seg(5, 70, Some(200), false),
            seg(6, 140, Some(400), false),
            seg(7, 210, Some(500), true),
        ];
        let p = plan(&segs, 3_800, 3_600);
        assert_eq!(p, RetentionPlan { delete: vec![4, 5], roll_active: false, oldest_retained_seq: RecordSeq(140) });
        // The boundary is inclusive: newest + retention == now expires.
        assert_eq!(plan(&segs, 3_700, 3_600).delete, vec![4]);
        assert_eq!(plan(&segs, 3_699, 3_600).delete, Vec::<u64>::new());
    }

    #[test]
    fn a_clock_step_back_in_the_middle_stops_deletion_there() {
        let segs = [
            seg(1, 0, Some(100), false),
            seg(2, 7, Some(9_000), false),
            seg(3, 14, Some(150), false),
            seg(4, 21, None, true),
        ];
        assert_eq!(plan(&segs, 4_000, 3_600).delete, vec![1]);
    }

    #[test]
    fn the_active_segment_rolls_instead_of_being_deleted() {
        let segs = [seg(1, 0, Some(100), false), seg(2, 7, Some(200), true)];
        let p = plan(&segs, 10_000, 3_600);
        assert_eq!(p, RetentionPlan { delete: vec![1], roll_active: true, oldest_retained_seq: RecordSeq(7) });
        // An empty active segment is just kept.
        let p = plan(&[seg(3, 9, None, true)], 10_000, 3_600);
        assert_eq!(p, RetentionPlan { delete: vec![], roll_active: false, oldest_retained_seq: RecordSeq(9) });
    }

    #[test]
    fn empty_sealed_segments_go() {
        let segs = [seg(1, 0, None, false), seg(2, 0, Some(5_000), true)];
        assert_eq!(plan(&segs, 5_001, 3_600).delete, vec![1]);
    }

    #[test]
    fn roll_by_size_or_age() {
        assert!(should_roll(7, 7, Some(0), 1, 450));
        assert!(!should_roll(6, 7, Some(0), 449, 450));
        assert!(should_roll(6, 7, Some(0), 450, 450));
        assert!(!should_roll(0, 7, None, 1_000_000, 450));
    }
}
