//! FETCH cursors across restarts, persisted subscriptions, and retention on real files.

mod support;

use support::{files_in, open, proof, run};
use tessera::driver::relay::log_io::ShardLog;
use tessera::log::{RecordSeq, SubscriberKey};
use tessera::proto::bloom::{BloomFilter, BloomParams};
use tessera::proto::frame::{SubscribeEntry, SubscriberId};

const NOW_S: u64 = 1_000_000;

fn entry(bucket: u16) -> SubscribeEntry {
    let mut filter = BloomFilter::new(BloomParams::default());
    filter.insert_fingerprint(&[bucket as u8; 8]);
    SubscribeEntry { bucket, window_from_s: NOW_S, window_to_s: NOW_S + 3_600, filter }
}

fn seqs(page: &tessera::driver::relay::log_io::FetchPage) -> Vec<u64> {
    page.records.iter().map(|r| r.seq.0).collect()
}

#[test]
fn fetch_cursor_semantics_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let key = SubscriberKey::of(&SubscriberId([0x5A; 16]));
    let other = SubscriberKey::of(&SubscriberId([0x5B; 16]));
    let d = dir.clone();
    let (p1, p2) = run(move || async move {
        let (log, _) = open(&d, NOW_S).await;
        log.subscribe(key, &[entry(3), entry(9)]).unwrap();
        for i in 0..30 {
            let seq = log.append(proof(i, NOW_S).view(), NOW_S + i).unwrap();
            if i % 5 == 0 || i == 29 {
                log.record_match(key, seq).unwrap(); // 0, 5, 10, 15, 20, 25, 29
            }
            if i % 2 == 1 {
                log.record_match(other, seq).unwrap();
            }
        }
        log.flush().await.unwrap();
        let p1 = log.fetch(key, 0, 101, 3).await.unwrap();
        let p2 = log.fetch(key, p1.next_cursor, 102, 3).await.unwrap();
        log.close().await.unwrap();
        (p1, p2)
    });
    assert_eq!((seqs(&p1), p1.next_cursor, p1.more), (vec![0, 5, 10], 101, true));
    assert_eq!((seqs(&p2), p2.next_cursor, p2.more), (vec![15, 20, 25], 102, true));
    assert_eq!(p1.records[1].proof, proof(5, NOW_S));

    // Restart between two fetches: the cursor, the subscription and the mailbox come back from disk.
    let d = dir.clone();
    let (subs, p3, retry, p4, all, other_all) = run(move || async move {
        let (log, report) = open(&d, NOW_S + 100).await;
        assert_eq!(report.counters.recovery_subscribers, 1, "the subscriber with entries and a cursor");
        let subs = log.subscriptions();
        let p3 = log.fetch(key, 102, 103, 3).await.unwrap();
        let retry = log.fetch(key, 102, 104, 3).await.unwrap(); // reply with 103 lost: ask again
        let p4 = log.fetch(key, 104, 105, 3).await.unwrap();
        let all = log.fetch(key, 0, 106, 100).await.unwrap(); // cursor 0: from the oldest retained
        let other_all = log.fetch(other, 0, 1, 1_000).await.unwrap();
        log.close().await.unwrap();
        (subs, p3, retry, p4, all, other_all)
    });
    let mine = subs.iter().find(|(k, _)| *k == key).expect("subscription restored");
    assert_eq!(mine.1.entries, vec![entry(3), entry(9)]);
    assert_eq!((seqs(&p3), p3.next_cursor, p3.more), (vec![29], 103, false));
    assert_eq!((seqs(&retry), retry.next_cursor), (vec![29], 104), "the previous token replays its page");
    assert_eq!((seqs(&p4), p4.next_cursor, p4.more), (vec![], 104, false), "caught up: the cursor stays");
    assert_eq!(seqs(&all), vec![0, 5, 10, 15, 20, 25, 29]);
    assert_eq!(seqs(&other_all), (0..30).filter(|i| i % 2 == 1).collect::<Vec<_>>(), "cost ∝ own matches only");
}

