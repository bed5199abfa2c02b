//! The end-to-end envelope: a fixed 496-byte plaintext sealed into the 512-byte ciphertext of a proof.
//!
//! ```text
//! offset  size  field
//!      0    32  Y'            blinded sender key (compressed Ristretto)
//!     32    32  R             Schnorr commitment   ┐ proof of knowledge of x' = x + t,
//!     64    32  s             Schnorr response     ┘ challenge over Y' ‖ R ‖ commit ‖ window ‖ body
//!     96     1  version       = 1                  ┐
//!     97     1  reserved      = 0                  │
//!     98     1  part_index    0..part_count        │ body (400 bytes, all under the challenge)
//!     99     1  part_count    1..=SEQS_PER_WINDOW  │
//!    100     2  chunk_len     u16 be, ≤ 394        │
//!    102   394  chunk ‖ zero padding               ┘
//!    496        total; AES-256-GCM adds a 16-byte tag → 512 = CIPHERTEXT_LEN
//! ```
//! Sealing: `(key, nonce) = HKDF-Expand(K, "tessera/v1/seal" ‖ did, 44)`, AAD = `commit ‖ u64_be(window_start)
//! ‖ u16_be(bucket)`, so the ciphertext cannot be moved to another proof header. Opening checks, in order:
//! the tag, that `Y'` is the blinded key expected for this delivery, the Schnorr proof, then the body's
//! structure (version, reserved byte, part numbering, length, zero padding).

use curve25519_dalek::ristretto::RistrettoPoint;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::{Zeroize, Zeroizing};

use super::delivery::{DeliveryId, DeliverySecrets, Routing, SealKey, SEQS_PER_WINDOW};
use super::identity::Identity;
use super::kdf::compress_base_mults;
use super::pairwise::PairwiseSecret;
use super::schnorr::{self, ChallengeContext, SchnorrError, SCHNORR_PROOF_LEN};
use crate::proto::params::{AEAD_TAG_LEN, CIPHERTEXT_LEN, ENVELOPE_PLAINTEXT_LEN};
use crate::proto::proof::Proof;

/// Byte offsets inside the envelope plaintext.
pub mod layout {
    /// Blinded sender key `Y'`.
    pub const Y_BLINDED: usize = 0;
    /// Schnorr proof `R ‖ s`.
    pub const PROOF: usize = 32;
    /// Start of the body (everything the challenge covers besides `Y'`, `R`, commit and window).
    pub const BODY: usize = 96;
    /// Envelope format version.
    pub const VERSION: usize = 96;
    /// Reserved, zero.
    pub const RESERVED: usize = 97;
    /// Index of this part in its message.
    pub const PART_INDEX: usize = 98;
    /// Number of parts of the message.
    pub const PART_COUNT: usize = 99;
    /// Bytes of message in this part, u16 be.
    pub const CHUNK_LEN: usize = 100;
    /// Message bytes, then zero padding to the end.
    pub const CHUNK: usize = 102;
    /// Plaintext length.
    pub const END: usize = super::ENVELOPE_PLAINTEXT_LEN;
}

/// Envelope format version.
pub const ENVELOPE_VERSION: u8 = 1;
/// Message bytes one envelope carries.
pub const CHUNK_LEN_MAX: usize = layout::END - layout::CHUNK;
/// Longest message: one chunk per sequence number of a window.
pub const MESSAGE_LEN_MAX: usize = CHUNK_LEN_MAX * SEQS_PER_WINDOW as usize;

const _: () = assert!(layout::PROOF + SCHNORR_PROOF_LEN == layout::BODY);
const _: () = assert!(ENVELOPE_PLAINTEXT_LEN + AEAD_TAG_LEN == CIPHERTEXT_LEN);
const _: () = assert!(CHUNK_LEN_MAX == 394);

/// A part's numbering is invalid (a caller bug on the sending side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartError {
    /// `count` is 0 or above `SEQS_PER_WINDOW`, or `index >= count`.
    #[error("part {index} of {count} is not a valid numbering (1..={SEQS_PER_WINDOW} parts)")]
    BadNumbering {
        /// Index given.
        index: u8,
        /// Count given.
        count: u8,
    },
    /// More than `CHUNK_LEN_MAX` bytes.
    #[error("chunk of {0} bytes exceeds {CHUNK_LEN_MAX}")]
    ChunkTooLong(usize),
}

