//! The client session: the thin async driver around the sans-IO [`ClientState`], on one glommio executor.
//!
//! ```text
//! connect(url, home, identity): lock <home>/lock ─▶ read contacts + state.json ─▶ TCP + WebSocket + HELLO
//!     ─▶ ClientState (ClientConfig::for_relay(HELLO_REPLY))
//! sync():  catch_up (past windows, gap) + subscribe_now ─▶ persist (subscriber ids) ─▶ SUBSCRIBE, one at a
//!          time, each until its SUBSCRIBED (durable; OVERLOADED ─▶ resend after a back-off)
//!          ─▶ per id: FETCH(cursor) ─▶ FETCH_REPLY ─▶ handle_batch ─▶ set_fetch_cursor ─▶ persist ─▶ … until !more
//!          ─▶ confirm_coverage ─▶ persist (covered through the subscription's last window)
//! register(): the same without FETCH (`tessera enroll`; the FETCH cursors stay, so `recv` gets everything)
//! send():  prepare_send (waits out WindowFull, telling `on_window_wait`) ─▶ persist (send counters)
//!          ─▶ PUBLISH(seq) ─▶ ACK ≥ seq
//!          (ERROR ref_seq = seq: that proof refused ─▶ SessionError::Refused once the ACK settles the batch)
//! next_message_or(interrupt): DELIVER ─▶ handle_batch ─▶ persist ─▶ message; renew (catch_up +
//!          subscribe_now) when due; once the renewal is acknowledged: (FETCH if it caught up) ─▶ confirm
//! ```
//! Every SUBSCRIBE and FETCH of an id goes in one message after a CLAIM of that id, the first time the id is
//! used on the connection (docs/PROTOCOL.md §4.12); the claims are forgotten with the connection.
//! Every wait is bounded (`SessionOptions`), and every frame that arrives while the session waits for
//! something else is absorbed: a DELIVER during an ACK wait queues its messages, a SUBSCRIBED is noted.
//!
//! Two rules keep the client safe and loss-free. **Persist before anything leaves**: the send counters
//! (a reused sequence number reuses an AES-GCM key and nonce) and new subscriber ids (the FETCH capability
//! for what the relay keeps) reach `state.json` durably before the PUBLISH or SUBSCRIBE carrying them is
//! written. **One process per key directory**: a second process with an older copy of the counters would
//! overwrite newer ones, so a session holds an exclusive `flock` on `<home>/lock` for its lifetime.
//!
//! FETCH follows docs/PROTOCOL.md §4.10: it starts from the persisted cursor (0 the first time), continues
//! with each `next_cursor` while `more` is set, and records a cursor only after its page was handled, so a
//! crash re-fetches (at least once; replays are dropped by the state) and never skips.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures_lite::future::or;
use rand_core::OsRng;

use super::conn::{resolve, ClientConn, ClientError, ClientOptions};
pub use super::session_error::SessionError;
use super::session_error::{is_subscribe_refusal, refuses_whole};
use super::subscribe_queue::SubscribeQueue;
use crate::client::envelope::CHUNK_LEN_MAX;
use crate::client::persist::PersistedState;
use crate::client::store::FILE_MODE;
use crate::client::COVER_PROOFS_PER_ROUND_MAX;
use crate::client::{ClientConfig, ClientState, CoverageGap, Home, Identity, ReceivedMessage, SendError, StoreError};
use crate::driver::clock::{unix_now_s, unix_now_us};
use crate::driver::flock::{lock_exclusive, LockError};
use crate::proto::frame::{ErrorFrame, Publish, Subscribe};
use crate::proto::{ErrorCode, Frame, Proof, ProofBatch, RelayParams, SubscriberId};

mod cover;
mod options;
pub use cover::{CoverStats, Queued};
pub use options::{Sent, SessionOptions, WindowWait};

