//! Persisted subscriptions and FETCH cursors: the journal that lets a subscription outlive its connection
//! (for its declared window range) and survive a restart.
//!
//! ```text
//! SUBSCRIBE(key, entries) ──▶ table: key → generation g, entries   (replaces the previous generation)
//!                          └─▶ journal: n records "entry i of n, generation g" (n = 0: one "clear" record)
//! FETCH cursor advanced   ──▶ table: key → cursor state ──▶ journal: one "cursor" record
//! open: replay the journal; a generation counts only when all n of its records are valid (a torn SUBSCRIBE
//!       is ignored as a whole, the previous generation stays)
//! compaction: when the journal holds > 2× the live records, the live table is written to a new journal file
//!       (tmp → fdatasync → rename → directory sync) and the old one is deleted
//! ```
//!
//! Journal record (`record_len` = the next power of two ≥ 68 + m/8, at least 256; 16 per block at m = 1024):
//!
//! ```text
//! offset  size  field
//!      0     1  kind          1 = entry, 2 = clear (no entries), 3 = cursor
//!      1     1  zero
//!      2     2  entry_index   u16 be (entry)
//!      4     2  entry_count   u16 be (entry)
//!      6     2  bucket        u16 be (entry)
//!      8    16  subscriber key (crate::log::mailbox::SubscriberKey; never the id itself)
//!     24     8  generation    u64 be (entry, clear)
//!     32     8  window_from_s (entry) | token      (cursor)
//!     40     8  window_to_s   (entry) | pos        (cursor)
//!     48     8  zero          (entry) | prev_token (cursor)
//!     56     8  zero          (entry) | prev_pos   (cursor)
//!     64   m/8  Bloom filter bytes (entry) | zero
//!      …        zero padding
//!  len-4     4  crc32c of bytes 0..len-4
//! ```

use std::collections::HashMap;

use super::format::ShardParams;
use super::layout::{BlockAppender, BlockWrite, SlotLayout};
use super::mailbox::{CursorState, SubscriberKey};
use super::record::RecordSeq;
use super::scan::{SlotClass, SlotScan, SlotScanner};
use super::BLOCK_LEN;
use crate::proto::bloom::{BloomFilter, BloomParams};
use crate::proto::frame::SubscribeEntry;

const KIND_ENTRY: u8 = 1;
const KIND_CLEAR: u8 = 2;
const KIND_CURSOR: u8 = 3;
const FILTER_AT: usize = 64;

/// Journal records one commit may stage; past it `subscribe` answers `JournalBusy` until the next commit.
/// 16,384 records are 64 SUBSCRIBEs of the maximal 256 entries (4 MiB at m = 1024) per fdatasync.
pub const JOURNAL_STAGED_RECORDS_MAX: u32 = 16_384;
/// Stale records tolerated before compaction, on top of 2× the live ones: compaction rewrites the whole live
/// table, so it should not run after every handful of re-subscriptions.
pub const COMPACTION_SLACK_RECORDS: u64 = 4_096;

/// Record length for filters of `bloom`: the next power of two ≥ 68 + m/8 (so records tile a block), ≥ 256.
pub fn record_len_for(bloom: BloomParams) -> Result<usize, SubscriptionError> {
    let need = FILTER_AT + bloom.byte_len() + 4;
    let len = need.next_power_of_two().max(256);
    if len > BLOCK_LEN {
        return Err(SubscriptionError::FilterTooLarge { m_bits: bloom.m_bits });
    }
    Ok(len)
}

/// Why a subscription change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// An entry's bucket belongs to another shard (the server splits SUBSCRIBE by owner).
    #[error("bucket {0} is not owned by this shard")]
    ForeignBucket(u16),
    /// An entry's filter has other Bloom parameters than the relay's.
    #[error("filter parameters {got:?} differ from the relay's {expected:?}")]
    WrongBloomParams {
        /// Parameters of the entry.
        got: BloomParams,
        /// The relay's.
        expected: BloomParams,
    },
    /// `window_from_s > window_to_s`.
    #[error("window range {from}..={to} is empty")]
    EmptyWindowRange {
        /// First window.
        from: u64,
        /// Last window.
        to: u64,
    },
    /// More entries than a u16 counts.
    #[error("{0} entries in one SUBSCRIBE")]
    TooManyEntries(usize),
    /// The current commit already holds `JOURNAL_STAGED_RECORDS_MAX` journal records.
    #[error("subscription journal is busy; retry after the next commit")]
    JournalBusy,
    /// Filters of this size do not fit a journal record (one block).
    #[error("Bloom m = {m_bits} bits does not fit a journal record")]
    FilterTooLarge {
        /// The relay's m.
        m_bits: u32,
    },
}

