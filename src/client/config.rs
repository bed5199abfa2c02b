//! The client's tunables and the relay parameters it must match.

use super::subscription::{SubscribeMode, FINGERPRINTS_PER_FILTER_DEFAULT};
use crate::proto::bloom::BloomParams;
use crate::proto::frame::RelayParams;
use crate::proto::limits::Limits;
use crate::proto::params::{NUM_BUCKETS_DEFAULT, WINDOW_SECONDS};

/// Windows of slack kept below the relay's `subscription_windows_ahead_max`, so a client whose clock runs
/// up to two windows ahead of the relay's is not refused.
pub const AHEAD_SLACK_WINDOWS: u32 = 2;
/// How long a relay keeps proofs when its HELLO_REPLY has not been seen yet, seconds: the relay's default
/// (`--retention`, one hour). Only the gap notice's wording uses it before a connection.
pub const RETENTION_S_DEFAULT: u64 = 3_600;

/// Why a configuration is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `window_s` or `num_buckets` is zero.
    #[error("window length and bucket count must be non-zero")]
    Zero,
    /// `ahead_windows` beyond the relay's limit.
    #[error("horizon of {ahead} windows exceeds the relay's {max}")]
    AheadTooFar {
        /// Configured.
        ahead: u32,
        /// The relay's `subscription_windows_ahead_max`.
        max: u32,
    },
    /// `renew_every_windows` is zero or not below `ahead_windows`: coverage would lapse.
    #[error("renewal every {renew} windows must be in 1..{ahead} (the horizon)")]
    RenewalTooRare {
        /// Configured interval.
        renew: u32,
        /// Configured horizon.
        ahead: u32,
    },
}

/// Everything `ClientState` needs besides keys and contacts.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// Buckets of the relay (HELLO_REPLY).
    pub num_buckets: u16,
    /// Window length of the relay, seconds.
    pub window_s: u64,
    /// Bloom parameters of the relay.
    pub bloom: BloomParams,
    /// The relay's limits (filters per bucket, entries per SUBSCRIBE, subscribers, horizon).
    pub limits: Limits,
    /// Windows after the current one every subscription covers: how long messages sent to us while we are
    /// offline still match a filter, so the relay keeps them for FETCH.
    pub ahead_windows: u32,
    /// Windows before the current one whose expected deliveries are kept, to open what FETCH returns after
    /// an absence: the relay's retention.
    pub behind_windows: u32,
    /// How long the relay keeps proofs, seconds (HELLO_REPLY's `retention_s`): a window older than this
    /// cannot be caught up, and the gap notice names it.
    pub retention_s: u64,
    /// Re-subscribe every this many windows (each renewal slides the horizon forward). 6 windows = 1 minute:
    /// SUBSCRIBE traffic is ~0.5 KB/s for one contact and ~1.1 KB/s for five (28 KB and 66 KB per renewal,
    /// docs/PERFORMANCE.md), while coverage never drops below `ahead − 6` windows.
    pub renew_every_windows: u32,
    /// Send the renewal this many seconds before the window boundary it is due at.
    pub renew_lead_s: u64,
    /// Items per filter before splitting (padding target).
    pub fingerprints_per_filter_max: usize,
    /// Padded every-bucket registration, or not.
    pub subscribe_mode: SubscribeMode,
    /// Client cover proofs per round whose self-addressed fingerprints the filters hold (`client::cover`);
    /// 0: none. The session sets it (default 1) whether or not this run publishes cover, so a client's
    /// filters for a grid chunk are the same in every run.
    pub cover_proofs_per_round: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            num_buckets: NUM_BUCKETS_DEFAULT,
            window_s: WINDOW_SECONDS,
            bloom: BloomParams::default(),
            limits,
            ahead_windows: limits.subscription_windows_ahead_max - AHEAD_SLACK_WINDOWS,
            behind_windows: limits.subscription_windows_ahead_max,
            retention_s: RETENTION_S_DEFAULT,
            renew_every_windows: 6,
            renew_lead_s: 2,
            fingerprints_per_filter_max: FINGERPRINTS_PER_FILTER_DEFAULT,
            subscribe_mode: SubscribeMode::EveryBucketPadded,
            cover_proofs_per_round: 0,
        }
    }
}

impl ClientConfig {
    /// The defaults adapted to a relay's HELLO_REPLY: its buckets, window, Bloom parameters, limits, a horizon
    /// and retention that it accepts, and filters no fuller than it allows. Check `relay` with
    /// [`check_relay_params`](super::bounds::check_relay_params) first: this sizes what the client precomputes.
    pub fn for_relay(relay: &RelayParams) -> Self {
        let window_s = u64::from(relay.window_s).max(1);
        let ahead = relay.limits.subscription_windows_ahead_max.saturating_sub(AHEAD_SLACK_WINDOWS).max(1);
        Self {
            num_buckets: relay.num_buckets,
            window_s,
            bloom: relay.bloom,
            limits: relay.limits,
            ahead_windows: ahead,
            behind_windows: (u64::from(relay.retention_s) / window_s).min(u64::from(u32::MAX)) as u32,
            retention_s: u64::from(relay.retention_s),
            renew_every_windows: ClientConfig::default().renew_every_windows.min(ahead.saturating_sub(1)).max(1),
            fingerprints_per_filter_max: super::bounds::fingerprints_per_filter(relay).into(),
            ..Self::default()
        }
    }

    /// Checks the configuration can keep a subscription alive.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.window_s == 0 || self.num_buckets == 0 {
            return Err(ConfigError::Zero);
        }
        if self.ahead_windows > self.limits.subscription_windows_ahead_max {
            return Err(ConfigError::AheadTooFar {
                ahead: self.ahead_windows,
                max: self.limits.subscription_windows_ahead_max,
            });
        }
        if self.renew_every_windows == 0 || self.renew_every_windows >= self.ahead_windows {
            return Err(ConfigError::RenewalTooRare { renew: self.renew_every_windows, ahead: self.ahead_windows });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = ClientConfig::default();
        assert_eq!(c.check(), Ok(()));
        assert_eq!((c.ahead_windows, c.behind_windows, c.renew_every_windows), (358, 360, 6));
        let bad = ClientConfig { ahead_windows: 400, ..c };
        assert_eq!(bad.check(), Err(ConfigError::AheadTooFar { ahead: 400, max: 360 }));
        let rare = ClientConfig { ahead_windows: 5, renew_every_windows: 5, ..c };
        assert_eq!(rare.check(), Err(ConfigError::RenewalTooRare { renew: 5, ahead: 5 }));
    }
}
