//! The hot path allocates nothing per proof: a counting global allocator watches `handle_publish` and the
//! delivery/gossip drain once the shard's tables have reached their size for the traffic.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tessera::engine::{EngineConfig, MemoryLog, Origin, Shard};
use tessera::proto::{
    bucket_of, fingerprint, BloomFilter, BloomParams, Proof, ProofBatch, SubscribeEntry, CIPHERTEXT_LEN,
};

/// Counts allocations made on threads that opted in (the test harness runs tests on several threads).
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

const W: u64 = 1_700_000_000;

fn commit(n: u32) -> [u8; 32] {
    let mut c = [7u8; 32];
    c[..4].copy_from_slice(&n.to_be_bytes());
    c
}

/// A batch of valid proofs for commits `from..from + n`, as one shared `Bytes` (as the codec hands it over:
/// a slice of the received message).
fn batch(from: u32, n: u32) -> ProofBatch {
    let proofs: Vec<Proof> = (from..from + n)
        .map(|i| {
            let c = commit(i);
            Proof::new(bucket_of(&c, 64), W, &c, &fingerprint(&c, W), &[1; CIPHERTEXT_LEN])
        })
        .collect();
    let message = Bytes::from(proofs.iter().flat_map(|p| p.as_bytes().to_vec()).collect::<Vec<u8>>());
    let _promoted = message.clone(); // a received message is already shared by the codec's frame slices
    ProofBatch::from_bytes(message.slice(..)).unwrap()
}

#[test]
fn publish_and_drain_allocate_nothing_per_proof() {
    // The counter works: one allocation is seen as one.
    assert_eq!(allocations_in(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(10)))), 1);

    let mut shard = Shard::new(EngineConfig::single_shard(), MemoryLog::preallocated(4096));
    shard.add_peer(1);
    // Every 4th commit is expected by one of 64 subscribers, so deliveries happen in every batch.
    for s in 0..64u32 {
        let expected: Vec<u32> = (0..4000).filter(|n| n % 4 == 0 && (n / 4) % 64 == s).collect();
        let mut by_bucket: std::collections::BTreeMap<u16, BloomFilter> = Default::default();
        for n in expected {
            let c = commit(n);
            by_bucket
                .entry(bucket_of(&c, 64))
                .or_insert_with(|| BloomFilter::new(BloomParams::default()))
                .insert_fingerprint(&fingerprint(&c, W));
        }
        let entries: Vec<SubscribeEntry> = by_bucket
            .into_iter()
            .take(4)
            .map(|(bucket, filter)| SubscribeEntry { bucket, window_from_s: W, window_to_s: W, filter })
            .collect();
        shard.handle_subscribe(W + 5, tessera::log::mailbox::SubscriberKey([s as u8; 16]), &entries).unwrap();
    }
    let mut rejected = Vec::with_capacity(1024);
    let drain = |shard: &mut Shard<MemoryLog>| {
        let mut delivered = 0;
        while shard.poll_delivery().is_some() {
            delivered += 1;
        }
        while shard.poll_gossip(1).is_some() {}
        delivered
    };
    // Warm-up: the dedup table grows to 2048 slots (it doubles at half load), queues reach their size.
    for k in 0..3 {
        let summary = shard.handle_publish(W + 5, Origin::Client, &batch(k * 200, 200), &mut rejected);
        assert_eq!(summary.accepted, 200);
        drain(&mut shard);
    }
    // Measured: 400 more proofs (dedup stays under half of 2048 slots), built outside the counted region.
    let b1 = batch(600, 200);
    let b2 = batch(800, 200);
    let mut delivered = 0;
    let allocations = allocations_in(|| {
        for b in [&b1, &b2] {
            let summary = shard.handle_publish(W + 5, Origin::Client, b, &mut rejected);
            assert_eq!(summary.accepted, 200);
            delivered += drain(&mut shard);
        }
    });
    assert!(delivered >= 20, "the measured batches exercise matching and delivery ({delivered})");
    assert_eq!(allocations, 0, "allocations while routing 400 proofs");
    assert!(rejected.is_empty());
}
