//! Subscriber connections: connect, register each subscriber's filter, receive DELIVERs; one manager task per
//! executor re-registers filters when they are due.
//!
//! ```text
//! run(c): permit ─▶ connect + HELLO ─▶ one CLAIM per subscriber of the connection (one message, once per
//!         connection: the hot path never signs) ─▶ one SUBSCRIBE {set A, set B} per subscriber (one message)
//!         ─▶ hand the sender to the manager
//!         receive loop: DELIVER ─▶ stamp ─▶ latency histogram (by phase tag), delivered/addressed counters
//!                       SUBSCRIBED ─▶ Book::confirm (publishers now address the new set)
//! manager (every 100 ms): per connection, the subscribers whose refresh is due (once per window, 2–8 s in)
//!         or whose active set is used up (≥ 1 s since the last) ─▶ SUBSCRIBE {active set, fresh set} over
//!         the current and next window, one message per connection ─▶ Book::begin
//!         stop ─▶ drain ─▶ close every connection
//! ```
//! W-e2e proper has one subscriber per connection (4,800 connections); several per connection
//! (`subscribers_per_conn`) is how a client multiplexing subscriber ids would connect, and lets the relay merge
//! their deliveries into one message.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::{Histograms, Local, Shared};
use crate::driver::client::conn::{ClientConn, ClientOptions, ClientReceiver, ClientSender};
use crate::driver::clock::unix_now_ms;
use crate::perf::stats::Counters;
use crate::perf::workload::{
    refresh_at_ms, subscribe_entry, subscription_range, CommitPool, CommitSet, Stamp, REFRESH_OFFSET_MS_MAX,
    REFRESH_OFFSET_MS_MIN, ROTATION_INTERVAL_MS_MIN,
};
use crate::proto::frame::Subscribe;
use crate::proto::{ErrorCode, Frame, SubscriberId, SubscriberKeyPair};

/// How often the manager looks for subscriptions to renew.
const MANAGER_TICK: Duration = Duration::from_millis(100);
/// A subscriber connection's WebSocket read buffer: DELIVER messages are mostly one proof at these rates, and
/// tungstenite zero-fills the whole buffer before every read, so a large one costs a memset per message (and
/// thousands of connections must not take 64 KiB each).
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// One subscriber as the manager sees it.
struct Sub {
    index: usize,
    id: SubscriberId,
    bucket: u16,
    /// The set of the last SUBSCRIBE (the active one once confirmed); stays in the next filter.
    last_set: CommitSet,
    /// Milliseconds into the window at which this subscriber refreshes (spreads SUBSCRIBEs over the window).
    refresh_offset_ms: u64,
    /// Unix ms of the next refresh.
    refresh_at_ms: u64,
    last_subscribe_ms: u64,
}

/// A subscriber connection as the manager sees it.
pub(super) struct Handle {
    sender: ClientSender,
    subs: Vec<Sub>,
    num_buckets: u16,
    window_s: u64,
    /// The connection failed: no more SUBSCRIBEs.
    dead: bool,
}

impl Sub {
    /// Registers {last set, a fresh set} over the current range; the fresh set becomes active on SUBSCRIBED.
    fn rotate(&mut self, shared: &Shared, local: &Local, conn: (u16, u64), unix_ms: u64, now_ms: u64) -> Frame {
        let (num_buckets, window_s) = conn;
        let fresh = take_set(local, self.bucket, num_buckets);
        let range = subscription_range(unix_ms / 1_000, window_s);
        let entry = subscribe_entry(self.bucket, range, window_s, &[&self.last_set, &fresh]);
        shared.book(self.index).begin(fresh, range);
        self.last_set = fresh;
        self.refresh_at_ms = refresh_at_ms(unix_ms, window_s, self.refresh_offset_ms);
        self.last_subscribe_ms = now_ms;
        Counters::add(&shared.counters.subscribes_sent, 1);
        Frame::Subscribe(Subscribe { subscriber: self.id, entries: vec![entry] })
    }

    fn due(&self, shared: &Shared, unix_ms: u64, now_ms: u64) -> bool {
        let book = shared.book(self.index);
        !book.is_pending()
            && (unix_ms >= self.refresh_at_ms
                || (book.is_exhausted() && now_ms >= self.last_subscribe_ms + ROTATION_INTERVAL_MS_MIN))
    }
}

