//! The header block that opens every log file (segment, mailbox companion, subscription journal).
//!
//! ```text
//! offset  size  field                      (all integers big-endian)
//!      0     8  magic                      b"TSRASEG1" | b"TSRAMBX1" | b"TSRASUB1" (the file kind)
//!      8     2  format_version             = 1
//!     10     2  header_len                 = 4096 (one block)
//!     12     4  record_len                 bytes per fixed-size record slot
//!     16     2  records_per_block          floor(4096 / record_len); the rest of a block is zeroed padding
//!     18     2  shard_id
//!     20     2  shard_count
//!     22     2  bucket_from                first bucket this shard owns (inclusive)
//!     24     2  bucket_to                  end of the owned range (exclusive)
//!     26     2  num_buckets
//!     28     4  window_s
//!     32     8  created_at_s               Unix seconds when the file was created
//!     40     8  file_seq                   per shard and kind, increasing; also in the file name
//!     48     8  first_record_seq           segment/mailbox: seq of the segment's slot 0; journal: 0
//!     56     4  records_max                slots the file may hold (0 = unbounded: the journal)
//!     60     4  in_flight_slots_max        most slots one commit may have in flight (recovery's torn window)
//!     64     4  bloom_m_bits               journal: filter size; else 0
//!     68     1  bloom_k                    journal: hash count; else 0
//!     69  4023  zero
//!   4092     4  crc32c of bytes 0..4092
//! ```
//!
//! The header is written once, when the file is created, and made durable (with the directory entry) before
//! any record in the file is acknowledged. Every field is checked at open against the relay's configuration so a
//! log written with other shard or bucket parameters is refused instead of being served under wrong routing.

use super::BLOCK_LEN;

/// Bytes before the first record slot: one block.
pub const HEADER_LEN: usize = BLOCK_LEN;
/// Current on-disk format version.
pub const FORMAT_VERSION: u16 = 1;
/// Offset of the header's CRC32C (the last 4 bytes of the block).
const HEADER_CRC_AT: usize = HEADER_LEN - 4;
/// Bytes of the header that carry fields; everything from here to the CRC must be zero.
const HEADER_FIELDS_LEN: usize = 69;

/// What a log file holds; encoded as its magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// Proof records (`crate::log::record`).
    Segment,
    /// Match records for the proofs of the segment with the same `file_seq` (`crate::log::mailbox`).
    Mailbox,
    /// Persisted subscriptions and FETCH cursors (`crate::log::subscriptions`).
    Journal,
}

impl FileKind {
    /// The 8-byte magic that opens files of this kind.
    pub const fn magic(self) -> [u8; 8] {
        match self {
            FileKind::Segment => *b"TSRASEG1",
            FileKind::Mailbox => *b"TSRAMBX1",
            FileKind::Journal => *b"TSRASUB1",
        }
    }

    fn from_magic(magic: &[u8]) -> Option<Self> {
        [FileKind::Segment, FileKind::Mailbox, FileKind::Journal].into_iter().find(|k| k.magic() == magic)
    }

    /// File name extension (the name is `<prefix>-<file_seq as 16 hex digits>.<ext>`).
    pub const fn extension(self) -> &'static str {
        match self {
            FileKind::Segment => "log",
            FileKind::Mailbox => "mbx",
            FileKind::Journal => "journal",
        }
    }

    /// File name of the file of this kind with sequence `file_seq`.
    pub fn file_name(self, file_seq: u64) -> String {
        let prefix = match self {
            FileKind::Segment | FileKind::Mailbox => "seg",
            FileKind::Journal => "subs",
        };
        format!("{prefix}-{file_seq:016x}.{}", self.extension())
    }

    /// Parses a file name made by [`FileKind::file_name`]; anything else is `None` (and left alone).
    pub fn parse_file_name(name: &str) -> Option<(FileKind, u64)> {
        let (stem, ext) = name.rsplit_once('.')?;
        let (prefix, hex) = stem.split_once('-')?;
        let kind = match (prefix, ext) {
            ("seg", "log") => FileKind::Segment,
            ("seg", "mbx") => FileKind::Mailbox,
            ("subs", "journal") => FileKind::Journal,
            _ => return None,
        };
        if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok().map(|seq| (kind, seq))
    }
}

