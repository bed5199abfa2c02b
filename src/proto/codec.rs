//! Frame codec: WebSocket binary message ⇄ `Vec<Frame>` (docs/PROTOCOL.md §Framing).
//!
//! ```text
//! message = frame+            (1..=frames_per_message_max, total <= message_bytes_max)
//! frame   = type:u8 ‖ body_len:u32be ‖ body[body_len]
//! ```
//! Decoding is all-or-nothing per message: every frame is parsed and checked against the `Limits` before any
//! is returned. Allocation is bounded by the limits (the frame list, the subscribe entries and their filters);
//! proof batches are zero-copy `Bytes` slices of the received message.

use bytes::{BufMut, Bytes, BytesMut};

use super::bloom::{BloomFilter, BloomParams};
use super::claim::Claim;
use super::error::DecodeError;
use super::error_code::ErrorCode;
use super::frame::{
    frame_type as ft, ErrorFrame, Frame, Hello, Publish, RelayParams, RelayPolicy, Role, Subscribe, SubscribeEntry,
    SubscriberId, HELLO_MAGIC,
};
use super::limits::{Limits, ERROR_TEXT_BYTES_MAX};
use super::params::{CIPHERTEXT_LEN, PROOF_LEN};
use super::proof::ProofBatch;

/// Frame header: type (1) + body length (4).
pub const FRAME_HEADER_LEN: usize = 5;
/// Fixed part of a SUBSCRIBE entry before its filter: bucket, window_from, window_to, filter_len.
const SUBSCRIBE_ENTRY_FIXED_LEN: usize = 2 + 8 + 8 + 2;
/// FETCH_REPLY flag: more proofs wait past `next_cursor`.
const FETCH_REPLY_MORE: u8 = 0x01;

/// Encoder/decoder bound to one side's limits and Bloom parameters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Codec {
    /// Limits enforced on decoding.
    pub limits: Limits,
    /// Bloom parameters: a filter must be exactly `m / 8` bytes.
    pub bloom: BloomParams,
}

impl Codec {
    /// A codec with these limits and Bloom parameters.
    pub fn new(limits: Limits, bloom: BloomParams) -> Self {
        Self { limits, bloom }
    }

    /// Decodes one whole message. Nothing is returned unless every frame in it is valid.
    pub fn decode_message(&self, msg: &Bytes) -> Result<Vec<Frame>, DecodeError> {
        let max = self.limits.message_bytes_max as usize;
        if msg.len() > max {
            return Err(DecodeError::MessageTooLarge { len: msg.len(), max });
        }
        if msg.is_empty() {
            return Err(DecodeError::EmptyMessage);
        }
        let frames_max = self.limits.frames_per_message_max as usize;
        let mut frames = Vec::with_capacity(frames_max.min(4));
        let mut offset = 0;
        while offset < msg.len() {
            if frames.len() == frames_max {
                return Err(DecodeError::TooManyFrames { max: frames_max });
            }
            // Header checks in field order (docs/PROTOCOL.md §8): the type byte first, so that a message that
            // is not a frame at all (JSON starts with `{`, 0x7B) is reported as such, whatever its next 4 bytes
            // would declare as a length; then the header's completeness, then the declared length.
            let frame_type = msg[offset];
            if !is_known_frame_type(frame_type) {
                return Err(DecodeError::UnknownFrameType(frame_type));
            }
            let remaining = msg.len() - offset;
            if remaining < FRAME_HEADER_LEN {
                return Err(DecodeError::TruncatedHeader { offset, remaining });
            }
            let len = u32::from_be_bytes([msg[offset + 1], msg[offset + 2], msg[offset + 3], msg[offset + 4]]) as usize;
            let body_max = self.limits.frame_body_bytes_max();
            if len > body_max {
                return Err(DecodeError::FrameTooLarge { frame_type, len, max: body_max });
            }
            let body_start = offset + FRAME_HEADER_LEN;
            if len > msg.len() - body_start {
                return Err(DecodeError::TruncatedBody {
                    frame_type,
                    declared: len,
                    remaining: msg.len() - body_start,
                });
            }
            let body = msg.slice(body_start..body_start + len);
            frames.push(self.decode_body(frame_type, body)?);
            offset = body_start + len;
        }
        Ok(frames)
    }

