//! Recovery scanning: classify every slot of a fixed-record file and find where the file really ends.
//!
//! ```text
//! blocks ──push_block──▶ per slot: blank | valid | invalid (CRC, structure, wrong seq)
//!                         │
//!                         ▼ finish()
//! end = last valid slot + 1          ──▶ next append goes here
//! invalid ≥ end                      ──▶ torn tail: zeroed (truncated), counted
//! invalid in [end − in_flight, end)  ──▶ torn holes: an interrupted commit wrote later sectors first; skipped
//! invalid < end − in_flight          ──▶ corrupt: damage to durable data; reported, skipped, never served
//! ```
//!
//! "in_flight" is the most slots one commit can write (recorded in the file header), so a hole further back
//! than one commit cannot be explained by a crash and is reported as corruption. The scanner is fed block
//! by block and keeps O(invalid runs) state, bounded by the file's capacity.

use std::collections::VecDeque;

use super::format::FileHeader;
use super::layout::SlotLayout;
use super::record::{check_seq, decode_record, is_blank, RecordSeq, RecordView, RECORD_LEN};
use super::BLOCK_LEN;
use crate::proto::derive::Commit;

/// Corrupt slot numbers kept for the report (the count is exact; the list is a sample for the operator).
pub const CORRUPT_SAMPLE_MAX: usize = 16;

/// What a slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotClass {
    /// All zero: never written.
    Blank,
    /// A verified record.
    Valid,
    /// Anything else.
    Invalid,
}

/// The outcome of scanning one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotScan {
    /// Slots looked at.
    pub slots_scanned: u64,
    /// Valid slots.
    pub valid: u64,
    /// One past the last valid slot: where the next append goes.
    pub end_slot: u64,
    /// One past the last non-blank slot: truncation zeroes `[end_slot, dirty_to_slot)`.
    pub dirty_to_slot: u64,
    /// Non-blank invalid slots at or after `end_slot` (torn tail, truncated).
    pub torn_tail: u64,
    /// Invalid slots within one commit before `end_slot` (interrupted commit, skipped).
    pub torn_holes: u64,
    /// Invalid slots further back (corruption, reported and skipped).
    pub corrupt: u64,
    /// The first `CORRUPT_SAMPLE_MAX` corrupt slots.
    pub corrupt_sample: Vec<u64>,
    /// Blocks whose padding after the last slot is not zero.
    pub nonzero_padding_blocks: u64,
    /// Image of the block holding `end_slot` when that block is partly filled: valid records up to
    /// `end_slot`, zero after (what the next commit rewrites).
    pub tail_block: Option<Box<[u8; BLOCK_LEN]>>,
}

impl SlotScan {
    /// Where appends resume: after the last non-blank slot (`dirty_to_slot`), so a seq or slot that ever held
    /// bytes — even torn ones — is never reused, and with the image of the block it falls in (valid records
    /// up to `end_slot`, zero after; `None` at a block boundary).
    pub fn resume(&self, layout: SlotLayout) -> (u64, Option<Box<[u8; BLOCK_LEN]>>) {
        let next = self.dirty_to_slot;
        if next.is_multiple_of(layout.per_block()) {
            return (next, None);
        }
        let same_block = layout.block_of(next) == layout.block_of(self.end_slot);
        let image = match &self.tail_block {
            Some(t) if same_block => t.clone(),
            _ => Box::new([0u8; BLOCK_LEN]),
        };
        (next, Some(image))
    }
}

/// Incremental slot scanner.
#[derive(Debug)]
pub struct SlotScanner {
    layout: SlotLayout,
    records_max: u64,
    in_flight_slots_max: u64,
    /// Slots below this are out of reach of any commit that could have been in flight (see
    /// [`SlotScanner::with_reach_from_slot`]).
    reach_from_slot: u64,
    next_block: u64,
    last_valid: Option<u64>,
    last_nonblank: Option<u64>,
    /// Invalid runs `(first_slot, len)` not yet known to be corrupt (they may still turn out torn).
    pending_invalid: VecDeque<(u64, u64)>,
    scan: SlotScan,
    /// Image of the block holding the last valid slot.
    last_valid_block: Option<Box<[u8; BLOCK_LEN]>>,
}