/// Name of the lock file in the key directory.
pub const LOCK_FILE: &str = "lock";
/// Proofs asked for per FETCH page (capped by the relay's `proofs_per_batch_max`): 256 × 564 B ≈ 144 KB per
/// reply, well under the 1 MiB message limit, and an hour of a personal client's traffic in a few pages.
pub const FETCH_PAGE_PROOFS: u16 = 256;
/// FETCH pages per subscriber id in one `sync`: bounds the loop against a relay that keeps setting `more`
/// (the relay caps a mailbox at 2^20 matches per shard; 8,192 pages of 256 cover that on 2 shards).
pub const FETCH_PAGES_MAX: u32 = 8_192;
/// The client's executor's io_uring registered memory. A client needs little, and the process memlock limit
/// (8 MiB for an ordinary user) is shared with nothing else here.
const IO_MEMORY_BYTES: usize = 256 << 10;
/// WebSocket read buffer: one FETCH page or DELIVER at a time.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// What `Session::on_window_wait` installs.
type WindowWaitHook = Box<dyn FnMut(&WindowWait)>;

/// What `next_message_or` returns.
#[derive(Debug)]
pub enum Next<T> {
    /// A message arrived.
    Message(ReceivedMessage),
    /// The interrupt future finished first (e.g. a line typed on stdin); its output.
    Interrupted(T),
}

/// Runs `make()`'s future to completion on a fresh single-thread glommio executor (for the CLI and for
/// programs without an executor of their own); the future need not be `Send`.
pub fn run_local<G, F, T>(make: G) -> std::io::Result<T>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("tessera-client")
        .io_memory(IO_MEMORY_BYTES)
        .spawn(make)
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .join()
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Takes the key directory's exclusive lock (released when the file is closed, i.e. with the session).
fn lock_home(home: &Home) -> Result<File, SessionError> {
    let path = home.path().join(LOCK_FILE);
    lock_exclusive(&path, FILE_MODE).map_err(|e| match e {
        LockError::Open(source) => StoreError::Io { path: path.clone(), source }.into(),
        LockError::Held => SessionError::HomeInUse(home.path().to_owned()),
    })
}

/// Connects and completes HELLO within `timeout`.
async fn connect_conn(url: &str, session: &SessionOptions) -> Result<ClientConn, SessionError> {
    let timeout = session.connect_timeout;
    let unreachable = |source| SessionError::Unreachable { url: url.to_owned(), source };
    let addr = resolve(url).map_err(unreachable)?;
    let mut options = ClientOptions { read_buffer_bytes: READ_BUFFER_BYTES, ..ClientOptions::default() };
    if url.starts_with("wss://") {
        options = options.with_tls(&session.tls).map_err(unreachable)?;
    }
    let connect = async { Some(ClientConn::connect(url, addr, options).await) };
    match or(connect, async {
        glommio::timer::sleep(timeout).await;
        None
    })
    .await
    {
        Some(Err(ClientError::RelayParams(source))) => Err(SessionError::UnusableRelay { url: url.to_owned(), source }),
        Some(result) => result.map_err(unreachable),
        None => {
            Err(SessionError::Timeout { what: "the connection and HELLO_REPLY", after_ms: timeout.as_millis() as u64 })
        }
    }
}

/// A connected client: the state, its key directory, and one relay connection.
pub struct Session {
    state: ClientState,
    home: Home,
    /// Held for the session's lifetime: one process per key directory.
    _lock: File,
    url: String,
    conn: ClientConn,
    options: SessionOptions,
    /// Next PUBLISH sequence number on this connection (strictly increasing, from 1).
    publish_seq: u64,
    /// Frames received but not yet looked at (a message may carry several).
    pending: VecDeque<Frame>,
    /// Messages completed and not yet handed out.
    inbox: VecDeque<ReceivedMessage>,
    /// SUBSCRIBEs to send on this connection, one at a time, and the one awaiting SUBSCRIBED.
    subscribes: SubscribeQueue,
    /// A renewal caught up past windows: FETCH once it is acknowledged (its matches are recorded, maybe
    /// not delivered).
    fetch_after_subscribed: bool,
    /// Windows found lost by a catch-up and not yet taken by `take_coverage_gap`.
    gap: Option<CoverageGap>,
    /// `register` runs: DELIVERed proofs are left for the next FETCH.
    hold_deliveries: bool,
    /// Told when a send waits for the next window.
    window_wait: Option<WindowWaitHook>,
    /// Subscriber ids claimed on this connection (a CLAIM goes before an id's first use on a connection).
    claimed: Vec<SubscriberId>,
    /// Client cover: the round schedule, when on.
    cover: Option<cover::CoverDriver>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("url", &self.url).field("state", &self.state).finish_non_exhaustive()
    }
}