    /// Decodes one frame body of a known type.
    fn decode_body(&self, frame_type: u8, body: Bytes) -> Result<Frame, DecodeError> {
        let mut r = Reader { frame_type, body, pos: 0 };
        let frame = match frame_type {
            ft::HELLO => {
                if r.array::<4>()? != HELLO_MAGIC {
                    return Err(DecodeError::BadMagic);
                }
                let version = r.u16()?;
                let role = match r.u8()? {
                    1 => Role::Client,
                    2 => Role::Peer,
                    other => return Err(DecodeError::UnknownRole(other)),
                };
                r.flags(0)?;
                Frame::Hello(Hello { version, role, node_id: r.array()? })
            }
            ft::HELLO_REPLY => Frame::HelloReply(decode_relay_params(&mut r)?),
            ft::PUBLISH => {
                let seq = r.u64()?;
                Frame::Publish(Publish { seq, proofs: self.batch(&mut r, false)? })
            }
            ft::ACK => Frame::Ack { seq: r.u64()? },
            ft::SUBSCRIBE => Frame::Subscribe(self.decode_subscribe(&mut r)?),
            ft::SUBSCRIBED => Frame::Subscribed { subscriber: r.subscriber()?, entries: r.u16()? },
            ft::UNSUBSCRIBE => Frame::Unsubscribe { subscriber: r.subscriber()? },
            // Structure only: the key and signature are checked by the relay (`claim::verify_claim`).
            ft::CLAIM => Frame::Claim(Claim { key: r.array()?, signature: r.array()? }),
            ft::DELIVER => {
                let subscriber = r.subscriber()?;
                Frame::Deliver { subscriber, proofs: self.batch(&mut r, false)? }
            }
            ft::FETCH => {
                let subscriber = r.subscriber()?;
                let cursor = r.u64()?;
                let proofs_max = r.u16()?;
                if proofs_max == 0 || proofs_max > self.limits.proofs_per_batch_max {
                    return Err(DecodeError::FetchPageSize(proofs_max));
                }
                Frame::Fetch { subscriber, cursor, proofs_max }
            }
            ft::FETCH_REPLY => {
                let subscriber = r.subscriber()?;
                let next_cursor = r.u64()?;
                let flags = r.flags(FETCH_REPLY_MORE)?;
                let proofs = self.batch(&mut r, true)?;
                Frame::FetchReply { subscriber, next_cursor, more: flags & FETCH_REPLY_MORE != 0, proofs }
            }
            ft::ERROR => {
                let code = ErrorCode(r.u16()?);
                let ref_seq = r.u64()?;
                let detail = r.u32()?;
                let text_len = r.u16()? as usize;
                if text_len > ERROR_TEXT_BYTES_MAX {
                    return Err(DecodeError::TextTooLong(text_len));
                }
                let text = std::str::from_utf8(&r.take(text_len)?).map_err(|_| DecodeError::TextNotUtf8)?.to_owned();
                Frame::Error(ErrorFrame { code, ref_seq, detail, text })
            }
            other => return Err(DecodeError::UnknownFrameType(other)),
        };
        r.finish()?;
        Ok(frame)
    }

    /// `count:u16 ‖ proofs[count]`, the rest of the body exactly.
    fn batch(&self, r: &mut Reader, allow_empty: bool) -> Result<ProofBatch, DecodeError> {
        let count = r.u16()? as usize;
        let max = self.limits.proofs_per_batch_max as usize;
        if count > max {
            return Err(DecodeError::BatchTooLarge { count, max });
        }
        if count == 0 && !allow_empty {
            return Err(DecodeError::EmptyBatch { frame_type: r.frame_type });
        }
        let bytes = r.take(count * PROOF_LEN)?;
        ProofBatch::from_bytes(bytes).map_err(|e| DecodeError::Proof { index: e.index, error: e.error })
    }

