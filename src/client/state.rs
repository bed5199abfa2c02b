//! `ClientState`: the sans-IO client. Contacts, pairwise secrets, send counters, expected deliveries,
//! subscription renewal, dedup and reassembly; time and randomness are arguments, I/O is the driver's.
//!
//! ```text
//! driver ──now_s──▶ poll_subscribe ──▶ [Subscribe]        ──▶ relay   (send.rs: prepare_send ──▶ [Proof])
//! relay  ──DELIVER / FETCH_REPLY──▶ handle_deliver ──▶ Option<ReceivedMessage>        (receive.rs)
//! driver ◀── persisted() after anything that set `is_dirty()`  (send counters before publishing!)
//! ```
//! The methods live in five files by concern: this one (construction, contacts, horizon, persistence),
//! `send.rs`, `receive.rs`, `renewal.rs` and `catchup.rs` (past windows, covered-through, gap).

use std::collections::{BTreeMap, BTreeSet};

use super::claims::SubscriberSecret;
use super::config::{ClientConfig, ConfigError};
use super::contact::{check_addition, Contact, ContactError};
use super::delivery::SEQS_PER_WINDOW;
use super::dummy::dummy_proof;
use super::expect::{half_point, ExpectSource, ExpectedTable};
use super::identity::Identity;
use super::kdf::LABEL_PADDING;
use super::pairwise::{pair, Pairing, PairwiseError};
use super::persist::{Coverage, PersistedContact, PersistedState, STATE_VERSION, STATE_VERSION_V1};
use super::reassembly::Reassembly;
use super::receive::ReceiveStats;
use super::subscription::{chunk_bounds, chunk_windows_for, SubscribeMode};
use crate::proto::derive::window_start;
use crate::proto::frame::SubscriberId;
use crate::proto::proof::Proof;
use curve25519_dalek::ristretto::RistrettoPoint;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Most subscriber ids a state keeps (the relay's default per-connection limit).
pub const SUBSCRIBER_IDS_MAX: usize = 64;

/// Why a client state cannot be built or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A contact is invalid or clashes with another.
    #[error(transparent)]
    Contact(#[from] ContactError),
    /// No pairwise secret with a contact.
    #[error(transparent)]
    Pairwise(#[from] PairwiseError),
    /// The configuration cannot keep a subscription alive.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The persisted state has another version.
    #[error("state file version {0} is not supported")]
    UnsupportedVersion(u32),
    /// A persisted subscriber secret is not 64 hex digits, a FETCH cursor names an id of none of them, or
    /// there are too many.
    #[error("state file has a malformed subscriber secret list")]
    BadSubscriberIds,
}

/// The last send of a contact: window and next free sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SendCounter {
    pub(super) window_start_s: u64,
    pub(super) next_seq: u32,
}

/// One contact with everything derived from it.
pub(super) struct ContactState {
    pub(super) contact: Contact,
    pub(super) pairing: Pairing,
    /// `Y/2` of the contact, for batched precomputation (`expect::half_point`).
    pub(super) public_half: RistrettoPoint,
    pub(super) send: Option<SendCounter>,
    /// `(window_start_s, seq)` accepted from this contact: a second proof for one of them is a replay.
    pub(super) received: BTreeSet<(u64, u32)>,
    /// Last window the relay durably registered our filters for this contact through (`None`: never, a
    /// newly enrolled contact); `catch_up` subscribes from the window after it.
    pub(super) covered_through_s: Option<u64>,
    /// Set by `catch_up` for the subscription that follows it: the windows up to this one are covered by
    /// the catch-up frames (or were already), so `confirm_coverage` may extend `covered_through_s`.
    pub(super) catch_up_through_s: Option<u64>,
}

impl ContactState {
    /// What the expected-delivery table needs to precompute this contact's deliveries to us (`index`: its
    /// position in the contact list).
    pub(super) fn expect_source(&self, index: usize) -> ExpectSource<'_> {
        ExpectSource {
            contact: index as u32,
            public: &self.contact.public,
            public_half: &self.public_half,
            secret: &self.pairing.secret,
            direction: self.pairing.send_direction.reverse(),
        }
    }
}

/// A subscription sent and not yet confirmed: once the relay acknowledged all of it (and, in `sync`, the
/// FETCH after it completed), the first `contacts` contacts are covered through `to_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PendingCover {
    pub(super) from_s: u64,
    pub(super) to_s: u64,
    pub(super) contacts: usize,
}

