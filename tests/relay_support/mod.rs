//! Test support: a real relay process on 127.0.0.1 with port 0, and a blocking WebSocket client that speaks
//! the native protocol. Everything ends by itself: the relay is killed when the handle drops.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tessera::proto::derive::{bucket_of, fingerprint};
use tessera::proto::frame::{Hello, Publish, Subscribe};
use tessera::proto::{
    BloomFilter, BloomParams, Claim, Codec, Frame, Proof, ProofBatch, RelayParams, Role, SubscribeEntry, SubscriberId,
    SubscriberKeyPair, CIPHERTEXT_LEN, FILTER_FINGERPRINTS_MAX, PROTOCOL_VERSION, WINDOW_SECONDS,
};
use tungstenite::{Message, WebSocket};

/// How long a test waits for any single expected event.
pub const WAIT: Duration = Duration::from_secs(10);

/// A relay process.
pub struct Relay {
    child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    /// `host:port` of its metrics listener (`/metrics`, `/healthz`), from the start line.
    pub metrics_addr: String,
    /// Its storage directory (deleted on drop).
    pub dir: tempfile::TempDir,
    /// The start line it printed.
    pub start_line: String,
}

/// The relay binary: this build's, or `TESSERA_RELAY_BIN` (to run a test against another build, e.g. the one
/// before a fix).
pub fn relay_bin() -> std::path::PathBuf {
    std::env::var_os("TESSERA_RELAY_BIN").map_or_else(|| env!("CARGO_BIN_EXE_tessera").into(), Into::into)
}