impl Handle {
    /// Sends one message with a SUBSCRIBE for every subscriber of this connection that is due (all of them
    /// when `all`); returns whether it sent one.
    async fn renew(&mut self, shared: &Shared, local: &Local, all: bool) -> bool {
        let (unix_ms, now_ms) = (unix_now_ms(), shared.now_ns() / 1_000_000);
        let conn = (self.num_buckets, self.window_s);
        let frames: Vec<Frame> = self
            .subs
            .iter_mut()
            .filter(|s| all || s.due(shared, unix_ms, now_ms))
            .map(|s| s.rotate(shared, local, conn, unix_ms, now_ms))
            .collect();
        if frames.is_empty() {
            return false;
        }
        if self.sender.send(&frames).await.is_err() {
            self.dead = true;
        }
        true
    }
}

/// A fresh commit set for `bucket` from the executor's pool (created on first use for `num_buckets`).
fn take_set(local: &Local, bucket: u16, num_buckets: u16) -> CommitSet {
    let mut pool = local.pool.borrow_mut();
    let pool = pool.get_or_insert_with(|| CommitPool::new(num_buckets));
    pool.take_set(bucket, &mut *local.rng.borrow_mut())
}

/// Connects the subscribers `indexes` on one connection, registers them, and receives until it closes.
pub(super) async fn run(
    shared: Arc<Shared>,
    local: Rc<Local>,
    indexes: std::ops::Range<usize>,
    permits: Rc<glommio::sync::Semaphore>,
) {
    let keys: Vec<(SubscriberKeyPair, usize)> = {
        let mut rng = local.rng.borrow_mut();
        indexes.clone().map(|i| (SubscriberKeyPair::from_secret(&rng.gen()), i)).collect()
    };
    let ids: Vec<(SubscriberId, usize)> = keys.iter().map(|(k, i)| (k.id(), *i)).collect();
    let Some(receiver) = setup(&shared, &local, &keys, &permits).await else { return };
    receive(&shared, &local, &ids, receiver).await;
}

async fn setup(
    shared: &Arc<Shared>,
    local: &Rc<Local>,
    keys: &[(SubscriberKeyPair, usize)],
    permits: &glommio::sync::Semaphore,
) -> Option<ClientReceiver> {
    let ids = keys;
    let _permit = permits.acquire_permit(1).await.ok()?;
    let first = ids.first().map_or(0, |&(_, i)| i);
    let options = ClientOptions {
        read_buffer_bytes: READ_BUFFER_BYTES,
        tls: shared.spec.tls.clone(),
        ..ClientOptions::default()
    };
    let conn = match ClientConn::connect(&shared.spec.url, shared.spec.addr, options).await {
        Ok(conn) => conn,
        Err(e) => {
            shared.fail(format!("subscriber {first}: {e}"));
            return None;
        }
    };
    let (mut sender, receiver, params) = conn.split();
    let per_conn_max = params.limits.subscribers_per_connection_max as usize;
    let frames_max = params.limits.frames_per_message_max as usize;
    if ids.len() > per_conn_max.min(frames_max) {
        shared.fail(format!("{} subscribers per connection: the relay allows {per_conn_max}", ids.len()));
        return None;
    }
    // Claims: once per connection, before the first SUBSCRIBE (docs/PROTOCOL.md §4.12); silent when valid.
    let claims: Vec<Frame> = {
        let mut rng = local.rng.borrow_mut();
        keys.iter().map(|(k, _)| Frame::Claim(k.claim(&params.node_id, &params.auth_nonce, &rng.gen()))).collect()
    };
    if sender.send(&claims).await.is_err() {
        shared.fail(format!("subscriber {first}: the connection closed during CLAIM"));
        return None;
    }
    let num_buckets = params.num_buckets.max(1);
    let subs = ids
        .iter()
        .map(|(key, index)| {
            let (id, index) = (key.id(), *index);
            let bucket = (index % num_buckets as usize) as u16;
            Sub {
                index,
                id,
                bucket,
                // The first filter holds two fresh sets, like every later one (60 fingerprints); the second is
                // the active one.
                last_set: take_set(local, bucket, num_buckets),
                refresh_offset_ms: local.rng.borrow_mut().gen_range(REFRESH_OFFSET_MS_MIN..REFRESH_OFFSET_MS_MAX),
                refresh_at_ms: 0,
                last_subscribe_ms: 0,
            }
        })
        .collect();
    let mut handle = Handle { sender, subs, num_buckets, window_s: params.window_s.max(1) as u64, dead: false };
    handle.renew(shared, local, true).await;
    if handle.dead {
        shared.fail(format!("subscriber {first}: the connection closed during SUBSCRIBE"));
        return None;
    }
    local.incoming.borrow_mut().push(handle);
    Some(receiver)
}

