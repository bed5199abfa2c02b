//! Keyed hashing for the shard's hash tables.
//!
//! Subscriber ids and commits are chosen by clients, so an unkeyed table hash would let a client aim
//! collisions at one shard and turn O(1) lookups into O(n) scans. The key comes from
//! `EngineConfig::hash_key` (the driver draws it from its CSPRNG; the engine reads no OS randomness).

use std::hash::BuildHasher;

use siphasher::sip::SipHasher13;

/// A `BuildHasher` producing SipHash-1-3 with a fixed secret key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyedState {
    key: [u64; 2],
}

impl KeyedState {
    /// Hashers keyed with `key`.
    pub fn new(key: [u64; 2]) -> Self {
        Self { key }
    }
}

impl BuildHasher for KeyedState {
    type Hasher = SipHasher13;

    #[inline]
    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.key[0], self.key[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_the_hash() {
        let a = KeyedState::new([1, 2]).hash_one([7u8; 16]);
        let b = KeyedState::new([1, 3]).hash_one([7u8; 16]);
        assert_ne!(a, b);
        assert_eq!(a, KeyedState::new([1, 2]).hash_one([7u8; 16]));
    }
}
