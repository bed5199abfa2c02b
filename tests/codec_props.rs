//! Property tests of the frame codec: round trips for every frame type, no panic and bounded allocation on
//! arbitrary and mutated input, and canonical encoding (whatever decodes re-encodes to the same bytes).
//!
//! Allocation is measured with a counting global allocator (per thread, so parallel tests do not mix);
//! `alloc_budget` states the bound the decoder must stay under.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use tessera::proto::frame::{frame_type as ft, ErrorFrame, Publish, Subscribe};
use tessera::proto::limits::ERROR_TEXT_BYTES_MAX;
use tessera::proto::Claim;
use tessera::proto::{
    encode_frame, encode_message, BloomFilter, BloomParams, Codec, DecodeError, ErrorCode, Frame, Hello, Limits, Proof,
    ProofBatch, RelayParams, RelayPolicy, Role, SubscribeEntry, SubscriberId, CIPHERTEXT_LEN, PROOF_LEN,
};

use common::raw_frame;

// ---- counting allocator ----

/// Counts bytes requested by `alloc`/`realloc` on the current thread, then defers to the system allocator.
struct CountingAlloc;

thread_local! {
    /// Bytes allocated by this thread so far. `const` and `Drop`-free, so touching it never allocates.
    static BYTES_ALLOCATED: Cell<u64> = const { Cell::new(0) };
}

fn count(n: usize) {
    // `try_with`: during thread teardown the slot may be gone; those allocations are not ours to count.
    let _ = BYTES_ALLOCATED.try_with(|c| c.set(c.get() + n as u64));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; counting has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes through this type).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as `dealloc`, and the caller guarantees `new_size` is valid for `layout.align()`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result with the bytes this thread allocated meanwhile.
fn allocated_during<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = BYTES_ALLOCATED.with(Cell::get);
    let out = f();
    (out, BYTES_ALLOCATED.with(Cell::get) - before)
}

/// What decoding an `n`-byte message may allocate in total: the frame list (at most `frames_per_message_max`
/// frames, ≤ 2× through growth), plus, proportional to the input, SUBSCRIBE entries (each ≥ 20 input bytes for
/// a ≤ 64-byte entry struct), filter copies and error texts (≤ 1× each). Proof batches are zero-copy.
fn alloc_budget(n: usize) -> u64 {
    (4 * n + 2 * 64 * std::mem::size_of::<Frame>() + 1024) as u64
}

// ---- strategies ----

fn arb_proof() -> impl Strategy<Value = Proof> {
    (any::<u16>(), any::<u64>(), any::<[u8; 32]>(), any::<[u8; 8]>(), vec(any::<u8>(), CIPHERTEXT_LEN)).prop_map(
        |(bucket, window, commit, fp, ct)| {
            let ct: [u8; CIPHERTEXT_LEN] = ct.try_into().expect("vec of CIPHERTEXT_LEN");
            Proof::new(bucket, window, &commit, &fp, &ct)
        },
    )
}

fn arb_batch(min: usize, max: usize) -> impl Strategy<Value = ProofBatch> {
    vec(arb_proof(), min..=max).prop_map(|proofs| ProofBatch::from_proofs(proofs.iter().map(|p| p.view())))
}

fn arb_subscriber() -> impl Strategy<Value = SubscriberId> {
    any::<[u8; 16]>().prop_map(SubscriberId)
}

fn arb_entry() -> impl Strategy<Value = SubscribeEntry> {
    (any::<u16>(), any::<u64>(), any::<u64>(), vec(any::<u8>(), 128)).prop_map(|(bucket, a, b, bits)| SubscribeEntry {
        bucket,
        window_from_s: a.min(b),
        window_to_s: a.max(b),
        filter: BloomFilter::from_bytes(BloomParams::default(), &bits).expect("128 bytes"),
    })
}

fn arb_limits() -> impl Strategy<Value = Limits> {
    ((579u32.., 1u16.., 1u16.., any::<u16>(), any::<u16>()), (any::<u16>(), any::<u32>(), any::<u32>(), any::<u32>()))
        .prop_map(|((message, frames, proofs, entries, filters), (subs, ahead, conns, queue))| Limits {
            message_bytes_max: message,
            frames_per_message_max: frames,
            proofs_per_batch_max: proofs,
            entries_per_subscribe_max: entries,
            filters_per_bucket_max: filters,
            subscribers_per_connection_max: subs,
            subscription_windows_ahead_max: ahead,
            connections_max: conns,
            send_queue_proofs_max: queue,
        })
}

