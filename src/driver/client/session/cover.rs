//! The session's half of client cover: drives the sans-IO [`CoverSchedule`] with the clock and the OS RNG.
//!
//! ```text
//! next_message_or: sleeps until min(renewal, cover_wait()) ─▶ serve_idle_cover: slot due ─▶ k cover proofs
//!                  (addressed to ourselves) ─▶ one PUBLISH, ACK not awaited
//! send (cover on): send_covered ─▶ schedule.handle_message (pieces ≤ k parts; the hook tells the user how many
//!                  rounds) ─▶ per round until its pieces are out: wait for the slot (absorbing frames) ─▶
//!                  prepare_send of the slot's pieces ─▶ persist ─▶ real + cover proofs, shuffled, one PUBLISH
//!                  ─▶ wait for its ACK
//! ```
//! Every round carries exactly k proofs at one random instant, whatever the user does. A cover proof comes back
//! through the client's own filters as a DELIVER and `ClientState::handle_deliver` drops it (counted in
//! `ReceiveStats::cover`, never shown). The proofs of a slot are shuffled so their order in the PUBLISH does not
//! say which are real.

use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand_core::OsRng;

use super::{Sent, Session, SessionError};
use crate::client::{CoverSchedule, SendError, Slot};
use crate::driver::clock::unix_now_us;
use crate::proto::Proof;

pub use crate::client::Queued;

/// A sealed slot: its proofs, and (message, parts) of each real piece in it.
type SealedSlot = (Vec<Proof>, Vec<(u64, usize)>);

/// Told when a message is queued for the cover schedule.
type QueuedHook = Box<dyn FnMut(&Queued)>;

/// What the session published under cover so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoverStats {
    /// Rounds served (one PUBLISH each).
    pub rounds: u64,
    /// Real message parts published.
    pub real_proofs: u64,
    /// Cover proofs published.
    pub cover_proofs: u64,
}

/// The cover state of one session.
pub(super) struct CoverDriver {
    schedule: CoverSchedule,
    on_queued: Option<QueuedHook>,
    stats: CoverStats,
}

impl CoverDriver {
    pub(super) fn new(proofs_per_round: u32, round_s: u64) -> Self {
        Self { schedule: CoverSchedule::new(proofs_per_round, round_s), on_queued: None, stats: CoverStats::default() }
    }
}

impl Session {
    /// Calls `hook` whenever a message is queued for the cover schedule (the CLI says how many rounds it takes).
    pub fn on_cover_queued(&mut self, hook: impl FnMut(&Queued) + 'static) {
        if let Some(c) = self.cover.as_mut() {
            c.on_queued = Some(Box::new(hook));
        }
    }

    /// What this session published under cover (`None`: cover is off).
    pub fn cover_stats(&self) -> Option<CoverStats> {
        self.cover.as_ref().map(|c| c.stats)
    }

    /// How long until the next cover slot (`None`: cover is off).
    pub(super) fn cover_wait(&mut self) -> Option<Duration> {
        let c = self.cover.as_mut()?;
        let now_us = unix_now_us();
        Some(Duration::from_micros(c.schedule.next_slot_us(now_us, &mut OsRng).saturating_sub(now_us)))
    }

    /// Publishes the due slot, if one is due, without waiting for its ACK; `true` if one was.
    pub(super) async fn serve_idle_cover(&mut self) -> Result<bool, SessionError> {
        if self.cover_wait().is_none_or(|wait| !wait.is_zero()) {
            return Ok(false);
        }
        let Some((proofs, _)) = self.seal_slot()? else { return Ok(false) };
        self.publish(&proofs).await?;
        Ok(true)
    }

    /// The due slot's proofs, real ones sealed and persisted first, shuffled; `None` if no slot is due
    /// (this window was served). The second value: (message, parts) of each piece that went in it.
    fn seal_slot(&mut self) -> Result<Option<SealedSlot>, SessionError> {
        let now_us = unix_now_us();
        let Some(c) = self.cover.as_mut() else { return Ok(None) };
        let Some(Slot { window_start_s, real, dummies }) = c.schedule.poll_slot(now_us, &mut OsRng) else {
            return Ok(None);
        };
        let k = c.schedule.proofs_per_round();
        let mut proofs = Vec::with_capacity(k as usize);
        let (mut sent, mut requeue) = (Vec::new(), Vec::new());
        for piece in real {
            match self.state.prepare_send(&piece.contact, &piece.text, now_us / 1_000_000, &mut OsRng) {
                Ok(sealed) => {
                    sent.push((piece.message, sealed.len()));
                    proofs.extend(sealed);
                }
                // This window's sequence numbers for the contact are used (another send earlier in the
                // window): the piece waits for the next round, and cover takes its place.
                Err(SendError::WindowFull { .. }) => requeue.push(piece),
                Err(e) => return Err(e.into()),
            }
        }
        let real_count = proofs.len() as u32;
        // Cover slots 0.. of this window: one slot per window, so each cover commit goes out at most once.
        for slot in 0..k.saturating_sub(real_count) {
            proofs.push(self.state.cover_proof(window_start_s, slot, &mut OsRng));
        }
        let c = self.cover.as_mut().expect("checked above: cover is on");
        c.schedule.requeue_front(requeue);
        c.stats.rounds += 1;
        c.stats.real_proofs += u64::from(real_count);
        c.stats.cover_proofs += u64::from(k.saturating_sub(real_count));
        let cover_received = self.state.stats().cover;
        tracing::debug!(window_start_s, real = real_count, dummies, cover_received, "client cover round");
        proofs.shuffle(&mut OsRng);
        // Counters first: the real proofs carry sequence numbers that must never be sealed again.
        self.persist()?;
        Ok(Some((proofs, sent)))
    }

    /// `send` with cover on: queues the message, then publishes its pieces at the next rounds' instants, each
    /// round acknowledged before the next, and returns once all are durable.
    pub(super) async fn send_covered(&mut self, contact: &str, text: &str) -> Result<Sent, SessionError> {
        if !self.state.contacts().any(|c| c.name == contact) {
            return Err(SendError::UnknownContact(contact.to_owned()).into());
        }
        let c = self.cover.as_mut().expect("send_covered runs only with cover on");
        let queued = c.schedule.handle_message(contact, text).map_err(SessionError::CoverQueue)?;
        if let Some(hook) = c.on_queued.as_mut() {
            hook(&queued);
        }
        let result = self.send_queued(queued.message).await;
        if result.is_err() {
            // Nothing of it may go later without its ACK being awaited: the caller is told it failed.
            if let Some(c) = self.cover.as_mut() {
                c.schedule.cancel(queued.message);
            }
        }
        result
    }

    async fn send_queued(&mut self, message: u64) -> Result<Sent, SessionError> {
        let (mut proofs_sent, mut first_window) = (0usize, None);
        while self.cover.as_ref().is_some_and(|c| c.schedule.is_queued(message)) {
            let wait = self.cover_wait().unwrap_or_default();
            if !wait.is_zero() {
                if let Some(frame) = self.next_frame_until(Instant::now() + wait).await? {
                    self.ignore(frame);
                }
                continue;
            }
            let Some((proofs, sent)) = self.seal_slot()? else { continue };
            let ours: usize = sent.iter().filter(|(m, _)| *m == message).map(|(_, parts)| parts).sum();
            if ours > 0 {
                first_window.get_or_insert(proofs[0].view().window_start());
                proofs_sent += ours;
                self.publish_confirmed(&proofs).await?;
            } else {
                self.publish(&proofs).await?;
            }
        }
        Ok(Sent { proofs: proofs_sent, window_start_s: first_window.unwrap_or_default() })
    }
}
