//! The standalone log on a full tmpfs (docs/STORAGE.md §2, storage stalls): a commit whose segment creation
//! fails with ENOSPC is parked, not acknowledged and not fatal; once space returns the committer's retry
//! creates the segment afresh and the records become durable, and a reopen recovers every one of them.

mod support;
#[path = "support/tmpfs.rs"]
mod tmpfs;

use std::time::Duration;

use support::{open, proof, run};
use tessera::log::RecordSeq;
use tmpfs::{fill, tmpfs_or_skip};

/// Polls `done` every 10 ms for at most 10 s.
async fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..1_000 {
        if done() {
            return true;
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    done()
}

#[test]
fn a_segment_creation_that_hits_enospc_is_retried_and_nothing_is_lost() {
    let Some(fs) = tmpfs_or_skip(1) else { return };
    let dir = fs.path().join("shard-000");
    let filler = fs.path().join("filler");
    let (d, f) = (dir.clone(), filler.clone());
    let counters = run(move || async move {
        let (log, _) = open(&d, 1_000_000).await;
        glommio::spawn_local(log.clone().run_committer()).detach();
        // Segment 0 takes its 70 records (the test config's segment size); durable.
        for i in 0..70 {
            log.append(proof(i, 999_990).view(), 1_000_000).unwrap();
        }
        log.wait_durable(RecordSeq(69)).await.unwrap();
        // The disk fills up; the next records need segment 1, whose header cannot be written.
        fill(&f);
        for i in 70..80 {
            log.append(proof(i, 999_990).view(), 1_000_001).unwrap();
        }
        let ticket = log.ticket();
        assert!(eventually(|| log.is_stalled()).await, "the commit stalls instead of failing");
        assert!(!log.is_ticket_durable(ticket));
        assert_eq!(log.durable_through(), Some(RecordSeq(69)), "nothing of the parked commit is durable");
        let seg1 = std::fs::metadata(d.join("seg-0000000000000001.log")).expect("the failed attempt created it");
        assert!(seg1.len() < 4096, "its header write failed: {} bytes", seg1.len());
        let flushed = log.flush().await;
        assert!(flushed.as_ref().is_err_and(|e| e.is_recoverable()), "flush fails fast: {flushed:?}");
        glommio::timer::sleep(Duration::from_millis(400)).await; // a few retries against the full disk
        assert!(log.is_stalled());
        // Space returns: the next retry creates segment 1 afresh and commits.
        std::fs::remove_file(&f).unwrap();
        let waited = futures_lite::future::or(async { Some(log.wait_ticket(ticket).await) }, async {
            glommio::timer::sleep(Duration::from_secs(10)).await;
            None
        })
        .await;
        assert!(matches!(waited, Some(Ok(()))), "durable once space returns: {waited:?}");
        assert_eq!(log.durable_through(), Some(RecordSeq(79)));
        assert!(!log.is_stalled());
        let c = log.counters();
        log.close().await.unwrap();
        c
    });
    assert_eq!((counters.storage_stalls, counters.commits_failed), (1, 0));
    assert!(counters.storage_stall_failures >= 2 && counters.storage_retries >= 2, "{counters:?}");
    assert_eq!(counters.storage_stalled, 0);

    let d = dir.clone();
    let (report, all) = run(move || async move {
        let (log, report) = open(&d, 1_000_005).await;
        let all = log.read_all().await.unwrap();
        log.close().await.unwrap();
        (report, all)
    });
    assert_eq!(all.len(), 80, "every record is back after a reopen");
    assert_eq!(all[75].proof, proof(75, 999_990));
    assert_eq!(report.counters.recovery_files_quarantined, 0);
    drop(fs);
}