impl Session {
    /// Locks `home`, reads its contacts and state, connects to `url` and builds the client state for this
    /// relay's parameters. Subscribes nothing yet: call [`Session::sync`] to receive.
    pub async fn connect(
        url: &str,
        home: Home,
        identity: Identity,
        options: SessionOptions,
    ) -> Result<Self, SessionError> {
        let lock = lock_home(&home)?;
        let contacts = home.read_contacts(identity.public())?;
        let persisted: PersistedState = home.read_state()?;
        let conn = connect_conn(url, &options).await?;
        let k = options.cover_proofs_per_round.min(COVER_PROOFS_PER_ROUND_MAX);
        let config = ClientConfig { cover_proofs_per_round: k, ..ClientConfig::for_relay(conn.params()) };
        let state = ClientState::new(identity, contacts, persisted, config)?;
        let cover = (options.client_cover && k > 0).then(|| cover::CoverDriver::new(k, config.window_s));
        Ok(Self {
            state,
            home,
            _lock: lock,
            url: url.to_owned(),
            conn,
            options,
            publish_seq: 1,
            pending: VecDeque::new(),
            inbox: VecDeque::new(),
            subscribes: SubscribeQueue::default(),
            fetch_after_subscribed: false,
            gap: None,
            hold_deliveries: false,
            window_wait: None,
            claimed: Vec::new(),
            cover,
        })
    }

    /// The client state (contacts, subscriber ids, receive counters).
    pub fn state(&self) -> &ClientState {
        &self.state
    }

    /// The relay's parameters (HELLO_REPLY of the current connection).
    pub fn relay_params(&self) -> &RelayParams {
        self.conn.params()
    }

    /// The relay URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Replaces a broken connection with a new one to the same relay (then call [`Session::sync`] to
    /// re-subscribe and fetch what arrived meanwhile). The state is kept.
    pub async fn reconnect(&mut self) -> Result<(), SessionError> {
        self.conn = connect_conn(&self.url, &self.options).await?;
        self.publish_seq = 1;
        self.claimed.clear();
        self.pending.clear();
        self.subscribes.clear();
        self.fetch_after_subscribed = false;
        // Nothing sent on the old connection counts as acknowledged; subscribe again at once.
        self.state.subscription_lost();
        Ok(())
    }

    /// Sends a WebSocket close (best effort) and ends the session.
    pub async fn close(mut self) {
        let _ = or(async { self.conn.close().await }, async {
            glommio::timer::sleep(Duration::from_millis(500)).await;
            Ok(())
        })
        .await;
    }

    /// Writes `state.json` if anything changed; durable when it returns.
    fn persist(&mut self) -> Result<(), SessionError> {
        if self.state.is_dirty() {
            self.home.write_state(&self.state.persisted())?;
            self.state.mark_clean();
        }
        Ok(())
    }

    /// Subscribes (catching up the windows each contact is not covered for yet, within the relay's
    /// retention, and registering every contact's expected deliveries up to the horizon, durably at the
    /// relay), then FETCHes everything kept for this client since its last FETCH, and records the coverage.
    /// Returns the messages received, oldest first (fetched ones and any delivered meanwhile); a gap that
    /// could not be caught up is left for [`Session::take_coverage_gap`].
    pub async fn sync(&mut self) -> Result<Vec<ReceivedMessage>, SessionError> {
        self.subscribe_acknowledged().await?;
        self.fetch_every_id().await?;
        self.state.confirm_coverage();
        self.persist()?;
        Ok(self.inbox.drain(..).collect())
    }

