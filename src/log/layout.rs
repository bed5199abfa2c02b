//! Where fixed-size record slots live in a file, and the staging of appends as block-aligned writes.
//!
//! ```text
//! file:   [ header block ][ block 0 ][ block 1 ] ...          every block BLOCK_LEN = 4096 bytes
//! block:  [ slot ][ slot ] ... [ slot ][ zero padding ]        floor(4096 / record_len) slots, never straddling
//! append: push(record) ──▶ staged block images ──take_write()──▶ one aligned write (offset, whole blocks)
//! ```
//!
//! Direct I/O writes whole aligned blocks, so a commit that ends inside a block writes that block partly
//! filled (the rest zero) and the next commit rewrites it with more records. The rewrite puts back the
//! already-durable records with identical bytes: whichever sectors of the block land before a crash, each
//! durable record reads back intact, and only slots that were new in the interrupted commit can be torn.

use super::format::HEADER_LEN;
use super::BLOCK_LEN;

/// Largest single write or read the layout hands out, bytes. Keeps each DMA buffer small (the I/O memory is
/// a few MiB per executor) while a commit of 1,024 proofs (~86 KiB) still goes out as one write.
pub const IO_CHUNK_BYTES_MAX: usize = 1 << 20;

/// Slot ↔ byte-offset arithmetic for one record length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLayout {
    record_len: usize,
    per_block: usize,
}

impl SlotLayout {
    /// Layout for records of `record_len` bytes (`1..=BLOCK_LEN`; a configuration invariant).
    pub const fn new(record_len: usize) -> Self {
        assert!(record_len > 0 && record_len <= BLOCK_LEN, "a record must fit in one block");
        Self { record_len, per_block: BLOCK_LEN / record_len }
    }

    /// Bytes per record.
    pub fn record_len(&self) -> usize {
        self.record_len
    }

    /// Slots per block.
    pub fn per_block(&self) -> u64 {
        self.per_block as u64
    }

    /// Block holding `slot`.
    pub fn block_of(&self, slot: u64) -> u64 {
        slot / self.per_block as u64
    }

    /// File offset of block `block`.
    pub fn block_offset(&self, block: u64) -> u64 {
        HEADER_LEN as u64 + block * BLOCK_LEN as u64
    }

    /// File offset of `slot`.
    pub fn slot_offset(&self, slot: u64) -> u64 {
        self.block_offset(self.block_of(slot)) + self.slot_in_block(slot) as u64
    }

    /// Byte offset of `slot` inside its block.
    pub fn slot_in_block(&self, slot: u64) -> usize {
        (slot % self.per_block as u64) as usize * self.record_len
    }

    /// File length that holds `slots` slots (header plus whole blocks).
    pub fn file_len_for(&self, slots: u64) -> u64 {
        self.block_offset(slots.div_ceil(self.per_block as u64))
    }
}

/// One aligned write: whole blocks at a block-aligned offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockWrite {
    /// File offset (header length plus a multiple of `BLOCK_LEN`).
    pub offset: u64,
    /// Block images (a multiple of `BLOCK_LEN` bytes, at most `IO_CHUNK_BYTES_MAX`).
    pub bytes: Vec<u8>,
}

/// Staged appends to one fixed-record file, turned into block-aligned writes at commit.
#[derive(Clone, Debug)]
pub struct BlockAppender {
    layout: SlotLayout,
    /// Slot the next push fills.
    next_slot: u64,
    /// Block index of `images[0..BLOCK_LEN]`.
    first_block: u64,
    /// Images of blocks `first_block..`: the last one may be partly filled (its tail is zero).
    images: Vec<u8>,
    /// Whether `images` holds anything not yet handed out by `take_writes`.
    dirty: bool,
}

impl BlockAppender {
    /// An appender whose next slot is `next_slot`. When `next_slot` is inside a block, `tail_block` is that
    /// block's current image (its valid records; the rest must be zero) — it is rewritten by the next commit.
    pub fn new(layout: SlotLayout, next_slot: u64, tail_block: Option<&[u8; BLOCK_LEN]>) -> Self {
        let first_block = layout.block_of(next_slot);
        let images = if !next_slot.is_multiple_of(layout.per_block()) {
            tail_block.expect("a partly filled tail block needs its image").to_vec()
        } else {
            Vec::new()
        };
        Self { layout, next_slot, first_block, images, dirty: false }
    }

