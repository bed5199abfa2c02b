//! The file side of one shard's log: executes what the pure `LogState` hands out — commit jobs, FETCH record
//! reads, retention deletes — on glommio DMA files. It holds no log state of its own beyond the open files.
//!
//! ```text
//! CommitJob ─▶ write_phase: create files (header), fallocate, pair-checked writes (concurrently)
//!           ─▶ (the caller reports "written": the next job may be written now)
//!           ─▶ sync_phase: fdatasync every touched file (concurrently) ─▶ journal rewrite ─▶ directory sync
//! RecordLocation[] ─▶ read_records: read + verify each slot (CRC, structure, seq) ─▶ records, skipped
//! FileId[] ─▶ delete: unlink (a missing mailbox is fine) ─▶ directory sync
//! ```
//! Every error names the operation and the file. The caller treats a failed commit as fail-stop unless the
//! error is a want of space or descriptors (`FileError::is_recoverable`): then it executes the same job again
//! later with `retry` set, which creates the job's files afresh (a failed attempt may have left one, complete
//! or not; nothing in it was acknowledged) and skips files that retention deleted meanwhile.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures_util::future::try_join_all;
use glommio::io::DmaFile;

use super::log_files::{self as files, ctx, FileError};
use super::log_io::LogIoError;
use super::log_open::TMP_SUFFIX;
use crate::log::job::{CommitJob, FileId, JournalRewrite};
use crate::log::record::{decode_record, is_blank, LogRecord, RecordSeq, RECORD_LEN};
use crate::log::scan::verify;
use crate::log::state::RecordLocation;
use crate::log::{FileKind, BLOCK_LEN};

/// See the module docs.
pub struct LogFiles {
    dir: PathBuf,
    files: RefCell<HashMap<FileId, Rc<DmaFile>>>,
    fdatasyncs: Cell<u64>,
    /// `LogConfig::danger_skip_fdatasync`: commits write but do not fdatasync (measurement only).
    skip_fdatasync: bool,
}

impl LogFiles {
    /// The files of the shard directory `dir`, as opened by recovery; `fdatasyncs` counts those it did.
    pub fn new(dir: PathBuf, files: HashMap<FileId, Rc<DmaFile>>, fdatasyncs: u64, skip_fdatasync: bool) -> Self {
        Self { dir, files: RefCell::new(files), fdatasyncs: Cell::new(fdatasyncs), skip_fdatasync }
    }

    /// The shard directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// fdatasyncs (files and directory) done since open, recovery's included.
    pub fn fdatasyncs(&self) -> u64 {
        self.fdatasyncs.get()
    }

    fn count_syncs(&self, n: u64) {
        self.fdatasyncs.set(self.fdatasyncs.get() + n);
    }

    fn path(&self, id: &FileId) -> PathBuf {
        self.dir.join(id.file_name())
    }

    /// The open file `id`. A first attempt of a job names only files that an earlier job created or that
    /// recovery opened (anything else is a bug: an error, and fail-stop); a retry may name one that retention
    /// deleted while the job was parked (`Ok(None)`: its writes are moot, the segment expired).
    fn file_for(&self, id: &FileId, retry: bool) -> Result<Option<Rc<DmaFile>>, FileError> {
        let file = self.files.borrow().get(id).cloned();
        if file.is_none() && !retry {
            debug_assert!(false, "a job only names files it created or that were opened: {id:?}");
            let source = std::io::Error::new(std::io::ErrorKind::NotFound, "a job names a file that is not open");
            return Err(FileError { op: "find", path: self.path(id), source });
        }
        Ok(file)
    }

    /// Closes and unlinks what a failed attempt of a job may have left of a file the job creates.
    async fn discard(&self, id: &FileId, path: &Path) -> Result<(), LogIoError> {
        let file = self.files.borrow_mut().remove(id);
        if let Some(f) = file {
            let _ = f.close_rc().await; // about to be unlinked; closing is best effort
        }
        files::remove_if_present(path).await?;
        Ok(())
    }

