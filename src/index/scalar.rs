//! The oracle index: filters kept whole and tested one at a time.
//!
//! Matching costs O(filters) per proof (the reference relay's approach); correctness is obvious, so the
//! bit-sliced index is checked against this one.

use crate::proto::derive::BloomPositions;
use crate::proto::BloomFilter;

use super::{BucketIndex, Slot};

/// Filters stored in slots, matched one by one.
#[derive(Clone, Debug, Default)]
pub struct ScalarIndex {
    /// `None` marks a free slot.
    filters: Vec<Option<BloomFilter>>,
    /// Free slots, reused last-freed first.
    free: Vec<Slot>,
    /// Registered filters.
    len: usize,
}

impl ScalarIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }
}

impl BucketIndex for ScalarIndex {
    fn insert(&mut self, filter: &BloomFilter) -> Slot {
        self.len += 1;
        match self.free.pop() {
            Some(slot) => {
                self.filters[slot as usize] = Some(filter.clone());
                slot
            }
            None => {
                self.filters.push(Some(filter.clone()));
                (self.filters.len() - 1) as Slot
            }
        }
    }

    fn remove(&mut self, slot: Slot) {
        let old = self.filters[slot as usize].take();
        assert!(old.is_some(), "removing a free slot breaks the slot accounting");
        self.free.push(slot);
        self.len -= 1;
    }

    #[inline]
    fn for_each_match(&self, positions: &BloomPositions, mut on_match: impl FnMut(Slot)) {
        for (slot, filter) in self.filters.iter().enumerate() {
            if filter.as_ref().is_some_and(|f| f.contains_positions(positions)) {
                on_match(slot as Slot);
            }
        }
    }

    fn len(&self) -> usize {
        self.len
    }
}