/// The routing parameters a shard's files are bound to; a file written under other parameters is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardParams {
    /// This shard's index, `0..shard_count`.
    pub shard_id: u16,
    /// Number of shards the relay runs.
    pub shard_count: u16,
    /// First owned bucket (inclusive).
    pub bucket_from: u16,
    /// End of the owned bucket range (exclusive).
    pub bucket_to: u16,
    /// Buckets in the relay.
    pub num_buckets: u16,
    /// Window length in seconds.
    pub window_s: u32,
}

impl ShardParams {
    /// Shard `shard_id` of `shard_count` over `num_buckets` buckets, owning `[s·B/S, (s+1)·B/S)` (docs/FOUNDATIONS.md §5).
    pub fn for_shard(shard_id: u16, shard_count: u16, num_buckets: u16, window_s: u32) -> Self {
        let (s, n, b) = (shard_id as u32, shard_count as u32, num_buckets as u32);
        Self {
            shard_id,
            shard_count,
            bucket_from: (s * b / n) as u16,
            bucket_to: ((s + 1) * b / n) as u16,
            num_buckets,
            window_s,
        }
    }

    /// Whether `bucket` is in this shard's range.
    pub fn owns_bucket(&self, bucket: u16) -> bool {
        (self.bucket_from..self.bucket_to).contains(&bucket)
    }
}

/// A decoded (or to-be-encoded) file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// What the file holds.
    pub kind: FileKind,
    /// Bytes per record slot.
    pub record_len: u32,
    /// Routing parameters.
    pub shard: ShardParams,
    /// Creation time, Unix seconds.
    pub created_at_s: u64,
    /// Sequence of this file among the shard's files of its kind.
    pub file_seq: u64,
    /// Record sequence number held by slot 0 (segments and their mailboxes).
    pub first_record_seq: u64,
    /// Slot capacity (0 = unbounded).
    pub records_max: u32,
    /// Largest number of slots one commit may have had in flight; recovery calls invalid slots within this
    /// distance of the end "torn" (an interrupted commit) and earlier ones "corrupt".
    pub in_flight_slots_max: u32,
    /// Bloom `m` of the filters in a journal (0 elsewhere).
    pub bloom_m_bits: u32,
    /// Bloom `k` of the filters in a journal (0 elsewhere).
    pub bloom_k: u8,
}

/// Why a header block was refused. Each variant is reachable from a damaged or foreign file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer than `HEADER_LEN` bytes.
    #[error("file is {0} bytes, shorter than its {HEADER_LEN}-byte header")]
    Truncated(usize),
    /// The whole header block is zero: the file was created but its header never reached the disk.
    #[error("header block is all zero (creation interrupted)")]
    Blank,
    /// The CRC32C does not match.
    #[error("header CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// CRC in the file.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// Not a Tessera log file.
    #[error("unknown magic {0:02x?}")]
    BadMagic([u8; 8]),
    /// Written by an unknown format version.
    #[error("format version {0} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion(u16),
    /// Header length other than one block.
    #[error("header length {0} is not {HEADER_LEN}")]
    BadHeaderLen(u16),
    /// Record length or records per block inconsistent with the block size.
    #[error("record layout {record_len} B × {records_per_block} per block does not fit a {BLOCK_LEN}-byte block")]
    BadLayout {
        /// Declared record length.
        record_len: u32,
        /// Declared records per block.
        records_per_block: u16,
    },
    /// Padding between the fields and the CRC is not zero (never a free channel).
    #[error("non-zero byte in header padding at offset {0}")]
    NonZeroPadding(usize),
}

impl FileHeader {
    /// Records per 4 KiB block for this header's record length.
    pub fn records_per_block(&self) -> u16 {
        (BLOCK_LEN / self.record_len as usize) as u16
    }

