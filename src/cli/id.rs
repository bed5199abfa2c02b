//! `tessera id new` and `tessera id show`: create and inspect the identity in the key directory.

use clap::{Args, Subcommand};
use rand_core::OsRng;

use super::home::{fail, unlock, HomeArgs, PassphraseArgs};
use crate::client::{Home, Identity, KdfParams, KeyFile};

/// Arguments of `tessera id`.
#[derive(Args, Debug)]
pub struct IdArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: IdCommand,
}

/// `tessera id` subcommands.
#[derive(Subcommand, Debug)]
pub enum IdCommand {
    /// Create a new identity (a Ristretto255 key pair) in the key directory.
    New(NewArgs),
    /// Print the public key and how the secret is stored.
    Show(ShowArgs),
}

/// Arguments of `tessera id new`.
#[derive(Args, Debug)]
pub struct NewArgs {
    #[command(flatten)]
    home: HomeArgs,
    /// Seal the secret under the passphrase in this environment variable (Argon2id, 64 MiB, 3 passes).
    #[command(flatten)]
    passphrase: PassphraseArgs,
    /// Tests only: seal with the weakest Argon2id parameters (64 KiB, 1 pass).
    #[arg(long, hide = true)]
    danger_weak_kdf: bool,
}

/// Arguments of `tessera id show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    home: HomeArgs,
    /// Also unlock the secret, to check the passphrase (with --passphrase-env) and the file.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    passphrase: PassphraseArgs,
}

/// Runs `tessera id …`; returns the exit code.
pub fn run(args: IdArgs) -> i32 {
    let result = match args.command {
        IdCommand::New(a) => new(a),
        IdCommand::Show(a) => show(a),
    };
    result.map_or_else(|e| fail(e.as_ref()), |()| 0)
}

fn new(args: NewArgs) -> Result<(), Box<dyn std::error::Error>> {
    let home = Home::create(&args.home.path()?)?;
    if home.has_identity() {
        return Err(
            crate::client::StoreError::IdentityExists(home.path().join(crate::client::store::IDENTITY_FILE)).into()
        );
    }
    let identity = Identity::generate(&mut OsRng);
    let key_file = match args.passphrase.read()? {
        Some(passphrase) => {
            let params = if args.danger_weak_kdf { KdfParams::DANGER_WEAK_FOR_TESTS } else { KdfParams::RECOMMENDED };
            KeyFile::encrypted(&identity, &passphrase, params, &mut OsRng)?
        }
        None => KeyFile::plain(&identity),
    };
    home.write_identity(&key_file, false)?;
    println!("{}", identity.public().to_base64());
    eprintln!(
        "created identity in {} ({})",
        home.path().display(),
        if key_file.is_encrypted() { "passphrase-protected" } else { "not encrypted; protected by file permissions" }
    );
    Ok(())
}

fn show(args: ShowArgs) -> Result<(), Box<dyn std::error::Error>> {
    let home = args.home.open()?;
    let key_file = home.read_identity()?;
    let public = key_file.public()?;
    if args.check {
        let identity = unlock(&home, &args.passphrase)?;
        debug_assert_eq!(identity.public(), &public);
    }
    println!("public key: {}", public.to_base64());
    println!("key file:   {}", home.path().join(crate::client::store::IDENTITY_FILE).display());
    println!(
        "secret:     {}{}",
        if key_file.is_encrypted() { "sealed under a passphrase (Argon2id + AES-256-GCM)" } else { "not encrypted" },
        if args.check { ", unlocked successfully" } else { "" }
    );
    Ok(())
}
