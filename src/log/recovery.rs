//! Recovery: from what the driver found on disk to a [`LogState`] that continues where the log really ends.
//!
//! ```text
//! driver: list shard dir ─▶ per segment: header check ─▶ SegmentScanner over its blocks ─▶ RecoveredSegment
//!                                        per .mbx:    MailboxScanner (drops matches to invalid records)
//!                          journal:  JournalReplay ─▶ RecoveredJournal
//! assemble(...) ─▶ Recovery { state, truncations (zero torn tails, then fdatasync), report }
//! ```
//!
//! Appends resume after the last non-blank slot of the newest segment, so a seq that ever held bytes — a
//! torn record, or a seq a dangling match record names — is never given to another proof. Every seq below
//! that point is durable or a hole; holes are never served (FETCH verifies every record it reads).

use super::config::LogConfig;
use super::counters::LogCounters;
use super::format::{FileHeader, FileKind};
use super::job::{FileId, FileWrite};
use super::layout::{truncation_writes, BlockAppender, SlotLayout};
use super::mailbox::{Mailbox, MatchRecord, MATCH_RECORD_LEN};
use super::record::RECORD_LEN;
use super::scan::{SegmentFacts, SlotClass, SlotScan, SlotScanner};
use super::state::{LogState, SegmentState};
use super::subscriptions::{record_len_for, ReplayStats, SubscriptionError, SubscriptionTable};
use super::BLOCK_LEN;
use crate::proto::derive::Commit;

/// Why a shard's log cannot be opened. Damage to records is not an error (it is reported and skipped);
/// these are conditions where serving would be wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A file was written for other shard or routing parameters (changing `--shards` needs a fresh
    /// storage directory: bucket ranges moved between shards).
    #[error("{file}: written for {found:?}, this relay runs {expected:?}")]
    ShardMismatch {
        /// File name.
        file: String,
        /// Parameters in its header.
        found: super::format::ShardParams,
        /// Parameters configured.
        expected: super::format::ShardParams,
    },
    /// A file's header has the wrong kind or record length for its name.
    #[error("{file}: header says {kind:?} with {record_len}-byte records")]
    WrongFileKind {
        /// File name.
        file: String,
        /// Kind in the header.
        kind: FileKind,
        /// Record length in the header.
        record_len: u32,
    },
    /// A journal was written with other Bloom parameters.
    #[error("{file}: subscriptions use Bloom m={m_bits} k={k}, this relay runs m={expected_m_bits} k={expected_k}")]
    BloomMismatch {
        /// File name.
        file: String,
        /// m in the header.
        m_bits: u32,
        /// k in the header.
        k: u8,
        /// m configured.
        expected_m_bits: u32,
        /// k configured.
        expected_k: u8,
    },
    /// A header's seq range does not fit in 64 bits (a damaged or forged header that still has a valid CRC).
    #[error("{file}: first seq {first} + capacity {records_max} overflows")]
    SeqRange {
        /// File name.
        file: String,
        /// First seq in the header.
        first: u64,
        /// Capacity in the header.
        records_max: u32,
    },
    /// Segments overlap in seq space (a file from another log was copied in).
    #[error("segment {file_seq} starts at seq {first}, before the previous segment ends at {previous_end}")]
    SeqOverlap {
        /// The offending segment.
        file_seq: u64,
        /// Its first seq.
        first: u64,
        /// Where the previous one ends.
        previous_end: u64,
    },
    /// The subscription journal cannot be used with this configuration.
    #[error(transparent)]
    Subscriptions(#[from] SubscriptionError),
}

