//! TLS configuration for the relay (wss://, optionally https:// metrics) and its clients, on rustls with the
//! `ring` provider.
//!
//! ```text
//! relay start-up: --tls-cert, --tls-key (PEM) ─▶ server_config ─▶ one Arc<ServerConfig>, read-only, all shards
//!                 (file missing, not PEM, no key, key not matching the certificate ─▶ TlsError, exit 2)
//! client:         TlsClientOptions { ca_file, pin } ─▶ client_config ─▶ Arc<ClientConfig> (built once per
//!                 session or load run)
//!                   no pin: the system roots + the CA file's certificates, hostname checked (webpki)
//!                   pin:    PinVerifier: accepted iff SHA-256(end-entity DER) = pin; the handshake signature is
//!                           still verified with the provider's algorithms (the peer holds the pinned key)
//! ```
//! The stream that carries TLS or plain bytes is `tls_stream::MaybeTls`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};

/// Why a TLS configuration could not be built (relay start-up or a client's options).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// "certificate", "key" or "CA file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no PEM item of the expected kind (or is not PEM at all).
    #[error("{path} is not a PEM {what} ({reason})")]
    NotPem {
        /// "certificate", "private key" or "CA certificate".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// The private key does not belong to the certificate (or rustls cannot use it).
    #[error("the key {key} does not match the certificate {cert}: {reason}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// A CA certificate was refused as a trust anchor.
    #[error("{path}: unusable CA certificate: {reason}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// What webpki said.
        reason: String,
    },
    /// rustls refused the configuration (protocol versions of the provider).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A certificate pin: the SHA-256 of the relay's end-entity certificate (DER), printed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertPin(pub [u8; 32]);

/// Why a pin did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a TLS pin is 64 hex digits (the SHA-256 of the relay's certificate), got {0:?}")]
pub struct PinParseError(pub String);

impl CertPin {
    /// The pin of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

impl fmt::Display for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertPin({self})")
    }
}

impl std::str::FromStr for CertPin {
    type Err = PinParseError;

    /// 64 hex digits (either case; `:` separators as some tools print them are accepted).
    fn from_str(text: &str) -> Result<Self, PinParseError> {
        let digits: Vec<u8> = text.trim().bytes().filter(|&b| b != b':').collect();
        let bad = || PinParseError(text.to_owned());
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut pin = [0u8; 32];
        for (byte, pair) in pin.iter_mut().zip(digits.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Self(pin))
    }
}

/// The crypto provider: ring only (see Cargo.toml), with X25519 as the preferred key exchange. rustls 0.23.48
/// deprecated ring's provider because ring has no post-quantum key exchange (X25519MLKEM768 is aws-lc-rs
/// only), and in the same release put P-384 first in its default groups; ring computes P-384 on its portable
/// bignum code, and a handshake then cost the relay ~1.4 ms of CPU, almost all of it in that key exchange
/// (docs/PERFORMANCE.md §TLS). X25519 is constant-time, fast, and what every TLS 1.3 client offers; the NIST
/// curves stay as fallbacks. Moving to aws-lc-rs for hybrid key exchange is a change here once its build cost
/// is accepted. Cipher suites: AES-128-GCM first (10 AES rounds instead of AES-256's 14, on AES-NI/ARMv8 AES
/// either way): every proof is sealed once per hop, so the record cipher is part of the per-proof cost; 128-bit
/// keys are the security level of X25519 itself. AES-256-GCM and ChaCha20-Poly1305 stay as fallbacks.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::kx_group;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    provider.cipher_suites.sort_by_key(|suite| {
        u8::from(suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
            + u8::from(suite.version() != &rustls::version::TLS13)
    });
    Arc::new(provider)
}

/// Reads the certificate chain of a PEM file (at least one certificate).
pub fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_owned(), source })?;
    let not_pem = |reason: String| TlsError::NotPem { what, path: path.to_owned(), reason };
    let certs =
        CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| not_pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(not_pem("no CERTIFICATE section".into()));
    }
    Ok(certs)
}

/// Loads the relay's certificate chain and key once, at start-up: one configuration shared by every shard.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certs(cert, "certificate")?;
    let key_pem = std::fs::read(key).map_err(|source| TlsError::Read { what: "key", path: key.to_owned(), source })?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NotPem {
        what: "private key",
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        // Checks that the key parses and that its public key is the certificate's (rustls 0.23.x `keys_match`).
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::KeyMismatch { cert: cert.to_owned(), key: key.to_owned(), reason: e.to_string() })?;
    Ok(Arc::new(config))
}

/// Why a self-signed pair could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SelfSignedError {
    /// The name is neither an IP address nor a valid DNS name.
    #[error("{0:?} is neither an IP address nor a DNS name: {1}")]
    BadHost(String, String),
    /// rcgen failed.
    #[error("cannot generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A new self-signed certificate for `host` (its only SAN: an IP address if it parses as one, else a DNS
