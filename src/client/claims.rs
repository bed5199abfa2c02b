//! The client's subscriber keys: one 32-byte secret per subscriber id, persisted, and the CLAIMs that let a
//! connection use the ids (docs/PROTOCOL.md §4.12).
//!
//! ```text
//! ensure_subscriber_ids ─rng─▶ secret (32 B) ─proto::claim─▶ key pair ─▶ wire id = H(X)[0..16]
//! persisted(): secrets as hex ("subscriber_secrets"); ids are derived again on load
//! driver, per connection: claim(id, HELLO_REPLY node_id, auth_nonce, rng) ─▶ CLAIM before the id's first
//!   SUBSCRIBE / FETCH / UNSUBSCRIBE on that connection
//! ```
//! An id observed on the wire is useless to anyone else: every use of it needs a CLAIM signed with the secret
//! for the connection's own nonce.

use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use super::state::ClientState;
use crate::proto::claim::{AuthNonce, Claim, SubscriberKeyPair, SUBSCRIBER_SECRET_LEN};
use crate::proto::frame::{NodeId, SubscriberId};

/// One subscriber id's secret and the key pair derived from it.
#[derive(Clone)]
pub(super) struct SubscriberSecret {
    secret: Zeroizing<[u8; SUBSCRIBER_SECRET_LEN]>,
    pair: SubscriberKeyPair,
}

impl SubscriberSecret {
    /// A fresh secret from `rng` (a CSPRNG).
    pub(super) fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut secret = Zeroizing::new([0u8; SUBSCRIBER_SECRET_LEN]);
        rng.fill_bytes(secret.as_mut());
        Self::from_secret(secret)
    }

    fn from_secret(secret: Zeroizing<[u8; SUBSCRIBER_SECRET_LEN]>) -> Self {
        let pair = SubscriberKeyPair::from_secret(&secret);
        Self { secret, pair }
    }

    /// The secret from 64 hex digits (the state file), or `None`.
    pub(super) fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 2 * SUBSCRIBER_SECRET_LEN || !text.is_ascii() {
            return None;
        }
        let mut secret = Zeroizing::new([0u8; SUBSCRIBER_SECRET_LEN]);
        for (i, byte) in secret.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self::from_secret(secret))
    }

    /// The secret as 64 hex digits.
    pub(super) fn to_hex(&self) -> String {
        self.secret.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The wire id.
    pub(super) fn id(&self) -> SubscriberId {
        self.pair.id()
    }
}

impl ClientState {
    /// A CLAIM of subscriber `id` for the connection to relay `node_id` whose HELLO_REPLY announced
    /// `auth_nonce` (send it before the id's first SUBSCRIBE, FETCH or UNSUBSCRIBE on that connection);
    /// `None` for an id this state does not hold.
    pub fn claim<R: RngCore + CryptoRng>(
        &self,
        id: &SubscriberId,
        node_id: &NodeId,
        auth_nonce: &AuthNonce,
        rng: &mut R,
    ) -> Option<Claim> {
        let key = self.subscriber_secrets.iter().find(|s| s.id() == *id)?;
        let mut aux = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(aux.as_mut());
        Some(key.pair.claim(node_id, auth_nonce, &aux))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::claim::verify_claim;

    #[test]
    fn secrets_round_trip_through_hex_and_keep_their_id() {
        let s = SubscriberSecret::generate(&mut rand_core::OsRng);
        let back = SubscriberSecret::from_hex(&s.to_hex()).expect("64 hex digits");
        assert_eq!(back.id(), s.id());
        assert!(SubscriberSecret::from_hex("zz").is_none());
        assert!(SubscriberSecret::from_hex(&"g".repeat(64)).is_none());
        let claim = back.pair.claim(&[1; 16], &[2; 16], &[0; 32]);
        assert_eq!(verify_claim(&claim, &[1; 16], &[2; 16]), Ok(s.id()));
    }
}