/// Checks a header found in `file` against the configuration and the kind its name says.
pub fn check_header(config: &LogConfig, file: &FileId, h: &FileHeader) -> Result<(), OpenError> {
    let name = file.file_name();
    let record_len_ok = match file.kind {
        FileKind::Segment => h.record_len as usize == RECORD_LEN,
        FileKind::Mailbox => h.record_len as usize == MATCH_RECORD_LEN,
        FileKind::Journal => record_len_for(config.bloom).is_ok_and(|len| len == h.record_len as usize),
    };
    if h.kind != file.kind || !record_len_ok || h.file_seq != file.file_seq {
        return Err(OpenError::WrongFileKind { file: name, kind: h.kind, record_len: h.record_len });
    }
    // Slot seqs are first + slot; a mailbox's capacity is unbounded, so it gets the segment bound.
    let capacity = if h.records_max == 0 { config.segment_records_max } else { h.records_max };
    if h.first_record_seq.checked_add(capacity as u64 + h.in_flight_slots_max as u64).is_none() {
        return Err(OpenError::SeqRange { file: name, first: h.first_record_seq, records_max: h.records_max });
    }
    if h.shard != config.shard {
        return Err(OpenError::ShardMismatch { file: name, found: h.shard, expected: config.shard });
    }
    if h.kind == FileKind::Journal && (h.bloom_m_bits != config.bloom.m_bits || h.bloom_k != config.bloom.k) {
        return Err(OpenError::BloomMismatch {
            file: name,
            m_bits: h.bloom_m_bits,
            k: h.bloom_k,
            expected_m_bits: config.bloom.m_bits,
            expected_k: config.bloom.k,
        });
    }
    Ok(())
}

/// Scans a `.mbx` file into the mailbox index, keeping only matches that point at valid records.
#[derive(Debug)]
pub struct MailboxScanner {
    first_seq: u64,
    slots: SlotScanner,
    /// Matches dropped because their record is not valid (torn, corrupt or never written).
    pub dangling: u64,
    /// Matches inserted.
    pub inserted: u64,
}

impl MailboxScanner {
    /// Scanner for the mailbox file with header `h`.
    pub fn new(h: &FileHeader) -> Self {
        Self { first_seq: h.first_record_seq, slots: SlotScanner::for_header(h), dangling: 0, inserted: 0 }
    }

    /// Feeds the next block; `facts` are the companion segment's (which slots hold valid records).
    pub fn push_block(&mut self, block: &[u8; BLOCK_LEN], facts: &SegmentFacts, mailbox: &mut Mailbox) {
        let (first, dangling, inserted) = (self.first_seq, &mut self.dangling, &mut self.inserted);
        self.slots.push_block(block, |_, bytes| {
            let bytes: &[u8; MATCH_RECORD_LEN] = bytes.try_into().expect("slot is MATCH_RECORD_LEN bytes");
            match MatchRecord::decode(bytes, first..u64::MAX) {
                Ok(m) if facts.is_valid(m.seq.0 - first) => {
                    mailbox.insert(m.key, m.seq);
                    *inserted += 1;
                    SlotClass::Valid
                }
                Ok(_) => {
                    *dangling += 1;
                    SlotClass::Valid
                }
                Err(_) => SlotClass::Invalid,
            }
        });
    }

    /// The slot scan.
    pub fn finish(self) -> SlotScan {
        self.slots.finish()
    }
}

/// A segment as found on disk.
#[derive(Debug)]
pub struct RecoveredSegment {
    /// Its (checked) header.
    pub header: FileHeader,
    /// File length in bytes.
    pub log_len: u64,
    /// Slot scan of the records.
    pub scan: SlotScan,
    /// Facts from its valid records.
    pub facts: SegmentFacts,
    /// Its mailbox companion, when present with a valid header.
    pub mbx: Option<RecoveredMailbox>,
}

/// A mailbox file as found on disk.
#[derive(Debug)]
pub struct RecoveredMailbox {
    /// File length in bytes.
    pub len: u64,
    /// Slot scan of the match records.
    pub scan: SlotScan,
    /// Matches dropped because their record is not valid.
    pub dangling: u64,
}

/// The journal as found on disk.
#[derive(Debug)]
pub struct RecoveredJournal {
    /// Its file sequence.
    pub file_seq: u64,
    /// The rebuilt table.
    pub table: SubscriptionTable,
    /// Slot scan.
    pub scan: SlotScan,
    /// Replay counts.
    pub stats: ReplayStats,
}

