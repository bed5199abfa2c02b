//! `tessera invite --relay-pin URL=HEX` and `--relay-cert URL=FILE`: the certificate pins an invite carries.
//!
//! ```text
//! --relay URL …        ─▶ the relays, in order
//! --relay-pin URL=HEX  ─▶ parse_pin (64 hex digits, ':' between bytes allowed)          ─┐
//! --relay-cert URL=FILE ─▶ read (≤ 1 MiB) ─▶ first PEM CERTIFICATE block, or raw DER ─▶ SHA-256 ─┴▶ Relay { url, pin }
//! ```
//! `URL` must be one of the `--relay` URLs, written the same way (the text before `=` is matched against
//! them, so a URL holding `=` still works); a relay gets at most one pin. `Invite::new` then refuses a pin
//! on a `ws://` URL.

use std::path::PathBuf;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::client::invite::{parse_pin, PinError, Relay, RelayPin};

/// Largest certificate file read: a certificate chain in PEM is a few KiB.
const CERT_FILE_BYTES_MAX: u64 = 1 << 20;

/// Why a pin option is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayPinError {
    /// `URL=…` names no `--relay` URL.
    #[error("{option} {given:?}: the text before '=' must be one of the --relay URLs")]
    UnknownRelay {
        /// `--relay-pin` or `--relay-cert`.
        option: &'static str,
        /// The argument.
        given: String,
    },
    /// Two pins for one relay.
    #[error("relay {0} is given more than one pin")]
    Duplicate(String),
    /// A malformed pin.
    #[error("--relay-pin for {url}: {source}")]
    Pin {
        /// The relay.
        url: String,
        /// What is wrong.
        source: PinError,
    },
    /// The certificate file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file holds no certificate.
    #[error("{0}: no certificate found (expected PEM \"-----BEGIN CERTIFICATE-----\" or DER)")]
    NoCertificate(PathBuf),
}

/// Splits `URL=VALUE` where `URL` is one of `urls`.
fn split<'a>(option: &'static str, arg: &'a str, urls: &[String]) -> Result<(usize, &'a str), RelayPinError> {
    urls.iter()
        .enumerate()
        .find_map(|(i, url)| arg.strip_prefix(url.as_str()).and_then(|r| r.strip_prefix('=')).map(|v| (i, v)))
        .ok_or_else(|| RelayPinError::UnknownRelay { option, given: arg.to_owned() })
}

/// The SHA-256 pin of the first certificate in a PEM file, or of a DER file.
pub fn pin_of_cert_file(path: &std::path::Path) -> Result<RelayPin, RelayPinError> {
    use std::io::Read;
    let io = |source| RelayPinError::Io { path: path.to_owned(), source };
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(CERT_FILE_BYTES_MAX).read_to_end(&mut bytes)).map_err(io)?;
    let none = || RelayPinError::NoCertificate(path.to_owned());
    let der = match std::str::from_utf8(&bytes).ok().and_then(|t| t.find("-----BEGIN CERTIFICATE-----").map(|i| (t, i)))
    {
        Some((text, start)) => {
            let body = &text[start + "-----BEGIN CERTIFICATE-----".len()..];
            let end = body.find("-----END CERTIFICATE-----").ok_or_else(none)?;
            let b64: String = body[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
            base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| none())?
        }
        // DER: a certificate is an ASN.1 SEQUENCE.
        None if bytes.first() == Some(&0x30) => bytes,
        None => return Err(none()),
    };
    Ok(Sha256::digest(&der).into())
}

/// The relays of `urls` with the pins of `pins` (`URL=HEX`) and `certs` (`URL=FILE`).
pub fn pinned_relays(urls: Vec<String>, pins: &[String], certs: &[String]) -> Result<Vec<Relay>, RelayPinError> {
    let mut found: Vec<Option<RelayPin>> = vec![None; urls.len()];
    let mut set = |index: usize, pin: RelayPin| {
        if found[index].replace(pin).is_some() {
            return Err(RelayPinError::Duplicate(urls[index].clone()));
        }
        Ok(())
    };
    for arg in pins {
        let (index, hex) = split("--relay-pin", arg, &urls)?;
        let pin = parse_pin(hex).map_err(|source| RelayPinError::Pin { url: urls[index].clone(), source })?;
        set(index, pin)?;
    }
    for arg in certs {
        let (index, file) = split("--relay-cert", arg, &urls)?;
        set(index, pin_of_cert_file(std::path::Path::new(file))?)?;
    }
    Ok(urls.into_iter().zip(found).map(|(url, pin)| Relay { url, pin }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_attach_to_their_relay() {
        let urls = vec!["wss://a.example".to_owned(), "wss://a.example/x=y".to_owned()];
        let hex = "ab".repeat(32);
        let relays =
            pinned_relays(urls.clone(), &[format!("wss://a.example/x=y={hex}")], &[]).expect("pin for the second");
        assert_eq!(relays[0].pin, None);
        assert_eq!(relays[1].pin, Some([0xab; 32]));
        assert!(matches!(
            pinned_relays(urls.clone(), &[format!("wss://b={hex}")], &[]),
            Err(RelayPinError::UnknownRelay { .. })
        ));
        let twice = [format!("wss://a.example={hex}"), format!("wss://a.example={hex}")];
        assert!(matches!(pinned_relays(urls.clone(), &twice, &[]), Err(RelayPinError::Duplicate(_))));
        assert!(matches!(pinned_relays(urls, &["wss://a.example=zz".to_owned()], &[]), Err(RelayPinError::Pin { .. })));
    }

    #[test]
    fn certificate_files() {
        let dir = tempfile::tempdir().unwrap();
        let der = [0x30u8, 0x03, 0x02, 0x01, 0x05];
        let pem = format!(
            "junk\n-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        let (pem_path, der_path, bad_path) =
            (dir.path().join("c.pem"), dir.path().join("c.der"), dir.path().join("bad"));
        std::fs::write(&pem_path, pem).unwrap();
        std::fs::write(&der_path, der).unwrap();
        std::fs::write(&bad_path, "not a certificate").unwrap();
        let expected: RelayPin = Sha256::digest(der).into();
        assert_eq!(pin_of_cert_file(&pem_path).unwrap(), expected);
        assert_eq!(pin_of_cert_file(&der_path).unwrap(), expected);
        assert!(matches!(pin_of_cert_file(&bad_path), Err(RelayPinError::NoCertificate(_))));
        assert!(matches!(pin_of_cert_file(&dir.path().join("missing")), Err(RelayPinError::Io { .. })));
    }
}