/// name), ECDSA P-256: (certificate PEM, key PEM, pin).
pub fn self_signed(host: &str) -> Result<(String, String, CertPin), SelfSignedError> {
    let bad = |e: String| SelfSignedError::BadHost(host.to_owned(), e);
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    let san = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => rcgen::SanType::IpAddress(ip),
        Err(_) => {
            // rcgen takes any IA5 string; a client could never name it in a URL, so check it as rustls will.
            rustls::pki_types::DnsName::try_from(host).map_err(|e| bad(e.to_string()))?;
            rcgen::SanType::DnsName(host.try_into().map_err(|e: rcgen::Error| bad(e.to_string()))?)
        }
    };
    params.subject_alt_names = vec![san];
    params.distinguished_name.push(rcgen::DnType::CommonName, host);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let pin = CertPin::of_der(cert.der());
    Ok((cert.pem(), key.serialize_pem(), pin))
}

/// How a client authenticates the relay over wss://.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsClientOptions {
    /// PEM file of extra trust anchors (a private CA, or a self-signed relay certificate), beside the system roots.
    pub ca_file: Option<PathBuf>,
    /// When set, the relay is accepted iff its end-entity certificate hashes to this pin (CAs are not consulted).
    pub pin: Option<CertPin>,
}

/// The operating system's trust anchors, read once per process (unreadable entries are skipped: a client with
/// a pin or a CA file does not need them).
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(loaded.certs);
        roots
    })
}

/// The client configuration for `options` (build it once and share it: reading the system roots takes
/// milliseconds).
pub fn client_config(options: &TlsClientOptions) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = match options.pin {
        Some(pin) => {
            let algorithms = provider().signature_verification_algorithms;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(PinVerifier { pin, algorithms }))
        }
        None => {
            let mut roots = system_roots().clone();
            if let Some(path) = &options.ca_file {
                for cert in read_certs(path, "CA certificate")? {
                    roots.add(cert).map_err(|e| TlsError::BadCa { path: path.clone(), reason: e.to_string() })?;
                }
            }
            builder.with_root_certificates(roots)
        }
    };
    Ok(Arc::new(config.with_no_client_auth()))
}

/// The relay presented a certificate other than the pinned one (carried in `rustls::OtherError`).
#[derive(Debug, thiserror::Error)]
#[error("the relay's certificate {got} is not the pinned {expected}")]
pub struct PinMismatch {
    /// The pin the client was given.
    pub expected: CertPin,
    /// The SHA-256 of the certificate presented.
    pub got: CertPin,
}

/// Accepts exactly the pinned end-entity certificate; names, dates and issuers are not looked at (the pin
/// says more than any of them). The handshake signature is checked as usual, so only the holder of the
/// pinned certificate's key completes the handshake.
#[derive(Debug)]
struct PinVerifier {
    pin: CertPin,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = CertPin::of_der(end_entity);
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            let mismatch = PinMismatch { expected: self.pin, got };
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                mismatch,
            )))))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// How a client's TLS handshake failed, from the error the TLS stream returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The certificate did not chain to a trusted root, or was not valid for the host (the reason).
    Untrusted(String),
    /// The pinned certificate was not the one presented.
    PinMismatch {
        /// The pin given.
        expected: CertPin,
        /// The certificate presented.
        got: CertPin,
    },
    /// Anything else (the peer does not speak TLS, an alert, a reset): the reason.
    Other(String),
}

/// Classifies a handshake error (futures-rustls returns rustls errors inside `io::Error`).
pub fn classify(error: &std::io::Error) -> HandshakeFailure {
    let rustls_error = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            match other.0.downcast_ref::<PinMismatch>() {
                Some(m) => HandshakeFailure::PinMismatch { expected: m.expected, got: m.got },
                None => HandshakeFailure::Untrusted(other.to_string()),
            }
        }
        Some(rustls::Error::InvalidCertificate(e)) => HandshakeFailure::Untrusted(format!("{e:?}")),
        Some(e) => HandshakeFailure::Other(e.to_string()),
        None => HandshakeFailure::Other(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_print_as_lowercase_hex_and_parse_back() {
        let pin = CertPin::of_der(b"not really a certificate");
        let text = pin.to_string();
        assert_eq!(text.len(), 64);
        assert!(text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{text}");
        assert_eq!(text.parse::<CertPin>(), Ok(pin));
        assert_eq!(text.to_uppercase().parse::<CertPin>(), Ok(pin));
        assert!("abcd".parse::<CertPin>().is_err());
        assert!("zz".repeat(32).parse::<CertPin>().is_err());
    }

    #[test]
    fn x25519_is_the_preferred_key_exchange() {
        let groups: Vec<_> = provider().kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(groups.first(), Some(&rustls::NamedGroup::X25519), "{groups:?}");
    }

    #[test]
    fn a_missing_or_non_pem_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = server_config(&missing, &missing).unwrap_err();
        assert!(matches!(err, TlsError::Read { what: "certificate", .. }), "{err}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello\n").unwrap();
        let err = server_config(&junk, &junk).unwrap_err();
        assert!(matches!(err, TlsError::NotPem { .. }), "{err}");
        assert!(err.to_string().contains("junk.pem"), "{err}");
    }
}
