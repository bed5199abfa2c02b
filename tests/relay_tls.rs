//! TLS end to end with the real binary on loopback: `cert new`, a relay serving wss://, the client commands
//! over wss:// with `--tls-ca` or `--tls-pin` (and their typed failures), a plain client on the TLS port and a
//! TLS client on a plain port (both fail cleanly, the relay stays up), a handshake that never completes (ended
//! by the HTTP deadline), and the start-up refusals (non-loopback without TLS, a key that does not match).

mod relay_support;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use relay_support::{relay_bin, Relay, WAIT};

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera")).args(args).env_remove("TESSERA_HOME").output().expect("tessera runs")
}

fn ok(args: &[&str]) -> String {
    let out = tessera(args);
    assert!(out.status.success(), "tessera {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 stdout")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// `cert new --host 127.0.0.1 --out dir`: (cert path, key path, pin).
fn cert_new(dir: &Path) -> (String, String, String) {
    let out = ok(&["cert", "new", "--host", "127.0.0.1", "--out", path(dir)]);
    let field = |name: &str| {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {out}"));
        line.split_whitespace().last().unwrap().to_owned()
    };
    (field("certificate:"), field("key:"), field("pin:"))
}

/// Alice and Bob (unencrypted keys) enrolled both ways with invites naming `url`.
fn enrol(dir: &Path, url: &str, ca: &str) -> (String, String) {
    let (a, b) = (path(&dir.join("alice")).to_owned(), path(&dir.join("bob")).to_owned());
    ok(&["id", "new", "--home", &a]);
    ok(&["id", "new", "--home", &b]);
    let code_a = ok(&["invite", "--home", &a, "--relay", url]).trim().to_owned();
    let code_b = ok(&["invite", "--home", &b, "--relay", url]).trim().to_owned();
    ok(&["enroll", &code_a, "--name", "alice", "--home", &b, "--tls-ca", ca]);
    ok(&["enroll", &code_b, "--name", "bob", "--home", &a, "--tls-ca", ca]);
    (a, b)
}

fn tls_relay(cert: &str, key: &str, extra: &[&str]) -> Relay {
    Relay::start(&[&["--tls-cert", cert, "--tls-key", key][..], extra].concat())
}

#[test]
fn clients_talk_over_wss_with_a_ca_or_a_pin_and_fail_typed_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key, pin) = cert_new(&tmp.path().join("tls"));
    let (other_cert, _, other_pin) = cert_new(&tmp.path().join("other"));
    assert_ne!(pin, other_pin);
    let mut relay = tls_relay(&cert, &key, &[]);
    assert!(relay.start_line.contains(&format!("wss://{}", relay.addr)), "{}", relay.start_line);
    let url = format!("wss://{}/", relay.addr);
    let (a, b) = enrol(tmp.path(), &url, &cert);

    // Bob registers with the CA; Alice sends with the CA; Bob receives with the pin and no CA.
    assert_eq!(ok(&["recv", "--home", &b, "--tls-ca", &cert]), "");
    let sent = ok(&["send", "--to", "bob", "over tls", "--home", &a, "--tls-ca", &cert]);
    assert!(sent.contains("acknowledged as durable"), "{sent}");
    let got = ok(&["recv", "--home", &b, "--tls-pin", &pin]);
    assert!(got.ends_with("alice: over tls\n"), "{got:?}");

    // A CA that did not sign the relay's certificate: typed, no retry, exit 1.
    let wrong_ca = tessera(&["send", "--to", "bob", "x", "--home", &a, "--tls-ca", &other_cert]);
    assert_eq!(wrong_ca.status.code(), Some(1));
    let err = String::from_utf8_lossy(&wrong_ca.stderr);
    assert!(err.contains("is not trusted") && err.contains("--tls-ca"), "{err}");
    // No CA at all: the system roots do not know a self-signed certificate either.
    let no_ca = tessera(&["recv", "--home", &b]);
    assert!(String::from_utf8_lossy(&no_ca.stderr).contains("is not trusted"), "{:?}", no_ca);
    // A wrong pin, even with the right CA: the pin decides.
    let wrong_pin = tessera(&["recv", "--home", &b, "--tls-ca", &cert, "--tls-pin", &other_pin]);
    assert_eq!(wrong_pin.status.code(), Some(1));
    let err = String::from_utf8_lossy(&wrong_pin.stderr);
    assert!(err.contains(&format!("is {pin}, not the pinned {other_pin}")), "{err}");
    let bad_pin = tessera(&["recv", "--home", &b, "--tls-pin", "abc"]);
    assert_eq!(bad_pin.status.code(), Some(2), "a malformed pin is a usage error");

    // A plain ws:// client on the TLS port fails (no 101), and the relay keeps serving.
    let plain = tungstenite::connect(format!("ws://{}/", relay.addr));
    assert!(plain.is_err(), "a plain WebSocket upgrade on the TLS port must fail");
    assert!(relay.exited().is_none(), "the relay stays up");
    assert!(ok(&["send", "--to", "bob", "still up", "--home", &a, "--tls-pin", &pin]).contains("acknowledged"));
}