    fn decode_subscribe(&self, r: &mut Reader) -> Result<Subscribe, DecodeError> {
        let subscriber = r.subscriber()?;
        let count = r.u16()? as usize;
        let max = self.limits.entries_per_subscribe_max as usize;
        if count > max {
            return Err(DecodeError::TooManyEntries { count, max });
        }
        let expected = self.bloom.byte_len();
        // Bound the entry list by bytes actually present before allocating for `count` entries. Only the fixed
        // part is required here: requiring whole filters of *our* size would report a client's filters of
        // another size as a short body instead of `FilterLength`. Each filter is copied only once its bytes
        // are present, so allocation stays proportional to the message.
        r.need(count * SUBSCRIBE_ENTRY_FIXED_LEN)?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let bucket = r.u16()?;
            let from = r.u64()?;
            let to = r.u64()?;
            let filter_len = r.u16()? as usize;
            if filter_len != expected {
                return Err(DecodeError::FilterLength { got: filter_len, expected });
            }
            if from > to {
                return Err(DecodeError::WindowRange { from, to });
            }
            let filter = BloomFilter::from_bytes(self.bloom, &r.take(filter_len)?)
                .map_err(|_| DecodeError::FilterLength { got: filter_len, expected })?;
            entries.push(SubscribeEntry { bucket, window_from_s: from, window_to_s: to, filter });
        }
        Ok(Subscribe { subscriber, entries })
    }
}

/// Whether `frame_type` is a frame of this protocol version (section 4 of docs/PROTOCOL.md).
fn is_known_frame_type(frame_type: u8) -> bool {
    matches!(
        frame_type,
        ft::HELLO
            | ft::HELLO_REPLY
            | ft::PUBLISH
            | ft::ACK
            | ft::SUBSCRIBE
            | ft::SUBSCRIBED
            | ft::UNSUBSCRIBE
            | ft::CLAIM
            | ft::DELIVER
            | ft::FETCH
            | ft::FETCH_REPLY
            | ft::ERROR
    )
}

fn decode_relay_params(r: &mut Reader) -> Result<RelayParams, DecodeError> {
    let version = r.u16()?;
    let num_buckets = r.u16()?;
    let window_s = r.u32()?;
    let m_bits = r.u32()?;
    let k = r.u8()?;
    r.flags(0)?;
    let proof_len = r.u32()?;
    let ciphertext_len = r.u32()?;
    let retention_s = r.u32()?;
    let node_id = r.array()?;
    let limits = Limits {
        message_bytes_max: r.u32()?,
        frames_per_message_max: r.u16()?,
        proofs_per_batch_max: r.u16()?,
        entries_per_subscribe_max: r.u16()?,
        filters_per_bucket_max: r.u16()?,
        subscribers_per_connection_max: r.u16()?,
        subscription_windows_ahead_max: r.u32()?,
        connections_max: r.u32()?,
        send_queue_proofs_max: r.u32()?,
    };
    let policy = RelayPolicy {
        shards: r.u16()?,
        filter_fingerprints_max: r.u16()?,
        clock_skew_s: r.u32()?,
        slow_consumer_grace_ms: r.u32()?,
        hello_timeout_ms: r.u32()?,
        idle_timeout_ms: r.u32()?,
        protocol_errors_max: r.u16()?,
    };
    let auth_nonce = r.array()?;
    if num_buckets == 0 {
        return Err(DecodeError::InvalidParams("zero buckets"));
    }
    if window_s == 0 {
        return Err(DecodeError::InvalidParams("zero window length"));
    }
    let bloom = BloomParams::new(m_bits, k).map_err(|_| DecodeError::InvalidParams("Bloom m or k"))?;
    if proof_len as usize != PROOF_LEN || ciphertext_len as usize != CIPHERTEXT_LEN {
        return Err(DecodeError::InvalidParams("proof size differs from this protocol version"));
    }
    if (limits.message_bytes_max as usize) < FRAME_HEADER_LEN + 10 + PROOF_LEN
        || limits.frames_per_message_max == 0
        || limits.proofs_per_batch_max == 0
    {
        return Err(DecodeError::InvalidParams("limits too small to carry one proof"));
    }
    if policy.shards == 0 || policy.shards > num_buckets {
        return Err(DecodeError::InvalidParams("shards not in 1..=num_buckets"));
    }
    if policy.filter_fingerprints_max == 0 || policy.protocol_errors_max == 0 || policy.hello_timeout_ms == 0 {
        return Err(DecodeError::InvalidParams("zero fingerprints per filter, protocol errors or HELLO timeout"));
    }
    if policy.clock_skew_s >= window_s {
        return Err(DecodeError::InvalidParams("clock skew not shorter than the window"));
    }
    Ok(RelayParams {
        version,
        num_buckets,
        window_s,
        bloom,
        proof_len,
        ciphertext_len,
        retention_s,
        node_id,
        limits,
        policy,
        auth_nonce,
    })
}

