//! The key directory on disk: the only client module that touches files.
//!
//! ```text
//! <home>/            0700   --home DIR, else $TESSERA_HOME, else $HOME/.tessera
//!   identity.json    0600   KeyFile: public key + seed (clear or passphrase-sealed)
//!   contacts.json    0600   enrolled contacts (public data; version 2: relays with certificate pins)
//!   invite.txt       0600   the invite code `tessera invite` last printed (the safety code covers it)
//!   state.json       0600   PersistedState: send counters, dedup record, subscriber ids
//! ```
//! Every write is atomic and durable: a temporary file created 0600 with `O_EXCL`, written, fsynced,
//! renamed over the target, then the directory fsynced, so a crash leaves the old or the new file, never a
//! mix (the send counters in `state.json` depend on it). Reads refuse a directory or file readable by group
//! or others (as ssh does) and files over `FILE_BYTES_MAX`.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::contact::{check_addition, Contact, ContactError};
use super::identity::PublicKey;
use super::invite::{parse_pin, pin_hex, Invite, InviteError, Relay};
use super::keyfile::{KeyFile, KeyFileError};
use super::persist::PersistedState;

/// Key file name.
pub const IDENTITY_FILE: &str = "identity.json";
/// Contacts file name.
pub const CONTACTS_FILE: &str = "contacts.json";
/// State file name.
pub const STATE_FILE: &str = "state.json";
/// Own invite code file name.
pub const INVITE_FILE: &str = "invite.txt";
/// Default directory name under `$HOME`.
pub const HOME_DIR_DEFAULT: &str = ".tessera";
/// Largest file read: 64 MiB. The largest file is state.json at its worst: 256 contacts × 5,776 accepted
/// deliveries each (every sequence number of 722 windows) × ~22 bytes of JSON ≈ 33 MB.
pub const FILE_BYTES_MAX: u64 = 64 << 20;
/// Directory mode.
pub const DIR_MODE: u32 = 0o700;
/// File mode.
pub const FILE_MODE: u32 = 0o600;
/// `version` of contacts.json written: 2 stores each relay as `{"url", "pin"?}`. Version 1 (relays as bare
/// URL strings, no pins) is still read, and rewritten as version 2 on the next change of the contacts.
pub const CONTACTS_VERSION: u32 = 2;
/// The first `version` of contacts.json, still read.
pub const CONTACTS_VERSION_V1: u32 = 1;