#[test]
fn an_unsubscribe_survives_restart_and_a_torn_journal_keeps_the_previous_subscription() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let (a, b) = (SubscriberKey([1; 16]), SubscriberKey([2; 16]));
    let d = dir.clone();
    run(move || async move {
        let (log, _) = open(&d, NOW_S).await;
        log.subscribe(a, &[entry(1)]).unwrap();
        log.subscribe(b, &[entry(2)]).unwrap();
        log.flush().await.unwrap();
        log.subscribe(a, &[]).unwrap(); // a clears its entries
        log.subscribe(b, &[entry(4), entry(5)]).unwrap(); // b replaces: will be torn below
        log.close().await.unwrap();
    });
    // Tear the last journal record (b's second entry): 256-byte records after the 4 KiB header.
    let journal = dir.join("subs-0000000000000000.journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[4096 + 4 * 256 + 100] ^= 0xFF;
    std::fs::write(&journal, bytes).unwrap();
    let d = dir.clone();
    let (subs, report) = run(move || async move {
        let (log, report) = open(&d, NOW_S).await;
        (log.subscriptions(), report)
    });
    assert_eq!(report.counters.recovery_journal_incomplete, 1);
    let get = |k| subs.iter().find(|(key, _)| *key == k).map(|(_, s)| s.entries.clone());
    assert_eq!(get(a), Some(vec![]));
    assert_eq!(get(b), Some(vec![entry(2)]), "the torn replacement is ignored as a whole");
}

#[test]
fn journal_compaction_keeps_the_live_subscriptions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let key = SubscriberKey([3; 16]);
    let d = dir.clone();
    let compactions = run(move || async move {
        let (log, _) = open(&d, NOW_S).await;
        log.flush().await.unwrap();
        for i in 0..5_000u16 {
            log.subscribe(key, &[entry(i % 64)]).unwrap();
        }
        log.flush().await.unwrap();
        let c = log.counters().journal_compactions;
        log.close().await.unwrap();
        c
    });
    assert_eq!(compactions, 1);
    let journals: Vec<String> = files_in(&dir).into_iter().filter(|n| n.starts_with("subs-")).collect();
    assert_eq!(journals, vec!["subs-0000000000000001.journal"]);
    let d = dir.clone();
    let subs = run(move || async move { open(&d, NOW_S).await.0.subscriptions() });
    assert_eq!(subs, vec![(key, subs[0].1.clone())]);
    assert_eq!(subs[0].1.entries, vec![entry(4_999 % 64)]);
}

