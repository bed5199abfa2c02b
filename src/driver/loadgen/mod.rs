//! The W-e2e load generator (docs/FOUNDATIONS.md §7): [`e2e`] runs a whole measurement, [`process`] handles the OS side
//! (relay child process, `/proc`, file-descriptor limit), and this module runs the connections on glommio
//! executors.
//!
//! ```text
//! e2e::run ─▶ process (RLIMIT_NOFILE, relay child) ─▶ start(shared) ─▶ phases ─▶ join ─▶ perf::report
//! start(shared) ─▶ T executors (unpinned: they share the machine with the relay)
//!   executor e: subscriber connections c ≡ e (mod T) ─connect (bounded concurrency)─▶ HELLO ─▶ SUBSCRIBE
//!               ─▶ receive loop (one subscriber per connection, or `subscribers_per_conn`)
//!               one manager task: re-SUBSCRIBE (fresh commit set, current range) when due or used up
//!               publishers i ≡ e (mod T) ─▶ PUBLISH loop (saturate or paced) │ ACK reader
//!   shared (Arc): Control (phase), Counters, one Book per subscriber (publishers address real subscribers)
//! join ─▶ per-phase latency histograms (publish→deliver, publish→ACK, pacing lag), merged over executors
//! ```
//! The workload's logic (proofs, filters, books, pacing, counters), the `/proc` and `/metrics` parsers and the
//! report are in `crate::perf` (pure); this module only moves them over sockets and processes.

pub mod e2e;
pub mod handshakes;
pub mod hostile;
pub mod idle_cover;
pub mod process;
mod publisher;
mod subscriber;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles};
use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::perf::stats::{Control, Counters};
use crate::perf::workload::{Book, CommitPool};

/// io_uring registered memory per executor (the memlock limit is 8 MiB for an ordinary user).
const IO_MEMORY_BYTES: usize = 1 << 20;
/// Subscriber connections an executor sets up at once (keeps the relay's accept backlog short).
const CONNECT_CONCURRENCY: u64 = 64;
/// How long, after the stop, subscribers keep receiving what is still in flight before closing.
const DRAIN: Duration = Duration::from_secs(1);
/// How long an executor waits for its connections to close after the drain, before dropping them.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// Largest latency a histogram records, ns (100 s); larger values are clamped to it.
pub const LATENCY_NS_MAX: u64 = 100_000_000_000;

/// What to generate.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// `ws://host:port/` of the relay.
    pub url: String,
    /// Its resolved address.
    pub addr: SocketAddr,
    /// Its metrics listener (`/metrics`), where known: the relay's own counters and latency histograms.
    pub metrics_addr: Option<SocketAddr>,
    /// wss:// URLs: the clients' TLS configuration, built once for every connection.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Publisher connections.
    pub publishers: usize,
    /// Subscribers, spread evenly over the buckets.
    pub subscribers: usize,
    /// Subscribers sharing one connection (W-e2e: 1).
    pub subscribers_per_conn: usize,
    /// Proofs per PUBLISH.
    pub batch: u16,
    /// Unacknowledged PUBLISHes a publisher may have outstanding.
    pub inflight_batches: usize,
    /// Executors (threads).
    pub threads: usize,
    /// Phase tags in use (1..=phases); histograms are kept for tags 0..=phases.
    pub phases: usize,
}

/// State shared by every executor of the load generator and the runner.
pub struct Shared {
    /// What to generate.
    pub spec: LoadSpec,
    /// Phase control (the runner writes it).
    pub control: Control,
    /// Counters (the runner samples them).
    pub counters: Counters,
    /// One address book per subscriber, indexed by subscriber number.
    pub books: Box<[Mutex<Book>]>,
    /// Time origin of every stamp (ns since this instant).
    pub epoch: Instant,
    /// The first fatal error (a connection that could not be set up), if any.
    pub failure: Mutex<Option<String>>,
    /// Hands out executor indexes.
    next_executor: AtomicUsize,
}

