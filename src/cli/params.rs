//! `tessera params`: the protocol parameters and limits of this build, as text or JSON.

use clap::Args;

use crate::proto::{BloomParams, Limits, NUM_BUCKETS_DEFAULT, PROOF_LEN, PROTOCOL_VERSION, WINDOW_SECONDS};

/// Arguments of `tessera params`.
#[derive(Args, Debug)]
pub struct ParamsArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Prints the parameters; always succeeds.
pub fn run(args: ParamsArgs) -> i32 {
    let bloom = BloomParams::default();
    let limits = Limits::default();
    let value = serde_json::json!({
        "protocol_version": PROTOCOL_VERSION,
        "num_buckets": NUM_BUCKETS_DEFAULT,
        "window_seconds": WINDOW_SECONDS,
        "bloom_m_bits": bloom.m_bits,
        "bloom_k": bloom.k,
        "proof_bytes": PROOF_LEN,
        "limits": {
            "message_bytes_max": limits.message_bytes_max,
            "frames_per_message_max": limits.frames_per_message_max,
            "proofs_per_batch_max": limits.proofs_per_batch_max,
            "entries_per_subscribe_max": limits.entries_per_subscribe_max,
            "filters_per_bucket_max": limits.filters_per_bucket_max,
            "subscribers_per_connection_max": limits.subscribers_per_connection_max,
            "subscription_windows_ahead_max": limits.subscription_windows_ahead_max,
            "connections_max": limits.connections_max,
            "send_queue_proofs_max": limits.send_queue_proofs_max,
        },
    });
    if args.json {
        println!("{value}");
    } else {
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    }
    0
}
