//! Per-subscriber mailboxes: which stored proofs matched whom, and FETCH paging with a cursor.
//!
//! ```text
//! engine match (key, seq) ──▶ match record in seg-N.mbx (N = the segment holding seq), same group commit
//!                          └─▶ index: key ──▶ [seq, seq, ...] ascending
//! FETCH(key, cursor, max) ──▶ cursor → start seq ──▶ next ≤ max durable seqs ≥ start ──▶ read those records
//! retention deletes seg-N.log with seg-N.mbx ──▶ index drops seqs below the oldest retained seq
//! ```
//!
//! Match record (32 bytes, 128 per block):
//!
//! ```text
//! offset  size  field
//!      0    16  subscriber key   SHA-256("tessera/mailbox/v1" ‖ subscriber id)[0..16]
//!     16     8  record seq       u64 be, inside the companion segment
//!     24     4  zero
//!     28     4  crc32c of bytes 0..28
//! ```
//!
//! FETCH costs O(log n + page) per subscriber: the index is per key, so a subscriber's fetch never touches
//! other subscribers' matches or unmatched traffic. The cursor the subscriber holds is an opaque token
//! ([`CursorState`]): each shard remembers which seq the last two tokens stand for, so the same token works on
//! every shard of a relay (each keeps its own position) and survives restarts (the journal persists it).

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use super::record::RecordSeq;
use crate::proto::frame::SubscriberId;

/// Bytes of one match record.
pub const MATCH_RECORD_LEN: usize = 32;
const CRC_AT: usize = MATCH_RECORD_LEN - 4;

/// Entries one subscriber's mailbox keeps per shard; past it the oldest are dropped and counted. 2^20 seqs
/// (8 MiB) is ~20× what a subscriber with one filter per bucket collects in an hour at 100k proofs/s per
/// shard (false positives included), so only a subscriber that registered far too broad filters reaches it.
pub const MAILBOX_ENTRIES_PER_SUBSCRIBER_MAX: usize = 1 << 20;

/// Domain separation for [`SubscriberKey`].
const KEY_DOMAIN: &[u8] = b"tessera/mailbox/v1";

/// What the log stores instead of a subscriber id: a one-way hash of it. The id is a bearer capability for
/// FETCH and SUBSCRIBE; a copy of the disk must not hand it out, so only the hash is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberKey(pub [u8; 16]);

impl SubscriberKey {
    /// `SHA-256("tessera/mailbox/v1" ‖ id)[0..16]`.
    pub fn of(id: &SubscriberId) -> Self {
        let digest = Sha256::new().chain_update(KEY_DOMAIN).chain_update(id.0).finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Self(key)
    }
}

/// A decoded match record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchRecord {
    /// Whose mailbox.
    pub key: SubscriberKey,
    /// Which stored proof.
    pub seq: RecordSeq,
}

/// Why a match slot is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MatchRecordError {
    /// CRC mismatch.
    #[error("match record CRC mismatch")]
    BadCrc,
    /// Non-zero reserved bytes.
    #[error("match record reserved bytes are not zero")]
    NonZeroReserved,
    /// Points outside its companion segment.
    #[error("match record points to seq {0}, outside its segment")]
    OutOfSegment(u64),
}

impl MatchRecord {
    /// Encodes with the CRC last.
    pub fn encode(&self) -> [u8; MATCH_RECORD_LEN] {
        let mut b = [0u8; MATCH_RECORD_LEN];
        b[..16].copy_from_slice(&self.key.0);
        b[16..24].copy_from_slice(&self.seq.0.to_be_bytes());
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes and verifies; `seqs` is the companion segment's seq range.
    pub fn decode(b: &[u8; MATCH_RECORD_LEN], seqs: std::ops::Range<u64>) -> Result<Self, MatchRecordError> {
        let stored = u32::from_be_bytes(b[CRC_AT..].try_into().expect("4-byte CRC field"));
        if stored != crc32c::crc32c(&b[..CRC_AT]) {
            return Err(MatchRecordError::BadCrc);
        }
        if b[24..CRC_AT] != [0; 4] {
            return Err(MatchRecordError::NonZeroReserved);
        }
        let seq = u64::from_be_bytes(b[16..24].try_into().expect("8-byte seq field"));
        if !seqs.contains(&seq) {
            return Err(MatchRecordError::OutOfSegment(seq));
        }
        Ok(Self { key: SubscriberKey(b[..16].try_into().expect("16-byte key field")), seq: RecordSeq(seq) })
    }
}

/// A page of a subscriber's mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxPage {
    /// Seqs to return, ascending.
    pub seqs: Vec<RecordSeq>,
    /// Where the page after this one starts.
    pub next_pos: RecordSeq,
    /// Whether durable entries remain at or after `next_pos`.
    pub more: bool,
}

/// The in-memory index of every subscriber's matches in one shard (rebuilt from the `.mbx` files at open).
#[derive(Clone, Debug, Default)]
pub struct Mailbox {
    entries: HashMap<SubscriberKey, VecDeque<RecordSeq>>,
    total: u64,
    evicted: u64,
}

