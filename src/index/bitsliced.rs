//! The fast index: one bucket's filters stored transposed (bit-sliced).
//!
//! ```text
//!            slot 0 1 2 … S-1            (S = slots ever in use, rounded up to 64)
//! bit 0    [ 0 1 0 … ]  ─┐
//! bit 1    [ 1 1 0 … ]   │ row j = which filters have bit j set: ⌈S/64⌉ words
//!  …                     │
//! bit m-1  [ 0 0 1 … ]  ─┘
//! match(p_0..p_k) = row[p_0] AND row[p_1] AND … AND row[p_{k-1}]  → set bits = matching slots
//! ```
//! A match is k rows × ⌈S/64⌉ words of AND (`super::simd::and_rows`, runtime-dispatched SIMD), instead of
//! S separate filter probes. Insert sets the filter's one-bits in its slot's column and remove clears them:
//! O(m) each, never a rebuild of the bucket. A copy of each slot's filter (m/64 words) remembers which
//! bits to clear. Freed slots are reused first, so the scanned width follows the peak number of live
//! filters. When every slot of the current width is taken the rows double in width (amortised O(1) per
//! insert; the only reallocation, never on the matching path).

use crate::proto::derive::BloomPositions;
use crate::proto::{BloomFilter, BloomParams, BLOOM_K_MAX};

use super::simd::{and_rows, Kernel};
use super::{BucketIndex, Slot};

/// Bit-sliced filters of one bucket.
#[derive(Clone, Debug)]
pub struct BitSlicedIndex {
    /// Filter size in bits (rows).
    m_bits: u32,
    /// Words per row: capacity is `words × 64` slots.
    words: usize,
    /// Words scanned by a match: ⌈slots ever allocated / 64⌉ (≤ `words`).
    used_words: usize,
    /// `m_bits` rows of `words` words, row-major: row j is `bits[j*words .. (j+1)*words]`.
    bits: Vec<u64>,
    /// Each slot's filter as `filter_words` little-endian words (bit j of the filter = bit j%64 of word
    /// j/64), to know which column bits to clear on remove. Zero for free slots.
    filters: Vec<u64>,
    /// Words per stored filter: ⌈m/64⌉.
    filter_words: usize,
    /// Free slots below `slots_allocated`, reused last-freed first.
    free: Vec<Slot>,
    /// Slots ever handed out (high-water mark).
    slots_allocated: u32,
    /// Live filters.
    len: usize,
    /// AND-scan implementation (detected once at construction).
    kernel: Kernel,
}

impl BitSlicedIndex {
    /// An empty index for filters with `params`, using the fastest kernel this CPU supports.
    pub fn new(params: BloomParams) -> Self {
        Self::with_kernel(params, Kernel::detect())
    }

    /// An empty index using `kernel` (benches and differential tests compare kernels).
    pub fn with_kernel(params: BloomParams, kernel: Kernel) -> Self {
        Self {
            m_bits: params.m_bits,
            words: 0,
            used_words: 0,
            bits: Vec::new(),
            filters: Vec::new(),
            filter_words: params.m_bits.div_ceil(64) as usize,
            free: Vec::new(),
            slots_allocated: 0,
            len: 0,
            kernel,
        }
    }

    /// The kernel in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Words scanned per row by a match (⌈peak slots / 64⌉).
    pub fn scanned_words(&self) -> usize {
        self.used_words
    }

    /// Hints the CPU to fetch the first line of each row a match on `positions` will read; the engine calls
    /// it for a chunk of proofs before matching them so the rows' cache misses overlap.
    #[inline]
    pub fn prefetch(&self, positions: &BloomPositions) {
        if self.len == 0 {
            return;
        }
        for &p in positions.as_slice() {
            let start = p as usize * self.words;
            if let Some(word) = self.bits.get(start) {
                super::simd::prefetch_read((word as *const u64).cast());
            }
        }
    }

    /// Doubles the row width (at least one word), copying every row.
    fn grow(&mut self) {
        let new_words = (self.words * 2).max(1);
        let mut bits = vec![0u64; self.m_bits as usize * new_words];
        if self.words > 0 {
            for (new_row, old_row) in bits.chunks_exact_mut(new_words).zip(self.bits.chunks_exact(self.words)) {
                new_row[..self.words].copy_from_slice(old_row);
            }
        }
        self.bits = bits;
        self.words = new_words;
    }

    /// Calls `f(j)` for each set bit `j` of the filter stored in `slot`.
    fn for_each_filter_bit(filter: &[u64], mut f: impl FnMut(usize)) {
        for (w, &word) in filter.iter().enumerate() {
            let mut word = word;
            while word != 0 {
                f(w * 64 + word.trailing_zeros() as usize);
                word &= word - 1;
            }
        }
    }
}

