//! Executor-local wake-up primitives: [`WakeFlag`], a flag with one waiter (a relay connection's writer, a
//! shard's accept loops, a load-generator publisher's ACK window), and [`Latch`], a one-way flag any number of
//! tasks wait on (a shard's background tasks at shutdown).
//!
//! ```text
//! WakeFlag: notify() × n ─▶ set ─▶ wait() returns once and clears it   (one waiter; notifies coalesce)
//! Latch:    set() ─▶ every wait(), now and later, returns              (many waiters; never cleared)
//! ```
//! Not `Send`: every connection's tasks live on the shard (or load-generator executor) that created them.
//! Distinct from `relay::epoch_signal::EpochSignal`, which counts changes for many waiters.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::task::{Poll, Waker};

/// A wake-up flag with a single waiter.
#[derive(Default)]
pub struct WakeFlag {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl WakeFlag {
    /// Sets the flag and wakes the waiter, if any.
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Waits until the flag is set, then clears it.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }

    /// Whether the flag is set (without clearing it).
    pub fn is_set(&self) -> bool {
        self.set.get()
    }
}

/// A one-way latch any number of tasks can wait on (shutdown of a shard's background tasks).
#[derive(Default)]
pub struct Latch {
    set: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Latch {
    /// Sets the latch for good and wakes every waiter.
    pub fn set(&self) {
        self.set.set(true);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Whether the latch is set.
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Waits until the latch is set.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.set.get() {
                Poll::Ready(())
            } else {
                let mut waiters = self.waiters.borrow_mut();
                if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
    }
}