    /// Subscribes like [`Session::sync`] and records the coverage, but FETCHes nothing: what the relay
    /// matched stays for the next FETCH (`tessera enroll` registers a new contact this way, and `recv`
    /// prints its messages). Proofs DELIVERed meanwhile (the relay delivers late matches to a connected
    /// subscriber) are not opened either: marked received here, they would be dropped as replays when the
    /// next `recv` FETCHes them, and never shown. They stay FETCHable (the FETCH cursor did not move).
    pub async fn register(&mut self) -> Result<(), SessionError> {
        self.hold_deliveries = true;
        let result = self.subscribe_acknowledged().await;
        self.hold_deliveries = false;
        result?;
        self.state.confirm_coverage();
        self.persist()
    }

    /// Windows found lost (subscription lapsed longer than the relay keeps proofs) since the last call.
    pub fn take_coverage_gap(&mut self) -> Option<CoverageGap> {
        self.gap.take()
    }

    /// Calls `hook` whenever a send waits for the next window (the CLI says so on stderr).
    pub fn on_window_wait(&mut self, hook: impl FnMut(&WindowWait) + 'static) {
        self.window_wait = Some(Box::new(hook));
    }

    /// Catch-up and subscription frames for `now_s`, sent and each acknowledged in turn.
    async fn subscribe_acknowledged(&mut self) -> Result<(), SessionError> {
        let (frames, _) = self.subscription_frames(unix_now_s())?;
        self.send_subscribes(frames).await?;
        let timeout = self.options.reply_timeout;
        let mut deadline = Instant::now() + timeout;
        while !self.subscribes.is_idle() {
            if self.pump_subscribes().await? {
                deadline = Instant::now() + timeout;
            }
            let wake = match self.subscribes.retry_at() {
                Some(at) => at,
                None if self.pending.is_empty() && Instant::now() >= deadline => {
                    return Err(SessionError::Timeout { what: "SUBSCRIBED", after_ms: timeout.as_millis() as u64 });
                }
                None => deadline,
            };
            if let Some(frame) = self.next_frame_until(wake).await? {
                self.ignore(frame);
            }
        }
        Ok(())
    }

    /// The catch-up frames (past windows), then the subscription's; notes a gap. `true` if it caught up.
    fn subscription_frames(&mut self, now_s: u64) -> Result<(Vec<Subscribe>, bool), SessionError> {
        let catch_up = self.state.catch_up(now_s, &mut OsRng)?;
        if let Some(gap) = catch_up.gap {
            self.gap = Some(match self.gap {
                Some(g) => CoverageGap { from_s: g.from_s.min(gap.from_s), to_s: g.to_s.max(gap.to_s), ..gap },
                None => gap,
            });
        }
        let mut frames = catch_up.frames;
        let caught_up = !frames.is_empty();
        frames.extend(self.state.subscribe_now(now_s, &mut OsRng)?);
        Ok((frames, caught_up))
    }

    /// Persists the state (new subscriber ids), then queues the SUBSCRIBEs and sends the first; each goes
    /// in a WebSocket message of its own (at most `entries_per_subscribe_max` entries, far below the limit).
    async fn send_subscribes(&mut self, frames: Vec<Subscribe>) -> Result<(), SessionError> {
        self.persist()?;
        self.subscribes.push(frames);
        self.pump_subscribes().await.map(|_| ())
    }

