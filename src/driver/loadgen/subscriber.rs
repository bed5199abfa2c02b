//! Subscriber connections: connect, register a filter, receive DELIVERs; one manager task per executor
//! re-registers each subscriber's filter when it is due.
//!
//! ```text
//! run(j): permit ─▶ connect + HELLO ─▶ SUBSCRIBE {set A, set B} ─▶ hand the sender to the manager
//!         receive loop: DELIVER ─▶ stamp ─▶ latency histogram (by phase tag), delivered/addressed counters
//!                       SUBSCRIBED ─▶ Book::confirm (publishers now address the new set)
//! manager (every 100 ms): refresh due (once per window, 2–8 s in) or active set used up (≥ 1 s since the last)
//!         ─▶ SUBSCRIBE {active set, fresh set} over the current and next window ─▶ Book::begin
//!         stop ─▶ drain ─▶ close every connection
//! ```

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::{unix_now_ms, Histograms, Local, Shared};
use crate::driver::client_conn::{ClientConn, ClientOptions, ClientReceiver, ClientSender};
use crate::perf::stats::Counters;
use crate::perf::workload::{
    refresh_at_ms, subscribe_entry, subscription_range, CommitPool, CommitSet, Stamp, REFRESH_OFFSET_MS_MAX,
    REFRESH_OFFSET_MS_MIN, ROTATION_INTERVAL_MS_MIN,
};
use crate::proto::frame::Subscribe;
use crate::proto::{ErrorCode, Frame, SubscriberId};

/// How often the manager looks for subscriptions to renew.
const MANAGER_TICK: Duration = Duration::from_millis(100);
/// A subscriber's WebSocket read buffer: DELIVER messages to one subscriber are mostly one proof at these
/// rates, and tungstenite zero-fills the whole buffer before every read, so a large one costs a memset per
/// message (and thousands of connections must not take 64 KiB each).
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// A subscriber as the manager sees it.
pub(super) struct Handle {
    index: usize,
    id: SubscriberId,
    bucket: u16,
    num_buckets: u16,
    window_s: u64,
    sender: ClientSender,
    /// The set of the last SUBSCRIBE (the active one once confirmed); stays in the next filter.
    last_set: CommitSet,
    /// Milliseconds into the window at which this subscriber refreshes (spreads SUBSCRIBEs over the window).
    refresh_offset_ms: u64,
    /// Unix ms of the next refresh.
    refresh_at_ms: u64,
    last_subscribe_ms: u64,
    /// The connection failed: no more SUBSCRIBEs.
    dead: bool,
}

impl Handle {
    /// Registers {last set, a fresh set} over the current range; the fresh set becomes active on SUBSCRIBED.
    async fn rotate(&mut self, shared: &Shared, local: &Local, unix_ms: u64, now_ms: u64) {
        let fresh = take_set(local, self.bucket, self.num_buckets);
        let range = subscription_range(unix_ms / 1_000, self.window_s);
        let entry = subscribe_entry(self.bucket, range, self.window_s, &[&self.last_set, &fresh]);
        shared.book(self.index).begin(fresh, range);
        self.last_set = fresh;
        self.refresh_at_ms = refresh_at_ms(unix_ms, self.window_s, self.refresh_offset_ms);
        self.last_subscribe_ms = now_ms;
        Counters::add(&shared.counters.subscribes_sent, 1);
        let frame = Frame::Subscribe(Subscribe { subscriber: self.id, entries: vec![entry] });
        if self.sender.send(&[frame]).await.is_err() {
            self.dead = true;
        }
    }
}

/// A fresh commit set for `bucket` from the executor's pool (created on first use for `num_buckets`).
fn take_set(local: &Local, bucket: u16, num_buckets: u16) -> CommitSet {
    let mut pool = local.pool.borrow_mut();
    let pool = pool.get_or_insert_with(|| CommitPool::new(num_buckets));
    pool.take_set(bucket, &mut *local.rng.borrow_mut())
}

/// Connects subscriber `index`, registers it, and receives until its connection closes.
pub(super) async fn run(shared: Arc<Shared>, local: Rc<Local>, index: usize, permits: Rc<glommio::sync::Semaphore>) {
    let Some(receiver) = setup(&shared, &local, index, &permits).await else { return };
    receive(&shared, &local, index, receiver).await;
}

