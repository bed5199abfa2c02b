//! `tessera cert new`: a self-signed TLS certificate and key for a relay (tests and small deployments), and the
//! TLS options every client command that connects shares (`--tls-ca`, `--tls-pin`).
//!
//! ```text
//! cert new --host NAME --out DIR [--force]
//!   NAME ─▶ SAN (an IP address if it parses as one, else a DNS name) ─▶ rcgen: ECDSA P-256 key, self-signed
//!   ─▶ DIR/cert.pem (0644), DIR/key.pem (0600, created with that mode: never readable by others, not even
//!      briefly) ─▶ prints both paths and the pin: SHA-256 of the certificate's DER, 64 lowercase hex digits
//! client commands: --tls-ca FILE, --tls-pin HEX (else the pin of an enrolled invite for that URL)
//!   ─▶ TlsClientOptions ─▶ SessionOptions::tls
//! ```
//! Existing files are never overwritten without `--force` (a relay's key replaced by mistake changes its pin,
//! and every client pinning it stops connecting).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::client::Relay;
use crate::driver::tls::{CertPin, SelfSignedError, TlsClientOptions};

/// Name of the certificate file `cert new` writes.
pub const CERT_FILE: &str = "cert.pem";
/// Name of the key file `cert new` writes.
pub const KEY_FILE: &str = "key.pem";
/// Mode of the key file: owner read/write only.
pub const KEY_MODE: u32 = 0o600;

/// TLS options of the client commands that connect to a relay (wss:// URLs).
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// wss://: also trust the certificates in this PEM file (a private CA, or a self-signed relay certificate).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// wss://: accept the relay iff its certificate's SHA-256 is HEX (64 hex digits, as `cert new` prints it);
    /// CAs are then not consulted.
    #[arg(long, value_name = "HEX")]
    pub tls_pin: Option<CertPin>,
}

impl TlsArgs {
    /// The session's TLS options.
    pub fn options(&self) -> TlsClientOptions {
        TlsClientOptions { ca_file: self.tls_ca.clone(), pin: self.tls_pin }
    }

    /// The session's TLS options for `url`: `--tls-pin` if given, else the pin an enrolled invite carries for
    /// exactly that URL (so a pinned relay from an invite is checked without any flag).
    pub fn options_for<'a>(&self, url: &str, invite_relays: impl IntoIterator<Item = &'a Relay>) -> TlsClientOptions {
        let from_invite = || invite_relays.into_iter().find(|r| r.url == url).and_then(|r| r.pin).map(CertPin);
        TlsClientOptions { ca_file: self.tls_ca.clone(), pin: self.tls_pin.or_else(from_invite) }
    }
}

/// `tessera cert …`.
#[derive(Args, Debug)]
pub struct CertArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CertCommand,
}

/// Subcommands of `tessera cert`.
#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Write a self-signed certificate (cert.pem) and its key (key.pem, mode 0600) for a relay.
    New(NewArgs),
}

/// Arguments of `tessera cert new`.
#[derive(Args, Debug)]
pub struct NewArgs {
    /// The relay's name as clients write it in their wss:// URL: a DNS name or an IP address.
    #[arg(long, value_name = "NAME")]
    pub host: String,
    /// Directory to write cert.pem and key.pem into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// Why `cert new` failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file exists and `--force` was not given.
    #[error("{0} exists (use --force to replace it; clients pinning the old certificate will refuse the new one)")]
    Exists(PathBuf),
    /// The name is neither an IP address nor a valid DNS name.
    #[error("--host {0:?}: {1}")]
    BadHost(String, String),
    /// rcgen failed.
    #[error("cannot generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A new self-signed pair for `host`: (certificate PEM, key PEM, pin).
pub fn generate(host: &str) -> Result<(String, String, CertPin), CertError> {
    crate::driver::tls::self_signed(host).map_err(|e| match e {
        SelfSignedError::BadHost(host, reason) => CertError::BadHost(host, reason),
        SelfSignedError::Generate(e) => CertError::Generate(e),
    })
}

/// Writes `contents` to a new file `path` with `mode` (refusing an existing one unless `force`).
fn write_new(path: &Path, contents: &str, mode: u32, force: bool) -> Result<(), CertError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CertError::Io { path: path.to_owned(), source };
    if force {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CertError::Exists(path.to_owned())
        } else {
            io(e)
        }
    })?;
    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).map_err(io)
}

/// `cert new`: writes the pair; returns (certificate path, key path, pin).
pub fn new_pair(args: &NewArgs) -> Result<(PathBuf, PathBuf, CertPin), CertError> {
    let (cert_path, key_path) = (args.out.join(CERT_FILE), args.out.join(KEY_FILE));
    if !args.force {
        if let Some(existing) = [&cert_path, &key_path].into_iter().find(|p| p.exists()) {
            return Err(CertError::Exists(existing.clone()));
        }
    }
    let (cert, key, pin) = generate(&args.host)?;
    std::fs::create_dir_all(&args.out).map_err(|source| CertError::Io { path: args.out.clone(), source })?;
    write_new(&key_path, &key, KEY_MODE, args.force)?;
    write_new(&cert_path, &cert, 0o644, args.force)?;
    Ok((cert_path, key_path, pin))
}

/// Runs `tessera cert`; returns the exit code (2: refused or bad arguments, 1: I/O).
pub fn run(args: CertArgs) -> i32 {
    match args.command {
        CertCommand::New(new) => match new_pair(&new) {
            Ok((cert, key, pin)) => {
                println!("certificate: {}", cert.display());
                println!("key:         {}", key.display());
                println!("pin:         {pin}");
                0
            }
            Err(e) => {
                eprintln!("tessera cert new: {e}");
                match e {
                    CertError::Io { .. } => 1,
                    _ => 2,
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_loads_as_a_relay_configuration_and_its_pin_is_the_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let args = NewArgs { host: "127.0.0.1".into(), out: dir.path().join("tls"), force: false };
        let (cert, key, pin) = new_pair(&args).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        crate::driver::tls::server_config(&cert, &key).unwrap();
        let der = crate::driver::tls::read_certs(&cert, "certificate").unwrap();
        assert_eq!(CertPin::of_der(&der[0]), pin);
        assert!(matches!(new_pair(&args), Err(CertError::Exists(_))), "no overwrite without --force");
        let (_, _, pin2) = new_pair(&NewArgs { force: true, ..args }).unwrap();
        assert_ne!(pin, pin2, "--force writes a new pair");
        // A key from another pair does not match.
        let other = tempfile::tempdir().unwrap();
        let (_, other_key, _) =
            new_pair(&NewArgs { host: "relay.example".into(), out: other.path().into(), force: false }).unwrap();
        let err = crate::driver::tls::server_config(&cert, &other_key).unwrap_err();
        assert!(matches!(err, crate::driver::tls::TlsError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn bad_host_names_are_refused() {
        assert!(matches!(generate("not a name!"), Err(CertError::BadHost(..))));
        assert!(generate("relay.example").is_ok());
        assert!(generate("::1").is_ok());
    }
}
