//! Damage injected into real segment files: torn writes and bit flips are detected, truncated or skipped,
//! reported, and never served; recovery rebuilds dedup state, mailboxes and subscriptions.

mod support;

use std::path::{Path, PathBuf};

use support::readback::read_back_shard;
use support::{files_in, open, proof, run};
use tessera::log::{RecordSeq, SubscriberKey};

const NOW_S: u64 = 1_000_000;

/// File offset of slot `slot` in a segment (header block, then 7 records of 584 bytes per 4 KiB block).
fn slot_offset(slot: u64) -> usize {
    4096 + (slot / 7) as usize * 4096 + (slot % 7) as usize * 584
}

fn seg(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("seg-{n:016x}.log"))
}

/// Writes `n` records (each matched by subscriber 7 when `i % 5 == 0`) and closes the log.
fn populate(dir: &Path, n: u64) {
    let d = dir.to_path_buf();
    run(move || async move {
        let (log, _) = open(&d, NOW_S).await;
        for i in 0..n {
            let seq = log.append(proof(i, NOW_S - 10).view(), NOW_S + i).unwrap();
            if i % 5 == 0 {
                log.record_match(SubscriberKey([7; 16]), seq).unwrap();
            }
        }
        log.close().await.unwrap();
    });
}

fn patch(path: &Path, offset: usize, f: impl FnOnce(&mut [u8])) {
    let mut bytes = std::fs::read(path).unwrap();
    f(&mut bytes[offset..]);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn torn_tail_is_truncated_reported_and_the_log_continues_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    populate(&dir, 40);
    // A commit interrupted mid-write: record 39 half written, and garbage where record 40 would have gone.
    patch(&seg(&dir, 0), slot_offset(39) + 300, |b| b[..284].fill(0));
    patch(&seg(&dir, 0), slot_offset(40), |b| b[..100].fill(0xA7));

    let d = dir.clone();
    let (report, fetched, next, all) = run(move || async move {
        let (log, report) = open(&d, NOW_S + 50).await;
        let page = log.fetch(SubscriberKey([7; 16]), 0, 1, 100).await.unwrap();
        let next = log.append(proof(500, NOW_S).view(), NOW_S + 60).unwrap();
        log.flush().await.unwrap();
        let all = log.read_all().await.unwrap();
        log.close().await.unwrap();
        (report, page, next, all)
    });
    let c = report.counters;
    assert_eq!((c.recovery_records, c.recovery_torn_truncated, c.recovery_corrupt_records), (39, 2, 0));
    assert_eq!(c.recovery_bytes_zeroed, 4096, "the tail block rewritten: 4 valid records, zero after");
    assert_eq!(report.next_seq, 41, "seqs 39 and 40 held bytes: never reused");
    assert_eq!(next, RecordSeq(41));
    // Subscriber 7 matched 0, 5, ..., 35 (8 records); none of them was torn.
    assert_eq!(fetched.records.iter().map(|r| r.seq.0).collect::<Vec<_>>(), vec![0, 5, 10, 15, 20, 25, 30, 35]);
    assert_eq!(all.len(), 40);
    assert_eq!(all.last().unwrap().seq, RecordSeq(41));

    // The torn bytes are gone from disk; a second open finds a clean log.
    let rb = read_back_shard(&dir).unwrap();
    assert_eq!((rb.records.len(), rb.invalid_slots), (40, 0));
    let d = dir.clone();
    let report = run(move || async move { open(&d, NOW_S + 70).await.1 });
    assert_eq!(
        (report.counters.recovery_torn_truncated, report.counters.recovery_records, report.next_seq),
        (0, 40, 42)
    );
}

#[test]
fn bit_flips_in_the_middle_are_reported_skipped_and_never_served() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    // More than one commit's reach (STAGED_RECORDS_MAX + 7 slots) so that damage near the start cannot be
    // an interrupted commit: it is reported as corruption.
    populate(&dir, 4_300);
    // Flip one bit in record 5 (matched by subscriber 7) and one in record 12 (not matched).
    patch(&seg(&dir, 0), slot_offset(5) + 200, |b| b[0] ^= 0x08);
    patch(&seg(&dir, 0), slot_offset(12) + 20, |b| b[0] ^= 0x01);

    let d = dir.clone();
    let (report, page, all, counters) = run(move || async move {
        let (log, report) = open(&d, NOW_S + 100).await;
        let page = log.fetch(SubscriberKey([7; 16]), 0, 1, 10).await.unwrap();
        let all = log.read_all().await.unwrap();
        let c = log.counters();
        log.close().await.unwrap();
        (report, page, all, c)
    });
    let c = report.counters;
    assert_eq!(
        (c.recovery_records, c.recovery_corrupt_records, c.recovery_torn_holes, c.recovery_torn_truncated),
        (4_298, 2, 0, 0)
    );
    assert_eq!(report.corrupt_sample, vec![(0, 5), (0, 12)]);
    // The match for record 5 was dropped at recovery (it points at a corrupt record): never served.
    assert_eq!(c.recovery_matches_dangling, 1);
    assert_eq!(page.records.iter().map(|r| r.seq.0).collect::<Vec<_>>(), vec![0, 10, 15, 20, 25, 30, 35, 40, 45, 50]);
    assert!(page.more);
    assert!(all.iter().all(|r| r.seq != RecordSeq(5) && r.seq != RecordSeq(12)));
    assert_eq!(all.len(), 4_298);
    assert_eq!(report.next_seq, 4_300, "corruption in the middle does not move the end");
    assert_eq!(counters.fetch_records_served, 10);
}

