//! One accepted TCP connection: TLS (when the relay has a certificate), HTTP request head → a WebSocket
//! session (client port), or `/metrics`, `/healthz` (metrics listener, `serve_http_only`).
//!
//! ```text
//! accept ─▶ [TLS handshake] ─▶ read head (≤ 8 KiB) ─┬─ plain GET (even /metrics) ─▶ 404, close  (all within http_timeout_ms)
//!                                                   ├─ upgrade, wrong path | Origin not allowed ─▶ 404 | 403, close
//!                                                   └─ Upgrade: websocket ─▶ 101 ─────────────────┘
//!          ─▶ FrameGate (large frames whole) ─▶ reader loop (ReadDeadline: HELLO, idle) ──handle_message──▶ ShardServer
//!             writer task ◀──poll_message─── ShardServer
//! ```
//! The reader feeds each binary message to the shard and then waits for the cross-shard sends it produced
//! (so a publisher faster than the owner shards is slowed down by TCP, nobody else). Before reading the next
//! message it waits while the connection's replies queued in the shard, or its PUBLISHes in progress, are at
//! their limits (`server::outbox::reply_room`): a client that pipelines requests and never reads its replies
//! is stopped by TCP, not buffered for. A text
//! message — UTF-8 or not — is never decoded: the shard answers `ERROR(BINARY_REQUIRED)` and the connection
//! closes with 1003 (docs/PROTOCOL.md §2). The writer sleeps on a [`WakeFlag`] until the shard queues
//! something for this connection (or the idle deadline asks for a ping), then writes whole messages. When the
//! shard closes the connection (protocol errors, slow consumer, shutdown) the writer drains, sends a close
//! frame and stops the reader; a writer stuck on a peer that never reads is cancelled after a grace period.
//! Plain HTTP answers are bounded the same way: a client that never reads its `/metrics` response holds the
//! task and the descriptor for `http_timeout_ms` at most.
//! TLS: the handshake runs here, in the admission task queue, inside the same `http_timeout_ms` deadline as the
//! request head (a client that starts a handshake and never finishes it is closed then, like a slow head);
//! everything after it reads and writes a [`MaybeTls`], plain or TLS, so the session code is the same for both.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role as WsRole, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_util::{SinkExt, StreamExt};
use glommio::net::{Preallocated, TcpStream};

use crate::driver::tls_stream::{MaybeTls, TLS_RECV_BUFFER_BYTES};

use super::frame_gate::FrameGate;
use super::shard_ctx::ShardCtx;
use crate::driver::wake_flag::WakeFlag;
use crate::proto::frame::ErrorFrame;
use crate::proto::{ErrorCode, Frame, Limits};
use crate::server::http::{self, Request as HttpRequest};
use crate::server::metrics::ShardMetrics;
use crate::server::msg::ConnId;

/// Most bytes one WebSocket read takes from the socket. tungstenite zero-fills this much of its read buffer
/// before every read and the buffer stays allocated (and touched) for the life of the connection, so with
/// thousands of mostly idle subscriber connections it is resident memory: 64 KiB × 4,800 = 300 MiB. A
/// 147 KB PUBLISH takes 9 reads at 16 KiB instead of 3 at 64 KiB (the message buffer itself grows to the
/// announced message length either way).
const WS_READ_BYTES: usize = 16 * 1024;
/// The socket as the WebSocket layer sees it (large frames are handed over whole: frame_gate.rs).
type WsSocket = FrameGate<MaybeTls>;

/// How long a closing connection's writer may take to drain and send its close frame.
const CLOSE_DRAIN: Duration = Duration::from_secs(2);
/// Kernel send buffer of a plain HTTP answer (Linux doubles it): without it the buffer autotunes up to
/// megabytes, so a client that never reads would pin that much kernel memory per socket; with it the rest of a
/// large `/metrics` waits in the task, which `http_timeout_ms` ends.
const HTTP_SEND_BUFFER_BYTES: usize = 32 * 1024;
/// How long the `400` answering a request head that did not arrive within `http_timeout_ms` may take.
const LATE_ANSWER: Duration = Duration::from_secs(1);

/// Per-connection signals shared by the reader, the writer and the shard's wake-up loop.
#[derive(Default)]
pub struct ConnSignals {
    /// Something was queued for this connection (or it is closing, or a ping is due).
    pub wake: WakeFlag,
    /// The reader must stop (the writer closed, or the close drain expired).
    pub stop_reader: WakeFlag,
    /// The writer handed a message to the socket: a reader paused on the reply backlog looks again.
    pub written: WakeFlag,
    /// The idle deadline wants a WebSocket ping sent (`hello_deadline::ReadDeadline`).
    pub ping: Cell<bool>,
}

