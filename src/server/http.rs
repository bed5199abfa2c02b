//! Just enough HTTP/1.1 for the client port (WebSocket upgrades) and the metrics listener (`GET /metrics`,
//! `GET /healthz`).
//!
//! The driver reads bytes until the end of the request head (at most `REQUEST_HEAD_BYTES_MAX`), calls
//! [`parse_request_head`], then on the client port checks an upgrade with [`check_upgrade`] (the configured
//! path; a browser `Origin` only if allowed) and completes the WebSocket handshake itself (101 +
//! `Sec-WebSocket-Accept`), handing any bytes after the head to the WebSocket layer — or answers with one line
//! (403, 404, 400) and closes. Plain GETs on the client port get [`NOT_ON_CLIENT_PORT`]: metrics are served on
//! their own listener only.

/// Largest request head accepted: far above any browser or client library, small enough to hold per connection.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Most header lines read; more is refused.
const HEADERS_MAX: usize = 64;

/// What a request head asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A WebSocket upgrade (`GET` with `Upgrade: websocket` and a key).
    WebSocket {
        /// Request path.
        path: String,
        /// `Sec-WebSocket-Key`.
        key: String,
        /// `Origin` (browsers send it; native clients do not), as sent.
        origin: Option<String>,
    },
    /// A plain `GET`.
    Get {
        /// Request path without the query string.
        path: String,
    },
}

/// Why a request head was refused (answered with 400 or 405 and closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// No `\r\n\r\n` within `REQUEST_HEAD_BYTES_MAX` bytes.
    #[error("request head too large")]
    HeadTooLarge,
    /// Not UTF-8 or not `METHOD PATH HTTP/1.x`.
    #[error("malformed request line")]
    BadRequestLine,
    /// A method other than GET.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Too many header lines, or one without a colon.
    #[error("malformed headers")]
    BadHeaders,
    /// An upgrade without `Sec-WebSocket-Key` or with a version other than 13, or with two `Origin` headers.
    #[error("bad WebSocket handshake")]
    BadWebSocketHandshake,
}

/// Why a well-formed WebSocket upgrade is refused (answered with [`UpgradeRefusal::status`] and closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeRefusal {
    /// Not the configured WebSocket path.
    #[error("no WebSocket endpoint at this path (the relay's is {expected})")]
    WrongPath {
        /// The configured path.
        expected: String,
    },
    /// A browser origin not in the relay's allow-list: a web page may not drive this relay.
    #[error("origin not allowed (the relay accepts browser origins listed with --allowed-origins only)")]
    OriginNotAllowed,
}

impl UpgradeRefusal {
    /// The HTTP status line of the answer.
    pub fn status(&self) -> &'static str {
        match self {
            Self::WrongPath { .. } => "404 Not Found",
            Self::OriginNotAllowed => "403 Forbidden",
        }
    }
}

/// The one-line answer to a plain GET on the client port (`/metrics` included: it is never served there).
pub const NOT_ON_CLIENT_PORT: &str =
    "not found: this port serves WebSocket only; /metrics and /healthz are on the relay's --metrics-addr\n";

/// Whether an upgrade to `path` from `origin` may proceed: the path must be `websocket_path`, and an origin
/// (compared lower case, without a trailing slash) must be in `allowed_origins` (already normalized by the
/// configuration). A request without `Origin` comes from a native client, which no web page controls.
pub fn check_upgrade(
    path: &str,
    origin: Option<&str>,
    websocket_path: &str,
    allowed_origins: &[String],
) -> Result<(), UpgradeRefusal> {
    if path != websocket_path {
        return Err(UpgradeRefusal::WrongPath { expected: websocket_path.to_owned() });
    }
    match origin {
        None => Ok(()),
        Some(origin) => {
            let origin = origin.trim().trim_end_matches('/');
            if allowed_origins.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin)) {
                Ok(())
            } else {
                Err(UpgradeRefusal::OriginNotAllowed)
            }
        }
    }
}

