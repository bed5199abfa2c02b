//! Catching up: registering filters for the past windows a contact's messages may already wait in, and
//! saying so when some of them lie beyond the relay's retention.
//!
//! ```text
//! catch_up(now_s, rng)                      (before subscribe_now, with the same now_s)
//!   oldest = the current window − behind_windows (the relay's retention): nothing older is kept
//!   per contact: start = covered_through + 1 window, or oldest for a contact never covered (just enrolled)
//!                start < oldest ──▶ gap [start, oldest): "may have been lost" (reported, once)
//!   past = [min start (≥ oldest), the main subscription's first window − 1]      empty ──▶ no frames
//!   entries = plan(expectations of the grid chunks over past), in pieces that fit the subscriber ids
//!   every entry's window_to_s raised to the main subscription's first window (the relay refuses a range
//!   that ends before its previous window)
//! driver: catch-up frames, then subscribe_now's, each SUBSCRIBED in turn ─▶ FETCH ─▶ confirm_coverage
//! confirm_coverage: covered_through ← the main subscription's last window, for each contact whose windows
//!   before it were covered (already, or by the catch-up frames)
//! ```
//! The relay matches the past windows of a SUBSCRIBE against the proofs it retained and records the matches
//! for FETCH before it answers SUBSCRIBED, so a message sent before we enrolled its sender, or while our
//! subscription had lapsed, is fetched like any other. The pieces reuse the main subscription's subscriber
//! ids: a SUBSCRIBE replaces an id's entries, each piece's matches are recorded once it is acknowledged, and
//! the main subscription sent last restores the live entries and, reaching a window into the past itself,
//! matches what arrived in between.
//!
//! Privacy: past windows are planned on the same absolute grid with the same padding, so each chunk's
//! filters are bit-for-bit those sent while the chunk was current (expectations of the chunk's windows that
//! already left the table are recomputed for this); only the entries' ranges differ.

use rand_core::{CryptoRng, RngCore};

use super::expect::expect_window;
use super::state::ClientState;
use super::subscription::{chunk_bounds, plan, Expectation, PlanError, PlanParams, SubscribeMode};
use crate::proto::frame::{Subscribe, SubscribeEntry};

/// Windows whose messages may have been lost: our subscription lapsed before them and the relay no longer
/// keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoverageGap {
    /// Start of the first window not covered (Unix seconds).
    pub from_s: u64,
    /// Start of the oldest window caught up: messages from then on are delivered (Unix seconds).
    pub to_s: u64,
    /// The relay's retention, seconds (HELLO_REPLY).
    pub retention_s: u64,
}

/// What `catch_up` returns.
#[derive(Debug, Default)]
pub struct CatchUp {
    /// SUBSCRIBE frames for the past windows, to send (each acknowledged in turn) before the main
    /// subscription's. Empty when every contact is covered up to the main subscription.
    pub frames: Vec<Subscribe>,
    /// First window the frames cover, if any.
    pub from_s: Option<u64>,
    /// Windows that can no longer be caught up, if any.
    pub gap: Option<CoverageGap>,
}

/// Entries of the planned slots, per piece of the past range.
type Pieces = Vec<Vec<Vec<SubscribeEntry>>>;