    /// The layout.
    pub fn layout(&self) -> SlotLayout {
        self.layout
    }

    /// Slot the next push fills.
    pub fn next_slot(&self) -> u64 {
        self.next_slot
    }

    /// Whether anything is staged.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Stages one record (exactly `record_len` bytes) and returns its slot.
    pub fn push(&mut self, record: &[u8]) -> u64 {
        assert_eq!(record.len(), self.layout.record_len, "records are fixed-size");
        self.push_with(|slot| slot.copy_from_slice(record))
    }

    /// Stages one record written in place by `fill` into its zeroed `record_len`-byte slot (no
    /// intermediate copy) and returns its slot.
    pub fn push_with(&mut self, fill: impl FnOnce(&mut [u8])) -> u64 {
        let slot = self.next_slot;
        let at = (self.layout.block_of(slot) - self.first_block) as usize * BLOCK_LEN;
        if at == self.images.len() {
            self.images.resize(at + BLOCK_LEN, 0);
        }
        let start = at + self.layout.slot_in_block(slot);
        fill(&mut self.images[start..start + self.layout.record_len]);
        self.next_slot += 1;
        self.dirty = true;
        slot
    }

    /// Hands out everything staged as aligned writes (in file order, each at most `IO_CHUNK_BYTES_MAX`) and
    /// keeps the image of a partly filled last block for the next commit's rewrite.
    pub fn take_writes(&mut self) -> Vec<BlockWrite> {
        if !self.dirty {
            return Vec::new();
        }
        let images = std::mem::take(&mut self.images);
        let partial = !self.next_slot.is_multiple_of(self.layout.per_block());
        if partial {
            self.images = images[images.len() - BLOCK_LEN..].to_vec();
        }
        let writes = chunk_writes(self.layout.block_offset(self.first_block), images);
        self.first_block = self.layout.block_of(self.next_slot);
        self.dirty = false;
        writes
    }
}

/// Splits block images starting at `offset` into writes of at most `IO_CHUNK_BYTES_MAX`.
fn chunk_writes(offset: u64, images: Vec<u8>) -> Vec<BlockWrite> {
    debug_assert_eq!(images.len() % BLOCK_LEN, 0);
    if images.len() <= IO_CHUNK_BYTES_MAX {
        return vec![BlockWrite { offset, bytes: images }];
    }
    images
        .chunks(IO_CHUNK_BYTES_MAX)
        .enumerate()
        .map(|(i, c)| BlockWrite { offset: offset + (i * IO_CHUNK_BYTES_MAX) as u64, bytes: c.to_vec() })
        .collect()
}