/// What the shard remembers about one subscriber.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriberState {
    /// Generation of the entries (0: never subscribed here).
    pub generation: u64,
    /// Current entries (empty after a clear).
    pub entries: Vec<SubscribeEntry>,
    /// FETCH position.
    pub cursor: CursorState,
}

/// Counts from replaying a journal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Generations applied (SUBSCRIBE or clear).
    pub generations_applied: u64,
    /// Generations ignored because some of their records were missing or invalid.
    pub generations_incomplete: u64,
    /// Cursor records applied.
    pub cursors_applied: u64,
    /// Valid records of kinds or shapes this version does not know (skipped).
    pub records_unusable: u64,
}

/// A decoded journal record.
#[derive(Clone, Debug, PartialEq, Eq)]
enum JournalRecord {
    Entry { key: SubscriberKey, generation: u64, index: u16, count: u16, entry: SubscribeEntry },
    Clear { key: SubscriberKey, generation: u64 },
    Cursor { key: SubscriberKey, cursor: CursorState },
}

/// Encoding and decoding of journal records for one Bloom configuration.
#[derive(Clone, Copy, Debug)]
struct Codec {
    bloom: BloomParams,
    record_len: usize,
}

impl Codec {
    fn encode(&self, r: &JournalRecord) -> Vec<u8> {
        let mut b = vec![0u8; self.record_len];
        let put64 = |b: &mut [u8], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_be_bytes());
        match r {
            JournalRecord::Entry { key, generation, index, count, entry } => {
                b[0] = KIND_ENTRY;
                b[2..4].copy_from_slice(&index.to_be_bytes());
                b[4..6].copy_from_slice(&count.to_be_bytes());
                b[6..8].copy_from_slice(&entry.bucket.to_be_bytes());
                b[8..24].copy_from_slice(&key.0);
                put64(&mut b, 24, *generation);
                put64(&mut b, 32, entry.window_from_s);
                put64(&mut b, 40, entry.window_to_s);
                b[FILTER_AT..FILTER_AT + self.bloom.byte_len()].copy_from_slice(entry.filter.as_bytes());
            }
            JournalRecord::Clear { key, generation } => {
                b[0] = KIND_CLEAR;
                b[8..24].copy_from_slice(&key.0);
                put64(&mut b, 24, *generation);
            }
            JournalRecord::Cursor { key, cursor } => {
                b[0] = KIND_CURSOR;
                b[8..24].copy_from_slice(&key.0);
                put64(&mut b, 32, cursor.token);
                put64(&mut b, 40, cursor.pos.0);
                put64(&mut b, 48, cursor.prev_token);
                put64(&mut b, 56, cursor.prev_pos.0);
            }
        }
        let crc_at = self.record_len - 4;
        let crc = crc32c::crc32c(&b[..crc_at]);
        b[crc_at..].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// `None`: not a valid record (CRC, unknown kind, non-zero reserved bytes, bad filter length).
    fn decode(&self, b: &[u8]) -> Option<JournalRecord> {
        let crc_at = self.record_len - 4;
        let stored = u32::from_be_bytes(b[crc_at..].try_into().ok()?);
        if stored != crc32c::crc32c(&b[..crc_at]) || b[1] != 0 {
            return None;
        }
        let u16_at = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        let u64_at = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().expect("8-byte field"));
        let key = SubscriberKey(b[8..24].try_into().expect("16-byte key field"));
        let filter_end = FILTER_AT + self.bloom.byte_len();
        match b[0] {
            KIND_ENTRY => {
                if b[48..FILTER_AT].iter().chain(&b[filter_end..crc_at]).any(|&x| x != 0) {
                    return None;
                }
                let filter = BloomFilter::from_bytes(self.bloom, &b[FILTER_AT..filter_end]).ok()?;
                let entry =
                    SubscribeEntry { bucket: u16_at(6), window_from_s: u64_at(32), window_to_s: u64_at(40), filter };
                Some(JournalRecord::Entry { key, generation: u64_at(24), index: u16_at(2), count: u16_at(4), entry })
            }
            KIND_CLEAR if b[2..8].iter().chain(&b[32..crc_at]).all(|&x| x == 0) => {
                Some(JournalRecord::Clear { key, generation: u64_at(24) })
            }
            KIND_CURSOR if b[2..8].iter().chain(&b[24..32]).chain(&b[FILTER_AT..crc_at]).all(|&x| x == 0) => {
                let cursor = CursorState {
                    token: u64_at(32),
                    pos: RecordSeq(u64_at(40)),
                    prev_token: u64_at(48),
                    prev_pos: RecordSeq(u64_at(56)),
                };
                Some(JournalRecord::Cursor { key, cursor })
            }
            _ => None,
        }
    }
}

