//! Where accepted proofs go before they are matched: the shard's log, behind a small pure trait.
//!
//! ```text
//! Shard::handle_publish ──accepted proof──▶ LogSink::append ──▶ Ok(RecordSeq) ─▶ matched, delivered
//!                                                           └─▶ Err(LogError) ─▶ Rejection::LogFailed
//! ```
//! The relay's sink is `server::ShardLog`: the pure `log::state::LogState` that its `ShardServer` owns
//! (staging into the group-commit images; the driver executes the commit jobs the server hands out, and the
//! server acknowledges a PUBLISH only once they are durable). `MemoryLog` is the in-memory sink of tests and benches: a bounded ring
//! of the most recent records. Neither does I/O: the engine never reaches the runtime through its sink.

use crate::log::record::RecordSeq;
use crate::log::state::LogError;
use crate::proto::{ProofRef, PROOF_LEN};

/// Receives every accepted proof, in acceptance order.
pub trait LogSink {
    /// Stages one proof received at `received_at_s` (the shard's clock) and returns its per-shard sequence
    /// number (0 for the first proof a shard ever logged, then +1 per proof). An error means the log accepts
    /// nothing more (it failed a commit: fail-stop); the engine then rejects the proof, so it is never
    /// acknowledged.
    fn append(&mut self, proof: ProofRef<'_>, received_at_s: u64) -> Result<RecordSeq, LogError>;
}

/// Default `MemoryLog` capacity: 65,536 records (37 MiB when full; memory is only taken as records arrive).
pub const MEMORY_LOG_RECORDS_DEFAULT: usize = 1 << 16;

/// In-memory `LogSink`: keeps the most recent `records_max` proofs in a ring (older ones are overwritten),
/// so a long benchmark runs in bounded memory while the append still copies every byte as a real log does.
#[derive(Clone)]
pub struct MemoryLog {
    /// `records_max × PROOF_LEN` bytes once full; grows to that size as records arrive, then wraps.
    bytes: Vec<u8>,
    /// Receive time of each stored record, same ring order as `bytes`.
    received_at_s: Vec<u64>,
    /// Ring capacity in records.
    records_max: usize,
    /// Position the next append gets.
    next: u64,
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self::new(MEMORY_LOG_RECORDS_DEFAULT)
    }
}

impl std::fmt::Debug for MemoryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLog").field("records_max", &self.records_max).field("next", &self.next).finish()
    }
}

impl MemoryLog {
    /// A ring holding at most `records_max` (≥ 1) records.
    pub fn new(records_max: usize) -> Self {
        let records_max = records_max.max(1);
        Self { bytes: Vec::new(), received_at_s: Vec::new(), records_max, next: 0 }
    }

    /// A ring whose memory is taken up front, so that appends never allocate (benches, allocation tests).
    pub fn preallocated(records_max: usize) -> Self {
        let mut log = Self::new(records_max);
        log.bytes.reserve_exact(log.records_max * PROOF_LEN);
        log.received_at_s.reserve_exact(log.records_max);
        log
    }

    /// Position the next appended record will get (= records ever appended).
    pub fn next_position(&self) -> RecordSeq {
        RecordSeq(self.next)
    }

    /// Oldest position still held.
    pub fn first_position(&self) -> RecordSeq {
        RecordSeq(self.next.saturating_sub(self.len() as u64))
    }

    /// Records currently held.
    pub fn len(&self) -> usize {
        self.received_at_s.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.received_at_s.is_empty()
    }

    /// The record at `position` and its receive time, if still held.
    pub fn get(&self, position: RecordSeq) -> Option<(ProofRef<'_>, u64)> {
        if position < self.first_position() || position.0 >= self.next {
            return None;
        }
        let slot = (position.0 % self.records_max as u64) as usize;
        let bytes: &[u8; PROOF_LEN] =
            self.bytes[slot * PROOF_LEN..(slot + 1) * PROOF_LEN].try_into().expect("slot < len gives a whole record");
        let proof = ProofRef::new(bytes).expect("only structurally valid proofs are appended");
        Some((proof, self.received_at_s[slot]))
    }
}

impl LogSink for MemoryLog {
    #[inline]
    fn append(&mut self, proof: ProofRef<'_>, received_at_s: u64) -> Result<RecordSeq, LogError> {
        let position = RecordSeq(self.next);
        let slot = (self.next % self.records_max as u64) as usize;
        if slot == self.received_at_s.len() {
            self.bytes.extend_from_slice(proof.as_bytes());
            self.received_at_s.push(received_at_s);
        } else {
            self.bytes[slot * PROOF_LEN..(slot + 1) * PROOF_LEN].copy_from_slice(proof.as_bytes());
            self.received_at_s[slot] = received_at_s;
        }
        self.next += 1;
        Ok(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Proof, CIPHERTEXT_LEN};

    fn proof(n: u8) -> Proof {
        Proof::new(n as u16, 0, &[n; 32], &[n; 8], &[n; CIPHERTEXT_LEN])
    }

    #[test]
    fn ring_keeps_the_newest_records() {
        let mut log = MemoryLog::new(2);
        assert_eq!(log.append(proof(1).view(), 100), Ok(RecordSeq(0)));
        assert_eq!(log.append(proof(2).view(), 101), Ok(RecordSeq(1)));
        assert_eq!(log.append(proof(3).view(), 102), Ok(RecordSeq(2)));
        assert_eq!(log.len(), 2);
        assert_eq!(log.first_position(), RecordSeq(1));
        assert!(log.get(RecordSeq(0)).is_none());
        let (p, t) = log.get(RecordSeq(2)).unwrap();
        assert_eq!((p.bucket(), t), (3, 102));
        assert_eq!(log.get(RecordSeq(1)).unwrap().0.commit(), &[2; 32]);
        assert!(log.get(RecordSeq(3)).is_none());
    }
}
