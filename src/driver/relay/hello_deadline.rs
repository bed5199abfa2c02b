//! The HELLO deadline of an upgraded WebSocket connection: the reader's message stream ends (as if the peer
//! had gone) when no message starting with HELLO arrives within `hello_timeout_ms` of the upgrade.
//!
//! ```text
//! connection::session: ws.split() ─▶ HelloDeadline::new(ctx, receiver) ─▶ reader loop
//!   message whose first frame type is HELLO ─▶ deadline disarmed, passed on
//!   other messages, pings ─▶ passed on (the server answers HELLO_REQUIRED and keeps waiting)
//!   timer first ─▶ counted (tessera_hello_timeouts_total) ─▶ end of stream ─▶ the reader's peer-closed path:
//!                  the writer drains, sends close 1000 and the connection gives its place back
//! ```
//! Without it a client could upgrade and stay silent, holding a place among `connections_max` (200 such
//! connections were still open after 125 s). The timer lives here, not in the server, because the server
//! sees only whole messages, and a silent client sends none: the deadline must run on the driver's clock.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::Stream;
use glommio::timer::Timer;

use super::shard_ctx::ShardCtx;
use crate::proto::frame::frame_type as ft;
use crate::server::metrics::ShardMetrics;

/// A WebSocket message stream that ends if no HELLO arrives in time (see the module docs).
pub struct HelloDeadline<S> {
    inner: S,
    /// Running until a message starting with HELLO arrives; `None` afterwards.
    timer: Option<Timer>,
    expired: bool,
    ctx: Rc<ShardCtx>,
}

impl<S> HelloDeadline<S> {
    /// Arms the deadline (`ShardCtx::hello_timeout` from now) over the connection's incoming messages.
    pub fn new(ctx: &Rc<ShardCtx>, inner: S) -> Self {
        Self { inner, timer: Some(Timer::new(ctx.hello_timeout())), expired: false, ctx: ctx.clone() }
    }
}

/// Whether a message's first frame is a HELLO (by its type byte; the server decodes and checks the rest). A
/// text message counts too: the server decodes it like a binary one.
fn starts_with_hello(message: &Message) -> bool {
    let bytes: &[u8] = match message {
        Message::Binary(bytes) => bytes,
        Message::Text(text) => text.as_bytes(),
        _ => return false,
    };
    bytes.first() == Some(&ft::HELLO)
}

impl<S> Stream for HelloDeadline<S>
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    type Item = Result<Message, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(None);
        }
        // Messages first: one that arrived together with the deadline still counts.
        if let Poll::Ready(item) = Pin::new(&mut this.inner).poll_next(cx) {
            if let Some(Ok(message)) = &item {
                if starts_with_hello(message) {
                    this.timer = None;
                }
            }
            return Poll::Ready(item);
        }
        let due = this.timer.as_mut().is_some_and(|timer| Pin::new(timer).poll(cx).is_ready());
        if !due {
            return Poll::Pending;
        }
        this.expired = true;
        this.timer = None;
        ShardMetrics::add(&this.ctx.metrics().hello_timeouts, 1);
        tracing::debug!(shard = this.ctx.id, "no HELLO within hello_timeout_ms: connection closed");
        Poll::Ready(None)
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
    }
}
