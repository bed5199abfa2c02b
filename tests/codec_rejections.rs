//! Every way a message can be malformed gets its own typed `DecodeError`, with the exact fields asserted.
//!
//! Each case builds raw bytes by hand (not through the encoder) so that the test does not share the codec's
//! assumptions. The relay turns these into `ERROR(MALFORMED, detail = DecodeError::code())`, so the codes
//! must be distinct and stable; the last tests pin them.

mod common;

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tessera::proto::frame::{frame_type as ft, Frame};
use tessera::proto::proof::ProofError;
use tessera::proto::{
    encode_frame, BloomParams, Codec, DecodeError, ErrorCode, Limits, RelayParams, RelayPolicy, Role, SubscriberId,
    PROOF_LEN,
};

use common::{raw_frame, sample_proof};

fn decode(bytes: Vec<u8>) -> Result<Vec<Frame>, DecodeError> {
    Codec::default().decode_message(&Bytes::from(bytes))
}

fn decode_err(bytes: Vec<u8>) -> DecodeError {
    match decode(bytes) {
        Ok(frames) => panic!("expected an error, decoded {frames:?}"),
        Err(e) => e,
    }
}

fn hello_body(magic: &[u8; 4], version: u16, role: u8, flags: u8) -> Vec<u8> {
    let mut b = magic.to_vec();
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(&[role, flags]);
    b.extend_from_slice(&[0xAA; 16]);
    b
}

fn ack(seq: u64) -> Vec<u8> {
    raw_frame(ft::ACK, &seq.to_be_bytes())
}

/// `prefix ‖ count:u16 ‖ proofs`, with proof `i` built by `sample_proof(i)`.
fn batch_body(prefix: &[u8], count: u16, proofs: usize) -> Vec<u8> {
    let mut b = prefix.to_vec();
    b.extend_from_slice(&count.to_be_bytes());
    for i in 0..proofs {
        b.extend_from_slice(sample_proof(i as u8).as_bytes());
    }
    b
}

fn subscribe_body(count: u16, entries: &[(u16, u64, u64, usize)]) -> Vec<u8> {
    let mut b = vec![0x11; 16];
    b.extend_from_slice(&count.to_be_bytes());
    for &(bucket, from, to, filter_len) in entries {
        b.extend_from_slice(&bucket.to_be_bytes());
        b.extend_from_slice(&from.to_be_bytes());
        b.extend_from_slice(&to.to_be_bytes());
        b.extend_from_slice(&(filter_len as u16).to_be_bytes());
        b.extend(std::iter::repeat_n(0x0F, filter_len));
    }
    b
}

fn fetch_body(proofs_max: u16) -> Vec<u8> {
    let mut b = vec![0x22; 16];
    b.extend_from_slice(&7u64.to_be_bytes());
    b.extend_from_slice(&proofs_max.to_be_bytes());
    b
}

fn error_body(text: &[u8], declared_len: u16) -> Vec<u8> {
    let mut b = 0x0001u16.to_be_bytes().to_vec();
    b.extend_from_slice(&0u64.to_be_bytes());
    b.extend_from_slice(&9u32.to_be_bytes());
    b.extend_from_slice(&declared_len.to_be_bytes());
    b.extend_from_slice(text);
    b
}

/// A valid HELLO_REPLY body (106 bytes) built by the encoder, to be patched at known offsets.
fn hello_reply_body() -> Vec<u8> {
    let params = RelayParams {
        version: 3,
        num_buckets: 64,
        window_s: 10,
        bloom: BloomParams::default(),
        proof_len: PROOF_LEN as u32,
        ciphertext_len: 512,
        retention_s: 3600,
        node_id: [7; 16],
        limits: Limits::default(),
        policy: RelayPolicy { shards: 2, ..RelayPolicy::default() },
        auth_nonce: [9; 16],
    };
    let mut out = BytesMut::new();
    encode_frame(&Frame::HelloReply(params), &mut out);
    assert_eq!(out.len(), 5 + 106);
    out[5..].to_vec()
}

// ---- message level ----

#[test]
fn empty_message() {
    assert_eq!(decode_err(vec![]), DecodeError::EmptyMessage);
}

#[test]
fn oversized_message() {
    let len = (1 << 20) + 1;
    assert_eq!(decode_err(vec![0u8; len]), DecodeError::MessageTooLarge { len, max: 1 << 20 });
    // Exactly at the limit is not "too large": it fails later, on its content (a header of zeros is frame
    // type 0x00 with an empty body, an unknown type).
    assert_eq!(decode_err(vec![0u8; 1 << 20]), DecodeError::UnknownFrameType(0));
}