    /// Encodes into a full header block (zeroed padding, CRC last) and checks the encoding reads back
    /// identically (the "before write" half of the pair check).
    pub fn encode(&self) -> Box<[u8; HEADER_LEN]> {
        let mut b = Box::new([0u8; HEADER_LEN]);
        b[0..8].copy_from_slice(&self.kind.magic());
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        b[10..12].copy_from_slice(&(HEADER_LEN as u16).to_be_bytes());
        b[12..16].copy_from_slice(&self.record_len.to_be_bytes());
        b[16..18].copy_from_slice(&self.records_per_block().to_be_bytes());
        b[18..20].copy_from_slice(&self.shard.shard_id.to_be_bytes());
        b[20..22].copy_from_slice(&self.shard.shard_count.to_be_bytes());
        b[22..24].copy_from_slice(&self.shard.bucket_from.to_be_bytes());
        b[24..26].copy_from_slice(&self.shard.bucket_to.to_be_bytes());
        b[26..28].copy_from_slice(&self.shard.num_buckets.to_be_bytes());
        b[28..32].copy_from_slice(&self.shard.window_s.to_be_bytes());
        b[32..40].copy_from_slice(&self.created_at_s.to_be_bytes());
        b[40..48].copy_from_slice(&self.file_seq.to_be_bytes());
        b[48..56].copy_from_slice(&self.first_record_seq.to_be_bytes());
        b[56..60].copy_from_slice(&self.records_max.to_be_bytes());
        b[60..64].copy_from_slice(&self.in_flight_slots_max.to_be_bytes());
        b[64..68].copy_from_slice(&self.bloom_m_bits.to_be_bytes());
        b[68] = self.bloom_k;
        let crc = crc32c::crc32c(&b[..HEADER_CRC_AT]);
        b[HEADER_CRC_AT..].copy_from_slice(&crc.to_be_bytes());
        // Pair check: what goes to disk must decode to what we meant (catches a layout bug before it is durable).
        assert_eq!(FileHeader::decode(&b[..]).as_ref(), Ok(self), "header encoding must round-trip");
        b
    }