    /// Sends the next SUBSCRIBE if none is awaiting an answer (or a refused one once its back-off passed);
    /// `true` if one was sent.
    async fn pump_subscribes(&mut self) -> Result<bool, SessionError> {
        match self.subscribes.next_to_send(Instant::now()) {
            Some(subscribe) => {
                let frames = self.claimed_frame(subscribe.subscriber, Frame::Subscribe(subscribe));
                self.conn.send(&frames).await.map_err(SessionError::Transport)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// `frame`, which uses subscriber `id`, preceded by a CLAIM of `id` the first time this connection uses it.
    fn claimed_frame(&mut self, id: SubscriberId, frame: Frame) -> Vec<Frame> {
        if self.claimed.contains(&id) {
            return vec![frame];
        }
        let params = self.conn.params();
        match self.state.claim(&id, &params.node_id, &params.auth_nonce, &mut OsRng) {
            Some(claim) => {
                self.claimed.push(id);
                vec![Frame::Claim(claim), frame]
            }
            // Every id the session uses comes from the state, which holds its secret.
            None => vec![frame],
        }
    }

    /// FETCHes every page kept for every subscriber id.
    async fn fetch_every_id(&mut self) -> Result<(), SessionError> {
        let ids: Vec<SubscriberId> = self.state.subscriber_ids().to_vec();
        for id in ids {
            self.fetch_all(id).await?;
        }
        Ok(())
    }

    /// FETCHes every page kept for `id`, from its persisted cursor.
    async fn fetch_all(&mut self, id: SubscriberId) -> Result<(), SessionError> {
        let proofs_max = self.options.fetch_page_proofs.clamp(1, self.conn.params().limits.proofs_per_batch_max.max(1));
        for _ in 0..FETCH_PAGES_MAX {
            let cursor = self.state.fetch_cursor(&id);
            let frames = self.claimed_frame(id, Frame::Fetch { subscriber: id, cursor, proofs_max });
            self.conn.send(&frames).await.map_err(SessionError::Transport)?;
            let deadline = Instant::now() + self.options.reply_timeout;
            let (next_cursor, more, proofs) = loop {
                match self.next_frame(deadline, "FETCH_REPLY").await? {
                    Some(Frame::FetchReply { subscriber, next_cursor, more, proofs }) if subscriber == id => {
                        break (next_cursor, more, proofs)
                    }
                    Some(other) => self.ignore(other),
                    None => {}
                }
            };
            self.receive_batch(&proofs);
            // The page is handled (and deduplicated state saved with the cursor): only now move past it.
            self.state.set_fetch_cursor(id, next_cursor);
            self.persist()?;
            if !more {
                return Ok(());
            }
        }
        tracing::warn!(pages = FETCH_PAGES_MAX, "FETCH still has more after the page limit; continuing next time");
        Ok(())
    }

    /// Seals `text` to `contact`, persists the send counters, publishes, and waits until the relay
    /// acknowledges every proof as durable. Messages that arrive meanwhile are kept for `next_message_or`.
    pub async fn send(&mut self, contact: &str, text: &str) -> Result<Sent, SessionError> {
        if self.cover.is_some() {
            return self.send_covered(contact, text).await;
        }
        let proofs = loop {
            match self.state.prepare_send(contact, text, unix_now_s(), &mut OsRng) {
                Ok(proofs) => break proofs,
                Err(SendError::WindowFull { retry_at_s, free }) if self.options.wait_for_free_window => {
                    if let Some(hook) = self.window_wait.as_mut() {
                        let wait_us = retry_at_s.saturating_mul(1_000_000).saturating_sub(unix_now_us());
                        let parts = text.len().div_ceil(CHUNK_LEN_MAX) as u32;
                        let contact = contact.to_owned();
                        hook(&WindowWait { contact, free, parts, wait: Duration::from_micros(wait_us) });
                    }
                    self.idle_until_unix_s(retry_at_s).await?;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let window_start_s = proofs[0].view().window_start();
        // Counters first: the proofs carry sequence numbers that must never be sealed again.
        self.persist()?;
        self.publish_confirmed(&proofs).await?;
        Ok(Sent { proofs: proofs.len(), window_start_s })
    }

    /// Publishes `proofs` (one PUBLISH per `proofs_per_batch_max`) and waits until the relay acknowledges
    /// every one as durable; a refusal of any is `SessionError::Refused`.
    async fn publish_confirmed(&mut self, proofs: &[Proof]) -> Result<(), SessionError> {
        let batch_max = usize::from(self.conn.params().limits.proofs_per_batch_max.max(1));
        let mut seqs = Vec::new();
        for chunk in proofs.chunks(batch_max) {
            seqs.push(self.publish(chunk).await?);
        }
        let Some(&last) = seqs.last() else { return Ok(()) };
        let deadline = Instant::now() + self.options.reply_timeout;
        let mut first_refusal: Option<ErrorFrame> = None;
        let mut refused = 0;
        loop {
            match self.next_frame(deadline, "ACK").await? {
                Some(Frame::Ack { seq }) if seq >= last => break,
                Some(Frame::Error(e)) if seqs.contains(&e.ref_seq) => {
                    let whole = refuses_whole(e.code);
                    refused = if whole { proofs.len() } else { refused + 1 };
                    first_refusal.get_or_insert(e);
                    if whole {
                        break;
                    }
                }
                Some(other) => self.ignore(other),
                None => {}
            }
        }
        match first_refusal {
            Some(error) => {
                Err(SessionError::Refused { error, refused: refused.min(proofs.len()), proofs: proofs.len() })
            }
            None => Ok(()),
        }
    }

    /// Sends one PUBLISH of `proofs` without waiting; its sequence number.
    async fn publish(&mut self, proofs: &[Proof]) -> Result<u64, SessionError> {
        let seq = self.publish_seq;
        self.publish_seq += 1;
        let batch = ProofBatch::from_proofs(proofs.iter().map(|p| p.view()));
        self.conn.send(&[Frame::Publish(Publish { seq, proofs: batch })]).await.map_err(SessionError::Transport)?;
        Ok(seq)
    }

    /// Waits for the next message, renewing the subscription when due, or until `interrupt` finishes.
    /// Nothing is lost when `interrupt` wins: frames stay queued in the connection.
    pub async fn next_message_or<F: Future>(&mut self, interrupt: F) -> Result<Next<F::Output>, SessionError> {
        let mut interrupt = pin!(interrupt);
        loop {
            if let Some(message) = self.inbox.pop_front() {
                return Ok(Next::Message(message));
            }
            if let Some(frame) = self.pending.pop_front() {
                if let Some(frame) = self.absorb(frame)? {
                    self.ignore(frame);
                }
                continue;
            }
            self.pump_subscribes().await?;
            if self.serve_idle_cover().await? {
                continue;
            }
            if self.subscribes.is_idle() && self.state.has_unconfirmed_coverage() {
                // The renewal is acknowledged; what a catch-up matched is recorded for FETCH.
                if std::mem::take(&mut self.fetch_after_subscribed) {
                    self.fetch_every_id().await?;
                }
                self.state.confirm_coverage();
                self.persist()?;
                continue;
            }
            let now_s = unix_now_s();
            if now_s >= self.state.next_renewal_at_s() {
                let (frames, caught_up) = self.subscription_frames(now_s)?;
                self.fetch_after_subscribed |= caught_up;
                self.send_subscribes(frames).await?;
                continue;
            }
            let mut renew_in = Duration::from_secs(self.state.next_renewal_at_s().saturating_sub(now_s));
            if let Some(at) = self.subscribes.retry_at() {
                renew_in = renew_in.min(at.saturating_duration_since(Instant::now()));
            }
            renew_in = renew_in.min(self.cover_wait().unwrap_or(Duration::MAX));
            enum Woke<T> {
                Frames(Result<Option<Vec<Frame>>, ClientError>),
                Interrupted(T),
                Renew,
            }
            let conn = &mut self.conn;
            let woke = or(
                or(async { Woke::Frames(conn.recv().await) }, async { Woke::Interrupted(interrupt.as_mut().await) }),
                async {
                    glommio::timer::sleep(renew_in).await;
                    Woke::Renew
                },
            )
            .await;
            match woke {
                Woke::Frames(frames) => self.queue(frames)?,
                Woke::Interrupted(output) => return Ok(Next::Interrupted(output)),
                Woke::Renew => {}
            }
        }
    }

    /// Waits for the next message (renewing the subscription when due).
    pub async fn next_message(&mut self) -> Result<ReceivedMessage, SessionError> {
        match self.next_message_or(std::future::pending::<()>()).await? {
            Next::Message(message) => Ok(message),
            Next::Interrupted(()) => unreachable!("a pending future never finishes"),
        }
    }

    /// Messages completed so far and not yet handed out (e.g. delivered while `send` waited for its ACK).
    pub fn take_received(&mut self) -> Vec<ReceivedMessage> {
        self.inbox.drain(..).collect()
    }

    /// Handles frames until the Unix clock reaches `at_s` (used to wait out a full window).
    async fn idle_until_unix_s(&mut self, at_s: u64) -> Result<(), SessionError> {
        while unix_now_s() < at_s {
            let wait_us = at_s.saturating_mul(1_000_000).saturating_sub(unix_now_us());
            let wait = Duration::from_micros(wait_us) + Duration::from_millis(20);
            if let Some(frame) = self.next_frame_until(Instant::now() + wait).await? {
                self.ignore(frame);
            }
        }
        Ok(())
    }

    /// The next frame the session's own bookkeeping does not consume, or `None` when a message was consumed
    /// whole; `Timeout` once `deadline` passes.
    async fn next_frame(&mut self, deadline: Instant, what: &'static str) -> Result<Option<Frame>, SessionError> {
        if self.pending.is_empty() && Instant::now() >= deadline {
            return Err(SessionError::Timeout { what, after_ms: self.options.reply_timeout.as_millis() as u64 });
        }
        match self.next_frame_until(deadline).await? {
            Some(frame) => Ok(Some(frame)),
            None if Instant::now() >= deadline => {
                Err(SessionError::Timeout { what, after_ms: self.options.reply_timeout.as_millis() as u64 })
            }
            None => Ok(None),
        }
    }

    /// Takes the next queued frame (receiving a message if none is queued, until `deadline`) and absorbs it.
    async fn next_frame_until(&mut self, deadline: Instant) -> Result<Option<Frame>, SessionError> {
        if self.pending.is_empty() {
            let wait = deadline.saturating_duration_since(Instant::now());
            let conn = &mut self.conn;
            let received = or(async { Some(conn.recv().await) }, async {
                glommio::timer::sleep(wait).await;
                None
            })
            .await;
            match received {
                Some(frames) => self.queue(frames)?,
                None => return Ok(None),
            }
        }
        match self.pending.pop_front() {
            Some(frame) => self.absorb(frame),
            None => Ok(None),
        }
    }

    /// Queues a received message's frames; a closed connection or a transport failure is an error.
    fn queue(&mut self, frames: Result<Option<Vec<Frame>>, ClientError>) -> Result<(), SessionError> {
        match frames {
            Ok(Some(frames)) => {
                self.pending.extend(frames);
                Ok(())
            }
            Ok(None) => Err(SessionError::ConnectionLost),
            Err(e) => Err(SessionError::Transport(e)),
        }
    }

    /// The bookkeeping every frame gets whatever the session waits for: DELIVER becomes messages (and the
    /// dedup record is persisted), SUBSCRIBED is noted, errors about the connection or a SUBSCRIBE end the
    /// operation. Returns the frames left for the caller (ACK, FETCH_REPLY, ERRORs naming a PUBLISH).
    fn absorb(&mut self, frame: Frame) -> Result<Option<Frame>, SessionError> {
        match frame {
            Frame::Deliver { proofs, .. } => {
                self.receive_batch(&proofs);
                self.persist()?;
                Ok(None)
            }
            Frame::Subscribed { subscriber, .. } => {
                self.subscribes.on_subscribed(subscriber);
                Ok(None)
            }
            Frame::Error(e) if is_subscribe_refusal(e.code) => Err(SessionError::SubscribeRefused(e)),
            // A busy relay refused the SUBSCRIBE awaiting its answer (the only one outstanding): resend later.
            Frame::Error(e) if e.code == ErrorCode::OVERLOADED && e.ref_seq == 0 && self.subscribes.has_in_flight() => {
                if self.subscribes.on_overloaded(Instant::now()) {
                    Ok(None)
                } else {
                    Err(SessionError::SubscribeRefused(e))
                }
            }
            Frame::Error(e) if e.ref_seq == 0 && e.code != ErrorCode::OVERLOADED => Err(SessionError::Relay(e)),
            other => Ok(Some(other)),
        }
    }

    /// Opens a batch of delivered or fetched proofs; completed messages join the inbox.
    fn receive_batch(&mut self, proofs: &ProofBatch) {
        if self.hold_deliveries {
            tracing::debug!(proofs = proofs.len(), "DELIVER during register: left for FETCH");
            return;
        }
        self.inbox.extend(self.state.handle_batch(proofs));
    }

    /// A frame nobody waits for (an ACK of an earlier PUBLISH, a stray FETCH_REPLY): logged and dropped.
    fn ignore(&self, frame: Frame) {
        tracing::debug!(frame_type = frame.type_byte(), "frame not awaited; ignored");
    }
}