#[test]
fn too_many_frames() {
    let frames = |n: usize| (0..n).flat_map(|i| ack(i as u64)).collect::<Vec<u8>>();
    assert_eq!(decode(frames(64)).expect("64 frames are allowed").len(), 64);
    assert_eq!(decode_err(frames(65)), DecodeError::TooManyFrames { max: 64 });
    let tight = Codec::new(Limits { frames_per_message_max: 2, ..Limits::default() }, BloomParams::default());
    assert_eq!(tight.decode_message(&Bytes::from(frames(3))), Err(DecodeError::TooManyFrames { max: 2 }));
}

#[test]
fn truncated_header() {
    assert_eq!(decode_err(vec![ft::ACK, 0, 0]), DecodeError::TruncatedHeader { offset: 0, remaining: 3 });
    let mut two = ack(1);
    two.extend_from_slice(&[ft::ACK, 0, 0, 0]);
    assert_eq!(decode_err(two), DecodeError::TruncatedHeader { offset: 13, remaining: 4 });
}

#[test]
fn truncated_body() {
    let mut m = raw_frame(ft::ACK, &[0; 8]);
    m.truncate(5 + 4);
    assert_eq!(decode_err(m), DecodeError::TruncatedBody { frame_type: ft::ACK, declared: 8, remaining: 4 });
    // A PUBLISH whose declared body runs past the end of the message.
    let mut p = raw_frame(ft::PUBLISH, &batch_body(&1u64.to_be_bytes(), 1, 1));
    p.truncate(p.len() - 1);
    assert_eq!(decode_err(p), DecodeError::TruncatedBody { frame_type: ft::PUBLISH, declared: 574, remaining: 573 });
}

#[test]
fn oversized_frame_declaration() {
    // Rejected on the header alone: the relay never tries to buffer 4 GiB.
    let m = vec![ft::PUBLISH, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3];
    assert_eq!(
        decode_err(m),
        DecodeError::FrameTooLarge { frame_type: ft::PUBLISH, len: u32::MAX as usize, max: (1 << 20) - 5 }
    );
    let m = [&[ft::ACK][..], &(((1u32 << 20) - 4).to_be_bytes())].concat();
    assert_eq!(
        decode_err(m),
        DecodeError::FrameTooLarge { frame_type: ft::ACK, len: (1 << 20) - 4, max: (1 << 20) - 5 }
    );
}

