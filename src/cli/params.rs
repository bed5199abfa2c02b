//! `tessera params`: the protocol parameters and limits of this build, as text or JSON.
//!
//! One table of `(name, value, meaning)` rows feeds both outputs: the text prints a row per line with its
//! meaning, `--json` prints one object with the same names (`limits` nested), so the two cannot drift apart.

use clap::Args;

use crate::proto::{BloomParams, Limits, NUM_BUCKETS_DEFAULT, PROOF_LEN, PROTOCOL_VERSION, WINDOW_SECONDS};

/// Arguments of `tessera params`.
#[derive(Args, Debug)]
pub struct ParamsArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One printed figure: its JSON name, its value and what it means (unit first).
type Row = (&'static str, u64, &'static str);

/// The protocol parameters of this build.
fn protocol_rows() -> Vec<Row> {
    let bloom = BloomParams::default();
    vec![
        ("protocol_version", PROTOCOL_VERSION.into(), "wire protocol version (HELLO)"),
        ("num_buckets", NUM_BUCKETS_DEFAULT.into(), "buckets per relay (default)"),
        ("window_seconds", WINDOW_SECONDS, "s, routing window: fingerprints and filters change every window"),
        ("bloom_m_bits", bloom.m_bits.into(), "bits per subscription Bloom filter"),
        ("bloom_k", bloom.k.into(), "hash positions per fingerprint"),
        ("proof_bytes", PROOF_LEN as u64, "bytes per proof (every message travels in proofs of this size)"),
    ]
}

/// The default limits a relay announces in HELLO_REPLY (its config's `[limits]` may change them).
fn limit_rows() -> Vec<Row> {
    let l = Limits::default();
    vec![
        ("message_bytes_max", l.message_bytes_max.into(), "bytes per WebSocket message"),
        ("frames_per_message_max", l.frames_per_message_max.into(), "frames per message"),
        ("proofs_per_batch_max", l.proofs_per_batch_max.into(), "proofs per PUBLISH, DELIVER or FETCH_REPLY"),
        ("entries_per_subscribe_max", l.entries_per_subscribe_max.into(), "entries per SUBSCRIBE"),
        ("filters_per_bucket_max", l.filters_per_bucket_max.into(), "filters per subscriber and bucket"),
        ("subscribers_per_connection_max", l.subscribers_per_connection_max.into(), "subscriber ids per connection"),
        (
            "subscription_windows_ahead_max",
            l.subscription_windows_ahead_max.into(),
            "windows a subscription reaches ahead",
        ),
        ("connections_max", l.connections_max.into(), "open connections per relay"),
        ("send_queue_proofs_max", l.send_queue_proofs_max.into(), "proofs queued per connection before it is slow"),
    ]
}

fn json_object(rows: &[Row]) -> serde_json::Map<String, serde_json::Value> {
    rows.iter().map(|&(name, value, _)| (name.to_owned(), value.into())).collect()
}

/// The JSON object `--json` prints.
fn json() -> serde_json::Value {
    let mut object = json_object(&protocol_rows());
    object.insert("limits".to_owned(), json_object(&limit_rows()).into());
    object.into()
}

/// The text printed without `--json`: a heading per group, then `name  value  meaning` aligned.
fn text() -> String {
    let mut out = String::from("protocol parameters of this build\n");
    let width = protocol_rows().iter().chain(&limit_rows()).map(|r| r.0.len()).max().unwrap_or(0);
    let push_rows = |out: &mut String, rows: Vec<Row>| {
        for (name, value, meaning) in rows {
            out.push_str(&format!("  {name:<width$}  {value:>8}  {meaning}\n"));
        }
    };
    push_rows(&mut out, protocol_rows());
    out.push_str("limits (defaults a relay announces in HELLO_REPLY; `[limits]` in its config changes them)\n");
    push_rows(&mut out, limit_rows());
    out
}

/// Prints the parameters; always succeeds.
pub fn run(args: ParamsArgs) -> i32 {
    if args.json {
        println!("{}", json());
    } else {
        print!("{}", text());
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_carry_the_same_figures() {
        let text = text();
        assert!(!text.trim_start().starts_with('{'), "{text}");
        let json = json();
        for (name, value, _) in protocol_rows() {
            assert_eq!(json[name], value, "{name}");
            assert!(
                text.lines().any(|l| l.split_whitespace().take(2).eq([name, value.to_string().as_str()])),
                "{name}"
            );
        }
        for (name, value, _) in limit_rows() {
            assert_eq!(json["limits"][name], value, "{name}");
            assert!(
                text.lines().any(|l| l.split_whitespace().take(2).eq([name, value.to_string().as_str()])),
                "{name}"
            );
        }
        assert_eq!((json["num_buckets"].as_u64(), json["proof_bytes"].as_u64()), (Some(64), Some(564)));
        assert_eq!(json.as_object().map(|o| o.len()), Some(7), "six parameters and the limits");
    }
}
