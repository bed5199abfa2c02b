//! Differential test: the bit-sliced index (every available SIMD kernel) against per-filter
//! `BloomFilter::contains_fingerprint` and the scalar index, over random insert / remove / query sequences
//! that reuse slots after removal.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tessera::index::bitsliced::BitSlicedIndex;
use tessera::index::scalar::ScalarIndex;
use tessera::index::simd::Kernel;
use tessera::index::{BucketIndex, Slot};
use tessera::proto::derive::fingerprint_positions;
use tessera::proto::{BloomFilter, BloomParams};

#[derive(Clone, Debug)]
enum Op {
    /// Register a filter holding these fingerprints.
    Insert(Vec<u64>),
    /// Remove the n-th live filter (mod live count).
    Remove(usize),
    /// Query a fingerprint: an arbitrary one, or one inserted in the n-th live filter.
    Query(u64),
    QueryMember(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    // Small fingerprint alphabet and few items per filter: both hits and misses are frequent.
    prop_oneof![
        3 => prop::collection::vec(0u64..400, 0..40).prop_map(Op::Insert),
        2 => any::<usize>().prop_map(Op::Remove),
        3 => (0u64..400).prop_map(Op::Query),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::QueryMember(a, b)),
    ]
}

/// One index under test, with its own key → slot map.
struct Under<I: BucketIndex> {
    index: I,
    slots: BTreeMap<u32, Slot>,
}

impl<I: BucketIndex> Under<I> {
    fn matches(&self, fp: &[u8; 8], params: BloomParams) -> Vec<u32> {
        let positions = fingerprint_positions(fp, params.m_bits, params.k);
        let by_slot: BTreeMap<Slot, u32> = self.slots.iter().map(|(&k, &s)| (s, k)).collect();
        let mut out = Vec::new();
        let mut last = None;
        self.index.for_each_match(&positions, |slot| {
            assert!(last < Some(slot), "slots reported in ascending order, once each");
            last = Some(slot);
            out.push(*by_slot.get(&slot).expect("only live slots match"));
        });
        out.sort();
        out
    }
}

fn run(ops: &[Op], params: BloomParams, kernel: Kernel) {
    let mut live: BTreeMap<u32, (BloomFilter, Vec<u64>)> = BTreeMap::new();
    let mut fast = Under { index: BitSlicedIndex::with_kernel(params, kernel), slots: BTreeMap::new() };
    let mut scalar = Under { index: ScalarIndex::new(), slots: BTreeMap::new() };
    let mut next_key = 0u32;
    let mut queries = Vec::new();
    for op in ops {
        match op {
            Op::Insert(items) => {
                let mut f = BloomFilter::new(params);
                for i in items {
                    f.insert_fingerprint(&i.to_be_bytes());
                }
                fast.slots.insert(next_key, fast.index.insert(&f));
                scalar.slots.insert(next_key, scalar.index.insert(&f));
                live.insert(next_key, (f, items.clone()));
                next_key += 1;
            }
            Op::Remove(n) if !live.is_empty() => {
                let key = *live.keys().nth(n % live.len()).unwrap();
                live.remove(&key);
                fast.index.remove(fast.slots.remove(&key).unwrap());
                scalar.index.remove(scalar.slots.remove(&key).unwrap());
            }
            Op::Remove(_) => {}
            Op::Query(i) => queries.push(*i),
            Op::QueryMember(a, b) => {
                if let Some((_, items)) = live.values().nth(a % live.len().max(1)) {
                    if !items.is_empty() {
                        queries.push(items[b % items.len()]);
                    }
                }
            }
        }
        // Query after every step so slot reuse is exercised against the state at that moment.
        for &q in &queries {
            let fp = q.to_be_bytes();
            let expected: Vec<u32> =
                live.iter().filter(|(_, (f, _))| f.contains_fingerprint(&fp)).map(|(&k, _)| k).collect();
            assert_eq!(fast.matches(&fp, params), expected, "bit-sliced ({kernel:?}) vs contains_fingerprint");
            assert_eq!(scalar.matches(&fp, params), expected, "scalar vs contains_fingerprint");
        }
        queries.clear();
        assert_eq!(fast.index.len(), live.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn bitsliced_matches_per_filter_contains(ops in prop::collection::vec(op(), 1..160)) {
        for kernel in Kernel::available() {
            run(&ops, BloomParams::default(), kernel);
        }
    }

    /// Small m (dense filters, many hits) and k ≠ 3 exercise the generic k path and short rows.
    #[test]
    fn bitsliced_matches_with_other_parameters(ops in prop::collection::vec(op(), 1..120), k in 1u8..6) {
        for kernel in Kernel::available() {
            run(&ops, BloomParams::new(136, k).unwrap(), kernel);
        }
    }
}

/// Many filters (several AVX-512 steps per row) with removal in the middle and reuse.
#[test]
fn wide_index_with_reuse() {
    let ops: Vec<Op> = (0..300u64)
        .map(|i| Op::Insert(vec![i % 97, i % 89, 1000 + i]))
        .chain((0..100).map(|i| Op::Remove(i * 7)))
        .chain((0..100u64).map(|i| Op::Insert(vec![i % 13])))
        .chain((0..30u64).map(Op::Query))
        .chain((0..15).map(|i| Op::QueryMember(i * 11, i)))
        .collect();
    for kernel in Kernel::available() {
        run(&ops, BloomParams::default(), kernel);
    }
}
