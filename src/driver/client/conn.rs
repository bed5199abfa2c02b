//! A native-protocol client connection on glommio: WebSocket (async-tungstenite) over a glommio `TcpStream`,
//! plain (ws://) or TLS (wss://, rustls).
//!
//! ```text
//! connect(url) ─TCP─▶ [wss: TLS handshake, SNI = the URL's host, ClientOptions::tls: roots + CA file, or a pin]
//!              ─▶ WebSocket handshake ─▶ HELLO ─▶ HELLO_REPLY (the relay's parameters and limits)
//!                                                         ─▶ check_relay_params (refused: ClientError::RelayParams)
//!   ClientConn ─split─▶ ClientSender   send(frames) / send_message(pre-encoded bytes): one WebSocket message
//!              └──────▶ ClientReceiver recv() ─▶ Codec::decode_message (the relay's announced limits) ─▶ frames
//! ```
//! The two halves may live in different tasks of one executor (a publisher sends while its ACK reader
//! receives). Used by the load generator and by the client commands. A TLS failure is typed: the certificate
//! is not trusted, it is not the pinned one, or the handshake failed otherwise (the peer does not speak TLS).

use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use futures_util::StreamExt;
use glommio::net::TcpStream;
use rustls::pki_types::ServerName;

use crate::client::bounds::{check_relay_params, RelayParamsError};
use crate::driver::tls::{classify, CertPin, HandshakeFailure, TlsClientOptions, TlsError};
use crate::driver::tls_stream::MaybeTls;
use crate::proto::frame::ErrorFrame;
use crate::proto::{Codec, DecodeError, Frame, Hello, Limits, RelayParams, Role, PROTOCOL_VERSION};

