//! The socket as the WebSocket layer reads it: a large frame's header is handed over only once the frame's
//! whole payload has arrived, so a header declaring a length cannot make the relay reserve that much memory.
//!
//! ```text
//! socket ─read─▶ FrameGate ─▶ tungstenite (WebSocketStream)
//!   at a frame boundary: parse the header (2–14 bytes, held until complete)
//!     payload ≤ PASS_BYTES, or over `message_bytes_max` ─▶ passed on as it arrives (tungstenite refuses an
//!                                                          oversized one from its header: close 1009)
//!     larger ─▶ held here, growing with the bytes received, until the frame is complete ─▶ passed on whole
//!   inside a passed frame: payload bytes go straight into the caller's buffer (no copy)
//! writes ─▶ the socket, unchanged
//! ```
//! Why: tungstenite reserves a frame's declared length as soon as it parses the header (up to
//! `max_frame_size`, 1 MiB here), and that buffer becomes resident (measured: ~0.9 MiB per connection that
//! declared 1 MiB and sent 100 bytes; tests/relay_exhaustion.rs). Held here, a frame costs what its sender
//! actually sent. A legitimate large message is copied once more, whole (≈ 50 µs for a full PUBLISH).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};

/// Frames with at most this much payload are passed on as their bytes arrive (what tungstenite may reserve
/// ahead of the bytes, per connection).
pub const PASS_BYTES: u64 = 64 * 1024;
/// Bytes read from the socket at once into the gate's own buffer (headers, held frames).
const READ_BYTES: usize = 16 * 1024;

/// See the module docs.
pub struct FrameGate<S> {
    inner: S,
    /// Bytes read from the socket and not yet passed on: a partial header, or a held frame.
    pending: Vec<u8>,
    /// Bytes of the current frame (header included) that may still be passed on without looking at them.
    frame_left: u64,
    /// Frames declaring more than this are passed on at once (tungstenite refuses them from the header).
    message_bytes_max: u64,
}

