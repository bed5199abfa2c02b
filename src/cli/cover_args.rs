//! The client-cover options of `recv`, `chat` and `send`, and what the CLI says about queued messages.
//!
//! ```text
//! --cover-proofs-per-round N, --danger-disable-client-cover ─▶ SessionOptions { cover_proofs_per_round,
//!     client_cover } ─▶ Session (publishes N proofs per round while connected: recv --follow, chat)
//! Session::on_cover_queued ─▶ print_cover_queued: "queued: … goes out in R rounds (~S s)" on stderr
//! ```
//! Turning cover off weakens privacy (the link shows when this client talks), so the flag is `danger_*` and
//! says so loudly on stderr and in the log.

use clap::Args;

use crate::client::{Queued, COVER_PROOFS_PER_ROUND_DEFAULT, COVER_PROOFS_PER_ROUND_MAX};
use crate::driver::client::session::SessionOptions;

/// Client cover options.
#[derive(Args, Debug, Clone)]
pub struct CoverArgs {
    /// Client cover: proofs published every round (the relay's window, 10 s by default) while connected
    /// (`recv --follow`, `chat`), your messages first and dummies addressed to yourself otherwise, so your
    /// link looks the same whether you talk or not. Use the same value every run.
    #[arg(long, value_name = "N", default_value_t = COVER_PROOFS_PER_ROUND_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(COVER_PROOFS_PER_ROUND_MAX)))]
    cover_proofs_per_round: u32,
    /// Publish only real messages, at once: anyone watching your link sees when you talk. Weakens privacy.
    #[arg(long)]
    danger_disable_client_cover: bool,
}

impl CoverArgs {
    /// Session options for these flags (logs loudly when cover is disabled).
    pub fn session_options(&self) -> SessionOptions {
        if self.danger_disable_client_cover {
            eprintln!("WARNING: client cover traffic is DISABLED (--danger-disable-client-cover): anyone watching this link sees when you send");
            tracing::warn!("client cover disabled by --danger-disable-client-cover");
        }
        SessionOptions {
            cover_proofs_per_round: self.cover_proofs_per_round,
            client_cover: !self.danger_disable_client_cover,
            ..SessionOptions::default()
        }
    }
}

/// The line `print_cover_queued` prints, `None` when the message goes whole at the next round.
pub fn cover_queued_text(q: &Queued, proofs_per_round: u32, window_s: u64) -> Option<String> {
    if q.pieces <= 1 && q.rounds <= 1 {
        return None;
    }
    let pieces = if q.pieces > 1 {
        format!(" in {} pieces (each arrives as a message of its own)", q.pieces)
    } else {
        String::new()
    };
    Some(format!(
        "queued: this message goes out{pieces} over the next {} rounds (~{} s): client cover sends {proofs_per_round} proof{} per {window_s} s round",
        q.rounds,
        u64::from(q.rounds) * window_s,
        if proofs_per_round == 1 { "" } else { "s" },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_text() {
        assert_eq!(cover_queued_text(&Queued { message: 0, pieces: 1, rounds: 1 }, 1, 10), None);
        let t = cover_queued_text(&Queued { message: 0, pieces: 3, rounds: 3 }, 1, 10).unwrap();
        assert!(t.contains("3 pieces") && t.contains("3 rounds (~30 s)") && t.contains("1 proof per 10 s"), "{t}");
    }
}
