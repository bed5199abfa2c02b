//! Invite codes: how two people exchange public keys, relays and relay certificate pins without a directory.
//!
//! ```text
//! payload v2 = u8 version (= 2) ‖ public key (32) ‖ u8 relay_count (0..=4)
//!              ‖ (u8 url_len ‖ url ‖ u8 has_pin (0 | 1) ‖ [pin (32) if has_pin])*
//! payload v1 = u8 version (= 1) ‖ public key (32) ‖ u8 relay_count (0..=4) ‖ (u8 url_len ‖ url)*   (decoded only)
//! code       = "tessera1" ‖ base32(payload ‖ SHA-256("tessera/v1/invite" ‖ payload)[0..4])
//! ```
//! One line of `[0-9a-z]`: no character a shell, a chat client or a double-click treats specially. The
//! 4-byte checksum catches typos and truncation (a random error slips through with probability 2^-32); it
//! does not authenticate — an attacker who can replace the code can replace it with a valid one, which is why
//! `enroll` shows a safety code (`safety::safety_code`) both people compare out of band. Each side enrols the
//! other's code; both then derive the same pairwise secret (`pairwise::pair`).
//!
//! A pin is the SHA-256 of the relay's end-entity certificate (DER): a client that has one accepts that
//! certificate and no other for the relay, whatever certificate authorities say. Only `wss://` relays take
//! one (a `ws://` link has no certificate), so a pin on a `ws://` URL is refused when a code is made and when
//! one is read. `Invite::payload` is the canonical v2 encoding of the contents whatever version a code was
//! read from (a v1 code is a v2 code without pins), so both contacts hash the same bytes.

use sha2::{Digest, Sha256};

use super::base32::{self, Base32Error};
use super::identity::{KeyError, PublicKey, PUBLIC_KEY_LEN};
use super::kdf::LABEL_INVITE;

/// Every code starts with this.
pub const INVITE_PREFIX: &str = "tessera1";
/// Payload version written.
pub const INVITE_VERSION: u8 = 2;
/// The first payload version (no pins), still read.
pub const INVITE_VERSION_V1: u8 = 1;
/// Relays one code may name: enough for a primary and fallbacks, short enough to paste.
pub const INVITE_RELAYS_MAX: usize = 4;
/// Longest relay URL, bytes: hostnames are at most 253 bytes; 200 with scheme and port covers real use.
pub const RELAY_URL_LEN_MAX: usize = 200;
/// A relay certificate pin: SHA-256 of the end-entity certificate's DER, bytes.
pub const RELAY_PIN_LEN: usize = 32;
/// Checksum bytes.
pub const INVITE_CHECKSUM_LEN: usize = 4;
/// Longest code accepted, characters: a maximal v2 payload (1 + 32 + 1 + 4 × (1 + 200 + 1 + 32) = 970 bytes)
/// with its checksum encodes to 1,559 characters after the 8-character prefix.
pub const INVITE_CODE_LEN_MAX: usize = 1_600;

/// A relay certificate pin (see `RELAY_PIN_LEN`).
pub type RelayPin = [u8; RELAY_PIN_LEN];

/// Why a relay URL (or its pin) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayUrlError {
    /// Not `ws://` or `wss://`.
    #[error("relay URL must start with ws:// or wss://")]
    BadScheme,
    /// Nothing after the scheme.
    #[error("relay URL has no host")]
    NoHost,
    /// Longer than `RELAY_URL_LEN_MAX`.
    #[error("relay URL is longer than {RELAY_URL_LEN_MAX} bytes")]
    TooLong,
    /// Whitespace, control or non-ASCII characters.
    #[error("relay URL contains a character other than printable ASCII")]
    BadCharacter,
    /// A certificate pin on a `ws://` URL, which has no certificate.
    #[error("a certificate pin needs a wss:// relay URL (a ws:// link has no certificate)")]
    PinOnPlaintext,
}

/// Checks a relay URL: `ws://` or `wss://`, a host, printable ASCII, at most `RELAY_URL_LEN_MAX` bytes.
pub fn check_relay_url(url: &str) -> Result<(), RelayUrlError> {
    if url.len() > RELAY_URL_LEN_MAX {
        return Err(RelayUrlError::TooLong);
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RelayUrlError::BadCharacter);
    }
    let rest = url.strip_prefix("wss://").or_else(|| url.strip_prefix("ws://")).ok_or(RelayUrlError::BadScheme)?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(RelayUrlError::NoHost);
    }
    Ok(())
}

/// A relay of an invite or contact: where to reach the contact, and optionally the certificate to expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// SHA-256 of the relay's end-entity certificate (DER); only on `wss://` URLs.
    pub pin: Option<RelayPin>,
}