/// What recovery found, for the log line and the operator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The recovery counters (also in `LogState::counters`).
    pub counters: LogCounters,
    /// First seq the log will assign.
    pub next_seq: u64,
    /// Up to 16 corrupt records, as `(segment file_seq, slot)`.
    pub corrupt_sample: Vec<(u64, u64)>,
    /// Blocks with non-zero padding (damage that touched no record).
    pub nonzero_padding_blocks: u64,
    /// `(window_start_s, commit)` of every valid record in a live window: the engine's dedup state.
    pub live_commits: Vec<(u64, Commit)>,
    /// Every valid retained record, in log order: the engine's late-match index.
    pub retained: Vec<super::scan::RetainedRecord>,
}

/// The result of assembling a recovered log.
#[derive(Debug)]
pub struct Recovery {
    /// The state, ready to append.
    pub state: LogState,
    /// Writes that zero torn tails; the driver performs them and fdatasyncs before serving.
    pub truncations: Vec<FileWrite>,
    /// What was found.
    pub report: RecoveryReport,
}

/// Builds the state from recovered parts (segments sorted by `file_seq`; their mailboxes already scanned into
/// `mailbox`). `quarantined` and `removed` count files the driver set aside or removed; `seq_floor` is one
/// past the largest seq seen in a quarantined segment — new records start at or after it (and after every
/// persisted FETCH cursor), so a seq is never given to two proofs and no cursor skips a new record.
pub fn assemble(
    config: LogConfig,
    segments: Vec<RecoveredSegment>,
    mailbox: Mailbox,
    journal: Option<RecoveredJournal>,
    quarantined: u64,
    removed: u64,
    seq_floor: u64,
) -> Result<Recovery, OpenError> {
    let mut c =
        LogCounters { recovery_files_quarantined: quarantined, recovery_files_removed: removed, ..Default::default() };
    let mut report = RecoveryReport::default();
    let mut truncations = Vec::new();
    let mut states = Vec::with_capacity(segments.len());
    let mut previous_end = 0u64;
    let seg_layout = config.segment_layout();
    let mbx_layout = SlotLayout::new(MATCH_RECORD_LEN);
    for (i, seg) in segments.into_iter().enumerate() {
        let h = seg.header;
        if i > 0 && h.first_record_seq < previous_end {
            return Err(OpenError::SeqOverlap { file_seq: h.file_seq, first: h.first_record_seq, previous_end });
        }
        let (next_slot, image) = seg.scan.resume(seg_layout);
        previous_end = h.first_record_seq.saturating_add(next_slot);
        c.recovery_segments += 1;
        c.recovery_records += seg.scan.valid;
        c.recovery_torn_truncated += seg.scan.torn_tail;
        c.recovery_torn_holes += seg.scan.torn_holes;
        c.recovery_corrupt_records += seg.scan.corrupt;
        report.nonzero_padding_blocks += seg.scan.nonzero_padding_blocks;
        let room = 16usize.saturating_sub(report.corrupt_sample.len());
        report.corrupt_sample.extend(seg.scan.corrupt_sample.iter().take(room).map(|&s| (h.file_seq, s)));
        let log_id = FileId { kind: FileKind::Segment, file_seq: h.file_seq };
        for write in
            truncation_writes(seg_layout, seg.scan.end_slot, seg.scan.tail_block.as_deref(), seg.scan.dirty_to_slot)
        {
            c.recovery_bytes_zeroed += write.bytes.len() as u64;
            truncations.push(FileWrite { file: log_id, write });
        }
        let (mbx_appender, mbx_len, matches_valid, create_mbx) = match &seg.mbx {
            Some(m) => {
                c.recovery_matches += m.scan.valid - m.dangling;
                c.recovery_matches_invalid += m.scan.torn_tail + m.scan.torn_holes + m.scan.corrupt;
                c.recovery_matches_dangling += m.dangling;
                let mbx_id = FileId { kind: FileKind::Mailbox, file_seq: h.file_seq };
                for write in
                    truncation_writes(mbx_layout, m.scan.end_slot, m.scan.tail_block.as_deref(), m.scan.dirty_to_slot)
                {
                    c.recovery_bytes_zeroed += write.bytes.len() as u64;
                    truncations.push(FileWrite { file: mbx_id, write });
                }
                let (mnext, mimage) = m.scan.resume(mbx_layout);
                (BlockAppender::new(mbx_layout, mnext, mimage.as_deref()), m.len, m.scan.valid - m.dangling, false)
            }
            None => (BlockAppender::new(mbx_layout, 0, None), super::format::HEADER_LEN as u64, 0, true),
        };
        report.live_commits.extend_from_slice(&seg.facts.live_commits);
        report.retained.extend_from_slice(&seg.facts.retained);
        states.push(SegmentState {
            header: h,
            records: BlockAppender::new(seg_layout, next_slot, image.as_deref()),
            matches: mbx_appender,
            log_allocated: seg.log_len,
            mbx_allocated: mbx_len,
            create_log: false,
            create_mbx,
            newest_received_at_s: seg.facts.newest_received_at_s,
            oldest_received_at_s: seg.facts.oldest_received_at_s,
            records_valid: seg.scan.valid,
            matches_valid,
        });
    }
    let (subs, journal_file_seq, journal_exists) = match journal {
        Some(j) => {
            c.recovery_subscribers = j.table.len() as u64;
            c.recovery_journal_incomplete = j.stats.generations_incomplete;
            let id = FileId { kind: FileKind::Journal, file_seq: j.file_seq };
            let layout = SlotLayout::new(j.table.record_len());
            for write in truncation_writes(layout, j.scan.end_slot, j.scan.tail_block.as_deref(), j.scan.dirty_to_slot)
            {
                c.recovery_bytes_zeroed += write.bytes.len() as u64;
                truncations.push(FileWrite { file: id, write });
            }
            (j.table, j.file_seq, true)
        }
        None => (SubscriptionTable::new(config.shard, config.bloom, 0, None)?, 0, false),
    };
    let cursor_floor = subs.iter().map(|(_, s)| s.cursor.pos.0.max(s.cursor.prev_pos.0)).max().unwrap_or(0);
    let files_end = states.last().map_or(0, |s| s.header.first_record_seq.saturating_add(s.records.next_slot()));
    let next_seq = files_end.max(seq_floor).max(cursor_floor);
    let mut state = LogState::assemble(config, states, next_seq, mailbox, subs, journal_file_seq, journal_exists);
    state.counters = c;
    report.counters = state.counters();
    report.next_seq = next_seq;
    Ok(Recovery { state, truncations, report })
}