    /// Decodes and verifies a header block (the "after read" half of the pair check).
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        let b: &[u8; HEADER_LEN] =
            bytes.get(..HEADER_LEN).and_then(|s| s.try_into().ok()).ok_or(HeaderError::Truncated(bytes.len()))?;
        if b.iter().all(|&x| x == 0) {
            return Err(HeaderError::Blank);
        }
        let stored = u32::from_be_bytes(b[HEADER_CRC_AT..].try_into().expect("4-byte CRC field"));
        let computed = crc32c::crc32c(&b[..HEADER_CRC_AT]);
        if stored != computed {
            return Err(HeaderError::BadCrc { stored, computed });
        }
        let magic: [u8; 8] = b[0..8].try_into().expect("8-byte magic field");
        let kind = FileKind::from_magic(&magic).ok_or(HeaderError::BadMagic(magic))?;
        let u16_at = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        let u32_at = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().expect("4-byte field"));
        let u64_at = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().expect("8-byte field"));
        let version = u16_at(8);
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        if u16_at(10) as usize != HEADER_LEN {
            return Err(HeaderError::BadHeaderLen(u16_at(10)));
        }
        let (record_len, records_per_block) = (u32_at(12), u16_at(16));
        if record_len == 0
            || record_len as usize > BLOCK_LEN
            || records_per_block as usize != BLOCK_LEN / record_len as usize
        {
            return Err(HeaderError::BadLayout { record_len, records_per_block });
        }
        if let Some(i) = b[HEADER_FIELDS_LEN..HEADER_CRC_AT].iter().position(|&x| x != 0) {
            return Err(HeaderError::NonZeroPadding(HEADER_FIELDS_LEN + i));
        }
        Ok(Self {
            kind,
            record_len,
            shard: ShardParams {
                shard_id: u16_at(18),
                shard_count: u16_at(20),
                bucket_from: u16_at(22),
                bucket_to: u16_at(24),
                num_buckets: u16_at(26),
                window_s: u32_at(28),
            },
            created_at_s: u64_at(32),
            file_seq: u64_at(40),
            first_record_seq: u64_at(48),
            records_max: u32_at(56),
            in_flight_slots_max: u32_at(60),
            bloom_m_bits: u32_at(64),
            bloom_k: b[68],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FileHeader {
        FileHeader {
            kind: FileKind::Segment,
            record_len: 584,
            shard: ShardParams::for_shard(1, 2, 64, 10),
            created_at_s: 1_700_000_000,
            file_seq: 3,
            first_record_seq: 229_362,
            records_max: 114_681,
            in_flight_slots_max: 1030,
            bloom_m_bits: 0,
            bloom_k: 0,
        }
    }

    #[test]
    fn header_round_trips_with_fixed_offsets() {
        let h = sample();
        let b = h.encode();
        assert_eq!(&b[0..8], b"TSRASEG1");
        assert_eq!(&b[8..12], &[0, 1, 0x10, 0]);
        assert_eq!(&b[12..18], &[0, 0, 2, 0x48, 0, 7]);
        assert_eq!(&b[18..28], &[0, 1, 0, 2, 0, 32, 0, 64, 0, 64]);
        assert_eq!(&b[48..56], &229_362u64.to_be_bytes());
        assert!(b[69..4092].iter().all(|&x| x == 0));
        assert_eq!(FileHeader::decode(&b[..]), Ok(h));
        assert_eq!(h.shard.bucket_from, 32);
        assert_eq!(h.shard.bucket_to, 64);
    }

    #[test]
    fn damaged_headers_are_refused_by_cause() {
        let good = sample().encode();
        assert_eq!(FileHeader::decode(&good[..100]), Err(HeaderError::Truncated(100)));
        assert_eq!(FileHeader::decode(&[0u8; HEADER_LEN]), Err(HeaderError::Blank));
        let mut flipped = good.clone();
        flipped[33] ^= 0x04;
        assert!(matches!(FileHeader::decode(&flipped[..]), Err(HeaderError::BadCrc { .. })));

        // Re-seal with a valid CRC to reach the field checks behind it.
        let reseal = |mut b: Box<[u8; HEADER_LEN]>| {
            let crc = crc32c::crc32c(&b[..HEADER_CRC_AT]);
            b[HEADER_CRC_AT..].copy_from_slice(&crc.to_be_bytes());
            b
        };
        let mut m = good.clone();
        m[0..8].copy_from_slice(b"NOTALOG!");
        assert_eq!(FileHeader::decode(&reseal(m)[..]), Err(HeaderError::BadMagic(*b"NOTALOG!")));
        let mut v = good.clone();
        v[9] = 2;
        assert_eq!(FileHeader::decode(&reseal(v)[..]), Err(HeaderError::UnsupportedVersion(2)));
        let mut l = good.clone();
        l[17] = 8;
        assert_eq!(
            FileHeader::decode(&reseal(l)[..]),
            Err(HeaderError::BadLayout { record_len: 584, records_per_block: 8 })
        );
        let mut p = good.clone();
        p[2000] = 1;
        assert_eq!(FileHeader::decode(&reseal(p)[..]), Err(HeaderError::NonZeroPadding(2000)));
    }

    #[test]
    fn file_names_round_trip_and_foreign_names_are_ignored() {
        assert_eq!(FileKind::Segment.file_name(0x2a), "seg-000000000000002a.log");
        assert_eq!(FileKind::Journal.file_name(1), "subs-0000000000000001.journal");
        assert_eq!(FileKind::parse_file_name("seg-000000000000002a.mbx"), Some((FileKind::Mailbox, 0x2a)));
        for bad in ["seg-2a.log", "seg-000000000000002A.log", "subs-000000000000002a.log", "x.log", "seg.log"] {
            assert_eq!(FileKind::parse_file_name(bad), None, "{bad}");
        }
    }
}