impl Relay {
    /// Starts `tessera relay --port 0 --storage <temp>` plus `args`, and waits for its start line.
    pub fn start(args: &[&str]) -> Relay {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, args)
    }

    /// Starts `tessera relay --port 0` plus `args` with `cwd` as its working directory and no `--storage`:
    /// the embedded default `./tessera-data` (what the README's first command does).
    pub fn start_with_default_storage(cwd: tempfile::TempDir, args: &[&str]) -> Relay {
        let child = Command::new(relay_bin())
            .current_dir(cwd.path())
            .args(["relay", "--port", "0", "--cover-traffic-epsilon", "4"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tessera relay");
        Self::from_child(child, cwd)
    }

    /// Same, in a given storage directory (to restart on the same data).
    ///
    /// Cover traffic stays on, at ε = 4 (t = 4: about 26 dummies/s per relay) unless `args` set ε: the default
    /// ε = 0.1 (845 dummies/s) would make every debug-build test relay busy, and tests run many at once.
    pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Relay {
        Self::start_limited(dir, args, None)
    }

    /// Starts like [`start`](Self::start) under RLIMIT_NOFILE = `nofile` (soft and hard).
    pub fn start_with_nofile(args: &[&str], nofile: u64) -> Relay {
        Self::start_limited(tempfile::tempdir().expect("temp dir"), args, Some(nofile))
    }

    fn start_limited(dir: tempfile::TempDir, args: &[&str], nofile: Option<u64>) -> Relay {
        let child = Self::spawn(dir.path(), args, nofile);
        Self::from_child(child, dir)
    }

    /// `tessera relay --port 0 --storage <storage>` plus `args` (light cover unless `args` set ε), under
    /// RLIMIT_NOFILE = `nofile` if given.
    fn spawn(storage: &std::path::Path, args: &[&str], nofile: Option<u64>) -> Child {
        use std::os::unix::process::CommandExt as _;
        let light_cover: &[&str] = if args.iter().any(|a| a.starts_with("--cover-traffic-epsilon")) {
            &[]
        } else {
            &["--cover-traffic-epsilon", "4"]
        };
        let mut command = Command::new(relay_bin());
        if let Some(n) = nofile {
            let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
            // SAFETY: setrlimit is async-signal-safe; it runs in the child between fork and exec.
            unsafe {
                command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
        }
        command
            .arg("relay")
            .args(["--port", "0", "--storage"])
            .arg(storage)
            .args(light_cover)
            .args(args)
            .env("RUST_LOG", std::env::var("TEST_RELAY_LOG").unwrap_or("warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tessera relay")
    }

    /// Starts `tessera relay --port 0 --storage <storage>` plus `args` on a storage directory the caller owns
    /// (a mounted file system, say); `dir` is then an unrelated empty temp dir.
    pub fn start_at(storage: &std::path::Path, args: &[&str]) -> Relay {
        Self::from_child(Self::spawn(storage, args, None), tempfile::tempdir().expect("temp dir"))
    }

    /// The exit status if the process has exited (`None` while it runs).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Reads a started relay's start line.
    fn from_child(mut child: Child, dir: tempfile::TempDir) -> Relay {
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read start line");
        // The first URL of the line: `ws://host:port` (or `wss://host:port` for a relay serving TLS).
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in start line {line:?}"))
            .to_owned();
        // `(metrics http://host:port/metrics)`, or https:// with `--metrics-tls`.
        let metrics_addr = line
            .split("(metrics ")
            .nth(1)
            .and_then(|rest| rest.split("://").nth(1))
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no metrics address in start line {line:?}"))
            .to_owned();
        Relay { child, addr, metrics_addr, dir, start_line: line }
    }

    /// `ws://host:port/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Response to `GET path` on the relay's metrics listener (`/metrics`, `/healthz`).
    pub fn http_get(&self, path: &str) -> String {
        Self::get(&self.metrics_addr, path)
    }

    /// Response to a plain `GET path` on the client port (which serves WebSocket only: 404).
    pub fn client_http_get(&self, path: &str) -> String {
        Self::get(&self.addr, path)
    }

    fn get(addr: &str, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).expect("connect for HTTP");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read HTTP response");
        response
    }

    /// The sum over shards of a metric (`name{shard=...}` lines; extra label filter optional).
    pub fn metric(&self, name: &str, label: &str) -> u64 {
        let text = self.http_get("/metrics");
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Waits until `metric` reaches at least `at_least`.
    pub fn wait_metric(&self, name: &str, label: &str, at_least: u64) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.metric(name, label);
            if value >= at_least || Instant::now() > deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `metric` (all shards) drops below `below`; returns its last value.
    pub fn wait_metric_below(&self, name: &str, below: u64) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.metric(name, "");
            if value < below || Instant::now() > deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Its resident memory (VmRSS), KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("relay status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value")
    }

    /// File descriptors it has open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("relay fd dir").count()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait_exit()
    }

    /// Sends SIGKILL and waits for the process to go.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "relay did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process and hands back its storage directory (for a restart).
    pub fn into_dir(mut self) -> tempfile::TempDir {
        self.kill();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every subscriber key made by `subscriber_for`, by id: `Client` claims an id with it (protocol version 3,
/// docs/PROTOCOL.md §4.12) before its first SUBSCRIBE or FETCH on a connection.
fn keys() -> &'static Mutex<HashMap<SubscriberId, SubscriberKeyPair>> {
    static KEYS: OnceLock<Mutex<HashMap<SubscriberId, SubscriberKeyPair>>> = OnceLock::new();
    KEYS.get_or_init(Mutex::default)
}

/// The subscriber id of the key with secret `secret` (remembered, so that a `Client` can claim it).
pub fn subscriber_for(secret: [u8; 32]) -> SubscriberId {
    let pair = SubscriberKeyPair::from_secret(&secret);
    let id = pair.id();
    keys().lock().expect("key table").insert(id, pair);
    id
}

/// The subscriber id of the key with secret `[n; 32]`.
pub fn subscriber(n: u8) -> SubscriberId {
    subscriber_for([n; 32])
}

/// A blocking native-protocol client.
pub struct Client {
    ws: WebSocket<TcpStream>,
    codec: Codec,
    next_seq: u64,
    /// The relay's node id and this connection's `auth_nonce` (from HELLO_REPLY), once HELLO is done.
    auth: Option<([u8; 16], [u8; 16])>,
    /// Ids claimed on this connection.
    claimed: Vec<SubscriberId>,
}

impl Client {
    /// Connects (no HELLO yet).
    pub fn connect(relay: &Relay) -> Client {
        Self::connect_stream(relay, TcpStream::connect(&relay.addr).expect("connect"))
    }

    /// Connects with a small fixed receive buffer (no auto-tuning), so that a client that stops reading
    /// stops the relay's writes after a few kilobytes instead of tens of megabytes.
    pub fn connect_small_buffer(relay: &Relay, recv_buffer_bytes: usize) -> Client {
        let addr: std::net::SocketAddr = relay.addr.parse().expect("socket address");
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
        socket.set_recv_buffer_size(recv_buffer_bytes).expect("SO_RCVBUF");
        socket.connect(&addr.into()).expect("connect");
        Self::connect_stream(relay, socket.into())
    }

    fn connect_stream(relay: &Relay, stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let (ws, _) = tungstenite::client(relay.url(), stream).expect("WebSocket handshake");
        Client { ws, codec: Codec::default(), next_seq: 1, auth: None, claimed: Vec::new() }
    }

    /// Connects as a browser page of `origin` would (an `Origin` header on the upgrade); the handshake's
    /// error when the relay refuses it.
    pub fn connect_with_origin(relay: &Relay, origin: &str) -> Result<Client, tungstenite::Error> {
        use tungstenite::client::IntoClientRequest as _;
        let stream = TcpStream::connect(&relay.addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut request = relay.url().into_client_request()?;
        request.headers_mut().insert("Origin", origin.parse().expect("header value"));
        let (ws, _) = tungstenite::client(request, stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => tungstenite::Error::ConnectionClosed,
        })?;
        Ok(Client { ws, codec: Codec::default(), next_seq: 1, auth: None, claimed: Vec::new() })
    }

    /// Connects and completes HELLO; returns the relay's parameters.
    pub fn hello(relay: &Relay) -> (Client, RelayParams) {
        Self::hello_on(Self::connect(relay))
    }

    /// Connects and completes HELLO, each step within `timeout`; `None` when the relay refuses the connection
    /// (closes it or never answers).
    pub fn try_hello(relay: &Relay, timeout: Duration) -> Option<Client> {
        let stream = TcpStream::connect(&relay.addr).ok()?;
        stream.set_read_timeout(Some(timeout)).ok()?;
        stream.set_nodelay(true).ok()?;
        let (ws, _) = tungstenite::client(relay.url(), stream).ok()?;
        let mut client = Client { ws, codec: Codec::default(), next_seq: 1, auth: None, claimed: Vec::new() };
        let hello = Frame::Hello(Hello { version: PROTOCOL_VERSION, role: Role::Client, node_id: [0; 16] });
        let bytes = tessera::proto::encode_message(&[hello]).to_vec();
        client.ws.send(Message::binary(bytes)).ok()?;
        match client.try_recv_frames()?.first() {
            Some(Frame::HelloReply(params)) => {
                client.auth = Some((params.node_id, params.auth_nonce));
                client.ws.get_ref().set_read_timeout(Some(WAIT)).ok()?;
                Some(client)
            }
            _ => None,
        }
    }

    /// Completes HELLO on a connected client.
    pub fn hello_on(mut client: Client) -> (Client, RelayParams) {
        client.send(&[Frame::Hello(Hello { version: PROTOCOL_VERSION, role: Role::Client, node_id: [0; 16] })]);
        match client.recv_one() {
            Frame::HelloReply(params) => {
                client.auth = Some((params.node_id, params.auth_nonce));
                (client, params)
            }
            other => panic!("expected HELLO_REPLY, got {other:?}"),
        }
    }

    /// A CLAIM of `id` (made by `subscriber_for`) for this connection, as its HELLO_REPLY asks.
    pub fn claim_frame(&self, id: SubscriberId) -> Claim {
        let (node_id, nonce) = self.auth.expect("HELLO done before a claim");
        let keys = keys().lock().expect("key table");
        let pair = keys.get(&id).expect("a subscriber id made by subscriber_for");
        pair.claim(&node_id, &nonce, &[0; 32])
    }

    /// Claims `id` on this connection (silent when valid), unless it already did.
    pub fn claim(&mut self, id: SubscriberId) {
        if !self.claimed.contains(&id) {
            let claim = self.claim_frame(id);
            self.send(&[Frame::Claim(claim)]);
            self.claimed.push(id);
        }
    }

    /// The underlying socket (to change timeouts or buffer sizes).
    pub fn socket(&self) -> &TcpStream {
        self.ws.get_ref()
    }

    /// The WebSocket itself (raw messages, pings).
    pub fn ws_mut(&mut self) -> &mut WebSocket<TcpStream> {
        &mut self.ws
    }

    /// Sends frames as one message.
    pub fn send(&mut self, frames: &[Frame]) {
        self.send_raw(tessera::proto::encode_message(frames).to_vec());
    }

    /// Sends raw bytes as one binary message.
    pub fn send_raw(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).expect("send");
    }

    /// Publishes proofs with the next sequence number; returns it.
    pub fn publish(&mut self, proofs: &[Proof]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let proofs = ProofBatch::from_proofs(proofs.iter().map(|p| p.view()));
        self.send(&[Frame::Publish(Publish { seq, proofs })]);
        seq
    }

    /// Publishes like [`publish`](Self::publish); `false` if the connection is gone (the relay died).
    pub fn try_publish(&mut self, proofs: &[Proof]) -> bool {
        let seq = self.next_seq;
        self.next_seq += 1;
        let proofs = ProofBatch::from_proofs(proofs.iter().map(|p| p.view()));
        let message = tessera::proto::encode_message(&[Frame::Publish(Publish { seq, proofs })]);
        self.ws.send(Message::binary(message.to_vec())).is_ok()
    }

    /// Receives one message's frames; `None` on close or any error (the relay died).
    pub fn try_recv_frames(&mut self) -> Option<Vec<Frame>> {
        loop {
            match self.ws.read() {
                Ok(Message::Binary(bytes)) => return self.codec.decode_message(&bytes).ok(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Subscribes (claiming the id first on this connection) and waits for SUBSCRIBED; returns the entry count.
    pub fn subscribe(&mut self, subscriber: SubscriberId, entries: Vec<SubscribeEntry>) -> u16 {
        self.claim(subscriber);
        self.send(&[Frame::Subscribe(Subscribe { subscriber, entries })]);
        match self.recv_until(|f| matches!(f, Frame::Subscribed { .. } | Frame::Error(_))) {
            Frame::Subscribed { entries, .. } => entries,
            other => panic!("expected SUBSCRIBED, got {other:?}"),
        }
    }

    /// Receives one message's frames (fails the test after `WAIT`).
    pub fn recv(&mut self) -> Vec<Frame> {
        self.try_recv().unwrap_or_else(|| panic!("connection closed while waiting"))
    }

    /// Receives one message's frames; `None` if the connection closed.
    pub fn try_recv(&mut self) -> Option<Vec<Frame>> {
        loop {
            match self.ws.read() {
                Ok(Message::Binary(bytes)) => {
                    return Some(self.codec.decode_message(&bytes).expect("relay sent a valid message"))
                }
                Ok(Message::Close(_)) => return None,
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return None,
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    panic!("timed out waiting for a message")
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                    panic!("timed out waiting for a message")
                }
                Err(e) => panic!("receive failed: {e}"),
            }
        }
    }

    /// Receives until the close frame; returns its code (`None` if the socket just ended).
    pub fn recv_close(&mut self) -> Option<u16> {
        loop {
            match self.ws.read() {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Receives one message's frames if one arrives within `timeout` (`None`: nothing arrived); fails the test
    /// if the connection closed. The read timeout is `WAIT` again afterwards.
    pub fn recv_within(&mut self, timeout: Duration) -> Option<Vec<Frame>> {
        self.socket().set_read_timeout(Some(timeout)).unwrap();
        let got = loop {
            match self.ws.read() {
                Ok(Message::Binary(bytes)) => {
                    break Some(self.codec.decode_message(&bytes).expect("relay sent a valid message"))
                }
                Ok(Message::Close(_)) => panic!("the relay closed the connection"),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    break None
                }
                Err(e) => panic!("receive failed (did the relay exit?): {e}"),
            }
        };
        self.socket().set_read_timeout(Some(WAIT)).unwrap();
        got
    }

    /// Receives exactly one frame (asserts the message held one).
    pub fn recv_one(&mut self) -> Frame {
        let mut frames = self.recv();
        assert_eq!(frames.len(), 1, "expected one frame, got {frames:?}");
        frames.remove(0)
    }

    /// Receives until a frame matches; frames before it are dropped.
    pub fn recv_until(&mut self, matches: impl Fn(&Frame) -> bool) -> Frame {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "frame not received in time");
            for frame in self.recv() {
                if matches(&frame) {
                    return frame;
                }
            }
        }
    }

    /// Receives DELIVER frames until `n` proofs arrived for `subscriber`; returns them in order.
    pub fn recv_proofs(&mut self, subscriber: SubscriberId, n: usize) -> Vec<Bytes> {
        let mut got = Vec::new();
        while got.len() < n {
            for frame in self.recv() {
                if let Frame::Deliver { subscriber: s, proofs } = frame {
                    assert_eq!(s, subscriber, "DELIVER for another subscriber");
                    got.extend((0..proofs.len()).map(|i| proofs.proof_bytes(i)));
                }
            }
        }
        got
    }

    /// One FETCH (claiming the id first on this connection): returns (proofs, next cursor, more).
    pub fn fetch(&mut self, subscriber: SubscriberId, cursor: u64, proofs_max: u16) -> (Vec<Bytes>, u64, bool) {
        self.claim(subscriber);
        self.send(&[Frame::Fetch { subscriber, cursor, proofs_max }]);
        match self.recv_until(|f| matches!(f, Frame::FetchReply { .. } | Frame::Error(_))) {
            Frame::FetchReply { next_cursor, more, proofs, .. } => {
                ((0..proofs.len()).map(|i| proofs.proof_bytes(i)).collect(), next_cursor, more)
            }
            other => panic!("expected FETCH_REPLY, got {other:?}"),
        }
    }

    /// FETCHes pages from `cursor` until `more` is false; returns every proof and the final cursor.
    pub fn fetch_all(&mut self, subscriber: SubscriberId, mut cursor: u64, page: u16) -> (Vec<Bytes>, u64) {
        let mut all = Vec::new();
        for _ in 0..100_000 {
            let (proofs, next, more) = self.fetch(subscriber, cursor, page);
            all.extend(proofs);
            cursor = next;
            if !more {
                return (all, cursor);
            }
        }
        panic!("FETCH never finished");
    }

    /// Closes the connection politely.
    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}

/// Unix seconds now.
pub fn now_s() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

/// The current window start.
pub fn current_window() -> u64 {
    tessera::proto::window_start(now_s(), WINDOW_SECONDS)
}

/// `count` deterministic commits whose bucket (of 64) is `bucket`, distinct for distinct `salt`s.
pub fn commits_in_bucket(bucket: u16, salt: u32, count: usize) -> Vec<[u8; 32]> {
    (0u64..)
        .map(|i| {
            let mut commit = [0u8; 32];
            commit[..8].copy_from_slice(&i.to_be_bytes());
            commit[8..12].copy_from_slice(&salt.to_be_bytes());
            commit[12..14].copy_from_slice(&bucket.to_be_bytes());
            commit
        })
        .filter(|c| bucket_of(c, 64) == bucket)
        .take(count)
        .collect()
}

/// One deterministic commit in `bucket`; different `salt`s give different commits.
pub fn commit_in_bucket(bucket: u16, salt: u32) -> [u8; 32] {
    commits_in_bucket(bucket, salt, 1)[0]
}

/// A valid proof for `commit` in window `window_start_s`; the ciphertext is filled with `fill`.
pub fn proof(commit: &[u8; 32], window_start_s: u64, fill: u8) -> Proof {
    let bucket = bucket_of(commit, 64);
    Proof::new(bucket, window_start_s, commit, &fingerprint(commit, window_start_s), &[fill; CIPHERTEXT_LEN])
}

/// A subscription entry for `bucket` over windows `[from, to]` matching these commits in the windows a test
/// publishes in: the previous, the current and the next window (those of `[from, to]`). A filter holds at most
/// `FILTER_FINGERPRINTS_MAX` (60) fingerprints — the relay refuses one with more bits set (FILTER_SATURATED) —
/// so it cannot hold every window of a long range, and neither does a real client's (it renews instead).
pub fn entry(bucket: u16, from: u64, to: u64, commits: &[[u8; 32]]) -> SubscribeEntry {
    let now = current_window();
    let windows: Vec<u64> = (from..=to)
        .step_by(WINDOW_SECONDS as usize)
        .filter(|w| (now - WINDOW_SECONDS..=now + WINDOW_SECONDS).contains(w))
        .collect();
    assert!(
        windows.len() * commits.len() <= FILTER_FINGERPRINTS_MAX as usize,
        "{} commits × {} windows do not fit one filter: use entries_matching",
        commits.len(),
        windows.len()
    );
    let mut filter = BloomFilter::new(BloomParams::default());
    for w in windows {
        for c in commits {
            filter.insert_fingerprint(&fingerprint(c, w));
        }
    }
    SubscribeEntry { bucket, window_from_s: from, window_to_s: to, filter }
}

/// Legitimate entries matching exactly these proofs (plus Bloom false positives) over windows `[from, to]`,
/// dealt to as many subscriber ids as the relay's default limits need: per bucket, filters of at most
/// `FILTER_FINGERPRINTS_MAX` of the proofs' own fingerprints; per subscriber id, at most
/// `filters_per_bucket_max` (4) of them per bucket. What tests use instead of a filter matching everything.
pub fn entries_matching(proofs: &[Proof], from: u64, to: u64) -> Vec<Vec<SubscribeEntry>> {
    let per_bucket_max = tessera::proto::Limits::default().filters_per_bucket_max as usize;
    let mut by_bucket: std::collections::BTreeMap<u16, Vec<[u8; 8]>> = Default::default();
    for p in proofs {
        by_bucket.entry(p.view().bucket()).or_default().push(*p.view().fingerprint());
    }
    let mut slots: Vec<Vec<SubscribeEntry>> = Vec::new();
    for (bucket, fps) in by_bucket {
        for (i, group) in fps.chunks(FILTER_FINGERPRINTS_MAX as usize).enumerate() {
            let mut filter = BloomFilter::new(BloomParams::default());
            group.iter().for_each(|fp| filter.insert_fingerprint(fp));
            let slot = i / per_bucket_max;
            if slots.len() <= slot {
                slots.resize_with(slot + 1, Vec::new);
            }
            slots[slot].push(SubscribeEntry { bucket, window_from_s: from, window_to_s: to, filter });
        }
    }
    slots
}

/// An entry whose filter has every bit set: it would match every proof of its bucket. The relay refuses it
/// (ERROR FILTER_SATURATED); for tests of that refusal.
pub fn match_all_entry(bucket: u16, from: u64, to: u64) -> SubscribeEntry {
    let filter = BloomFilter::from_bytes(BloomParams::default(), &[0xFF; 128]).unwrap();
    SubscribeEntry { bucket, window_from_s: from, window_to_s: to, filter }
}

/// The commit (bytes 12..44) of each proof, for set comparisons.
pub fn commits(proofs: &[bytes::Bytes]) -> std::collections::HashSet<[u8; 32]> {
    proofs.iter().map(|p| p[12..44].try_into().unwrap()).collect()
}
