//! The proof record: one accepted proof plus what the relay needs to serve and expire it.
//!
//! ```text
//! offset  size  field
//!      0     8  record_seq      u64 be; = segment's first_record_seq + slot (checked at read)
//!      8     8  received_at_s   u64 be; Unix seconds when the shard accepted it (retention runs on it)
//!     16   564  proof           verbatim (crate::proto::proof); its window_start (record offset 20) is the window
//!    580     4  crc32c          of bytes 0..580
//!    584        total; 7 records per 4096-byte block, the last 8 bytes of each block zero
//! ```
//!
//! There is deliberately no "kind" or "flags" field: cover (dummy) proofs are appended through the same call
//! with the same metadata, so nothing on disk says which proofs are dummies (docs/STORAGE.md §What a copy of
//! the disk reveals). A record is never all-zero (the proof's version byte is 1), so an all-zero slot is
//! unambiguously "never written".

use crate::proto::params::PROOF_LEN;
use crate::proto::proof::{Proof, ProofError, ProofRef};

/// Bytes of one proof record.
pub const RECORD_LEN: usize = 16 + PROOF_LEN + 4;
const CRC_AT: usize = RECORD_LEN - 4;
const PROOF_AT: usize = 16;
const _: () = assert!(RECORD_LEN == 584);

/// A record's position in its shard's log: dense, increasing, never reused (survives restarts and retention).
///
/// The routing engine's `LogSink::append` returns it too: one number from the engine to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RecordSeq(pub u64);

/// Why a record slot does not hold a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// CRC32C mismatch: a torn write or a flipped bit.
    #[error("record CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// CRC in the slot.
        stored: u32,
        /// CRC of the slot's bytes.
        computed: u32,
    },
    /// CRC matches but the proof is not structurally valid (we never write such a record).
    #[error("record holds an invalid proof: {0}")]
    BadProof(ProofError),
    /// The slot holds a valid record of another position (a misdirected or stale write).
    #[error("record seq {found} found where {expected} belongs")]
    WrongSeq {
        /// Seq the slot's position implies.
        expected: u64,
        /// Seq stored in the slot.
        found: u64,
    },
}

/// A verified record, read in place.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    /// Its sequence number.
    pub seq: RecordSeq,
    /// When the shard accepted it, Unix seconds.
    pub received_at_s: u64,
    /// The proof.
    pub proof: ProofRef<'a>,
}

/// An owned record (what FETCH and read-back return).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Its sequence number.
    pub seq: RecordSeq,
    /// When the shard accepted it, Unix seconds.
    pub received_at_s: u64,
    /// The proof.
    pub proof: Proof,
}

impl From<RecordView<'_>> for LogRecord {
    fn from(v: RecordView<'_>) -> Self {
        Self { seq: v.seq, received_at_s: v.received_at_s, proof: v.proof.to_owned() }
    }
}

/// Writes a record into `out` (exactly `RECORD_LEN` bytes), CRC last.
pub fn encode_record(seq: RecordSeq, received_at_s: u64, proof: ProofRef<'_>, out: &mut [u8; RECORD_LEN]) {
    out[0..8].copy_from_slice(&seq.0.to_be_bytes());
    out[8..16].copy_from_slice(&received_at_s.to_be_bytes());
    out[PROOF_AT..CRC_AT].copy_from_slice(proof.as_bytes());
    let crc = crc32c::crc32c(&out[..CRC_AT]);
    out[CRC_AT..].copy_from_slice(&crc.to_be_bytes());
}

/// Whether a slot was never written.
#[inline]
pub fn is_blank(slot: &[u8]) -> bool {
    slot.iter().all(|&b| b == 0)
}

/// Verifies a record's CRC and proof structure (the "after read" half of the pair check). The caller checks
/// the seq against the slot position with [`check_seq`].
pub fn decode_record(bytes: &[u8; RECORD_LEN]) -> Result<RecordView<'_>, RecordError> {
    let stored = u32::from_be_bytes(bytes[CRC_AT..].try_into().expect("4-byte CRC field"));
    let computed = crc32c::crc32c(&bytes[..CRC_AT]);
    if stored != computed {
        return Err(RecordError::BadCrc { stored, computed });
    }
    let proof_bytes: &[u8; PROOF_LEN] = bytes[PROOF_AT..CRC_AT].try_into().expect("proof field is PROOF_LEN bytes");
    let proof = ProofRef::new(proof_bytes).map_err(RecordError::BadProof)?;
    Ok(RecordView {
        seq: RecordSeq(u64::from_be_bytes(bytes[0..8].try_into().expect("8-byte seq field"))),
        received_at_s: u64::from_be_bytes(bytes[8..16].try_into().expect("8-byte time field")),
        proof,
    })
}

/// Rejects a valid record found at the wrong position.
pub fn check_seq(view: &RecordView<'_>, expected: RecordSeq) -> Result<(), RecordError> {
    if view.seq != expected {
        return Err(RecordError::WrongSeq { expected: expected.0, found: view.seq.0 });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::params::CIPHERTEXT_LEN;

    fn proof() -> Proof {
        Proof::new(5, 1_700_000_000, &[0x11; 32], &[0x22; 8], &[0x33; CIPHERTEXT_LEN])
    }

    #[test]
    fn record_layout_and_round_trip() {
        let p = proof();
        let mut b = [0u8; RECORD_LEN];
        encode_record(RecordSeq(9), 1_700_000_004, p.view(), &mut b);
        assert_eq!(&b[0..8], &9u64.to_be_bytes());
        assert_eq!(&b[8..16], &1_700_000_004u64.to_be_bytes());
        assert_eq!(&b[16..20], &[1, 0, 0, 5]);
        assert_eq!(&b[20..28], &1_700_000_000u64.to_be_bytes());
        let v = decode_record(&b).unwrap();
        assert_eq!(LogRecord::from(v), LogRecord { seq: RecordSeq(9), received_at_s: 1_700_000_004, proof: p });
        assert_eq!(check_seq(&v, RecordSeq(9)), Ok(()));
        assert_eq!(check_seq(&v, RecordSeq(8)), Err(RecordError::WrongSeq { expected: 8, found: 9 }));
        assert!(!is_blank(&b));
        assert!(is_blank(&[0u8; RECORD_LEN]));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut b = [0u8; RECORD_LEN];
        encode_record(RecordSeq(1), 2, proof().view(), &mut b);
        for bit in 0..RECORD_LEN * 8 {
            let mut c = b;
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(decode_record(&c), Err(RecordError::BadCrc { .. })), "bit {bit}");
        }
    }

    #[test]
    fn crc_valid_but_structurally_bad_proof_is_refused() {
        let mut b = [0u8; RECORD_LEN];
        encode_record(RecordSeq(1), 2, proof().view(), &mut b);
        b[PROOF_AT] = 7;
        let crc = crc32c::crc32c(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(decode_record(&b).unwrap_err(), RecordError::BadProof(ProofError::BadVersion(7)));
    }
}
