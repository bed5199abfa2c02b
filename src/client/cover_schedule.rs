//! The client cover schedule: when a connected client publishes, and what — a sans-IO state machine (time
//! and randomness are arguments; the session in `driver::client::session` drives it).
//!
//! ```text
//! handle_message(contact, text) ─▶ pieces of ≤ k parts (split at UTF-8 boundaries) ─▶ queue ─▶ Queued { rounds }
//! next_slot_us(now, rng): one send instant per round, round_start + Unif[0, round) (CSPRNG), drawn once
//! poll_slot(now, rng), at or after the instant ─▶ Slot { window, real: queued pieces first (≤ k parts in all),
//!                                                       dummies: k − real parts } ─▶ next round's instant
//! ```
//! **Why one random instant per round.** An observer of the link sees one PUBLISH of exactly k proofs per
//! round at a time drawn independently of everything the user does, so neither the count nor the timing
//! depends on whether a message is waiting. The cost is latency: a message waits for the next instant —
//! uniform arrival against a uniform instant per round of length W gives a mean wait of 7W/12 (5.8 s at
//! W = 10 s) and at most 2W; a message of more than k parts goes as ⌈parts / k⌉ pieces, one per round.
//!
//! A piece is a message of its own to the recipient (sealed in the window of the round it goes in: the
//! relay accepts only the current and previous windows, so parts of one message cannot wait rounds apart).
//! Queue policy: at most `QUEUED_PIECES_MAX` pieces wait; `handle_message` refuses beyond that (the user
//! is told), so memory stays bounded whatever is typed.

use std::collections::VecDeque;

use rand_core::{CryptoRng, RngCore};

use super::cover::COVER_PROOFS_PER_ROUND_MAX;
use super::envelope::CHUNK_LEN_MAX;
use super::send::{check_message_len, SendError};
use crate::proto::derive::window_start;

/// Pieces that may wait for their round: 64 one-part pieces is ~10 minutes of backlog at the default rate.
pub const QUEUED_PIECES_MAX: usize = 64;

/// Why a message cannot be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoverQueueError {
    /// Empty, or longer than a message may be (`SendError::EmptyMessage`, `SendError::MessageTooLong`).
    #[error(transparent)]
    Message(#[from] SendError),
    /// The queue is full.
    #[error("{queued} message pieces are already waiting for their round; try again later")]
    QueueFull {
        /// Pieces waiting.
        queued: usize,
    },
}

/// One piece of a queued message: at most `proofs_per_round` parts, sent whole in one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedPiece {
    /// The message it belongs to (`Queued::message`).
    pub message: u64,
    /// Its index among the message's pieces.
    pub index: u32,
    /// The contact.
    pub contact: String,
    /// Its text.
    pub text: String,
    /// Parts (proofs) it takes.
    pub parts: u32,
}

/// A message accepted into the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    /// Its id within this schedule.
    pub message: u64,
    /// Pieces it was split into (each arrives as a message of its own).
    pub pieces: u32,
    /// Rounds until its last piece is sent, counting the pieces queued before it (1: the next round).
    pub rounds: u32,
}

/// What to publish at a round's send instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Window the proofs are sealed in (Unix seconds).
    pub window_start_s: u64,
    /// Real pieces, in queue order.
    pub real: Vec<QueuedPiece>,
    /// Cover proofs to add so the round carries exactly `proofs_per_round`.
    pub dummies: u32,
}

/// The schedule of one connected session.
#[derive(Debug)]
pub struct CoverSchedule {
    proofs_per_round: u32,
    round_us: u64,
    /// The send instant drawn for the coming round, µs since the Unix epoch.
    next_slot_us: Option<u64>,
    /// Window of the last slot served: never two slots in one window (cover commits are per window).
    last_window_s: Option<u64>,
    queue: VecDeque<QueuedPiece>,
    next_message: u64,
}

impl CoverSchedule {
    /// A schedule of `proofs_per_round` (clamped to 1..=`COVER_PROOFS_PER_ROUND_MAX`) per round of
    /// `round_s` seconds (the relay's window).
    pub fn new(proofs_per_round: u32, round_s: u64) -> Self {
        Self {
            proofs_per_round: proofs_per_round.clamp(1, COVER_PROOFS_PER_ROUND_MAX),
            round_us: round_s.max(1) * 1_000_000,
            next_slot_us: None,
            last_window_s: None,
            queue: VecDeque::new(),
            next_message: 0,
        }
    }

    /// Proofs per round.
    pub fn proofs_per_round(&self) -> u32 {
        self.proofs_per_round
    }

    /// Round length, µs.
    pub fn round_us(&self) -> u64 {
        self.round_us
    }