fn arb_relay_params() -> impl Strategy<Value = RelayParams> {
    let base = (any::<u16>(), 1u16.., 1u32.., 1u32..=8192, 1u8..=16, any::<u32>(), any::<[u8; 16]>(), arb_limits());
    (base, arb_policy_seed()).prop_map(
        |((version, num_buckets, window_s, m_bytes, k, retention_s, node_id, limits), seed)| RelayParams {
            version,
            num_buckets,
            window_s,
            bloom: BloomParams::new(m_bytes * 8, k).expect("m multiple of 8 within bounds, k in 1..=16"),
            proof_len: PROOF_LEN as u32,
            ciphertext_len: CIPHERTEXT_LEN as u32,
            retention_s,
            node_id,
            limits,
            // Reduced into the ranges HELLO_REPLY's MUSTs allow: shards ≤ buckets, skew < window.
            policy: RelayPolicy {
                shards: 1 + seed.0 % num_buckets,
                filter_fingerprints_max: seed.1.max(1),
                clock_skew_s: seed.2 % window_s,
                slow_consumer_grace_ms: seed.3,
                hello_timeout_ms: seed.4.max(1),
                idle_timeout_ms: seed.5,
                protocol_errors_max: seed.6.max(1),
            },
            auth_nonce: seed.7,
        },
    )
}

/// Raw values for a [`RelayPolicy`], reduced into range by `arb_relay_params`.
fn arb_policy_seed() -> impl Strategy<Value = (u16, u16, u32, u32, u32, u32, u16, [u8; 16])> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        any::<[u8; 16]>(),
    )
}

/// Any frame within the default limits (batches kept small so that the suite stays fast; the 1024-proof edge
/// is covered in tests/codec_rejections.rs).
fn arb_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (any::<u16>(), prop_oneof![Just(Role::Client), Just(Role::Peer)], any::<[u8; 16]>())
            .prop_map(|(version, role, node_id)| Frame::Hello(Hello { version, role, node_id }))
            .boxed(),
        arb_relay_params().prop_map(Frame::HelloReply).boxed(),
        (any::<u64>(), arb_batch(1, 3)).prop_map(|(seq, proofs)| Frame::Publish(Publish { seq, proofs })).boxed(),
        any::<u64>().prop_map(|seq| Frame::Ack { seq }).boxed(),
        (arb_subscriber(), vec(arb_entry(), 0..=4))
            .prop_map(|(subscriber, entries)| Frame::Subscribe(Subscribe { subscriber, entries }))
            .boxed(),
        (arb_subscriber(), any::<u16>())
            .prop_map(|(subscriber, entries)| Frame::Subscribed { subscriber, entries })
            .boxed(),
        arb_subscriber().prop_map(|subscriber| Frame::Unsubscribe { subscriber }).boxed(),
        (any::<[u8; 32]>(), any::<[u8; 32]>(), any::<[u8; 32]>())
            .prop_map(|(key, r, s)| {
                let mut signature = [0u8; 64];
                signature[..32].copy_from_slice(&r);
                signature[32..].copy_from_slice(&s);
                Frame::Claim(Claim { key, signature })
            })
            .boxed(),
        (arb_subscriber(), arb_batch(1, 3))
            .prop_map(|(subscriber, proofs)| Frame::Deliver { subscriber, proofs })
            .boxed(),
        (arb_subscriber(), any::<u64>(), 1u16..=1024)
            .prop_map(|(subscriber, cursor, proofs_max)| Frame::Fetch { subscriber, cursor, proofs_max })
            .boxed(),
        (arb_subscriber(), any::<u64>(), any::<bool>(), arb_batch(0, 3))
            .prop_map(|(subscriber, next_cursor, more, proofs)| Frame::FetchReply {
                subscriber,
                next_cursor,
                more,
                proofs
            })
            .boxed(),
        // ≤ 64 chars of ≤ 4 bytes each: always within ERROR_TEXT_BYTES_MAX.
        (any::<u16>(), any::<u64>(), any::<u32>(), "\\PC{0,64}")
            .prop_map(|(code, ref_seq, detail, text)| Frame::Error(ErrorFrame {
                code: ErrorCode(code),
                ref_seq,
                detail,
                text
            }))
            .boxed(),
    ]
}

/// A frame header with a known type and a random body, so decoding gets past the type byte.
fn arb_known_type_frame() -> impl Strategy<Value = Vec<u8>> {
    let types = [
        ft::HELLO,
        ft::HELLO_REPLY,
        ft::PUBLISH,
        ft::ACK,
        ft::SUBSCRIBE,
        ft::SUBSCRIBED,
        ft::UNSUBSCRIBE,
        ft::DELIVER,
        ft::FETCH,
        ft::FETCH_REPLY,
        ft::ERROR,
    ];
    (prop::sample::select(types.to_vec()), vec(any::<u8>(), 0..700)).prop_map(|(t, body)| raw_frame(t, &body))
}