async fn receive(shared: &Shared, local: &Local, ids: &[(SubscriberId, usize)], mut receiver: ClientReceiver) {
    let counters = &shared.counters;
    let index_of = |id: &SubscriberId| ids.iter().find(|(s, _)| s == id).map(|&(_, i)| i);
    loop {
        let frames = match receiver.recv().await {
            Ok(Some(frames)) => frames,
            Ok(None) | Err(_) => break,
        };
        let now_ns = shared.now_ns();
        for frame in frames {
            match frame {
                Frame::Deliver { subscriber, proofs } => {
                    let me = index_of(&subscriber).map(|i| i as u32);
                    let mut addressed = 0;
                    let mut histograms = local.histograms.borrow_mut();
                    for proof in proofs.iter() {
                        let Some(stamp) = Stamp::read(proof.ciphertext()) else { continue };
                        // Publish→deliver is the latency of a proof to its addressee. Other stamped proofs
                        // are Bloom false positives of this subscriber's filters; since late matching, those a
                        // renewed filter newly matches among already retained proofs arrive when its late scan
                        // ends (by design, seconds after they were published) and would make the tail measure
                        // filter renewals rather than routing.
                        if me.is_some() && stamp.addressee == me {
                            addressed += 1;
                            let latency_ns = now_ns.saturating_sub(stamp.send_ns);
                            Histograms::record(&mut histograms.deliver, stamp.phase, latency_ns);
                        }
                    }
                    Counters::add(&counters.delivered, proofs.len() as u64);
                    Counters::add(&counters.addressed_delivered, addressed);
                }
                Frame::Subscribed { subscriber, .. } => {
                    Counters::add(&counters.subscribes_confirmed, 1);
                    if let Some(index) = index_of(&subscriber) {
                        if shared.book(index).confirm() {
                            Counters::add(&counters.subscribers_ready, 1);
                        }
                    }
                }
                Frame::Error(e) => {
                    let refused_subscribe = [
                        ErrorCode::TOO_MANY_SUBSCRIBERS,
                        ErrorCode::TOO_MANY_FILTERS,
                        ErrorCode::SUBSCRIPTION_RANGE,
                        ErrorCode::BUCKET_OUT_OF_RANGE,
                    ];
                    // The ERROR does not name the subscriber: every pending SUBSCRIBE on this connection is
                    // retried at its next refresh.
                    if refused_subscribe.contains(&e.code) {
                        for &(_, index) in ids {
                            let mut book = shared.book(index);
                            if book.is_pending() {
                                book.refuse();
                            }
                        }
                    }
                    Counters::add(&counters.errors_other, 1);
                    tracing::warn!(code = %e.code, text = %e.text, "ERROR from the relay on a subscriber connection");
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
    let mut conns: Vec<Handle> = Vec::new();
    while !shared.control.stopped() {
        glommio::timer::sleep(MANAGER_TICK).await;
        conns.append(&mut local.incoming.borrow_mut());
        for conn in conns.iter_mut().filter(|c| !c.dead) {
            if conn.renew(&shared, &local, false).await {
                // Building a filter costs ~240 SHA-256: let the receive tasks run between SUBSCRIBEs.
                futures_lite::future::yield_now().await;
            }
        }
    }
    glommio::timer::sleep(super::DRAIN).await;
    conns.append(&mut local.incoming.borrow_mut());
    for conn in conns.iter_mut().filter(|c| !c.dead) {
        let _ = conn.sender.close().await;
    }
}