/// One part of a message, validated.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    index: u8,
    count: u8,
    chunk: &'a [u8],
}

impl<'a> Part<'a> {
    /// Part `index` of `count` carrying `chunk`.
    pub fn new(index: u8, count: u8, chunk: &'a [u8]) -> Result<Self, PartError> {
        if count == 0 || u32::from(count) > SEQS_PER_WINDOW || index >= count {
            return Err(PartError::BadNumbering { index, count });
        }
        if chunk.len() > CHUNK_LEN_MAX {
            return Err(PartError::ChunkTooLong(chunk.len()));
        }
        Ok(Self { index, count, chunk })
    }
}

/// Why an envelope does not open. Each is a distinct rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The AES-GCM tag does not verify: ciphertext or header tampered with, or another key.
    #[error("ciphertext does not authenticate (tampered, or not for this delivery)")]
    Tampered,
    /// The envelope opened but names another blinded key: sealed with the pairwise secret by someone
    /// other than the contact's key.
    #[error("envelope carries a blinded key other than the contact's")]
    WrongSenderKey,
    /// The Schnorr proof does not verify against the contact's blinded key.
    #[error("sender authentication failed: {0}")]
    BadProof(#[from] SchnorrError),
    /// Unknown envelope version.
    #[error("envelope version {0} is not supported")]
    BadVersion(u8),
    /// Reserved byte not zero.
    #[error("envelope reserved byte is {0}, must be 0")]
    NonZeroReserved(u8),
    /// Part numbering outside `1..=SEQS_PER_WINDOW` parts, or index ≥ count.
    #[error("envelope part {index} of {count} is invalid")]
    BadPartNumbering {
        /// Index read.
        index: u8,
        /// Count read.
        count: u8,
    },
    /// Chunk length above `CHUNK_LEN_MAX`.
    #[error("envelope chunk length {0} exceeds {CHUNK_LEN_MAX}")]
    ChunkTooLong(u16),
    /// Padding after the chunk is not all zero.
    #[error("envelope padding is not zero")]
    NonZeroPadding,
}

/// A part recovered from an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedPart {
    /// Index of the part.
    pub index: u8,
    /// Parts in the message.
    pub count: u8,
    /// Message bytes of this part.
    pub chunk: Vec<u8>,
}

fn aead_key(seal: &SealKey) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, seal.key.as_ref()).expect("AES-256 key is 32 bytes"))
}

/// Builds, proves and seals one part of a message for delivery `id` to the contact sharing `k`.
///
/// `aux` is fresh randomness for the hedged Schnorr nonce. The caller guarantees `id` was never used
/// before (it names the AES-GCM key and nonce).
pub fn seal(
    sender: &Identity,
    k: &PairwiseSecret,
    id: DeliveryId,
    num_buckets: u16,
    part: Part<'_>,
    aux: &[u8; 32],
) -> Proof {
    let secrets = DeliverySecrets::derive(k, id);
    let x_blinded = Zeroizing::new(sender.secret() + secrets.blind);

    let mut buf = Zeroizing::new([0u8; CIPHERTEXT_LEN]);
    let plain = &mut buf[..layout::END];
    plain[layout::VERSION] = ENVELOPE_VERSION;
    plain[layout::PART_INDEX] = part.index;
    plain[layout::PART_COUNT] = part.count;
    // `Part::new` bounds the chunk by CHUNK_LEN_MAX < u16::MAX.
    plain[layout::CHUNK_LEN..layout::CHUNK].copy_from_slice(&(part.chunk.len() as u16).to_be_bytes());
    plain[layout::CHUNK..layout::CHUNK + part.chunk.len()].copy_from_slice(part.chunk);

    // Y' = x'·G and R = r·G, encoded together (one shared inversion instead of two inverse square roots).
    let r = schnorr::nonce(&x_blinded, aux, &plain[layout::BODY..]);
    let mut scalars = [*x_blinded, r];
    let encoded = compress_base_mults(&scalars);
    scalars.zeroize();
    let (y_blinded, big_r) = (encoded[0], encoded[1]);
    let routing = Routing::new(secrets.commit(&y_blinded), id.window_start_s, num_buckets);
    let ctx =
        ChallengeContext { commit: &routing.commit, window_start_s: id.window_start_s, body: &plain[layout::BODY..] };
    let proof = schnorr::respond(r, &big_r, &x_blinded, &y_blinded, &ctx);
    plain[layout::Y_BLINDED..layout::PROOF].copy_from_slice(&y_blinded);
    plain[layout::PROOF..layout::BODY].copy_from_slice(&proof);

    let seal_key = SealKey::derive(k, id);
    let tag = aead_key(&seal_key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(seal_key.nonce),
            Aad::from(routing.aad()),
            &mut buf[..layout::END],
        )
        .expect("AES-GCM seals 496 bytes (far below its 64 GiB limit)");
    buf[layout::END..].copy_from_slice(tag.as_ref());
    Proof::new(routing.bucket, routing.window_start_s, &routing.commit, &routing.fingerprint, &buf)
}

