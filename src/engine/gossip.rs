//! Per-peer gossip outboxes: every accepted proof is flooded to every peer except the one it came from.
//!
//! ```text
//! handle_publish ──runs of consecutive accepted proofs (zero-copy Bytes slices of the batch)──▶
//!     for each peer ≠ origin: outbox (bounded by gossip_queue_proofs_max, overflow dropped and counted)
//! driver ──poll_gossip(peer)──▶ ProofBatch ──▶ PUBLISH to that peer
//! ```
//! Queuing a run is one reference-count increment per peer, never a copy or a per-proof allocation.
//! Duplicates are never gossiped, so a mesh floods each proof at most once per link.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::proto::{ProofBatch, PROOF_LEN};

/// A relay peer, numbered by the driver.
pub type PeerId = u32;

/// Where a batch of proofs came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A client's PUBLISH.
    Client,
    /// Gossip from a peer relay: accepted proofs are not gossiped back to it.
    Peer(PeerId),
    /// The relay's own dummy proofs (DP cover); they take exactly the path of real ones.
    Cover,
}

/// One peer's queued gossip.
#[derive(Debug)]
struct Outbox {
    peer: PeerId,
    /// Runs of whole proofs, oldest first.
    runs: VecDeque<Bytes>,
    /// Proofs in `runs`.
    proofs: usize,
}

/// All peers' outboxes of one shard. Peers are configured by the operator (a handful), so a vector with a
/// linear search is both the simplest and the fastest map.
#[derive(Debug, Default)]
pub struct Gossip {
    outboxes: Vec<Outbox>,
}

/// What queuing one run did, for the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueOutcome {
    /// Proofs queued, summed over peers.
    pub queued: u64,
    /// Proofs dropped because an outbox was full, summed over peers.
    pub dropped: u64,
}

impl Gossip {
    /// Attaches a peer (no effect if attached).
    pub fn add_peer(&mut self, peer: PeerId) {
        if !self.outboxes.iter().any(|o| o.peer == peer) {
            self.outboxes.push(Outbox { peer, runs: VecDeque::new(), proofs: 0 });
        }
    }

    /// Detaches a peer and drops its outbox; returns whether it was attached.
    pub fn remove_peer(&mut self, peer: PeerId) -> bool {
        let before = self.outboxes.len();
        self.outboxes.retain(|o| o.peer != peer);
        before != self.outboxes.len()
    }

    /// Attached peers.
    pub fn peers(&self) -> usize {
        self.outboxes.len()
    }

    /// Queues `run` (whole proofs) for every peer except `except`, each outbox bounded by `proofs_max`.
    pub fn queue_run(&mut self, run: &Bytes, except: Option<PeerId>, proofs_max: usize) -> QueueOutcome {
        debug_assert_eq!(run.len() % PROOF_LEN, 0);
        let n = run.len() / PROOF_LEN;
        let mut outcome = QueueOutcome::default();
        for outbox in self.outboxes.iter_mut().filter(|o| Some(o.peer) != except) {
            let take = n.min(proofs_max.saturating_sub(outbox.proofs));
            if take > 0 {
                outbox.runs.push_back(if take == n { run.clone() } else { run.slice(..take * PROOF_LEN) });
                outbox.proofs += take;
            }
            outcome.queued += take as u64;
            outcome.dropped += (n - take) as u64;
        }
        outcome
    }

    /// The next batch queued for `peer`, if any.
    pub fn poll(&mut self, peer: PeerId) -> Option<ProofBatch> {
        let outbox = self.outboxes.iter_mut().find(|o| o.peer == peer)?;
        let run = outbox.runs.pop_front()?;
        outbox.proofs -= run.len() / PROOF_LEN;
        Some(ProofBatch::from_bytes(run).expect("runs are slices of whole proofs from a validated batch"))
    }

    /// Proofs waiting for `peer` (0 if not attached).
    pub fn queued(&self, peer: PeerId) -> usize {
        self.outboxes.iter().find(|o| o.peer == peer).map_or(0, |o| o.proofs)
    }
}
