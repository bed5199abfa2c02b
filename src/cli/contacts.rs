//! `tessera invite` and `tessera enroll`: pairwise enrolment without a directory.
//!
//! Alice runs `tessera invite` and gives Bob the one-line code; Bob runs `tessera enroll <code> --name
//! alice`, and the same the other way round. Each side then derives the pairwise secret from its own key
//! and the other's (no message is exchanged), and both compare the safety code `enroll` prints.

use clap::Args;

use super::home::{fail, HomeArgs, RELAY_URL_DEFAULT};
use crate::client::contact::check_addition;
use crate::client::{safety_code, Contact, Invite};

/// Arguments of `tessera invite`.
#[derive(Args, Debug)]
pub struct InviteArgs {
    #[command(flatten)]
    home: HomeArgs,
    /// Relay(s) where you receive, in order of preference (default ws://127.0.0.1:8100). Repeatable.
    #[arg(long = "relay", value_name = "URL")]
    relays: Vec<String>,
}

/// Arguments of `tessera enroll`.
#[derive(Args, Debug)]
pub struct EnrollArgs {
    /// The invite code (`tessera1…`).
    code: String,
    /// Local name for the contact (letters, digits, '-', '_', '.').
    #[arg(long)]
    name: String,
    #[command(flatten)]
    home: HomeArgs,
}

/// Prints this identity's invite code on stdout; returns the exit code.
pub fn run_invite(args: InviteArgs) -> i32 {
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let home = args.home.open()?;
        let public = home.read_identity()?.public()?;
        let relays = if args.relays.is_empty() { vec![RELAY_URL_DEFAULT.to_owned()] } else { args.relays };
        println!("{}", Invite::new(public, relays)?.encode());
        Ok(())
    })();
    result.map_or_else(|e| fail(e.as_ref()), |()| 0)
}

/// Stores the contact of an invite code; returns the exit code.
pub fn run_enroll(args: EnrollArgs) -> i32 {
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let home = args.home.open()?;
        let me = home.read_identity()?.public()?;
        let invite = Invite::decode(&args.code)?;
        let contact = Contact::new(&args.name, invite.public, invite.relays)?;
        let mut contacts = home.read_contacts(&me)?;
        check_addition(&contacts, &contact, &me)?;
        let code = safety_code(&me, &contact.public);
        contacts.push(contact);
        home.write_contacts(&contacts)?;
        println!("enrolled {}", args.name);
        println!("safety code: {code}");
        eprintln!(
            "compare the safety code with {} over a channel you trust; they must enroll your code too (tessera invite)",
            args.name
        );
        Ok(())
    })();
    result.map_or_else(|e| fail(e.as_ref()), |()| 0)
}
