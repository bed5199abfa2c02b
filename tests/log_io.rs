//! The durable log on real files through glommio DMA: appends, durability, reopen.

mod support;

use support::readback::read_back_shard;
use support::{files_in, open, proof, run};
use tessera::log::RecordSeq;

#[test]
fn appended_records_are_durable_and_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shard-000");
    let d = dir.clone();
    let (seqs, counters) = run(move || async move {
        let (log, report) = open(&d, 1_000_000).await;
        assert_eq!(report.next_seq, 0);
        let mut seqs = Vec::new();
        for i in 0..100 {
            seqs.push(log.append(proof(i, 999_990 + 10 * (i / 50)).view(), 1_000_000 + i).unwrap());
        }
        assert_eq!(log.durable_through(), None);
        log.flush().await.unwrap();
        log.wait_durable(RecordSeq(99)).await.unwrap();
        let c = log.counters();
        log.close().await.unwrap();
        (seqs, c)
    });
    assert_eq!(seqs, (0..100).map(RecordSeq).collect::<Vec<_>>());
    assert_eq!((counters.records_durable, counters.segments_created), (100, 2));
    assert_eq!(
        files_in(&dir),
        [
            "seg-0000000000000000.log",
            "seg-0000000000000000.mbx",
            "seg-0000000000000001.log",
            "seg-0000000000000001.mbx",
            "subs-0000000000000000.journal"
        ]
    );
    let rb = read_back_shard(&dir).unwrap();
    assert_eq!(rb.records.len(), 100);
    assert_eq!(rb.records[42].proof, proof(42, 999_990));
    assert_eq!(rb.records[42].received_at_s, 1_000_042);

    let d = dir.clone();
    let (report, all, next) = run(move || async move {
        let (log, report) = open(&d, 1_000_005).await;
        let all = log.read_all().await.unwrap();
        let next = log.append(proof(1000, 1_000_000).view(), 1_000_200).unwrap();
        log.close().await.unwrap();
        (report, all, next)
    });
    assert_eq!((report.counters.recovery_records, report.counters.recovery_segments), (100, 2));
    assert_eq!((report.counters.recovery_torn_truncated, report.counters.recovery_corrupt_records), (0, 0));
    assert_eq!(report.next_seq, 100);
    // Dedup seed: windows from the previous one (999,990) on at now = 1,000,005: all 100 records.
    assert_eq!(report.live_commits.len(), 100);
    assert_eq!(report.live_commits[0], (999_990, *proof(0, 999_990).view().commit()));
    assert_eq!(all.len(), 100);
    assert_eq!(next, RecordSeq(100));
}