/// The sans-IO client.
pub struct ClientState {
    pub(super) identity: Identity,
    pub(super) config: ClientConfig,
    pub(super) contacts: Vec<ContactState>,
    pub(super) expected: ExpectedTable,
    pub(super) reassembly: Reassembly,
    pub(super) subscriber_ids: Vec<SubscriberId>,
    /// The secret of each of `subscriber_ids`, in the same order (claims.rs).
    pub(super) subscriber_secrets: Vec<SubscriberSecret>,
    /// Earliest window deliveries may be waiting for us in: the start of the first subscription.
    pub(super) expect_from_s: Option<u64>,
    /// The last subscription produced by `poll_subscribe`.
    pub(super) subscribed: Option<Coverage>,
    /// A contact was added since the last subscription: its fingerprints are not registered yet.
    pub(super) resubscribe: bool,
    /// The last subscription produced, until `confirm_coverage`.
    pub(super) pending_cover: Option<PendingCover>,
    /// FETCH cursor per subscriber id (0 = from the oldest retained proof).
    pub(super) fetch_cursors: BTreeMap<SubscriberId, u64>,
    /// Something persistent changed since `mark_clean`.
    pub(super) dirty: bool,
    pub(super) stats: ReceiveStats,
    /// Derives the padding items of padded subscriptions: `SHA-256("tessera/v1/padding" ‖ seed)`, a secret,
    /// stable across runs so every renewal pads a window with the same items.
    pub(super) pad_key: Zeroizing<[u8; 32]>,
}

fn hex16(id: &SubscriberId) -> String {
    id.0.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex16(text: &str) -> Option<SubscriberId> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(SubscriberId(out))
}

impl ClientState {
    /// A client for `identity` with `contacts`, resuming from `persisted` (`PersistedState::default()` for
    /// a new one).
    pub fn new(
        identity: Identity,
        contacts: Vec<Contact>,
        persisted: PersistedState,
        config: ClientConfig,
    ) -> Result<Self, StateError> {
        config.check()?;
        // A version-1 file holds bare subscriber ids, which no CLAIM can be made for (protocol version 3): they
        // are dropped with their FETCH cursors and every contact counts as never covered, so the first
        // subscription (at once: `resubscribe`) draws new secrets and catches up every retained window
        // (the relay matches those against what it kept), and the received set drops what was opened before.
        let legacy_ids = persisted.version == STATE_VERSION_V1;
        if persisted.version != STATE_VERSION && !legacy_ids {
            return Err(StateError::UnsupportedVersion(persisted.version));
        }
        if persisted.subscriber_secrets.len() > SUBSCRIBER_IDS_MAX
            || persisted.subscriber_ids.len() > SUBSCRIBER_IDS_MAX
        {
            return Err(StateError::BadSubscriberIds);
        }
        if !legacy_ids && !persisted.subscriber_ids.is_empty() {
            return Err(StateError::BadSubscriberIds);
        }
        let subscriber_secrets = persisted
            .subscriber_secrets
            .iter()
            .map(|s| SubscriberSecret::from_hex(s))
            .collect::<Option<Vec<_>>>()
            .ok_or(StateError::BadSubscriberIds)?;
        let subscriber_ids: Vec<SubscriberId> = subscriber_secrets.iter().map(SubscriberSecret::id).collect();
        let mut fetch_cursors = BTreeMap::new();
        for (id, &cursor) in persisted.fetch_cursors.iter().filter(|_| !legacy_ids) {
            let id = parse_hex16(id).filter(|id| subscriber_ids.contains(id)).ok_or(StateError::BadSubscriberIds)?;
            fetch_cursors.insert(id, cursor);
        }
        // A file from before `covered_through_s` existed: its contacts were subscribed through its last
        // subscription (the old client's only notion of coverage).
        let legacy_cover = match &persisted.covered_through_s {
            None if !legacy_ids => persisted.subscribed.map(|c| c.to_s),
            _ => None,
        };
        let pad_key =
            Zeroizing::new(Sha256::new().chain_update(LABEL_PADDING).chain_update(identity.seed()).finalize().into());
        let mut state = Self {
            pad_key,
            identity,
            config,
            contacts: Vec::with_capacity(contacts.len()),
            expected: ExpectedTable::default(),
            reassembly: Reassembly::default(),
            subscriber_ids,
            subscriber_secrets,
            expect_from_s: persisted.expect_from_s,
            subscribed: persisted.subscribed,
            fetch_cursors,
            resubscribe: false,
            pending_cover: None,
            dirty: false,
            stats: ReceiveStats::default(),
        };
        for contact in contacts {
            let key = contact.public.to_base64();
            let saved = persisted.contacts.get(&key);
            let covered = match &persisted.covered_through_s {
                Some(_) if legacy_ids => None,
                Some(map) => map.get(&key).copied(),
                None => legacy_cover.filter(|_| saved.is_some()),
            };
            state.push_contact(contact, saved, covered)?;
        }
        // A new run subscribes at once: the connection is new, and contacts may have been enrolled since.
        state.resubscribe = true;
        // A migrated file must reach the disk in the new format before anything is sent with new ids.
        state.dirty |= legacy_ids;
        Ok(state)
    }

