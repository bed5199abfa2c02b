//! Options shared by the client commands: the key directory and the passphrase source.
//!
//! The environment is read here (driver code), never in `crate::client`.

use std::path::PathBuf;

use clap::Args;
use zeroize::Zeroizing;

use crate::client::{Home, Identity, StoreError};

/// The relay used when neither `--relay` nor the contact's invite names one.
pub const RELAY_URL_DEFAULT: &str = "ws://127.0.0.1:8100";

/// `--home DIR`.
#[derive(Args, Debug, Clone)]
pub struct HomeArgs {
    /// Key directory (default: $TESSERA_HOME, else ~/.tessera).
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
}

impl HomeArgs {
    /// The resolved directory path.
    pub fn path(&self) -> Result<PathBuf, StoreError> {
        Home::resolve(self.home.clone(), std::env::var_os("TESSERA_HOME"), std::env::var_os("HOME"))
    }

    /// Opens the existing key directory.
    pub fn open(&self) -> Result<Home, StoreError> {
        Home::open(&self.path()?)
    }
}

/// `--passphrase-env VAR`.
#[derive(Args, Debug, Clone)]
pub struct PassphraseArgs {
    /// Name of an environment variable holding the passphrase of the key file.
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
}

/// Why no passphrase could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PassphraseError {
    /// The variable is not set.
    #[error("environment variable {0} is not set")]
    Unset(String),
    /// The variable is set but empty.
    #[error("environment variable {0} is empty")]
    Empty(String),
}

impl PassphraseArgs {
    /// The passphrase bytes, if `--passphrase-env` was given.
    pub fn read(&self) -> Result<Option<Zeroizing<Vec<u8>>>, PassphraseError> {
        let Some(var) = &self.passphrase_env else {
            return Ok(None);
        };
        use std::os::unix::ffi::OsStringExt;
        let value = std::env::var_os(var).ok_or_else(|| PassphraseError::Unset(var.clone()))?;
        let bytes = Zeroizing::new(value.into_vec());
        if bytes.is_empty() {
            return Err(PassphraseError::Empty(var.clone()));
        }
        Ok(Some(bytes))
    }
}

/// Loads and unlocks the identity of `home`.
pub fn unlock(home: &Home, passphrase: &PassphraseArgs) -> Result<Identity, Box<dyn std::error::Error>> {
    let key_file = home.read_identity()?;
    let secret = passphrase.read()?;
    Ok(key_file.unlock(secret.as_ref().map(|p| p.as_slice()))?)
}

/// Prints `error: …` (with its causes) and returns exit code 1.
pub fn fail(error: &dyn std::error::Error) -> i32 {
    eprintln!("error: {error}");
    1
}
