//! A contact: a name the user chose, the contact's public key and the relays from its invite code (each
//! with the relay's certificate pin when the invite carried one).
//!
//! Only public data: the pairwise secret is re-derived from the identity when the key file is unlocked,
//! so `contacts.json` needs no encryption and a passphrase-protected identity protects everything.

use super::identity::PublicKey;
use super::invite::{Invite, Relay, RelayPin, RelayUrlError, INVITE_RELAYS_MAX};

/// Longest contact name, bytes.
pub const CONTACT_NAME_LEN_MAX: usize = 64;
/// Contacts one client may hold: each costs ~5,800 precomputed deliveries per hour of horizon (~10 µs each)
/// and filter space; 256 is far beyond a personal address book and keeps start-up under a few seconds.
pub const CONTACTS_MAX: usize = 256;

/// Why a contact is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContactError {
    /// Empty, too long, not starting with a letter or digit, or with characters other than ASCII letters,
    /// digits, `-`, `_`, `.`.
    #[error(
        "contact name {0:?} is invalid: use 1..={CONTACT_NAME_LEN_MAX} letters, digits, '-', '_' or '.', \
         starting with a letter or digit"
    )]
    BadName(String),
    /// Another contact already has this name.
    #[error("a contact named {0:?} already exists")]
    DuplicateName(String),
    /// The key is already enrolled under another name.
    #[error("this key is already enrolled as {0:?}")]
    DuplicateKey(String),
    /// The key is the user's own.
    #[error("the invite code is your own")]
    OwnKey,
    /// More than `CONTACTS_MAX` contacts.
    #[error("at most {CONTACTS_MAX} contacts are supported")]
    TooMany,
    /// A relay URL is malformed, or pinned but not `wss://`.
    #[error("relay URL {index} is invalid: {error}")]
    BadRelayUrl {
        /// Which relay.
        index: usize,
        /// What is wrong with it.
        error: RelayUrlError,
    },
    /// More relays than an invite may carry.
    #[error("at most {INVITE_RELAYS_MAX} relays per contact")]
    TooManyRelays,
}

/// An enrolled contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The local name (unique among contacts).
    pub name: String,
    /// The contact's public key.
    pub public: PublicKey,
    /// Where the contact receives (from its invite), in its order of preference, with certificate pins.
    pub relays: Vec<Relay>,
}

/// Checks a contact name: 1..=64 ASCII letters, digits, `-`, `_`, `.`, starting with a letter or digit
/// (safe as a CLI argument, never mistaken for an option).
pub fn check_name(name: &str) -> Result<(), ContactError> {
    let ok = !name.is_empty()
        && name.len() <= CONTACT_NAME_LEN_MAX
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ContactError::BadName(name.chars().take(CONTACT_NAME_LEN_MAX).collect()))
    }
}

impl Contact {
    /// A validated contact.
    pub fn new(name: &str, public: PublicKey, relays: Vec<Relay>) -> Result<Self, ContactError> {
        check_name(name)?;
        if relays.len() > INVITE_RELAYS_MAX {
            return Err(ContactError::TooManyRelays);
        }
        for (index, relay) in relays.iter().enumerate() {
            relay.check().map_err(|error| ContactError::BadRelayUrl { index, error })?;
        }
        Ok(Self { name: name.to_owned(), public, relays })
    }

    /// The contact's relays as (URL, certificate pin) pairs, in order of preference: what a client connecting
    /// to send to (or receive from) this contact's relay passes to its connection (the pin, when present,
    /// replaces certificate-authority trust for that relay).
    pub fn relays(&self) -> impl Iterator<Item = (&str, Option<&RelayPin>)> + '_ {
        self.relays.iter().map(|r| (r.url.as_str(), r.pin.as_ref()))
    }

    /// The contact's preferred relay, if its invite named any.
    pub fn first_relay(&self) -> Option<&Relay> {
        self.relays.first()
    }

    /// The invite this contact was enrolled from, in canonical form (what the safety code covers).
    pub fn invite(&self) -> Invite {
        Invite { public: self.public, relays: self.relays.clone() }
    }
}

/// Checks that `new` can join `existing` (owned by `me`): unique name, unique key, not ourselves, room left.
pub fn check_addition(existing: &[Contact], new: &Contact, me: &PublicKey) -> Result<(), ContactError> {
    if &new.public == me {
        return Err(ContactError::OwnKey);
    }
    if existing.len() >= CONTACTS_MAX {
        return Err(ContactError::TooMany);
    }
    if let Some(c) = existing.iter().find(|c| c.name == new.name) {
        return Err(ContactError::DuplicateName(c.name.clone()));
    }
    if let Some(c) = existing.iter().find(|c| c.public == new.public) {
        return Err(ContactError::DuplicateKey(c.name.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::identity::Identity;

    #[test]
    fn names_and_additions() {
        assert!(check_name("bob").is_ok());
        assert!(check_name("b.o-b_2").is_ok());
        assert_eq!(check_name(""), Err(ContactError::BadName(String::new())));
        assert!(check_name("bob smith").is_err());
        assert!(check_name("--help").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        let me = *Identity::from_seed(&[1; 32]).public();
        let bob = Contact::new("bob", *Identity::from_seed(&[2; 32]).public(), vec![]).unwrap();
        let bob2 = Contact::new("bob", *Identity::from_seed(&[3; 32]).public(), vec![]).unwrap();
        let robert = Contact::new("robert", bob.public, vec![]).unwrap();
        let myself = Contact::new("me", me, vec![]).unwrap();
        let list = vec![bob.clone()];
        assert_eq!(check_addition(&list, &bob2, &me), Err(ContactError::DuplicateName("bob".into())));
        assert_eq!(check_addition(&list, &robert, &me), Err(ContactError::DuplicateKey("bob".into())));
        assert_eq!(check_addition(&list, &myself, &me), Err(ContactError::OwnKey));
        assert_eq!(
            Contact::new("x", me, vec!["tcp://a".into()]),
            Err(ContactError::BadRelayUrl { index: 0, error: RelayUrlError::BadScheme })
        );
        assert_eq!(
            Contact::new("x", me, vec![Relay { url: "ws://a".into(), pin: Some([1; 32]) }]),
            Err(ContactError::BadRelayUrl { index: 0, error: RelayUrlError::PinOnPlaintext })
        );
        let pinned =
            Contact::new("x", me, vec![Relay::new("wss://a", Some([1; 32])).unwrap(), "ws://b".into()]).unwrap();
        let relays: Vec<_> = pinned.relays().collect();
        assert_eq!(relays, vec![("wss://a", Some(&[1; 32])), ("ws://b", None)]);
        assert_eq!(pinned.invite().relays, pinned.relays);
    }
}
