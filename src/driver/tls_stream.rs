//! One stream type for plain TCP and TLS over TCP, so the relay's connection code (HTTP head, `FrameGate`,
//! WebSocket session) and the client's connection are written once for ws:// and wss://.
//!
//! ```text
//! glommio TcpStream ─┬─ MaybeTls::Plain ──────────────────────────────┐
//!                    ├─ futures-rustls server TlsStream ─▶ MaybeTls::Server ├─▶ AsyncRead / AsyncWrite
//!                    └─ futures-rustls client TlsStream ─▶ MaybeTls::Client ┘
//! ```
//! An enum rather than generics: one monomorphised copy of the session code, and the plain path costs one
//! predictable branch per read or write (a poll reads up to 16 KiB). The TLS streams are boxed: rustls state is
//! about 1 KiB and most of a busy relay's connections may be plain behind a TLS-terminating proxy.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::{Preallocated, TcpStream};

/// Receive buffer under the relay's TLS layer: rustls takes at most 4 KiB of ciphertext per read, so without it a
/// PUBLISH batch of 100 KB costs 25 socket reads instead of 7 (the plain path reads 16 KiB at a time too,
/// `connection.rs`). 16 KiB per TLS connection, like the plain WebSocket read buffer.
pub const TLS_RECV_BUFFER_BYTES: usize = 16 * 1024;
/// The socket under the relay's TLS layer: glommio's buffered stream.
pub type BufferedTcp = TcpStream<Preallocated>;

/// Plain TCP, or TLS on the relay's or the client's side.
pub enum MaybeTls {
    /// ws:// (or plain HTTP).
    Plain(TcpStream),
    /// The relay's end of a wss:// (or https://) connection.
    Server(Box<futures_rustls::server::TlsStream<BufferedTcp>>),
    /// A client's end of a wss:// connection.
    Client(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl MaybeTls {
    /// The TCP socket underneath (socket options).
    pub fn tcp(&self) -> socket2::SockRef<'_> {
        match self {
            MaybeTls::Plain(s) => socket2::SockRef::from(s),
            MaybeTls::Server(s) => socket2::SockRef::from(s.get_ref().0),
            MaybeTls::Client(s) => socket2::SockRef::from(s.get_ref().0),
        }
    }

    /// Whether the bytes are encrypted.
    pub fn is_tls(&self) -> bool {
        !matches!(self, MaybeTls::Plain(_))
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            MaybeTls::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTls::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTls::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_close(cx),
            MaybeTls::Server(s) => Pin::new(s.as_mut()).poll_close(cx),
            MaybeTls::Client(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}