/// The live subscription table of one shard and its journal's staging.
#[derive(Debug)]
pub struct SubscriptionTable {
    shard: ShardParams,
    codec: Codec,
    subs: HashMap<SubscriberKey, SubscriberState>,
    next_generation: u64,
    appender: BlockAppender,
    staged_records: u32,
}

impl SubscriptionTable {
    /// An empty table whose journal's next slot is `next_slot` (with its tail block image, see
    /// [`BlockAppender::new`]).
    pub fn new(
        shard: ShardParams,
        bloom: BloomParams,
        next_slot: u64,
        tail_block: Option<&[u8; BLOCK_LEN]>,
    ) -> Result<Self, SubscriptionError> {
        let record_len = record_len_for(bloom)?;
        Ok(Self {
            shard,
            codec: Codec { bloom, record_len },
            subs: HashMap::new(),
            next_generation: 1,
            appender: BlockAppender::new(SlotLayout::new(record_len), next_slot, tail_block),
            staged_records: 0,
        })
    }

    /// Journal record length.
    pub fn record_len(&self) -> usize {
        self.codec.record_len
    }

    /// Replaces `key`'s entries with `entries` (empty: clear) and stages the journal records.
    pub fn subscribe(&mut self, key: SubscriberKey, entries: &[SubscribeEntry]) -> Result<u64, SubscriptionError> {
        let count = u16::try_from(entries.len()).map_err(|_| SubscriptionError::TooManyEntries(entries.len()))?;
        for e in entries {
            if !self.shard.owns_bucket(e.bucket) {
                return Err(SubscriptionError::ForeignBucket(e.bucket));
            }
            if e.filter.params() != self.codec.bloom {
                return Err(SubscriptionError::WrongBloomParams { got: e.filter.params(), expected: self.codec.bloom });
            }
            if e.window_from_s > e.window_to_s {
                return Err(SubscriptionError::EmptyWindowRange { from: e.window_from_s, to: e.window_to_s });
            }
        }
        if self.staged_records + (count as u32).max(1) > JOURNAL_STAGED_RECORDS_MAX {
            return Err(SubscriptionError::JournalBusy);
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        if entries.is_empty() {
            self.stage(&JournalRecord::Clear { key, generation });
        }
        for (index, entry) in entries.iter().enumerate() {
            let index = index as u16;
            self.stage(&JournalRecord::Entry { key, generation, index, count, entry: entry.clone() });
        }
        let state = self.subs.entry(key).or_default();
        state.generation = generation;
        state.entries = entries.to_vec();
        Ok(generation)
    }

    /// Stores `key`'s FETCH position (staged; a lost cursor only makes the next FETCH start earlier).
    pub fn set_cursor(&mut self, key: SubscriberKey, cursor: CursorState) {
        self.stage(&JournalRecord::Cursor { key, cursor });
        self.subs.entry(key).or_default().cursor = cursor;
    }

    fn stage(&mut self, r: &JournalRecord) {
        let bytes = self.codec.encode(r);
        debug_assert_eq!(self.codec.decode(&bytes).as_ref(), Some(r), "journal record must round-trip");
        self.appender.push(&bytes);
        self.staged_records += 1;
    }

    /// The state of `key`, if any.
    pub fn get(&self, key: &SubscriberKey) -> Option<&SubscriberState> {
        self.subs.get(key)
    }

    /// Every subscriber with entries, for rebuilding the engine's subscription index at start.
    pub fn iter(&self) -> impl Iterator<Item = (&SubscriberKey, &SubscriberState)> {
        self.subs.iter()
    }

    /// Subscribers known (with entries or a cursor).
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Whether no subscriber is known.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Journal records staged since the last commit.
    pub fn staged_records(&self) -> u32 {
        self.staged_records
    }

    /// The staged journal writes (for the commit in progress).
    pub fn take_writes(&mut self) -> Vec<BlockWrite> {
        self.staged_records = 0;
        self.appender.take_writes()
    }

    /// Records a compacted journal would hold.
    pub fn live_records(&self) -> u64 {
        self.subs.values().map(|s| s.entries.len().max(1) as u64 + 1).sum()
    }

    /// Whether the journal holds enough stale records to be worth rewriting.
    pub fn needs_compaction(&self) -> bool {
        self.appender.next_slot() > 2 * self.live_records() + COMPACTION_SLACK_RECORDS
    }

    /// Drops entries whose last window is before `expire_before_window_s` (they can no longer match a proof
    /// the engine accepts), and subscribers left with nothing: no entries and `keep(key)` false (the caller
    /// keeps those whose mailbox still holds matches, so their cursor survives).
    pub fn expire(&mut self, expire_before_window_s: u64, mut keep: impl FnMut(&SubscriberKey) -> bool) -> u64 {
        let mut dropped = 0;
        self.subs.retain(|key, s| {
            let before = s.entries.len();
            s.entries.retain(|e| e.window_to_s >= expire_before_window_s);
            dropped += (before - s.entries.len()) as u64;
            !s.entries.is_empty() || keep(key)
        });
        dropped
    }

    /// Rewrites the journal: the live table as fresh records (one generation per subscriber), returned as
    /// block images from slot 0, and the appender switched to continue after them. Staged but unwritten
    /// records are dropped (the table they describe is in the snapshot).
    pub fn compact(&mut self) -> Vec<BlockWrite> {
        let layout = SlotLayout::new(self.codec.record_len);
        self.appender = BlockAppender::new(layout, 0, None);
        self.staged_records = 0;
        let mut keys: Vec<SubscriberKey> = self.subs.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            let s = self.subs[&key].clone();
            let count = s.entries.len() as u16;
            if s.entries.is_empty() {
                self.stage(&JournalRecord::Clear { key, generation: s.generation });
            }
            for (i, entry) in s.entries.into_iter().enumerate() {
                let rec = JournalRecord::Entry { key, generation: s.generation, index: i as u16, count, entry };
                self.stage(&rec);
            }
            self.stage(&JournalRecord::Cursor { key, cursor: s.cursor });
        }
        self.staged_records = 0;
        self.appender.take_writes()
    }
}

