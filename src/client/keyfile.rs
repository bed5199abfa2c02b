//! The identity key file's contents: the seed in clear, or sealed under a passphrase (pure; I/O is in
//! `store`).
//!
//! ```text
//! passphrase, salt (16 random B) ──Argon2id v1.3 (m = 64 MiB, t = 3, p = 1)──▶ 32-byte key
//! key, nonce (12 random B), AAD = "tessera/v1/keyfile" ‖ Y ‖ u32_be(m) ‖ u32_be(t) ‖ u32_be(p) ‖ salt
//!    ──AES-256-GCM──▶ sealed_seed (32 + 16 B)
//! ```
//! The AAD binds the public key and the KDF parameters, so editing the file to weaken the parameters or to
//! pair the sealed seed with another public key makes unlocking fail. Parameters follow RFC 9106 §4's second
//! recommendation (64 MiB, 3 passes) with one lane: the `argon2` crate computes lanes sequentially, so
//! more lanes would add time without adding cost for an attacker with parallel hardware. Unlocking takes
//! ~0.1–0.2 s in a release build. Parameters read from a file are bounded (`KDF_MEMORY_KIB_MAX`, …)
//! so a crafted key file cannot make the client allocate without bound.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand_core::{CryptoRng, RngCore};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::identity::{Identity, KeyError, PublicKey, SEED_LEN};
use super::kdf::LABEL_KEYFILE;

/// `format` field of every key file.
pub const KEYFILE_FORMAT: &str = "tessera-identity";
/// `version` field.
pub const KEYFILE_VERSION: u32 = 1;
/// Salt length.
pub const KDF_SALT_LEN: usize = 16;
/// Largest Argon2 memory a key file may ask for: 1 GiB.
pub const KDF_MEMORY_KIB_MAX: u32 = 1 << 20;
/// Most Argon2 passes a key file may ask for (each pass over 1 GiB takes about a second).
pub const KDF_PASSES_MAX: u32 = 16;
/// Most Argon2 lanes a key file may ask for.
pub const KDF_LANES_MAX: u32 = 8;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub passes: u32,
    /// Lanes.
    pub lanes: u32,
}

impl KdfParams {
    /// RFC 9106 §4 second recommended option (64 MiB, t = 3), one lane.
    pub const RECOMMENDED: Self = Self { memory_kib: 64 * 1024, passes: 3, lanes: 1 };

    /// The smallest parameters the `argon2` crate accepts (64 KiB, one pass): guessing a passphrase
    /// costs microseconds. Tests only; hence the name.
    pub const DANGER_WEAK_FOR_TESTS: Self = Self { memory_kib: 64, passes: 1, lanes: 1 };

    fn check(&self) -> Result<Params, KeyFileError> {
        let in_range = self.memory_kib <= KDF_MEMORY_KIB_MAX
            && (1..=KDF_PASSES_MAX).contains(&self.passes)
            && (1..=KDF_LANES_MAX).contains(&self.lanes);
        if !in_range {
            return Err(KeyFileError::KdfParamsOutOfRange(*self));
        }
        Params::new(self.memory_kib, self.passes, self.lanes, Some(32))
            .map_err(|_| KeyFileError::KdfParamsOutOfRange(*self))
    }
}

/// Why a key file cannot be read or unlocked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Not JSON of the expected shape.
    #[error("key file is not valid: {0}")]
    Malformed(String),
    /// Another `format` or `version`.
    #[error("key file format {format:?} version {version} is not supported")]
    UnsupportedFormat {
        /// `format` read.
        format: String,
        /// `version` read.
        version: u32,
    },
    /// A field is not base64url of the right length.
    #[error("key file field {0} is malformed")]
    BadField(&'static str),
    /// The stored public key is invalid.
    #[error("key file public key is invalid: {0}")]
    BadPublicKey(KeyError),
    /// The seed does not produce the stored public key: the file is damaged.
    #[error("key file is damaged: its secret does not match its public key")]
    PublicKeyMismatch,
    /// The identity is encrypted and no passphrase was given.
    #[error("the identity is protected by a passphrase; provide it (--passphrase-env VAR)")]
    PassphraseRequired,
    /// An empty passphrase was given for encryption.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// The passphrase does not open the sealed seed (or the file was altered).
    #[error("wrong passphrase (or the key file was altered)")]
    WrongPassphrase,
    /// KDF parameters outside the accepted bounds.
    #[error("key derivation parameters {0:?} are out of range")]
    KdfParamsOutOfRange(KdfParams),
}

