//! The fixed-size proof: the only thing a relay routes, stores and forwards.
//!
//! ```text
//! offset  size  field
//!      0     1  version (= 1)
//!      1     1  reserved (= 0)
//!      2     2  bucket          u16 be
//!      4     8  window_start    u64 be, Unix seconds
//!     12    32  commit
//!     44     8  fingerprint
//!     52   512  ciphertext      sealed envelope incl. AES-GCM tag (random bytes for a dummy)
//!    564        total
//! ```
//! A proof is always `PROOF_LEN` bytes so that real and dummy proofs are the same length. Batches are kept as
//! one `Bytes` region (zero-copy from the WebSocket message); `ProofRef` reads fields in place.

use bytes::{Bytes, BytesMut};

use super::derive::{Commit, Fingerprint};
use super::params::{proof_layout as at, CIPHERTEXT_LEN, PROOF_LEN, PROOF_VERSION};

/// Structural problems of a proof's bytes (semantic checks — derivations, windows — are the engine's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// A region that should hold whole proofs has a length that is not a multiple of `PROOF_LEN`.
    #[error("proof region of {0} bytes is not a whole number of {PROOF_LEN}-byte proofs")]
    WrongLength(usize),
    /// The version byte is not `PROOF_VERSION`.
    #[error("proof version {0} is not supported")]
    BadVersion(u8),
    /// The reserved byte is not zero.
    #[error("proof reserved byte is {0}, must be 0")]
    NonZeroReserved(u8),
}

/// A batch region that failed validation: which proof, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("proof {index} of the batch: {error}")]
pub struct BatchError {
    /// Index of the first invalid proof in the batch.
    pub index: usize,
    /// What is wrong with it.
    pub error: ProofError,
}

fn check_structure(bytes: &[u8; PROOF_LEN]) -> Result<(), ProofError> {
    if bytes[at::VERSION] != PROOF_VERSION {
        return Err(ProofError::BadVersion(bytes[at::VERSION]));
    }
    if bytes[at::RESERVED] != 0 {
        return Err(ProofError::NonZeroReserved(bytes[at::RESERVED]));
    }
    Ok(())
}

/// Fixed-size array at a constant offset of a proof. The ranges are compile-time constants inside
/// `PROOF_LEN`, so the conversion cannot fail (and compiles to a pointer offset).
#[inline(always)]
fn field<const N: usize>(bytes: &[u8; PROOF_LEN], offset: usize) -> &[u8; N] {
    bytes[offset..offset + N].try_into().expect("field inside the fixed proof layout")
}

/// A borrowed, structurally valid proof.
#[derive(Clone, Copy)]
pub struct ProofRef<'a> {
    bytes: &'a [u8; PROOF_LEN],
}

impl<'a> ProofRef<'a> {
    /// Checks version and reserved byte.
    pub fn new(bytes: &'a [u8; PROOF_LEN]) -> Result<Self, ProofError> {
        check_structure(bytes)?;
        Ok(Self { bytes })
    }

    /// Bucket claimed by the sender (verified against the commit by the engine).
    #[inline]
    pub fn bucket(&self) -> u16 {
        u16::from_be_bytes(*field::<2>(self.bytes, at::BUCKET))
    }

    /// Window start in Unix seconds claimed by the sender.
    #[inline]
    pub fn window_start(&self) -> u64 {
        u64::from_be_bytes(*field::<8>(self.bytes, at::WINDOW_START))
    }

    /// The commitment.
    #[inline]
    pub fn commit(&self) -> &'a Commit {
        field::<32>(self.bytes, at::COMMIT)
    }

    /// The fingerprint claimed by the sender.
    #[inline]
    pub fn fingerprint(&self) -> &'a Fingerprint {
        field::<8>(self.bytes, at::FINGERPRINT)
    }

    /// The fixed-length ciphertext.
    #[inline]
    pub fn ciphertext(&self) -> &'a [u8; CIPHERTEXT_LEN] {
        field::<CIPHERTEXT_LEN>(self.bytes, at::CIPHERTEXT)
    }

    /// All `PROOF_LEN` bytes.
    #[inline]
    pub fn as_bytes(&self) -> &'a [u8; PROOF_LEN] {
        self.bytes
    }

    /// An owned copy.
    pub fn to_owned(&self) -> Proof {
        Proof { bytes: *self.bytes }
    }
}

impl std::fmt::Debug for ProofRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proof")
            .field("bucket", &self.bucket())
            .field("window_start", &self.window_start())
            .field("commit", &hex8(self.commit()))
            .field("fingerprint", &hex8(self.fingerprint()))
            .finish_non_exhaustive()
    }
}

/// First 8 bytes in hex, for debug output.
fn hex8(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// An owned proof.
#[derive(Clone, PartialEq, Eq)]
pub struct Proof {
    bytes: [u8; PROOF_LEN],
}

impl Proof {
    /// Assembles a proof from its fields (version 1, reserved 0).
    pub fn new(
        bucket: u16,
        window_start_s: u64,
        commit: &Commit,
        fingerprint: &Fingerprint,
        ciphertext: &[u8; CIPHERTEXT_LEN],
    ) -> Self {
        let mut bytes = [0u8; PROOF_LEN];
        bytes[at::VERSION] = PROOF_VERSION;
        bytes[at::BUCKET..at::BUCKET + 2].copy_from_slice(&bucket.to_be_bytes());
        bytes[at::WINDOW_START..at::WINDOW_START + 8].copy_from_slice(&window_start_s.to_be_bytes());
        bytes[at::COMMIT..at::COMMIT + 32].copy_from_slice(commit);
        bytes[at::FINGERPRINT..at::FINGERPRINT + 8].copy_from_slice(fingerprint);
        bytes[at::CIPHERTEXT..].copy_from_slice(ciphertext);
        Self { bytes }
    }

    /// Parses exactly `PROOF_LEN` bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ProofError> {
        let bytes: &[u8; PROOF_LEN] = bytes.try_into().map_err(|_| ProofError::WrongLength(bytes.len()))?;
        check_structure(bytes)?;
        Ok(Self { bytes: *bytes })
    }

    /// A view of this proof.
    #[inline]
    pub fn view(&self) -> ProofRef<'_> {
        ProofRef { bytes: &self.bytes }
    }

    /// All `PROOF_LEN` bytes.
    pub fn as_bytes(&self) -> &[u8; PROOF_LEN] {
        &self.bytes
    }
}

impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.view().fmt(f)
    }
}

/// A batch of structurally valid proofs held in one contiguous `Bytes` region (zero-copy).
#[derive(Clone, PartialEq, Eq)]
pub struct ProofBatch {
    bytes: Bytes,
}

impl ProofBatch {
    /// Validates a region of whole proofs (version and reserved byte of each); on failure, says which proof.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, BatchError> {
        if !bytes.len().is_multiple_of(PROOF_LEN) {
            return Err(BatchError { index: bytes.len() / PROOF_LEN, error: ProofError::WrongLength(bytes.len()) });
        }
        for (index, chunk) in bytes.chunks_exact(PROOF_LEN).enumerate() {
            check_structure(chunk.try_into().expect("chunks_exact yields PROOF_LEN slices"))
                .map_err(|error| BatchError { index, error })?;
        }
        Ok(Self { bytes })
    }

    /// A batch copied from owned or borrowed proofs.
    pub fn from_proofs<'p>(proofs: impl IntoIterator<Item = ProofRef<'p>>) -> Self {
        let mut buf = BytesMut::new();
        for proof in proofs {
            buf.extend_from_slice(proof.as_bytes());
        }
        Self { bytes: buf.freeze() }
    }

    /// An empty batch.
    pub fn empty() -> Self {
        Self { bytes: Bytes::new() }
    }

    /// Number of proofs.
    #[inline]
    pub fn len(&self) -> usize {
        self.bytes.len() / PROOF_LEN
    }

    /// Whether the batch holds no proof.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Proof `i` (`i < len()`), read in place.
    #[inline]
    pub fn get(&self, i: usize) -> ProofRef<'_> {
        let start = i * PROOF_LEN;
        ProofRef { bytes: self.bytes[start..start + PROOF_LEN].try_into().expect("i < len() gives a whole proof") }
    }

    /// Proof `i` as its own `Bytes` (shares the batch's buffer; no copy).
    pub fn proof_bytes(&self, i: usize) -> Bytes {
        self.bytes.slice(i * PROOF_LEN..(i + 1) * PROOF_LEN)
    }

    /// Iterates over the proofs in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = ProofRef<'_>> + '_ {
        self.bytes
            .chunks_exact(PROOF_LEN)
            .map(|c| ProofRef { bytes: c.try_into().expect("chunks_exact yields PROOF_LEN slices") })
    }

    /// The whole region (`len() * PROOF_LEN` bytes).
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }
}

impl std::fmt::Debug for ProofBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Proof {
        Proof::new(7, 1_700_000_000, &[0xAB; 32], &[0xCD; 8], &[0x5A; CIPHERTEXT_LEN])
    }

    #[test]
    fn fields_round_trip() {
        let p = sample();
        let v = p.view();
        assert_eq!(v.bucket(), 7);
        assert_eq!(v.window_start(), 1_700_000_000);
        assert_eq!(v.commit(), &[0xAB; 32]);
        assert_eq!(v.fingerprint(), &[0xCD; 8]);
        assert_eq!(v.ciphertext(), &[0x5A; CIPHERTEXT_LEN]);
        assert_eq!(&p.as_bytes()[..4], &[1, 0, 0, 7]);
        assert_eq!(Proof::from_slice(p.as_bytes()).unwrap(), p);
    }

    #[test]
    fn structural_rejections() {
        let mut b = *sample().as_bytes();
        b[0] = 2;
        assert_eq!(Proof::from_slice(&b), Err(ProofError::BadVersion(2)));
        b[0] = 1;
        b[1] = 9;
        assert_eq!(Proof::from_slice(&b), Err(ProofError::NonZeroReserved(9)));
        assert_eq!(Proof::from_slice(&b[..100]), Err(ProofError::WrongLength(100)));
        assert_eq!(
            ProofBatch::from_bytes(Bytes::from(vec![1u8; 565])).unwrap_err().error,
            ProofError::WrongLength(565)
        );
        let mut two = [*sample().as_bytes(), *sample().as_bytes()].concat();
        two[PROOF_LEN] = 3;
        assert_eq!(
            ProofBatch::from_bytes(Bytes::from(two)),
            Err(BatchError { index: 1, error: ProofError::BadVersion(3) })
        );
    }

    #[test]
    fn batch_is_zero_copy() {
        let (a, b) = (sample(), Proof::new(1, 10, &[1; 32], &[2; 8], &[3; CIPHERTEXT_LEN]));
        let batch = ProofBatch::from_proofs([a.view(), b.view()]);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.get(1).bucket(), 1);
        assert_eq!(batch.proof_bytes(0).as_ptr(), batch.as_bytes().as_ptr());
        assert_eq!(batch.iter().map(|p| p.bucket()).collect::<Vec<_>>(), vec![7, 1]);
    }
}
