//! The Bloom filter recipients register: `m` bits, `k` SHA-256 positions per item (docs/FOUNDATIONS.md §2).
//!
//! Serialisation matches the reference byte for byte: `m / 8` bytes, bit `j` in byte `j / 8` under mask
//! `1 << (j % 8)` (least significant bit first). The relay never builds filters; it reads them from SUBSCRIBE
//! and, for fast matching, transposes them into `crate::index` (the per-filter `contains` here is the oracle).

use super::derive::{bloom_positions, fingerprint_positions, BloomPositions, Fingerprint};
use super::params::{BLOOM_K_DEFAULT, BLOOM_K_MAX, BLOOM_M_BITS_DEFAULT, BLOOM_M_BITS_MAX, FILTER_FINGERPRINTS_MAX};

/// Bloom parameters: `m_bits` (a multiple of 8, `8..=BLOOM_M_BITS_MAX`) and `k` (`1..=BLOOM_K_MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BloomParams {
    /// Filter size in bits.
    pub m_bits: u32,
    /// Number of hash positions per item.
    pub k: u8,
}

impl Default for BloomParams {
    fn default() -> Self {
        Self { m_bits: BLOOM_M_BITS_DEFAULT, k: BLOOM_K_DEFAULT }
    }
}

/// Why a set of Bloom parameters or a serialised filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BloomError {
    /// `m_bits` is zero, not a multiple of 8, or above `BLOOM_M_BITS_MAX`.
    #[error("Bloom m = {0} bits is invalid (must be a multiple of 8 in 8..={BLOOM_M_BITS_MAX})")]
    InvalidM(u32),
    /// `k` is zero or above `BLOOM_K_MAX`.
    #[error("Bloom k = {0} is invalid (must be 1..={BLOOM_K_MAX})")]
    InvalidK(u8),
    /// Serialised filter has the wrong number of bytes.
    #[error("Bloom filter is {got} bytes, expected {expected}")]
    WrongLength {
        /// Bytes received.
        got: usize,
        /// `m_bits / 8`.
        expected: usize,
    },
}

impl BloomParams {
    /// Validated parameters.
    pub fn new(m_bits: u32, k: u8) -> Result<Self, BloomError> {
        if m_bits == 0 || !m_bits.is_multiple_of(8) || m_bits > BLOOM_M_BITS_MAX {
            return Err(BloomError::InvalidM(m_bits));
        }
        if k == 0 || k as usize > BLOOM_K_MAX {
            return Err(BloomError::InvalidK(k));
        }
        Ok(Self { m_bits, k })
    }

    /// Serialised size in bytes (`m / 8`).
    pub fn byte_len(&self) -> usize {
        (self.m_bits / 8) as usize
    }

    /// Most bits a filter of at most `fingerprints` items can have set: each item sets at most `k` bits, and
    /// no filter has more than `m`.
    pub fn bits_set_max(&self, fingerprints: u32) -> u32 {
        (self.k as u32).saturating_mul(fingerprints).min(self.m_bits)
    }

    /// Most bits a legitimate SUBSCRIBE filter has set: [`bits_set_max`](Self::bits_set_max) of
    /// `FILTER_FINGERPRINTS_MAX` (180 of 1024 at the defaults). A filter with more matches far more proofs
    /// than any client needs (an all-ones one matches all of them) and is refused.
    pub fn filter_bits_max(&self) -> u32 {
        self.bits_set_max(u32::from(FILTER_FINGERPRINTS_MAX))
    }

    /// Expected false-positive rate after inserting `n` items: `(1 - e^{-k n / m})^k`.
    pub fn false_positive_rate(&self, n_items: u64) -> f64 {
        let k = self.k as f64;
        (1.0 - (-k * n_items as f64 / self.m_bits as f64).exp()).powf(k)
    }
}

/// A Bloom filter in its wire form (LSB-first bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct BloomFilter {
    params: BloomParams,
    bytes: Box<[u8]>,
}

impl std::fmt::Debug for BloomFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BloomFilter(m={}, k={}, ones={})", self.params.m_bits, self.params.k, self.count_ones())
    }
}

impl BloomFilter {
    /// An empty filter.
    pub fn new(params: BloomParams) -> Self {
        Self { params, bytes: vec![0u8; params.byte_len()].into_boxed_slice() }
    }

    /// A filter from its serialised bytes; the length must be exactly `m / 8`.
    pub fn from_bytes(params: BloomParams, bytes: &[u8]) -> Result<Self, BloomError> {
        if bytes.len() != params.byte_len() {
            return Err(BloomError::WrongLength { got: bytes.len(), expected: params.byte_len() });
        }
        Ok(Self { params, bytes: bytes.into() })
    }

    /// The parameters this filter was built with.
    pub fn params(&self) -> BloomParams {
        self.params
    }

