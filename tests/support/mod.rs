//! Shared helpers for the log tests: a small glommio executor, proofs, a test configuration, and [`readback`]
//! (a blocking read of a shard directory).
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;

use tessera::driver::relay::log_io::{LogIoConfig, ShardLog};
use tessera::log::{LogConfig, RecoveryReport, ShardParams};
use tessera::proto::derive::{bucket_of, fingerprint};
use tessera::proto::params::CIPHERTEXT_LEN;
use tessera::proto::proof::Proof;

pub mod readback;

/// glommio registers `io_memory` with io_uring and that memory counts against RLIMIT_MEMLOCK (8 MiB here);
/// 1 MiB is plenty for the tests' DMA buffers (larger ones fall back to the heap).
pub const IO_MEMORY_BYTES: usize = 1 << 20;

/// Runs `f` on a fresh single-threaded glommio executor and returns its output.
pub fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(IO_MEMORY_BYTES)
        .spawn(f)
        .expect("executor starts")
        .join()
        .expect("executor finishes")
}

/// A proof with a real derivation (bucket and fingerprint from the commit) in window `window_s`.
pub fn proof(i: u64, window_s: u64) -> Proof {
    let mut commit = [0u8; 32];
    commit[..8].copy_from_slice(&i.to_be_bytes());
    commit[8] = 0xC0;
    Proof::new(
        bucket_of(&commit, 64),
        window_s,
        &commit,
        &fingerprint(&commit, window_s),
        &[(i % 251) as u8; CIPHERTEXT_LEN],
    )
}

/// A one-shard log with small segments (70 records = 10 blocks) so tests cross segment boundaries.
pub fn config(dir: &Path) -> LogIoConfig {
    let mut log = LogConfig::new(ShardParams::for_shard(0, 1, 64, 10));
    log.segment_records_max = 70;
    LogIoConfig { dir: dir.to_path_buf(), log, dedup_skew_windows: 0 }
}

/// Opens the log at wall-clock `now_s`.
pub async fn open(dir: &Path, now_s: u64) -> (ShardLog, RecoveryReport) {
    ShardLog::open(config(dir), now_s).await.expect("log opens")
}

/// Names of the files in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}
