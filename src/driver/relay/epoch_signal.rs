//! A single-threaded "something changed" signal for many waiters: an epoch counter and the wakers of tasks
//! waiting for it to move. Used by `log_io` to wake the committer (records staged) and ACK waiters (a commit
//! finished). Unlike `driver::wake_flag::WakeFlag` (one waiter, consumed by `wait`), nothing is consumed:
//! each waiter compares the epoch with the one it saw.
//!
//! ```text
//! waiter: seen = signal.epoch() ─▶ check condition ─▶ signal.changed(seen).await ─▶ check again
//! notifier: change state ─▶ signal.notify()   (epoch += 1, wake every registered waker once)
//! ```
//! Executor-local (`!Send`), so no atomics and no locks; the waiter list holds one waker per waiting task
//! (a task re-polled before a notify replaces nothing and adds nothing: `will_wake` dedups it).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// See the module docs.
#[derive(Debug, Default)]
pub struct EpochSignal {
    epoch: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl EpochSignal {
    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.get()
    }

    /// Moves the epoch and wakes every waiter.
    pub fn notify(&self) {
        self.epoch.set(self.epoch.get().wrapping_add(1));
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }

    /// Completes once the epoch differs from `seen`.
    pub fn changed(&self, seen: u64) -> Changed<'_> {
        Changed { signal: self, seen }
    }
}

/// Future returned by [`EpochSignal::changed`].
#[derive(Debug)]
pub struct Changed<'a> {
    signal: &'a EpochSignal,
    seen: u64,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.epoch.get() != self.seen {
            return Poll::Ready(());
        }
        let mut wakers = self.signal.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn waits_until_notified_and_wakes_once() {
        let s = EpochSignal::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(s.changed(s.epoch()));
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Pending, "re-poll registers nothing new");
        s.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(()));
    }
}