#[derive(Clone, Debug)]
enum Mutation {
    /// XOR the byte at `at % len` with `mask` (non-zero).
    Flip { at: usize, mask: u8 },
    /// Keep only the first `at % (len + 1)` bytes.
    Truncate { at: usize },
    /// Insert `bytes` at `at % (len + 1)`.
    Insert { at: usize, bytes: Vec<u8> },
    /// Overwrite a big-endian u32 (a length or count field, often) at `at % len`.
    Overwrite { at: usize, value: u32 },
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<usize>(), vec(any::<u8>(), 1..8)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (any::<usize>(), any::<u32>()).prop_map(|(at, value)| Mutation::Overwrite { at, value }),
    ]
}

fn mutate(mut m: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        if m.is_empty() {
            break;
        }
        let len = m.len();
        match mutation {
            Mutation::Flip { at, mask } => m[at % len] ^= mask,
            Mutation::Truncate { at } => m.truncate(at % (len + 1)),
            Mutation::Insert { at, bytes } => {
                let at = at % (len + 1);
                m.splice(at..at, bytes.iter().copied());
            }
            Mutation::Overwrite { at, value } => {
                let at = at % len;
                let end = (at + 4).min(len);
                m[at..end].copy_from_slice(&value.to_be_bytes()[..end - at]);
            }
        }
    }
    m
}