/// A complete frame header at the start of `bytes`: (header length, payload length), or `None` if incomplete.
fn parse_header(bytes: &[u8]) -> Option<(u64, u64)> {
    let second = *bytes.get(1)?;
    let mask_len = if second & 0x80 != 0 { 4 } else { 0 };
    let (ext_len, short) = match second & 0x7F {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let header_len = 2 + ext_len + mask_len;
    if bytes.len() < header_len {
        return None;
    }
    let payload_len = short.unwrap_or_else(|| bytes[2..2 + ext_len].iter().fold(0u64, |n, &b| (n << 8) | u64::from(b)));
    Some((header_len as u64, payload_len))
}

impl<S> FrameGate<S> {
    /// A gate over `inner`; `leftover` are bytes already read after the HTTP request head (they go through
    /// the gate too).
    pub fn new(inner: S, leftover: Vec<u8>, message_bytes_max: u64) -> Self {
        Self { inner, pending: leftover, frame_left: 0, message_bytes_max }
    }

    /// Bytes at the front of `pending` that may be passed on now; moves frame boundaries forward.
    fn releasable(&mut self) -> usize {
        loop {
            if self.frame_left > 0 {
                return self.pending.len().min(self.frame_left.try_into().unwrap_or(usize::MAX));
            }
            let Some((header_len, payload_len)) = parse_header(&self.pending) else { return 0 };
            let total = header_len.saturating_add(payload_len);
            let complete = self.pending.len() as u64 >= total;
            if payload_len <= PASS_BYTES || payload_len > self.message_bytes_max || complete {
                self.frame_left = total;
                if total == 0 {
                    return 0; // unreachable: a header is at least 2 bytes
                }
                continue;
            }
            return 0; // a large frame not complete yet: hold it
        }
    }

    /// Passes `n` bytes of `pending` into `buf`.
    fn pass(&mut self, buf: &mut [u8], n: usize) -> usize {
        let n = n.min(buf.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        self.frame_left -= n as u64;
        if self.pending.is_empty() && self.pending.capacity() > READ_BYTES {
            self.pending = Vec::new(); // a held frame's buffer goes with it
        }
        n
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameGate<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            let n = this.releasable();
            if n > 0 {
                return Poll::Ready(Ok(this.pass(buf, n)));
            }
            if this.pending.is_empty() && this.frame_left > 0 {
                // Inside a frame that passes: read its payload straight into the caller's buffer.
                let limit = buf.len().min(this.frame_left.try_into().unwrap_or(usize::MAX));
                let read = std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf[..limit]))?;
                this.frame_left -= read as u64;
                return Poll::Ready(Ok(read));
            }
            // A header to complete or a frame to hold: read into our own buffer.
            let start = this.pending.len();
            this.pending.resize(start + READ_BYTES, 0);
            let read = Pin::new(&mut this.inner).poll_read(cx, &mut this.pending[start..]);
            let read = match read {
                Poll::Ready(Ok(n)) => n,
                other => {
                    this.pending.truncate(start);
                    return other;
                }
            };
            this.pending.truncate(start + read);
            if read == 0 {
                return Poll::Ready(Ok(0)); // EOF: an incomplete header or frame is dropped
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameGate<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads everything the gate passes on for `input` arriving in `chunks`-byte pieces; returns what came
    /// out after each piece.
    fn run(input: &[u8], chunk: usize, max: u64) -> Vec<usize> {
        let mut gate = FrameGate::new(futures_lite::io::Cursor::new(Vec::new()), Vec::new(), max);
        let mut out_after = Vec::new();
        let mut total_out = 0;
        for piece in input.chunks(chunk) {
            gate.inner.get_mut().extend_from_slice(piece);
            let mut buf = [0u8; 4096];
            loop {
                let n = futures_lite::future::block_on(futures_lite::AsyncReadExt::read(&mut gate, &mut buf)).unwrap();
                if n == 0 {
                    break;
                }
                total_out += n;
            }
            out_after.push(total_out);
        }
        out_after
    }

    fn frame(payload_len: usize, masked: bool) -> Vec<u8> {
        let mut f = vec![0x82];
        let mask = if masked { 0x80 } else { 0 };
        match payload_len {
            0..=125 => f.push(mask | payload_len as u8),
            126..=65535 => {
                f.push(mask | 126);
                f.extend_from_slice(&(payload_len as u16).to_be_bytes());
            }
            _ => {
                f.push(mask | 127);
                f.extend_from_slice(&(payload_len as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend(std::iter::repeat_n(7u8, payload_len));
        f
    }

    #[test]
    fn headers_parse_in_all_three_length_forms() {
        assert_eq!(parse_header(&frame(5, true)), Some((6, 5)));
        assert_eq!(parse_header(&frame(300, false)), Some((4, 300)));
        assert_eq!(parse_header(&frame(70_000, true)), Some((14, 70_000)));
        assert_eq!(parse_header(&frame(70_000, true)[..13]), None);
        assert_eq!(parse_header(&[0x82]), None);
    }

    #[test]
    fn small_frames_pass_as_they_arrive_and_large_ones_only_whole() {
        let small = frame(1000, true);
        assert_eq!(run(&small, 100, 1 << 20).first(), Some(&100), "a small frame passes at once");
        let large = frame(200_000, true);
        let out = run(&large, 16_384, 1 << 20);
        assert!(out[..out.len() - 1].iter().all(|&n| n == 0), "held until complete: {out:?}");
        assert_eq!(out.last(), Some(&large.len()));
        // Over the message limit: the header passes at once, for the WebSocket layer to refuse.
        let over = frame(2 << 20, true);
        assert!(run(&over[..64], 64, 1 << 20)[0] >= 14);
        // Frames back to back, split anywhere.
        let mut both = frame(200_000, true);
        both.extend(frame(10, true));
        assert_eq!(run(&both, 7_777, 1 << 20).last(), Some(&both.len()));
    }
}