impl SlotScanner {
    /// A scanner for a file with this layout, capacity (`0` = unbounded) and in-flight window.
    pub fn new(layout: SlotLayout, records_max: u32, in_flight_slots_max: u32) -> Self {
        Self {
            layout,
            records_max: if records_max == 0 { u64::MAX } else { records_max as u64 },
            in_flight_slots_max: in_flight_slots_max as u64,
            reach_from_slot: 0,
            next_block: 0,
            last_valid: None,
            last_nonblank: None,
            pending_invalid: VecDeque::new(),
            scan: SlotScan::default(),
            last_valid_block: None,
        }
    }

    /// Scanner for a file described by `header`.
    pub fn for_header(header: &FileHeader) -> Self {
        Self::new(SlotLayout::new(header.record_len as usize), header.records_max, header.in_flight_slots_max)
    }

    /// Declares that no commit in flight at the crash can have touched slots below `slot` (the driver knows
    /// this for older segments from the newest segment's first seq: a commit spans at most
    /// `in_flight_slots_max` slots before the log's end). Invalid slots below it are corrupt, not torn.
    pub fn with_reach_from_slot(mut self, slot: u64) -> Self {
        self.reach_from_slot = slot;
        self
    }

    fn horizon(&self, end: u64) -> u64 {
        end.saturating_sub(self.in_flight_slots_max).max(self.reach_from_slot)
    }

    /// Feeds the next block (blocks are fed in file order, starting after the header). `classify` is called
    /// for every non-blank slot inside the capacity.
    pub fn push_block(&mut self, block: &[u8; BLOCK_LEN], mut classify: impl FnMut(u64, &[u8]) -> SlotClass) {
        let per_block = self.layout.per_block();
        let len = self.layout.record_len();
        let first_slot = self.next_block * per_block;
        self.next_block += 1;
        let mut valid_here = false;
        for i in 0..per_block {
            let slot = first_slot + i;
            let bytes = &block[i as usize * len..(i as usize + 1) * len];
            self.scan.slots_scanned += 1;
            if is_blank(bytes) {
                continue;
            }
            self.last_nonblank = Some(slot);
            let class = if slot < self.records_max { classify(slot, bytes) } else { SlotClass::Invalid };
            match class {
                SlotClass::Blank => {}
                SlotClass::Valid => {
                    self.scan.valid += 1;
                    self.last_valid = Some(slot);
                    valid_here = true;
                }
                SlotClass::Invalid => self.note_invalid(slot),
            }
        }
        if block[per_block as usize * len..].iter().any(|&b| b != 0) {
            self.scan.nonzero_padding_blocks += 1;
        }
        if valid_here {
            self.last_valid_block = Some(Box::new(*block));
        }
        self.settle_corrupt();
    }

    fn note_invalid(&mut self, slot: u64) {
        match self.pending_invalid.back_mut() {
            Some((start, len)) if *start + *len == slot => *len += 1,
            _ => self.pending_invalid.push_back((slot, 1)),
        }
    }

    /// Invalid slots more than one commit before the current end stay corrupt whatever comes later (the end
    /// only moves forward), so they leave the pending list and are counted now.
    fn settle_corrupt(&mut self) {
        let horizon = self.horizon(self.last_valid.map_or(0, |v| v + 1));
        while let Some(&(start, len)) = self.pending_invalid.front() {
            if start >= horizon {
                break;
            }
            let settled = len.min(horizon - start);
            self.count_corrupt(start, settled);
            if settled == len {
                self.pending_invalid.pop_front();
            } else {
                self.pending_invalid[0] = (start + settled, len - settled);
            }
        }
    }

    fn count_corrupt(&mut self, start: u64, len: u64) {
        self.scan.corrupt += len;
        let room = CORRUPT_SAMPLE_MAX.saturating_sub(self.scan.corrupt_sample.len()) as u64;
        self.scan.corrupt_sample.extend(start..start + len.min(room));
    }

    /// Classifies what is left and returns the scan.
    pub fn finish(mut self) -> SlotScan {
        let end = self.last_valid.map_or(0, |v| v + 1);
        let horizon = self.horizon(end);
        for (start, len) in std::mem::take(&mut self.pending_invalid) {
            for slot in start..start + len {
                if slot < horizon {
                    self.count_corrupt(slot, 1);
                } else if slot >= end {
                    self.scan.torn_tail += 1;
                } else {
                    self.scan.torn_holes += 1;
                }
            }
        }
        self.scan.end_slot = end;
        self.scan.dirty_to_slot = self.last_nonblank.map_or(0, |v| v + 1).max(end);
        if !end.is_multiple_of(self.layout.per_block()) {
            let mut img = self.last_valid_block.take().expect("the block of the last valid slot was kept");
            img[self.layout.slot_in_block(end)..].fill(0);
            self.scan.tail_block = Some(img);
        }
        self.scan
    }
}