    /// Queues `text` to `contact`: split into pieces of at most `proofs_per_round` parts, each cut at a
    /// UTF-8 boundary so every piece is valid text on its own.
    pub fn handle_message(&mut self, contact: &str, text: &str) -> Result<Queued, CoverQueueError> {
        check_message_len(text)?;
        let pieces = split_pieces(text, self.proofs_per_round as usize * CHUNK_LEN_MAX);
        if self.queue.len() + pieces.len() > QUEUED_PIECES_MAX {
            return Err(CoverQueueError::QueueFull { queued: self.queue.len() });
        }
        let message = self.next_message;
        self.next_message += 1;
        for (index, piece) in pieces.iter().enumerate() {
            self.queue.push_back(QueuedPiece {
                message,
                index: index as u32,
                contact: contact.to_owned(),
                text: (*piece).to_owned(),
                parts: piece.len().div_ceil(CHUNK_LEN_MAX) as u32,
            });
        }
        Ok(Queued { message, pieces: pieces.len() as u32, rounds: self.rounds_until_sent(message) })
    }

    /// Rounds until the last queued piece of `message` goes (0 when none is queued).
    pub fn rounds_until_sent(&self, message: u64) -> u32 {
        let (mut rounds, mut used, mut last) = (0u32, self.proofs_per_round, 0u32);
        for piece in &self.queue {
            if used + piece.parts > self.proofs_per_round {
                rounds += 1;
                used = 0;
            }
            used += piece.parts;
            if piece.message == message {
                last = rounds;
            }
        }
        last
    }

    /// Whether a piece of `message` still waits.
    pub fn is_queued(&self, message: u64) -> bool {
        self.queue.iter().any(|p| p.message == message)
    }

    /// Pieces waiting.
    pub fn queued_pieces(&self) -> usize {
        self.queue.len()
    }

    /// The next send instant (µs since the Unix epoch), drawing it for the round containing `now_us` the
    /// first time: uniform over the round, so it may already have passed (then `poll_slot` serves it now).
    pub fn next_slot_us<R: RngCore + CryptoRng>(&mut self, now_us: u64, rng: &mut R) -> u64 {
        match self.next_slot_us {
            Some(at) => at,
            None => {
                let at = self.draw(now_us - now_us % self.round_us, rng);
                self.next_slot_us = Some(at);
                at
            }
        }
    }

    /// At or after the send instant: what to publish now (real pieces first, then dummies, exactly
    /// `proofs_per_round` proofs), and the next round's instant is drawn. `None` before the instant, or when
    /// this window already had its slot (the instant is then moved to the next round).
    pub fn poll_slot<R: RngCore + CryptoRng>(&mut self, now_us: u64, rng: &mut R) -> Option<Slot> {
        if now_us < self.next_slot_us(now_us, rng) {
            return None;
        }
        let round_start_us = now_us - now_us % self.round_us;
        // The next round's instant: one slot per round, even when this one was served late.
        self.next_slot_us = Some(self.draw(round_start_us + self.round_us, rng));
        let window_start_s = window_start(now_us / 1_000_000, self.round_us / 1_000_000);
        if self.last_window_s == Some(window_start_s) {
            return None;
        }
        self.last_window_s = Some(window_start_s);
        let mut real = Vec::new();
        let mut used = 0;
        while let Some(piece) = self.queue.front() {
            if used + piece.parts > self.proofs_per_round {
                break;
            }
            used += piece.parts;
            real.extend(self.queue.pop_front());
        }
        Some(Slot { window_start_s, real, dummies: self.proofs_per_round - used })
    }

    /// Drops every queued piece of `message` (its send failed; the caller was told).
    pub fn cancel(&mut self, message: u64) {
        self.queue.retain(|p| p.message != message);
    }

    /// Puts pieces that could not be sealed this round back at the head of the queue, in order.
    pub fn requeue_front(&mut self, pieces: Vec<QueuedPiece>) {
        for piece in pieces.into_iter().rev() {
            self.queue.push_front(piece);
        }
    }

    fn draw<R: RngCore + CryptoRng>(&self, round_start_us: u64, rng: &mut R) -> u64 {
        round_start_us + uniform_below(self.round_us, rng)
    }
}

/// Uniform in `0..n` without modulo bias (rejection sampling), `n ≥ 1`.
fn uniform_below<R: RngCore>(n: u64, rng: &mut R) -> u64 {
    let zone = u64::MAX - u64::MAX % n;
    loop {
        let x = rng.next_u64();
        if x < zone {
            return x % n;
        }
    }
}

