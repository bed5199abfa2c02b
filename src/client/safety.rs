//! The safety code: 40 decimal digits two contacts read to each other to confirm that each enrolled the
//! invite the other gave out, keys, relays and certificate pins included.
//!
//! ```text
//! mine, theirs ─▶ canonical v2 payloads (Invite::payload) ─▶ sort (lo ≤ hi, bytewise)
//!   ─▶ SHA-512("tessera/v1/safety-code" ‖ u16 len(lo) ‖ lo ‖ u16 len(hi) ‖ hi)
//!   ─▶ 8 groups: big-endian u64 of digest bytes 8i..8i+8, mod 100,000, as 5 digits
//!   ─▶ "12345 67890 …" (8 groups of 5)
//! ```
//! Sorting makes it order-independent: Alice computes it from (her invite, Bob's) and Bob from (his, Alice's),
//! and they read the same digits exactly when each holds the invite the other gave out. The lengths make the
//! pair encoding injective (no two pairs of payloads hash the same bytes).
//!
//! Why 40 digits: a man in the middle who intercepts both invites substitutes his own (keys he holds, and
//! relays and pins of his choice) and wants Alice's code, over (Alice, his-for-Bob), to equal Bob's, over
//! (his-for-Alice, Bob). He chooses both substitutes, so this is a collision search between two functions of
//! inputs he controls: with N = 10^40 equally likely codes (2^132.9) the birthday bound is about
//! √(π N / 2) ≈ 1.25 × 10^20 ≈ 2^66.8 code evaluations (parallel collision search needs little memory, so time
//! is the cost that counts); a relay URL's bytes are free to vary, so each evaluation is one SHA-512, and no
//! slower hash is needed to stay above 2^64. Matching one given code (a second preimage) costs 2^132.9. Each
//! group reduces 64 uniform bits mod 10^5, a bias below 10^5 / 2^64 ≈ 2^-47.5 per group: the 40 digits are
//! uniform to within 8 × 2^-47.5 in statistical distance. The first safety code, 16 base32 characters of
//! SHA-256 over the two keys (80 bits), gave the same attacker a 2^40 search and did not cover relays.

use sha2::{Digest, Sha512};

use super::invite::Invite;
use super::kdf::LABEL_SAFETY;

/// Groups of digits in a safety code.
pub const SAFETY_GROUPS: usize = 8;
/// Digits per group: five are easy to read aloud and to hold in mind while comparing.
pub const SAFETY_GROUP_DIGITS: usize = 5;
/// 10^SAFETY_GROUP_DIGITS.
const GROUP_MODULUS: u64 = 100_000;

/// The safety code of two invites: the same whichever is `mine` (8 groups of 5 digits, separated by spaces).
pub fn safety_code(mine: &Invite, theirs: &Invite) -> String {
    let (a, b) = (mine.payload(), theirs.payload());
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut hasher = Sha512::new();
    hasher.update(LABEL_SAFETY);
    for payload in [&lo, &hi] {
        // A payload is at most 970 bytes (INVITE_CODE_LEN_MAX's bound), well below 2^16.
        hasher.update((payload.len() as u16).to_be_bytes());
        hasher.update(payload);
    }
    let digest = hasher.finalize();
    digest
        .chunks_exact(8)
        .take(SAFETY_GROUPS)
        .map(|chunk| {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            format!("{:0width$}", u64::from_be_bytes(word) % GROUP_MODULUS, width = SAFETY_GROUP_DIGITS)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::identity::Identity;
    use crate::client::invite::Relay;

    fn invite(seed: u8, relays: Vec<Relay>) -> Invite {
        Invite::new(*Identity::from_seed(&[seed; 32]).public(), relays).unwrap()
    }

    #[test]
    fn symmetric_and_shaped() {
        let a = invite(1, vec!["ws://127.0.0.1:8100".into()]);
        let b = invite(2, vec![Relay::new("wss://r.example", Some([9; 32])).unwrap()]);
        let code = safety_code(&a, &b);
        assert_eq!(code, safety_code(&b, &a));
        assert_eq!(code.len(), SAFETY_GROUPS * (SAFETY_GROUP_DIGITS + 1) - 1);
        let groups: Vec<&str> = code.split(' ').collect();
        assert_eq!(groups.len(), SAFETY_GROUPS);
        assert!(groups.iter().all(|g| g.len() == SAFETY_GROUP_DIGITS && g.bytes().all(|c| c.is_ascii_digit())));
    }

    #[test]
    fn changes_with_every_input() {
        let a = invite(1, vec!["wss://a.example".into()]);
        let b = invite(2, vec![Relay::new("wss://b.example", Some([9; 32])).unwrap()]);
        let base = safety_code(&a, &b);
        let variants = [
            (invite(3, a.relays.clone()), b.clone()),
            (a.clone(), invite(4, b.relays.clone())),
            (invite(1, vec!["wss://a.example/x".into()]), b.clone()),
            (invite(1, vec![]), b.clone()),
            (invite(1, vec!["wss://a.example".into(), "ws://c".into()]), b.clone()),
            (invite(1, vec![Relay::new("wss://a.example", Some([1; 32])).unwrap()]), b.clone()),
            (a.clone(), invite(2, vec![Relay::new("wss://b.example", Some([8; 32])).unwrap()])),
            (a.clone(), invite(2, vec!["wss://b.example".into()])),
            (a.clone(), invite(2, vec![Relay::new("wss://b.example2", Some([9; 32])).unwrap()])),
        ];
        for (i, (x, y)) in variants.iter().enumerate() {
            assert_ne!(safety_code(x, y), base, "variant {i}");
        }
        // Relay order is part of the invite (preference order), so it counts too.
        let two = invite(1, vec!["wss://a.example".into(), "wss://d.example".into()]);
        let swapped = invite(1, vec!["wss://d.example".into(), "wss://a.example".into()]);
        assert_ne!(safety_code(&two, &b), safety_code(&swapped, &b));
    }
}