/// A failure of the key directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No `--home`, no `TESSERA_HOME`, no `HOME`.
    #[error("no key directory: pass --home DIR or set TESSERA_HOME")]
    NoHome,
    /// An I/O error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Group or others may access a directory or file holding keys.
    #[error("{path} has mode {mode:o}; it must not be accessible by group or others (chmod go-rwx)")]
    InsecurePermissions {
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The home path exists but is not a directory.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// No identity yet.
    #[error("no identity in {0}; create one with `tessera id new`")]
    NoIdentity(PathBuf),
    /// `id new` would overwrite an identity.
    #[error("{0} already holds an identity; refusing to overwrite it")]
    IdentityExists(PathBuf),
    /// A file is larger than `FILE_BYTES_MAX`.
    #[error("{0} is larger than {FILE_BYTES_MAX} bytes")]
    TooLarge(PathBuf),
    /// A file is not valid JSON of its format.
    #[error("{path} is malformed: {message}")]
    Malformed {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key file cannot be read or unlocked.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// A stored contact is invalid.
    #[error("contacts file: {0}")]
    Contact(#[from] ContactError),
    /// The stored own invite code is invalid.
    #[error("{path}: {source}")]
    Invite {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        source: InviteError,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactsFile {
    version: u32,
    contacts: Vec<ContactRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactRecord {
    name: String,
    public_key: String,
    relays: Vec<RelayRecord>,
}

/// A relay of a contact: a bare URL (version 1) or `{"url", "pin"?}` (version 2; pin in hex).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RelayRecord {
    Url(String),
    Pinned(PinnedRelayRecord),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinnedRelayRecord {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pin: Option<String>,
}

/// An opened key directory.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), StoreError> {
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::InsecurePermissions { path: path.to_owned(), mode });
    }
    Ok(())
}

impl Home {
    /// The key directory: `explicit` (`--home`), else `tessera_home` (`$TESSERA_HOME`), else
    /// `home/.tessera` (`$HOME`). The caller reads the environment.
    pub fn resolve(
        explicit: Option<PathBuf>,
        tessera_home: Option<OsString>,
        home: Option<OsString>,
    ) -> Result<PathBuf, StoreError> {
        let non_empty = |v: Option<OsString>| v.filter(|s| !s.is_empty()).map(PathBuf::from);
        explicit
            .or_else(|| non_empty(tessera_home))
            .or_else(|| non_empty(home).map(|h| h.join(HOME_DIR_DEFAULT)))
            .ok_or(StoreError::NoHome)
    }

    /// Opens `dir`, creating it (and missing parents) with mode 0700 if absent.
    pub fn create(dir: &Path) -> Result<Self, StoreError> {
        if !dir.exists() {
            fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).map_err(io(dir))?;
            // The process umask may have cleared bits of 0700, never added any; set it exactly.
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(io(dir))?;
        }
        Self::open(dir)
    }

    /// Opens an existing key directory, refusing one accessible by group or others.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let meta = fs::metadata(dir).map_err(io(dir))?;
        if !meta.is_dir() {
            return Err(StoreError::NotADirectory(dir.to_owned()));
        }
        check_private(dir, &meta)?;
        Ok(Self { dir: dir.to_owned() })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads a file, or `None` if it does not exist.
    fn read(&self, name: &str) -> Result<Option<String>, StoreError> {
        let path = self.file(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let meta = file.metadata().map_err(io(&path))?;
        check_private(&path, &meta)?;
        if meta.len() > FILE_BYTES_MAX {
            return Err(StoreError::TooLarge(path));
        }
        let mut text = String::new();
        file.take(FILE_BYTES_MAX + 1).read_to_string(&mut text).map_err(io(&path))?;
        if text.len() as u64 > FILE_BYTES_MAX {
            return Err(StoreError::TooLarge(path));
        }
        Ok(Some(text))
    }

    /// Atomically replaces `name` with `bytes` (mode 0600, durable when this returns).
    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.file(name);
        let tmp = self.file(&format!(".{name}.tmp"));
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&tmp)(e)),
        }
        let mut file = OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        Ok(())
    }

    /// Whether an identity file exists.
    pub fn has_identity(&self) -> bool {
        self.file(IDENTITY_FILE).exists()
    }

    /// Writes the key file; refuses to replace an existing identity unless `overwrite`.
    pub fn write_identity(&self, key_file: &KeyFile, overwrite: bool) -> Result<(), StoreError> {
        if !overwrite && self.has_identity() {
            return Err(StoreError::IdentityExists(self.file(IDENTITY_FILE)));
        }
        self.write(IDENTITY_FILE, key_file.to_json().as_bytes())
    }

    /// Reads the key file (not unlocked).
    pub fn read_identity(&self) -> Result<KeyFile, StoreError> {
        let text =
            zeroize::Zeroizing::new(self.read(IDENTITY_FILE)?.ok_or_else(|| StoreError::NoIdentity(self.dir.clone()))?);
        Ok(KeyFile::from_json(&text)?)
    }

    /// Reads the contacts (none if the file does not exist yet), validating each against `me`.
    pub fn read_contacts(&self, me: &PublicKey) -> Result<Vec<Contact>, StoreError> {
        let Some(text) = self.read(CONTACTS_FILE)? else {
            return Ok(Vec::new());
        };
        let malformed = |message: String| StoreError::Malformed { path: self.file(CONTACTS_FILE), message };
        let file: ContactsFile = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
        if file.version != CONTACTS_VERSION && file.version != CONTACTS_VERSION_V1 {
            return Err(malformed(format!("version {} is not supported", file.version)));
        }
        let mut contacts = Vec::with_capacity(file.contacts.len().min(super::contact::CONTACTS_MAX));
        for record in file.contacts {
            let public = PublicKey::from_base64(&record.public_key)
                .map_err(|e| malformed(format!("contact {:?}: {e}", record.name)))?;
            let mut relays = Vec::with_capacity(record.relays.len().min(super::invite::INVITE_RELAYS_MAX));
            for relay in record.relays {
                relays.push(match relay {
                    RelayRecord::Url(url) => Relay::from(url),
                    RelayRecord::Pinned(PinnedRelayRecord { url, pin: None }) => Relay::from(url),
                    RelayRecord::Pinned(PinnedRelayRecord { url, pin: Some(pin) }) => {
                        let pin = parse_pin(&pin)
                            .map_err(|e| malformed(format!("contact {:?}, relay {url}: {e}", record.name)))?;
                        Relay { url, pin: Some(pin) }
                    }
                });
            }
            let contact = Contact::new(&record.name, public, relays)?;
            check_addition(&contacts, &contact, me)?;
            contacts.push(contact);
        }
        Ok(contacts)
    }

    /// Replaces the contacts file.
    pub fn write_contacts(&self, contacts: &[Contact]) -> Result<(), StoreError> {
        let file = ContactsFile {
            version: CONTACTS_VERSION,
            contacts: contacts
                .iter()
                .map(|c| ContactRecord {
                    name: c.name.clone(),
                    public_key: c.public.to_base64(),
                    relays: c
                        .relays
                        .iter()
                        .map(|r| {
                            RelayRecord::Pinned(PinnedRelayRecord {
                                url: r.url.clone(),
                                pin: r.pin.as_ref().map(pin_hex),
                            })
                        })
                        .collect(),
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&file).expect("contacts always serialise");
        self.write(CONTACTS_FILE, text.as_bytes())
    }

    /// Reads the invite code `tessera invite` last stored (`None` if it never ran here).
    pub fn read_own_invite(&self) -> Result<Option<Invite>, StoreError> {
        let Some(text) = self.read(INVITE_FILE)? else {
            return Ok(None);
        };
        let invite =
            Invite::decode(&text).map_err(|source| StoreError::Invite { path: self.file(INVITE_FILE), source })?;
        Ok(Some(invite))
    }

    /// Stores the invite code this identity gives out, so that safety codes can be computed later.
    pub fn write_own_invite(&self, invite: &Invite) -> Result<(), StoreError> {
        self.write(INVITE_FILE, format!("{}\n", invite.encode()).as_bytes())
    }

    /// Reads the persisted client state (the default if none was written yet).
    pub fn read_state(&self) -> Result<PersistedState, StoreError> {
        match self.read(STATE_FILE)? {
            None => Ok(PersistedState::default()),
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Malformed { path: self.file(STATE_FILE), message: e.to_string() }),
        }
    }

    /// Durably replaces the persisted client state.
    pub fn write_state(&self, state: &PersistedState) -> Result<(), StoreError> {
        let text = serde_json::to_string(state).expect("state always serialises");
        self.write(STATE_FILE, text.as_bytes())
    }
}
