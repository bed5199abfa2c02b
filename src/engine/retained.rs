//! What a late SUBSCRIBE is matched against: for every owned bucket, the Bloom positions and log sequence number
//! of each proof the shard accepted and still retains, grouped in columns by window.
//!
//! ```text
//! handle_publish: accepted proof ─▶ its k Bloom positions (hashed with the chunk, as for matching)
//!     ─▶ push(bucket, window, positions, seq)                        (2k + 4 bytes per proof: 10 at k = 3)
//! late SUBSCRIBE entry [from, to] ─▶ scan(bucket, from..=to, seq < snapshot, cursor, budget)
//!     ─▶ k bit tests in the entry's filter per proof ─▶ matched seqs
//! handle_tick ─▶ expire_before(now − retention): whole columns dropped
//! recovery ─▶ positions hashed in batches ─▶ push() for every valid retained record, in log order
//! ```
//! Positions rather than fingerprints: a scan is then k bit tests per proof (a few ns) instead of k SHA-256
//! blocks (measured 186 ns per proof with the 4-lane kernel, 1.05 s for a bucket-hour at the W-e2e rate; see
//! docs/PERFORMANCE.md §Late matching), and the hashing was mostly done anyway (every bucket with filters hashes
//! each proof's positions to match it). Positions are below `BLOOM_M_BITS_MAX` = 65,536, so a `u16` each.
//! Columns hold a window's proofs of one bucket in acceptance order: a base sequence number plus a `u32` offset
//! per proof (a new column starts when the offset would overflow), and the k positions. A scan works in
//! bounded steps (`budget` proofs) and keeps its place in a [`ScanCursor`], so a late SUBSCRIBE over an hour of a
//! busy bucket never holds the shard for long; columns expired between two steps are simply skipped.

use std::collections::VecDeque;

use crate::log::record::RecordSeq;
use crate::proto::bloom::BloomFilter;
use crate::proto::derive::BloomPositions;

/// Proofs of one bucket and window (or part of a window), in acceptance order.
#[derive(Debug)]
struct Column {
    window_start_s: u64,
    base_seq: u64,
    seq_offsets: Vec<u32>,
    /// k positions per proof.
    positions: Vec<u16>,
}

/// Proofs reserved per new column: one allocation per this many proofs, not per proof.
const COLUMN_RESERVE_PROOFS: usize = 1024;

impl Column {
    fn new(window_start_s: u64, base_seq: u64, k: usize) -> Self {
        Self {
            window_start_s,
            base_seq,
            seq_offsets: Vec::with_capacity(COLUMN_RESERVE_PROOFS),
            positions: Vec::with_capacity(COLUMN_RESERVE_PROOFS * k),
        }
    }

    fn seq(&self, i: usize) -> u64 {
        self.base_seq + self.seq_offsets[i] as u64
    }
}

/// Where a scan stands: the column it is in (by window and base seq, which survive expiry of earlier columns)
/// and the next proof of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanCursor {
    window_start_s: u64,
    base_seq: u64,
    next: usize,
    started: bool,
}

/// One bounded step of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanStep {
    /// Proofs examined.
    pub examined: usize,
    /// Whether the scan reached its end.
    pub done: bool,
}

/// See the module docs.
#[derive(Debug)]
pub struct RetainedIndex {
    buckets: Vec<VecDeque<Column>>,
    /// Bloom positions per proof (the relay's k).
    k: usize,
    proofs: u64,
}

impl RetainedIndex {
    /// An empty index for `buckets` owned buckets and Bloom filters with `k` positions per item.
    pub fn new(buckets: usize, k: usize) -> Self {
        Self { buckets: (0..buckets).map(|_| VecDeque::new()).collect(), k, proofs: 0 }
    }

    /// Proofs held.
    pub fn proofs(&self) -> u64 {
        self.proofs
    }

    /// Bytes of index per proof held with `k` positions (positions and sequence offset): 10 at k = 3.
    pub fn bytes_per_proof(k: usize) -> usize {
        k * std::mem::size_of::<u16>() + std::mem::size_of::<u32>()
    }

    /// Records an accepted proof. Sequence numbers arrive increasing; windows mostly increasing (a proof of the
    /// previous window, within the clock skew, may follow one of the current window).
    pub fn push(&mut self, bucket_local: usize, window_start_s: u64, positions: &BloomPositions, seq: RecordSeq) {
        debug_assert_eq!(positions.as_slice().len(), self.k, "k positions per proof");
        let k = self.k;
        let columns = &mut self.buckets[bucket_local];
        // The newest column of this window, searching back over the few windows the skew allows.
        let at = columns.iter().rposition(|c| c.window_start_s == window_start_s);
        let at = match at {
            Some(i) if seq.0 - columns[i].base_seq <= u32::MAX as u64 => i,
            found => {
                // A new column after every column of an earlier or equal window (windows stay ordered).
                let i =
                    found.map_or_else(|| columns.partition_point(|c| c.window_start_s <= window_start_s), |i| i + 1);
                columns.insert(i, Column::new(window_start_s, seq.0, k));
                i
            }
        };
        let column = &mut columns[at];
        debug_assert!(column.seq_offsets.last().is_none_or(|&o| column.base_seq + (o as u64) < seq.0));
        column.seq_offsets.push((seq.0 - column.base_seq) as u32);
        // Positions are below BLOOM_M_BITS_MAX = 65,536 (BloomParams::new refuses larger m).
        column.positions.extend(positions.as_slice().iter().map(|&p| p as u16));
        self.proofs += 1;
    }