/// Rebuilds a [`SubscriptionTable`] from journal blocks.
#[derive(Debug)]
pub struct JournalReplay {
    codec: Codec,
    scanner: SlotScanner,
    subs: HashMap<SubscriberKey, SubscriberState>,
    max_generation: u64,
    open: Option<OpenGeneration>,
    stats: ReplayStats,
}

/// A generation whose records are being collected.
#[derive(Debug)]
struct OpenGeneration {
    key: SubscriberKey,
    generation: u64,
    count: u16,
    entries: Vec<SubscribeEntry>,
}

impl JournalReplay {
    /// Replay for a journal with these parameters (`in_flight_slots_max` from its header).
    pub fn new(bloom: BloomParams, in_flight_slots_max: u32) -> Result<Self, SubscriptionError> {
        let record_len = record_len_for(bloom)?;
        Ok(Self {
            codec: Codec { bloom, record_len },
            scanner: SlotScanner::new(SlotLayout::new(record_len), 0, in_flight_slots_max),
            subs: HashMap::new(),
            max_generation: 0,
            open: None,
            stats: ReplayStats::default(),
        })
    }

    /// Feeds the next journal block.
    pub fn push_block(&mut self, block: &[u8; BLOCK_LEN]) {
        let codec = self.codec;
        let mut decoded = Vec::new();
        self.scanner.push_block(block, |_, bytes| match codec.decode(bytes) {
            Some(r) => {
                decoded.push(r);
                SlotClass::Valid
            }
            None => SlotClass::Invalid,
        });
        for r in decoded {
            self.apply(r);
        }
    }

