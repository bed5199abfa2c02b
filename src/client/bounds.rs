//! What a client accepts from a relay's HELLO_REPLY (docs/PROTOCOL.md §4.2, "What a client must check").
//!
//! ```text
//! HELLO_REPLY ─decoder (structural MUSTs)─▶ RelayParams ─check_relay_params─▶ ClientConfig::for_relay ─▶ precompute
//!                                                          └─ out of range ─▶ RelayParamsError (nothing built)
//! ```
//! The relay is not trusted. Its parameters size what the client precomputes (one expected delivery per
//! contact, window and sequence number over the subscription horizon and the retention), how it splits its
//! SUBSCRIBEs, and how many false positives its filters yield — and false positives are what make a match
//! deniable. So every parameter the client builds on is checked against a range **before** anything is
//! allocated or precomputed for it, and the first one out of range is reported with its name, its value and
//! the accepted range. Pure: no I/O.

use super::config::AHEAD_SLACK_WINDOWS;
use super::subscription::FINGERPRINTS_PER_FILTER_DEFAULT;
use crate::proto::codec::FRAME_HEADER_LEN;
use crate::proto::frame::RelayParams;
use crate::proto::{PROOF_LEN, PROTOCOL_VERSION};

/// Most buckets accepted: the padded subscription registers every bucket at every renewal, so the bucket count
/// multiplies the client's SUBSCRIBE traffic (16× the default 64 is ~2 MB per renewal at 1 KiB filters).
pub const NUM_BUCKETS_MAX: u16 = 1024;
/// Longest window accepted, seconds: what a relay can be configured with (`window_s` ≤ 1 hour).
pub const WINDOW_S_MAX: u32 = 3600;
/// Most windows the client precomputes on either side of now (ahead: `subscription_windows_ahead_max`;
/// behind: `retention_s / window_s`): a day at 10-second windows, 24× the default hour. Each window costs
/// `SEQS_PER_WINDOW` expected deliveries per contact (~15 µs and ~300 B each): ~1 s and 20 MB per contact
/// at the bound, instead of the ~4·10⁹ windows a relay announcing 2³² would make the client compute.
pub const WINDOWS_PRECOMPUTED_MAX: u32 = 8_640;
/// Fewest windows ahead a subscription must reach: the client keeps `AHEAD_SLACK_WINDOWS` of slack below the
/// relay's limit and renews at least one window before its horizon ends.
pub const WINDOWS_AHEAD_MIN: u32 = AHEAD_SLACK_WINDOWS + 2;
/// Smallest Bloom `m` accepted, bits.
pub const BLOOM_M_BITS_MIN: u32 = 64;
/// Largest Bloom `m` accepted, bits: a 2 KiB filter, twice the default's size in both directions of need.
pub const BLOOM_M_BITS_MAX: u32 = 16_384;
/// Lowest false-positive rate accepted for a full filter: a quarter of the default's ~0.42 %. Below it, so
/// few proofs match a filter by chance that a match all but proves a delivery — the deniability the design
/// relies on (a relay announcing m = 65,536, k = 16 would make it ~4·10⁻³⁰).
pub const FALSE_POSITIVE_RATE_MIN: f64 = 0.001;
/// Highest false-positive rate accepted: above it, a subscriber downloads mostly other people's proofs.
pub const FALSE_POSITIVE_RATE_MAX: f64 = 0.05;
/// Most frames accepted in one message from the relay (it packs replies; 64 by default).
pub const FRAMES_PER_MESSAGE_MAX: u16 = 1024;
/// Smallest message that carries one PUBLISH of one proof.
const MESSAGE_BYTES_MIN: u32 = (FRAME_HEADER_LEN + 10 + PROOF_LEN) as u32;
/// SUBSCRIBE framing around its entries: frame header, subscriber id, entry count.
const SUBSCRIBE_FIXED_BYTES: u32 = FRAME_HEADER_LEN as u32 + 16 + 2;
/// A SUBSCRIBE entry's fixed part before its filter.
const SUBSCRIBE_ENTRY_FIXED_BYTES: u32 = 20;