impl Mailbox {
    /// Records that `seq` matched `key`. Returns `false` when the mailbox was full and its oldest entry was
    /// dropped to make room (counted in [`Mailbox::evicted`]).
    pub fn insert(&mut self, key: SubscriberKey, seq: RecordSeq) -> bool {
        let q = self.entries.entry(key).or_default();
        // Matches arrive in seq order; a late one is placed where it belongs (rare, O(distance)).
        match q.back() {
            Some(&last) if last > seq => {
                let at = q.partition_point(|&s| s < seq);
                if q.get(at) == Some(&seq) {
                    return true;
                }
                q.insert(at, seq);
            }
            Some(&last) if last == seq => return true,
            _ => q.push_back(seq),
        }
        self.total += 1;
        if q.len() > MAILBOX_ENTRIES_PER_SUBSCRIBER_MAX {
            q.pop_front();
            self.total -= 1;
            self.evicted += 1;
            return false;
        }
        true
    }

    /// Whether `seq` is recorded for `key`.
    pub fn contains(&self, key: &SubscriberKey, seq: RecordSeq) -> bool {
        self.entries.get(key).is_some_and(|q| {
            // Entries are sorted: the newest is checked first (live matches arrive in order).
            q.back().is_some_and(|&last| last == seq) || q.binary_search(&seq).is_ok()
        })
    }

    /// Drops every entry below `oldest` (its segment was deleted by retention); returns how many.
    pub fn trim_below(&mut self, oldest: RecordSeq) -> u64 {
        let mut dropped = 0;
        self.entries.retain(|_, q| {
            let n = q.partition_point(|&s| s < oldest);
            q.drain(..n);
            dropped += n as u64;
            !q.is_empty()
        });
        self.total -= dropped;
        dropped
    }

    /// Up to `max` entries of `key` with `from ≤ seq ≤ durable_through`.
    pub fn page(
        &self,
        key: &SubscriberKey,
        from: RecordSeq,
        durable_through: Option<RecordSeq>,
        max: usize,
    ) -> MailboxPage {
        let Some(q) = self.entries.get(key) else { return MailboxPage { seqs: vec![], next_pos: from, more: false } };
        let Some(through) = durable_through else { return MailboxPage { seqs: vec![], next_pos: from, more: false } };
        let start = q.partition_point(|&s| s < from);
        let end = q.partition_point(|&s| s <= through);
        let take = end.saturating_sub(start).min(max);
        let seqs: Vec<RecordSeq> = q.range(start..start + take).copied().collect();
        let next_pos = seqs.last().map_or(from, |s| RecordSeq(s.0 + 1));
        MailboxPage { seqs, next_pos, more: start + take < end }
    }

    /// Entries held for `key`.
    pub fn len_of(&self, key: &SubscriberKey) -> usize {
        self.entries.get(key).map_or(0, VecDeque::len)
    }

    /// Entries held for everyone.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Entries dropped because a mailbox was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Whether `key` has entries.
    pub fn contains_key(&self, key: &SubscriberKey) -> bool {
        self.entries.contains_key(key)
    }
}

/// A subscriber's FETCH position in one shard: the seq each of the last two tokens stands for.
///
/// The client sends back the `next_cursor` of the page it has processed; the shard resolves it:
/// the newest token → continue after that page; the previous token → the client lost the last reply and asks
/// again, so the same page is served again (at least once); 0 or anything unknown → from the oldest retained
/// entry (at least once: a client never skips an entry because its cursor was forgotten).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CursorState {
    /// Newest token handed out.
    pub token: u64,
    /// Where `token` resumes.
    pub pos: RecordSeq,
    /// The token before it.
    pub prev_token: u64,
    /// Where `prev_token` resumes.
    pub prev_pos: RecordSeq,
}

impl CursorState {
    /// Start position for a FETCH carrying `cursor`.
    pub fn resolve(&self, cursor: u64) -> RecordSeq {
        match cursor {
            0 => RecordSeq(0),
            c if c == self.token => self.pos,
            c if c == self.prev_token => self.prev_pos,
            _ => RecordSeq(0),
        }
    }

    /// Whether `cursor` is one this state knows.
    pub fn knows(&self, cursor: u64) -> bool {
        cursor != 0 && (cursor == self.token || cursor == self.prev_token)
    }