    /// Creates, allocations, pair-checked writes. The next job may be written once this returns. `retry`:
    /// an earlier attempt of this job failed recoverably (see the module docs).
    pub async fn write_phase(&self, job: &CommitJob, retry: bool) -> Result<(), LogIoError> {
        for c in &job.creates {
            let path = self.path(&c.file);
            if retry {
                self.discard(&c.file, &path).await?;
            }
            let file = files::create_with_header(&path, &c.header[..]).await?;
            self.files.borrow_mut().insert(c.file, Rc::new(file));
        }
        for p in &job.preallocs {
            let path = self.path(&p.file);
            if let Some(file) = self.file_for(&p.file, retry)? {
                ctx(file.pre_allocate(p.len, false).await, "fallocate", &path)?;
            }
        }
        for w in &job.writes {
            pair_check(w.file, &w.write.bytes)?;
        }
        try_join_all(job.writes.iter().map(|w| async move {
            let path = self.path(&w.file);
            match self.file_for(&w.file, retry)? {
                Some(file) => files::write_at(&file, &path, w.write.offset, &w.write.bytes).await,
                None => Ok(()),
            }
        }))
        .await?;
        Ok(())
    }

    /// fdatasync of every touched file, the journal rewrite, the directory sync. `retry` as for
    /// [`LogFiles::write_phase`].
    pub async fn sync_phase(&self, job: &CommitJob, retry: bool) -> Result<(), LogIoError> {
        if !self.skip_fdatasync {
            let synced = job.files_to_sync();
            try_join_all(synced.iter().map(|id| async move {
                let path = self.path(id);
                match self.file_for(id, retry)? {
                    Some(file) => ctx(file.fdatasync().await, "fdatasync", &path),
                    None => Ok(()),
                }
            }))
            .await?;
            self.count_syncs(synced.len() as u64);
        }
        if let Some(rw) = &job.journal_rewrite {
            self.rewrite_journal(rw, retry).await?;
        }
        if job.needs_dir_sync() {
            files::sync_dir(&self.dir).await?;
            self.count_syncs(1);
        }
        if let Some(old) = job.journal_rewrite.as_ref().and_then(|r| r.replaces) {
            let file = self.files.borrow_mut().remove(&old);
            // A failed attempt may have removed it already.
            files::remove_if_present(&self.path(&old)).await?;
            if let Some(f) = file {
                let _ = f.close_rc().await; // the name is gone; closing is best effort
            }
        }
        Ok(())
    }

    /// Compaction: the new journal is complete and durable under a temporary name before it replaces the old.
    async fn rewrite_journal(&self, rw: &JournalRewrite, retry: bool) -> Result<(), LogIoError> {
        let path = self.path(&rw.file);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(TMP_SUFFIX);
        let tmp = PathBuf::from(tmp);
        if retry {
            files::remove_if_present(&tmp).await?; // what a failed attempt left (recovery would remove it too)
        }
        let file = files::create_with_header(&tmp, &rw.header[..]).await?;
        for w in &rw.writes {
            files::write_at(&file, &tmp, w.offset, &w.bytes).await?;
        }
        ctx(file.fdatasync().await, "fdatasync", &tmp)?;
        files::rename(&tmp, &path).await?;
        self.count_syncs(1);
        self.files.borrow_mut().insert(rw.file, Rc::new(file));
        Ok(())
    }

    /// Reads and verifies the records of one FETCH page (concurrently). Returns the records that passed, in
    /// order, and how many failed verification (never served). A segment deleted meanwhile by retention
    /// counts as skipped.
    pub async fn read_records(&self, reads: &[RecordLocation]) -> Result<(Vec<LogRecord>, u64), LogIoError> {
        let reads = try_join_all(reads.iter().map(|loc| async move {
            let id = FileId { kind: FileKind::Segment, file_seq: loc.file_seq };
            let file = self.files.borrow().get(&id).cloned();
            let Some(file) = file else { return Ok::<_, LogIoError>(None) };
            let r = ctx(file.read_at(loc.offset, RECORD_LEN).await, "read", &self.path(&id))?;
            let bytes: Option<&[u8; RECORD_LEN]> = r.get(..RECORD_LEN).and_then(|b| b.try_into().ok());
            Ok(bytes.and_then(|b| verify(b, loc.seq).ok().map(LogRecord::from)))
        }))
        .await?;
        let skipped = reads.iter().filter(|r| r.is_none()).count() as u64;
        Ok((reads.into_iter().flatten().collect(), skipped))
    }