/// What the late-match index keeps of a stored proof (`engine::RetainedIndex`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetainedRecord {
    /// The record's seq.
    pub seq: RecordSeq,
    /// Its bucket.
    pub bucket: u16,
    /// Its window.
    pub window_start_s: u64,
    /// Its fingerprint.
    pub fingerprint: [u8; 8],
}

/// Collects what recovery rebuilds from a segment's valid records: the commitments of live windows (the
/// engine's dedup state) and the newest acceptance time (retention).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentFacts {
    /// `(window_start_s, commit)` of records whose window is at or after the dedup horizon, in log order.
    pub live_commits: Vec<(u64, Commit)>,
    /// Every valid record's bucket, window, fingerprint and seq, in log order (the late-match index).
    pub retained: Vec<RetainedRecord>,
    /// Largest `received_at_s` of a valid record.
    pub newest_received_at_s: Option<u64>,
    /// Smallest `received_at_s` of a valid record.
    pub oldest_received_at_s: Option<u64>,
    /// Bit `slot` set when the slot holds a valid record (match records pointing elsewhere are dropped).
    pub valid_slots: Vec<u64>,
}

impl SegmentFacts {
    /// Whether `slot` holds a valid record.
    pub fn is_valid(&self, slot: u64) -> bool {
        self.valid_slots.get((slot / 64) as usize).is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }

    fn set_valid(&mut self, slot: u64) {
        let word = (slot / 64) as usize;
        if self.valid_slots.len() <= word {
            self.valid_slots.resize(word + 1, 0);
        }
        self.valid_slots[word] |= 1 << (slot % 64);
    }
}

/// Classifies proof-record slots of one segment and gathers [`SegmentFacts`].
#[derive(Debug)]
pub struct SegmentScanner {
    header: FileHeader,
    slots: SlotScanner,
    dedup_from_window_s: u64,
    facts: SegmentFacts,
}

impl SegmentScanner {
    /// Scanner for the segment described by `header`; windows starting at or after `dedup_from_window_s` have
    /// their commitments collected. `newest_first_seq` is the first seq of the log's newest segment: holes
    /// more than one commit before it are corruption, whatever this file's own end.
    pub fn new(header: FileHeader, dedup_from_window_s: u64, newest_first_seq: u64) -> Self {
        debug_assert_eq!(header.record_len as usize, RECORD_LEN);
        let reach = newest_first_seq.saturating_sub(header.in_flight_slots_max as u64);
        let slots =
            SlotScanner::for_header(&header).with_reach_from_slot(reach.saturating_sub(header.first_record_seq));
        Self { slots, header, dedup_from_window_s, facts: SegmentFacts::default() }
    }

    /// Feeds the next block of the segment.
    pub fn push_block(&mut self, block: &[u8; BLOCK_LEN]) {
        let first_seq = self.header.first_record_seq;
        let (facts, from) = (&mut self.facts, self.dedup_from_window_s);
        self.slots.push_block(block, |slot, bytes| {
            let bytes: &[u8; RECORD_LEN] = bytes.try_into().expect("slot is RECORD_LEN bytes");
            match verify(bytes, RecordSeq(first_seq + slot)) {
                Ok(view) => {
                    let window = view.proof.window_start();
                    if window >= from {
                        facts.live_commits.push((window, *view.proof.commit()));
                    }
                    facts.retained.push(RetainedRecord {
                        seq: RecordSeq(first_seq + slot),
                        bucket: view.proof.bucket(),
                        window_start_s: window,
                        fingerprint: *view.proof.fingerprint(),
                    });
                    let t = view.received_at_s;
                    facts.newest_received_at_s = Some(facts.newest_received_at_s.map_or(t, |n| n.max(t)));
                    facts.oldest_received_at_s = Some(facts.oldest_received_at_s.map_or(t, |n| n.min(t)));
                    facts.set_valid(slot);
                    SlotClass::Valid
                }
                Err(_) => SlotClass::Invalid,
            }
        });
    }