#[test]
fn retention_deletes_what_is_past_the_horizon_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let key = SubscriberKey([9; 16]);
    let cfg = |dir: &std::path::Path| {
        let mut c = support::config(dir);
        c.log = c.log.with_retention_s(800); // segments roll every 100 s of age
        c
    };
    let d = dir.clone();
    let c = cfg(&dir);
    let outcome = run(move || async move {
        let (log, _) = ShardLog::open(c, 1_000).await.unwrap();
        // 10 records at each of t = 1000, 1100, 1200, 1300 -> four segments (rolled by age).
        for (n, t) in [1_000u64, 1_100, 1_200, 1_300].into_iter().enumerate() {
            for i in 0..10 {
                let seq = log.append(proof(n as u64 * 10 + i, t).view(), t).unwrap();
                if i == 0 {
                    log.record_match(key, seq).unwrap();
                }
            }
            log.flush().await.unwrap();
        }
        let before = files_in(&d);
        // 1999: segments 0 (newest 1000) and 1 (newest 1100) are past 800 s; 2 (1200) is not.
        let r1 = log.apply_retention(1_999).await.unwrap();
        let after1 = files_in(&d);
        let page = log.fetch(key, 0, 7, 100).await.unwrap();
        let all = log.read_all().await.unwrap();
        let r2 = log.apply_retention(1_999).await.unwrap();
        let r3 = log.apply_retention(2_000).await.unwrap(); // 1200 + 800: inclusive
                                                            // Everything expired: the active segment rolls (an empty one keeps the seq), then goes.
        let r4 = log.apply_retention(2_100).await.unwrap();
        let after4 = files_in(&d);
        let next = log.append(proof(99, 2_100).view(), 2_100).unwrap();
        let counters = log.counters();
        log.close().await.unwrap();
        (before, r1, after1, page, all, r2, r3, r4, after4, next, counters)
    });
    let (before, r1, after1, page, all, r2, r3, r4, after4, next, counters) = outcome;
    assert_eq!(before.len(), 9, "4 segments × (.log + .mbx) + journal: {before:?}");
    assert_eq!((r1.segments_deleted, r1.oldest_retained_seq, r1.rolled), (2, RecordSeq(20), false));
    let gone = [
        "seg-0000000000000000.log",
        "seg-0000000000000000.mbx",
        "seg-0000000000000001.log",
        "seg-0000000000000001.mbx",
    ];
    let expected: Vec<String> = before.iter().filter(|n| !gone.contains(&n.as_str())).cloned().collect();
    assert_eq!(after1, expected, "exactly the expired segments and their match records");
    assert_eq!(page.records.iter().map(|r| r.seq.0).collect::<Vec<_>>(), vec![20, 30]);
    assert_eq!(all.first().unwrap().seq, RecordSeq(20));
    assert_eq!(all.len(), 20);
    assert_eq!(r2.segments_deleted, 0, "nothing else is past the horizon");
    assert_eq!((r3.segments_deleted, r3.oldest_retained_seq), (1, RecordSeq(30)));
    assert_eq!((r4.segments_deleted, r4.rolled, r4.oldest_retained_seq), (1, true, RecordSeq(40)));
    assert_eq!(after4, vec!["seg-0000000000000004.log", "seg-0000000000000004.mbx", "subs-0000000000000000.journal"]);
    assert_eq!(next, RecordSeq(40), "seqs continue after everything expired");
    assert_eq!((counters.segments_deleted, counters.records_deleted, counters.match_records_deleted), (4, 40, 4));
    assert_eq!(counters.mailbox_entries, 0);

    // After a restart the log still continues from seq 41.
    let c = cfg(&dir);
    let report = run(move || async move { ShardLog::open(c, 2_200).await.unwrap().1 });
    assert_eq!((report.next_seq, report.counters.recovery_records), (41, 1));
}

#[test]
fn the_committer_groups_concurrent_appends_and_acks_only_durable_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let d = dir.clone();
    let (counters, acked) = run(move || async move {
        let (log, _) = open(&d, NOW_S).await;
        let committer = glommio::spawn_local(log.clone().run_committer());
        let publishers: Vec<_> = (0..4u64)
            .map(|p| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    let mut acked = 0;
                    for batch in 0..10u64 {
                        let mut last = RecordSeq(0);
                        for i in 0..25u64 {
                            last = log.append(proof(p * 1_000 + batch * 25 + i, NOW_S).view(), NOW_S).unwrap();
                        }
                        log.wait_durable(last).await.unwrap();
                        assert!(log.durable_through().unwrap() >= last, "an ACK only after durability");
                        acked += 25;
                    }
                    acked
                })
            })
            .collect();
        let mut acked = 0;
        for p in publishers {
            acked += p.await;
        }
        let counters = log.counters();
        log.clone().close().await.unwrap();
        committer.await.unwrap();
        (counters, acked)
    });
    assert_eq!(acked, 1_000);
    assert_eq!(counters.records_durable, 1_000);
    assert!(counters.commits < 200, "group commit batched 1,000 records into {} commits", counters.commits);
    assert!(counters.fdatasyncs >= counters.commits);
}