/// The blinded key a recipient expects for one delivery: point (for verification) and encoding.
#[derive(Clone, Copy, Debug)]
pub struct ExpectedKey {
    /// `Y' = Y + t·G`.
    pub point: RistrettoPoint,
    /// Its compressed encoding (hashed into the commit, compared with the envelope's).
    pub bytes: [u8; 32],
}

/// Opens the ciphertext of delivery `id` whose header is `routing`, from the contact whose blinded key for
/// it is `expected`.
pub fn open(
    k: &PairwiseSecret,
    id: DeliveryId,
    expected: &ExpectedKey,
    routing: &Routing,
    ciphertext: &[u8; CIPHERTEXT_LEN],
) -> Result<OpenedPart, EnvelopeError> {
    let seal_key = SealKey::derive(k, id);
    let mut buf = Zeroizing::new(*ciphertext);
    let plain = aead_key(&seal_key)
        .open_in_place(Nonce::assume_unique_for_key(seal_key.nonce), Aad::from(routing.aad()), &mut buf[..])
        .map_err(|_| EnvelopeError::Tampered)?;
    let plain: &[u8; layout::END] = (&*plain).try_into().expect("ring returns the 496 bytes before the tag");

    if plain[layout::Y_BLINDED..layout::PROOF] != expected.bytes {
        return Err(EnvelopeError::WrongSenderKey);
    }
    let proof: &[u8; SCHNORR_PROOF_LEN] = plain[layout::PROOF..layout::BODY].try_into().expect("64-byte field");
    let ctx = ChallengeContext {
        commit: &routing.commit,
        window_start_s: routing.window_start_s,
        body: &plain[layout::BODY..],
    };
    schnorr::verify(&expected.point, &expected.bytes, proof, &ctx)?;
    parse_body(plain)
}