impl ClientState {
    /// The SUBSCRIBE frames covering the windows before the main subscription at `now_s` that some contact
    /// is not covered for yet (from `covered_through + 1 window`, or from the oldest retained window for a
    /// contact never covered), and the gap that can no longer be covered. Call it right before
    /// [`ClientState::subscribe_now`] with the same `now_s`, send its frames first, and call
    /// [`ClientState::confirm_coverage`] once all of them and the subscription were acknowledged.
    pub fn catch_up<R: RngCore + CryptoRng>(&mut self, now_s: u64, rng: &mut R) -> Result<CatchUp, PlanError> {
        let ws = self.config.window_s;
        let (current, main_from, _) = self.subscription_range(now_s);
        let oldest = self.oldest_window_s(now_s.max(current));
        let mut past_from: Option<u64> = None;
        let mut gap_from: Option<u64> = None;
        for c in &mut self.contacts {
            let start = match c.covered_through_s {
                Some(through) => {
                    let next = through.saturating_add(ws);
                    if next < oldest {
                        gap_from = Some(gap_from.map_or(next, |g| g.min(next)));
                    }
                    next.max(oldest)
                }
                None => oldest,
            };
            if start < main_from {
                past_from = Some(past_from.map_or(start, |p| p.min(start)));
            }
            // Covered up to the main subscription once the frames below are acknowledged.
            c.catch_up_through_s = Some(main_from.saturating_sub(ws));
        }
        let gap = gap_from.map(|from_s| CoverageGap { from_s, to_s: oldest, retention_s: self.config.retention_s });
        let Some(from) = past_from else {
            return Ok(CatchUp { frames: Vec::new(), from_s: None, gap });
        };
        let to = main_from - ws;
        // The table must hold the past windows, to open what the relay matches in them.
        self.expect_from_s = Some(self.expect_from_s.map_or(from, |e| e.min(from)));
        self.advance(now_s.max(current));
        let chunk_windows = self.chunk_windows();
        let items = self.past_items(from, to, chunk_windows, now_s.max(current));
        let params = self.plan_params(chunk_windows);
        let mut pieces = Vec::new();
        plan_pieces(&items, from, to, &params, &self.pad_key, &mut pieces)?;
        let mut frames = Vec::new();
        for slots in pieces {
            self.ensure_subscriber_ids(slots.len(), rng);
            for (subscriber, mut entries) in self.subscriber_ids.iter().copied().zip(slots) {
                for e in &mut entries {
                    e.window_to_s = e.window_to_s.max(main_from);
                }
                frames.push(Subscribe { subscriber, entries });
            }
        }
        self.dirty = true;
        Ok(CatchUp { frames, from_s: Some(from), gap })
    }

    /// Records that the last subscription (and the catch-up before it) was acknowledged by the relay and,
    /// in a sync, that the FETCH after it completed: each contact whose earlier windows were covered is now
    /// covered through the subscription's last window. Persist afterwards.
    pub fn confirm_coverage(&mut self) {
        let Some(pending) = self.pending_cover.take() else { return };
        let ws = self.config.window_s;
        for c in self.contacts.iter_mut().take(pending.contacts) {
            let before = c.covered_through_s.max(c.catch_up_through_s.take());
            if before.is_some_and(|t| t.saturating_add(ws) >= pending.from_s)
                && c.covered_through_s.is_none_or(|t| t < pending.to_s)
            {
                c.covered_through_s = Some(pending.to_s);
                self.dirty = true;
            }
        }
    }

    /// The connection that carried the last subscription is gone before it was confirmed: nothing of it
    /// counts as acknowledged, and the next `poll_subscribe` (or `catch_up` + `subscribe_now`) is due at once.
    pub fn subscription_lost(&mut self) {
        self.pending_cover = None;
        for c in &mut self.contacts {
            c.catch_up_through_s = None;
        }
        self.resubscribe = true;
    }

    /// Whether a subscription was produced and not yet confirmed.
    pub fn has_unconfirmed_coverage(&self) -> bool {
        self.pending_cover.is_some()
    }

    /// The last window the relay registered `contact`'s deliveries through (`None`: never).
    pub fn covered_through_s(&self, contact: &str) -> Option<u64> {
        self.contact_index(contact).and_then(|i| self.contacts[i].covered_through_s)
    }