/// An invite that pins the relay's certificate is enough: no `--tls-ca`, no `--tls-pin` on any command; an
/// invite pinning another certificate makes the commands refuse the relay.
#[test]
fn a_pin_in_the_invite_is_checked_without_any_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key, _) = cert_new(&tmp.path().join("tls"));
    let (other_cert, _, other_pin) = cert_new(&tmp.path().join("other"));
    let relay = tls_relay(&cert, &key, &[]);
    let url = format!("wss://{}/", relay.addr);
    let (a, b) = (path(&tmp.path().join("alice")).to_owned(), path(&tmp.path().join("bob")).to_owned());
    ok(&["id", "new", "--home", &a]);
    ok(&["id", "new", "--home", &b]);
    let pinned = format!("{url}={cert}");
    let code_a = ok(&["invite", "--home", &a, "--relay", &url, "--relay-cert", &pinned]).trim().to_owned();
    let code_b = ok(&["invite", "--home", &b, "--relay", &url, "--relay-cert", &pinned]).trim().to_owned();
    ok(&["enroll", &code_a, "--name", "alice", "--home", &b]);
    ok(&["enroll", &code_b, "--name", "bob", "--home", &a]);
    assert_eq!(ok(&["recv", "--home", &b]), "");
    assert!(ok(&["send", "--to", "bob", "pinned by invite", "--home", &a]).contains("acknowledged as durable"));
    assert!(ok(&["recv", "--home", &b]).ends_with("alice: pinned by invite\n"));

    // Carol enrols an invite of Alice's pinning another certificate for the same URL: refused, typed.
    let c = path(&tmp.path().join("carol")).to_owned();
    ok(&["id", "new", "--home", &c]);
    let wrong = format!("{url}={other_cert}");
    let code_wrong = ok(&["invite", "--home", &a, "--relay", &url, "--relay-cert", &wrong]).trim().to_owned();
    let _ = tessera(&["enroll", &code_wrong, "--name", "alice", "--home", &c]);
    let refused = tessera(&["recv", "--home", &c]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains(&format!("not the pinned {other_pin}")), "{err}");
}

#[test]
fn a_tls_client_on_a_plain_port_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, _, _) = cert_new(&tmp.path().join("tls"));
    let mut relay = Relay::start(&[]);
    let (a, _) = enrol(tmp.path(), &relay.url(), &cert);
    let wss = format!("wss://{}/", relay.addr);
    let out = tessera(&["send", "--to", "bob", "x", "--home", &a, "--relay", &wss, "--tls-ca", &cert]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS handshake with"), "{err}");
    assert!(relay.exited().is_none());
    assert!(ok(&["send", "--to", "bob", "plain", "--home", &a]).contains("acknowledged"));
}

#[test]
fn a_handshake_that_never_completes_is_ended_by_the_http_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key, _) = cert_new(&tmp.path().join("tls"));
    let relay = tls_relay(&cert, &key, &["--http-timeout-ms", "500"]);
    // Sockets only: the log opens its segment files lazily, which would move a count of all descriptors.
    let sockets = || {
        std::fs::read_dir(format!("/proc/{}/fd", relay.pid()))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    };
    let before = sockets();
    // Half a ClientHello record header, then silence.
    let stalled: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(&relay.addr).unwrap();
            s.write_all(&[0x16, 0x03, 0x01]).unwrap();
            s
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    let mut peak = 0;
    while peak < before + 20 && Instant::now() < deadline {
        peak = peak.max(sockets());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(peak >= before + 20, "the relay accepted the stalled sockets: {before} → {peak}");
    while sockets() > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = sockets();
    assert!(after <= before, "stalled TLS handshakes were closed at the deadline: {before} → {peak} → {after}");
    // And the peer sees the close.
    let mut s = &stalled[0];
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(std::io::Read::read(&mut s, &mut buf), Ok(0) | Err(_)));
}

#[test]
fn start_up_refusals_are_one_line_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = tmp.path().join("data");
    let run = |args: &[&str]| {
        Command::new(relay_bin())
            .args([&["relay", "--port", "0", "--storage", path(&storage)][..], args].concat())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let one_line = |o: &Output| {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(err.lines().count(), 1, "{err}");
        err
    };
    let open = run(&["--host", "0.0.0.0"]);
    assert_eq!(open.status.code(), Some(2));
    assert!(one_line(&open).contains("--danger-plaintext"));

    let (cert, _, _) = cert_new(&tmp.path().join("a"));
    let (_, other_key, _) = cert_new(&tmp.path().join("b"));
    let mismatch = run(&["--tls-cert", &cert, "--tls-key", &other_key]);
    assert_eq!(mismatch.status.code(), Some(2));
    assert!(one_line(&mismatch).contains("does not match"));
    let missing = run(&["--tls-cert", "/nonexistent/cert.pem", "--tls-key", &other_key]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(one_line(&missing).contains("/nonexistent/cert.pem"));
    let not_pem = run(&["--tls-cert", path(&tmp.path().join("a")), "--tls-key", &other_key]);
    assert_eq!(not_pem.status.code(), Some(2), "a directory is no certificate");

    // With the danger flag it starts (and says so on its start line).
    let relay = Relay::start(&["--host", "0.0.0.0", "--danger-plaintext"]);
    assert!(relay.start_line.contains("ws://0.0.0.0:") && relay.start_line.contains("plaintext=DANGER"));
}

#[test]
fn metrics_tls_serves_https_on_the_metrics_listener() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key, _) = cert_new(&tmp.path().join("tls"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut relay = tls_relay(&cert, &key, &["--metrics-addr", &format!("127.0.0.1:{port}"), "--metrics-tls"]);
    assert!(relay.start_line.contains(&format!("https://127.0.0.1:{port}/metrics")), "{}", relay.start_line);
    // Plain HTTP gets no answer: the TLS layer refuses the bytes and the socket closes.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    plain.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/1.1"), "plain HTTP answered on a TLS metrics port");
    // HTTPS, trusting the relay's certificate.
    let options = tessera::driver::tls::TlsClientOptions { ca_file: Some(cert.into()), pin: None };
    let config = tessera::driver::tls::client_config(&options).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, socket);
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = Vec::new();
    let _ = tls.read_to_end(&mut body);
    let body = String::from_utf8_lossy(&body);
    assert!(body.starts_with("HTTP/1.1 200") && body.contains("tessera_"), "{body}");
    assert!(relay.exited().is_none());
}
