//! Opening a shard's log directory: list the files, set aside what cannot be trusted, scan everything else
//! with the pure scanners, truncate torn tails, and hand back the recovered state with the open files.
//!
//! ```text
//! shard dir ──list──▶ *.tmp: removed (an interrupted journal compaction; the old journal is intact)
//!                     subs-<n>.journal: newest valid one replayed, older ones removed (superseded)
//!                     seg-<n>.log (+ .mbx): header checked ─▶ SegmentScanner ─▶ MailboxScanner
//!                        unreadable header: all-zero file → removed (its creation was interrupted, nothing in
//!                        it was acknowledged); otherwise renamed *.corrupt (quarantined, reported), and no seq
//!                        found in it is ever reused
//!                     .mbx without its segment: removed
//! log::recovery::assemble ──▶ truncation writes + fdatasync ──▶ ready
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::DmaFile;

use super::log_files::{self as files, ctx, ctx_std, FileError};
use super::log_io::LogIoError;
use crate::log::format::{FileHeader, FileKind};
use crate::log::job::FileId;
use crate::log::mailbox::Mailbox;
use crate::log::record::{decode_record, RECORD_LEN};
use crate::log::recovery::{self, MailboxScanner, RecoveredJournal, RecoveredMailbox, RecoveredSegment, Recovery};
use crate::log::scan::SegmentScanner;
use crate::log::subscriptions::JournalReplay;
use crate::log::LogConfig;

/// Suffix given to a quarantined file.
pub const QUARANTINE_SUFFIX: &str = ".corrupt";
/// Suffix of a journal being written by compaction.
pub const TMP_SUFFIX: &str = ".tmp";

/// A recovered log with its files open.
pub(super) struct Opened {
    pub(super) recovery: Recovery,
    pub(super) files: HashMap<FileId, Rc<DmaFile>>,
    pub(super) fdatasyncs: u64,
}

/// The shard directory's log files by kind and seq.
#[derive(Default)]
struct Listing {
    segments: BTreeMap<u64, PathBuf>,
    mailboxes: BTreeMap<u64, PathBuf>,
    journals: BTreeMap<u64, PathBuf>,
}

fn list(dir: &Path) -> Result<(Listing, Vec<PathBuf>), FileError> {
    let mut l = Listing::default();
    let mut tmp = Vec::new();
    for entry in ctx_std(std::fs::read_dir(dir), "list", dir)? {
        let entry = ctx_std(entry, "list", dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            tmp.push(entry.path());
            continue;
        }
        match FileKind::parse_file_name(name) {
            Some((FileKind::Segment, seq)) => l.segments.insert(seq, entry.path()),
            Some((FileKind::Mailbox, seq)) => l.mailboxes.insert(seq, entry.path()),
            Some((FileKind::Journal, seq)) => l.journals.insert(seq, entry.path()),
            None => None, // foreign or quarantined files are left alone
        };
    }
    Ok((l, tmp))
}

async fn quarantine(path: &Path) -> Result<(), FileError> {
    let mut to = path.as_os_str().to_owned();
    to.push(QUARANTINE_SUFFIX);
    files::rename(path, Path::new(&to)).await
}

/// Opens and reads the header of `path`; `Ok(None)` when the header is unreadable (damage or an interrupted
/// creation), `Err` for I/O errors and for headers of another configuration.
async fn open_checked(
    config: &LogConfig,
    id: FileId,
    path: &Path,
) -> Result<Option<(DmaFile, FileHeader, u64)>, LogIoError> {
    let file = files::open_rw(path).await?;
    let len = files::file_len(&file, path).await?;
    let header = match FileHeader::decode(&files::read_header(&file, path).await.unwrap_or_default()) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "log file header unreadable");
            ctx(file.close().await, "close", path)?;
            return Ok(None);
        }
    };
    recovery::check_header(config, &id, &header)?;
    Ok(Some((file, header, len)))
}

/// What happened to a file whose header could not be read.
#[derive(Default)]
struct SetAside {
    removed: u64,
    quarantined: u64,
    /// One past the largest seq of a CRC-valid record found in it: new records must not reuse its seqs
    /// (a subscriber's cursor may already point past them).
    seq_floor: u64,
}

/// A file with an unreadable header: removed when it holds nothing but zeros (its creation was interrupted
/// before anything in it was written, so nothing in it was acknowledged), otherwise renamed `*.corrupt` —
/// kept for the operator, never served.
/// Returns whether it was quarantined (rather than removed).
async fn set_aside(path: &Path, kind: FileKind, out: &mut SetAside) -> Result<bool, LogIoError> {
    let file = files::open_rw(path).await?;
    let len = files::file_len(&file, path).await?;
    let header = files::read_header(&file, path).await.unwrap_or_default();
    let mut all_zero = header.iter().all(|&b| b == 0);
    let mut max_seq: Option<u64> = None;
    files::scan_blocks(&file, path, len, |block| {
        all_zero &= block.iter().all(|&b| b == 0);
        if kind == FileKind::Segment {
            for slot in block.chunks_exact(RECORD_LEN) {
                let slot: &[u8; RECORD_LEN] = slot.try_into().expect("chunks_exact yields RECORD_LEN");
                if let Ok(v) = decode_record(slot) {
                    max_seq = max_seq.max(Some(v.seq.0));
                }
            }
        }
    })
    .await?;
    ctx(file.close().await, "close", path)?;
    if let Some(m) = max_seq {
        out.seq_floor = out.seq_floor.max(m + 1);
    }
    if all_zero {
        files::remove(path).await?;
        out.removed += 1;
        return Ok(false);
    }
    quarantine(path).await?;
    out.quarantined += 1;
    tracing::warn!(path = %path.display(), "log file with an unreadable header quarantined");
    Ok(true)
}