#[test]
fn a_hole_within_the_last_commit_is_counted_torn_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    populate(&dir, 60);
    // An interrupted commit whose later sectors landed first: record 55 garbage, 56..59 intact.
    patch(&seg(&dir, 0), slot_offset(55) + 10, |b| b[..64].fill(0xEE));
    let d = dir.clone();
    let (report, page) = run(move || async move {
        let (log, report) = open(&d, NOW_S + 100).await;
        (report, log.fetch(SubscriberKey([7; 16]), 0, 1, 100).await.unwrap())
    });
    let c = report.counters;
    assert_eq!((c.recovery_records, c.recovery_torn_holes, c.recovery_corrupt_records), (59, 1, 0));
    assert_eq!(report.next_seq, 60);
    assert_eq!(page.records.last().unwrap().seq, RecordSeq(50), "the match for 55 is not served");
    assert_eq!(page.records.len(), 11);
}

#[test]
fn a_record_corrupted_after_open_is_skipped_by_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    populate(&dir, 20);
    let d = dir.clone();
    let page = run(move || async move {
        let (log, _) = open(&d, NOW_S + 100).await;
        // Damage record 10 on disk while the log is open: FETCH verifies after every read.
        patch(&seg(&d, 0), slot_offset(10) + 100, |b| b[0] ^= 0x40);
        let page = log.fetch(SubscriberKey([7; 16]), 0, 1, 100).await.unwrap();
        assert_eq!(log.counters().fetch_records_skipped_corrupt, 1);
        page
    });
    assert_eq!(page.records.iter().map(|r| r.seq.0).collect::<Vec<_>>(), vec![0, 5, 15]);
    assert_eq!(page.skipped, 1);
}

#[test]
fn recovery_rebuilds_dedup_state_for_live_windows_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let d = dir.clone();
    run(move || async move {
        let (log, _) = open(&d, NOW_S).await;
        for (i, window) in [(0, NOW_S - 30), (1, NOW_S - 20), (2, NOW_S - 10), (3, NOW_S), (4, NOW_S)] {
            log.append(proof(i, window).view(), NOW_S).unwrap();
        }
        log.close().await.unwrap();
    });
    let d = dir.clone();
    let report = run(move || async move { open(&d, NOW_S + 5).await.1 });
    // At now = NOW_S + 5 the live windows are NOW_S - 10 (previous) and NOW_S (current).
    let expected: Vec<(u64, [u8; 32])> =
        [(2, NOW_S - 10), (3, NOW_S), (4, NOW_S)].iter().map(|&(i, w)| (w, *proof(i, w).view().commit())).collect();
    assert_eq!(report.live_commits, expected);
}

#[test]
fn damaged_headers_are_set_aside_or_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    populate(&dir, 150); // segments 0, 1 (70 each) and 2 (10)
                         // A created file whose header never reached the disk and that holds nothing: removed.
    std::fs::write(seg(&dir, 3), vec![0u8; 8192]).unwrap();
    // The newest segment with data lost its header: quarantined, and its seqs are never reused.
    patch(&seg(&dir, 2), 0, |b| b[..4096].fill(0));
    // The oldest segment: a flipped bit in the header -> quarantined with its mailbox, not served.
    patch(&seg(&dir, 0), 40, |b| b[0] ^= 0x01);
    let d = dir.clone();
    let (report, all, next) = run(move || async move {
        let (log, report) = open(&d, NOW_S + 200).await;
        let all = log.read_all().await.unwrap();
        let next = log.append(proof(9_999, NOW_S).view(), NOW_S + 300).unwrap();
        log.close().await.unwrap();
        (report, all, next)
    });
    let c = report.counters;
    assert_eq!((c.recovery_files_quarantined, c.recovery_files_removed), (4, 1));
    assert_eq!((c.recovery_segments, c.recovery_records), (1, 70));
    assert_eq!((all.first().unwrap().seq, all.len()), (RecordSeq(70), 70));
    assert_eq!(report.next_seq, 150, "seqs 140..150 exist in the quarantined file");
    assert_eq!(next, RecordSeq(150));
    let names = files_in(&dir);
    for expected in
        ["seg-0000000000000000.log.corrupt", "seg-0000000000000000.mbx.corrupt", "seg-0000000000000002.log.corrupt"]
    {
        assert!(names.contains(&expected.to_string()), "{names:?}");
    }
    assert!(!names.contains(&"seg-0000000000000003.log".to_string()), "{names:?}");
    // The new record went to a new segment (next file seq after the last readable one) starting at seq 150.
    assert!(names.contains(&"seg-0000000000000002.log".to_string()), "{names:?}");
    let rb = read_back_shard(&dir).unwrap();
    assert_eq!(rb.records.iter().map(|r| r.seq.0).max(), Some(150));
}

#[test]
fn a_log_of_another_shard_layout_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    populate(&dir, 3);
    let d = dir.clone();
    let err = run(move || async move {
        let mut cfg = support::config(&d);
        cfg.log.shard = tessera::log::ShardParams::for_shard(0, 2, 64, 10);
        tessera::driver::relay::log_io::ShardLog::open(cfg, NOW_S).await.err().unwrap().to_string()
    });
    assert!(err.contains("written for"), "{err}");
}