async fn setup(
    shared: &Arc<Shared>,
    local: &Rc<Local>,
    index: usize,
    permits: &glommio::sync::Semaphore,
) -> Option<ClientReceiver> {
    let _permit = permits.acquire_permit(1).await.ok()?;
    let options = ClientOptions { read_buffer_bytes: READ_BUFFER_BYTES, ..ClientOptions::default() };
    let conn = match ClientConn::connect(&shared.spec.url, shared.spec.addr, options).await {
        Ok(conn) => conn,
        Err(e) => {
            shared.fail(format!("subscriber {index}: {e}"));
            return None;
        }
    };
    let (sender, receiver, params) = conn.split();
    let num_buckets = params.num_buckets.max(1);
    let bucket = (index % num_buckets as usize) as u16;
    let (id, refresh_offset_ms) = {
        let mut rng = local.rng.borrow_mut();
        (SubscriberId(rng.gen()), rng.gen_range(REFRESH_OFFSET_MS_MIN..REFRESH_OFFSET_MS_MAX))
    };
    let mut handle = Handle {
        index,
        id,
        bucket,
        num_buckets,
        window_s: params.window_s.max(1) as u64,
        sender,
        // The first filter holds two fresh sets, like every later one (60 fingerprints); the second is active.
        last_set: take_set(local, bucket, num_buckets),
        refresh_offset_ms,
        refresh_at_ms: 0,
        last_subscribe_ms: 0,
        dead: false,
    };
    handle.rotate(shared, local, unix_now_ms(), shared.now_ns() / 1_000_000).await;
    if handle.dead {
        shared.fail(format!("subscriber {index}: the connection closed during SUBSCRIBE"));
        return None;
    }
    local.incoming.borrow_mut().push(handle);
    Some(receiver)
}

async fn receive(shared: &Shared, local: &Local, index: usize, mut receiver: ClientReceiver) {
    let counters = &shared.counters;
    loop {
        let frames = match receiver.recv().await {
            Ok(Some(frames)) => frames,
            Ok(None) | Err(_) => break,
        };
        let now_ns = shared.now_ns();
        for frame in frames {
            match frame {
                Frame::Deliver { proofs, .. } => {
                    let mut addressed = 0;
                    let mut histograms = local.histograms.borrow_mut();
                    for proof in proofs.iter() {
                        let Some(stamp) = Stamp::read(proof.ciphertext()) else { continue };
                        Histograms::record(&mut histograms.deliver, stamp.phase, now_ns.saturating_sub(stamp.send_ns));
                        addressed += u64::from(stamp.addressee == Some(index as u32));
                    }
                    Counters::add(&counters.delivered, proofs.len() as u64);
                    Counters::add(&counters.addressed_delivered, addressed);
                }
                Frame::Subscribed { .. } => {
                    Counters::add(&counters.subscribes_confirmed, 1);
                    if shared.book(index).confirm() {
                        Counters::add(&counters.subscribers_ready, 1);
                    }
                }
                Frame::Error(e) => {
                    let refused_subscribe = [
                        ErrorCode::TOO_MANY_SUBSCRIBERS,
                        ErrorCode::TOO_MANY_FILTERS,
                        ErrorCode::SUBSCRIPTION_RANGE,
                        ErrorCode::BUCKET_OUT_OF_RANGE,
                    ];
                    if refused_subscribe.contains(&e.code) {
                        shared.book(index).refuse();
                    }
                    Counters::add(&counters.errors_other, 1);
                    tracing::warn!(subscriber = index, code = %e.code, text = %e.text, "ERROR from the relay");
                }
                _ => {}
            }
        }
    }
    if !shared.control.stopped() {
        Counters::add(&counters.connections_lost, 1);
    }
}

/// Renews subscriptions until the stop, then closes every subscriber connection after the drain.
pub(super) async fn manager(shared: Arc<Shared>, local: Rc<Local>) {
    let mut subs: Vec<Handle> = Vec::new();
    while !shared.control.stopped() {
        glommio::timer::sleep(MANAGER_TICK).await;
        subs.append(&mut local.incoming.borrow_mut());
        let (unix_ms, now_ms) = (unix_now_ms(), shared.now_ns() / 1_000_000);
        for sub in subs.iter_mut().filter(|s| !s.dead) {
            let due = {
                let book = shared.book(sub.index);
                !book.is_pending()
                    && (unix_ms >= sub.refresh_at_ms
                        || (book.is_exhausted() && now_ms >= sub.last_subscribe_ms + ROTATION_INTERVAL_MS_MIN))
            };
            if due {
                sub.rotate(&shared, &local, unix_ms, now_ms).await;
                // Building a filter costs ~240 SHA-256: let the receive tasks run between rotations.
                futures_lite::future::yield_now().await;
            }
        }
    }
    glommio::timer::sleep(super::DRAIN).await;
    subs.append(&mut local.incoming.borrow_mut());
    for sub in subs.iter_mut().filter(|s| !s.dead) {
        let _ = sub.sender.close().await;
    }
}
