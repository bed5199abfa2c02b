//! Splitting a message into envelope-sized parts, and putting received parts back together in order.
//!
//! A message of `n` parts is sent as `n` consecutive sequence numbers of one window: part `i` travels in
//! delivery `(window, direction, first_seq + i)`, so `(contact, window, seq − part_index)` names the message
//! and needs no id on the wire. Parts may arrive in any order (different buckets, DELIVER vs FETCH); the
//! message is released once all `part_count` parts are in. Memory is bounded: at most `SEQS_PER_WINDOW`
//! partial messages per contact per window (each part occupies its own sequence number), each at most
//! `MESSAGE_LEN_MAX` bytes, and windows older than the expectation horizon are pruned.

use std::collections::BTreeMap;

use super::delivery::SEQS_PER_WINDOW;
use super::envelope::{OpenedPart, CHUNK_LEN_MAX};

/// Why a received part cannot join its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReassemblyError {
    /// `seq < part_index`: the message would start before sequence number 0.
    #[error("part {index} arrived at sequence number {seq}: the message would start before 0")]
    StartsBeforeZero {
        /// Part index.
        index: u8,
        /// Sequence number it came in.
        seq: u32,
    },
    /// The message would run past the last sequence number of the window.
    #[error("a {count}-part message starting at sequence number {first_seq} overruns the window")]
    OverrunsWindow {
        /// First sequence number.
        first_seq: u32,
        /// Parts.
        count: u8,
    },
    /// Another part of the same message gave a different part count.
    #[error("parts of one message disagree on the part count ({0} vs {1})")]
    InconsistentCount(u8, u8),
    /// Every part but the last must be full, so a message has one way to be split.
    #[error("part {0} is not the last but carries fewer than {CHUNK_LEN_MAX} bytes")]
    ShortInnerPart(u8),
}

/// Splits `message` into chunks of at most `CHUNK_LEN_MAX` bytes (one empty chunk for an empty message).
pub fn split(message: &[u8]) -> Vec<&[u8]> {
    if message.is_empty() {
        return vec![message];
    }
    message.chunks(CHUNK_LEN_MAX).collect()
}

/// Names one message: contact index, window start, first sequence number.
pub type MessageKey = (u32, u64, u32);

#[derive(Debug)]
struct Partial {
    count: u8,
    parts: [Option<Vec<u8>>; SEQS_PER_WINDOW as usize],
}

/// Partial messages waiting for their other parts.
#[derive(Debug, Default)]
pub struct Reassembly {
    partial: BTreeMap<MessageKey, Partial>,
}

impl Reassembly {
    /// Adds a part received as `(contact, window_start_s, seq)`. Returns the whole message (its key and
    /// bytes) once every part is in. A part delivered twice is the caller's to drop (dedup is by commit).
    pub fn insert(
        &mut self,
        contact: u32,
        window_start_s: u64,
        seq: u32,
        part: OpenedPart,
    ) -> Result<Option<(MessageKey, Vec<u8>)>, ReassemblyError> {
        let first_seq = seq
            .checked_sub(u32::from(part.index))
            .ok_or(ReassemblyError::StartsBeforeZero { index: part.index, seq })?;
        if first_seq + u32::from(part.count) > SEQS_PER_WINDOW {
            return Err(ReassemblyError::OverrunsWindow { first_seq, count: part.count });
        }
        let last = part.index + 1 == part.count;
        if !last && part.chunk.len() != CHUNK_LEN_MAX {
            return Err(ReassemblyError::ShortInnerPart(part.index));
        }
        let key = (contact, window_start_s, first_seq);
        if part.count == 1 {
            return Ok(Some((key, part.chunk)));
        }
        let entry = self.partial.entry(key).or_insert_with(|| Partial { count: part.count, parts: Default::default() });
        if entry.count != part.count {
            return Err(ReassemblyError::InconsistentCount(entry.count, part.count));
        }
        entry.parts[usize::from(part.index)] = Some(part.chunk);
        let count = usize::from(entry.count);
        if entry.parts[..count].iter().any(Option::is_none) {
            return Ok(None);
        }
        let done = self.partial.remove(&key).expect("entry was just found");
        let message = done.parts.into_iter().take(count).flatten().flatten().collect();
        Ok(Some((key, message)))
    }

    /// Drops partial messages of windows before `window_start_s` (their missing parts can no longer come).
    pub fn prune_before(&mut self, window_start_s: u64) {
        self.partial.retain(|&(_, w, _), _| w >= window_start_s);
    }

    /// `(contact, window_start_s, seq)` of every part held in a partial message.
    pub fn held_parts(&self) -> impl Iterator<Item = (u32, u64, u32)> + '_ {
        self.partial.iter().flat_map(|(&(contact, window_start_s, first_seq), partial)| {
            partial
                .parts
                .iter()
                .enumerate()
                .filter(|(_, part)| part.is_some())
                .map(move |(i, _)| (contact, window_start_s, first_seq + i as u32))
        })
    }

    /// Number of partial messages held.
    pub fn len(&self) -> usize {
        self.partial.len()
    }

    /// Whether no partial message is held.
    pub fn is_empty(&self) -> bool {
        self.partial.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(index: u8, count: u8, chunk: &[u8]) -> OpenedPart {
        OpenedPart { index, count, chunk: chunk.to_vec() }
    }

    #[test]
    fn split_sizes() {
        assert_eq!(split(b"").len(), 1);
        let long = vec![7u8; CHUNK_LEN_MAX * 2 + 5];
        let parts = split(&long);
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![CHUNK_LEN_MAX, CHUNK_LEN_MAX, 5]);
    }

    #[test]
    fn out_of_order_parts_reassemble() {
        let mut r = Reassembly::default();
        let a = vec![b'a'; CHUNK_LEN_MAX];
        let b = vec![b'b'; CHUNK_LEN_MAX];
        assert_eq!(r.insert(0, 10, 4, part(2, 3, b"cc")).unwrap(), None);
        assert_eq!(r.insert(0, 10, 2, part(0, 3, &a)).unwrap(), None);
        assert_eq!(r.len(), 1);
        let (key, msg) = r.insert(0, 10, 3, part(1, 3, &b)).unwrap().unwrap();
        assert_eq!(key, (0, 10, 2));
        assert_eq!(msg, [a, b, b"cc".to_vec()].concat());
        assert!(r.is_empty());
    }

    #[test]
    fn bad_parts() {
        let mut r = Reassembly::default();
        let full = vec![0u8; CHUNK_LEN_MAX];
        assert_eq!(r.insert(0, 10, 0, part(1, 2, b"x")), Err(ReassemblyError::StartsBeforeZero { index: 1, seq: 0 }));
        assert_eq!(
            r.insert(0, 10, 7, part(0, 2, &full)),
            Err(ReassemblyError::OverrunsWindow { first_seq: 7, count: 2 })
        );
        assert_eq!(r.insert(0, 10, 0, part(0, 2, b"short")), Err(ReassemblyError::ShortInnerPart(0)));
        assert_eq!(r.insert(0, 10, 0, part(0, 2, &full)).unwrap(), None);
        assert_eq!(r.insert(0, 10, 1, part(1, 3, &full)), Err(ReassemblyError::InconsistentCount(2, 3)));
        r.prune_before(20);
        assert!(r.is_empty());
    }
}