/// Decodes untrusted bytes and checks what must hold whatever they are: no panic (reaching the end), bounded
/// allocation, a known error code on failure, and canonical encoding on success.
fn check_untrusted(codec: &Codec, input: Vec<u8>) -> Result<Vec<Frame>, DecodeError> {
    let len = input.len();
    let msg = Bytes::from(input);
    let (result, allocated) = allocated_during(|| codec.decode_message(&msg));
    assert!(allocated <= alloc_budget(len), "decoding {len} bytes allocated {allocated} > {}", alloc_budget(len));
    match &result {
        Ok(frames) => {
            assert!(!frames.is_empty() && frames.len() <= codec.limits.frames_per_message_max as usize);
            assert_eq!(encode_message(frames), msg, "a decoded message re-encodes to the same bytes");
        }
        Err(e) => assert!((1..=24).contains(&e.code()), "unknown code {} for {e}", e.code()),
    }
    result
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_frame_round_trips(frame in arb_frame()) {
        let mut out = BytesMut::new();
        encode_frame(&frame, &mut out);
        prop_assert_eq!(out[0], frame.type_byte());
        prop_assert_eq!(u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize, out.len() - 5);
        let decoded = Codec::default().decode_message(&out.freeze()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded, vec![frame]);
    }

    #[test]
    fn messages_of_many_frames_round_trip(frames in vec(arb_frame(), 1..=8)) {
        let wire = encode_message(&frames);
        let decoded = check_untrusted(&Codec::default(), wire.to_vec()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn subscribe_round_trips_with_other_bloom_sizes(
        m_bytes in 1u32..=1024, k in 1u8..=16, sub in arb_subscriber(), seed in any::<u8>(), n in 0usize..4,
    ) {
        let params = BloomParams::new(m_bytes * 8, k).expect("valid");
        let entries: Vec<SubscribeEntry> = (0..n)
            .map(|i| {
                let mut filter = BloomFilter::new(params);
                filter.insert(&[seed, i as u8]);
                SubscribeEntry { bucket: i as u16, window_from_s: 10, window_to_s: 10 + i as u64, filter }
            })
            .collect();
        let frame = Frame::Subscribe(Subscribe { subscriber: sub, entries });
        let codec = Codec::new(Limits::default(), params);
        prop_assert_eq!(codec.decode_message(&encode_message(std::slice::from_ref(&frame))), Ok(vec![frame]));
    }

    #[test]
    fn long_error_text_is_cut_at_a_char_boundary(text in "\\PC{0,400}") {
        let frame = Frame::Error(ErrorFrame { code: ErrorCode::MALFORMED, ref_seq: 1, detail: 2, text: text.clone() });
        let decoded = Codec::default().decode_message(&encode_message(&[frame])).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match &decoded[..] {
            [Frame::Error(e)] => {
                prop_assert!(e.text.len() <= ERROR_TEXT_BYTES_MAX);
                prop_assert!(text.starts_with(&e.text));
                // Cut only as much as needed: the next char would not have fit.
                if e.text.len() < text.len() {
                    let next = text[e.text.len()..].chars().next().expect("a char was cut").len_utf8();
                    prop_assert!(e.text.len() + next > ERROR_TEXT_BYTES_MAX);
                }
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(input in vec(any::<u8>(), 0..2048)) {
        let _ = check_untrusted(&Codec::default(), input);
    }

    #[test]
    fn decode_never_panics_on_random_bodies_of_known_types(frames in vec(arb_known_type_frame(), 1..4)) {
        let _ = check_untrusted(&Codec::default(), frames.concat());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics_on_mutated_valid_messages(
        frames in vec(arb_frame(), 1..=4), mutations in vec(arb_mutation(), 1..=4),
    ) {
        let _ = check_untrusted(&Codec::default(), mutate(encode_message(&frames).to_vec(), &mutations));
    }

    #[test]
    fn decode_respects_tight_limits(input in vec(arb_known_type_frame(), 1..6), frames_max in 1u16..4, proofs_max in 1u16..4) {
        let limits = Limits { frames_per_message_max: frames_max, proofs_per_batch_max: proofs_max, ..Limits::default() };
        let codec = Codec::new(limits, BloomParams::default());
        if let Ok(frames) = check_untrusted(&codec, input.concat()) {
            for frame in &frames {
                match frame {
                    Frame::Publish(Publish { proofs, .. }) | Frame::Deliver { proofs, .. } | Frame::FetchReply { proofs, .. } => {
                        prop_assert!(proofs.len() <= proofs_max as usize)
                    }
                    Frame::Fetch { proofs_max: page, .. } => prop_assert!(*page <= proofs_max),
                    _ => {}
                }
            }
        }
    }
}

// ---- allocation on adversarial declarations (concrete cases) ----

#[test]
fn declared_counts_do_not_drive_allocation() {
    let codec = Codec::default();
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        // 256 entries declared, none present.
        (
            raw_frame(ft::SUBSCRIBE, &[&[0u8; 16][..], &256u16.to_be_bytes()].concat()),
            DecodeError::BodyTooShort { frame_type: ft::SUBSCRIBE, need: 18 + 256 * 20, have: 18 },
        ),
        // 1024 proofs declared, none present.
        (
            raw_frame(ft::PUBLISH, &[&[0u8; 8][..], &1024u16.to_be_bytes()].concat()),
            DecodeError::BodyTooShort { frame_type: ft::PUBLISH, need: 10 + 1024 * PROOF_LEN, have: 10 },
        ),
        // A 1 MiB frame declared in a 5-byte message.
        (
            vec![ft::PUBLISH, 0x00, 0x0F, 0xFF, 0xFB],
            DecodeError::TruncatedBody { frame_type: ft::PUBLISH, declared: (1 << 20) - 5, remaining: 0 },
        ),
        // 64 KiB of error text declared.
        (raw_frame(ft::ERROR, &[&[0u8; 14][..], &u16::MAX.to_be_bytes()].concat()), DecodeError::TextTooLong(65535)),
    ];
    for (input, expected) in cases {
        let msg = Bytes::from(input);
        let (result, allocated) = allocated_during(|| codec.decode_message(&msg));
        assert_eq!(result, Err(expected));
        // Only the (small) initial frame list: nothing sized by the declaration.
        assert!(allocated <= 4 * std::mem::size_of::<Frame>() as u64 + 64, "allocated {allocated} bytes");
    }
}

#[test]
fn proof_batches_are_zero_copy() {
    let proofs: Vec<Proof> = (0..100).map(|i| common::sample_proof(i as u8)).collect();
    let frame = Frame::Publish(Publish { seq: 1, proofs: ProofBatch::from_proofs(proofs.iter().map(|p| p.view())) });
    let wire = encode_message(&[frame]);
    let (decoded, allocated) = allocated_during(|| Codec::default().decode_message(&wire));
    let decoded = decoded.expect("valid");
    // 100 proofs are 56,400 bytes; decoding them copies none.
    assert!(allocated < 1024, "allocated {allocated} bytes");
    match &decoded[..] {
        [Frame::Publish(p)] => {
            assert_eq!(p.proofs.len(), 100);
            assert_eq!(p.proofs.as_bytes().as_ptr(), wire[15..].as_ptr());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn counting_allocator_counts() {
    // The allocation assertions above mean something only if the counter sees allocations.
    let (v, allocated) = allocated_during(|| vec![7u8; 10_000]);
    assert_eq!(v.len(), 10_000);
    assert!(allocated >= 10_000, "counted {allocated}");
    let (s, allocated) =
        allocated_during(|| Codec::default().decode_message(&Bytes::from(raw_frame(ft::ERROR, &[0; 16]))));
    assert!(s.is_ok());
    assert!(allocated > 0, "decoding allocates at least the frame list");
}
