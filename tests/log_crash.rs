//! Crash consistency of the log itself: a child process appends with acknowledgements (printing each seq only
//! after `wait_durable` returned) and is killed with SIGKILL at random moments; after every kill the parent
//! checks that every acknowledged record is on disk, intact, and that the next open recovers and continues.
//! (The end-to-end version with the relay binary belongs to the server's tests; this one isolates the log.)
//!
//! The child is this same test binary, re-run with `TESSERA_CRASH_CHILD_DIR` set.
//! A longer soak: `TESSERA_CRASH_CYCLES=500 cargo test --test log_crash -- --nocapture`.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use support::readback::read_back_shard;
use tessera::driver::relay::log_io::ShardLog;
use tessera::log::SubscriberKey;

const CHILD_ENV: &str = "TESSERA_CRASH_CHILD_DIR";

/// Segments of 3,584 records (512 blocks): a few rolls over the run, without hundreds of tiny files.
fn config(dir: &std::path::Path) -> tessera::driver::relay::log_io::LogIoConfig {
    let mut c = support::config(dir);
    c.log.segment_records_max = 7 * 512;
    c
}

/// The child: append batches of 16 forever, printing `ACK <seq> <id>` once each batch is durable.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = std::path::PathBuf::from(dir);
    let id_base: u64 = std::process::id() as u64 * 1_000_000_000;
    support::run(move || async move {
        let (log, _) = ShardLog::open(config(&dir), 1_000_000).await.expect("child opens the log");
        glommio::spawn_local(log.clone().run_committer()).detach();
        let mut id = id_base;
        loop {
            let mut batch = Vec::new();
            for _ in 0..16 {
                id += 1;
                let seq = log.append(support::proof(id, 1_000_000).view(), 1_000_000).unwrap();
                if id.is_multiple_of(3) {
                    log.record_match(SubscriberKey([3; 16]), seq).unwrap();
                }
                batch.push((seq, id));
            }
            log.wait_durable(batch.last().unwrap().0).await.unwrap();
            let mut out = String::new();
            for (seq, id) in batch {
                out.push_str(&format!("ACK {} {}\n", seq.0, id));
            }
            print!("{out}");
        }
    });
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let cycles: u32 = std::env::var("TESSERA_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shard-000");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x07E5_5E7A);
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let exe = std::env::current_exe().unwrap();
    for cycle in 0..cycles {
        let t_cycle = Instant::now();
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill at a random moment once the child has acknowledged something (or after a timeout).
        let kill_after = Duration::from_millis(rng.gen_range(5..100));
        let start = Instant::now();
        let mut first_ack: Option<Instant> = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("ACK ") {
                        let mut it = rest.split(' ').map(|x| x.parse::<u64>().unwrap());
                        let (seq, id) = (it.next().unwrap(), it.next().unwrap());
                        assert!(acked.insert(seq, id).is_none(), "seq {seq} acknowledged twice");
                        first_ack.get_or_insert_with(Instant::now);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("child exited early (cycle {cycle})"),
            }
            let due = first_ack.is_some_and(|t| t.elapsed() >= kill_after);
            if due || start.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        // std's Child::kill sends SIGKILL on Unix: no chance to flush or clean up.
        child.kill().unwrap();
        child.wait().unwrap();
        // Lines the child printed before dying were acknowledged too.
        reader.join().unwrap();
        while let Ok(line) = rx.try_recv() {
            if let Some(rest) = line.strip_prefix("ACK ") {
                let mut it = rest.split(' ').map(|x| x.parse::<u64>().unwrap());
                acked.insert(it.next().unwrap(), it.next().unwrap());
            }
        }
        assert!(first_ack.is_some(), "cycle {cycle}: the child acknowledged nothing within 20 s");

        // Everything acknowledged so far is on disk, intact, with its proof.
        let rb = read_back_shard(&dir).unwrap();
        let on_disk: BTreeMap<u64, &tessera::log::LogRecord> = rb.records.iter().map(|r| (r.seq.0, r)).collect();
        for (&seq, &id) in &acked {
            let r = on_disk.get(&seq).unwrap_or_else(|| panic!("cycle {cycle}: acknowledged seq {seq} lost"));
            assert_eq!(r.proof, support::proof(id, 1_000_000), "cycle {cycle}: seq {seq} holds another proof");
        }
        eprintln!("cycle {cycle}: {} acknowledged so far, {:?}", acked.len(), t_cycle.elapsed());
    }
    // A final open recovers, keeps every acknowledged record, and serves the matches among them.
    let total = acked.len();
    let d = dir.clone();
    let (all, fetched) = support::run(move || async move {
        let (log, _) = ShardLog::open(config(&d), 1_000_000).await.unwrap();
        let all = log.read_all().await.unwrap();
        let mut fetched = Vec::new();
        let (mut cursor, mut token) = (0u64, 1u64);
        loop {
            let page = log.fetch(SubscriberKey([3; 16]), cursor, token, 1_024).await.unwrap();
            fetched.extend(page.records.iter().map(|r| r.seq.0));
            cursor = page.next_cursor;
            token += 1;
            if !page.more {
                break;
            }
        }
        log.close().await.unwrap();
        (all, fetched)
    });
    let present: std::collections::BTreeSet<u64> = all.iter().map(|r| r.seq.0).collect();
    assert!(acked.keys().all(|s| present.contains(s)), "every acknowledged record survives {cycles} kills");
    let fetched: std::collections::BTreeSet<u64> = fetched.into_iter().collect();
    let expected: Vec<u64> = acked.iter().filter(|(_, id)| *id % 3 == 0).map(|(s, _)| *s).collect();
    assert!(expected.iter().all(|s| fetched.contains(s)), "every acknowledged match is fetchable");
    assert!(total >= cycles as usize * 16, "{total} acknowledged over {cycles} cycles");
}
