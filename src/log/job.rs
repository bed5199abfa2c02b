//! A commit job: everything one group commit must make durable, as plain data for the driver to execute.
//!
//! ```text
//! LogState::take_job ──▶ CommitJob { creates, preallocs, writes, journal rewrite, through }
//!   driver: create files + headers ─▶ fallocate ─▶ writes ─▶ fdatasync every touched file ─▶ directory sync
//!           (if a file was created or renamed) ─▶ LogState::complete_job ─▶ seqs ≤ through are durable
//! ```

use super::format::{FileKind, HEADER_LEN};
use super::layout::BlockWrite;
use super::record::RecordSeq;

/// A file of the shard's directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    /// Its kind.
    pub kind: FileKind,
    /// Its sequence (the name is `kind.file_name(file_seq)`).
    pub file_seq: u64,
}

impl FileId {
    /// The file name inside the shard directory.
    pub fn file_name(&self) -> String {
        self.kind.file_name(self.file_seq)
    }
}

/// Create a file and write its header block at offset 0.
#[derive(Clone, Debug)]
pub struct FileCreate {
    /// The new file.
    pub file: FileId,
    /// Its header block.
    pub header: Box<[u8; HEADER_LEN]>,
}

/// Grow a file's allocation to `len` bytes (fallocate, size updated) before writing into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prealloc {
    /// The file.
    pub file: FileId,
    /// New allocated length in bytes.
    pub len: u64,
}

/// One aligned write to one file.
#[derive(Clone, Debug)]
pub struct FileWrite {
    /// The file.
    pub file: FileId,
    /// The write.
    pub write: BlockWrite,
}

/// Replace the journal: write `file_seq` as a temporary file, sync it, rename it into place, sync the
/// directory, then delete `replaces`.
#[derive(Clone, Debug)]
pub struct JournalRewrite {
    /// The new journal.
    pub file: FileId,
    /// Its header.
    pub header: Box<[u8; HEADER_LEN]>,
    /// Its content after the header.
    pub writes: Vec<BlockWrite>,
    /// The journal it supersedes (deleted once the new one is in place), if any.
    pub replaces: Option<FileId>,
}

/// Everything one commit makes durable.
#[derive(Clone, Debug, Default)]
pub struct CommitJob {
    /// Job number (increasing).
    pub id: u64,
    /// Files to create first.
    pub creates: Vec<FileCreate>,
    /// Allocations to grow.
    pub preallocs: Vec<Prealloc>,
    /// Writes, any order (they touch disjoint blocks).
    pub writes: Vec<FileWrite>,
    /// Journal compaction, if due.
    pub journal_rewrite: Option<JournalRewrite>,
    /// Records up to this seq are durable once the job completes.
    pub through: Option<RecordSeq>,
    /// Proof records in the job.
    pub records: u64,
    /// Match records in the job.
    pub matches: u64,
    /// Journal records in the job (appended; a rewrite counts its whole snapshot separately).
    pub journal_records: u64,
}

impl CommitJob {
    /// Every file that needs an fdatasync (created, grown or written), each once, in a stable order.
    pub fn files_to_sync(&self) -> Vec<FileId> {
        let mut files: Vec<FileId> = self
            .creates
            .iter()
            .map(|c| c.file)
            .chain(self.preallocs.iter().map(|p| p.file))
            .chain(self.writes.iter().map(|w| w.file))
            .collect();
        files.sort_unstable();
        files.dedup();
        files
    }

    /// Whether directory entries changed (a created file must survive a crash with its directory entry).
    pub fn needs_dir_sync(&self) -> bool {
        !self.creates.is_empty() || self.journal_rewrite.is_some()
    }

    /// Bytes the job writes (headers included).
    pub fn bytes(&self) -> u64 {
        let writes: usize = self.writes.iter().map(|w| w.write.bytes.len()).sum();
        let rewrite: usize = self
            .journal_rewrite
            .as_ref()
            .map_or(0, |r| HEADER_LEN + r.writes.iter().map(|w| w.bytes.len()).sum::<usize>());
        (writes + rewrite + self.creates.len() * HEADER_LEN) as u64
    }
}
