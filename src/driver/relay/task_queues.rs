//! A shard's two glommio task queues: established WebSocket sessions, and admission (accepting sockets,
//! reading HTTP request heads, their deadlines and answers, `/metrics`, `/healthz`).
//!
//! ```text
//! listener ─accept─▶ [admission: shares 100] head, upgrade ─▶ [sessions: shares 1000, latency matters (2 ms)]
//!                     idle sockets' deadlines and 400s                 HELLO, PUBLISH, SUBSCRIBE, writers
//! the executor's default queue (shares 1000): cross-shard receivers, committer, cover, retention, late matching, tick
//! ```
//! Why: a connection costs the relay work before it has said anything — an accept, a task, a deadline, an
//! answer and a close — and an attacker can make thousands of them arrive, or time out, at the same instant
//! (`tessera perf hostile` reopens 2,000 idle sockets each time the relay's HTTP deadline closes them). In one
//! FIFO queue that burst ran ahead of every established session's next message, and the healthy clients' p99
//! publish→deliver grew several-fold (docs/PERFORMANCE.md §Hostile load). In its own queue with a tenth of the
//! shares, glommio's scheduler gives a backlog of admission work a small share of the core while sessions have
//! work, and — because the sessions queue declares that its latency matters — re-decides at least every
//! [`SESSION_LATENCY`] while sessions have work (glommio's default is every 100 ms); admission still gets the
//! whole core when sessions are idle, so a new client is only slowed, never refused, by the queueing.
//!
//! Why not a 2 ms preempt timer for the whole executor instead: tried first, it made start-up hang whenever
//! executors share a core (two 2-shard test relays on 2 cores: "only 0 of 2 shards started within 10 s" in 4 of
//! 15 runs, 0 of 15 without it) — the shards join their channel meshes before any queue exists, and a
//! latency-sensitive queue only shortens the timer while it is active.

use std::time::Duration;

use glommio::{Latency, Shares, TaskQueueHandle};

/// Shares of the admission queue; the executor's default queue, which runs everything else, has 1,000.
pub const ADMISSION_SHARES: usize = 100;

/// Shares of the sessions queue, the same as the executor's default queue (glommio's default, 1,000).
pub const SESSION_SHARES: usize = 1000;

/// The sessions queue's latency: while it has work, no queue runs longer than this before the executor picks
/// the next one by its shares (glommio's default is 100 ms, which would let an admission burst run that long
/// while sessions wait).
pub const SESSION_LATENCY: Duration = Duration::from_millis(2);

/// The handles of a shard's task queues; create them on the shard's executor.
#[derive(Clone, Copy, Debug)]
pub struct TaskQueues {
    /// Where upgraded WebSocket sessions run.
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
