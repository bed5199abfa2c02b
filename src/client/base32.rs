//! Lower-case base32 with the bech32 alphabet (no `1`, `b`, `i`, `o`): copy-paste and read-aloud safe.
//!
//! Bytes are read as a bit string, most significant bit first, 5 bits per character; the last character
//! is padded with zero bits, and a decoder refuses non-zero padding so every byte string has exactly one
//! encoding. Upper case is accepted (QR codes), mixed case is not (bech32's rule: it signals a typo).

/// The 32 symbols, value = index.
pub const ALPHABET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/// Why a string is not base32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Base32Error {
    /// A character outside the alphabet, at a character position of the encoded text.
    #[error("character {character:?} at position {position} is not in the code alphabet")]
    BadCharacter {
        /// Position (0-based) in the encoded text.
        position: usize,
        /// The character.
        character: char,
    },
    /// Both upper- and lower-case letters.
    #[error("code mixes upper- and lower-case letters")]
    MixedCase,
    /// The bits after the last whole byte are not zero (or more than 4 of them).
    #[error("code has a malformed last character")]
    BadPadding,
}

/// Encodes `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity((bytes.len() * 8).div_ceil(5));
    let (mut acc, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn value(c: u8) -> Option<u8> {
    ALPHABET.iter().position(|&a| a == c).map(|v| v as u8)
}

/// Decodes `text`; `offset` is added to reported positions (so errors point into the whole code).
pub fn decode(text: &str, offset: usize) -> Result<Vec<u8>, Base32Error> {
    let has_lower = text.bytes().any(|c| c.is_ascii_lowercase());
    let has_upper = text.bytes().any(|c| c.is_ascii_uppercase());
    if has_lower && has_upper {
        return Err(Base32Error::MixedCase);
    }
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (position, character) in text.chars().enumerate() {
        let bad = Base32Error::BadCharacter { position: position + offset, character };
        if !character.is_ascii() {
            return Err(bad);
        }
        let v = value(character.to_ascii_lowercase() as u8).ok_or(bad)?;
        acc = ((acc << 5) | u32::from(v)) & 0xfff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits >= 5 || acc & ((1 << bits) - 1) != 0 {
        return Err(Base32Error::BadPadding);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length() {
        let data: Vec<u8> = (0..=40u8).map(|i| i.wrapping_mul(37)).collect();
        for len in 0..data.len() {
            let text = encode(&data[..len]);
            assert_eq!(text.len(), (len * 8).div_ceil(5));
            assert_eq!(decode(&text, 0).unwrap(), &data[..len]);
            assert_eq!(decode(&text.to_ascii_uppercase(), 0).unwrap(), &data[..len]);
        }
    }

    #[test]
    fn known_values_and_errors() {
        assert_eq!(encode(&[0x00]), "qq");
        assert_eq!(encode(&[0xff]), "lu");
        assert_eq!(encode(&[0xff, 0xff, 0xff, 0xff, 0xff]), "llllllll");
        assert_eq!(decode("lu", 0).unwrap(), vec![0xff]);
        assert_eq!(decode("lc", 0).unwrap(), vec![0xfe]);
        assert_eq!(decode("ll", 0), Err(Base32Error::BadPadding));
        assert_eq!(decode("qqq", 0), Err(Base32Error::BadPadding));
        assert_eq!(decode("qb", 8), Err(Base32Error::BadCharacter { position: 9, character: 'b' }));
        assert_eq!(decode("qé", 0), Err(Base32Error::BadCharacter { position: 1, character: 'é' }));
        assert_eq!(decode("Lu", 0), Err(Base32Error::MixedCase));
    }
}