/// Runs `work` until `deadline`; `None` when the deadline came first (the work is then dropped, cancelled).
async fn before<T>(deadline: Instant, work: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(work.await) }, async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        None
    })
    .await
}

/// Writes a whole HTTP response and closes, within `deadline`; counts a cut (`tessera_http_timeouts_total`).
async fn answer(ctx: &ShardCtx, stream: &mut MaybeTls, deadline: Instant, response: &str) {
    let _ = stream.tcp().set_send_buffer_size(HTTP_SEND_BUFFER_BYTES);
    let written = before(deadline, async {
        stream.write_all(response.as_bytes()).await?;
        stream.close().await
    })
    .await;
    if written.is_none() {
        ShardMetrics::add(&ctx.metrics().http_timeouts, 1);
    }
}

/// The TLS handshake if `tls` and the relay has a certificate, within `deadline`; `None` when it failed (not
/// TLS, an alert, a reset) or did not finish in time (counted as an HTTP timeout): the socket is then closed.
async fn secure(ctx: &ShardCtx, stream: TcpStream, deadline: Instant, tls: bool) -> Option<MaybeTls> {
    let Some(config) = ctx.shared.tls.as_ref().filter(|_| tls) else {
        return Some(MaybeTls::Plain(stream));
    };
    match before(
        deadline,
        futures_rustls::TlsAcceptor::from(config.clone())
            .accept(stream.buffered_with(Preallocated::new(TLS_RECV_BUFFER_BYTES))),
    )
    .await
    {
        Some(Ok(tls)) => Some(MaybeTls::Server(Box::new(tls))),
        Some(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        None => {
            ShardMetrics::add(&ctx.metrics().http_timeouts, 1);
            None
        }
    }
}

/// Serves one accepted TCP connection to the end.
pub async fn serve(ctx: Rc<ShardCtx>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + ctx.http_timeout();
    let Some(mut stream) = secure(&ctx, stream, deadline, true).await else { return };
    let mut buf = Vec::with_capacity(1024);
    let head_len = match before(deadline, read_head(&mut stream, &mut buf)).await {
        Some(Some(len)) => len,
        Some(None) => return answer(&ctx, &mut stream, deadline, &bad_head()).await,
        None => {
            ShardMetrics::add(&ctx.metrics().http_timeouts, 1);
            return answer(&ctx, &mut stream, Instant::now() + LATE_ANSWER, &bad_head()).await;
        }
    };
    let request = http::parse_request_head(&buf[..head_len]);
    let leftover = buf.split_off(head_len);
    match request {
        Ok(HttpRequest::WebSocket { key, path, origin }) => {
            let config = &ctx.shared.config;
            let allowed = &config.allowed_origins;
            if let Err(refused) = http::check_upgrade(&path, origin.as_deref(), &config.websocket_path, allowed) {
                let response = http::response(refused.status(), "text/plain", &format!("{refused}\n"));
                return answer(&ctx, &mut stream, deadline, &response).await;
            }
            let accept = http::websocket_accept_response(&key);
            // Flushed: over TLS the 101 may otherwise wait in the record layer.
            let written = async {
                stream.write_all(accept.as_bytes()).await?;
                stream.flush().await
            };
            match before(deadline, written).await {
                Some(Ok(())) => {}
                Some(Err(_)) => return,
                None => {
                    ShardMetrics::add(&ctx.metrics().http_timeouts, 1);
                    return;
                }
            }
            let config = websocket_config(&ctx.limits);
            let gate = FrameGate::new(stream, leftover, ctx.limits.message_bytes_max.into());
            let ws = WebSocketStream::from_raw_socket(gate, WsRole::Server, Some(config)).await;
            // Upgraded: from here on the connection is served beside the others, not behind admission work.
            let sessions = ctx.queues.sessions;
            super::task_queues::spawn_into(session(ctx, ws), sessions).await;
        }
        Ok(HttpRequest::Get { .. }) => {
            // Metrics are never served on the client port (docs/PRIVACY.md §Metrics).
            ShardMetrics::add(&ctx.metrics().http_requests, 1);
            let response = http::response("404 Not Found", "text/plain", http::NOT_ON_CLIENT_PORT);
            answer(&ctx, &mut stream, deadline, &response).await;
        }
        Err(e) => {
            let status = match e {
                http::HttpError::MethodNotAllowed => "405 Method Not Allowed",
                _ => "400 Bad Request",
            };
            answer(&ctx, &mut stream, deadline, &http::response(status, "text/plain", &format!("{e}\n"))).await;
        }
    }
}

fn bad_head() -> String {
    http::response("400 Bad Request", "text/plain", "bad request head\n")
}

/// Serves plain HTTP only (the `--metrics-addr` listener): `/metrics`, `/healthz`, 404 otherwise; the whole
/// exchange within `http_timeout_ms`.
pub async fn serve_http_only(ctx: Rc<ShardCtx>, stream: TcpStream) {
    let deadline = Instant::now() + ctx.http_timeout();
    let tls = ctx.shared.config.metrics_tls;
    let Some(mut stream) = secure(&ctx, stream, deadline, tls).await else { return };
    let mut buf = Vec::with_capacity(512);
    let head = before(deadline, read_head(&mut stream, &mut buf)).await;
    let response = match head.flatten().map(|len| http::parse_request_head(&buf[..len])) {
        Some(Ok(HttpRequest::Get { path })) => {
            ShardMetrics::add(&ctx.metrics().http_requests, 1);
            ctx.http_response(&path)
        }
        _ => http::response("400 Bad Request", "text/plain", "this port serves GET /metrics and /healthz\n"),
    };
    let deadline = if head.is_none() {
        ShardMetrics::add(&ctx.metrics().http_timeouts, 1);
        Instant::now() + LATE_ANSWER
    } else {
        deadline
    };
    answer(&ctx, &mut stream, deadline, &response).await;
}

/// First byte of a TLS handshake record: a wss:// client on a plain port. No HTTP request starts with it, so the
/// relay answers at once (400, which the client's TLS layer reports as a failed handshake) instead of waiting
/// `http_timeout_ms` for a request head that will never come.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Reads until the end of the request head; `None` on EOF, error, an oversized head or TLS bytes.
async fn read_head(stream: &mut MaybeTls, buf: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(len) = http::head_len(buf) {
            return Some(len);
        }
        if buf.len() >= http::REQUEST_HEAD_BYTES_MAX {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.first() == Some(&TLS_HANDSHAKE_RECORD) {
            return None;
        }
    }
}

/// WebSocket limits. A message or frame over `message_bytes_max` is refused from its header, before its
/// body is buffered (tungstenite checks the declared length first), and the connection is closed (1009). A
/// frame within the limit would make tungstenite reserve its declared length at once; the `FrameGate` under
/// it hands a large frame over only once it is complete, so memory follows the bytes received, and a frame
/// that never completes is ended by the HELLO or idle deadline (tests/relay_exhaustion.rs measures both).
/// Writes go out message by message (`write_buffer_size` 0, the writer waits for each), so the write buffer
/// holds at most one outgoing message and a control frame; `max_write_buffer_size` only states that bound.
fn websocket_config(limits: &Limits) -> WebSocketConfig {
    let max = limits.message_bytes_max as usize;
    WebSocketConfig::default()
        .read_buffer_size(WS_READ_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(2 * max)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Waits until the replies queued for `conn` and its PUBLISHes in progress are below their limits
/// (`server::outbox::reply_room`; counted once per pause); `false` when the reader must stop instead. Woken
/// when the writer hands a message to the socket and when the shard queues something for `conn` (an ACK
/// ends a PUBLISH in progress).
async fn wait_reply_room(ctx: &ShardCtx, conn: ConnId, signals: &ConnSignals) -> bool {
    let mut paused = false;
    while !ctx.server.borrow().reply_room(conn) {
        if !paused {
            paused = true;
            ShardMetrics::add(&ctx.metrics().reply_backpressure, 1);
        }
        let stop = futures_lite::future::or(
            async {
                signals.written.wait().await;
                false
            },
            async {
                signals.stop_reader.wait().await;
                true
            },
        )
        .await;
        if stop {
            return false;
        }
    }
    true
}

/// Runs a WebSocket session until either side closes.
async fn session(ctx: Rc<ShardCtx>, ws: WebSocketStream<WsSocket>) {
    let Some(conn) = ctx.admit() else {
        refuse(ws, ctx.limits.connections_max).await;
        return;
    };
    let signals = ctx.register(conn);
    let (sink, stream) = ws.split();
    let mut stream = super::hello_deadline::ReadDeadline::new(&ctx, signals.clone(), stream);
    let writer = glommio::spawn_local(writer(ctx.clone(), conn, signals.clone(), sink));
    loop {
        // Backpressure on a client that does not read its replies: stop reading it (TCP then stops it).
        if !wait_reply_room(&ctx, conn, &signals).await {
            break;
        }
        let next = futures_lite::future::or(async { stream.next().await.map(Some) }, async {
            signals.stop_reader.wait().await;
            None
        })
        .await;
        let message = match next {
            None | Some(None) => break,
            Some(Some(Ok(message))) => message,
            Some(Some(Err(e))) => {
                match e {
                    WsError::Capacity(_) => ctx.server.borrow_mut().handle_message_too_big(conn),
                    // A text message that is not UTF-8 (the WebSocket layer checks before we see it): the
                    // same answer as any text message, so a client cannot tell the two apart.
                    WsError::Utf8(_) => ctx.server.borrow_mut().handle_text_message(conn, 0),
                    WsError::Protocol(_) => ctx.server.borrow_mut().handle_bad_framing(conn),
                    // I/O errors and a peer that went away: nothing can be sent any more.
                    _ => {}
                }
                ctx.drain().await;
                break;
            }
        };
        match message {
            // Binary only (docs/PROTOCOL.md §2): a text message is refused without being decoded, and the
            // connection closes (1003), so nothing reaches the shard without the backpressure below.
            Message::Text(text) => {
                ctx.server.borrow_mut().handle_text_message(conn, text.len());
                ctx.drain().await;
                break;
            }
            Message::Binary(bytes) => {
                ctx.wait_log_room(bytes.len() / crate::proto::PROOF_LEN).await;
                ctx.server.borrow_mut().handle_message(conn, &bytes, ctx.clock());
                ctx.drain().await;
                // glommio is cooperative: with messages already buffered this loop would never suspend, and
                // the writers (and other connections) of this shard would starve until the burst ends.
                futures_lite::future::yield_now().await;
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
    // The reader is done: let the writer drain (bounded), then forget the connection everywhere.
    signals.wake.notify();
    ctx.server.borrow_mut().handle_peer_closed(conn);
    ctx.drain().await;
    // If the writer is still stuck on a peer that does not read, dropping its task cancels it.
    futures_lite::future::or(writer, glommio::timer::sleep(CLOSE_DRAIN)).await;
    ctx.unregister(conn);
    ctx.server.borrow_mut().handle_conn_closed(conn, ctx.clock());
    ctx.drain().await;
    ctx.release();
}

/// Writes queued messages until the connection closes.
async fn writer(
    ctx: Rc<ShardCtx>,
    conn: ConnId,
    signals: Rc<ConnSignals>,
    mut sink: async_tungstenite::WebSocketSender<WsSocket>,
) {
    loop {
        if signals.ping.replace(false) && sink.send(Message::Ping(Default::default())).await.is_err() {
            break;
        }
        let next = ctx.server.borrow_mut().poll_message(conn, ctx.clock());
        match next {
            Some(message) => {
                if sink.feed(Message::Binary(message)).await.is_err() {
                    break;
                }
                signals.written.notify();
                // Flush once nothing more is immediately queued: one syscall per burst, not per message.
                if ctx.server.borrow().has_outgoing(conn) {
                    continue;
                }
                if sink.flush().await.is_err() {
                    break;
                }
                ctx.server.borrow_mut().handle_written(conn, ctx.clock());
            }
            None => {
                let reason = ctx.server.borrow().close_reason(conn);
                if let Some(reason) = reason {
                    let frame = CloseFrame { code: CloseCode::from(reason.code()), reason: reason.text().into() };
                    let _ = sink.close(Some(frame)).await;
                    break;
                }
                signals.wake.wait().await;
            }
        }
    }
    signals.stop_reader.notify();
}

/// Tells a client over `connections_max` why, then closes.
async fn refuse(mut ws: WebSocketStream<WsSocket>, connections_max: u32) {
    let frame = Frame::Error(ErrorFrame {
        code: ErrorCode::TOO_MANY_CONNECTIONS,
        ref_seq: 0,
        detail: connections_max,
        text: format!("this relay accepts at most {connections_max} connections"),
    });
    let _ = ws.send(Message::Binary(crate::proto::encode_message(&[frame]))).await;
    let close = CloseFrame { code: CloseCode::Again, reason: "too many connections".into() };
    let _ = ws.close(Some(close)).await;
}