    /// The slot scan and the facts.
    pub fn finish(self) -> (SlotScan, SegmentFacts) {
        (self.slots.finish(), self.facts)
    }
}

/// Full check of one record slot against the seq its position implies (CRC, structure, seq).
pub fn verify(bytes: &[u8; RECORD_LEN], expected: RecordSeq) -> Result<RecordView<'_>, super::record::RecordError> {
    let view = decode_record(bytes)?;
    check_seq(&view, expected)?;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::format::{FileKind, ShardParams};
    use crate::log::layout::BlockAppender;
    use crate::log::record::encode_record;
    use crate::proto::params::CIPHERTEXT_LEN;
    use crate::proto::proof::Proof;

    fn header(in_flight: u32) -> FileHeader {
        FileHeader {
            kind: FileKind::Segment,
            record_len: RECORD_LEN as u32,
            shard: ShardParams::for_shard(0, 1, 64, 10),
            created_at_s: 0,
            file_seq: 0,
            first_record_seq: 100,
            records_max: 70,
            in_flight_slots_max: in_flight,
            bloom_m_bits: 0,
            bloom_k: 0,
        }
    }

    /// Segment body with `n` records (seq 100.., window 1000 + 10·(i/7), received at 2000 + i).
    fn body(n: u64) -> Vec<u8> {
        let mut a = BlockAppender::new(SlotLayout::new(RECORD_LEN), 0, None);
        for i in 0..n {
            let p = Proof::new(1, 1000 + 10 * (i / 7), &[i as u8; 32], &[0; 8], &[7; CIPHERTEXT_LEN]);
            let mut r = [0u8; RECORD_LEN];
            encode_record(RecordSeq(100 + i), 2000 + i, p.view(), &mut r);
            a.push(&r);
        }
        a.take_writes().into_iter().flat_map(|w| w.bytes).collect()
    }

    fn scan(bytes: &[u8], in_flight: u32, dedup_from: u64) -> (SlotScan, SegmentFacts) {
        let mut s = SegmentScanner::new(header(in_flight), dedup_from, 0);
        for block in bytes.chunks_exact(BLOCK_LEN) {
            s.push_block(block.try_into().unwrap());
        }
        s.finish()
    }

    #[test]
    fn clean_segment() {
        let (s, f) = scan(&body(10), 8, 1010);
        assert_eq!((s.valid, s.end_slot, s.dirty_to_slot, s.torn_tail, s.torn_holes, s.corrupt), (10, 10, 10, 0, 0, 0));
        assert_eq!(s.slots_scanned, 14);
        assert_eq!(f.newest_received_at_s, Some(2009));
        assert_eq!(f.oldest_received_at_s, Some(2000));
        // Records 7..10 are in window 1010; earlier ones are before the dedup horizon.
        assert_eq!(f.live_commits, vec![(1010, [7; 32]), (1010, [8; 32]), (1010, [9; 32])]);
        assert!(f.is_valid(0) && f.is_valid(9) && !f.is_valid(10));
        let tail = s.tail_block.clone().unwrap();
        assert_eq!(&tail[..], &body(10)[BLOCK_LEN..]);
        assert_eq!(s.resume(SlotLayout::new(RECORD_LEN)).0, 10);
    }

    #[test]
    fn torn_tail_is_found_and_its_image_cleaned() {
        let mut b = body(12);
        let at = BLOCK_LEN + 4 * 584 + 100; // record 11: slot 4 of block 1
        b[at..at + 200].fill(0x5C);
        let (s, _) = scan(&b, 8, 0);
        assert_eq!((s.valid, s.end_slot, s.dirty_to_slot, s.torn_tail, s.corrupt), (11, 11, 12, 1, 0));
        let tail = s.tail_block.clone().unwrap();
        assert!(tail[4 * 584..].iter().all(|&x| x == 0), "torn slot zeroed in the tail image");
        assert_eq!(&tail[..4 * 584], &b[BLOCK_LEN..BLOCK_LEN + 4 * 584]);
        // Appends resume after the torn slot: its seq is never reused.
        let (next, image) = s.resume(SlotLayout::new(RECORD_LEN));
        assert_eq!(next, 12);
        assert_eq!(&image.unwrap()[..], &tail[..]);
    }

    #[test]
    fn resume_past_a_torn_block_starts_from_a_zero_image() {
        let mut b = body(7);
        b.extend_from_slice(&[0x66; 600]);
        b.resize(2 * BLOCK_LEN, 0);
        let (s, _) = scan(&b, 8, 0);
        assert_eq!((s.end_slot, s.dirty_to_slot, s.torn_tail), (7, 9, 2));
        let (next, image) = s.resume(SlotLayout::new(RECORD_LEN));
        assert_eq!(next, 9);
        assert!(image.unwrap().iter().all(|&x| x == 0));
    }

    #[test]
    fn bit_flip_in_the_middle_is_corrupt_not_the_end() {
        let mut b = body(40);
        b[3 * 584 + 300] ^= 0x01; // slot 3
        let (s, _) = scan(&b, 8, 0);
        assert_eq!((s.valid, s.end_slot, s.torn_tail, s.torn_holes, s.corrupt), (39, 40, 0, 0, 1));
        assert_eq!(s.corrupt_sample, vec![3]);
    }

    #[test]
    fn holes_within_one_commit_of_the_end_are_torn() {
        let mut b = body(40);
        for slot in [35u64, 36] {
            let off = (slot / 7) as usize * BLOCK_LEN + (slot % 7) as usize * 584;
            b[off..off + 584].fill(0);
        }
        let (s, _) = scan(&b, 8, 0);
        // Blank holes are not invalid; make one of them garbage instead.
        assert_eq!((s.valid, s.end_slot, s.torn_holes), (38, 40, 0));
        let off = 5 * BLOCK_LEN; // slot 35
        b[off..off + 10].fill(0xFF);
        let (s, _) = scan(&b, 8, 0);
        assert_eq!((s.valid, s.end_slot, s.torn_holes, s.corrupt), (38, 40, 1, 0));
    }

    #[test]
    fn record_at_the_wrong_position_is_invalid() {
        let mut b = body(7);
        let (first, second) = b.split_at_mut(584);
        second[..584].copy_from_slice(&first[..584]); // slot 1 now holds seq 100
        let (s, _) = scan(&b, 8, 0);
        assert_eq!((s.valid, s.end_slot, s.corrupt, s.torn_holes), (6, 7, 0, 1));
    }

    #[test]
    fn old_segments_are_out_of_reach_of_the_last_commit() {
        let mut b = body(14);
        b[584 * 13 + 9] ^= 1; // last slot of this segment: torn if this were the newest segment
        let (s, _) = scan(&b, 8, 0);
        assert_eq!((s.torn_tail, s.corrupt), (1, 0));
        // The newest segment starts at seq 1,000: one commit (8 slots) cannot reach back to seq 113.
        let mut sc = SegmentScanner::new(header(8), 0, 1_000);
        for block in b.chunks_exact(BLOCK_LEN) {
            sc.push_block(block.try_into().unwrap());
        }
        let (s, _) = sc.finish();
        assert_eq!((s.end_slot, s.torn_tail, s.corrupt, s.dirty_to_slot), (13, 0, 1, 14));
    }

    #[test]
    fn nonzero_padding_is_reported() {
        let mut b = body(7);
        b[4090] = 1;
        let (s, _) = scan(&b, 8, 0);
        assert_eq!((s.valid, s.nonzero_padding_blocks), (7, 1));
    }

    #[test]
    fn empty_and_garbage_only_files() {
        let (s, _) = scan(&[0u8; 2 * BLOCK_LEN], 8, 0);
        assert_eq!((s.end_slot, s.dirty_to_slot, s.tail_block.is_none()), (0, 0, true));
        let (s, _) = scan(&[0xA5u8; BLOCK_LEN], 8, 0);
        assert_eq!((s.valid, s.end_slot, s.dirty_to_slot, s.torn_tail), (0, 0, 7, 7));
    }

    #[test]
    fn long_runs_settle_as_corrupt_while_scanning() {
        let mut b = body(70);
        for slot in 0..14u64 {
            let off = (slot / 7) as usize * BLOCK_LEN + (slot % 7) as usize * 584;
            b[off] ^= 0xFF;
        }
        let (s, _) = scan(&b, 8, 0);
        assert_eq!((s.valid, s.end_slot, s.corrupt), (56, 70, 14));
        assert_eq!(s.corrupt_sample.len(), CORRUPT_SAMPLE_MAX.min(14));
        assert_eq!(s.corrupt_sample[..3], [0, 1, 2]);
    }
}