/// How the seed is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum SecretForm {
    /// The seed in clear (base64url); the file's 0600 mode is its only protection.
    #[serde(rename = "plain")]
    Plain {
        /// base64url seed.
        seed: String,
    },
    /// The seed sealed under a passphrase.
    #[serde(rename = "argon2id-aes256gcm")]
    Sealed {
        /// Argon2id memory, KiB.
        m_kib: u32,
        /// Argon2id passes.
        t_cost: u32,
        /// Argon2id lanes.
        p_lanes: u32,
        /// base64url salt (16 B).
        salt: String,
        /// base64url AES-GCM nonce (12 B).
        nonce: String,
        /// base64url sealed seed with tag (48 B).
        sealed_seed: String,
    },
}

/// The key file: public key plus the seed in one of its forms. Its strings are wiped on drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Always `tessera-identity`.
    pub format: String,
    /// Always 1.
    pub version: u32,
    /// base64url public key (readable without the passphrase: `id show`, `invite`).
    pub public_key: String,
    /// The secret.
    pub secret: SecretForm,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64<const N: usize>(text: &str, field: &'static str) -> Result<Zeroizing<[u8; N]>, KeyFileError> {
    // Longest field is 48 bytes = 64 characters; refuse longer text before decoding it.
    if text.len() > 96 {
        return Err(KeyFileError::BadField(field));
    }
    let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(text).map_err(|_| KeyFileError::BadField(field))?);
    let array: [u8; N] = bytes.as_slice().try_into().map_err(|_| KeyFileError::BadField(field))?;
    Ok(Zeroizing::new(array))
}

fn keyfile_aad(public: &PublicKey, params: &KdfParams, salt: &[u8; KDF_SALT_LEN]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(LABEL_KEYFILE.len() + 32 + 12 + KDF_SALT_LEN);
    aad.extend_from_slice(LABEL_KEYFILE);
    aad.extend_from_slice(public.as_bytes());
    aad.extend_from_slice(&params.memory_kib.to_be_bytes());
    aad.extend_from_slice(&params.passes.to_be_bytes());
    aad.extend_from_slice(&params.lanes.to_be_bytes());
    aad.extend_from_slice(salt);
    aad
}

fn derive_key(passphrase: &[u8], salt: &[u8; KDF_SALT_LEN], params: &KdfParams) -> Result<LessSafeKey, KeyFileError> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.check()?);
    let mut key = Zeroizing::new([0u8; 32]);
    argon.hash_password_into(passphrase, salt, key.as_mut()).map_err(|_| KeyFileError::KdfParamsOutOfRange(*params))?;
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.as_ref()).expect("AES-256 key is 32 bytes")))
}

impl KeyFile {
    /// A key file holding the seed in clear.
    pub fn plain(identity: &Identity) -> Self {
        Self {
            format: KEYFILE_FORMAT.into(),
            version: KEYFILE_VERSION,
            public_key: identity.public().to_base64(),
            secret: SecretForm::Plain { seed: b64(identity.seed()) },
        }
    }

