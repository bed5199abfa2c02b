//! The deliveries a client expects: for each contact, window and sequence number, the commit, routing and
//! blinded key, precomputed so that DELIVER is a hash-map lookup and filters can be built ahead of time.
//!
//! ```text
//! (contact, window, seq < SEQS_PER_WINDOW) ──DeliverySecrets──▶ t ──Y + t·G──▶ Y' ──▶ commit ──▶ bucket, fp
//!                                                                                      │
//!                              by_commit: commit ─▶ ExpectedDelivery ◀─────────────────┘
//!                              by_window: window ─▶ [commit]  (ordered: filters, pruning)
//! ```
//! Cost: one fixed-base scalar multiplication per entry, and one batched encoding per window: the points
//! are computed halved, `Y/2 + (t/2)·G`, so `double_and_compress_batch` encodes the window's
//! `SEQS_PER_WINDOW` keys with one shared field inversion. With the default one-hour horizon widened to
//! whole grid chunks, a contact is 2,900–7,500 entries (≈ 15 µs each: ~0.1 s once, then 8 per window) of
//! ~300 B. Entries of a window are computed once, when the window first enters the range, and pruned when
//! it leaves.

use std::collections::{BTreeMap, HashMap};

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::RistrettoPoint;

use super::delivery::{DeliveryId, DeliverySecrets, Routing, SEQS_PER_WINDOW};
use super::envelope::ExpectedKey;
use super::identity::PublicKey;
use super::kdf::INV2;
use super::pairwise::{Direction, PairwiseSecret};
use crate::proto::derive::Commit;

/// One delivery a contact may send us.
#[derive(Clone, Debug)]
pub struct ExpectedDelivery {
    /// Index of the contact in the client's contact list.
    pub contact: u32,
    /// The delivery id (window, the contact's sending direction, seq).
    pub id: DeliveryId,
    /// Header fields a matching proof carries.
    pub routing: Routing,
    /// The contact's blinded key for this delivery.
    pub key: ExpectedKey,
}

/// What the recipient needs to know about a contact to precompute its deliveries.
pub struct ExpectSource<'a> {
    /// Index of the contact.
    pub contact: u32,
    /// The contact's public key `Y`.
    pub public: &'a PublicKey,
    /// `Y/2` (see [`half_point`]), computed once per contact.
    pub public_half: &'a RistrettoPoint,
    /// The pairwise secret.
    pub secret: &'a PairwiseSecret,
    /// The direction the contact sends in.
    pub direction: Direction,
}

/// `Y/2`: what [`expect_window`] adds `(t/2)·G` to (one variable-base multiplication per contact).
pub fn half_point(public: &PublicKey) -> RistrettoPoint {
    *INV2 * public.point()
}

/// Computes the `SEQS_PER_WINDOW` expected deliveries of one contact in one window.
pub fn expect_window(source: &ExpectSource<'_>, window_start_s: u64, num_buckets: u16) -> Vec<ExpectedDelivery> {
    let secrets: Vec<DeliverySecrets> = (0..SEQS_PER_WINDOW)
        .map(|seq| {
            DeliverySecrets::derive(source.secret, DeliveryId { window_start_s, direction: source.direction, seq })
        })
        .collect();
    let halves: Vec<RistrettoPoint> =
        secrets.iter().map(|d| source.public_half + &(d.blind * *INV2) * RISTRETTO_BASEPOINT_TABLE).collect();
    let encodings = RistrettoPoint::double_and_compress_batch(&halves);
    secrets
        .iter()
        .zip(halves.iter().zip(encodings))
        .map(|(d, (half, encoding))| {
            let bytes = encoding.to_bytes();
            let routing = Routing::new(d.commit(&bytes), window_start_s, num_buckets);
            ExpectedDelivery {
                contact: source.contact,
                id: d.id,
                routing,
                key: ExpectedKey { point: half + half, bytes },
            }
        })
        .collect()
}