    /// The expectations the planner reads for `from..=to`: in padded mode every window of the grid chunks
    /// touched, recomputing those that already left the table (so the chunk's filters come out as they were).
    fn past_items(&self, from: u64, to: u64, chunk_windows: u64, now_s: u64) -> Vec<Expectation> {
        let ws = self.config.window_s;
        let (items_from, items_to) = match self.config.subscribe_mode {
            SubscribeMode::EveryBucketPadded => {
                (chunk_bounds(from, chunk_windows, ws).0, chunk_bounds(to, chunk_windows, ws).1)
            }
            _ => (from, to),
        };
        let table_from = self.expect_range(now_s).0;
        let mut items: Vec<Expectation> = self
            .expected
            .in_windows(items_from.max(table_from), items_to)
            .map(|e| Expectation {
                bucket: e.routing.bucket,
                window_start_s: e.id.window_start_s,
                fingerprint: e.routing.fingerprint,
            })
            .chain(self.cover_expectations(items_from, items_to))
            .collect();
        for (index, c) in self.contacts.iter().enumerate() {
            let source = c.expect_source(index);
            let mut w = items_from;
            while w < table_from.min(items_to + ws) {
                items.extend(expect_window(&source, w, self.config.num_buckets).into_iter().map(|e| Expectation {
                    bucket: e.routing.bucket,
                    window_start_s: w,
                    fingerprint: e.routing.fingerprint,
                }));
                w += ws;
            }
        }
        items
    }
}

/// Plans `from..=to`, halving the range (at grid-chunk boundaries in padded mode, so every chunk keeps its
/// filters) while it needs more subscriber ids than the relay allows one connection.
fn plan_pieces(
    items: &[Expectation],
    from: u64,
    to: u64,
    params: &PlanParams,
    pad_key: &[u8; 32],
    out: &mut Pieces,
) -> Result<(), PlanError> {
    match plan(items, from, to, params, pad_key) {
        Ok(slots) => {
            out.push(slots);
            Ok(())
        }
        Err(e @ PlanError::TooManySubscribers { .. }) => {
            let Some(mid) = split_point(from, to, params) else { return Err(e) };
            plan_pieces(items, from, mid - params.window_s, params, pad_key, out)?;
            plan_pieces(items, mid, to, params, pad_key, out)
        }
        Err(e) => Err(e),
    }
}

/// The middle unit boundary strictly after `from` and at most `to` (a unit is a grid chunk in padded mode,
/// a window otherwise); `None` when the range is a single unit.
fn split_point(from: u64, to: u64, params: &PlanParams) -> Option<u64> {
    let unit = match params.mode {
        SubscribeMode::EveryBucketPadded => params.chunk_windows.max(1) * params.window_s,
        _ => params.window_s,
    };
    let first = (from / unit + 1) * unit;
    if first > to {
        return None;
    }
    let last = to / unit * unit;
    Some(first + (last - first) / unit / 2 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::bloom::BloomParams;

    #[test]
    fn split_points_fall_on_unit_boundaries() {
        let params = PlanParams {
            num_buckets: 4,
            window_s: 10,
            bloom: BloomParams::default(),
            fingerprints_per_filter_max: 3,
            chunk_windows: 3,
            filters_per_bucket_max: 1,
            entries_per_subscribe_max: 4,
            subscribers_max: 1,
            mode: SubscribeMode::EveryBucketPadded,
        };
        // Chunks of 30 s: [0, 20], [30, 50], [60, 80], [90, 110].
        assert_eq!(split_point(10, 110, &params), Some(60));
        assert_eq!(split_point(30, 50, &params), None);
        assert_eq!(split_point(30, 60, &params), Some(60));
        let matching = PlanParams { mode: SubscribeMode::DangerMatchingBucketsOnly, ..params };
        assert_eq!(split_point(10, 50, &matching), Some(30));
        assert_eq!(split_point(10, 10, &matching), None);
        // Four chunks, one entry per slot: one piece per chunk, each fitting one subscriber id.
        let mut pieces = Vec::new();
        plan_pieces(&[], 0, 110, &PlanParams { entries_per_subscribe_max: 4, ..params }, &[7; 32], &mut pieces)
            .unwrap();
        assert_eq!(pieces.len(), 4);
        assert!(pieces.iter().all(|slots| slots.len() == 1 && slots[0].len() == 4));
    }
}