    /// A key file holding the seed sealed under `passphrase` (salt and nonce from `rng`).
    pub fn encrypted<R: RngCore + CryptoRng>(
        identity: &Identity,
        passphrase: &[u8],
        params: KdfParams,
        rng: &mut R,
    ) -> Result<Self, KeyFileError> {
        if passphrase.is_empty() {
            return Err(KeyFileError::EmptyPassphrase);
        }
        let mut salt = [0u8; KDF_SALT_LEN];
        rng.fill_bytes(&mut salt);
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let key = derive_key(passphrase, &salt, &params)?;
        let mut sealed = Zeroizing::new(identity.seed().to_vec());
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(keyfile_aad(identity.public(), &params, &salt)),
            &mut *sealed,
        )
        .expect("AES-GCM seals 32 bytes");
        Ok(Self {
            format: KEYFILE_FORMAT.into(),
            version: KEYFILE_VERSION,
            public_key: identity.public().to_base64(),
            secret: SecretForm::Sealed {
                m_kib: params.memory_kib,
                t_cost: params.passes,
                p_lanes: params.lanes,
                salt: b64(&salt),
                nonce: b64(&nonce),
                sealed_seed: b64(&sealed),
            },
        })
    }

    /// Parses the JSON text of a key file and checks format, version and public key.
    pub fn from_json(text: &str) -> Result<Self, KeyFileError> {
        let file: Self = serde_json::from_str(text).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
        if file.format != KEYFILE_FORMAT || file.version != KEYFILE_VERSION {
            return Err(KeyFileError::UnsupportedFormat { format: file.format.clone(), version: file.version });
        }
        file.public()?;
        Ok(file)
    }

    /// The JSON text (wiped when dropped: it may hold the seed).
    pub fn to_json(&self) -> Zeroizing<String> {
        Zeroizing::new(serde_json::to_string_pretty(self).expect("a KeyFile always serialises"))
    }

    /// The public key (no passphrase needed).
    pub fn public(&self) -> Result<PublicKey, KeyFileError> {
        PublicKey::from_base64(&self.public_key).map_err(KeyFileError::BadPublicKey)
    }

    /// Whether a passphrase is needed to unlock.
    pub fn is_encrypted(&self) -> bool {
        matches!(self.secret, SecretForm::Sealed { .. })
    }

    /// The identity; `passphrase` is needed (and only used) when the seed is sealed.
    pub fn unlock(&self, passphrase: Option<&[u8]>) -> Result<Identity, KeyFileError> {
        let public = self.public()?;
        let seed: Zeroizing<[u8; SEED_LEN]> = match &self.secret {
            SecretForm::Plain { seed } => unb64::<SEED_LEN>(seed, "seed")?,
            SecretForm::Sealed { m_kib, t_cost, p_lanes, salt, nonce, sealed_seed } => {
                let passphrase = passphrase.ok_or(KeyFileError::PassphraseRequired)?;
                let params = KdfParams { memory_kib: *m_kib, passes: *t_cost, lanes: *p_lanes };
                let salt = unb64::<KDF_SALT_LEN>(salt, "salt")?;
                let nonce = unb64::<12>(nonce, "nonce")?;
                let mut sealed = unb64::<{ SEED_LEN + 16 }>(sealed_seed, "sealed_seed")?;
                let key = derive_key(passphrase, &salt, &params)?;
                let plain = key
                    .open_in_place(
                        Nonce::assume_unique_for_key(*nonce),
                        Aad::from(keyfile_aad(&public, &params, &salt)),
                        sealed.as_mut(),
                    )
                    .map_err(|_| KeyFileError::WrongPassphrase)?;
                Zeroizing::new(plain.try_into().expect("ring returns the 32 bytes before the tag"))
            }
        };
        let identity = Identity::from_seed(&seed);
        if identity.public() != &public {
            return Err(KeyFileError::PublicKeyMismatch);
        }
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn plain_round_trip_and_damage() {
        let id = Identity::from_seed(&[5; 32]);
        let file = KeyFile::plain(&id);
        let back = KeyFile::from_json(&file.to_json()).unwrap();
        assert!(!back.is_encrypted());
        assert_eq!(back.unlock(None).unwrap().public(), id.public());
        let mut other = back.clone();
        other.public_key = Identity::from_seed(&[6; 32]).public().to_base64();
        assert_eq!(other.unlock(None).unwrap_err(), KeyFileError::PublicKeyMismatch);
        let mut bad = back.clone();
        bad.secret = SecretForm::Plain { seed: "AAAA".into() };
        assert_eq!(bad.unlock(None).unwrap_err(), KeyFileError::BadField("seed"));
        assert!(matches!(KeyFile::from_json("{}"), Err(KeyFileError::Malformed(_))));
        let mut v2 = back.clone();
        v2.version = 2;
        assert!(matches!(KeyFile::from_json(&v2.to_json()), Err(KeyFileError::UnsupportedFormat { version: 2, .. })));
    }

    #[test]
    fn sealed_round_trip_wrong_passphrase_and_downgrade() {
        let id = Identity::from_seed(&[5; 32]);
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let file = KeyFile::encrypted(&id, b"correct horse", KdfParams::DANGER_WEAK_FOR_TESTS, &mut rng).unwrap();
        let text = file.to_json();
        assert!(!text.contains(&b64(id.seed())));
        let back = KeyFile::from_json(&text).unwrap();
        assert!(back.is_encrypted());
        assert_eq!(back.unlock(Some(b"correct horse")).unwrap().public(), id.public());
        assert_eq!(back.unlock(Some(b"wrong horse")).unwrap_err(), KeyFileError::WrongPassphrase);
        assert_eq!(back.unlock(None).unwrap_err(), KeyFileError::PassphraseRequired);
        // Editing the parameters (even to equally valid ones) breaks the AAD.
        let mut edited = back.clone();
        if let SecretForm::Sealed { t_cost, .. } = &mut edited.secret {
            *t_cost = 2;
        }
        assert_eq!(edited.unlock(Some(b"correct horse")).unwrap_err(), KeyFileError::WrongPassphrase);
        let mut huge = back.clone();
        if let SecretForm::Sealed { m_kib, .. } = &mut huge.secret {
            *m_kib = u32::MAX;
        }
        assert!(matches!(huge.unlock(Some(b"x")), Err(KeyFileError::KdfParamsOutOfRange(_))));
        assert_eq!(
            KeyFile::encrypted(&id, b"", KdfParams::DANGER_WEAK_FOR_TESTS, &mut rng).unwrap_err(),
            KeyFileError::EmptyPassphrase
        );
    }
}
