//! Plain counters of one shard's log, for the server to publish as metrics (`tessera_log_<field>`).
//!
//! Everything is a running total since the log was opened, except the fields marked "gauge".

/// Counters of one shard's log. `recovery_*` fields are set once at open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogCounters {
    /// Proofs appended (staged).
    pub records_appended: u64,
    /// Proofs made durable by completed commits.
    pub records_durable: u64,
    /// Match records staged.
    pub matches_recorded: u64,
    /// Matches recorded after their proof's commit had started (they ride in a later commit).
    pub matches_late: u64,
    /// Completed commits (each one write batch + fdatasync of every touched file).
    pub commits: u64,
    /// Failed commits (the log is then poisoned).
    pub commits_failed: u64,
    /// Storage stalls begun: a commit failed for want of space or descriptors and was parked (docs/STORAGE.md §2).
    pub storage_stalls: u64,
    /// Commit attempts that failed for want of space or descriptors (the first of each stall included).
    pub storage_stall_failures: u64,
    /// Parked commits executed again.
    pub storage_retries: u64,
    /// Gauge: 1 while the log is stalled (PUBLISH refused with ERROR(STORAGE)), else 0.
    pub storage_stalled: u64,
    /// fdatasync calls issued (files × commits, plus directory syncs).
    pub fdatasyncs: u64,
    /// Bytes written by commits.
    pub bytes_written: u64,
    /// Segments created.
    pub segments_created: u64,
    /// Segments deleted by retention.
    pub segments_deleted: u64,
    /// Proof records in deleted segments.
    pub records_deleted: u64,
    /// Match records in deleted mailbox files.
    pub match_records_deleted: u64,
    /// Mailbox entries dropped because a subscriber's mailbox was full.
    pub mailbox_evicted: u64,
    /// Subscription entries dropped after their last window passed.
    pub subscription_entries_expired: u64,
    /// Journal compactions.
    pub journal_compactions: u64,
    /// FETCH requests planned.
    pub fetches: u64,
    /// Proofs returned by FETCH.
    pub fetch_records_served: u64,
    /// Records a FETCH read that failed verification (skipped, never served).
    pub fetch_records_skipped_corrupt: u64,
    /// Gauge: segments on disk.
    pub segments: u64,
    /// Gauge: mailbox entries held.
    pub mailbox_entries: u64,
    /// Gauge: subscribers known (persisted).
    pub subscribers: u64,
    /// Gauge: records staged, not yet taken by a commit.
    pub staged_records: u64,
    /// Recovery: segments opened.
    pub recovery_segments: u64,
    /// Recovery: valid proof records found.
    pub recovery_records: u64,
    /// Recovery: torn records after the end, truncated (zeroed).
    pub recovery_torn_truncated: u64,
    /// Recovery: invalid records within one commit before the end (an interrupted commit), skipped.
    pub recovery_torn_holes: u64,
    /// Recovery: invalid records further back (corruption), skipped and never served.
    pub recovery_corrupt_records: u64,
    /// Recovery: valid match records found.
    pub recovery_matches: u64,
    /// Recovery: invalid match records (torn or corrupt), skipped.
    pub recovery_matches_invalid: u64,
    /// Recovery: match records pointing at a record that is not valid (dropped).
    pub recovery_matches_dangling: u64,
    /// Recovery: subscribers restored.
    pub recovery_subscribers: u64,
    /// Recovery: journal generations ignored because torn.
    pub recovery_journal_incomplete: u64,
    /// Recovery: bytes rewritten to truncate torn tails.
    pub recovery_bytes_zeroed: u64,
    /// Recovery: files with an unreadable header, renamed to `*.corrupt` and not served.
    pub recovery_files_quarantined: u64,
    /// Recovery: unfinished files (a creation interrupted before anything in them was acknowledged), removed.
    pub recovery_files_removed: u64,
}

impl LogCounters {
    /// `(metric name, value)` pairs in a stable order, for the metrics endpoint.
    pub fn fields(&self) -> [(&'static str, u64); 39] {
        [
            ("records_appended", self.records_appended),
            ("records_durable", self.records_durable),
            ("matches_recorded", self.matches_recorded),
            ("matches_late", self.matches_late),
            ("commits", self.commits),
            ("commits_failed", self.commits_failed),
            ("storage_stalls", self.storage_stalls),
            ("storage_stall_failures", self.storage_stall_failures),
            ("storage_retries", self.storage_retries),
            ("storage_stalled", self.storage_stalled),
            ("fdatasyncs", self.fdatasyncs),
            ("bytes_written", self.bytes_written),
            ("segments_created", self.segments_created),
            ("segments_deleted", self.segments_deleted),
            ("records_deleted", self.records_deleted),
            ("match_records_deleted", self.match_records_deleted),
            ("mailbox_evicted", self.mailbox_evicted),
            ("subscription_entries_expired", self.subscription_entries_expired),
            ("journal_compactions", self.journal_compactions),
            ("fetches", self.fetches),
            ("fetch_records_served", self.fetch_records_served),
            ("fetch_records_skipped_corrupt", self.fetch_records_skipped_corrupt),
            ("segments", self.segments),
            ("mailbox_entries", self.mailbox_entries),
            ("subscribers", self.subscribers),
            ("staged_records", self.staged_records),
            ("recovery_segments", self.recovery_segments),
            ("recovery_records", self.recovery_records),
            ("recovery_torn_truncated", self.recovery_torn_truncated),
            ("recovery_torn_holes", self.recovery_torn_holes),
            ("recovery_corrupt_records", self.recovery_corrupt_records),
            ("recovery_matches", self.recovery_matches),
            ("recovery_matches_invalid", self.recovery_matches_invalid),
            ("recovery_matches_dangling", self.recovery_matches_dangling),
            ("recovery_subscribers", self.recovery_subscribers),
            ("recovery_journal_incomplete", self.recovery_journal_incomplete),
            ("recovery_bytes_zeroed", self.recovery_bytes_zeroed),
            ("recovery_files_quarantined", self.recovery_files_quarantined),
            ("recovery_files_removed", self.recovery_files_removed),
        ]
    }
}