impl Relay {
    /// A checked relay.
    pub fn new(url: impl Into<String>, pin: Option<RelayPin>) -> Result<Self, RelayUrlError> {
        let relay = Self { url: url.into(), pin };
        relay.check()?;
        Ok(relay)
    }

    /// Checks the URL (`check_relay_url`) and that a pin, if any, is on a `wss://` URL.
    pub fn check(&self) -> Result<(), RelayUrlError> {
        check_relay_url(&self.url)?;
        if self.pin.is_some() && !self.url.starts_with("wss://") {
            return Err(RelayUrlError::PinOnPlaintext);
        }
        Ok(())
    }
}

/// An unpinned relay, not yet checked (`Invite::new` and `Contact::new` check it).
impl From<&str> for Relay {
    fn from(url: &str) -> Self {
        Self { url: url.to_owned(), pin: None }
    }
}

/// An unpinned relay, not yet checked (`Invite::new` and `Contact::new` check it).
impl From<String> for Relay {
    fn from(url: String) -> Self {
        Self { url, pin: None }
    }
}

/// Why a pin given as text is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// Not 64 hexadecimal digits.
    #[error("a certificate pin is 64 hexadecimal digits (SHA-256), found {0}")]
    BadLength(usize),
    /// A character other than a hexadecimal digit (or `:` between bytes).
    #[error("a certificate pin holds {0:?}, not a hexadecimal digit")]
    BadCharacter(char),
}

/// Parses a pin: 64 hexadecimal digits, either case, optionally with `:` between bytes (as `openssl x509
/// -fingerprint -sha256` prints it).
pub fn parse_pin(text: &str) -> Result<RelayPin, PinError> {
    let mut digits = Vec::with_capacity(2 * RELAY_PIN_LEN);
    for c in text.trim().chars().filter(|&c| c != ':') {
        let value = c.to_digit(16).ok_or(PinError::BadCharacter(c))?;
        // A digit is below 16.
        digits.push(value as u8);
        if digits.len() > 2 * RELAY_PIN_LEN {
            break;
        }
    }
    if digits.len() != 2 * RELAY_PIN_LEN {
        return Err(PinError::BadLength(digits.len()));
    }
    let mut pin = [0u8; RELAY_PIN_LEN];
    for (byte, pair) in pin.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (pair[0] << 4) | pair[1];
    }
    Ok(pin)
}

/// A pin as 64 lower-case hexadecimal digits (what `parse_pin` reads).
pub fn pin_hex(pin: &RelayPin) -> String {
    pin.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why an invite code is refused. Each names what to tell the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    /// Does not start with `tessera1`.
    #[error("not a Tessera invite code (it must start with \"{INVITE_PREFIX}\")")]
    MissingPrefix,
    /// Longer than `INVITE_CODE_LEN_MAX`.
    #[error("invite code is {0} characters, longer than any valid code")]
    TooLong(usize),
    /// Not base32 (a typo, a character lost or added in copying).
    #[error("invite code is malformed: {0}")]
    Encoding(#[from] Base32Error),
    /// Too short to hold a version, key, relay count and checksum.
    #[error("invite code is truncated")]
    Truncated,
    /// Checksum mismatch: the code was altered or mistyped.
    #[error("invite code checksum does not match: the code was mistyped or altered")]
    BadChecksum,
    /// A version this build does not know.
    #[error("invite code version {0} is not supported by this version of tessera")]
    UnsupportedVersion(u8),
    /// The key is not a valid public key.
    #[error("invite code holds an invalid public key: {0}")]
    BadPublicKey(KeyError),
    /// More relays than `INVITE_RELAYS_MAX`.
    #[error("invite code names {0} relays, at most {INVITE_RELAYS_MAX} are allowed")]
    TooManyRelays(u8),
    /// A relay URL is malformed, or pinned but not `wss://`.
    #[error("relay {index} in the invite code is invalid: {error}")]
    BadRelayUrl {
        /// Which relay (0-based).
        index: usize,
        /// What is wrong with it.
        error: RelayUrlError,
    },
    /// A v2 pin flag other than 0 or 1.
    #[error("relay {index} in the invite code has pin flag {flag} (0 or 1 expected)")]
    BadPinFlag {
        /// Which relay (0-based).
        index: usize,
        /// The flag byte.
        flag: u8,
    },
    /// Bytes after the last relay.
    #[error("invite code has {0} unexpected trailing bytes")]
    TrailingBytes(usize),
}

/// The contents of an invite code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The inviter's public key.
    pub public: PublicKey,
    /// Relays the inviter subscribes at (where to send to it), each with its optional certificate pin.
    pub relays: Vec<Relay>,
}