/// The writes that truncate a file logically ending at `end_slot` whose slots up to `dirty_to_slot` may hold
/// torn bytes: the block of `end_slot` rewritten from `tail_block` (valid records, zero after) and zero blocks
/// after it, so the next scan sees a clean end and the next append starts from known bytes.
pub fn truncation_writes(
    layout: SlotLayout,
    end_slot: u64,
    tail_block: Option<&[u8; BLOCK_LEN]>,
    dirty_to_slot: u64,
) -> Vec<BlockWrite> {
    if dirty_to_slot <= end_slot {
        return Vec::new();
    }
    let first_block = layout.block_of(end_slot);
    let last_block = layout.block_of(dirty_to_slot - 1);
    let mut images = vec![0u8; ((last_block - first_block + 1) as usize) * BLOCK_LEN];
    if !end_slot.is_multiple_of(layout.per_block()) {
        let tail = tail_block.expect("a partly filled tail block needs its image");
        let keep = layout.slot_in_block(end_slot);
        images[..keep].copy_from_slice(&tail[..keep]);
    }
    chunk_writes(layout.block_offset(first_block), images)
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: SlotLayout = SlotLayout::new(584);

    #[test]
    fn slot_offsets_never_straddle_blocks() {
        assert_eq!(L.per_block(), 7);
        assert_eq!(L.slot_offset(0), 4096);
        assert_eq!(L.slot_offset(6), 4096 + 6 * 584);
        assert_eq!(L.slot_offset(7), 8192);
        assert_eq!(L.file_len_for(0), 4096);
        assert_eq!(L.file_len_for(8), 4096 * 3);
        for slot in 0..100 {
            let in_block = (L.slot_offset(slot) - 4096) % 4096;
            assert!(in_block as usize + 584 <= 4096 - 8, "slot {slot}");
        }
    }

    #[test]
    fn partial_tail_block_is_rewritten_by_the_next_commit() {
        let mut a = BlockAppender::new(L, 0, None);
        for i in 0..3u8 {
            a.push(&[i + 1; 584]);
        }
        let w = a.take_writes();
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].offset, w[0].bytes.len()), (4096, 4096));
        assert_eq!(&w[0].bytes[3 * 584..3 * 584 + 4], &[0, 0, 0, 0]);
        assert_eq!(a.take_writes(), vec![], "nothing new, nothing written");

        for i in 3..9u8 {
            a.push(&[i + 1; 584]);
        }
        let w = a.take_writes();
        assert_eq!((w[0].offset, w[0].bytes.len()), (4096, 8192));
        // The durable records 0..3 come back byte for byte; 7 and 8 are in block 1.
        assert_eq!(&w[0].bytes[0..584], &[1u8; 584][..]);
        assert_eq!(&w[0].bytes[6 * 584..7 * 584], &[7u8; 584][..]);
        assert_eq!(&w[0].bytes[4088..4096], &[0u8; 8]);
        assert_eq!(&w[0].bytes[4096 + 584..4096 + 2 * 584], &[9u8; 584][..]);

        // A full block leaves nothing to rewrite.
        let mut b = BlockAppender::new(L, 0, None);
        for _ in 0..7 {
            b.push(&[5; 584]);
        }
        assert_eq!(b.take_writes()[0].bytes.len(), 4096);
        b.push(&[6; 584]);
        assert_eq!(b.take_writes()[0].offset, 8192);
    }

    #[test]
    fn appender_resumes_from_a_recovered_tail() {
        let mut tail = [0u8; BLOCK_LEN];
        tail[..584].fill(0xAA);
        let mut a = BlockAppender::new(L, 8, Some(&tail));
        assert_eq!(a.push(&[0xBB; 584]), 8);
        let w = a.take_writes();
        assert_eq!(w[0].offset, 8192);
        assert_eq!(&w[0].bytes[..584], &[0xAA; 584][..]);
        assert_eq!(&w[0].bytes[584..1168], &[0xBB; 584][..]);
    }

    #[test]
    fn big_commits_are_chunked() {
        let small = SlotLayout::new(64);
        let mut a = BlockAppender::new(small, 0, None);
        let slots = (IO_CHUNK_BYTES_MAX / 64) as u64 + 10;
        for _ in 0..slots {
            a.push(&[1; 64]);
        }
        let w = a.take_writes();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].bytes.len(), IO_CHUNK_BYTES_MAX);
        assert_eq!(w[1].offset, 4096 + IO_CHUNK_BYTES_MAX as u64);
        assert_eq!(w[1].bytes.len(), 4096);
    }

    #[test]
    fn truncation_keeps_the_valid_prefix_and_zeroes_the_rest() {
        let mut tail = [0u8; BLOCK_LEN];
        tail[..2 * 584].fill(0x77);
        tail[2 * 584..3 * 584].fill(0xEE); // torn record at the end slot
        let w = truncation_writes(L, 9, Some(&tail), 16);
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].offset, w[0].bytes.len()), (8192, 2 * 4096));
        assert_eq!(&w[0].bytes[..2 * 584], &tail[..2 * 584]);
        assert!(w[0].bytes[2 * 584..].iter().all(|&b| b == 0));
        assert_eq!(truncation_writes(L, 9, Some(&tail), 9), vec![]);
    }
}