/// Expected deliveries of all contacts over a range of windows.
#[derive(Debug, Default)]
pub struct ExpectedTable {
    by_commit: HashMap<Commit, ExpectedDelivery>,
    /// Per window: the contacts already computed and their commits.
    by_window: BTreeMap<u64, WindowEntries>,
}

#[derive(Debug, Default)]
struct WindowEntries {
    contacts: Vec<u32>,
    commits: Vec<Commit>,
}

impl ExpectedTable {
    /// Whether `contact`'s deliveries of `window_start_s` are in the table.
    pub fn has(&self, contact: u32, window_start_s: u64) -> bool {
        self.by_window.get(&window_start_s).is_some_and(|w| w.contacts.contains(&contact))
    }

    /// Adds `contact`'s deliveries of `window_start_s` (a no-op when already there).
    pub fn fill(&mut self, source: &ExpectSource<'_>, window_start_s: u64, num_buckets: u16) {
        if self.has(source.contact, window_start_s) {
            return;
        }
        let entries = expect_window(source, window_start_s, num_buckets);
        let window = self.by_window.entry(window_start_s).or_default();
        window.contacts.push(source.contact);
        for entry in entries {
            window.commits.push(entry.routing.commit);
            self.by_commit.insert(entry.routing.commit, entry);
        }
    }

    /// The expected delivery with this commit.
    pub fn get(&self, commit: &Commit) -> Option<&ExpectedDelivery> {
        self.by_commit.get(commit)
    }

    /// Removes every window before `window_start_s`.
    pub fn prune_before(&mut self, window_start_s: u64) {
        let keep = self.by_window.split_off(&window_start_s);
        for (_, window) in std::mem::replace(&mut self.by_window, keep) {
            for commit in window.commits {
                self.by_commit.remove(&commit);
            }
        }
    }

    /// Entries of windows `from..=to`, in window order (within a window, in the order they were added).
    pub fn in_windows(&self, from_s: u64, to_s: u64) -> impl Iterator<Item = &ExpectedDelivery> + '_ {
        self.by_window.range(from_s..=to_s).flat_map(|(_, w)| w.commits.iter()).filter_map(|c| self.by_commit.get(c))
    }

    /// Number of expected deliveries held.
    pub fn len(&self) -> usize {
        self.by_commit.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_commit.is_empty()
    }

    /// First and last window held.
    pub fn window_range(&self) -> Option<(u64, u64)> {
        Some((*self.by_window.keys().next()?, *self.by_window.keys().next_back()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::identity::Identity;

    #[test]
    fn fill_lookup_prune() {
        let bob = Identity::from_seed(&[0xB0; 32]);
        let k = PairwiseSecret::from_bytes([1; 32]);
        let half = half_point(bob.public());
        let src = ExpectSource {
            contact: 0,
            public: bob.public(),
            public_half: &half,
            secret: &k,
            direction: Direction::HighToLow,
        };
        let mut t = ExpectedTable::default();
        t.fill(&src, 10, 64);
        t.fill(&src, 20, 64);
        t.fill(&src, 20, 64);
        assert_eq!(t.len(), 2 * SEQS_PER_WINDOW as usize);
        assert_eq!(t.window_range(), Some((10, 20)));
        let first = t.in_windows(20, 20).next().unwrap().clone();
        assert_eq!((first.id.window_start_s, first.id.seq), (20, 0));
        assert_eq!(t.get(&first.routing.commit).unwrap().id, first.id);
        assert_eq!(first.routing.commit, expect_window(&src, 20, 64)[0].routing.commit);
        // The batched, halved computation gives the plain Y' = Y + t·G of every delivery.
        for e in t.in_windows(10, 20) {
            let plain = DeliverySecrets::derive(&k, e.id).blinded_public(bob.public());
            assert_eq!(e.key.point, plain);
            assert_eq!(&e.key.bytes, plain.compress().as_bytes());
        }
        t.prune_before(20);
        assert_eq!(t.len(), SEQS_PER_WINDOW as usize);
        assert!(!t.has(0, 10));
        assert!(t.has(0, 20));
    }
}