/// Cursor over one frame body; every read is bounds-checked into a typed error.
struct Reader {
    frame_type: u8,
    body: Bytes,
    pos: usize,
}

impl Reader {
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        let have = self.body.len() - self.pos;
        if n > have {
            return Err(DecodeError::BodyTooShort {
                frame_type: self.frame_type,
                need: self.pos + n,
                have: self.body.len(),
            });
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        let out = self.body.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.need(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.body[self.pos..self.pos + N]);
        self.pos += N;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn subscriber(&mut self) -> Result<SubscriberId, DecodeError> {
        Ok(SubscriberId(self.array()?))
    }

    /// A flags byte whose bits must lie within `defined`.
    fn flags(&mut self, defined: u8) -> Result<u8, DecodeError> {
        let flags = self.u8()?;
        if flags & !defined != 0 {
            return Err(DecodeError::BadFlags { frame_type: self.frame_type, flags });
        }
        Ok(flags)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        let extra = self.body.len() - self.pos;
        if extra != 0 {
            return Err(DecodeError::TrailingBytes { frame_type: self.frame_type, extra });
        }
        Ok(())
    }
}

/// Appends one frame (header and body) to `out`.
///
/// Encoding trusts its input: callers build frames within the limits they announced (checked in debug builds).
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) {
    let header_at = out.len();
    out.put_u8(frame.type_byte());
    out.put_u32(0); // body length, patched below
    match frame {
        Frame::Hello(h) => {
            out.put_slice(&HELLO_MAGIC);
            out.put_u16(h.version);
            out.put_u8(h.role as u8);
            out.put_u8(0);
            out.put_slice(&h.node_id);
        }
        Frame::HelloReply(p) => encode_relay_params(p, out),
        Frame::Publish(p) => {
            out.put_u64(p.seq);
            put_batch(&p.proofs, out);
        }
        Frame::Ack { seq } => out.put_u64(*seq),
        Frame::Subscribe(s) => {
            out.put_slice(&s.subscriber.0);
            out.put_u16(s.entries.len() as u16);
            for e in &s.entries {
                out.put_u16(e.bucket);
                out.put_u64(e.window_from_s);
                out.put_u64(e.window_to_s);
                out.put_u16(e.filter.as_bytes().len() as u16);
                out.put_slice(e.filter.as_bytes());
            }
        }
        Frame::Subscribed { subscriber, entries } => {
            out.put_slice(&subscriber.0);
            out.put_u16(*entries);
        }
        Frame::Unsubscribe { subscriber } => out.put_slice(&subscriber.0),
        Frame::Claim(c) => {
            out.put_slice(&c.key);
            out.put_slice(&c.signature);
        }
        Frame::Deliver { subscriber, proofs } => {
            out.put_slice(&subscriber.0);
            put_batch(proofs, out);
        }
        Frame::Fetch { subscriber, cursor, proofs_max } => {
            out.put_slice(&subscriber.0);
            out.put_u64(*cursor);
            out.put_u16(*proofs_max);
        }
        Frame::FetchReply { subscriber, next_cursor, more, proofs } => {
            out.put_slice(&subscriber.0);
            out.put_u64(*next_cursor);
            out.put_u8(if *more { FETCH_REPLY_MORE } else { 0 });
            put_batch(proofs, out);
        }
        Frame::Error(e) => {
            let text = truncate_utf8(&e.text, ERROR_TEXT_BYTES_MAX);
            out.put_u16(e.code.0);
            out.put_u64(e.ref_seq);
            out.put_u32(e.detail);
            out.put_u16(text.len() as u16);
            out.put_slice(text.as_bytes());
        }
    }
    let body_len = (out.len() - header_at - FRAME_HEADER_LEN) as u32;
    out[header_at + 1..header_at + FRAME_HEADER_LEN].copy_from_slice(&body_len.to_be_bytes());
}