    /// Serialised bytes (LSB-first).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether bit `j` is set; `j < m_bits`.
    #[inline]
    pub fn bit(&self, j: u32) -> bool {
        self.bytes[(j / 8) as usize] & (1 << (j % 8)) != 0
    }

    /// Sets every position in `positions` (each `< m_bits`).
    pub fn insert_positions(&mut self, positions: &BloomPositions) {
        for &j in positions.as_slice() {
            self.bytes[(j / 8) as usize] |= 1 << (j % 8);
        }
    }

    /// Whether every position in `positions` is set.
    #[inline]
    pub fn contains_positions(&self, positions: &BloomPositions) -> bool {
        positions.as_slice().iter().all(|&j| self.bit(j))
    }

    /// Inserts an arbitrary item (the reference's `BloomFilter.add`).
    pub fn insert(&mut self, item: &[u8]) {
        let positions = bloom_positions(item, self.params.m_bits, self.params.k);
        self.insert_positions(&positions);
    }

    /// Whether an arbitrary item may be in the set.
    pub fn contains(&self, item: &[u8]) -> bool {
        self.contains_positions(&bloom_positions(item, self.params.m_bits, self.params.k))
    }

    /// Inserts a fingerprint (the common case).
    pub fn insert_fingerprint(&mut self, fp: &Fingerprint) {
        let positions = fingerprint_positions(fp, self.params.m_bits, self.params.k);
        self.insert_positions(&positions);
    }

    /// Whether a fingerprint may be in the set.
    pub fn contains_fingerprint(&self, fp: &Fingerprint) -> bool {
        self.contains_positions(&fingerprint_positions(fp, self.params.m_bits, self.params.k))
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> u32 {
        self.bytes.iter().map(|b| b.count_ones()).sum()
    }

    /// Whether more bits are set than a legitimate SUBSCRIBE filter can have
    /// ([`BloomParams::filter_bits_max`]); such a filter is refused.
    pub fn is_saturated(&self) -> bool {
        self.count_ones() > self.params.filter_bits_max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsb_first_serialisation() {
        let mut f = BloomFilter::new(BloomParams::default());
        f.insert_positions(&BloomPositions::from_slice(&[0, 9, 1023]));
        assert_eq!(f.as_bytes()[0], 0b0000_0001);
        assert_eq!(f.as_bytes()[1], 0b0000_0010);
        assert_eq!(f.as_bytes()[127], 0b1000_0000);
        assert_eq!(f.count_ones(), 3);
    }

    #[test]
    fn inserted_items_are_contained() {
        let mut f = BloomFilter::new(BloomParams::default());
        for i in 0u64..60 {
            f.insert_fingerprint(&i.to_be_bytes());
        }
        assert!((0u64..60).all(|i| f.contains_fingerprint(&i.to_be_bytes())));
        let false_hits = (1000u64..11_000).filter(|i| f.contains_fingerprint(&i.to_be_bytes())).count();
        // Expected ~0.42% of 10,000 = 42; a generous band catches a broken hash without flaking.
        assert!((5..150).contains(&false_hits), "false hits {false_hits}");
    }

    #[test]
    fn a_filter_of_the_most_fingerprints_is_not_saturated_and_one_bit_more_is() {
        let params = BloomParams::default();
        assert_eq!(params.filter_bits_max(), 180, "k · 60 of m = 1024");
        assert_eq!(BloomParams::new(1024, 16).unwrap().filter_bits_max(), 960);
        assert_eq!(BloomParams::new(64, 3).unwrap().filter_bits_max(), 64, "capped by m: never saturated");
        let mut f = BloomFilter::new(params);
        for i in 0u64..u64::from(FILTER_FINGERPRINTS_MAX) {
            f.insert_fingerprint(&i.to_be_bytes());
        }
        assert!(!f.is_saturated(), "{f:?}");
        let mut bits = [0u8; 128];
        for j in 0..181 {
            bits[j / 8] |= 1 << (j % 8);
        }
        assert!(BloomFilter::from_bytes(params, &bits).unwrap().is_saturated());
        bits[22] = 0b0000_1111; // 176 + 4 = 180 bits
        assert!(!BloomFilter::from_bytes(params, &bits).unwrap().is_saturated());
        assert!(BloomFilter::from_bytes(params, &[0xFF; 128]).unwrap().is_saturated());
    }

    #[test]
    fn parameter_validation() {
        assert_eq!(BloomParams::new(0, 3), Err(BloomError::InvalidM(0)));
        assert_eq!(BloomParams::new(1001, 3), Err(BloomError::InvalidM(1001)));
        assert_eq!(BloomParams::new(1024, 0), Err(BloomError::InvalidK(0)));
        assert_eq!(BloomParams::new(1024, 17), Err(BloomError::InvalidK(17)));
        assert!(BloomFilter::from_bytes(BloomParams::default(), &[0u8; 127]).is_err());
        let fpr = BloomParams::default().false_positive_rate(60);
        assert!((fpr - 0.0042).abs() < 0.0003, "{fpr}");
    }
}