impl Shared {
    /// Shared state for `spec`, with its time origin now.
    pub fn new(spec: LoadSpec) -> Self {
        let books = (0..spec.subscribers).map(|_| Mutex::new(Book::default())).collect();
        Self {
            spec,
            control: Control::default(),
            counters: Counters::default(),
            books,
            epoch: Instant::now(),
            failure: Mutex::new(None),
            next_executor: AtomicUsize::new(0),
        }
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Records a fatal error (the first one wins).
    pub fn fail(&self, message: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert(message);
    }

    /// The first fatal error, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Locks subscriber `index`'s book (a poisoned lock only means a task panicked mid-update of plain data).
    fn book(&self, index: usize) -> std::sync::MutexGuard<'_, Book> {
        self.books[index].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Latency histograms (ns), one per phase tag each.
#[derive(Default)]
pub struct Histograms {
    /// Publish (stamped send time) → proof received by a subscriber.
    pub deliver: Vec<Histogram<u64>>,
    /// Publish → ACK received by the publisher.
    pub ack: Vec<Histogram<u64>>,
    /// How late a paced batch went out after its due time (the publisher's own lag; included in both above).
    pub send_lag: Vec<Histogram<u64>>,
}

impl Histograms {
    /// Empty histograms for tags `0..=phases`.
    pub fn new(phases: usize) -> Self {
        let set = || (0..=phases).map(|_| new_histogram()).collect();
        Self { deliver: set(), ack: set(), send_lag: set() }
    }

    /// Records `ns` in `which[tag]` (values are clamped to the histogram's range; unknown tags are ignored).
    pub fn record(which: &mut [Histogram<u64>], tag: u8, ns: u64) {
        if let Some(h) = which.get_mut(tag as usize) {
            h.saturating_record(ns.clamp(1, LATENCY_NS_MAX));
        }
    }

    fn add(&mut self, other: &Histograms) {
        for (mine, theirs) in
            [(&mut self.deliver, &other.deliver), (&mut self.ack, &other.ack), (&mut self.send_lag, &other.send_lag)]
        {
            for (total, h) in mine.iter_mut().zip(theirs.iter()) {
                // Same bounds on both sides: adding cannot fail.
                let _ = total.add(h);
            }
        }
    }
}

/// One executor's state shared by its tasks.
struct Local {
    /// Latency histograms by phase tag.
    histograms: RefCell<Histograms>,
    /// Subscribers whose first SUBSCRIBE went out, waiting for the manager to adopt them.
    incoming: RefCell<Vec<subscriber::Handle>>,
    /// Random commits sorted by bucket (created with the first connection's bucket count).
    pool: RefCell<Option<CommitPool>>,
    /// This executor's CSPRNG (commits, subscriber ids), seeded from the OS.
    rng: RefCell<ChaCha20Rng>,
}

/// The running executors.
pub struct LoadPool {
    handles: PoolThreadHandles<Histograms>,
}

/// A latency histogram with the load generator's bounds (1 ns to 100 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("constant bounds are valid")
}

/// Starts the executors; they connect and then follow `shared.control` until it stops.
pub fn start(shared: Arc<Shared>) -> Result<LoadPool, String> {
    let threads = shared.spec.threads.max(1);
    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(threads))
        .name("tessera-loadgen")
        .io_memory(IO_MEMORY_BYTES)
        .on_all_shards(move || executor_main(shared))
        .map_err(|e| format!("cannot start the load generator's executors: {e}"))?;
    Ok(LoadPool { handles })
}

impl LoadPool {
    /// Waits for every executor to finish (after `Control::stop`); returns the histograms merged over executors.
    pub fn join(self, phases: usize) -> Histograms {
        let mut merged = Histograms::new(phases);
        for per_executor in self.handles.join_all().into_iter().flatten() {
            merged.add(&per_executor);
        }
        merged
    }
}

async fn executor_main(shared: Arc<Shared>) -> Histograms {
    let index = shared.next_executor.fetch_add(1, Ordering::Relaxed);
    let threads = shared.spec.threads.max(1);
    let local = Rc::new(Local {
        histograms: RefCell::new(Histograms::new(shared.spec.phases)),
        incoming: RefCell::new(Vec::new()),
        pool: RefCell::new(None),
        rng: RefCell::new(ChaCha20Rng::from_entropy()),
    });
    let permits = Rc::new(glommio::sync::Semaphore::new(CONNECT_CONCURRENCY));
    let manager = glommio::spawn_local(subscriber::manager(shared.clone(), local.clone()));
    let mut tasks = Vec::new();
    let (subscribers, per_conn) = (shared.spec.subscribers, shared.spec.subscribers_per_conn.max(1));
    for c in (index..subscribers.div_ceil(per_conn)).step_by(threads) {
        let indexes = c * per_conn..((c + 1) * per_conn).min(subscribers);
        tasks.push(glommio::spawn_local(subscriber::run(shared.clone(), local.clone(), indexes, permits.clone())));
    }
    for i in (index..shared.spec.publishers).step_by(threads) {
        tasks.push(glommio::spawn_local(publisher::run(shared.clone(), local.clone(), i)));
    }
    let all = async {
        for task in tasks {
            task.await;
        }
        manager.await;
    };
    // Every task ends by itself after the stop (publishers drain, the manager closes the subscribers);
    // a connection the relay never closes is dropped after the grace period.
    futures_lite::future::or(all, async {
        while !shared.control.stopped() {
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        glommio::timer::sleep(DRAIN + CLOSE_GRACE).await;
    })
    .await;
    let histograms = std::mem::take(&mut *local.histograms.borrow_mut());
    histograms
}
