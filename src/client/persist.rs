//! What of the client state survives a restart, as plain serde data (`state.json`; written by `store`).
//!
//! The one field that must never go backwards is each contact's send counter: a sequence number reused
//! in the same window would seal two plaintexts under one AES-GCM key and nonce. The driver writes this
//! state durably after `prepare_send` and before publishing, and never restores an older copy (a backup
//! restored over a newer state is the one way to reuse a nonce; see docs/PROTOCOL.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `version` of the persisted state. Version 2 keeps subscriber *secrets* (capability ids, protocol
/// version 3); a version-1 file (bare subscriber ids) is still read: its ids are dropped, since no CLAIM can
/// be made for them, and new secrets are drawn and subscribed at once (`ClientState::new`).
pub const STATE_VERSION: u32 = 2;
/// The previous `version`, still read (its `subscriber_ids` are dropped).
pub const STATE_VERSION_V1: u32 = 1;

/// Per contact, keyed by the contact's base64url public key (stable across renames).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedContact {
    /// Window of the last send, Unix seconds.
    pub send_window_s: u64,
    /// Next unused sequence number in that window.
    pub send_next_seq: u32,
    /// `(window_start_s, seq)` of deliveries already accepted from this contact (dedup across restarts).
    pub received: Vec<(u64, u32)>,
}

/// The window range a SUBSCRIBE covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    /// First window covered.
    pub from_s: u64,
    /// Last window covered.
    pub to_s: u64,
    /// Window in which it was sent.
    pub sent_in_s: u64,
}

/// The persisted client state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedState {
    /// `STATE_VERSION`.
    pub version: u32,
    /// Version 1 only: bare subscriber ids (hex). Read and dropped (no CLAIM can be made for them); never
    /// written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriber_ids: Vec<String>,
    /// Version 2: the 32-byte secret of each subscriber id (64 hex digits), in order; the ids are derived from
    /// them. Kept so that a restarted client can CLAIM its ids and fetch what was matched while it was away.
    /// Secret: anyone holding one can act as that subscriber (the file is mode 0600).
    #[serde(default)]
    pub subscriber_secrets: Vec<String>,
    /// Earliest window whose deliveries may be waiting for us (the first subscription's start).
    pub expect_from_s: Option<u64>,
    /// The last subscription sent.
    pub subscribed: Option<Coverage>,
    /// Per contact.
    pub contacts: BTreeMap<String, PersistedContact>,
    /// FETCH cursor per subscriber id (hex), as returned by the last FETCH_REPLY: where to resume.
    #[serde(default)]
    pub fetch_cursors: BTreeMap<String, u64>,
    /// Per contact (base64url public key): the last window through which the relay has durably registered
    /// our filters for that contact (SUBSCRIBED, then FETCH), so the next run catches up from the window
    /// after it. `None` in a file written before this field existed: every contact of the file then
    /// counts as covered through `subscribed.to_s`. A contact missing from the map was never covered.
    #[serde(default)]
    pub covered_through_s: Option<BTreeMap<String, u64>>,
}

impl Default for PersistedState {
    fn default() -> Self {
        Self {
            version: STATE_VERSION,
            subscriber_ids: Vec::new(),
            subscriber_secrets: Vec::new(),
            expect_from_s: None,
            subscribed: None,
            contacts: BTreeMap::new(),
            fetch_cursors: BTreeMap::new(),
            covered_through_s: Some(BTreeMap::new()),
        }
    }
}
