//! What client cover costs one connected client and the relay (`tessera dp plan`, docs/PRIVACY.md §Client cover).
//!
//! ```text
//! k proofs per round R ──▶ up:   one PUBLISH of k proofs per round   (WebSocket frame, client-masked)
//!                      └──▶ down: the k proofs DELIVERed back (self-addressed) + one ACK per round
//!                      └──▶ latency: a message waits for the next random send instant: mean 7R/12, at most 2R
//! ```
//! Frame sizes come from the codec itself (`proto::encode_message`), so the figure follows the wire format. The
//! down figure assumes each round's cover comes back in a DELIVER of its own (the relay may batch several into one
//! frame, which only saves a header); it leaves out the Bloom false positives every subscribed client receives
//! with or without cover.

use crate::proto::frame::Publish;
use crate::proto::{encode_message, Frame, Proof, ProofBatch, SubscriberId};

/// Every figure of client cover at `proofs_per_round` per round.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClientCoverPlan {
    /// Proofs a connected client publishes per round (`--cover-proofs-per-round`).
    pub proofs_per_round: u32,
    /// Round length, seconds (the relay's window).
    pub round_seconds: f64,
    /// Bytes on the wire per round, client to relay (PUBLISH with WebSocket header and mask).
    pub up_bytes_per_round: u64,
    /// Bytes on the wire per round, relay to client (DELIVER of the cover + ACK).
    pub down_bytes_per_round: u64,
    /// `up_bytes_per_round / round_seconds`.
    pub up_bytes_per_second: f64,
    /// `down_bytes_per_round / round_seconds`.
    pub down_bytes_per_second: f64,
    /// Mean wait of a message for its send instant: 7R/12 (uniform arrival, uniform instant per round).
    pub latency_mean_seconds: f64,
    /// Longest wait: just after one round's instant at its start to the next round's at its end, 2R.
    pub latency_max_seconds: f64,
    /// Proofs per second 4,800 connected clients add to the relay (the benchmark's population).
    pub relay_proofs_per_second_4800_clients: f64,
}

/// WebSocket frame header bytes for a payload of `len` bytes (RFC 6455 §5.2), plus the 4-byte mask a client adds.
fn ws_overhead(len: usize, masked: bool) -> u64 {
    let header = match len {
        0..=125 => 2,
        126..=65_535 => 4,
        _ => 10,
    };
    header + if masked { 4 } else { 0 }
}

impl ClientCoverPlan {
    /// The plan for `proofs_per_round` (≥ 1) proofs per round of `round_seconds` (> 0).
    pub fn new(proofs_per_round: u32, round_seconds: f64) -> Self {
        let proof = Proof::new(0, 0, &[0; 32], &[0; 8], &[0; crate::proto::params::CIPHERTEXT_LEN]);
        let proofs = vec![proof; proofs_per_round.max(1) as usize];
        let batch = || ProofBatch::from_proofs(proofs.iter().map(|p| p.view()));
        let publish = encode_message(&[Frame::Publish(Publish { seq: 1, proofs: batch() })]).len();
        let deliver = encode_message(&[Frame::Deliver { subscriber: SubscriberId([0; 16]), proofs: batch() }]).len();
        let ack = encode_message(&[Frame::Ack { seq: 1 }]).len();
        let up = publish as u64 + ws_overhead(publish, true);
        let down = deliver as u64 + ws_overhead(deliver, false) + ack as u64 + ws_overhead(ack, false);
        let r = round_seconds;
        Self {
            proofs_per_round,
            round_seconds: r,
            up_bytes_per_round: up,
            down_bytes_per_round: down,
            up_bytes_per_second: up as f64 / r,
            down_bytes_per_second: down as f64 / r,
            latency_mean_seconds: 7.0 * r / 12.0,
            latency_max_seconds: 2.0 * r,
            relay_proofs_per_second_4800_clients: 4_800.0 * f64::from(proofs_per_round) / r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rate_figures() {
        let p = ClientCoverPlan::new(1, 10.0);
        // One 564-byte proof per round plus framing: ~58 B/s each way.
        assert!(p.up_bytes_per_round > 564 && p.up_bytes_per_round < 564 + 40, "{p:?}");
        assert!(p.down_bytes_per_round > 564 && p.down_bytes_per_round < 564 + 80, "{p:?}");
        assert!((p.up_bytes_per_second - p.up_bytes_per_round as f64 / 10.0).abs() < 1e-9);
        assert!((p.latency_mean_seconds - 70.0 / 12.0).abs() < 1e-9);
        assert_eq!((p.latency_max_seconds, p.relay_proofs_per_second_4800_clients), (20.0, 480.0));
        let four = ClientCoverPlan::new(4, 10.0);
        assert_eq!(
            four.up_bytes_per_round - p.up_bytes_per_round,
            3 * 564,
            "proofs are fixed-size, no per-proof framing"
        );
    }
}
