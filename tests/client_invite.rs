//! Invite codes: malformed and tampered codes are refused with the error that says what is wrong, version-1
//! codes still decode, and version-2 pins are carried or refused.

use sha2::{Digest, Sha256};
use tessera::client::base32::{self, Base32Error};
use tessera::client::invite::{RelayUrlError, INVITE_CODE_LEN_MAX, INVITE_RELAYS_MAX, RELAY_URL_LEN_MAX};
use tessera::client::{Identity, Invite, InviteError, KeyError, Relay};

fn sample() -> (Invite, String) {
    let relays = vec!["ws://127.0.0.1:8100".into(), Relay::new("wss://r.example", Some([0x5A; 32])).unwrap()];
    let invite = Invite::new(*Identity::from_seed(&[0xA1; 32]).public(), relays).unwrap();
    let code = invite.encode();
    (invite, code)
}

/// A code over an arbitrary payload with a correct checksum: reaches the checks after the checksum.
fn code_for(payload: &[u8]) -> String {
    let sum = Sha256::new().chain_update(b"tessera/v1/invite").chain_update(payload).finalize();
    let mut bytes = payload.to_vec();
    bytes.extend_from_slice(&sum[..4]);
    format!("tessera1{}", base32::encode(&bytes))
}

fn payload(version: u8, key: &[u8; 32], relays: &[&[u8]]) -> Vec<u8> {
    let mut p = vec![version];
    p.extend_from_slice(key);
    p.push(relays.len() as u8);
    for r in relays {
        p.push(r.len() as u8);
        p.extend_from_slice(r);
    }
    p
}

/// A version-2 payload: each relay with its optional pin.
fn payload_v2(key: &[u8; 32], relays: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
    let mut p = vec![2];
    p.extend_from_slice(key);
    p.push(relays.len() as u8);
    for (url, pin) in relays {
        p.push(url.len() as u8);
        p.extend_from_slice(url);
        match pin {
            None => p.push(0),
            Some(pin) => {
                p.push(1);
                p.extend_from_slice(pin);
            }
        }
    }
    p
}

#[test]
fn every_single_character_substitution_is_detected() {
    let (_, code) = sample();
    let alphabet = base32::ALPHABET;
    let mut rejected = 0;
    for pos in 8..code.len() {
        for &c in alphabet.iter() {
            if code.as_bytes()[pos] == c {
                continue;
            }
            let mut bytes = code.clone().into_bytes();
            bytes[pos] = c;
            let altered = String::from_utf8(bytes).unwrap();
            let err = Invite::decode(&altered).unwrap_err();
            assert!(
                matches!(err, InviteError::BadChecksum | InviteError::Encoding(Base32Error::BadPadding)),
                "position {pos}: {err:?}"
            );
            rejected += 1;
        }
    }
    assert_eq!(rejected, (code.len() - 8) * 31);
}

#[test]
fn truncation_and_extension_are_detected() {
    let (_, code) = sample();
    for cut in 9..code.len() {
        assert!(Invite::decode(&code[..cut]).is_err(), "cut at {cut}");
    }
    assert_eq!(Invite::decode("tessera1qq"), Err(InviteError::Truncated));
    assert!(Invite::decode(&format!("{code}q")).is_err());
    // Adjacent characters swapped.
    let mut swapped = code.clone().into_bytes();
    let i = swapped.iter().enumerate().skip(20).find(|(i, b)| **b != code.as_bytes()[i + 1]).unwrap().0;
    swapped.swap(i, i + 1);
    assert_eq!(Invite::decode(&String::from_utf8(swapped).unwrap()), Err(InviteError::BadChecksum));
}

#[test]
fn malformed_codes() {
    let (invite, code) = sample();
    assert_eq!(Invite::decode(""), Err(InviteError::MissingPrefix));
    assert_eq!(Invite::decode("tessera2qqqq"), Err(InviteError::MissingPrefix));
    assert_eq!(Invite::decode(&code[1..]), Err(InviteError::MissingPrefix));
    assert_eq!(
        Invite::decode(&"t".repeat(INVITE_CODE_LEN_MAX + 1)),
        Err(InviteError::TooLong(INVITE_CODE_LEN_MAX + 1))
    );
    let with_b = format!("{}b{}", &code[..20], &code[21..]);
    assert_eq!(
        Invite::decode(&with_b),
        Err(InviteError::Encoding(Base32Error::BadCharacter { position: 20, character: 'b' }))
    );
    let with_space = format!("{} {}", &code[..30], &code[30..]);
    assert_eq!(
        Invite::decode(&with_space),
        Err(InviteError::Encoding(Base32Error::BadCharacter { position: 30, character: ' ' }))
    );
    let mixed = format!("{}{}", &code[..30], code[30..].to_ascii_uppercase());
    assert_eq!(Invite::decode(&mixed), Err(InviteError::Encoding(Base32Error::MixedCase)));
    let upper_prefix_only = format!("TESSERA1{}", &code[8..]);
    assert_eq!(Invite::decode(&upper_prefix_only), Err(InviteError::Encoding(Base32Error::MixedCase)));
    assert_eq!(Invite::decode(&code).unwrap(), invite);
}

