//! Invite codes: how two people exchange public keys and relays without a directory.
//!
//! ```text
//! payload = u8 version (= 1) ‖ public key (32) ‖ u8 relay_count (0..=4) ‖ (u8 url_len ‖ url)*
//! code    = "tessera1" ‖ base32(payload ‖ SHA-256("tessera/v1/invite" ‖ payload)[0..4])
//! ```
//! One line of `[0-9a-z]`: no character a shell, a chat client or a double-click treats specially. The
//! 4-byte checksum catches typos and truncation (a random error slips through with probability 2^-32); it
//! does not authenticate — an attacker who can replace the code can replace it with a valid one, which is why
//! `enroll` shows a safety code both people compare out of band. Each side enrols the other's code; both
//! then derive the same pairwise secret (`pairwise::pair`).

use sha2::{Digest, Sha256};

use super::base32::{self, Base32Error};
use super::identity::{KeyError, PublicKey, PUBLIC_KEY_LEN};
use super::kdf::{LABEL_INVITE, LABEL_SAFETY};

/// Every code starts with this.
pub const INVITE_PREFIX: &str = "tessera1";
/// Payload version.
pub const INVITE_VERSION: u8 = 1;
/// Relays one code may name: enough for a primary and fallbacks, short enough to paste.
pub const INVITE_RELAYS_MAX: usize = 4;
/// Longest relay URL, bytes: hostnames are at most 253 bytes; 200 with scheme and port covers real use.
pub const RELAY_URL_LEN_MAX: usize = 200;
/// Checksum bytes.
pub const INVITE_CHECKSUM_LEN: usize = 4;
/// Longest code accepted, characters: a maximal payload (1 + 32 + 1 + 4 × 201 bytes) with its checksum
/// encodes to 1,348 characters after the 8-character prefix.
pub const INVITE_CODE_LEN_MAX: usize = 1_400;

/// Why a relay URL is refused.
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
    /// A relay URL is malformed.
    #[error("relay {index} in the invite code is invalid: {error}")]
    BadRelayUrl {
        /// Which relay (0-based).
        index: usize,
        /// What is wrong with it.
        error: RelayUrlError,
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
    /// Relays the inviter subscribes at (where to send to it).
    pub relays: Vec<String>,
}

fn checksum(payload: &[u8]) -> [u8; INVITE_CHECKSUM_LEN] {
    let digest = Sha256::new().chain_update(LABEL_INVITE).chain_update(payload).finalize();
    let mut out = [0u8; INVITE_CHECKSUM_LEN];
    out.copy_from_slice(&digest[..INVITE_CHECKSUM_LEN]);
    out
}

impl Invite {
    /// An invite for `public` naming `relays` (each checked; at most `INVITE_RELAYS_MAX`).
    pub fn new(public: PublicKey, relays: Vec<String>) -> Result<Self, InviteError> {
        if relays.len() > INVITE_RELAYS_MAX {
            return Err(InviteError::TooManyRelays(relays.len().min(255) as u8));
        }
        for (index, url) in relays.iter().enumerate() {
            check_relay_url(url).map_err(|error| InviteError::BadRelayUrl { index, error })?;
        }
        Ok(Self { public, relays })
    }

    /// The one-line code.
    pub fn encode(&self) -> String {
        let mut payload = Vec::with_capacity(2 + PUBLIC_KEY_LEN + self.relays.len() * (1 + RELAY_URL_LEN_MAX));
        payload.push(INVITE_VERSION);
        payload.extend_from_slice(self.public.as_bytes());
        // `new` bounds the count by INVITE_RELAYS_MAX and each URL by RELAY_URL_LEN_MAX, both below 256.
        payload.push(self.relays.len() as u8);
        for url in &self.relays {
            payload.push(url.len() as u8);
            payload.extend_from_slice(url.as_bytes());
        }
        let sum = checksum(&payload);
        payload.extend_from_slice(&sum);
        format!("{INVITE_PREFIX}{}", base32::encode(&payload))
    }

    /// Parses a code (surrounding whitespace ignored; the prefix may be upper case, as the rest).
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
        if payload[0] != INVITE_VERSION {
            return Err(InviteError::UnsupportedVersion(payload[0]));
        }
        let public = PublicKey::from_bytes(&payload[1..1 + PUBLIC_KEY_LEN]).map_err(InviteError::BadPublicKey)?;
        let count = payload[1 + PUBLIC_KEY_LEN];
        if usize::from(count) > INVITE_RELAYS_MAX {
            return Err(InviteError::TooManyRelays(count));
        }
        let mut rest = &payload[2 + PUBLIC_KEY_LEN..];
        let mut relays = Vec::with_capacity(usize::from(count));
        for index in 0..usize::from(count) {
            let (&len, tail) = rest.split_first().ok_or(InviteError::Truncated)?;
            let url = tail.get(..usize::from(len)).ok_or(InviteError::Truncated)?;
            let url = std::str::from_utf8(url)
                .map_err(|_| InviteError::BadRelayUrl { index, error: RelayUrlError::BadCharacter })?;
            check_relay_url(url).map_err(|error| InviteError::BadRelayUrl { index, error })?;
            relays.push(url.to_owned());
            rest = &tail[usize::from(len)..];
        }
        if !rest.is_empty() {
            return Err(InviteError::TrailingBytes(rest.len()));
        }
        Ok(Self { public, relays })
    }
}

/// A code two contacts read to each other to confirm they enrolled the right keys: the same for both
/// (order-independent), 16 base32 characters (80 bits) in groups of four.
pub fn safety_code(a: &PublicKey, b: &PublicKey) -> String {
    let (lo, hi) = if a.as_bytes() <= b.as_bytes() { (a, b) } else { (b, a) };
    let digest =
        Sha256::new().chain_update(LABEL_SAFETY).chain_update(lo.as_bytes()).chain_update(hi.as_bytes()).finalize();
    let text = base32::encode(&digest[..10]);
    text.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).expect("base32 is ASCII")).collect::<Vec<_>>().join("-")
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
    fn safety_code_is_symmetric() {
        let a = *Identity::from_seed(&[1; 32]).public();
        let b = *Identity::from_seed(&[2; 32]).public();
        let code = safety_code(&a, &b);
        assert_eq!(code, safety_code(&b, &a));
        assert_eq!(code.len(), 19);
        assert_eq!(code.matches('-').count(), 3);
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