/// Length of the head (through `\r\n\r\n`) if `buf` holds a complete one.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parses a complete request head (as delimited by [`head_len`]).
pub fn parse_request_head(head: &[u8]) -> Result<Request, HttpError> {
    if head.len() > REQUEST_HEAD_BYTES_MAX {
        return Err(HttpError::HeadTooLarge);
    }
    let text = std::str::from_utf8(head).map_err(|_| HttpError::BadRequestLine)?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().ok_or(HttpError::BadRequestLine)?;
    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(HttpError::BadRequestLine),
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(HttpError::BadRequestLine);
    }
    if method != "GET" {
        return Err(HttpError::MethodNotAllowed);
    }
    let path = target.split('?').next().unwrap_or(target).to_owned();
    let (mut upgrade, mut key, mut ws_version, mut origin, mut origins) = (false, None, None, None, 0);
    for (n, line) in lines.filter(|l| !l.is_empty()).enumerate() {
        if n == HEADERS_MAX {
            return Err(HttpError::BadHeaders);
        }
        let (name, value) = line.split_once(':').ok_or(HttpError::BadHeaders)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade = value.eq_ignore_ascii_case("websocket");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            ws_version = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("origin") {
            origin = Some(value.to_owned());
            origins += 1;
        }
    }
    if !upgrade {
        return Ok(Request::Get { path });
    }
    match (key, ws_version.as_deref()) {
        // Two Origin headers: which one a browser meant is unknowable, so neither is trusted.
        (Some(key), Some("13")) if !key.is_empty() && origins <= 1 => Ok(Request::WebSocket { path, key, origin }),
        _ => Err(HttpError::BadWebSocketHandshake),
    }
}

/// The `101 Switching Protocols` response completing a WebSocket handshake for `key`.
pub fn websocket_accept_response(key: &str) -> String {
    let accept = async_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n")
}

/// A complete response with a body; the connection is closed after it.
pub fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_upgrade_and_plain_get() {
        let ws = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(head_len(ws), Some(ws.len()));
        assert_eq!(
            parse_request_head(ws),
            Ok(Request::WebSocket { path: "/ws".into(), key: "dGhlIHNhbXBsZSBub25jZQ==".into(), origin: None })
        );
        // RFC 6455 §1.3 example.
        assert!(websocket_accept_response("dGhlIHNhbXBsZSBub25jZQ==").contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert_eq!(
            parse_request_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(Request::Get { path: "/metrics".into() })
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(parse_request_head(b"POST / HTTP/1.1\r\n\r\n"), Err(HttpError::MethodNotAllowed));
        assert_eq!(parse_request_head(b"GET\r\n\r\n"), Err(HttpError::BadRequestLine));
        assert_eq!(parse_request_head(b"GET / HTTP/1.1\r\nnocolon\r\n\r\n"), Err(HttpError::BadHeaders));
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"),
            Err(HttpError::BadWebSocketHandshake)
        );
        assert_eq!(head_len(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn origin_is_parsed_and_checked() {
        let head = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\norigin:  https://evil.example \r\n\r\n";
        let Ok(Request::WebSocket { path, origin, .. }) = parse_request_head(head) else { panic!("not an upgrade") };
        assert_eq!((path.as_str(), origin.as_deref()), ("/", Some("https://evil.example")));
        let allowed = ["https://app.example".to_owned()];
        assert_eq!(check_upgrade("/", None, "/", &allowed), Ok(()));
        assert_eq!(check_upgrade("/", Some("https://App.Example/"), "/", &allowed), Ok(()));
        assert_eq!(
            check_upgrade("/", Some("https://evil.example"), "/", &allowed),
            Err(UpgradeRefusal::OriginNotAllowed)
        );
        assert_eq!(check_upgrade("/", Some("null"), "/", &[]), Err(UpgradeRefusal::OriginNotAllowed));
        assert_eq!(
            check_upgrade("/", Some("https://app.example.evil"), "/", &allowed),
            Err(UpgradeRefusal::OriginNotAllowed)
        );
        let wrong = check_upgrade("/ws", None, "/tessera", &allowed).unwrap_err();
        assert_eq!(wrong.status(), "404 Not Found");
        assert!(wrong.to_string().contains("/tessera"));
        assert_eq!(UpgradeRefusal::OriginNotAllowed.status(), "403 Forbidden");
        // Two Origin headers are refused as a bad handshake.
        let two = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\nOrigin: a\r\nOrigin: b\r\n\r\n";
        assert_eq!(parse_request_head(two), Err(HttpError::BadWebSocketHandshake));
        assert!(NOT_ON_CLIENT_PORT.ends_with('\n') && NOT_ON_CLIENT_PORT.lines().count() == 1);
    }
}