#[test]
fn well_checksummed_but_invalid_payloads() {
    let key = *Identity::from_seed(&[0xA1; 32]).public().as_bytes();
    let url: &[u8] = b"ws://relay";
    assert_eq!(Invite::decode(&code_for(&payload(3, &key, &[url]))), Err(InviteError::UnsupportedVersion(3)));
    assert_eq!(Invite::decode(&code_for(&payload(0, &key, &[url]))), Err(InviteError::UnsupportedVersion(0)));
    assert_eq!(
        Invite::decode(&code_for(&payload(1, &[0; 32], &[url]))),
        Err(InviteError::BadPublicKey(KeyError::IdentityPoint))
    );
    assert_eq!(
        Invite::decode(&code_for(&payload(1, &[0xff; 32], &[url]))),
        Err(InviteError::BadPublicKey(KeyError::NotCanonical))
    );
    assert_eq!(Invite::decode(&code_for(&payload(1, &key, &[url; 5]))), Err(InviteError::TooManyRelays(5)));
    assert_eq!(
        Invite::decode(&code_for(&payload(1, &key, &[b"http://x"]))),
        Err(InviteError::BadRelayUrl { index: 0, error: RelayUrlError::BadScheme })
    );
    assert_eq!(
        Invite::decode(&code_for(&payload(1, &key, &[url, b"ws://\xff"]))),
        Err(InviteError::BadRelayUrl { index: 1, error: RelayUrlError::BadCharacter })
    );
    let mut short = payload(1, &key, &[url]);
    short.truncate(short.len() - 3);
    assert_eq!(Invite::decode(&code_for(&short)), Err(InviteError::Truncated));
    let mut long = payload(1, &key, &[url]);
    long.extend_from_slice(b"xx");
    assert_eq!(Invite::decode(&code_for(&long)), Err(InviteError::TrailingBytes(2)));
    let ok = Invite::decode(&code_for(&payload(1, &key, &[url]))).unwrap();
    assert_eq!(ok.relays, vec![Relay::from("ws://relay")]);
}

#[test]
fn version_2_pins() {
    let key = *Identity::from_seed(&[0xA1; 32]).public().as_bytes();
    let (wss, ws): (&[u8], &[u8]) = (b"wss://relay", b"ws://relay");
    let pin = [0xEE; 32];
    let ok = Invite::decode(&code_for(&payload_v2(&key, &[(wss, Some(&pin)), (ws, None)]))).unwrap();
    assert_eq!(ok.relays, vec![Relay::new("wss://relay", Some(pin)).unwrap(), Relay::from("ws://relay")]);
    // The canonical payload is exactly the v2 payload, and the code re-encodes to itself.
    assert_eq!(ok.payload(), payload_v2(&key, &[(wss, Some(&pin)), (ws, None)]));
    assert_eq!(ok.encode(), code_for(&ok.payload()));
    // A pin on a ws:// URL.
    assert_eq!(
        Invite::decode(&code_for(&payload_v2(&key, &[(wss, None), (ws, Some(&pin))]))),
        Err(InviteError::BadRelayUrl { index: 1, error: RelayUrlError::PinOnPlaintext })
    );
    // A flag other than 0 or 1.
    let mut bad_flag = payload_v2(&key, &[(wss, None)]);
    *bad_flag.last_mut().unwrap() = 2;
    assert_eq!(Invite::decode(&code_for(&bad_flag)), Err(InviteError::BadPinFlag { index: 0, flag: 2 }));
    // A pin cut short, a missing flag.
    let mut short_pin = payload_v2(&key, &[(wss, Some(&pin))]);
    short_pin.truncate(short_pin.len() - 1);
    assert_eq!(Invite::decode(&code_for(&short_pin)), Err(InviteError::Truncated));
    let mut no_flag = payload_v2(&key, &[(wss, None)]);
    no_flag.pop();
    assert_eq!(Invite::decode(&code_for(&no_flag)), Err(InviteError::Truncated));
    // A v1 payload read as v2 (flags missing) fails cleanly, and the other way round.
    let mut v1_as_v2 = payload(1, &key, &[wss]);
    v1_as_v2[0] = 2;
    assert_eq!(Invite::decode(&code_for(&v1_as_v2)), Err(InviteError::Truncated));
    let mut v2_as_v1 = payload_v2(&key, &[(wss, None)]);
    v2_as_v1[0] = 1;
    assert_eq!(Invite::decode(&code_for(&v2_as_v1)), Err(InviteError::TrailingBytes(1)));
    // Refused when made, too.
    let pk = ok.public;
    assert_eq!(
        Invite::new(pk, vec![Relay { url: "ws://relay".into(), pin: Some(pin) }]),
        Err(InviteError::BadRelayUrl { index: 0, error: RelayUrlError::PinOnPlaintext })
    );
}

/// The largest code (four maximal pinned relays) fits `INVITE_CODE_LEN_MAX` and decodes.
#[test]
fn largest_code_fits() {
    let url = format!("wss://{}", "h".repeat(RELAY_URL_LEN_MAX - 6));
    let relays = vec![Relay::new(url, Some([1; 32])).unwrap(); INVITE_RELAYS_MAX];
    let invite = Invite::new(*Identity::from_seed(&[0xA1; 32]).public(), relays).unwrap();
    let code = invite.encode();
    assert_eq!(code.len(), 8 + 1_559);
    assert!(code.len() <= INVITE_CODE_LEN_MAX);
    assert_eq!(Invite::decode(&code).unwrap(), invite);
}
