//! A shard's two glommio task queues: established WebSocket sessions, and admission (accepting sockets,
//! reading HTTP request heads, their deadlines and answers, `/metrics`, `/healthz`).
//!
//! ```text
//! listener ─accept─▶ [admission: shares 100] head, upgrade ─▶ [sessions: the executor's default queue, 1000]
//!                     idle sockets' deadlines and 400s                 HELLO, PUBLISH, SUBSCRIBE, writers,
//!                                                                      cross-shard traffic, log, cover, ticks
//! ```
//! Why: a connection costs the relay work before it has said anything — an accept, a task, a deadline, an
//! answer and a close — and an attacker can make thousands of them arrive, or time out, at the same instant
//! (`tessera perf hostile` reopens 2,000 idle sockets each time the relay's HTTP deadline closes them). In one
//! FIFO queue that burst ran ahead of every established session's next message, and the healthy clients' p99
//! publish→deliver grew several-fold (docs/PERFORMANCE.md §Hostile load). In its own queue with a tenth of the
//! shares, glommio's scheduler gives a backlog of admission work at most ~1/11 of the core while sessions have
//! work, and re-decides at least every [`PREEMPT_TIMER`]; admission still gets the whole core when sessions are
//! idle, so a new client is only slowed, never refused, by the queueing.

use std::time::Duration;

use glommio::{Latency, Shares, TaskQueueHandle};

/// Shares of the admission queue; the executor's default queue, which runs everything else, has 1,000.
pub const ADMISSION_SHARES: usize = 100;

/// How long one task queue may run before the executor picks the next one by its shares (glommio's default is
/// 100 ms, which would let an admission burst run that long while sessions wait).
pub const PREEMPT_TIMER: Duration = Duration::from_millis(2);

/// The handles of a shard's task queues; create them on the shard's executor.
#[derive(Clone, Copy, Debug)]
pub struct TaskQueues {
    /// Where sessions run: the executor's default queue, current when the shard starts.
    pub sessions: TaskQueueHandle,
    /// Accept loops and everything before the WebSocket upgrade.
    pub admission: TaskQueueHandle,
}

impl TaskQueues {
    /// Creates the admission queue beside the current (default) one. Panics outside a glommio executor.
    pub fn create() -> Self {
        let executor = glommio::executor();
        let admission =
            executor.create_task_queue(Shares::Static(ADMISSION_SHARES), Latency::NotImportant, "tessera-admission");
        Self { sessions: executor.current_task_queue(), admission }
    }
}

/// Spawns `future` into `queue` (one of this shard's [`TaskQueues`]).
pub fn spawn_into<T: 'static>(
    future: impl std::future::Future<Output = T> + 'static,
    queue: TaskQueueHandle,
) -> glommio::Task<T> {
    // Invariant: both queues were created on this executor when the shard started and are never removed,
    // and glommio fails this call only for a queue it does not know.
    glommio::spawn_local_into(future, queue).expect("a task queue of this shard's executor")
}