    /// The state after answering `cursor` (resolved to `start`) with a page ending at `next_pos` under the new
    /// token `next_token`.
    pub fn advance(&self, cursor: u64, start: RecordSeq, next_token: u64, next_pos: RecordSeq) -> Self {
        Self { token: next_token, pos: next_pos, prev_token: cursor, prev_pos: start }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SubscriberKey {
        SubscriberKey([b; 16])
    }

    #[test]
    fn key_is_a_domain_separated_hash() {
        let k = SubscriberKey::of(&SubscriberId([7; 16]));
        assert_ne!(k.0, [7; 16]);
        assert_eq!(k, SubscriberKey::of(&SubscriberId([7; 16])));
        assert_ne!(k, SubscriberKey::of(&SubscriberId([8; 16])));
    }

    #[test]
    fn match_record_round_trip_and_rejections() {
        let m = MatchRecord { key: key(3), seq: RecordSeq(105) };
        let b = m.encode();
        assert_eq!(&b[16..24], &105u64.to_be_bytes());
        assert_eq!(MatchRecord::decode(&b, 100..200), Ok(m));
        assert_eq!(MatchRecord::decode(&b, 0..100), Err(MatchRecordError::OutOfSegment(105)));
        let mut f = b;
        f[5] ^= 0x10;
        assert_eq!(MatchRecord::decode(&f, 100..200), Err(MatchRecordError::BadCrc));
        let mut r = b;
        r[25] = 1;
        let crc = crc32c::crc32c(&r[..CRC_AT]);
        r[CRC_AT..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(MatchRecord::decode(&r, 100..200), Err(MatchRecordError::NonZeroReserved));
    }

    #[test]
    fn pages_are_bounded_ordered_and_durable_only() {
        let mut m = Mailbox::default();
        for s in [3, 5, 9, 12, 20] {
            m.insert(key(1), RecordSeq(s));
        }
        m.insert(key(2), RecordSeq(4));
        let p = m.page(&key(1), RecordSeq(0), Some(RecordSeq(15)), 2);
        assert_eq!(p, MailboxPage { seqs: vec![RecordSeq(3), RecordSeq(5)], next_pos: RecordSeq(6), more: true });
        let p = m.page(&key(1), p.next_pos, Some(RecordSeq(15)), 2);
        assert_eq!(p, MailboxPage { seqs: vec![RecordSeq(9), RecordSeq(12)], next_pos: RecordSeq(13), more: false });
        let p = m.page(&key(1), p.next_pos, Some(RecordSeq(15)), 2);
        assert_eq!(p, MailboxPage { seqs: vec![], next_pos: RecordSeq(13), more: false }, "20 is not durable yet");
        let p = m.page(&key(1), RecordSeq(13), Some(RecordSeq(20)), 2);
        assert_eq!(p.seqs, vec![RecordSeq(20)]);
        assert_eq!(m.page(&key(9), RecordSeq(0), Some(RecordSeq(99)), 2).seqs, vec![]);
        assert_eq!(m.page(&key(1), RecordSeq(0), None, 2).seqs, vec![]);
    }

    #[test]
    fn late_and_duplicate_matches_keep_order() {
        let mut m = Mailbox::default();
        for s in [1, 5, 3, 5, 4] {
            m.insert(key(1), RecordSeq(s));
        }
        let p = m.page(&key(1), RecordSeq(0), Some(RecordSeq(10)), 10);
        assert_eq!(p.seqs, [1, 3, 4, 5].map(RecordSeq).to_vec());
        assert_eq!(m.total(), 4);
    }

    #[test]
    fn trimming_follows_retention() {
        let mut m = Mailbox::default();
        for s in 0..10 {
            m.insert(key(1), RecordSeq(s));
        }
        m.insert(key(2), RecordSeq(2));
        assert_eq!(m.trim_below(RecordSeq(7)), 8);
        assert_eq!((m.len_of(&key(1)), m.contains_key(&key(2)), m.total()), (3, false, 3));
    }

    #[test]
    fn full_mailbox_drops_its_oldest() {
        let mut m = Mailbox::default();
        for s in 0..MAILBOX_ENTRIES_PER_SUBSCRIBER_MAX as u64 {
            assert!(m.insert(key(1), RecordSeq(s)));
        }
        assert!(!m.insert(key(1), RecordSeq(u64::MAX)));
        assert_eq!((m.evicted(), m.len_of(&key(1))), (1, MAILBOX_ENTRIES_PER_SUBSCRIBER_MAX));
        assert_eq!(m.page(&key(1), RecordSeq(0), Some(RecordSeq(5)), 1).seqs, vec![RecordSeq(1)]);
    }

    #[test]
    fn cursor_tokens_resume_retry_or_restart() {
        let s = CursorState::default();
        assert_eq!(s.resolve(0), RecordSeq(0));
        let s = s.advance(0, RecordSeq(0), 77, RecordSeq(10));
        assert_eq!(s.resolve(77), RecordSeq(10), "newest token continues");
        let s = s.advance(77, RecordSeq(10), 78, RecordSeq(20));
        assert_eq!(s.resolve(77), RecordSeq(10), "previous token replays the lost page");
        assert_eq!(s.resolve(78), RecordSeq(20));
        assert_eq!(s.resolve(12345), RecordSeq(0), "unknown token: from the oldest, never skipping");
        assert!(s.knows(78) && s.knows(77) && !s.knows(0) && !s.knows(5));
    }
}
