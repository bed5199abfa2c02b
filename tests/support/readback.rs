//! Blocking, read-only view of a shard's log directory with plain `std::fs` — no executor needed. For the log
//! tests (the crash test reads back what survived a SIGKILL; recovery and I/O tests compare it with what the
//! log reports); it never writes, so it is safe on a copy of a relay's disk or on a directory a stopped relay
//! left behind. Test-only, so it lives with the tests rather than in the library.
//!
//! ```text
//! shard dir ──▶ seg-*.log: header ─▶ every slot verified (CRC, structure, seq) ─▶ records
//!           ──▶ seg-*.mbx: header ─▶ every match record verified ─▶ (key, seq)
//! ```

use std::path::Path;

use tessera::log::format::{FileHeader, FileKind, HEADER_LEN};
use tessera::log::layout::SlotLayout;
use tessera::log::mailbox::{MatchRecord, SubscriberKey, MATCH_RECORD_LEN};
use tessera::log::record::{is_blank, LogRecord, RecordSeq, RECORD_LEN};
use tessera::log::scan::verify;
use tessera::log::BLOCK_LEN;

/// Everything valid in a shard directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadBack {
    /// Valid proof records, ascending seq.
    pub records: Vec<LogRecord>,
    /// Valid match records `(key, seq)` in file order.
    pub matches: Vec<(SubscriberKey, RecordSeq)>,
    /// Non-blank slots that failed verification (torn or corrupt).
    pub invalid_slots: u64,
    /// Files whose header could not be read.
    pub unreadable_files: u64,
}

/// Reads every segment and mailbox file of `dir`.
pub fn read_back_shard(dir: &Path) -> std::io::Result<ReadBack> {
    let mut names: Vec<(FileKind, u64, std::path::PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some((kind, seq)) = entry.file_name().to_str().and_then(FileKind::parse_file_name) {
            names.push((kind, seq, entry.path()));
        }
    }
    names.sort_by_key(|(kind, seq, _)| (*seq, *kind));
    let mut out = ReadBack::default();
    for (kind, _, path) in names {
        let bytes = std::fs::read(&path)?;
        let Ok(header) = FileHeader::decode(&bytes) else {
            out.unreadable_files += 1;
            continue;
        };
        let body = bytes.get(HEADER_LEN..).unwrap_or_default();
        match kind {
            FileKind::Segment => {
                let layout = SlotLayout::new(RECORD_LEN);
                for (b, block) in body.chunks(BLOCK_LEN).enumerate() {
                    for (i, slot) in block.chunks_exact(RECORD_LEN).take(layout.per_block() as usize).enumerate() {
                        let seq =
                            RecordSeq(header.first_record_seq.saturating_add(b as u64 * layout.per_block() + i as u64));
                        let slot: &[u8; RECORD_LEN] = slot.try_into().expect("chunks_exact yields RECORD_LEN");
                        if is_blank(slot) {
                            continue;
                        }
                        match verify(slot, seq) {
                            Ok(v) => out.records.push(v.into()),
                            Err(_) => out.invalid_slots += 1,
                        }
                    }
                }
            }
            FileKind::Mailbox => {
                for slot in body.chunks_exact(MATCH_RECORD_LEN) {
                    let slot: &[u8; MATCH_RECORD_LEN] = slot.try_into().expect("chunks_exact yields 32 bytes");
                    if is_blank(slot) {
                        continue;
                    }
                    match MatchRecord::decode(slot, header.first_record_seq..u64::MAX) {
                        Ok(m) => out.matches.push((m.key, m.seq)),
                        Err(_) => out.invalid_slots += 1,
                    }
                }
            }
            FileKind::Journal => {}
        }
    }
    out.records.sort_by_key(|r| r.seq);
    Ok(out)
}
