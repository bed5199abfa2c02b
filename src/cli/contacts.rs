//! `tessera invite` and `tessera enroll`: pairwise enrolment without a directory.
//!
//! Alice runs `tessera invite` and gives Bob the one-line code; Bob runs `tessera enroll <code> --name
//! alice`, and the same the other way round. Each side then derives the pairwise secret from its own key
//! and the other's (no message is exchanged), and both compare the safety code `enroll` prints.
//!
//! ```text
//! enroll CODE --name alice: decode ─▶ check ─▶ contacts.json ─▶ print safety code      (enrolment: exit 0)
//!   ─▶ unlock ─▶ Session::connect (2 s) ─▶ register: catch up + subscribe, acknowledged ─▶ disconnect
//!      "subscribed at URL: …"  |  relay unreachable, identity sealed, key directory busy: "… next recv"
//! ```
//! Registering at once makes the relay match alice's proofs from the oldest window it keeps — so what she
//! sent before Bob enrolled her is delivered — and records Bob as covered from now on; it FETCHes nothing,
//! so `tessera recv` prints those messages. It is best effort: enrolment succeeded whatever happens here.

use std::time::Duration;

use clap::Args;

use super::home::{fail, unlock, HomeArgs, PassphraseArgs, RELAY_URL_DEFAULT};
use super::messaging::{duration_text, gap_text};
use crate::client::contact::check_addition;
use crate::client::{safety_code, Contact, Home, Invite};
use crate::driver::client::session::{run_local, Session, SessionOptions};

/// How long `enroll` tries to reach the relay: enrolment must not hang on a relay that is down.
const ENROLL_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// Relay to register the contact's subscriptions at (default: the one `tessera recv` uses).
    #[arg(long, value_name = "URL")]
    relay: Option<String>,
    #[command(flatten)]
    passphrase: PassphraseArgs,
    #[command(flatten)]
    tls: super::cert::TlsArgs,
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
        // `recv`'s choice: --relay, else the first contact's relay, else the default.
        let url = args
            .relay
            .clone()
            .or_else(|| contacts.iter().find_map(|c| c.relays.first().cloned()))
            .unwrap_or_else(|| RELAY_URL_DEFAULT.to_owned());
        register(home, &args, url);
        Ok(())
    })();
    result.map_or_else(|e| fail(e.as_ref()), |()| 0)
}

/// Registers every contact's subscriptions at `url` (catching up the new one's past windows), and says
/// whether it did; never fails the enrolment.
fn register(home: Home, args: &EnrollArgs, url: String) {
    let name = args.name.clone();
    let later = format!("{name}'s messages will be fetched on the next `tessera recv`");
    let identity = match unlock(&home, &args.passphrase) {
        Ok(identity) => identity,
        Err(e) => {
            eprintln!("not subscribed at the relay now ({e}); {later}");
            return;
        }
    };
    let tls = args.tls.clone();
    let outcome = run_local(move || async move {
        let options =
            SessionOptions { connect_timeout: ENROLL_CONNECT_TIMEOUT, tls: tls.options(), ..SessionOptions::default() };
        let mut session = Session::connect(&url, home, identity, options).await.map_err(|e| e.to_string())?;
        let registered = session.register().await.map_err(|e| e.to_string());
        let gap = session.take_coverage_gap();
        let retention_s = u64::from(session.relay_params().retention_s);
        session.close().await;
        registered.map(|()| (url, gap, retention_s))
    });
    match outcome {
        Ok(Ok((url, gap, retention_s))) => {
            println!(
                "subscribed at {url}: messages {name} sent before you enrolled them will be delivered (the relay keeps {})",
                duration_text(retention_s)
            );
            if let Some(gap) = gap {
                eprintln!("warning: {}", gap_text(&gap));
            }
        }
        Ok(Err(e)) => eprintln!("not subscribed at the relay now: {e}; {later}"),
        Err(e) => eprintln!("not subscribed at the relay now: {e}; {later}"),
    }
}