/// A relay parameter this client refuses to work with. Nothing was built from the parameters.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayParamsError {
    /// One announced value lies outside what this client accepts.
    #[error("the relay announced {field} = {value}, outside the accepted range {min}..={max}")]
    OutOfRange {
        /// The HELLO_REPLY field, as docs/PROTOCOL.md §4.2 names it.
        field: &'static str,
        /// What the relay announced.
        value: u64,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value (it may depend on other fields, e.g. `retention_s` on `window_s`).
        max: u64,
    },
    /// The Bloom parameters give a full filter a false-positive rate out of range.
    #[error(
        "the relay announced bloom_m_bits = {m_bits}, bloom_k = {k}: a filter of {fingerprints} fingerprints \
         would have a false-positive rate of {rate:.3e}, outside the accepted range {min}..={max} (false \
         positives are what make a match deniable)"
    )]
    FalsePositiveRate {
        /// Announced `bloom_m_bits`.
        m_bits: u32,
        /// Announced `bloom_k`.
        k: u8,
        /// Fingerprints the client would put in one filter (`min(60, filter_fingerprints_max)`).
        fingerprints: u16,
        /// The resulting false-positive rate.
        rate: f64,
        /// [`FALSE_POSITIVE_RATE_MIN`].
        min: f64,
        /// [`FALSE_POSITIVE_RATE_MAX`].
        max: f64,
    },
}

/// Fingerprints the client puts in one filter under `relay`: its own target, capped by the relay's
/// `filter_fingerprints_max` (a fuller filter would be refused).
pub fn fingerprints_per_filter(relay: &RelayParams) -> u16 {
    (FINGERPRINTS_PER_FILTER_DEFAULT as u16).min(relay.policy.filter_fingerprints_max).max(1)
}

/// False-positive rate of a Bloom filter of `m_bits` bits and `k` hashes holding `n` items:
/// `(1 − e^(−k·n/m))^k`.
pub fn false_positive_rate(m_bits: u32, k: u8, n: u16) -> f64 {
    let fill = 1.0 - (-(f64::from(k) * f64::from(n)) / f64::from(m_bits.max(1))).exp();
    fill.powi(i32::from(k))
}