/// Why a client connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `ws://host:port[/path]` or `wss://host:port[/path]`.
    #[error("bad relay URL {0:?}: expected ws://host:port or wss://host:port")]
    BadUrl(String),
    /// The TLS options could not be used (the CA file is missing or not PEM).
    #[error("{0}")]
    TlsConfig(#[from] TlsError),
    /// The relay's certificate does not chain to a trusted root (system roots, `--tls-ca`) or does not name the
    /// URL's host.
    #[error("the TLS certificate of {host} is not trusted ({reason}): give its CA with --tls-ca FILE or pin it with --tls-pin HEX")]
    TlsUntrusted {
        /// The URL's host.
        host: String,
        /// What the verifier said.
        reason: String,
    },
    /// A pin was given and the relay presented another certificate.
    #[error("the TLS certificate of {host} is {got}, not the pinned {expected}")]
    TlsPinMismatch {
        /// The URL's host.
        host: String,
        /// The pin given.
        expected: CertPin,
        /// The SHA-256 of the certificate presented.
        got: CertPin,
    },
    /// The TLS handshake failed for another reason (the port does not speak TLS, an alert, a reset).
    #[error("TLS handshake with {addr} failed: {reason}")]
    TlsHandshake {
        /// Where.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The host did not resolve or the TCP connection failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The WebSocket handshake or a later WebSocket operation failed.
    #[error("WebSocket: {0}")]
    WebSocket(#[from] WsError),
    /// The relay sent a message the decoder refused.
    #[error("undecodable message from the relay: {0}")]
    Decode(#[from] DecodeError),
    /// The relay answered HELLO with an ERROR (unsupported version, too many connections).
    #[error("relay refused the connection: {} ({})", .0.text, .0.code)]
    Refused(ErrorFrame),
    /// The relay answered HELLO with something other than HELLO_REPLY, or closed.
    #[error("expected HELLO_REPLY, got {0}")]
    NoHelloReply(String),
    /// The relay's HELLO_REPLY announced a parameter this client refuses (docs/PROTOCOL.md §4.2): the field,
    /// its value and the accepted range. The connection is closed; nothing was built from the parameters.
    #[error("unusable relay: {0}")]
    RelayParams(#[from] RelayParamsError),
}

impl ClientError {
    /// The relay is not the one the client trusts (untrusted certificate, pin mismatch) or the TLS options are
    /// unusable: retrying cannot help.
    pub fn is_trust_failure(&self) -> bool {
        matches!(
            self,
            ClientError::TlsConfig(_) | ClientError::TlsUntrusted { .. } | ClientError::TlsPinMismatch { .. }
        )
    }
}

/// Connection options.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Largest WebSocket message accepted from the relay before HELLO_REPLY announces its limits (and the
    /// WebSocket layer's limit for the life of the connection).
    pub message_bytes_max: usize,
    /// The WebSocket read buffer (allocated up front: keep it small for thousands of idle connections).
    pub read_buffer_bytes: usize,
    /// The TLS configuration for wss:// URLs (`tls::client_config`, built once and shared); `None`: the system
    /// roots only, built at each wss:// connect.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            message_bytes_max: Limits::default().message_bytes_max as usize,
            read_buffer_bytes: 64 * 1024,
            tls: None,
        }
    }
}

impl ClientOptions {
    /// Options whose wss:// connections trust `tls` (the CA file is read now).
    pub fn with_tls(self, tls: &TlsClientOptions) -> Result<Self, ClientError> {
        Ok(Self { tls: Some(crate::driver::tls::client_config(tls)?), ..self })
    }
}

/// A connected client that completed HELLO.
pub struct ClientConn {
    sender: ClientSender,
    receiver: ClientReceiver,
    params: RelayParams,
}

/// The sending half.
pub struct ClientSender {
    sink: WebSocketSender<MaybeTls>,
}

/// The receiving half.
pub struct ClientReceiver {
    stream: WebSocketReceiver<MaybeTls>,
    codec: Codec,
    /// Frames that arrived in one message with HELLO_REPLY, handed out first.
    pending: VecDeque<Frame>,
}

/// `host:port` of a `ws://host:port[/path]` or `wss://host:port[/path]` URL.
fn authority(url: &str) -> Result<&str, ClientError> {
    Ok(split_url(url)?.1)
}

/// Whether the URL is wss://, and its `host:port`.
fn split_url(url: &str) -> Result<(bool, &str), ClientError> {
    let (tls, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(ClientError::BadUrl(url.to_owned())),
    };
    let host_port = rest.split('/').next().unwrap_or_default();
    if host(host_port).is_empty() {
        return Err(ClientError::BadUrl(url.to_owned()));
    }
    Ok((tls, host_port))
}

/// The host of `host[:port]` (an IPv6 literal without its brackets): the TLS server name.
fn host(host_port: &str) -> &str {
    if let Some(rest) = host_port.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    host_port.rsplit_once(':').map_or(host_port, |(host, _)| host)
}

/// Resolves a `ws://` URL to a socket address (an IP literal resolves without a lookup).
pub fn resolve(url: &str) -> Result<SocketAddr, ClientError> {
    let host_port = authority(url)?;
    let connect_err = |source| ClientError::Connect { addr: host_port.to_owned(), source };
    host_port.to_socket_addrs().map_err(connect_err)?.next().ok_or_else(|| {
        connect_err(std::io::Error::new(std::io::ErrorKind::NotFound, "the host resolved to no address"))
    })
}

impl ClientConn {
    /// Connects to `url` (`ws://host:port/`) at `addr` (from [`resolve`], done once for many connections),
    /// completes the WebSocket handshake and HELLO, and returns the connection with the relay's parameters.
    pub async fn connect(url: &str, addr: SocketAddr, options: ClientOptions) -> Result<Self, ClientError> {
        let (tls, host_port) = split_url(url)?;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Connect { addr: addr.to_string(), source: e.into() })?;
        stream.set_nodelay(true).map_err(|e| ClientError::Connect { addr: addr.to_string(), source: e.into() })?;
        let stream = if tls {
            let config = match options.tls {
                Some(config) => config,
                None => crate::driver::tls::client_config(&TlsClientOptions::default())?,
            };
            secure(stream, config, host(host_port), addr).await?
        } else {
            MaybeTls::Plain(stream)
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(options.read_buffer_bytes)
            .write_buffer_size(0)
            .max_message_size(Some(options.message_bytes_max))
            .max_frame_size(Some(options.message_bytes_max));
        let (ws, _response) = async_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
        let (sink, stream) = ws.split();
        let mut sender = ClientSender { sink };
        let mut receiver = ClientReceiver { stream, codec: Codec::default(), pending: VecDeque::new() };
        sender.send(&[Frame::Hello(Hello { version: PROTOCOL_VERSION, role: Role::Client, node_id: [0; 16] })]).await?;
        let mut frames = VecDeque::from(receiver.recv().await?.unwrap_or_default());
        let params = match frames.pop_front() {
            Some(Frame::HelloReply(params)) => params,
            Some(Frame::Error(e)) => return Err(ClientError::Refused(e)),
            Some(other) => return Err(ClientError::NoHelloReply(format!("frame type {:#04x}", other.type_byte()))),
            None => return Err(ClientError::NoHelloReply("the connection closed".into())),
        };
        // A hostile relay must not size what the client precomputes or weaken its filters' deniability.
        let ws_max = u32::try_from(options.message_bytes_max).unwrap_or(u32::MAX);
        if let Err(e) = check_relay_params(&params, ws_max) {
            let _ = sender.close().await;
            return Err(e.into());
        }
        // From now on decode within what the relay announced.
        receiver.codec = Codec::new(params.limits, params.bloom);
        receiver.pending = frames;
        Ok(Self { sender, receiver, params })
    }

    /// The relay's parameters and limits (from HELLO_REPLY).
    pub fn params(&self) -> &RelayParams {
        &self.params
    }

    /// Sends frames as one message.
    pub async fn send(&mut self, frames: &[Frame]) -> Result<(), ClientError> {
        self.sender.send(frames).await
    }

    /// Receives the next message's frames; `None` once the connection closed.
    pub async fn recv(&mut self) -> Result<Option<Vec<Frame>>, ClientError> {
        self.receiver.recv().await
    }

    /// Sends a close frame (normal closure).
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.sender.close().await
    }

    /// Splits into halves that separate tasks (of this executor) can drive.
    pub fn split(self) -> (ClientSender, ClientReceiver, RelayParams) {
        (self.sender, self.receiver, self.params)
    }
}