    fn apply(&mut self, r: JournalRecord) {
        match r {
            JournalRecord::Entry { key, generation, index, count, entry } => {
                let continues = matches!(&self.open, Some(o) if o.key == key && o.generation == generation
                    && o.count == count && o.entries.len() == index as usize);
                if !continues {
                    self.abandon_open();
                    // Only entry 0 of n ≥ 1 opens a generation (a forged count cannot make it grow past n).
                    if index != 0 || count == 0 {
                        self.stats.generations_incomplete += 1;
                        return;
                    }
                    self.open = Some(OpenGeneration { key, generation, count, entries: Vec::new() });
                }
                let open = self.open.as_mut().expect("an open generation was just ensured");
                open.entries.push(entry);
                if open.entries.len() == open.count as usize {
                    let done = self.open.take().expect("checked above");
                    self.apply_generation(done.key, done.generation, done.entries);
                }
            }
            JournalRecord::Clear { key, generation } => {
                self.abandon_open();
                self.apply_generation(key, generation, Vec::new());
            }
            JournalRecord::Cursor { key, cursor } => {
                self.abandon_open();
                self.subs.entry(key).or_default().cursor = cursor;
                self.stats.cursors_applied += 1;
            }
        }
    }

    fn abandon_open(&mut self) {
        if self.open.take().is_some() {
            self.stats.generations_incomplete += 1;
        }
    }

    fn apply_generation(&mut self, key: SubscriberKey, generation: u64, entries: Vec<SubscribeEntry>) {
        self.max_generation = self.max_generation.max(generation);
        let s = self.subs.entry(key).or_default();
        if generation >= s.generation {
            s.generation = generation;
            s.entries = entries;
            self.stats.generations_applied += 1;
        } else {
            self.stats.records_unusable += 1;
        }
    }

