//! Helpers shared by the protocol test binaries (vectors, properties, rejections).
//!
//! Each `tests/*.rs` binary includes this module and uses a different subset of it.
#![allow(dead_code)] // each test binary uses only part of these helpers

use bytes::Bytes;
use tessera::proto::{Proof, ProofBatch, CIPHERTEXT_LEN};

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes lowercase or uppercase hex; panics on malformed input (test data is trusted).
pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex: {s}");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit")).collect()
}

/// Decodes hex into a fixed-size array.
pub fn unhex_array<const N: usize>(s: &str) -> [u8; N] {
    unhex(s).try_into().unwrap_or_else(|v: Vec<u8>| panic!("expected {N} bytes, got {}", v.len()))
}

/// A valid proof whose every byte depends on `n` (derivations are not checked by the codec).
pub fn sample_proof(n: u8) -> Proof {
    let mut ciphertext = [0u8; CIPHERTEXT_LEN];
    for (i, b) in ciphertext.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(n);
    }
    Proof::new(u16::from(n) * 3, 1_700_000_000 + u64::from(n) * 10, &[n; 32], &[n ^ 0x5A; 8], &ciphertext)
}

/// A batch of `count` sample proofs.
pub fn sample_batch(count: usize) -> ProofBatch {
    let proofs: Vec<Proof> = (0..count).map(|i| sample_proof(i as u8)).collect();
    ProofBatch::from_proofs(proofs.iter().map(|p| p.view()))
}

/// Frame header + body as one `Bytes` message.
pub fn raw_frame(frame_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![frame_type];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Convenience: `Bytes` from a `Vec`.
pub fn msg(v: Vec<u8>) -> Bytes {
    Bytes::from(v)
}