/// `text` cut into pieces of at most `max_bytes` bytes, each ending on a UTF-8 character boundary.
pub fn split_pieces(text: &str, max_bytes: usize) -> Vec<&str> {
    let max_bytes = max_bytes.max(4);
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(max_bytes);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const ROUND_US: u64 = 10_000_000;
    const T0: u64 = 1_700_000_000 * 1_000_000;

    /// Runs `rounds` rounds polling every 100 ms; returns each round's slots.
    fn run(s: &mut CoverSchedule, rounds: u64, rng: &mut ChaCha20Rng) -> Vec<Vec<Slot>> {
        let mut out = vec![Vec::new(); rounds as usize];
        let mut now = T0;
        while now < T0 + rounds * ROUND_US {
            if let Some(slot) = s.poll_slot(now, rng) {
                out[((now - T0) / ROUND_US) as usize].push(slot);
            }
            now += 100_000;
        }
        out
    }

    #[test]
    fn idle_sends_exactly_k_dummies_per_round() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut s = CoverSchedule::new(2, 10);
        let rounds = run(&mut s, 50, &mut rng);
        for slots in &rounds[1..] {
            assert_eq!(slots.len(), 1, "one send per round");
            assert_eq!((slots[0].dummies, slots[0].real.len()), (2, 0));
        }
        // The first round has one slot unless its instant was drawn before the first poll.
        assert!(rounds[0].len() <= 1);
    }

    #[test]
    fn real_first_then_dummies_and_queue_beyond_k() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let mut s = CoverSchedule::new(2, 10);
        let one = s.handle_message("bob", "hi").unwrap();
        assert_eq!((one.pieces, one.rounds), (1, 1));
        // 5 parts at k = 2: pieces of 2, 2 and 1 parts; the first shares a round with "hi" only if it fits.
        let long = "x".repeat(4 * CHUNK_LEN_MAX + 1);
        let q = s.handle_message("carol", &long).unwrap();
        assert_eq!((q.pieces, q.rounds), (3, 4));
        let rounds = run(&mut s, 6, &mut rng);
        let slots: Vec<&Slot> = rounds.iter().flatten().collect();
        assert!(slots.iter().all(|sl| sl.real.iter().map(|p| p.parts).sum::<u32>() + sl.dummies == 2));
        assert_eq!(slots[0].real[0].text, "hi");
        assert_eq!(slots[0].dummies, 1);
        let carol: Vec<u32> =
            slots.iter().flat_map(|sl| sl.real.iter()).filter(|p| p.contact == "carol").map(|p| p.parts).collect();
        assert_eq!(carol, vec![2, 2, 1]);
        assert!(!s.is_queued(q.message));
        assert_eq!(slots.last().unwrap().dummies, 2);
    }

    #[test]
    fn send_times_do_not_depend_on_messages() {
        // The same RNG stream gives the same instants with and without messages queued.
        let (mut a, mut b) = (CoverSchedule::new(1, 10), CoverSchedule::new(1, 10));
        b.handle_message("bob", "hello").unwrap();
        let (mut ra, mut rb) = (ChaCha20Rng::seed_from_u64(3), ChaCha20Rng::seed_from_u64(3));
        let times = |s: &mut CoverSchedule, r: &mut ChaCha20Rng| -> Vec<u64> {
            (0..2_000).map(|i| T0 + i * 50_000).filter(|&t| s.poll_slot(t, r).is_some()).collect()
        };
        assert_eq!(times(&mut a, &mut ra), times(&mut b, &mut rb));
    }

    #[test]
    fn late_poll_serves_one_slot_per_window_and_requeue_keeps_order() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let mut s = CoverSchedule::new(1, 10);
        s.handle_message("bob", "a").unwrap();
        let at = s.next_slot_us(T0, &mut rng);
        let slot = s.poll_slot(at, &mut rng).unwrap();
        assert_eq!(slot.real.len(), 1);
        assert!(s.poll_slot(at, &mut rng).is_none(), "the next instant is in the next round");
        s.requeue_front(slot.real);
        assert!(s.is_queued(0));
        // Polled far too late: one slot, then the instant moves on.
        let late = T0 + 5 * ROUND_US;
        assert!(s.poll_slot(late, &mut rng).is_some());
        assert!(s.next_slot_us(late, &mut rng) >= T0 + 6 * ROUND_US);
    }

    #[test]
    fn pieces_cut_at_char_boundaries_and_queue_is_bounded() {
        let text = "é".repeat(300); // 600 bytes
        let pieces = split_pieces(&text, CHUNK_LEN_MAX);
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().all(|p| p.len() <= CHUNK_LEN_MAX));
        let mut s = CoverSchedule::new(1, 10);
        assert_eq!(s.handle_message("bob", ""), Err(CoverQueueError::Message(SendError::EmptyMessage)));
        for _ in 0..QUEUED_PIECES_MAX {
            s.handle_message("bob", "x").unwrap();
        }
        assert_eq!(s.handle_message("bob", "x"), Err(CoverQueueError::QueueFull { queued: QUEUED_PIECES_MAX }));
    }
}