    /// Drops every column of a window before `window_start_s`; returns the proofs dropped.
    pub fn expire_before(&mut self, window_start_s: u64) -> u64 {
        let mut dropped = 0;
        for columns in &mut self.buckets {
            while columns.front().is_some_and(|c| c.window_start_s < window_start_s) {
                dropped += columns.pop_front().map_or(0, |c| c.seq_offsets.len() as u64);
            }
        }
        self.proofs -= dropped;
        dropped
    }

    /// Examines up to `budget` proofs of `bucket_local` with windows in `from_s..=to_s` and sequence numbers
    /// below `seq_end` (proofs accepted after the SUBSCRIBE were matched live), from `cursor` on; pushes those
    /// whose positions are all set in `filter` to `matched`.
    #[allow(clippy::too_many_arguments)]
    pub fn scan(
        &self,
        bucket_local: usize,
        (from_s, to_s): (u64, u64),
        seq_end: RecordSeq,
        filter: &BloomFilter,
        cursor: &mut ScanCursor,
        budget: usize,
        matched: &mut Vec<RecordSeq>,
    ) -> ScanStep {
        let columns = &self.buckets[bucket_local];
        // Resume in the cursor's column, or the first one after it (it may have expired meanwhile).
        let mut c = if cursor.started {
            columns.partition_point(|col| (col.window_start_s, col.base_seq) < (cursor.window_start_s, cursor.base_seq))
        } else {
            columns.partition_point(|col| col.window_start_s < from_s)
        };
        let mut next = match columns.get(c) {
            Some(col)
                if cursor.started && (col.window_start_s, col.base_seq) == (cursor.window_start_s, cursor.base_seq) =>
            {
                cursor.next
            }
            _ => 0,
        };
        let mut examined = 0;
        while let Some(col) = columns.get(c) {
            if col.window_start_s > to_s {
                break;
            }
            // Offsets increase within a column: stop at the first proof accepted after the snapshot.
            let end = col.seq_offsets.partition_point(|&o| col.base_seq + (o as u64) < seq_end.0);
            let n = (end - next).min(budget - examined);
            let k = self.k;
            for (i, positions) in col.positions[next * k..(next + n) * k].chunks_exact(k).enumerate() {
                if positions.iter().all(|&p| filter.bit(p.into())) {
                    matched.push(RecordSeq(col.seq(next + i)));
                }
            }
            next += n;
            examined += n;
            if next < end {
                *cursor =
                    ScanCursor { window_start_s: col.window_start_s, base_seq: col.base_seq, next, started: true };
                return ScanStep { examined, done: false };
            }
            c += 1;
            next = 0;
        }
        *cursor = ScanCursor { started: true, window_start_s: u64::MAX, base_seq: u64::MAX, next: 0 };
        ScanStep { examined, done: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::bloom::BloomParams;
    use crate::proto::derive::fingerprint_positions;

    fn fp(n: u64) -> BloomPositions {
        let p = BloomParams::default();
        fingerprint_positions(&n.to_be_bytes(), p.m_bits, p.k)
    }

    #[test]
    fn scans_in_steps_within_windows_and_below_the_snapshot() {
        let mut index = RetainedIndex::new(2, 3);
        for seq in 0..10_000u64 {
            // Bucket 0, windows 100, 110, 120 in turn (a few out of order), fingerprints seq.
            let window = 100 + 10 * (seq % 3);
            index.push(0, window, &fp(seq), RecordSeq(seq));
        }
        index.push(1, 110, &fp(7), RecordSeq(10_000));
        assert_eq!(index.proofs(), 10_001);
        let mut filter = BloomFilter::new(BloomParams::default());
        for seq in [1u64, 4, 7, 5_002, 9_997, 9_998] {
            filter.insert_fingerprint(&seq.to_be_bytes());
        }
        let (mut cursor, mut matched) = (ScanCursor::default(), Vec::new());
        let mut steps = 0;
        loop {
            let step = index.scan(0, (110, 120), RecordSeq(9_998), &filter, &mut cursor, 1000, &mut matched);
            steps += 1;
            assert!(step.examined <= 1000);
            if step.done {
                break;
            }
        }
        // Windows 110 and 120 hold seqs ≡ 1, 2 (mod 3); 9_998 is not below the snapshot. False positives of a
        // 6-item filter over ~6,700 proofs are possible: only check that every true match is there.
        for want in [1u64, 4, 7, 5_002, 9_997] {
            assert!(matched.contains(&RecordSeq(want)), "{want} missing");
        }
        assert!(!matched.contains(&RecordSeq(9_998)), "accepted after the snapshot: matched live instead");
        assert!(matched.iter().all(|s| s.0 % 3 != 0), "window 100 is outside the range");
        assert!(steps >= 6, "6,666 proofs in steps of 1,000");
        assert_eq!(index.expire_before(120), 6_667 + 1);
    }

    #[test]
    fn a_cursor_survives_the_expiry_of_its_column() {
        let mut index = RetainedIndex::new(1, 3);
        for seq in 0..3_000u64 {
            index.push(0, 100 + 10 * (seq / 1_000), &fp(seq), RecordSeq(seq));
        }
        let filter = BloomFilter::new(BloomParams::default());
        let (mut cursor, mut matched) = (ScanCursor::default(), Vec::new());
        let step = index.scan(0, (100, 120), RecordSeq(u64::MAX), &filter, &mut cursor, 500, &mut matched);
        assert_eq!(step, ScanStep { examined: 500, done: false });
        index.expire_before(110);
        let step = index.scan(0, (100, 120), RecordSeq(u64::MAX), &filter, &mut cursor, 10_000, &mut matched);
        assert_eq!(
            step,
            ScanStep { examined: 2_000, done: true },
            "the rest of window 100 is gone; 110 and 120 remain"
        );
    }
}
