//! CLAIM: a connection proves knowledge of a subscriber key's secret before it may use the key's id.
//!
//! ```text
//! CLAIM(X, R ‖ s) ─▶ verify_claim(node_id, this connection's auth_nonce) ─▶ id = H(X) claimed on the connection
//!                     (no answer; BAD_CLAIM on failure, TOO_MANY_SUBSCRIBERS past subscribers_per_connection_max)
//! SUBSCRIBE / UNSUBSCRIBE / FETCH(id) ─▶ claimed here? ─▶ go on : ERROR(NOT_CLAIMED) (protocol error)
//! ```
//! The claim lives in the connection state only: nothing of it reaches another shard, the directory or the
//! disk, and it ends with the connection. Verification costs one decompression and one double-scalar
//! multiplication per CLAIM (not per proof).

use super::ShardServer;
use crate::proto::{verify_claim, Claim, SubscriberId};
use crate::server::metrics::ShardMetrics;
use crate::server::msg::ConnId;
use crate::server::refusal::Refusal;

impl ShardServer {
    /// Verifies `claim` against this connection's nonce and records the id it proves.
    pub(super) fn on_claim(&mut self, conn: ConnId, claim: Claim) {
        let max = self.limits.subscribers_per_connection_max;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        match verify_claim(&claim, &self.node_id, &c.state.auth_nonce) {
            Err(e) => {
                tracing::debug!(shard = self.id, conn, error = %e, "CLAIM refused");
                self.refuse(conn, Refusal::BadClaim(e));
            }
            Ok(id) => {
                if !c.state.claim(id, max.into()) {
                    ShardMetrics::add(&self.m().limit_subscriptions, 1);
                    self.refuse(conn, Refusal::TooManySubscribers { max });
                }
            }
        }
    }

    /// Whether `id` may be used by `frame_type` on `conn`; refuses the frame (NOT_CLAIMED) if not.
    pub(super) fn check_claimed(&mut self, conn: ConnId, id: &SubscriberId, frame_type: u8) -> bool {
        let claimed = self.conns.get(&conn).is_some_and(|c| c.state.is_claimed(id));
        if !claimed {
            self.refuse(conn, Refusal::NotClaimed { frame_type });
        }
        claimed
    }
}