/// Recovers the log in `dir` (created if missing).
pub(super) async fn open_dir(dir: &Path, config: &LogConfig, dedup_from_window_s: u64) -> Result<Opened, LogIoError> {
    ctx_std(std::fs::create_dir_all(dir), "create dir", dir)?;
    let (mut listing, tmp) = list(dir)?;
    let mut open: HashMap<FileId, Rc<DmaFile>> = HashMap::new();
    let mut aside = SetAside::default();
    for p in tmp {
        files::remove(&p).await?;
        aside.removed += 1;
    }

    // Journal: the newest with a valid header wins; older ones were superseded by a completed compaction.
    let mut journal = None;
    let journals: Vec<(u64, PathBuf)> = std::mem::take(&mut listing.journals).into_iter().rev().collect();
    for (seq, path) in journals {
        let id = FileId { kind: FileKind::Journal, file_seq: seq };
        if journal.is_some() {
            files::remove(&path).await?;
            aside.removed += 1;
            continue;
        }
        let Some((file, header, len)) = open_checked(config, id, &path).await? else {
            set_aside(&path, FileKind::Journal, &mut aside).await?;
            continue;
        };
        let mut replay =
            JournalReplay::new(config.bloom, header.in_flight_slots_max).map_err(recovery::OpenError::from)?;
        files::scan_blocks(&file, &path, len, |b| replay.push_block(b)).await?;
        let (table, scan, stats) = replay.finish(config.shard).map_err(recovery::OpenError::from)?;
        open.insert(id, Rc::new(file));
        journal = Some(RecoveredJournal { file_seq: seq, table, scan, stats });
    }

    // Segments, oldest first, each followed by its mailbox.
    let mut mailbox = Mailbox::default();
    let mut segments = Vec::new();
    // First seq of the newest readable segment: commits in flight at a crash cannot reach further back
    // than one commit before it (older damage is corruption, not a torn write).
    let mut newest_first_seq = 0;
    for (&seq, path) in listing.segments.iter().rev() {
        let id = FileId { kind: FileKind::Segment, file_seq: seq };
        if let Some((file, header, _)) = open_checked(config, id, path).await? {
            newest_first_seq = header.first_record_seq;
            ctx(file.close().await, "close", path)?;
            break;
        }
    }
    let seg_list: Vec<(u64, PathBuf)> = std::mem::take(&mut listing.segments).into_iter().collect();
    for (seq, path) in seg_list {
        let id = FileId { kind: FileKind::Segment, file_seq: seq };
        let mbx_path = listing.mailboxes.remove(&seq);
        let Some((file, header, len)) = open_checked(config, id, &path).await? else {
            let quarantined = set_aside(&path, FileKind::Segment, &mut aside).await?;
            if let Some(m) = mbx_path {
                // Its matches point into records that will not be served: set aside with it.
                if quarantined {
                    quarantine(&m).await?;
                    aside.quarantined += 1;
                } else {
                    files::remove(&m).await?;
                    aside.removed += 1;
                }
            }
            continue;
        };
        let mut scanner = SegmentScanner::new(header, dedup_from_window_s, newest_first_seq);
        files::scan_blocks(&file, &path, len, |b| scanner.push_block(b)).await?;
        let (scan, facts) = scanner.finish();
        open.insert(id, Rc::new(file));
        let mut mbx = None;
        if let Some(mpath) = mbx_path {
            let mid = FileId { kind: FileKind::Mailbox, file_seq: seq };
            match open_checked(config, mid, &mpath).await? {
                Some((mfile, mheader, mlen)) => {
                    let mut ms = MailboxScanner::new(&mheader);
                    files::scan_blocks(&mfile, &mpath, mlen, |b| ms.push_block(b, &facts, &mut mailbox)).await?;
                    let dangling = ms.dangling;
                    mbx = Some(RecoveredMailbox { len: mlen, scan: ms.finish(), dangling });
                    open.insert(mid, Rc::new(mfile));
                }
                None => {
                    set_aside(&mpath, FileKind::Mailbox, &mut aside).await?;
                }
            }
        }
        segments.push(RecoveredSegment { header, log_len: len, scan, facts, mbx });
    }
    for (_, orphan) in std::mem::take(&mut listing.mailboxes) {
        files::remove(&orphan).await?;
        aside.removed += 1;
    }

    let (quarantined, removed) = (aside.quarantined, aside.removed);
    let recovery = recovery::assemble(*config, segments, mailbox, journal, quarantined, removed, aside.seq_floor)?;

    // Truncate torn tails before anything else is written, and make that durable.
    let mut touched = Vec::new();
    for t in &recovery.truncations {
        let file = open.get(&t.file).expect("truncations only name files that were scanned");
        files::write_at(file, &dir.join(t.file.file_name()), t.write.offset, &t.write.bytes).await?;
        touched.push(t.file);
    }
    touched.sort_unstable();
    touched.dedup();
    for id in &touched {
        let path = dir.join(id.file_name());
        ctx(open[id].fdatasync().await, "fdatasync", &path)?;
    }
    if quarantined + removed > 0 {
        files::sync_dir(dir).await?;
    }
    Ok(Opened { recovery, files: open, fdatasyncs: touched.len() as u64 })
}
