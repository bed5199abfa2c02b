//! A deliberately small blocking WebSocket client for the hostile load (`super`): plain `std` sockets bound to
//! a chosen source address, the HTTP upgrade, masked binary frames out and unmasked frames in.
//!
//! ```text
//! connect_from(source, relay) ─▶ upgrade ─▶ send_binary(encoded frames)* ─▶ recv ─▶ Binary | Close | Other
//! ```
//! Attackers need what the real client never does — connections that stop after the upgrade, writers that never
//! read, thousands of sockets from several source addresses on one thread — so they do not use the async client
//! (`driver::client`). Nothing here validates the relay's answers beyond what the attack needs: this is a load
//! tool, not a conforming client.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

/// Largest upgrade answer we read before giving up on it (the relay's is ~130 B).
const RESPONSE_HEAD_BYTES_MAX: usize = 4096;

/// A TCP connection from `source` (port chosen by the kernel) to `relay`.
pub fn connect_from(source: IpAddr, relay: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(relay), Type::STREAM, None)?;
    socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
    socket.connect_timeout(&SockAddr::from(relay), timeout)?;
    Ok(socket.into())
}

/// Sends the HTTP upgrade request and reads the answer's head; `Ok` only for `101 Switching Protocols`.
pub fn upgrade(stream: &mut TcpStream, relay: SocketAddr) -> io::Result<()> {
    // A fixed key is fine: the relay answers with its hash and we do not check it.
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {relay}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= RESPONSE_HEAD_BYTES_MAX {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "upgrade answer head too long"));
        }
        stream.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    if head.starts_with(b"HTTP/1.1 101") {
        Ok(())
    } else {
        let line = String::from_utf8_lossy(head.split(|&b| b == b'\r').next().unwrap_or_default()).into_owned();
        Err(io::Error::new(io::ErrorKind::ConnectionRefused, line))
    }
}

/// One masked binary WebSocket frame carrying `payload` (one whole message).
pub fn binary_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x82); // FIN + binary
    let len = payload.len();
    if len < 126 {
        frame.push(0x80 | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&len16.to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    // An all-zero masking key is legal (RFC 6455 §5.3) and leaves the payload as it is.
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(payload);
    frame
}

/// What [`recv`] read.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// A binary message's payload.
    Binary(Vec<u8>),
    /// A close frame (its code, if any).
    Close(Option<u16>),
    /// Anything else (ping, pong, text, continuation): skipped by the attackers.
    Other,
}

/// Reads one WebSocket frame of at most `payload_bytes_max` payload bytes.
pub fn recv(stream: &mut TcpStream, payload_bytes_max: usize) -> io::Result<Message> {
    let mut header = [0u8; 2];
    stream.read_exact(&mut header)?;
    let opcode = header[0] & 0x0F;
    let len = match header[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        short => u64::from(short),
    };
    if header[1] & 0x80 != 0 || len > payload_bytes_max as u64 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "masked or oversized frame from the relay"));
    }
    // Bounded by `payload_bytes_max` just above.
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload)?;
    Ok(match opcode {
        0x2 => Message::Binary(payload),
        0x8 => Message::Close(payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))),
        _ => Message::Other,
    })
}

/// Whether the relay has closed `stream` (or sent it something, which for an idle attacker means an HTTP answer
/// before the close). Non-blocking: the stream must be in non-blocking mode.
pub fn relay_hung_up(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 512];
    match stream.peek(&mut buf) {
        Ok(_) => true, // 0 = closed; > 0 = an answer (400, or a close frame) that ends the connection
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths_use_the_three_encodings() {
        assert_eq!(&binary_frame(&[7; 5])[..2], &[0x82, 0x85]);
        let medium = binary_frame(&[0; 300]);
        assert_eq!(&medium[..4], &[0x82, 0x80 | 126, 0x01, 0x2C]);
        assert_eq!(medium.len(), 4 + 4 + 300);
        let large = binary_frame(&vec![0; 70_000]);
        assert_eq!(large[1], 0x80 | 127);
        assert_eq!(u64::from_be_bytes(large[2..10].try_into().unwrap()), 70_000);
    }
}