impl BucketIndex for BitSlicedIndex {
    fn insert(&mut self, filter: &BloomFilter) -> Slot {
        assert_eq!(filter.params().m_bits, self.m_bits, "filters of one index share m");
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot = self.slots_allocated;
                self.slots_allocated += 1;
                if slot as usize >= self.words * 64 {
                    self.grow();
                }
                self.used_words = (self.slots_allocated as usize).div_ceil(64);
                self.filters.resize(self.slots_allocated as usize * self.filter_words, 0);
                slot
            }
        };
        let stored = &mut self.filters[slot as usize * self.filter_words..][..self.filter_words];
        for (word, bytes) in stored.iter_mut().zip(filter.as_bytes().chunks(8)) {
            let mut le = [0u8; 8];
            le[..bytes.len()].copy_from_slice(bytes);
            *word = u64::from_le_bytes(le);
        }
        let (column, mask) = (slot as usize / 64, 1u64 << (slot % 64));
        let (bits, words) = (&mut self.bits, self.words);
        Self::for_each_filter_bit(stored, |j| bits[j * words + column] |= mask);
        self.len += 1;
        slot
    }

    fn remove(&mut self, slot: Slot) {
        assert!(slot < self.slots_allocated, "slot was never allocated");
        let stored = &mut self.filters[slot as usize * self.filter_words..][..self.filter_words];
        let (column, mask) = (slot as usize / 64, 1u64 << (slot % 64));
        let (bits, words) = (&mut self.bits, self.words);
        Self::for_each_filter_bit(stored, |j| bits[j * words + column] &= !mask);
        stored.fill(0);
        self.free.push(slot);
        self.len -= 1;
    }

    #[inline]
    fn for_each_match(&self, positions: &BloomPositions, mut on_match: impl FnMut(Slot)) {
        if self.len == 0 {
            return;
        }
        let (words, used) = (self.words, self.used_words);
        let row = |p: u32| {
            debug_assert!(p < self.m_bits);
            let start = p as usize * words;
            &self.bits[start..start + used]
        };
        let report = |w: usize, mut bits: u64| {
            while bits != 0 {
                on_match((w * 64) as Slot + bits.trailing_zeros());
                bits &= bits - 1;
            }
        };
        match *positions.as_slice() {
            // The protocol's k = 3: three row slices on the stack, no array of BLOOM_K_MAX slices to fill.
            [p0, p1, p2] => and_rows(self.kernel, &[row(p0), row(p1), row(p2)], report),
            ref positions => {
                let mut rows: [&[u64]; BLOOM_K_MAX] = [&[]; BLOOM_K_MAX];
                for (r, &p) in rows.iter_mut().zip(positions) {
                    *r = row(p);
                }
                and_rows(self.kernel, &rows[..positions.len()], report);
            }
        }
    }

    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_match_remove_reuse() {
        let params = BloomParams::default();
        let mut index = BitSlicedIndex::new(params);
        let mut f = BloomFilter::new(params);
        f.insert_positions(&BloomPositions::from_slice(&[1, 500, 1023]));
        let slots: Vec<Slot> = (0..70).map(|_| index.insert(&f)).collect();
        assert_eq!(slots, (0..70).collect::<Vec<_>>());
        assert_eq!(index.scanned_words(), 2);
        let mut hits = Vec::new();
        index.for_each_match(&BloomPositions::from_slice(&[1, 1023, 500]), |s| hits.push(s));
        assert_eq!(hits, (0..70).collect::<Vec<_>>());
        index.for_each_match(&BloomPositions::from_slice(&[1, 2, 500]), |s| hits.push(s));
        assert_eq!(hits.len(), 70, "bit 2 is in no filter");
        index.remove(3);
        index.remove(65);
        hits.clear();
        index.for_each_match(&BloomPositions::from_slice(&[1]), |s| hits.push(s));
        assert_eq!(hits.len(), 68);
        assert!(!hits.contains(&3) && !hits.contains(&65));
        // Freed slots are reused before the index widens; a different filter in a reused slot.
        let mut g = BloomFilter::new(params);
        g.insert_positions(&BloomPositions::from_slice(&[7]));
        assert_eq!(index.insert(&g), 65);
        assert_eq!(index.insert(&g), 3);
        hits.clear();
        index.for_each_match(&BloomPositions::from_slice(&[7]), |s| hits.push(s));
        assert_eq!(hits, vec![3, 65]);
        assert_eq!((index.len(), index.scanned_words()), (70, 2));
    }
}