    /// Deletes `doomed` files (retention) and syncs the directory.
    pub async fn delete(&self, doomed: &[FileId]) -> Result<(), LogIoError> {
        for id in doomed {
            let file = self.files.borrow_mut().remove(id);
            match files::remove(&self.path(id)).await {
                Ok(()) => {}
                // A mailbox that was never created (nothing matched before a crash) is fine to miss.
                Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(f) = file {
                let _ = f.close_rc().await; // unlinked already; a reader holding it keeps it alive
            }
        }
        if !doomed.is_empty() {
            files::sync_dir(&self.dir).await?;
        }
        Ok(())
    }

    /// Reads back every durable, valid record of `ranges` (file, first seq, end seq) below `durable_end`,
    /// oldest first. For tests and tooling: it holds the whole log in memory.
    pub async fn read_all(
        &self,
        ranges: Vec<(u64, RecordSeq, RecordSeq)>,
        durable_end: u64,
        layout: crate::log::layout::SlotLayout,
    ) -> Result<Vec<LogRecord>, LogIoError> {
        let mut out = Vec::new();
        for (file_seq, first, end) in ranges {
            let id = FileId { kind: FileKind::Segment, file_seq };
            let Some(file) = self.file_for(&id, false)? else { continue }; // not a retry: never `None`
            let path = self.path(&id);
            let end = end.0.min(durable_end);
            let len = layout.file_len_for(end.saturating_sub(first.0));
            let mut slot = 0u64;
            files::scan_blocks(&file, &path, len, |block| {
                for i in 0..layout.per_block() as usize {
                    let seq = first.0 + slot;
                    slot += 1;
                    let bytes: &[u8; RECORD_LEN] =
                        block[i * RECORD_LEN..(i + 1) * RECORD_LEN].try_into().expect("a slot is RECORD_LEN bytes");
                    if seq < end && !is_blank(bytes) {
                        if let Ok(v) = verify(bytes, RecordSeq(seq)) {
                            out.push(LogRecord::from(v));
                        }
                    }
                }
            })
            .await?;
        }
        Ok(out)
    }

    /// Closes every file (after the last commit).
    pub async fn close_all(&self) -> Result<(), LogIoError> {
        let files: Vec<(FileId, Rc<DmaFile>)> = self.files.borrow_mut().drain().collect();
        for (id, f) in files {
            ctx(f.close_rc().await.map(|_| ()), "close", &self.path(&id))?;
        }
        Ok(())
    }
}

/// Checks every non-blank slot of a staged write against its CRC just before it goes to the device (the
/// "before write" half of the pair check; the scan and FETCH verify after read).
fn pair_check(file: FileId, bytes: &[u8]) -> Result<(), LogIoError> {
    let fail = |detail: String| LogIoError::PairCheck { file: file.file_name(), detail };
    match file.kind {
        FileKind::Segment => {
            for block in bytes.chunks_exact(BLOCK_LEN) {
                for slot in block.chunks_exact(RECORD_LEN) {
                    let slot: &[u8; RECORD_LEN] = slot.try_into().expect("chunks_exact yields RECORD_LEN");
                    if !is_blank(slot) {
                        decode_record(slot).map_err(|e| fail(e.to_string()))?;
                    }
                }
            }
        }
        FileKind::Mailbox => {
            for slot in bytes.chunks_exact(crate::log::mailbox::MATCH_RECORD_LEN) {
                let slot: &[u8; 32] = slot.try_into().expect("chunks_exact yields 32 bytes");
                if !is_blank(slot) {
                    crate::log::mailbox::MatchRecord::decode(slot, 0..u64::MAX).map_err(|e| fail(e.to_string()))?;
                }
            }
        }
        FileKind::Journal => {} // each journal record is checked to round-trip when it is staged
    }
    Ok(())
}