/// The TLS handshake as a client, the server name being the URL's host (a DNS name or an IP address).
async fn secure(
    stream: TcpStream,
    config: Arc<rustls::ClientConfig>,
    host: &str,
    addr: SocketAddr,
) -> Result<MaybeTls, ClientError> {
    let name = ServerName::try_from(host.to_owned()).map_err(|_| ClientError::BadUrl(host.to_owned()))?;
    match futures_rustls::TlsConnector::from(config).connect(name, stream).await {
        Ok(mut tls) => {
            // Makes sure the Finished flight has left (the WebSocket request follows in the same direction anyway).
            tls.flush()
                .await
                .map_err(|e| ClientError::TlsHandshake { addr: addr.to_string(), reason: e.to_string() })?;
            Ok(MaybeTls::Client(Box::new(tls)))
        }
        Err(e) => Err(match classify(&e) {
            HandshakeFailure::Untrusted(reason) => ClientError::TlsUntrusted { host: host.to_owned(), reason },
            HandshakeFailure::PinMismatch { expected, got } => {
                ClientError::TlsPinMismatch { host: host.to_owned(), expected, got }
            }
            HandshakeFailure::Other(reason) => ClientError::TlsHandshake { addr: addr.to_string(), reason },
        }),
    }
}

impl ClientSender {
    /// Sends frames as one message.
    pub async fn send(&mut self, frames: &[Frame]) -> Result<(), ClientError> {
        self.send_message(crate::proto::encode_message(frames)).await
    }

    /// Sends an encoded message (one or more frames) as one binary WebSocket message, and flushes it.
    pub async fn send_message(&mut self, message: Bytes) -> Result<(), ClientError> {
        self.sink.send(Message::Binary(message)).await?;
        Ok(())
    }

    /// Sends a close frame (normal closure).
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.sink.close(None).await?;
        Ok(())
    }
}

impl ClientReceiver {
    /// Receives the next message's frames; `None` once the connection closed (close frame or end of stream).
    pub async fn recv(&mut self) -> Result<Option<Vec<Frame>>, ClientError> {
        if !self.pending.is_empty() {
            return Ok(Some(self.pending.drain(..).collect()));
        }
        loop {
            match self.stream.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                // A relay sends binary messages; a text one is decoded the same way (and fails to decode).
                Some(Ok(Message::Binary(bytes))) => return Ok(Some(self.codec.decode_message(&bytes)?)),
                Some(Ok(Message::Text(text))) => return Ok(Some(self.codec.decode_message(&Bytes::from(text))?)),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(authority("ws://127.0.0.1:8100/").unwrap(), "127.0.0.1:8100");
        assert_eq!(authority("ws://127.0.0.1:8100").unwrap(), "127.0.0.1:8100");
        assert_eq!(split_url("wss://relay.example:443/").unwrap(), (true, "relay.example:443"));
        assert_eq!(host("relay.example:443"), "relay.example");
        assert_eq!(host("[::1]:8100"), "::1");
        assert_eq!(host("127.0.0.1:8100"), "127.0.0.1");
        assert!(matches!(authority("wss:///x"), Err(ClientError::BadUrl(_))), "wss URL without a host");
        assert!(matches!(authority("wss://:443/"), Err(ClientError::BadUrl(_))), "wss URL without a host");
        assert!(matches!(authority("https://h:1/"), Err(ClientError::BadUrl(_))));
        assert!(matches!(authority("ws:///x"), Err(ClientError::BadUrl(_))));
        assert_eq!(resolve("ws://127.0.0.1:9/").unwrap(), "127.0.0.1:9".parse().unwrap());
    }
}