fn parse_body(plain: &[u8; layout::END]) -> Result<OpenedPart, EnvelopeError> {
    if plain[layout::VERSION] != ENVELOPE_VERSION {
        return Err(EnvelopeError::BadVersion(plain[layout::VERSION]));
    }
    if plain[layout::RESERVED] != 0 {
        return Err(EnvelopeError::NonZeroReserved(plain[layout::RESERVED]));
    }
    let (index, count) = (plain[layout::PART_INDEX], plain[layout::PART_COUNT]);
    if count == 0 || u32::from(count) > SEQS_PER_WINDOW || index >= count {
        return Err(EnvelopeError::BadPartNumbering { index, count });
    }
    let len = u16::from_be_bytes([plain[layout::CHUNK_LEN], plain[layout::CHUNK_LEN + 1]]);
    if usize::from(len) > CHUNK_LEN_MAX {
        return Err(EnvelopeError::ChunkTooLong(len));
    }
    let end = layout::CHUNK + usize::from(len);
    if plain[end..].iter().any(|&b| b != 0) {
        return Err(EnvelopeError::NonZeroPadding);
    }
    Ok(OpenedPart { index, count, chunk: plain[layout::CHUNK..end].to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::pairwise::{pair, Direction};

    struct Fixture {
        alice: Identity,
        k: PairwiseSecret,
        id: DeliveryId,
    }

    fn fixture() -> Fixture {
        let alice = Identity::from_seed(&[0xA1; 32]);
        let bob = Identity::from_seed(&[0xB0; 32]);
        let k = pair(&alice, bob.public()).unwrap().secret;
        let id = DeliveryId { window_start_s: 1_700_000_000, direction: Direction::LowToHigh, seq: 3 };
        Fixture { alice, k, id }
    }

    fn expected_for(f: &Fixture, sender: &Identity) -> (ExpectedKey, Routing) {
        let secrets = DeliverySecrets::derive(&f.k, f.id);
        let point = secrets.blinded_public(sender.public());
        let bytes = point.compress().to_bytes();
        (ExpectedKey { point, bytes }, Routing::new(secrets.commit(&bytes), f.id.window_start_s, 64))
    }

    #[test]
    fn seal_then_open() {
        let f = fixture();
        let proof = seal(&f.alice, &f.k, f.id, 64, Part::new(1, 2, b"hello").unwrap(), &[4; 32]);
        let (expected, routing) = expected_for(&f, &f.alice);
        let v = proof.view();
        assert_eq!(
            (v.bucket(), v.window_start(), v.commit(), v.fingerprint()),
            (routing.bucket, routing.window_start_s, &routing.commit, &routing.fingerprint)
        );
        let part = open(&f.k, f.id, &expected, &routing, v.ciphertext()).unwrap();
        assert_eq!(part, OpenedPart { index: 1, count: 2, chunk: b"hello".to_vec() });
    }

    #[test]
    fn rejections_are_typed() {
        let f = fixture();
        let proof = seal(&f.alice, &f.k, f.id, 64, Part::new(0, 1, b"hi").unwrap(), &[4; 32]);
        let (expected, routing) = expected_for(&f, &f.alice);
        let mut ct = *proof.view().ciphertext();
        ct[200] ^= 0x01;
        assert_eq!(open(&f.k, f.id, &expected, &routing, &ct), Err(EnvelopeError::Tampered));
        let moved = Routing { bucket: routing.bucket ^ 1, ..routing };
        assert_eq!(open(&f.k, f.id, &expected, &moved, proof.view().ciphertext()), Err(EnvelopeError::Tampered));

        // Mallory knows K (say it leaked) but not Alice's key: her envelope names her own blinded key.
        let mallory = Identity::from_seed(&[0x66; 32]);
        let forged = seal(&mallory, &f.k, f.id, 64, Part::new(0, 1, b"hi").unwrap(), &[4; 32]);
        let (_, forged_routing) = expected_for(&f, &mallory);
        assert_eq!(
            open(&f.k, f.id, &expected, &forged_routing, forged.view().ciphertext()),
            Err(EnvelopeError::WrongSenderKey)
        );

        assert_eq!(Part::new(1, 1, b"").unwrap_err(), PartError::BadNumbering { index: 1, count: 1 });
        assert_eq!(Part::new(0, 9, b"").unwrap_err(), PartError::BadNumbering { index: 0, count: 9 });
        assert_eq!(Part::new(0, 1, &[0; 395]).unwrap_err(), PartError::ChunkTooLong(395));
    }

    #[test]
    fn body_structure_checks() {
        let mut plain = [0u8; layout::END];
        plain[layout::VERSION] = 1;
        plain[layout::PART_COUNT] = 1;
        plain[layout::CHUNK_LEN + 1] = 2;
        plain[layout::CHUNK] = b'o';
        plain[layout::CHUNK + 1] = b'k';
        assert_eq!(parse_body(&plain).unwrap().chunk, b"ok");
        let mut p = plain;
        p[layout::VERSION] = 2;
        assert_eq!(parse_body(&p), Err(EnvelopeError::BadVersion(2)));
        let mut p = plain;
        p[layout::RESERVED] = 1;
        assert_eq!(parse_body(&p), Err(EnvelopeError::NonZeroReserved(1)));
        let mut p = plain;
        p[layout::PART_INDEX] = 1;
        assert_eq!(parse_body(&p), Err(EnvelopeError::BadPartNumbering { index: 1, count: 1 }));
        let mut p = plain;
        p[layout::CHUNK_LEN] = 2;
        assert_eq!(parse_body(&p), Err(EnvelopeError::ChunkTooLong(514)));
        let mut p = plain;
        p[layout::END - 1] = 1;
        assert_eq!(parse_body(&p), Err(EnvelopeError::NonZeroPadding));
    }
}