/// The window from which recovered commitments seed the engine's dedup: the previous window and later at
/// `now_s` (the engine accepts proofs of the current and previous window), minus `skew_windows` more.
pub fn dedup_from_window_s(now_s: u64, window_s: u64, skew_windows: u64) -> u64 {
    crate::proto::derive::window_start(now_s, window_s).saturating_sub(window_s * (1 + skew_windows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::format::ShardParams;
    use crate::log::mailbox::SubscriberKey;
    use crate::log::record::RecordSeq;
    use crate::log::scan::SegmentScanner;
    use crate::proto::params::CIPHERTEXT_LEN;
    use crate::proto::proof::Proof;
    use std::collections::HashMap;

    fn config() -> LogConfig {
        let mut c = LogConfig::new(ShardParams::for_shard(0, 1, 64, 10));
        c.segment_records_max = 21;
        c
    }

    type Disk = HashMap<FileId, Vec<u8>>;

    fn commit(state: &mut LogState, disk: &mut Disk) {
        let job = state.take_job(100, 0).unwrap();
        for c in &job.creates {
            disk.insert(c.file, c.header.to_vec());
        }
        for w in job.writes.iter().map(|w| (w.file, &w.write)) {
            let f = disk.get_mut(&w.0).unwrap();
            let end = w.1.offset as usize + w.1.bytes.len();
            f.resize(f.len().max(end), 0);
            f[w.1.offset as usize..end].copy_from_slice(&w.1.bytes);
        }
        state.complete_job(job.id, 0);
    }

    /// What the driver does at open, over the in-memory disk.
    fn reopen(disk: &Disk) -> Recovery {
        let config = config();
        let mut mailbox = Mailbox::default();
        let mut segs = Vec::new();
        let mut seg_ids: Vec<FileId> = disk.keys().filter(|f| f.kind == FileKind::Segment).copied().collect();
        seg_ids.sort();
        for id in seg_ids {
            let bytes = &disk[&id];
            let header = FileHeader::decode(bytes).unwrap();
            check_header(&config, &id, &header).unwrap();
            let mut s = SegmentScanner::new(header, 1_000, 0);
            for b in bytes[4096..].chunks_exact(BLOCK_LEN) {
                s.push_block(b.try_into().unwrap());
            }
            let (scan, facts) = s.finish();
            let mbx_bytes = &disk[&FileId { kind: FileKind::Mailbox, file_seq: id.file_seq }];
            let mh = FileHeader::decode(mbx_bytes).unwrap();
            let mut ms = MailboxScanner::new(&mh);
            for b in mbx_bytes[4096..].chunks_exact(BLOCK_LEN) {
                ms.push_block(b.try_into().unwrap(), &facts, &mut mailbox);
            }
            let dangling = ms.dangling;
            let mscan = ms.finish();
            segs.push(RecoveredSegment {
                header,
                log_len: bytes.len() as u64,
                scan,
                facts,
                mbx: Some(RecoveredMailbox { len: mbx_bytes.len() as u64, scan: mscan, dangling }),
            });
        }
        assemble(config, segs, mailbox, None, 0, 0, 0).unwrap()
    }

    fn proof(i: u64) -> Proof {
        Proof::new(1, 1_000 + 10 * (i % 2), &[i as u8; 32], &[0; 8], &[9; CIPHERTEXT_LEN])
    }

    #[test]
    fn clean_reopen_continues_the_sequence_and_rebuilds_everything() {
        let mut s = LogState::new(config()).unwrap();
        let mut disk = Disk::new();
        let k = SubscriberKey([1; 16]);
        for i in 0..30 {
            s.append(proof(i).view(), 100, 0).unwrap();
            if i % 4 == 0 {
                s.record_match(k, RecordSeq(i), 0).unwrap();
            }
        }
        commit(&mut s, &mut disk);
        let r = reopen(&disk);
        assert_eq!(r.report.next_seq, 30);
        assert_eq!((r.report.counters.recovery_records, r.report.counters.recovery_matches), (30, 8));
        assert_eq!(r.report.counters.recovery_bytes_zeroed, 0);
        assert!(r.truncations.is_empty());
        assert_eq!(r.report.live_commits.len(), 30);
        assert_eq!(r.state.mailbox().len_of(&k), 8);
        assert_eq!(r.state.durable_through(), Some(RecordSeq(29)));
    }

    #[test]
    fn torn_tail_is_truncated_and_its_seqs_are_never_reused() {
        let mut s = LogState::new(config()).unwrap();
        let mut disk = Disk::new();
        let k = SubscriberKey([1; 16]);
        for i in 0..10 {
            s.append(proof(i).view(), 100, 0).unwrap();
            s.record_match(k, RecordSeq(i), 0).unwrap();
        }
        commit(&mut s, &mut disk);
        // Tear record 9 (slot 2 of block 1) half way: its match record survived, the record did not.
        let seg = disk.get_mut(&FileId { kind: FileKind::Segment, file_seq: 0 }).unwrap();
        let at = 4096 + 4096 + 2 * 584 + 300;
        seg[at..at + 284].fill(0);
        let r = reopen(&disk);
        let c = r.report.counters;
        assert_eq!(
            (c.recovery_records, c.recovery_torn_truncated, c.recovery_matches, c.recovery_matches_dangling),
            (9, 1, 9, 1)
        );
        assert_eq!(r.report.next_seq, 10, "seq 9 held bytes once: it is skipped, not reused");
        assert_eq!(r.truncations.len(), 1);
        assert_eq!(r.truncations[0].write.offset, 8192);
        assert!(r.truncations[0].write.bytes[2 * 584..].iter().all(|&b| b == 0));
        assert_eq!(r.state.mailbox().len_of(&k), 9);
        // The next append lands at seq 10 = slot 10, after the zeroed slot 9.
        let mut state = r.state;
        assert_eq!(state.append(proof(99).view(), 300, 0).unwrap(), RecordSeq(10));
        let job = state.take_job(300, 0).unwrap();
        let w = &job.writes.iter().find(|w| w.file.kind == FileKind::Segment).unwrap().write;
        assert_eq!(w.offset, 8192);
        assert!(w.bytes[2 * 584..3 * 584].iter().all(|&b| b == 0));
        assert_eq!(u64::from_be_bytes(w.bytes[3 * 584..3 * 584 + 8].try_into().unwrap()), 10);
    }

    #[test]
    fn overlapping_segments_are_refused() {
        let mut s = LogState::new(config()).unwrap();
        let mut disk = Disk::new();
        for i in 0..25 {
            s.append(proof(i).view(), 100, 0).unwrap();
        }
        commit(&mut s, &mut disk);
        // Rewrite segment 1's header to claim seq 5 (inside segment 0).
        let id = FileId { kind: FileKind::Segment, file_seq: 1 };
        let mut h = FileHeader::decode(&disk[&id]).unwrap();
        h.first_record_seq = 5;
        disk.get_mut(&id).unwrap()[..4096].copy_from_slice(&h.encode()[..]);
        let config = config();
        let seg = |id: FileId| {
            let bytes = &disk[&id];
            let header = FileHeader::decode(bytes).unwrap();
            let mut sc = SegmentScanner::new(header, 0, 0);
            for b in bytes[4096..].chunks_exact(BLOCK_LEN) {
                sc.push_block(b.try_into().unwrap());
            }
            let (scan, facts) = sc.finish();
            RecoveredSegment { header, log_len: bytes.len() as u64, scan, facts, mbx: None }
        };
        let segs = vec![seg(FileId { kind: FileKind::Segment, file_seq: 0 }), seg(id)];
        let err = assemble(config, segs, Mailbox::default(), None, 0, 0, 0).unwrap_err();
        assert_eq!(err, OpenError::SeqOverlap { file_seq: 1, first: 5, previous_end: 21 });
    }

    #[test]
    fn headers_from_another_configuration_are_refused() {
        let config = config();
        let id = FileId { kind: FileKind::Segment, file_seq: 0 };
        let mut s = LogState::new(config).unwrap();
        s.append(proof(0).view(), 100, 0).unwrap();
        let job = s.take_job(100, 0).unwrap();
        let h = FileHeader::decode(&job.creates.iter().find(|c| c.file == id).unwrap().header[..]).unwrap();
        assert_eq!(check_header(&config, &id, &h), Ok(()));
        let mut other = config;
        other.shard = ShardParams::for_shard(0, 2, 64, 10);
        assert!(matches!(check_header(&other, &id, &h), Err(OpenError::ShardMismatch { .. })));
        let as_mbx = FileId { kind: FileKind::Mailbox, file_seq: 0 };
        assert!(matches!(check_header(&config, &as_mbx, &h), Err(OpenError::WrongFileKind { .. })));
    }

    #[test]
    fn forged_seq_ranges_are_refused() {
        let config = config();
        let id = FileId { kind: FileKind::Segment, file_seq: 0 };
        let mut s = LogState::new(config).unwrap();
        s.append(proof(0).view(), 100, 0).unwrap();
        let job = s.take_job(100, 0).unwrap();
        let mut h = FileHeader::decode(&job.creates.iter().find(|c| c.file == id).unwrap().header[..]).unwrap();
        h.first_record_seq = u64::MAX - 5;
        assert!(matches!(check_header(&config, &id, &h), Err(OpenError::SeqRange { .. })));
    }

    #[test]
    fn dedup_horizon() {
        assert_eq!(dedup_from_window_s(1_000_005, 10, 0), 999_990);
        assert_eq!(dedup_from_window_s(1_000_005, 10, 1), 999_980);
        assert_eq!(dedup_from_window_s(5, 10, 3), 0);
    }
}