fn checksum(payload: &[u8]) -> [u8; INVITE_CHECKSUM_LEN] {
    let digest = Sha256::new().chain_update(LABEL_INVITE).chain_update(payload).finalize();
    let mut out = [0u8; INVITE_CHECKSUM_LEN];
    out.copy_from_slice(&digest[..INVITE_CHECKSUM_LEN]);
    out
}

/// Splits `len` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], len: usize) -> Result<&'a [u8], InviteError> {
    let head = rest.get(..len).ok_or(InviteError::Truncated)?;
    *rest = &rest[len..];
    Ok(head)
}

impl Invite {
    /// An invite for `public` naming `relays` (each checked, pins on `wss://` only; at most
    /// `INVITE_RELAYS_MAX`).
    pub fn new(public: PublicKey, relays: Vec<Relay>) -> Result<Self, InviteError> {
        if relays.len() > INVITE_RELAYS_MAX {
            return Err(InviteError::TooManyRelays(relays.len().min(255) as u8));
        }
        for (index, relay) in relays.iter().enumerate() {
            relay.check().map_err(|error| InviteError::BadRelayUrl { index, error })?;
        }
        Ok(Self { public, relays })
    }

    /// The canonical payload (version 2, no checksum): what the code carries and what the safety code hashes.
    pub fn payload(&self) -> Vec<u8> {
        let mut payload =
            Vec::with_capacity(2 + PUBLIC_KEY_LEN + self.relays.len() * (2 + RELAY_URL_LEN_MAX + RELAY_PIN_LEN));
        payload.push(INVITE_VERSION);
        payload.extend_from_slice(self.public.as_bytes());
        // `new` and `decode` bound the count by INVITE_RELAYS_MAX and each URL by RELAY_URL_LEN_MAX, both
        // below 256.
        payload.push(self.relays.len() as u8);
        for relay in &self.relays {
            payload.push(relay.url.len() as u8);
            payload.extend_from_slice(relay.url.as_bytes());
            match &relay.pin {
                None => payload.push(0),
                Some(pin) => {
                    payload.push(1);
                    payload.extend_from_slice(pin);
                }
            }
        }
        payload
    }

    /// The one-line code (version 2).
    pub fn encode(&self) -> String {
        let mut payload = self.payload();
        let sum = checksum(&payload);
        payload.extend_from_slice(&sum);
        format!("{INVITE_PREFIX}{}", base32::encode(&payload))
    }

