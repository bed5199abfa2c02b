//! Admission of accepted sockets on top of `handshakes_max`: per-source-address limits and the file
//! descriptors kept for the log.
//!
//! ```text
//! accept ─▶ ShardCtx::accept_socket ─▶ FdBudget::try_take  (sockets + other fds + reserve < RLIMIT_NOFILE?)
//!                                   ─▶ SourceCounts::try_take (this address's sockets < its limit?)
//!                                   ─▶ handshakes_max          ─▶ served; every place given back on drop
//!          any refusal ─▶ the socket is closed at once (nothing read or written), counted, logged once per burst
//! shard tick ─▶ FdBudget::set_log_files(shard, 2 × segments + 1)      (what the log holds open now)
//! start-up   ─▶ raise_nofile_limit; once listening, FdBudget::calibrate(descriptors open then)
//! ```
//! Why a reserve: the log opens a segment and a mailbox at every roll, a temporary journal at compaction and
//! the directory at every sync; if sockets took the last descriptors, that open would fail (EMFILE) and a
//! failed commit stops the relay. Sockets are refused instead, well before the limit: the reserve is what the
//! log holds open now plus a headroom per shard for what it may open next.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Descriptors a shard's log may open beyond those it holds: a new segment and its mailbox, a temporary
/// journal, the directory for its sync, and a spare; plus the socket an accept takes before it is refused.
pub const LOG_FD_HEADROOM_PER_SHARD: u64 = 8;
/// Descriptors kept free besides, process-wide (the logging sink, a panic's backtrace, `/proc` reads).
pub const FD_MARGIN: u64 = 16;
/// A refusal is logged at most this often per shard (with the count of those in between): a flood of
/// refusals must not become a flood of log lines.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Whom a source-address limit counts: one IPv4 address, one IPv6 /64 (what a single host can use freely),
/// or every loopback source together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    /// 127.0.0.0/8 or ::1 (a local proxy, the load generator, tests).
    Loopback,
    /// An IPv4 address (IPv4-mapped IPv6 included).
    V4(u32),
    /// The /64 prefix of an IPv6 address.
    V6Prefix(u64),
}