    /// The rebuilt table (appending after the last valid record), the slot scan, and the replay counts.
    pub fn finish(
        mut self,
        shard: ShardParams,
    ) -> Result<(SubscriptionTable, SlotScan, ReplayStats), SubscriptionError> {
        self.abandon_open();
        let scan = self.scanner.finish();
        let (next_slot, image) = scan.resume(SlotLayout::new(self.codec.record_len));
        let mut table = SubscriptionTable::new(shard, self.codec.bloom, next_slot, image.as_deref())?;
        table.subs = self.subs;
        table.next_generation = self.max_generation + 1;
        Ok((table, scan, self.stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard() -> ShardParams {
        ShardParams::for_shard(0, 2, 64, 10)
    }

    fn entry(bucket: u16, from: u64, fp: u64) -> SubscribeEntry {
        let mut filter = BloomFilter::new(BloomParams::default());
        filter.insert_fingerprint(&fp.to_be_bytes());
        SubscribeEntry { bucket, window_from_s: from, window_to_s: from + 100, filter }
    }

    fn key(b: u8) -> SubscriberKey {
        SubscriberKey([b; 16])
    }

    fn replay(blocks: &[u8]) -> (SubscriptionTable, SlotScan, ReplayStats) {
        let mut r = JournalReplay::new(BloomParams::default(), 64).unwrap();
        for b in blocks.chunks_exact(BLOCK_LEN) {
            r.push_block(b.try_into().unwrap());
        }
        r.finish(shard()).unwrap()
    }

    fn bytes(w: Vec<BlockWrite>) -> Vec<u8> {
        w.into_iter().flat_map(|w| w.bytes).collect()
    }

    #[test]
    fn record_len_tiles_blocks() {
        assert_eq!(record_len_for(BloomParams::default()), Ok(256));
        assert_eq!(record_len_for(BloomParams::new(8192, 3).unwrap()), Ok(2048));
        assert_eq!(
            record_len_for(BloomParams::new(65_536, 3).unwrap()),
            Err(SubscriptionError::FilterTooLarge { m_bits: 65_536 })
        );
    }

    #[test]
    fn validation_rejects_by_cause() {
        let mut t = SubscriptionTable::new(shard(), BloomParams::default(), 0, None).unwrap();
        assert_eq!(t.subscribe(key(1), &[entry(40, 0, 1)]), Err(SubscriptionError::ForeignBucket(40)));
        let mut bad = entry(1, 50, 1);
        bad.window_to_s = 40;
        assert_eq!(t.subscribe(key(1), &[bad]), Err(SubscriptionError::EmptyWindowRange { from: 50, to: 40 }));
        let mut other = entry(1, 0, 1);
        other.filter = BloomFilter::new(BloomParams::new(2048, 3).unwrap());
        assert!(matches!(t.subscribe(key(1), &[other]), Err(SubscriptionError::WrongBloomParams { .. })));
        assert_eq!(t.staged_records(), 0, "nothing staged for a refused SUBSCRIBE");
    }

    #[test]
    fn replay_restores_the_latest_complete_generation_and_cursor() {
        let mut t = SubscriptionTable::new(shard(), BloomParams::default(), 0, None).unwrap();
        t.subscribe(key(1), &[entry(1, 0, 1), entry(2, 0, 2)]).unwrap();
        t.subscribe(key(2), &[entry(3, 10, 3)]).unwrap();
        t.subscribe(key(1), &[entry(4, 20, 4)]).unwrap(); // replaces key 1
        let cur = CursorState { token: 9, pos: RecordSeq(40), prev_token: 8, prev_pos: RecordSeq(30) };
        t.set_cursor(key(2), cur);
        t.subscribe(key(2), &[]).unwrap(); // clear, cursor stays
        let b = bytes(t.take_writes());
        let (r, scan, stats) = replay(&b);
        assert_eq!((scan.valid, scan.end_slot, scan.corrupt), (6, 6, 0));
        assert_eq!(
            stats,
            ReplayStats { generations_applied: 4, generations_incomplete: 0, cursors_applied: 1, records_unusable: 0 }
        );
        assert_eq!(r.get(&key(1)).unwrap().entries, vec![entry(4, 20, 4)]);
        assert_eq!(r.get(&key(2)).unwrap(), &SubscriberState { generation: 4, entries: vec![], cursor: cur });
        assert_eq!(r.next_generation, 5);
    }

    #[test]
    fn a_torn_subscribe_is_ignored_as_a_whole() {
        let mut t = SubscriptionTable::new(shard(), BloomParams::default(), 0, None).unwrap();
        t.subscribe(key(1), &[entry(1, 0, 1)]).unwrap();
        t.subscribe(key(1), &[entry(2, 0, 2), entry(3, 0, 3), entry(4, 0, 4)]).unwrap();
        let mut b = bytes(t.take_writes());
        b[3 * 256 + 70] ^= 0xFF; // third entry of generation 2 torn
        let (r, scan, stats) = replay(&b);
        assert_eq!((scan.valid, scan.end_slot, scan.torn_tail), (3, 3, 1));
        assert_eq!(stats.generations_incomplete, 1);
        assert_eq!(r.get(&key(1)).unwrap().entries, vec![entry(1, 0, 1)], "previous generation stays");
    }

    #[test]
    fn compaction_keeps_exactly_the_live_table() {
        let mut t = SubscriptionTable::new(shard(), BloomParams::default(), 0, None).unwrap();
        for i in 0..50u64 {
            t.subscribe(key(1), &[entry(1, i * 10, i)]).unwrap();
        }
        t.subscribe(key(2), &[entry(5, 0, 7), entry(6, 500, 8)]).unwrap();
        t.take_writes();
        assert_eq!(t.live_records(), 2 + 3);
        assert!(!t.needs_compaction());
        assert_eq!(t.expire(200, |_| false), 1, "key 2's first entry ends at window 100");
        let b = bytes(t.compact());
        let (r, scan, _) = replay(&b);
        assert_eq!(scan.valid, 4);
        assert_eq!(r.get(&key(1)).unwrap().entries, vec![entry(1, 490, 49)]);
        assert_eq!(r.get(&key(2)).unwrap().entries, vec![entry(6, 500, 8)]);
        // Appends continue after the snapshot.
        t.subscribe(key(3), &[]).unwrap();
        assert_eq!(t.take_writes()[0].offset, 4096);
    }

    #[test]
    fn expiry_keeps_subscribers_whose_mailbox_is_not_empty() {
        let mut t = SubscriptionTable::new(shard(), BloomParams::default(), 0, None).unwrap();
        t.subscribe(key(1), &[entry(1, 0, 1)]).unwrap();
        t.subscribe(key(2), &[entry(1, 0, 1)]).unwrap();
        t.expire(1_000, |k| *k == key(2));
        assert!(t.get(&key(1)).is_none());
        assert_eq!(t.get(&key(2)).unwrap().entries, vec![]);
    }

    #[test]
    fn foreign_and_garbage_records_are_invalid() {
        let mut block = [0u8; BLOCK_LEN];
        block[..256].fill(0x42);
        let (_, scan, _) = replay(&block);
        assert_eq!((scan.valid, scan.torn_tail), (0, 1));
    }
}