    fn push_contact(
        &mut self,
        contact: Contact,
        saved: Option<&PersistedContact>,
        covered_through_s: Option<u64>,
    ) -> Result<(), StateError> {
        let existing: Vec<Contact> = self.contacts.iter().map(|c| c.contact.clone()).collect();
        check_addition(&existing, &contact, self.identity.public())?;
        let pairing = pair(&self.identity, &contact.public)?;
        let (send, received) = match saved {
            Some(s) => (
                Some(SendCounter { window_start_s: s.send_window_s, next_seq: s.send_next_seq }),
                s.received.iter().copied().collect(),
            ),
            None => (None, BTreeSet::new()),
        };
        let public_half = half_point(&contact.public);
        self.contacts.push(ContactState {
            contact,
            pairing,
            public_half,
            send,
            received,
            covered_through_s,
            catch_up_through_s: None,
        });
        self.resubscribe = true;
        Ok(())
    }

    /// Adds a contact (enrolment while running); the next `poll_subscribe` registers its fingerprints.
    pub fn add_contact(&mut self, contact: Contact) -> Result<(), StateError> {
        self.push_contact(contact, None, None)?;
        self.dirty = true;
        Ok(())
    }

    /// The identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The contacts, in enrolment order.
    pub fn contacts(&self) -> impl Iterator<Item = &Contact> + '_ {
        self.contacts.iter().map(|c| &c.contact)
    }

    /// The subscriber ids in use (FETCH each of them on reconnect).
    pub fn subscriber_ids(&self) -> &[SubscriberId] {
        &self.subscriber_ids
    }

    /// Where to resume FETCH for `subscriber` (0 = from the oldest proof the relay retains).
    pub fn fetch_cursor(&self, subscriber: &SubscriberId) -> u64 {
        self.fetch_cursors.get(subscriber).copied().unwrap_or(0)
    }

    /// Records the `next_cursor` of a FETCH_REPLY for `subscriber`, once its proofs were handled.
    pub fn set_fetch_cursor(&mut self, subscriber: SubscriberId, cursor: u64) {
        if self.fetch_cursors.insert(subscriber, cursor) != Some(cursor) {
            self.dirty = true;
        }
    }

    /// Number of expected deliveries precomputed.
    pub fn expected_len(&self) -> usize {
        self.expected.len()
    }

    /// First and last window start of the precomputed expectations.
    pub fn expected_windows(&self) -> Option<(u64, u64)> {
        self.expected.window_range()
    }

    /// Counters of what `handle_deliver` accepted and discarded.
    pub fn stats(&self) -> &ReceiveStats {
        &self.stats
    }

    /// A dummy proof for the current window (cover traffic).
    pub fn dummy_proof<R: RngCore + CryptoRng>(&self, now_s: u64, rng: &mut R) -> Proof {
        dummy_proof(now_s, self.config.window_s, self.config.num_buckets, rng)
    }

    /// Chunk length (windows) of the padded subscription grid for the current contacts, at most the span
    /// of one subscription (longer chunks would only add precomputation for windows not yet subscribed).
    pub(super) fn chunk_windows(&self) -> u64 {
        // Our own cover fingerprints count against the filters' budget like a contact's.
        let per_window = self.contacts.len() as u64 * u64::from(SEQS_PER_WINDOW) + self.cover_per_window();
        let natural = chunk_windows_for(per_window, self.config.num_buckets, self.config.fingerprints_per_filter_max);
        natural.min(u64::from(self.config.ahead_windows) + 2)
    }

    /// Window range whose deliveries are expected at `now_s`: from the first subscription's start (at most
    /// `behind_windows` back) to `ahead_windows` past the current window — widened, in padded mode, to whole
    /// chunks of the subscription grid, whose filters hold every window of their chunk.
    pub(super) fn expect_range(&self, now_s: u64) -> (u64, u64) {
        let ws = self.config.window_s;
        let current = window_start(now_s, ws);
        let oldest = self.oldest_window_s(now_s);
        let from = self.expect_from_s.unwrap_or(current.saturating_sub(ws)).max(oldest).min(current);
        let to = current + u64::from(self.config.ahead_windows) * ws;
        match self.config.subscribe_mode {
            SubscribeMode::EveryBucketPadded => {
                let chunk = self.chunk_windows();
                let (first, _) = chunk_bounds(current.saturating_sub(ws), chunk, ws);
                (from.min(first), chunk_bounds(to, chunk, ws).1)
            }
            _ => (from, to),
        }
    }

    /// The oldest window whose deliveries are expected at `now_s`: `behind_windows` (the relay's retention)
    /// before the current one. Nothing older can be caught up.
    pub(super) fn oldest_window_s(&self, now_s: u64) -> u64 {
        let ws = self.config.window_s;
        window_start(now_s, ws).saturating_sub(u64::from(self.config.behind_windows) * ws)
    }

    /// Precomputes expected deliveries up to the horizon at `now_s` and forgets windows that fell out of it.
    /// `poll_subscribe` calls it; call it directly before handling FETCHed proofs if no subscription was
    /// made yet in this run. Cost: ~10 µs per new (contact, window, seq).
    pub fn advance(&mut self, now_s: u64) {
        let (from, to) = self.expect_range(now_s);
        let ws = self.config.window_s;
        self.expected.prune_before(from);
        self.reassembly.prune_before(from);
        for (index, c) in self.contacts.iter_mut().enumerate() {
            let before = c.received.len();
            c.received.retain(|&(w, _)| w >= from);
            self.dirty |= c.received.len() != before;
            let source = c.expect_source(index);
            let mut w = from;
            while w <= to {
                self.expected.fill(&source, w, self.config.num_buckets);
                w += ws;
            }
        }
    }

    /// Whether anything to persist changed since the last `mark_clean`.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Records that the driver persisted `persisted()`.
    pub fn mark_clean(&mut self) {
        self.dirty = false;
    }

    /// The state to persist.
    ///
    /// Parts of a message still waiting for its other parts live only in memory, so they are saved as not
    /// received, and while any is held every FETCH cursor is saved as 0: after a restart, a FETCH from the
    /// oldest retained match brings those parts back (at least once; what was completed is dropped as a
    /// replay). Saving them as received, or a cursor past them, would lose the message for good.
    pub fn persisted(&self) -> PersistedState {
        let held: BTreeSet<(u32, u64, u32)> = self.reassembly.held_parts().collect();
        let contacts = self
            .contacts
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let (send_window_s, send_next_seq) = c.send.map_or((0, 0), |s| (s.window_start_s, s.next_seq));
                let received = c
                    .received
                    .iter()
                    .copied()
                    .filter(|&(window, seq)| !held.contains(&(index as u32, window, seq)))
                    .collect();
                let saved = PersistedContact { send_window_s, send_next_seq, received };
                (c.contact.public.to_base64(), saved)
            })
            .collect();
        let cursor = |c: u64| if held.is_empty() { c } else { 0 };
        let covered =
            self.contacts.iter().filter_map(|c| Some((c.contact.public.to_base64(), c.covered_through_s?))).collect();
        PersistedState {
            version: STATE_VERSION,
            subscriber_ids: Vec::new(),
            subscriber_secrets: self.subscriber_secrets.iter().map(SubscriberSecret::to_hex).collect(),
            expect_from_s: self.expect_from_s,
            subscribed: self.subscribed,
            contacts,
            fetch_cursors: self.fetch_cursors.iter().map(|(id, &c)| (hex16(id), cursor(c))).collect(),
            covered_through_s: Some(covered),
        }
    }

    /// Whether parts of an incomplete message are held (their other parts have not arrived yet).
    pub fn has_partial_messages(&self) -> bool {
        !self.reassembly.is_empty()
    }

    /// Index of the contact named `name`.
    pub(super) fn contact_index(&self, name: &str) -> Option<usize> {
        self.contacts.iter().position(|c| c.contact.name == name)
    }
}

impl std::fmt::Debug for ClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientState")
            .field("public", self.identity.public())
            .field("contacts", &self.contacts.len())
            .field("expected", &self.expected.len())
            .field("subscribed", &self.subscribed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriber_id_hex() {
        let id = SubscriberId([0xab; 16]);
        assert_eq!(parse_hex16(&hex16(&id)), Some(id));
        assert_eq!(parse_hex16("zz"), None);
        assert_eq!(parse_hex16(&"g".repeat(32)), None);
    }
}
