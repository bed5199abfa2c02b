//! The read deadlines of an upgraded WebSocket connection: the reader's message stream ends (as if the peer
//! had gone) when no message starting with HELLO arrives within `hello_timeout_ms` of the upgrade, and, once
//! HELLO arrived, when nothing at all arrives for `idle_timeout_ms`.
//!
//! ```text
//! connection::session: ws.split() ─▶ ReadDeadline::new(ctx, signals, receiver) ─▶ reader loop
//!   awaiting HELLO: a message whose first frame type is HELLO ─▶ idle phase, passed on
//!                   other messages, pings ─▶ passed on (the server answers HELLO_REQUIRED and keeps waiting)
//!                   timer first ─▶ counted (tessera_hello_timeouts_total) ─▶ end of stream
//!   idle phase:     anything received (message, ping, pong) ─▶ last activity = now, passed on
//!                   half the idle timeout quiet ─▶ ask the writer for a WebSocket ping (ConnSignals::ping)
//!                   the whole idle timeout quiet ─▶ counted (tessera_idle_timeouts_total) ─▶ end of stream
//!   end of stream ─▶ the reader's peer-closed path: the writer drains, sends close 1000, the place is given back
//! ```
//! Without them a client could upgrade and stay silent, holding a place among `connections_max` (200 such
//! connections were still open after 125 s), or say HELLO and then hold its place forever. The ping lets a
//! live client that only listens stay connected without doing anything: its WebSocket library answers with a
//! pong, which counts as activity. The timers live here, not in the server, because the server sees only whole
//! messages, and a silent client sends none: the deadline must run on the driver's clock. A message is only
//! timestamped (no timer is re-armed per message); the timer re-arms itself when it fires early.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::Stream;
use glommio::timer::Timer;

use super::connection::ConnSignals;
use super::shard_ctx::ShardCtx;
use crate::proto::frame::frame_type as ft;
use crate::server::metrics::ShardMetrics;

/// Where a connection stands with respect to its deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No HELLO yet: the timer is the HELLO deadline.
    AwaitHello,
    /// HELLO arrived: the timer checks for silence; `pinged_at` when the writer was last asked for a ping.
    Idle { pinged_at: Option<Instant> },
    /// A deadline passed: the stream has ended.
    Expired,
}

/// A WebSocket message stream that ends at the HELLO or the idle deadline (see the module docs).
pub struct ReadDeadline<S> {
    inner: S,
    timer: Timer,
    phase: Phase,
    /// When something was last received (idle phase).
    last_activity: Instant,
    ctx: Rc<ShardCtx>,
    signals: Rc<ConnSignals>,
}

impl<S> ReadDeadline<S> {
    /// Arms the HELLO deadline (`ShardCtx::hello_timeout` from now) over the connection's incoming messages.
    pub fn new(ctx: &Rc<ShardCtx>, signals: Rc<ConnSignals>, inner: S) -> Self {
        Self {
            inner,
            timer: Timer::new(ctx.hello_timeout()),
            phase: Phase::AwaitHello,
            last_activity: Instant::now(),
            ctx: ctx.clone(),
            signals,
        }
    }

    /// Counts a received item: the first HELLO starts the idle phase, anything later is activity.
    fn received(&mut self, message: &Message) {
        match self.phase {
            Phase::AwaitHello if starts_with_hello(message) => {
                self.phase = Phase::Idle { pinged_at: None };
                self.last_activity = Instant::now();
                self.timer.reset(self.ctx.idle_timeout() / 2);
            }
            Phase::Idle { .. } => self.last_activity = Instant::now(),
            _ => {}
        }
    }

    /// The timer fired: decides what it means; `true` when the stream must end now.
    fn timer_fired(&mut self) -> bool {
        let idle = self.ctx.idle_timeout();
        match self.phase {
            Phase::AwaitHello => {
                ShardMetrics::add(&self.ctx.metrics().hello_timeouts, 1);
                tracing::debug!(shard = self.ctx.id, "no HELLO within hello_timeout_ms: connection closed");
                true
            }
            Phase::Idle { pinged_at } => {
                let quiet = self.last_activity.elapsed();
                if quiet >= idle {
                    ShardMetrics::add(&self.ctx.metrics().idle_timeouts, 1);
                    tracing::debug!(shard = self.ctx.id, "nothing received within idle_timeout_ms: connection closed");
                    return true;
                }
                if quiet < idle / 2 {
                    // Something arrived since the timer was armed: look again once half the timeout has passed.
                    self.timer.reset(idle / 2 - quiet);
                    return false;
                }
                // Quiet for half the timeout: ping, unless a ping is already out since the last activity.
                let answered = pinged_at.is_none_or(|sent| sent < self.last_activity);
                if answered {
                    self.phase = Phase::Idle { pinged_at: Some(Instant::now()) };
                    self.signals.ping.set(true);
                    self.signals.wake.notify();
                }
                self.timer.reset((idle - quiet).max(Duration::from_millis(1)));
                false
            }
            Phase::Expired => true,
        }
    }
}

/// Whether a message's first frame is a HELLO (by its type byte; the server decodes and checks the rest). A
/// text message never counts: it is refused without being decoded.
fn starts_with_hello(message: &Message) -> bool {
    match message {
        Message::Binary(bytes) => bytes.first() == Some(&ft::HELLO),
        _ => false,
    }
}

impl<S> Stream for ReadDeadline<S>
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    type Item = Result<Message, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.phase == Phase::Expired {
            return Poll::Ready(None);
        }
        // Messages first: one that arrived together with the deadline still counts.
        if let Poll::Ready(item) = Pin::new(&mut this.inner).poll_next(cx) {
            if let Some(Ok(message)) = &item {
                this.received(message);
            }
            return Poll::Ready(item);
        }
        // A re-armed timer must be polled again to register its waker.
        while Pin::new(&mut this.timer).poll(cx).is_ready() {
            if this.timer_fired() {
                this.phase = Phase::Expired;
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_message_opening_with_hello_disarms_the_deadline() {
        let hello = crate::proto::encode_message(&[crate::proto::Frame::Hello(crate::proto::frame::Hello {
            version: crate::proto::PROTOCOL_VERSION,
            role: crate::proto::Role::Client,
            node_id: [0; 16],
        })]);
        assert!(starts_with_hello(&Message::Binary(hello.clone())));
        assert!(!starts_with_hello(&Message::Binary(bytes::Bytes::from_static(b"{\"type\":\"hello\"}"))));
        assert!(!starts_with_hello(&Message::Binary(bytes::Bytes::new())));
        assert!(!starts_with_hello(&Message::Ping(hello)));
        assert!(!starts_with_hello(&Message::Text("{}".into())));
        assert!(!starts_with_hello(&Message::Text("\u{1}hello".into())), "a text message is never a HELLO");
    }
}