/// Checks every parameter of `relay` this client builds on, in HELLO_REPLY's field order; the first one out
/// of range is the error. `message_bytes_max` is the largest message this client's WebSocket layer accepts:
/// a relay announcing more could send messages the client would refuse mid-session.
pub fn check_relay_params(relay: &RelayParams, message_bytes_max: u32) -> Result<(), RelayParamsError> {
    let range = |field: &'static str, value: u64, min: u64, max: u64| {
        if (min..=max).contains(&value) {
            Ok(())
        } else {
            Err(RelayParamsError::OutOfRange { field, value, min, max })
        }
    };
    let v = u64::from(PROTOCOL_VERSION);
    range("version", relay.version.into(), v, v)?;
    range("num_buckets", relay.num_buckets.into(), 1, NUM_BUCKETS_MAX.into())?;
    range("window_s", relay.window_s.into(), 1, WINDOW_S_MAX.into())?;
    let fingerprints = fingerprints_per_filter(relay);
    let rate = false_positive_rate(relay.bloom.m_bits, relay.bloom.k, fingerprints);
    if !(FALSE_POSITIVE_RATE_MIN..=FALSE_POSITIVE_RATE_MAX).contains(&rate) {
        return Err(RelayParamsError::FalsePositiveRate {
            m_bits: relay.bloom.m_bits,
            k: relay.bloom.k,
            fingerprints,
            rate,
            min: FALSE_POSITIVE_RATE_MIN,
            max: FALSE_POSITIVE_RATE_MAX,
        });
    }
    range("bloom_m_bits", relay.bloom.m_bits.into(), BLOOM_M_BITS_MIN.into(), BLOOM_M_BITS_MAX.into())?;
    let window_s = u64::from(relay.window_s);
    range("retention_s", relay.retention_s.into(), 0, window_s * u64::from(WINDOWS_PRECOMPUTED_MAX))?;
    let l = &relay.limits;
    range("message_bytes_max", l.message_bytes_max.into(), MESSAGE_BYTES_MIN.into(), message_bytes_max.into())?;
    range("frames_per_message_max", l.frames_per_message_max.into(), 1, FRAMES_PER_MESSAGE_MAX.into())?;
    // A SUBSCRIBE of the most entries the relay allows must fit in one of its messages.
    let entry_bytes = SUBSCRIBE_ENTRY_FIXED_BYTES + relay.bloom.m_bits / 8;
    let entries_fit = l.message_bytes_max.saturating_sub(SUBSCRIBE_FIXED_BYTES) / entry_bytes;
    range("entries_per_subscribe_max", l.entries_per_subscribe_max.into(), 1, entries_fit.into())?;
    range("filters_per_bucket_max", l.filters_per_bucket_max.into(), 1, u16::MAX.into())?;
    range("subscribers_per_connection_max", l.subscribers_per_connection_max.into(), 1, u16::MAX.into())?;
    range(
        "subscription_windows_ahead_max",
        l.subscription_windows_ahead_max.into(),
        WINDOWS_AHEAD_MIN.into(),
        WINDOWS_PRECOMPUTED_MAX.into(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::BloomParams;

    fn defaults() -> RelayParams {
        RelayParams::defaults([0; 16])
    }

    const WS_MAX: u32 = 1 << 20;

    fn field_of(relay: &RelayParams) -> Option<&'static str> {
        match check_relay_params(relay, WS_MAX) {
            Ok(()) => None,
            Err(RelayParamsError::OutOfRange { field, .. }) => Some(field),
            Err(RelayParamsError::FalsePositiveRate { .. }) => Some("false-positive rate"),
        }
    }

    #[test]
    fn the_default_relay_is_accepted_with_its_false_positive_rate() {
        assert_eq!(check_relay_params(&defaults(), WS_MAX), Ok(()));
        let rate = false_positive_rate(1024, 3, 60);
        assert!((rate - 0.00419).abs() < 0.00001, "{rate}");
    }

    #[test]
    fn the_issue_cases_are_refused_naming_field_value_and_range() {
        let mut r = defaults();
        r.limits.subscription_windows_ahead_max = u32::MAX;
        assert_eq!(
            check_relay_params(&r, WS_MAX),
            Err(RelayParamsError::OutOfRange {
                field: "subscription_windows_ahead_max",
                value: u32::MAX.into(),
                min: 4,
                max: 8_640
            })
        );
        let mut r = defaults();
        r.bloom = BloomParams::new(65_536, 16).unwrap();
        match check_relay_params(&r, WS_MAX) {
            Err(RelayParamsError::FalsePositiveRate { m_bits: 65_536, k: 16, fingerprints: 60, rate, .. }) => {
                assert!(rate < 1e-20, "{rate}")
            }
            other => panic!("{other:?}"),
        }
        let text = check_relay_params(&r, WS_MAX).unwrap_err().to_string();
        assert!(text.contains("bloom_m_bits = 65536") && text.contains("bloom_k = 16"), "{text}");
    }

    #[test]
    fn every_bound_names_its_field() {
        type Patch = fn(&mut RelayParams);
        let cases: [(Patch, &str); 14] = [
            (|r| r.version = 1, "version"),
            (|r| r.num_buckets = NUM_BUCKETS_MAX + 1, "num_buckets"),
            (|r| r.window_s = WINDOW_S_MAX + 1, "window_s"),
            // A relay asking for tiny filters: one fingerprint each leaves no false positive.
            (|r| r.policy.filter_fingerprints_max = 1, "false-positive rate"),
            (|r| r.bloom = BloomParams::new(64, 3).unwrap(), "false-positive rate"),
            (|r| r.bloom = BloomParams::new(32_768, 1).unwrap(), "bloom_m_bits"),
            (|r| r.retention_s = 86_401, "retention_s"),
            (|r| r.limits.message_bytes_max = WS_MAX + 1, "message_bytes_max"),
            (|r| r.limits.frames_per_message_max = FRAMES_PER_MESSAGE_MAX + 1, "frames_per_message_max"),
            (|r| r.limits.entries_per_subscribe_max = 0, "entries_per_subscribe_max"),
            (|r| r.limits.entries_per_subscribe_max = 7_085, "entries_per_subscribe_max"),
            (|r| r.limits.filters_per_bucket_max = 0, "filters_per_bucket_max"),
            (|r| r.limits.subscribers_per_connection_max = 0, "subscribers_per_connection_max"),
            (|r| r.limits.subscription_windows_ahead_max = 3, "subscription_windows_ahead_max"),
        ];
        for (patch, field) in cases {
            let mut r = defaults();
            patch(&mut r);
            assert_eq!(field_of(&r), Some(field));
        }
        // The edges are accepted: a day of windows each way, 7,084 entries of 148 B in 1 MiB.
        let mut r = defaults();
        r.retention_s = 86_400;
        r.limits.subscription_windows_ahead_max = 8_640;
        r.limits.entries_per_subscribe_max = 7_084;
        assert_eq!(field_of(&r), None);
    }
}
