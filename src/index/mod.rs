//! Per-bucket subscription indexes: which registered Bloom filters contain a proof's Bloom positions.
//!
//! ```text
//! SUBSCRIBE entry ──insert(filter)──▶ Slot (dense, reused after remove)
//! proof ──k Bloom positions (computed once)──▶ for_each_match ──▶ slots whose filter has all k bits set
//! ```
//! Two implementations of one [`BucketIndex`] contract:
//! - [`bitsliced::BitSlicedIndex`]: filters stored transposed, a match is k ANDs over ⌈S/64⌉ words with the
//!   [`simd`] kernels (AVX-512 / AVX2 / NEON chosen at runtime, portable fallback). The engine uses it.
//! - [`scalar::ScalarIndex`]: one filter at a time, `BloomFilter::contains_positions`. Obviously correct;
//!   the oracle the fast index is property-tested against (tests/index_oracle.rs).
//!
//! [`simd`] also holds the batched one-block SHA-256 (SHA-NI multi-buffer) the engine hashes with.
//!
//! An index knows nothing about subscribers or windows: the engine maps slots to them.

pub mod bitsliced;
pub mod scalar;
pub mod simd;

use crate::proto::derive::BloomPositions;
use crate::proto::BloomFilter;

/// A filter's place in one bucket's index. Dense: slots are reused after removal, so the index's size
/// follows the number of live filters, not the number ever registered.
pub type Slot = u32;

/// A set of Bloom filters (all with the same parameters) that can be matched against Bloom positions.
pub trait BucketIndex {
    /// Registers `filter` (whose parameters must be the index's) and returns its slot; O(m).
    fn insert(&mut self, filter: &BloomFilter) -> Slot;
    /// Unregisters the filter in `slot` (a slot returned by `insert` and not yet removed); O(m).
    fn remove(&mut self, slot: Slot);
    /// Calls `on_match` for every registered slot whose filter has all of `positions` set, in ascending
    /// slot order. Positions must be `< m_bits`.
    fn for_each_match(&self, positions: &BloomPositions, on_match: impl FnMut(Slot));
    /// Filters registered.
    fn len(&self) -> usize;
    /// Whether no filter is registered.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