/// Encodes frames into one message.
pub fn encode_message(frames: &[Frame]) -> Bytes {
    let mut out = BytesMut::new();
    for frame in frames {
        encode_frame(frame, &mut out);
    }
    out.freeze()
}

/// Appends a DELIVER frame for `subscriber` built from proof byte slices (the server's fast path: the proofs
/// are copied once, straight from wherever they are queued, into the outgoing message). Each item must be
/// exactly `PROOF_LEN` bytes and there must be 1..=`u16::MAX` of them.
pub fn encode_deliver<I>(subscriber: &SubscriberId, proofs: I, out: &mut BytesMut)
where
    I: ExactSizeIterator,
    I::Item: AsRef<[u8]>,
{
    let count = proofs.len();
    debug_assert!(count > 0 && count <= u16::MAX as usize);
    let body_len = 16 + 2 + count * PROOF_LEN;
    out.reserve(FRAME_HEADER_LEN + body_len);
    out.put_u8(ft::DELIVER);
    out.put_u32(body_len as u32);
    out.put_slice(&subscriber.0);
    out.put_u16(count as u16);
    for proof in proofs {
        let proof = proof.as_ref();
        debug_assert_eq!(proof.len(), PROOF_LEN);
        out.put_slice(proof);
    }
}

fn put_batch(proofs: &ProofBatch, out: &mut BytesMut) {
    debug_assert!(proofs.len() <= u16::MAX as usize);
    out.put_u16(proofs.len() as u16);
    out.put_slice(proofs.as_bytes());
}

fn encode_relay_params(p: &RelayParams, out: &mut BytesMut) {
    out.put_u16(p.version);
    out.put_u16(p.num_buckets);
    out.put_u32(p.window_s);
    out.put_u32(p.bloom.m_bits);
    out.put_u8(p.bloom.k);
    out.put_u8(0);
    out.put_u32(p.proof_len);
    out.put_u32(p.ciphertext_len);
    out.put_u32(p.retention_s);
    out.put_slice(&p.node_id);
    let l = &p.limits;
    out.put_u32(l.message_bytes_max);
    out.put_u16(l.frames_per_message_max);
    out.put_u16(l.proofs_per_batch_max);
    out.put_u16(l.entries_per_subscribe_max);
    out.put_u16(l.filters_per_bucket_max);
    out.put_u16(l.subscribers_per_connection_max);
    out.put_u32(l.subscription_windows_ahead_max);
    out.put_u32(l.connections_max);
    out.put_u32(l.send_queue_proofs_max);
    let policy = &p.policy;
    out.put_u16(policy.shards);
    out.put_u16(policy.filter_fingerprints_max);
    out.put_u32(policy.clock_skew_s);
    out.put_u32(policy.slow_consumer_grace_ms);
    out.put_u32(policy.hello_timeout_ms);
    out.put_u32(policy.idle_timeout_ms);
    out.put_u16(policy.protocol_errors_max);
    out.put_slice(&p.auth_nonce);
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