    /// Parses a code of version 1 or 2 (surrounding whitespace ignored; the prefix may be upper case, as the
    /// rest).
    pub fn decode(code: &str) -> Result<Self, InviteError> {
        let code = code.trim();
        if code.len() > INVITE_CODE_LEN_MAX {
            return Err(InviteError::TooLong(code.len()));
        }
        let prefix_ok = code.get(..INVITE_PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(INVITE_PREFIX));
        if !prefix_ok {
            return Err(InviteError::MissingPrefix);
        }
        // The prefix is ASCII, so this is a char boundary; case mixing across prefix and data is refused.
        let data = &code[INVITE_PREFIX.len()..];
        let prefix_upper = code.as_bytes()[0].is_ascii_uppercase();
        if data.bytes().any(|b| b.is_ascii_alphabetic() && b.is_ascii_uppercase() != prefix_upper) {
            return Err(InviteError::Encoding(Base32Error::MixedCase));
        }
        let bytes = base32::decode(data, INVITE_PREFIX.len())?;
        if bytes.len() < 1 + PUBLIC_KEY_LEN + 1 + INVITE_CHECKSUM_LEN {
            return Err(InviteError::Truncated);
        }
        let (payload, sum) = bytes.split_at(bytes.len() - INVITE_CHECKSUM_LEN);
        if checksum(payload) != sum {
            return Err(InviteError::BadChecksum);
        }
        let version = payload[0];
        if version != INVITE_VERSION && version != INVITE_VERSION_V1 {
            return Err(InviteError::UnsupportedVersion(version));
        }
        let public = PublicKey::from_bytes(&payload[1..1 + PUBLIC_KEY_LEN]).map_err(InviteError::BadPublicKey)?;
        let count = payload[1 + PUBLIC_KEY_LEN];
        if usize::from(count) > INVITE_RELAYS_MAX {
            return Err(InviteError::TooManyRelays(count));
        }
        let mut rest = &payload[2 + PUBLIC_KEY_LEN..];
        let mut relays = Vec::with_capacity(usize::from(count));
        for index in 0..usize::from(count) {
            let len = take(&mut rest, 1)?[0];
            let url = take(&mut rest, usize::from(len))?;
            let url = std::str::from_utf8(url)
                .map_err(|_| InviteError::BadRelayUrl { index, error: RelayUrlError::BadCharacter })?;
            let pin = if version == INVITE_VERSION_V1 {
                None
            } else {
                match take(&mut rest, 1)?[0] {
                    0 => None,
                    1 => {
                        let mut pin = [0u8; RELAY_PIN_LEN];
                        pin.copy_from_slice(take(&mut rest, RELAY_PIN_LEN)?);
                        Some(pin)
                    }
                    flag => return Err(InviteError::BadPinFlag { index, flag }),
                }
            };
            let relay = Relay::new(url, pin).map_err(|error| InviteError::BadRelayUrl { index, error })?;
            relays.push(relay);
        }
        if !rest.is_empty() {
            return Err(InviteError::TrailingBytes(rest.len()));
        }
        Ok(Self { public, relays })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::identity::Identity;

    fn sample() -> Invite {
        let id = Identity::from_seed(&[0xA1; 32]);
        Invite::new(*id.public(), vec!["ws://127.0.0.1:8100".into(), "wss://relay.example.org/t".into()]).unwrap()
    }

    #[test]
    fn round_trip() {
        let invite = sample();
        let code = invite.encode();
        assert!(code.starts_with("tessera1"));
        assert!(code.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
        assert_eq!(Invite::decode(&code).unwrap(), invite);
        assert_eq!(Invite::decode(&format!("  {code}\n")).unwrap(), invite);
        assert_eq!(Invite::decode(&code.to_ascii_uppercase()).unwrap(), invite);
        let bare = Invite::new(invite.public, vec![]).unwrap();
        assert_eq!(Invite::decode(&bare.encode()).unwrap(), bare);
    }

    #[test]
    fn pins_round_trip_and_v1_codes_still_decode() {
        let pk = sample().public;
        let pinned = Invite::new(
            pk,
            vec![Relay::new("wss://relay.example.org", Some([7; 32])).unwrap(), "ws://127.0.0.1:8100".into()],
        )
        .unwrap();
        assert_eq!(Invite::decode(&pinned.encode()).unwrap(), pinned);
        assert_eq!(pinned.payload()[0], INVITE_VERSION);
        // A v1 payload: no pin flags.
        let mut v1 = vec![INVITE_VERSION_V1];
        v1.extend_from_slice(pk.as_bytes());
        v1.push(1);
        v1.push(6);
        v1.extend_from_slice(b"ws://h");
        let sum = checksum(&v1);
        v1.extend_from_slice(&sum);
        let decoded = Invite::decode(&format!("{INVITE_PREFIX}{}", base32::encode(&v1))).unwrap();
        assert_eq!(decoded, Invite::new(pk, vec!["ws://h".into()]).unwrap());
        // Its canonical payload is version 2.
        assert_eq!(decoded.payload()[0], INVITE_VERSION);
        assert_eq!(
            Invite::new(pk, vec![Relay { url: "ws://h".into(), pin: Some([1; 32]) }]),
            Err(InviteError::BadRelayUrl { index: 0, error: RelayUrlError::PinOnPlaintext })
        );
    }

    #[test]
    fn pins_as_text() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let pin = parse_pin(hex).unwrap();
        assert_eq!(pin[0], 0x00);
        assert_eq!(pin[15], 0xff);
        assert_eq!(pin_hex(&pin), hex.to_ascii_lowercase());
        let colons = pin.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
        assert_eq!(parse_pin(&colons), Ok(pin));
        assert_eq!(parse_pin("abc"), Err(PinError::BadLength(3)));
        assert_eq!(parse_pin(&format!("{hex}00")), Err(PinError::BadLength(65)));
        assert_eq!(parse_pin(&hex.replace('a', "g")), Err(PinError::BadCharacter('g')));
    }

    #[test]
    fn relay_urls() {
        assert_eq!(check_relay_url("ws://h"), Ok(()));
        assert_eq!(check_relay_url("http://h"), Err(RelayUrlError::BadScheme));
        assert_eq!(check_relay_url("ws://"), Err(RelayUrlError::NoHost));
        assert_eq!(check_relay_url("ws:///x"), Err(RelayUrlError::NoHost));
        assert_eq!(check_relay_url("ws://a b"), Err(RelayUrlError::BadCharacter));
        assert_eq!(check_relay_url(&format!("ws://{}", "a".repeat(200))), Err(RelayUrlError::TooLong));
        let pk = sample().public;
        assert_eq!(
            Invite::new(pk, vec!["ws://a".into(), "ftp://b".into()]),
            Err(InviteError::BadRelayUrl { index: 1, error: RelayUrlError::BadScheme })
        );
        assert_eq!(Invite::new(pk, vec!["ws://a".into(); 5]), Err(InviteError::TooManyRelays(5)));
    }
}
