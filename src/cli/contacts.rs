//! `tessera invite`, `tessera enroll` and `tessera safety`: pairwise enrolment without a directory.
//!
//! Alice runs `tessera invite` and gives Bob the one-line code; Bob runs `tessera enroll <code> --name
//! alice`, and the same the other way round. Each side then derives the pairwise secret from its own key
//! and the other's (no message is exchanged), and both compare the safety code `enroll` prints.
//!
//! The safety code covers both invites (keys, relays, certificate pins), so each side needs its own invite
//! too: `invite` stores the code it prints in the key directory (invite.txt), and `enroll` and `safety`
//! read it back; before the first `invite` they use what `invite` without options would print. Whoever
//! enrols before giving out a code with other relays sees the code change: `tessera safety NAME` shows the
//! current one.
//!
//! ```text
//! invite [--relay URL]* [--relay-pin URL=HEX]* [--relay-cert URL=FILE]* ─▶ print code ─▶ invite.txt
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
use super::relay_pin::pinned_relays;
use crate::client::contact::check_addition;
use crate::client::{safety_code, Contact, Home, Invite, PublicKey};
use crate::driver::client::session::{run_local, Session, SessionOptions};
use crate::driver::tls::TlsClientOptions;

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
    /// Pin a wss:// relay's certificate: URL (as given to --relay) = SHA-256 of its certificate (DER), 64 hex
    /// digits (':' between bytes allowed, as `openssl x509 -noout -fingerprint -sha256` prints). Repeatable.
    #[arg(long = "relay-pin", value_name = "URL=HEX")]
    pins: Vec<String>,
    /// Pin a wss:// relay's certificate read from a file (PEM: the first certificate; or DER): URL (as given
    /// to --relay) = FILE. Repeatable.
    #[arg(long = "relay-cert", value_name = "URL=FILE")]
    certs: Vec<String>,
}

/// Arguments of `tessera safety`.
#[derive(Args, Debug)]
pub struct SafetyArgs {
    /// The contact (default: every contact).
    name: Option<String>,
    #[command(flatten)]
    home: HomeArgs,
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
        let urls = if args.relays.is_empty() { vec![RELAY_URL_DEFAULT.to_owned()] } else { args.relays };
        let invite = Invite::new(public, pinned_relays(urls, &args.pins, &args.certs)?)?;
        // A malformed invite.txt is replaced, not an error: this is how the user repairs it.
        let before = own_invite(&home, &public).ok();
        home.write_own_invite(&invite)?;
        println!("{}", invite.encode());
        // Best effort: the note must not fail the command.
        let contacts = home.read_contacts(&public).map_or(0, |c| c.len());
        if before.as_ref() != Some(&invite) && contacts > 0 {
            eprintln!(
                "note: this code differs from the invite your {contacts} contact(s) were enrolled against; safety \
                 codes now cover this one (tessera safety)"
            );
        }
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
        // The same person (same name, same key) with a new invite — other relays or pins: the contact's relays
        // are replaced, and the safety code, which covers them, must be compared again. Anything else that
        // collides (another key under this name, this key under another name) is refused as before.
        let same = contacts.iter().position(|c| c.name == contact.name && c.public == contact.public);
        if same.is_none() {
            check_addition(&contacts, &contact, &me)?;
        }
        let stored = home.read_own_invite()?.is_some_and(|i| i.public == me);
        let code = safety_code(&own_invite(&home, &me)?, &contact.invite());
        match same {
            Some(i) if contacts[i].relays == contact.relays => {
                println!("{} is already enrolled with this invite", args.name)
            }
            Some(i) => {
                contacts[i] = contact;
                println!("updated {}: relays from the new invite", args.name);
            }
            None => {
                contacts.push(contact);
                println!("enrolled {}", args.name);
            }
        }
        home.write_contacts(&contacts)?;
        println!("safety code: {code}");
        eprintln!(
            "compare the safety code with {} over a channel you trust; they must enroll your code too (tessera invite)",
            args.name
        );
        if !stored {
            eprintln!(
                "the code assumes your invite is what `tessera invite` prints without options; if you give {} \
                 another one, `tessera safety {}` shows the code after it",
                args.name, args.name
            );
        }
        // `recv`'s choice: --relay, else the first contact's relay, else the default.
        let url = args
            .relay
            .clone()
            .or_else(|| contacts.iter().find_map(|c| c.first_relay().map(|r| r.url.clone())))
            .unwrap_or_else(|| RELAY_URL_DEFAULT.to_owned());
        let tls = args.tls.options_for(&url, contacts.iter().flat_map(|c| &c.relays));
        register(home, &args, url, tls);
        Ok(())
    })();
    result.map_or_else(|e| fail(e.as_ref()), |()| 0)
}

/// The invite this identity gives out: the one `invite` stored, else what `invite` without options prints.
/// A stored invite of another key (the identity was replaced) does not count.
fn own_invite(home: &Home, me: &PublicKey) -> Result<Invite, Box<dyn std::error::Error>> {
    match home.read_own_invite()? {
        Some(invite) if &invite.public == me => Ok(invite),
        _ => Ok(Invite::new(*me, vec![RELAY_URL_DEFAULT.into()])?),
    }
}

/// Prints the safety code of one contact (`safety code: …`) or of every contact (`NAME: …`); returns the
/// exit code.
pub fn run_safety(args: SafetyArgs) -> i32 {
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let home = args.home.open()?;
        let me = home.read_identity()?.public()?;
        let mine = own_invite(&home, &me)?;
        let contacts = home.read_contacts(&me)?;
        match &args.name {
            Some(name) => {
                let contact =
                    contacts.iter().find(|c| &c.name == name).ok_or_else(|| format!("no contact named {name:?}"))?;
                println!("safety code: {}", safety_code(&mine, &contact.invite()));
            }
            None if contacts.is_empty() => {
                return Err("no contacts yet: enroll one with `tessera enroll <code> --name NAME`".into())
            }
            None => {
                for contact in &contacts {
                    println!("{}: {}", contact.name, safety_code(&mine, &contact.invite()));
                }
            }
        }
        Ok(())
    })();
    result.map_or_else(|e| fail(e.as_ref()), |()| 0)
}

/// Registers every contact's subscriptions at `url` (catching up the new one's past windows), and says
/// whether it did; never fails the enrolment.
fn register(home: Home, args: &EnrollArgs, url: String, tls: TlsClientOptions) {
    let name = args.name.clone();
    let later = format!("{name}'s messages will be fetched on the next `tessera recv`");
    let identity = match unlock(&home, &args.passphrase) {
        Ok(identity) => identity,
        Err(e) => {
            eprintln!("not subscribed at the relay now ({e}); {later}");
            return;
        }
    };
    let outcome = run_local(move || async move {
        let options = SessionOptions { connect_timeout: ENROLL_CONNECT_TIMEOUT, tls, ..SessionOptions::default() };
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
