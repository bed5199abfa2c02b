//! Protocol constants: the values both ends must agree on byte for byte (docs/FOUNDATIONS.md §2, docs/PROTOCOL.md).
//!
//! Routing parameters (`NUM_BUCKETS_DEFAULT`, `WINDOW_SECONDS`, Bloom `m`/`k`) match the reference
//! implementation so that proofs and filters made by either side route identically. The proof layout is
//! ours: it is fixed-size so that a real proof and a dummy proof are the same number of bytes on the wire.

/// Native protocol version carried in HELLO and HELLO_REPLY. Version 2 added the relay's policy (shards,
/// clock skew, timeouts, fingerprints per filter) to HELLO_REPLY; version 3 added HELLO_REPLY's per-connection
/// `auth_nonce` and the CLAIM frame (capability subscriber ids). A relay speaks only this version.
pub const PROTOCOL_VERSION: u16 = 3;
/// Proof format version (first byte of every proof).
pub const PROOF_VERSION: u8 = 1;

/// Length of a routing window in seconds; `window_start = t - t % WINDOW_SECONDS`.
pub const WINDOW_SECONDS: u64 = 10;
/// Number of buckets proofs are spread over (`bucket = u16_be(SHA-256(commit)[0..2]) mod NUM_BUCKETS`).
pub const NUM_BUCKETS_DEFAULT: u16 = 64;

/// Bloom filter size in bits (reference: 1024). With 60 fingerprints and k = 3 the false-positive rate is ~0.42%.
pub const BLOOM_M_BITS_DEFAULT: u32 = 1024;
/// Bloom hash count (reference: 3).
pub const BLOOM_K_DEFAULT: u8 = 3;
/// Largest `k` any code path supports; positions are kept in a fixed array of this size (no allocation).
pub const BLOOM_K_MAX: usize = 16;
/// Largest `m` accepted anywhere (bits); keeps a filter at most 8 KiB.
pub const BLOOM_M_BITS_MAX: u32 = 65_536;
/// Most fingerprints one SUBSCRIBE filter may hold (the reference's 60: ~0.42 % false positives at m = 1024,
/// k = 3). A filter of `n` fingerprints sets at most `k·n` bits, so the relay refuses a filter with more than
/// `min(m, k · FILTER_FINGERPRINTS_MAX)` bits set (180 of 1024 by default: `BloomParams::filter_bits_max`);
/// an all-ones filter would otherwise match every proof of its bucket (docs/PROTOCOL.md §5.6).
/// Announced in HELLO_REPLY as `filter_fingerprints_max`.
pub const FILTER_FINGERPRINTS_MAX: u16 = 60;

/// Commitment length: SHA-256 output.
pub const COMMIT_LEN: usize = 32;
/// Fingerprint length: first 8 bytes of `SHA-256(commit ‖ u64_be(window_start))`.
pub const FINGERPRINT_LEN: usize = 8;
/// Ciphertext length of every proof: a 496-byte sealed envelope plus the 16-byte AES-GCM tag.
/// Fixed so that real and dummy proofs cannot be told apart by size; 512 keeps a whole proof under 576 bytes.
pub const CIPHERTEXT_LEN: usize = 512;
/// AES-GCM tag length inside the ciphertext.
pub const AEAD_TAG_LEN: usize = 16;
/// Envelope plaintext length (ciphertext minus tag).
pub const ENVELOPE_PLAINTEXT_LEN: usize = CIPHERTEXT_LEN - AEAD_TAG_LEN;

/// Byte offsets inside a proof (docs/PROTOCOL.md §Proof).
pub mod proof_layout {
    use super::{CIPHERTEXT_LEN, COMMIT_LEN, FINGERPRINT_LEN};
    /// `u8` proof version.
    pub const VERSION: usize = 0;
    /// `u8` reserved, must be zero (padding is zeroed, never free for a covert channel).
    pub const RESERVED: usize = 1;
    /// `u16` bucket.
    pub const BUCKET: usize = 2;
    /// `u64` window start, Unix seconds.
    pub const WINDOW_START: usize = 4;
    /// 32-byte commitment.
    pub const COMMIT: usize = 12;
    /// 8-byte fingerprint.
    pub const FINGERPRINT: usize = COMMIT + COMMIT_LEN;
    /// Fixed-length ciphertext.
    pub const CIPHERTEXT: usize = FINGERPRINT + FINGERPRINT_LEN;
    /// Total proof length in bytes.
    pub const LEN: usize = CIPHERTEXT + CIPHERTEXT_LEN;
}

/// Total length of one proof on the wire and in the log: 564 bytes.
pub const PROOF_LEN: usize = proof_layout::LEN;

const _: () = assert!(PROOF_LEN == 564);
