//! The SUBSCRIBEs of a session, sent one at a time and retried when the relay is busy.
//!
//! ```text
//! push(frames) ─▶ queue ─next_to_send─▶ in flight ─SUBSCRIBED(id)─▶ done, next one
//!                                          │
//!                                          └─ERROR(OVERLOADED, ref_seq 0)─▶ resend at now + back-off
//!                                             (200 ms, doubling, ≤ 5 s; after 12 tries: give up)
//! ```
//! One at a time because an ERROR answering a SUBSCRIBE does not name its subscriber: with a single
//! SUBSCRIBE outstanding, an OVERLOADED can only be about that one. It also keeps this client's late scans
//! at the relay to one at a time (a SUBSCRIBE reaching into the past makes the relay match it against the
//! proofs it retained before answering, and the relay refuses a connection's SUBSCRIBEs with OVERLOADED
//! while too many such scans are pending). A SUBSCRIBE replaces its subscriber's entries, so resending one
//! is harmless. Pure bookkeeping: the session sends what `next_to_send` returns and sleeps until `retry_at`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::proto::frame::Subscribe;
use crate::proto::SubscriberId;

/// First pause before resending a SUBSCRIBE the relay answered with OVERLOADED.
pub const RETRY_DELAY_MIN: Duration = Duration::from_millis(200);
/// Longest pause between resends (doubling from the first).
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(5);
/// Resends of one SUBSCRIBE before the session gives up (≈ 40 s of back-off in all).
pub const RETRIES_MAX: u32 = 12;

/// SUBSCRIBEs waiting to be sent, the one awaiting SUBSCRIBED, and its back-off.
#[derive(Debug)]
pub struct SubscribeQueue {
    queue: VecDeque<Subscribe>,
    in_flight: Option<Subscribe>,
    /// When to resend `in_flight` (the relay answered OVERLOADED).
    retry_at: Option<Instant>,
    delay: Duration,
    retries: u32,
}

impl Default for SubscribeQueue {
    fn default() -> Self {
        Self { queue: VecDeque::new(), in_flight: None, retry_at: None, delay: RETRY_DELAY_MIN, retries: 0 }
    }
}

impl SubscribeQueue {
    /// Queues `frames`, to be sent in order after those already queued.
    pub fn push(&mut self, frames: impl IntoIterator<Item = Subscribe>) {
        self.queue.extend(frames);
    }

    /// Whether every SUBSCRIBE pushed was acknowledged.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_none()
    }

    /// Whether a SUBSCRIBE is awaiting its answer.
    pub fn has_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// When the SUBSCRIBE in flight is to be resent, if the relay answered OVERLOADED.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// The SUBSCRIBE to send at `now`: the one in flight again once its back-off has passed, else the next
    /// queued one when none is in flight.
    pub fn next_to_send(&mut self, now: Instant) -> Option<Subscribe> {
        match (&self.in_flight, self.retry_at) {
            (Some(frame), Some(at)) if at <= now => {
                self.retry_at = None;
                Some(frame.clone())
            }
            (Some(_), _) => None,
            (None, _) => {
                let frame = self.queue.pop_front()?;
                self.in_flight = Some(frame.clone());
                self.retries = 0;
                self.delay = RETRY_DELAY_MIN;
                Some(frame)
            }
        }
    }

    /// A SUBSCRIBED for `subscriber`: the SUBSCRIBE in flight is done if it is that subscriber's.
    pub fn on_subscribed(&mut self, subscriber: SubscriberId) {
        if self.in_flight.as_ref().is_some_and(|f| f.subscriber == subscriber) {
            self.in_flight = None;
            self.retry_at = None;
        }
    }

    /// An OVERLOADED answering the SUBSCRIBE in flight: schedules its resend. `false` once it was refused
    /// more than `RETRIES_MAX` times (the session then reports the refusal).
    pub fn on_overloaded(&mut self, now: Instant) -> bool {
        if self.in_flight.is_none() {
            return true;
        }
        self.retries += 1;
        if self.retries > RETRIES_MAX {
            return false;
        }
        self.retry_at = Some(now + self.delay);
        self.delay = (self.delay * 2).min(RETRY_DELAY_MAX);
        true
    }

    /// Forgets everything (the connection is gone; the next one subscribes afresh).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Subscribe {
        Subscribe { subscriber: SubscriberId([n; 16]), entries: Vec::new() }
    }

    #[test]
    fn one_at_a_time_with_back_off() {
        let mut q = SubscribeQueue::default();
        let t0 = Instant::now();
        assert!(q.is_idle());
        q.push([frame(1), frame(2)]);
        assert_eq!(q.next_to_send(t0), Some(frame(1)));
        assert_eq!(q.next_to_send(t0), None, "one in flight at a time");
        // Busy: resent after 200 ms, then 400 ms.
        assert!(q.on_overloaded(t0));
        assert_eq!(q.retry_at(), Some(t0 + Duration::from_millis(200)));
        assert_eq!(q.next_to_send(t0 + Duration::from_millis(199)), None);
        assert_eq!(q.next_to_send(t0 + Duration::from_millis(200)), Some(frame(1)));
        assert!(q.on_overloaded(t0));
        assert_eq!(q.retry_at(), Some(t0 + Duration::from_millis(400)));
        // A SUBSCRIBED for another subscriber changes nothing; its own ends the wait.
        q.on_subscribed(SubscriberId([2; 16]));
        assert!(q.has_in_flight());
        q.on_subscribed(SubscriberId([1; 16]));
        assert_eq!(q.retry_at(), None);
        assert_eq!(q.next_to_send(t0), Some(frame(2)));
        // The back-off starts again at 200 ms for the next SUBSCRIBE and stops doubling at 5 s.
        let delays: Vec<Duration> = (0..RETRIES_MAX)
            .map(|_| {
                assert!(q.on_overloaded(t0));
                q.retry_at().unwrap() - t0
            })
            .collect();
        assert_eq!(delays[0], RETRY_DELAY_MIN);
        assert_eq!(*delays.last().unwrap(), RETRY_DELAY_MAX);
        assert!(!q.on_overloaded(t0), "gives up after {RETRIES_MAX} resends");
        q.clear();
        assert!(q.is_idle());
    }
}
