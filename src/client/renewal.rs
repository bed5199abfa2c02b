//! Subscription renewal: what to register, and when to register it again.
//!
//! ```text
//! poll_subscribe(now_s, rng), when due (first call, a contact added, or the renewal time reached):
//!   advance(now_s)                                   expectations for [from, current + ahead] (whole chunks)
//!   entries = plan(expected of the grid chunks over [current − 1 window, current + ahead])
//!   one Subscribe per subscriber id (new secrets drawn from rng as needed, ids derived from them: claims.rs;
//!   surplus ids get no entries)
//! next renewal = start of window (sent_in + renew_every) − renew_lead_s
//! pending coverage = [from, to] ──confirm_coverage (catchup.rs), once acknowledged──▶ covered through `to`
//! ```
//! The session calls `catch_up` (catchup.rs) with the same `now_s` first: it covers the windows before
//! `from` that a contact is not covered for yet.
//! Every subscription reaches `ahead_windows` into the future, so filters keep matching across window
//! boundaries (the reference's filters covered only past windows and went stale at the next boundary), and
//! what is sent to us while we are offline still matches and is kept for FETCH. The previous window stays
//! covered for proofs published just before a boundary and routed just after it.

use rand_core::{CryptoRng, RngCore};

use super::claims::SubscriberSecret;
use super::persist::Coverage;
use super::state::{ClientState, PendingCover, SUBSCRIBER_IDS_MAX};
use super::subscription::{chunk_bounds, plan, Expectation, PlanError, PlanParams, SubscribeMode};
use crate::proto::derive::window_start;
use crate::proto::frame::Subscribe;

impl ClientState {
    /// When the next SUBSCRIBE is due (Unix seconds); `0` when one is due now (never subscribed, or a
    /// contact was added).
    pub fn next_renewal_at_s(&self) -> u64 {
        match self.subscribed {
            Some(c) if !self.resubscribe => {
                let due_window = c.sent_in_s + u64::from(self.config.renew_every_windows) * self.config.window_s;
                due_window.saturating_sub(self.config.renew_lead_s)
            }
            _ => 0,
        }
    }

    /// The SUBSCRIBE frames to send now, if a renewal is due at `now_s`; `Ok(None)` otherwise.
    pub fn poll_subscribe<R: RngCore + CryptoRng>(
        &mut self,
        now_s: u64,
        rng: &mut R,
    ) -> Result<Option<Vec<Subscribe>>, PlanError> {
        if now_s < self.next_renewal_at_s() {
            return Ok(None);
        }
        self.subscribe_now(now_s, rng).map(Some)
    }

    /// The SUBSCRIBE frames covering the horizon at `now_s`, due or not (e.g. on reconnect).
    pub fn subscribe_now<R: RngCore + CryptoRng>(
        &mut self,
        now_s: u64,
        rng: &mut R,
    ) -> Result<Vec<Subscribe>, PlanError> {
        let ws = self.config.window_s;
        let (current, from, to) = self.subscription_range(now_s);
        if self.expect_from_s.is_none() {
            self.expect_from_s = Some(from);
        }
        self.advance(now_s.max(current));
        let chunk_windows = self.chunk_windows();
        // Padded filters hold every window of their grid chunk (see `subscription`).
        let (items_from, items_to) = match self.config.subscribe_mode {
            SubscribeMode::EveryBucketPadded => {
                (chunk_bounds(from, chunk_windows, ws).0, chunk_bounds(to, chunk_windows, ws).1)
            }
            _ => (from, to),
        };
        let items: Vec<Expectation> = self
            .expected
            .in_windows(items_from, items_to)
            .map(|e| Expectation {
                bucket: e.routing.bucket,
                window_start_s: e.id.window_start_s,
                fingerprint: e.routing.fingerprint,
            })
            .chain(self.cover_expectations(items_from, items_to))
            .collect();
        let params = self.plan_params(chunk_windows);
        let mut slots = plan(&items, from, to, &params, &self.pad_key)?;
        self.ensure_subscriber_ids(slots.len(), rng);
        slots.resize_with(self.subscriber_ids.len(), Vec::new);
        let frames = self
            .subscriber_ids
            .iter()
            .zip(slots)
            .map(|(&subscriber, entries)| Subscribe { subscriber, entries })
            .collect();
        self.subscribed = Some(Coverage { from_s: from, to_s: to, sent_in_s: current });
        self.pending_cover = Some(PendingCover { from_s: from, to_s: to, contacts: self.contacts.len() });
        self.resubscribe = false;
        self.dirty = true;
        Ok(frames)
    }

    /// `(current, from, to)` of a subscription made at `now_s`: the window being entered (the renewal lead
    /// may fall in the previous window), one window before it, and `ahead_windows` after it.
    pub(super) fn subscription_range(&self, now_s: u64) -> (u64, u64, u64) {
        let ws = self.config.window_s;
        let current = window_start(now_s, ws);
        let current = if now_s + self.config.renew_lead_s >= current + ws { current + ws } else { current };
        (current, current.saturating_sub(ws), current + u64::from(self.config.ahead_windows) * ws)
    }

    /// The planner's bounds: the relay's parameters and limits and this client's choices.
    pub(super) fn plan_params(&self, chunk_windows: u64) -> PlanParams {
        PlanParams {
            num_buckets: self.config.num_buckets,
            window_s: self.config.window_s,
            bloom: self.config.bloom,
            fingerprints_per_filter_max: self.config.fingerprints_per_filter_max,
            chunk_windows,
            filters_per_bucket_max: self.config.limits.filters_per_bucket_max,
            entries_per_subscribe_max: self.config.limits.entries_per_subscribe_max,
            subscribers_max: self.config.limits.subscribers_per_connection_max.min(SUBSCRIBER_IDS_MAX as u16),
            mode: self.config.subscribe_mode,
        }
    }

    /// Draws subscriber secrets (and so ids) until there are at least `count` (the planner keeps `count`
    /// within the limit).
    pub(super) fn ensure_subscriber_ids<R: RngCore + CryptoRng>(&mut self, count: usize, rng: &mut R) {
        while self.subscriber_ids.len() < count {
            let secret = SubscriberSecret::generate(rng);
            self.subscriber_ids.push(secret.id());
            self.subscriber_secrets.push(secret);
        }
    }
}