#[test]
fn header_checks_run_in_field_order() {
    // The type byte is checked first (docs/PROTOCOL.md §8): JSON is not a frame, whatever bytes 1..5 of it
    // would declare as a body length ("type" read as a length is 0x22747970, far over the limit).
    let json = br#"{"type":"ping"}"#.to_vec();
    assert_eq!(decode_err(json), DecodeError::UnknownFrameType(0x7B));
    assert_eq!(decode_err(b"{}".to_vec()), DecodeError::UnknownFrameType(0x7B), "even shorter than a header");
    assert_eq!(decode_err(vec![0x55, 0xFF, 0xFF, 0xFF, 0xFF]), DecodeError::UnknownFrameType(0x55));
    assert_eq!(decode_err(vec![0x55, 0, 0, 0, 16, 1, 2, 3]), DecodeError::UnknownFrameType(0x55));
    // A known type: then the header must be whole, then its length within the limit, then present.
    assert_eq!(decode_err(vec![ft::FETCH, 0, 0]), DecodeError::TruncatedHeader { offset: 0, remaining: 3 });
    assert_eq!(
        decode_err(vec![ft::FETCH, 0xFF, 0xFF, 0xFF, 0xFF]),
        DecodeError::FrameTooLarge { frame_type: ft::FETCH, len: u32::MAX as usize, max: (1 << 20) - 5 }
    );
    assert_eq!(
        decode_err(vec![ft::FETCH, 0, 0, 0, 26, 1, 2, 3]),
        DecodeError::TruncatedBody { frame_type: ft::FETCH, declared: 26, remaining: 3 }
    );
    // Frame by frame, the first fault met wins: a bad second frame after a good first one, and the 65th
    // frame's start is TooManyFrames before anything of it is read (even an unknown type).
    let mut m = ack(1);
    m.extend_from_slice(br#"{"x":1}"#);
    assert_eq!(decode_err(m), DecodeError::UnknownFrameType(0x7B));
    let mut m: Vec<u8> = (0..64).flat_map(|i| ack(i as u64)).collect();
    m.push(0x7B);
    assert_eq!(decode_err(m), DecodeError::TooManyFrames { max: 64 });
}

#[test]
fn unknown_frame_types() {
    let known = [0x01, 0x02, 0x10, 0x11, 0x20, 0x21, 0x22, 0x23, 0x30, 0x31, 0x32, 0x7F];
    for t in (0..=255u8).filter(|t| !known.contains(t)) {
        assert_eq!(decode_err(raw_frame(t, &[1, 2, 3])), DecodeError::UnknownFrameType(t), "type {t:#04x}");
    }
}

#[test]
fn whole_message_is_discarded_on_any_error() {
    // A valid ACK followed by an invalid frame: nothing is returned, not even the ACK.
    let mut m = ack(5);
    m.extend(raw_frame(0x99, &[]));
    assert_eq!(decode_err(m), DecodeError::UnknownFrameType(0x99));
}

// ---- wrong lengths ----

#[test]
fn bodies_too_short() {
    let cases: Vec<(u8, Vec<u8>, usize)> = vec![
        (ft::HELLO, hello_body(b"TSRA", 1, 1, 0)[..23].to_vec(), 24),
        (ft::HELLO_REPLY, hello_reply_body()[..105].to_vec(), 106),
        // A version-2 HELLO_REPLY (90 bytes) is short for version 3: its auth_nonce is missing.
        (ft::HELLO_REPLY, hello_reply_body()[..90].to_vec(), 106),
        // A version-1 HELLO_REPLY (68 bytes) is short: its policy fields are missing.
        (ft::HELLO_REPLY, hello_reply_body()[..68].to_vec(), 70),
        (ft::PUBLISH, vec![0; 9], 10),
        (ft::ACK, vec![0; 7], 8),
        (ft::SUBSCRIBE, vec![0; 17], 18),
        (ft::SUBSCRIBED, vec![0; 17], 18),
        (ft::UNSUBSCRIBE, vec![0; 15], 16),
        (ft::CLAIM, vec![0; 95], 96),
        (ft::CLAIM, vec![0; 31], 32),
        (ft::DELIVER, vec![0; 16], 18),
        (ft::FETCH, vec![0; 25], 26),
        (ft::FETCH_REPLY, vec![0; 26], 27),
        (ft::ERROR, vec![0; 15], 16),
        (ft::ACK, vec![], 8),
    ];
    for (t, body, need) in cases {
        let have = body.len();
        assert_eq!(
            decode_err(raw_frame(t, &body)),
            DecodeError::BodyTooShort { frame_type: t, need, have },
            "type {t:#04x}"
        );
    }
}

#[test]
fn batch_count_larger_than_body() {
    // Declares 2 proofs, carries 1: wrong length, typed as a short body.
    let body = batch_body(&9u64.to_be_bytes(), 2, 1);
    assert_eq!(
        decode_err(raw_frame(ft::PUBLISH, &body)),
        DecodeError::BodyTooShort { frame_type: ft::PUBLISH, need: 10 + 2 * PROOF_LEN, have: 10 + PROOF_LEN }
    );
    // A partial proof.
    let mut body = batch_body(&[0x33; 16], 1, 1);
    body.truncate(body.len() - 100);
    assert_eq!(
        decode_err(raw_frame(ft::DELIVER, &body)),
        DecodeError::BodyTooShort { frame_type: ft::DELIVER, need: 18 + PROOF_LEN, have: 18 + PROOF_LEN - 100 }
    );
    // ERROR text shorter than its declared length.
    assert_eq!(
        decode_err(raw_frame(ft::ERROR, &error_body(b"abc", 5))),
        DecodeError::BodyTooShort { frame_type: ft::ERROR, need: 21, have: 19 }
    );
}

#[test]
fn trailing_garbage() {
    let cases: Vec<(u8, Vec<u8>)> = vec![
        (ft::HELLO, hello_body(b"TSRA", 1, 1, 0)),
        (ft::HELLO_REPLY, hello_reply_body()),
        (ft::PUBLISH, batch_body(&1u64.to_be_bytes(), 1, 1)),
        (ft::ACK, vec![0; 8]),
        (ft::SUBSCRIBE, subscribe_body(1, &[(3, 10, 20, 128)])),
        (ft::SUBSCRIBED, vec![0; 18]),
        (ft::UNSUBSCRIBE, vec![0; 16]),
        (ft::CLAIM, vec![0; 96]),
        (ft::DELIVER, batch_body(&[0; 16], 2, 2)),
        (ft::FETCH, fetch_body(10)),
        (ft::FETCH_REPLY, batch_body(&[0; 25], 0, 0)),
        (ft::ERROR, error_body(b"hi", 2)),
    ];
    for (t, body) in cases {
        assert!(decode(raw_frame(t, &body)).is_ok(), "the untouched {t:#04x} body is valid");
        for extra in [1usize, 3, 564] {
            let mut long = body.clone();
            long.extend(std::iter::repeat_n(0xEE, extra));
            assert_eq!(
                decode_err(raw_frame(t, &long)),
                DecodeError::TrailingBytes { frame_type: t, extra },
                "type {t:#04x}"
            );
        }
    }
}

// ---- field checks ----

#[test]
fn hello_magic_role_and_flags() {
    assert_eq!(decode_err(raw_frame(ft::HELLO, &hello_body(b"TSRB", 1, 1, 0))), DecodeError::BadMagic);
    assert_eq!(decode_err(raw_frame(ft::HELLO, &hello_body(b"tsra", 1, 1, 0))), DecodeError::BadMagic);
    for role in [0u8, 3, 0xFF] {
        assert_eq!(decode_err(raw_frame(ft::HELLO, &hello_body(b"TSRA", 1, role, 0))), DecodeError::UnknownRole(role));
    }
    for flags in [1u8, 0x80] {
        assert_eq!(
            decode_err(raw_frame(ft::HELLO, &hello_body(b"TSRA", 1, 2, flags))),
            DecodeError::BadFlags { frame_type: ft::HELLO, flags }
        );
    }
    // The valid form, for contrast: version is not checked by the codec (the relay answers UNSUPPORTED_VERSION).
    match &decode(raw_frame(ft::HELLO, &hello_body(b"TSRA", 9, 2, 0))).expect("valid HELLO")[..] {
        [Frame::Hello(h)] => assert_eq!((h.version, h.role, h.node_id), (9, Role::Peer, [0xAA; 16])),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fetch_reply_and_hello_reply_flags() {
    for flags in [0x02u8, 0x03, 0x80, 0xFF] {
        assert_eq!(
            decode_err(raw_frame(ft::FETCH_REPLY, &batch_body(&[&[0u8; 24][..], &[flags]].concat(), 0, 0))),
            DecodeError::BadFlags { frame_type: ft::FETCH_REPLY, flags }
        );
    }
    let mut body = hello_reply_body();
    body[13] = 0x40;
    assert_eq!(
        decode_err(raw_frame(ft::HELLO_REPLY, &body)),
        DecodeError::BadFlags { frame_type: ft::HELLO_REPLY, flags: 0x40 }
    );
}

#[test]
fn proof_version_and_reserved_byte() {
    let mut body = batch_body(&1u64.to_be_bytes(), 3, 3);
    body[10 + PROOF_LEN] = 2; // proof 1: version byte
    assert_eq!(
        decode_err(raw_frame(ft::PUBLISH, &body)),
        DecodeError::Proof { index: 1, error: ProofError::BadVersion(2) }
    );
    let mut body = batch_body(&[0; 16], 3, 3);
    body[18 + 2 * PROOF_LEN + 1] = 7; // proof 2: reserved byte
    assert_eq!(
        decode_err(raw_frame(ft::DELIVER, &body)),
        DecodeError::Proof { index: 2, error: ProofError::NonZeroReserved(7) }
    );
    let mut body = batch_body(&[&[0u8; 24][..], &[1]].concat(), 1, 1);
    body[27] = 0;
    assert_eq!(
        decode_err(raw_frame(ft::FETCH_REPLY, &body)),
        DecodeError::Proof { index: 0, error: ProofError::BadVersion(0) }
    );
}

#[test]
fn batch_sizes() {
    // Over the limit: rejected on the count, before the body is looked at.
    assert_eq!(
        decode_err(raw_frame(ft::PUBLISH, &batch_body(&[0; 8], 1025, 0))),
        DecodeError::BatchTooLarge { count: 1025, max: 1024 }
    );
    assert_eq!(
        decode_err(raw_frame(ft::DELIVER, &batch_body(&[0; 16], u16::MAX, 0))),
        DecodeError::BatchTooLarge { count: 65535, max: 1024 }
    );
    assert_eq!(
        decode_err(raw_frame(ft::FETCH_REPLY, &batch_body(&[0; 25], 1025, 0))),
        DecodeError::BatchTooLarge { count: 1025, max: 1024 }
    );
    // Exactly at the limit is fine.
    let full = decode(raw_frame(ft::PUBLISH, &batch_body(&[0; 8], 1024, 1024))).expect("1024 proofs are allowed");
    assert!(matches!(&full[..], [Frame::Publish(p)] if p.proofs.len() == 1024));
    // Empty PUBLISH and DELIVER carry nothing and are refused; an empty FETCH_REPLY page is normal.
    assert_eq!(
        decode_err(raw_frame(ft::PUBLISH, &batch_body(&[0; 8], 0, 0))),
        DecodeError::EmptyBatch { frame_type: ft::PUBLISH }
    );
    assert_eq!(
        decode_err(raw_frame(ft::DELIVER, &batch_body(&[0; 16], 0, 0))),
        DecodeError::EmptyBatch { frame_type: ft::DELIVER }
    );
}

#[test]
fn subscribe_entries_filters_and_windows() {
    assert_eq!(
        decode_err(raw_frame(ft::SUBSCRIBE, &subscribe_body(257, &[]))),
        DecodeError::TooManyEntries { count: 257, max: 256 }
    );
    assert_eq!(
        decode_err(raw_frame(ft::SUBSCRIBE, &subscribe_body(u16::MAX, &[]))),
        DecodeError::TooManyEntries { count: 65535, max: 256 }
    );
    // A filter built for another m, larger or smaller than this relay's 128 bytes.
    for got in [0usize, 64, 127, 129, 256] {
        assert_eq!(
            decode_err(raw_frame(ft::SUBSCRIBE, &subscribe_body(1, &[(1, 10, 20, got)]))),
            DecodeError::FilterLength { got, expected: 128 },
            "filter of {got} bytes"
        );
    }
    // The second entry is the bad one.
    assert_eq!(
        decode_err(raw_frame(ft::SUBSCRIBE, &subscribe_body(2, &[(1, 10, 20, 128), (2, 10, 20, 16)]))),
        DecodeError::FilterLength { got: 16, expected: 128 }
    );
    // A codec configured for m = 2048 expects 256-byte filters.
    let wide = Codec::new(Limits::default(), BloomParams::new(2048, 5).expect("valid"));
    assert_eq!(
        wide.decode_message(&Bytes::from(raw_frame(ft::SUBSCRIBE, &subscribe_body(1, &[(1, 10, 20, 128)])))),
        Err(DecodeError::FilterLength { got: 128, expected: 256 })
    );
    assert_eq!(
        decode_err(raw_frame(ft::SUBSCRIBE, &subscribe_body(1, &[(1, 20, 10, 128)]))),
        DecodeError::WindowRange { from: 20, to: 10 }
    );
    assert_eq!(
        decode_err(raw_frame(ft::SUBSCRIBE, &subscribe_body(1, &[(1, u64::MAX, 0, 128)]))),
        DecodeError::WindowRange { from: u64::MAX, to: 0 }
    );
    // A one-window range (from == to) is valid; so are 256 entries.
    let entries: Vec<_> = (0..256).map(|i| (i as u16, 10, 10, 128)).collect();
    match &decode(raw_frame(ft::SUBSCRIBE, &subscribe_body(256, &entries))).expect("256 entries")[..] {
        [Frame::Subscribe(s)] => {
            assert_eq!(s.subscriber, SubscriberId([0x11; 16]));
            assert_eq!(s.entries.len(), 256);
            assert_eq!(
                (s.entries[255].bucket, s.entries[255].window_from_s, s.entries[255].window_to_s),
                (255, 10, 10)
            );
            assert_eq!(s.entries[0].filter.as_bytes(), &[0x0F; 128][..]);
        }
        other => panic!("{other:?}"),
    }
    // Declares 10 entries, carries none: refused on the fixed part of all 10, before anything is allocated.
    assert_eq!(
        decode_err(raw_frame(ft::SUBSCRIBE, &subscribe_body(10, &[]))),
        DecodeError::BodyTooShort { frame_type: ft::SUBSCRIBE, need: 18 + 10 * 20, have: 18 }
    );
    // Declares 3 entries, carries 1: the second entry's bucket field is missing.
    assert_eq!(
        decode_err(raw_frame(ft::SUBSCRIBE, &subscribe_body(3, &[(1, 10, 20, 128)]))),
        DecodeError::BodyTooShort { frame_type: ft::SUBSCRIBE, need: 18 + 148 + 2, have: 18 + 148 }
    );
}

#[test]
fn fetch_page_size() {
    for n in [0u16, 1025, u16::MAX] {
        assert_eq!(decode_err(raw_frame(ft::FETCH, &fetch_body(n))), DecodeError::FetchPageSize(n));
    }
    for n in [1u16, 1024] {
        assert!(matches!(&decode(raw_frame(ft::FETCH, &fetch_body(n))).expect("valid")[..],
            [Frame::Fetch { proofs_max, cursor: 7, .. }] if *proofs_max == n));
    }
}

#[test]
fn error_text_length_and_utf8() {
    assert_eq!(decode_err(raw_frame(ft::ERROR, &error_body(&[b'x'; 257], 257))), DecodeError::TextTooLong(257));
    // Rejected on the declared length, before the text is read.
    assert_eq!(decode_err(raw_frame(ft::ERROR, &error_body(b"", u16::MAX))), DecodeError::TextTooLong(65535));
    for bad in [&[0xFFu8, 0xFE][..], &[b'o', b'k', 0xE2, 0x82][..], &[0xC0, 0x80][..], &[0xED, 0xA0, 0x80][..]] {
        assert_eq!(decode_err(raw_frame(ft::ERROR, &error_body(bad, bad.len() as u16))), DecodeError::TextNotUtf8);
    }
    let text = "é".repeat(128); // exactly 256 bytes of UTF-8
    assert!(decode(raw_frame(ft::ERROR, &error_body(text.as_bytes(), 256))).is_ok());
}

#[test]
fn hello_reply_invalid_params() {
    let patch = |at: usize, bytes: &[u8]| {
        let mut body = hello_reply_body();
        body[at..at + bytes.len()].copy_from_slice(bytes);
        decode_err(raw_frame(ft::HELLO_REPLY, &body))
    };
    assert_eq!(patch(2, &0u16.to_be_bytes()), DecodeError::InvalidParams("zero buckets"));
    assert_eq!(patch(4, &0u32.to_be_bytes()), DecodeError::InvalidParams("zero window length"));
    for m in [0u32, 1001, 65_544] {
        assert_eq!(patch(8, &m.to_be_bytes()), DecodeError::InvalidParams("Bloom m or k"), "m = {m}");
    }
    for k in [0u8, 17] {
        assert_eq!(patch(12, &[k]), DecodeError::InvalidParams("Bloom m or k"), "k = {k}");
    }
    let size = DecodeError::InvalidParams("proof size differs from this protocol version");
    assert_eq!(patch(14, &565u32.to_be_bytes()), size);
    assert_eq!(patch(18, &511u32.to_be_bytes()), size);
    let small = DecodeError::InvalidParams("limits too small to carry one proof");
    assert_eq!(patch(42, &578u32.to_be_bytes()), small);
    assert_eq!(patch(46, &0u16.to_be_bytes()), small);
    assert_eq!(patch(48, &0u16.to_be_bytes()), small);
    // Version 2's policy fields (offset 68 on).
    let shards = DecodeError::InvalidParams("shards not in 1..=num_buckets");
    assert_eq!(patch(68, &0u16.to_be_bytes()), shards);
    assert_eq!(patch(68, &65u16.to_be_bytes()), shards, "more shards than the 64 buckets");
    let zero = DecodeError::InvalidParams("zero fingerprints per filter, protocol errors or HELLO timeout");
    assert_eq!(patch(70, &0u16.to_be_bytes()), zero);
    assert_eq!(patch(80, &0u32.to_be_bytes()), zero);
    assert_eq!(patch(88, &0u16.to_be_bytes()), zero);
    let skew = DecodeError::InvalidParams("clock skew not shorter than the window");
    assert_eq!(patch(72, &10u32.to_be_bytes()), skew);
    // The other policy fields take any value: no grace, no idle timeout, a relay on 64 shards.
    let mut body = hello_reply_body();
    body[68..70].copy_from_slice(&64u16.to_be_bytes());
    body[72..76].copy_from_slice(&9u32.to_be_bytes());
    body[76..80].copy_from_slice(&0u32.to_be_bytes());
    body[84..88].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(decode(raw_frame(ft::HELLO_REPLY, &body)).is_ok());
    // 579 bytes (header + PUBLISH fixed part + one proof) is the smallest usable message.
    let mut body = hello_reply_body();
    body[42..46].copy_from_slice(&579u32.to_be_bytes());
    assert!(decode(raw_frame(ft::HELLO_REPLY, &body)).is_ok());
}

// ---- random input ----

#[test]
fn random_frames_get_typed_errors() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x7E55E7A);
    let known = [0x01, 0x02, 0x10, 0x11, 0x20, 0x21, 0x22, 0x23, 0x30, 0x31, 0x32, 0x7F];
    for _ in 0..2_000 {
        let len = rng.gen_range(0..200usize);
        let body: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        // An unknown type is always named as such, whatever the body.
        let t = loop {
            let t: u8 = rng.gen();
            if !known.contains(&t) {
                break t;
            }
        };
        assert_eq!(decode_err(raw_frame(t, &body)), DecodeError::UnknownFrameType(t));
        // Fixed-size frames: a random body of the right length always decodes to exactly its bytes; any other
        // length is short or has trailing bytes.
        // `need` is the end of the first field that does not fit (SUBSCRIBED: id at 0..16, count at 16..18).
        for (t, fields_end) in [(ft::ACK, &[8usize][..]), (ft::SUBSCRIBED, &[16, 18]), (ft::UNSUBSCRIBE, &[16])] {
            let size = *fields_end.last().expect("at least one field");
            let b = &body[..len.min(size + 3)];
            let got = decode(raw_frame(t, b));
            match b.len().cmp(&size) {
                std::cmp::Ordering::Less => {
                    let need = *fields_end.iter().find(|&&end| end > b.len()).expect("a field past the body");
                    assert_eq!(got, Err(DecodeError::BodyTooShort { frame_type: t, need, have: b.len() }))
                }
                std::cmp::Ordering::Greater => {
                    assert_eq!(got, Err(DecodeError::TrailingBytes { frame_type: t, extra: b.len() - size }))
                }
                std::cmp::Ordering::Equal => {
                    let frames = got.expect("fixed-size body of the right length");
                    let mut out = BytesMut::new();
                    encode_frame(&frames[0], &mut out);
                    assert_eq!(&out[5..], b);
                }
            }
        }
        // A random header with a random declared length: too large, truncated, or a typed body error.
        let mut m = vec![rng.gen::<u8>()];
        m.extend_from_slice(&rng.gen::<u32>().to_be_bytes());
        m.extend_from_slice(&body);
        let declared = u32::from_be_bytes([m[1], m[2], m[3], m[4]]) as usize;
        let got = decode(m.clone());
        if !known.contains(&m[0]) {
            assert_eq!(got, Err(DecodeError::UnknownFrameType(m[0])), "the type is checked before the length");
        } else if declared > (1 << 20) - 5 {
            assert_eq!(got, Err(DecodeError::FrameTooLarge { frame_type: m[0], len: declared, max: (1 << 20) - 5 }));
        } else if declared > body.len() {
            assert_eq!(got, Err(DecodeError::TruncatedBody { frame_type: m[0], declared, remaining: body.len() }));
        }
    }
}

// ---- codes ----

#[test]
fn decode_error_codes_are_distinct_and_stable() {
    let all = [
        DecodeError::EmptyMessage,
        DecodeError::MessageTooLarge { len: 0, max: 0 },
        DecodeError::TooManyFrames { max: 0 },
        DecodeError::TruncatedHeader { offset: 0, remaining: 0 },
        DecodeError::TruncatedBody { frame_type: 0, declared: 0, remaining: 0 },
        DecodeError::FrameTooLarge { frame_type: 0, len: 0, max: 0 },
        DecodeError::UnknownFrameType(0),
        DecodeError::BodyTooShort { frame_type: 0, need: 0, have: 0 },
        DecodeError::TrailingBytes { frame_type: 0, extra: 0 },
        DecodeError::BadMagic,
        DecodeError::UnknownRole(0),
        DecodeError::BadFlags { frame_type: 0, flags: 0 },
        DecodeError::BatchTooLarge { count: 0, max: 0 },
        DecodeError::EmptyBatch { frame_type: 0 },
        DecodeError::Proof { index: 0, error: ProofError::BadVersion(0) },
        DecodeError::Proof { index: 0, error: ProofError::NonZeroReserved(0) },
        DecodeError::Proof { index: 0, error: ProofError::WrongLength(0) },
        DecodeError::TooManyEntries { count: 0, max: 0 },
        DecodeError::FilterLength { got: 0, expected: 0 },
        DecodeError::WindowRange { from: 0, to: 0 },
        DecodeError::FetchPageSize(0),
        DecodeError::TextTooLong(0),
        DecodeError::TextNotUtf8,
        DecodeError::InvalidParams(""),
    ];
    let codes: Vec<u32> = all.iter().map(DecodeError::code).collect();
    // docs/PROTOCOL.md §8 lists each code with its variant's name.
    let doc = include_str!("../docs/PROTOCOL.md");
    for e in &all {
        let debug = format!("{e:?}");
        let name: String = debug.chars().take_while(char::is_ascii_alphanumeric).collect();
        assert!(
            doc.contains(&format!("| {} | `{name}", e.code())),
            "PROTOCOL.md lacks decode error {} {name}",
            e.code()
        );
    }
    // Stable: docs/PROTOCOL.md §Decode errors lists these numbers; changing one breaks deployed clients.
    assert_eq!(codes, (1..=24).collect::<Vec<u32>>());
    // And the code does not depend on the variant's fields.
    assert_eq!(DecodeError::Proof { index: 9, error: ProofError::BadVersion(7) }.code(), 15);
    assert_eq!(DecodeError::TooManyFrames { max: 64 }.code(), 3);
}

#[test]
fn protocol_doc_hello_reply_layout_matches_the_codec() {
    let doc = include_str!("../docs/PROTOCOL.md");
    let len = hello_reply_body().len();
    assert!(doc.contains(&format!("### 4.2 HELLO_REPLY (0x02) — {len} bytes")), "§4.2 heading");
    assert!(doc.contains(&format!("| 0x02 | HELLO_REPLY | relay → client or peer | {len} |")), "§4 table");
    assert!(doc.contains("# Tessera native wire protocol, version 3") && tessera::proto::PROTOCOL_VERSION == 3);
    assert!(doc.contains("| 90 | 16 | `auth_nonce` |"), "§4.2 lacks auth_nonce at 90");
    match &decode(raw_frame(ft::HELLO_REPLY, &hello_reply_body())).expect("valid")[..] {
        [Frame::HelloReply(p)] => assert_eq!(p.auth_nonce, [9; 16], "auth_nonce is the last 16 bytes"),
        other => panic!("{other:?}"),
    }
    // The version-2 policy fields, each at the offset the encoder writes it (patched and read back).
    let fields = [
        (68, 2, "shards"),
        (70, 2, "filter_fingerprints_max"),
        (72, 4, "clock_skew_s"),
        (76, 4, "slow_consumer_grace_ms"),
        (80, 4, "hello_timeout_ms"),
        (84, 4, "idle_timeout_ms"),
        (88, 2, "protocol_errors_max"),
    ];
    for (offset, size, name) in fields {
        assert!(doc.contains(&format!("| {offset} | {size} | `{name}` |")), "§4.2 lacks {name} at {offset}");
        let mut body = hello_reply_body();
        body[offset + size - 1] ^= 1; // the low bit of the big-endian field
        let policy = match &decode(raw_frame(ft::HELLO_REPLY, &body)).expect("still valid")[..] {
            [Frame::HelloReply(p)] => p.policy,
            other => panic!("{other:?}"),
        };
        let base = RelayPolicy { shards: 2, ..RelayPolicy::default() };
        let got = [
            u32::from(policy.shards) ^ u32::from(base.shards),
            u32::from(policy.filter_fingerprints_max) ^ u32::from(base.filter_fingerprints_max),
            policy.clock_skew_s ^ base.clock_skew_s,
            policy.slow_consumer_grace_ms ^ base.slow_consumer_grace_ms,
            policy.hello_timeout_ms ^ base.hello_timeout_ms,
            policy.idle_timeout_ms ^ base.idle_timeout_ms,
            u32::from(policy.protocol_errors_max) ^ u32::from(base.protocol_errors_max),
        ];
        let changed: Vec<usize> = (0..got.len()).filter(|&i| got[i] != 0).collect();
        assert_eq!(changed.len(), 1, "{name}: {got:?}");
        assert_eq!(fields[changed[0]].2, name, "offset {offset} is another field");
    }
}

#[test]
fn protocol_doc_lists_every_error_code_and_frame_type() {
    let doc = include_str!("../docs/PROTOCOL.md");
    let mut known = 0;
    for code in 0..=u16::MAX {
        if let Some(name) = ErrorCode(code).name() {
            known += 1;
            assert!(doc.contains(&format!("| {code:#06x} | {name} |")), "PROTOCOL.md §7 lacks {code:#06x} {name}");
        }
    }
    assert_eq!(known, 23);
    let types = [
        (ft::HELLO, "HELLO"),
        (ft::HELLO_REPLY, "HELLO_REPLY"),
        (ft::PUBLISH, "PUBLISH"),
        (ft::ACK, "ACK"),
        (ft::SUBSCRIBE, "SUBSCRIBE"),
        (ft::SUBSCRIBED, "SUBSCRIBED"),
        (ft::UNSUBSCRIBE, "UNSUBSCRIBE"),
        (ft::CLAIM, "CLAIM"),
        (ft::DELIVER, "DELIVER"),
        (ft::FETCH, "FETCH"),
        (ft::FETCH_REPLY, "FETCH_REPLY"),
        (ft::ERROR, "ERROR"),
    ];
    for (t, name) in types {
        let hex = format!("{t:#04X}").replace("0X", "0x"); // "0x7F", as the document writes it
        assert!(doc.contains(&format!("| {hex} | {name} |")), "PROTOCOL.md §4 table lacks {hex} {name}");
        assert!(doc.contains(&format!(" {name} ({hex}) — ")), "PROTOCOL.md §4 has no layout section for {name}");
    }
}

#[test]
fn degenerate_limits_do_not_underflow() {
    // A configuration too small to hold even a frame header must not panic (it used to underflow).
    let limits = Limits { message_bytes_max: 3, ..Limits::default() };
    assert_eq!(limits.frame_body_bytes_max(), 0);
    let codec = Codec::new(limits, BloomParams::default());
    assert_eq!(codec.decode_message(&Bytes::from(ack(1))), Err(DecodeError::MessageTooLarge { len: 13, max: 3 }));
    assert_eq!(
        codec.decode_message(&Bytes::from(vec![ft::ACK, 0, 0])),
        Err(DecodeError::TruncatedHeader { offset: 0, remaining: 3 })
    );
    let none = Codec::new(Limits { frames_per_message_max: 0, ..Limits::default() }, BloomParams::default());
    assert_eq!(none.decode_message(&Bytes::from(ack(1))), Err(DecodeError::TooManyFrames { max: 0 }));
}

#[test]
fn a_claim_is_checked_for_structure_only() {
    // Any 96 bytes decode: whether the key is a point and the signature verifies is the relay's check
    // (BAD_CLAIM, docs/PROTOCOL.md §4.12), not a decode error.
    let mut body = vec![0xFF; 32];
    body.extend((0..64).map(|i| i as u8));
    match &decode(raw_frame(ft::CLAIM, &body)).expect("structurally valid")[..] {
        [Frame::Claim(c)] => {
            assert_eq!(c.key, [0xFF; 32]);
            assert_eq!(c.signature[..], body[32..]);
        }
        other => panic!("{other:?}"),
    }
}
