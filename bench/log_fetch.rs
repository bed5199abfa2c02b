//! `log_fetch`: the two ways to serve an offline recipient, measured in the pure layer (docs/STORAGE.md
//! §FETCH explains the choice).
//!
//! - `mailbox/record_match`: cost per match of recording it in the subscriber's mailbox index (paid at
//!   routing time, once per match — proportional to matches, not to traffic).
//! - `mailbox/page_64`: planning one FETCH page of 64 entries in a shard holding 4,800 subscribers × 200
//!   entries (960k matches): O(log n + page), independent of everyone else's traffic.
//! - `scan_at_fetch/per_stored_proof`: matching stored proofs against a filter supplied with FETCH: the cost
//!   per stored proof (Bloom positions of its fingerprint — 3 SHA-256 — and the bit tests), to be multiplied by
//!   every proof stored in the subscriber's buckets during its absence (plus reading them from disk).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tessera::log::mailbox::{Mailbox, SubscriberKey};
use tessera::log::RecordSeq;
use tessera::proto::bloom::{BloomFilter, BloomParams};
use tessera::proto::params::CIPHERTEXT_LEN;
use tessera::proto::proof::Proof;

fn key(i: u64) -> SubscriberKey {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    SubscriberKey(k)
}

fn mailbox(c: &mut Criterion) {
    let mut g = c.benchmark_group("log_fetch/mailbox");
    g.throughput(Throughput::Elements(1));
    g.bench_function("record_match", |b| {
        let mut m = Mailbox::default();
        let mut seq = 0u64;
        b.iter(|| {
            seq += 1;
            black_box(m.insert(key(seq % 4_800), RecordSeq(seq)));
            if seq.is_multiple_of(1 << 20) {
                m.trim_below(RecordSeq(seq - (1 << 19))); // keep memory bounded as retention would
            }
        })
    });
    let (subscribers, per) = (4_800u64, 200u64);
    let mut m = Mailbox::default();
    for seq in 0..subscribers * per {
        m.insert(key(seq % subscribers), RecordSeq(seq));
    }
    g.throughput(Throughput::Elements(64));
    g.bench_function("page_64", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let from = RecordSeq((i * 7_919) % (subscribers * per / 2));
            black_box(m.page(&key(i % subscribers), from, Some(RecordSeq(u64::MAX)), 64))
        })
    });
    g.finish();
}

fn scan_at_fetch(c: &mut Criterion) {
    let mut g = c.benchmark_group("log_fetch/scan_at_fetch");
    let mut filter = BloomFilter::new(BloomParams::default());
    for i in 0u64..60 {
        filter.insert_fingerprint(&i.to_be_bytes());
    }
    let stored: Vec<Proof> = (0..1_024u64)
        .map(|i| Proof::new(1, 1_700_000_000, &[i as u8; 32], &(i * 31 + 7).to_be_bytes(), &[0; CIPHERTEXT_LEN]))
        .collect();
    g.throughput(Throughput::Elements(stored.len() as u64));
    g.bench_function("per_stored_proof", |b| {
        b.iter(|| stored.iter().filter(|p| filter.contains_fingerprint(p.view().fingerprint())).count())
    });
    g.finish();
}

criterion_group!(benches, mailbox, scan_at_fetch);
criterion_main!(benches);