impl SourceKey {
    /// The key of a peer address.
    pub fn of(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match ip {
            _ if ip.is_loopback() => SourceKey::Loopback,
            IpAddr::V4(v4) => SourceKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => SourceKey::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

/// Sockets open per source, all shards together (a lock taken twice per connection, never per message).
#[derive(Debug)]
pub struct SourceCounts {
    counts: Mutex<HashMap<SourceKey, u32>>,
    per_ip_max: u32,
    per_loopback_max: u32,
}

impl SourceCounts {
    /// Counts with these limits (`connections_per_ip_max`, `connections_per_loopback_max`).
    pub fn new(per_ip_max: u32, per_loopback_max: u32) -> Self {
        Self { counts: Mutex::new(HashMap::new()), per_ip_max, per_loopback_max }
    }

    /// Takes a place for `key`; `false` when it already holds its limit.
    pub fn try_take(&self, key: SourceKey) -> bool {
        let max = if key == SourceKey::Loopback { self.per_loopback_max } else { self.per_ip_max };
        // A poisoned lock means a panic mid-update of a counter map: the counts are still usable.
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key).or_insert(0);
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    /// Gives back a place taken by [`try_take`](Self::try_take); the entry goes with its last place, so the
    /// map holds only sources with open sockets.
    pub fn give_back(&self, key: SourceKey) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&key);
            }
        }
    }

    /// Sources with at least one open socket.
    pub fn sources(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The process's file descriptors as the accept path sees them: sockets it counts exactly, the log's files as
/// each shard last reported them, and everything else as measured once the relay listened.
#[derive(Debug)]
pub struct FdBudget {
    /// RLIMIT_NOFILE (soft) after start-up raised it.
    nofile: u64,
    /// Accepted sockets open (both listeners, all shards).
    sockets: AtomicU32,
    /// Descriptors that are neither accepted sockets nor log files (executors, listeners, stdio, the lock).
    other: AtomicU64,
    /// Per shard: log files open (2 × segments + the journal).
    log_files: Box<[AtomicU64]>,
    /// `LOG_FD_HEADROOM_PER_SHARD × shards + FD_MARGIN`.
    headroom: u64,
}

impl FdBudget {
    /// A budget under `nofile` for `shards` shards; `other` starts at a guess until [`calibrate`](Self::calibrate).
    pub fn new(nofile: u64, shards: usize) -> Self {
        Self {
            nofile,
            sockets: AtomicU32::new(0),
            other: AtomicU64::new(32 + 16 * shards as u64),
            log_files: (0..shards).map(|_| AtomicU64::new(1)).collect(),
            headroom: LOG_FD_HEADROOM_PER_SHARD * shards as u64 + FD_MARGIN,
        }
    }

    /// Records what shard `shard`'s log holds open now.
    pub fn set_log_files(&self, shard: usize, files: u64) {
        if let Some(slot) = self.log_files.get(shard) {
            slot.store(files, Ordering::Relaxed);
        }
    }

    /// Measures the descriptors that are neither sockets nor log files from `open_now`, the process's count.
    pub fn calibrate(&self, open_now: u64) {
        let known = u64::from(self.sockets.load(Ordering::Relaxed)) + self.log_files_open();
        self.other.store(open_now.saturating_sub(known), Ordering::Relaxed);
    }

    fn log_files_open(&self) -> u64 {
        self.log_files.iter().map(|f| f.load(Ordering::Relaxed)).sum()
    }

    /// The most accepted sockets that fit now, keeping the reserve.
    pub fn sockets_max(&self) -> u64 {
        let reserved = self.other.load(Ordering::Relaxed) + self.log_files_open() + self.headroom;
        self.nofile.saturating_sub(reserved)
    }

    /// Takes a descriptor for an accepted socket; `false` when that would eat into the reserve (relaxed: shards
    /// accepting at the same instant may pass it by one each, which the per-shard headroom covers).
    pub fn try_take(&self) -> bool {
        let open = u64::from(self.sockets.fetch_add(1, Ordering::Relaxed)) + 1;
        if open > self.sockets_max() {
            self.sockets.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Gives back a socket's descriptor.
    pub fn give_back(&self) {
        self.sockets.fetch_sub(1, Ordering::Relaxed);
    }

    /// RLIMIT_NOFILE as the relay runs under it.
    pub fn nofile(&self) -> u64 {
        self.nofile
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (the default soft limit, 1,024 on most systems, is far
/// below `connections_max`); returns the soft limit the relay then runs under.
pub fn raise_nofile_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads one rlimit struct we own; raising the soft limit up to the hard one is allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    limit.rlim_cur
}

/// Descriptors the process has open now (`/proc/self/fd`); `None` where that cannot be read.
pub fn open_fds() -> Option<u64> {
    // The directory listing itself holds one descriptor while it is read.
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count().saturating_sub(1) as u64)
}

/// "Logged once per burst": the first refusal after a quiet period is logged at once, later ones are counted
/// and reported with the next line at most every `REFUSAL_LOG_EVERY` (one per shard, executor-local).
#[derive(Debug, Default)]
pub struct BurstLog {
    last: std::cell::Cell<Option<Instant>>,
    unlogged: std::cell::Cell<u64>,
}

impl BurstLog {
    /// Counts one event; returns `Some(events since the last line, this one included)` when a line is due.
    pub fn event(&self, now: Instant) -> Option<u64> {
        let n = self.unlogged.get() + 1;
        if self.last.get().is_some_and(|last| now.duration_since(last) < REFUSAL_LOG_EVERY) {
            self.unlogged.set(n);
            return None;
        }
        self.last.set(Some(now));
        self.unlogged.set(0);
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_addresses_v6_prefixes_or_loopback() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(SourceKey::of(v4), SourceKey::V4(0xC000_0207));
        assert_eq!(SourceKey::of("::ffff:192.0.2.7".parse().unwrap()), SourceKey::V4(0xC000_0207));
        let a = SourceKey::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        assert_eq!(a, SourceKey::of("2001:db8:1:2:bbbb::9".parse().unwrap()), "one /64, one source");
        assert_ne!(a, SourceKey::of("2001:db8:1:3::1".parse().unwrap()));
        for ip in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(SourceKey::of(ip.parse().unwrap()), SourceKey::Loopback, "{ip}");
        }
    }

    #[test]
    fn each_source_is_held_to_its_limit_and_gets_its_places_back() {
        let counts = SourceCounts::new(2, 3);
        let (a, b) = (SourceKey::V4(1), SourceKey::V4(2));
        assert!(counts.try_take(a) && counts.try_take(a));
        assert!(!counts.try_take(a), "third socket of one address");
        assert!(counts.try_take(b), "another address is not affected");
        assert!((0..3).all(|_| counts.try_take(SourceKey::Loopback)));
        assert!(!counts.try_take(SourceKey::Loopback));
        counts.give_back(a);
        assert!(counts.try_take(a));
        for key in [a, a, b, SourceKey::Loopback, SourceKey::Loopback, SourceKey::Loopback] {
            counts.give_back(key);
        }
        assert_eq!(counts.sources(), 0, "no entry outlives its last socket");
    }

    #[test]
    fn the_fd_budget_keeps_the_log_reserve() {
        let budget = FdBudget::new(100, 1);
        budget.calibrate(20); // 20 open: 19 others + the journal
        budget.set_log_files(0, 5); // two segments with mailboxes + the journal
        let max = 100 - 19 - 5 - LOG_FD_HEADROOM_PER_SHARD - FD_MARGIN;
        assert_eq!(budget.sockets_max(), max);
        assert!((0..max).all(|_| budget.try_take()));
        assert!(!budget.try_take(), "the reserve is kept");
        budget.set_log_files(0, 7); // the log grew: fewer sockets fit, none is taken from it
        budget.give_back();
        assert!(!budget.try_take());
        budget.give_back();
        budget.give_back();
        assert!(budget.try_take());
    }

    #[test]
    fn refusals_are_logged_once_per_burst() {
        let log = BurstLog::default();
        let t0 = Instant::now();
        assert_eq!(log.event(t0), Some(1));
        assert_eq!(log.event(t0 + Duration::from_secs(1)), None);
        assert_eq!(log.event(t0 + Duration::from_secs(2)), None);
        assert_eq!(log.event(t0 + REFUSAL_LOG_EVERY), Some(3), "the next line carries the ones in between");
    }
}
