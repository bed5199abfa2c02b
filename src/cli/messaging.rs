//! `tessera send`, `tessera recv` and `tessera chat`: the client commands that talk to a relay.
//!
//! ```text
//! send --to bob TEXT   unlock ─▶ Session::connect (bob's relay) ─▶ send: persist ─▶ PUBLISH ─▶ ACK ─▶ exit 0
//! recv [--follow]      unlock ─▶ Session::connect ─▶ sync (catch up, SUBSCRIBE, FETCH waiting) ─▶ print
//!                      ─▶ gap notice, if any ─▶ exit 0
//!                      --follow: then print each DELIVERed message; reconnect (and sync again) on a lost
//!                      link, and keep trying to connect when the relay is down at start
//! chat bob             sync ─▶ print; stdin lines ─▶ send; received messages ─▶ print; EOF ─▶ exit 0
//! ```
//! A send that must wait for the next window (8 message parts per contact per window) says so on stderr.
//! When windows could not be caught up (offline longer than the relay keeps proofs), `recv` says once:
//! `messages sent between T1 and T2 may have been lost (the relay keeps 1 h)` on stderr, and with `--json`
//! also as a JSON object on stdout.
//! Messages print as `2025-01-02T03:04:10Z alice: text`: the time is the start of the 10-second window the
//! message was sealed in (all the precision the protocol carries), in UTC. A message's control characters
//! (newlines included) are printed escaped, so a contact cannot fake another line or drive the terminal;
//! `--json` prints one JSON object per message with the exact text instead.

use std::io::{BufRead, Read, Write};
use std::time::Duration;

use clap::Args;

use super::cover_args::{cover_queued_text, CoverArgs};
use super::home::{fail, unlock, HomeArgs, PassphraseArgs, RELAY_URL_DEFAULT};
use crate::client::{Contact, CoverageGap, Home, Identity, ReceivedMessage, SEQS_PER_WINDOW};
use crate::driver::client::session::{run_local, Next, Session, SessionError, SessionOptions, WindowWait};

/// Longest stdin line read by `chat` at once, bytes (a message holds at most 3,152; a longer line is
/// refused as too long rather than buffered without bound).
const CHAT_LINE_BYTES_MAX: u64 = 64 << 10;
/// First pause before reconnecting (`recv --follow`, `chat`): a relay restart takes about a second.
const RECONNECT_DELAY_MIN: Duration = Duration::from_secs(1);
/// Longest pause between reconnection attempts (doubling from the first): a relay that stays down is
/// retried twice a minute, not hammered.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(30);

/// Options of every client command that talks to a relay.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    #[command(flatten)]
    home: HomeArgs,
    /// Relay to use (default: the relay in the contact's invite, else ws://127.0.0.1:8100).
    #[arg(long, value_name = "URL")]
    relay: Option<String>,
    #[command(flatten)]
    passphrase: PassphraseArgs,
    #[command(flatten)]
    tls: super::cert::TlsArgs,
    #[command(flatten)]
    cover: CoverArgs,
}

/// Arguments of `tessera send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// The contact's name (as enrolled).
    #[arg(long, value_name = "NAME")]
    to: String,
    /// The message (UTF-8, at most 3,152 bytes; longer than 394 bytes it travels in several proofs).
    text: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// Arguments of `tessera recv`.
#[derive(Args, Debug)]
pub struct RecvArgs {
    /// Keep running and print messages as they arrive (Ctrl-C stops).
    #[arg(long)]
    follow: bool,
    /// Print one JSON object per message: {"from", "window_start_s", "time", "text"}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// Arguments of `tessera chat`.
#[derive(Args, Debug)]
pub struct ChatArgs {
    /// The contact to talk to.
    contact: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// Everything a command needs before it connects.
struct Prepared {
    home: Home,
    identity: Identity,
    url: String,
    /// The session's options (TLS from `--tls-ca`, `--tls-pin`, else the invite's pin for `url`).
    options: SessionOptions,
}

/// Opens the key directory, unlocks the identity, and picks the relay: `--relay`, else the first relay of
/// `contact`'s invite (of the first contact with one when `contact` is `None`), else the default.
fn prepare(args: &ClientArgs, contact: Option<&str>) -> Result<Prepared, Box<dyn std::error::Error>> {
    let home = args.home.open()?;
    let identity = unlock(&home, &args.passphrase)?;
    let contacts = home.read_contacts(identity.public())?;
    if contacts.is_empty() {
        return Err("no contacts yet: enroll one with `tessera enroll <code> --name NAME`".into());
    }
    let relay_of = |c: &Contact| c.first_relay().map(|r| r.url.clone());
    let from_invite = match contact {
        Some(name) => {
            let c = contacts.iter().find(|c| c.name == name).ok_or_else(|| format!("no contact named {name:?}"))?;
            relay_of(c)
        }
        None => contacts.iter().find_map(relay_of),
    };
    let url = args.relay.clone().or(from_invite).unwrap_or_else(|| RELAY_URL_DEFAULT.to_owned());
    let tls = args.tls.options_for(&url, contacts.iter().flat_map(|c| &c.relays));
    let options = SessionOptions { tls, ..args.cover.session_options() };
    Ok(Prepared { home, identity, url, options })
}

/// Runs an async command body on a client executor; maps its error to exit code 1.
fn execute<G, F>(make: G) -> i32
where
    G: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = Result<(), String>> + 'static,
{
    // Logs (RUST_LOG, default info) on stderr: warnings, and the session's debug lines when asked for.
    super::init_tracing();
    match run_local(make) {
        Ok(Ok(())) => 0,
        Ok(Err(message)) => {
            eprintln!("error: {message}");
            1
        }
        Err(e) => fail(&e),
    }
}

/// Runs `tessera send`; returns the exit code (0 only once the relay acknowledged every proof as durable).
pub fn run_send(args: SendArgs) -> i32 {
    let prepared = match prepare(&args.client, Some(&args.to)) {
        Ok(p) => p,
        Err(e) => return fail(e.as_ref()),
    };
    let SendArgs { to, text, .. } = args;
    execute(move || async move {
        let Prepared { home, identity, url, options } = prepared;
        // A one-shot send is no connected session: it publishes at once (the link shows the connection anyway).
        let options = SessionOptions { client_cover: false, ..options };
        let mut session = Session::connect(&url, home, identity, options).await.map_err(show)?;
        session.on_window_wait(print_window_wait);
        let sent = session.send(&to, &text).await.map_err(show)?;
        session.close().await;
        println!(
            "sent to {to}: {} proof{}, acknowledged as durable by {url}",
            sent.proofs,
            if sent.proofs == 1 { "" } else { "s" }
        );
        Ok(())
    })
}

/// Runs `tessera recv`; returns the exit code.
pub fn run_recv(args: RecvArgs) -> i32 {
    let prepared = match prepare(&args.client, None) {
        Ok(p) => p,
        Err(e) => return fail(e.as_ref()),
    };
    let (follow, json) = (args.follow, args.json);
    execute(move || async move {
        let Prepared { home, identity, url, options } = prepared;
        let mut session = if follow {
            connect_retrying(&url, &home, &identity, &options).await.map_err(show)?
        } else {
            Session::connect(&url, home, identity, options).await.map_err(show)?
        };
        match session.sync().await {
            Ok(messages) => messages.iter().for_each(|m| print_message(m, json)),
            Err(e) if follow && e.is_connection_error() => {
                reconnect(&mut session, &e).await.iter().for_each(|m| print_message(m, json))
            }
            Err(e) => return Err(show(e)),
        }
        print_gap(&mut session, json);
        if !follow {
            session.close().await;
            return Ok(());
        }
        loop {
            match session.next_message().await {
                Ok(message) => print_message(&message, json),
                Err(e) if e.is_connection_error() => {
                    for message in reconnect(&mut session, &e).await {
                        print_message(&message, json);
                    }
                }
                Err(e) => return Err(show(e)),
            }
            print_gap(&mut session, json);
        }
    })
}

/// Runs `tessera chat`; returns the exit code.
pub fn run_chat(args: ChatArgs) -> i32 {
    let prepared = match prepare(&args.client, Some(&args.contact)) {
        Ok(p) => p,
        Err(e) => return fail(e.as_ref()),
    };
    let contact = args.contact;
    execute(move || async move {
        let Prepared { home, identity, url, options } = prepared;
        let k = options.cover_proofs_per_round;
        let mut session = Session::connect(&url, home, identity, options).await.map_err(show)?;
        session.on_window_wait(print_window_wait);
        let (k, window_s) = (k, u64::from(session.relay_params().window_s));
        session.on_cover_queued(move |q| cover_queued_text(q, k, window_s).iter().for_each(|t| eprintln!("{t}")));
        for message in session.sync().await.map_err(show)? {
            print_message(&message, false);
        }
        print_gap(&mut session, false);
        eprintln!("chatting with {contact} via {url}; type a line to send it, Ctrl-D to end");
        let lines = stdin_lines();
        loop {
            let next = session.next_message_or(lines.recv()).await;
            match next {
                Ok(Next::Message(message)) => print_message(&message, false),
                Ok(Next::Interrupted(Some(Ok(line)))) => {
                    let text = line.trim_end_matches(['\n', '\r']);
                    if text.is_empty() {
                        continue;
                    }
                    match session.send(&contact, text).await {
                        Ok(_) => {}
                        Err(e) if e.is_connection_error() => {
                            // The PUBLISH may or may not have reached the log; no ACK says it did.
                            eprintln!("not confirmed (send it again if it does not arrive): {e}");
                            for message in reconnect(&mut session, &e).await {
                                print_message(&message, false);
                            }
                            print_gap(&mut session, false);
                        }
                        Err(e @ SessionError::Send(_)) | Err(e @ SessionError::Refused { .. }) => {
                            eprintln!("not sent: {e}")
                        }
                        Err(e) => return Err(show(e)),
                    }
                    for message in session.take_received() {
                        print_message(&message, false);
                    }
                }
                Ok(Next::Interrupted(Some(Err(e)))) => return Err(format!("reading stdin: {e}")),
                // End of input (Ctrl-D, or the end of a piped file).
                Ok(Next::Interrupted(None)) => break,
                Err(e) if e.is_connection_error() => {
                    for message in reconnect(&mut session, &e).await {
                        print_message(&message, false);
                    }
                    print_gap(&mut session, false);
                }
                Err(e) => return Err(show(e)),
            }
        }
        session.close().await;
        Ok(())
    })
}

/// Lines of stdin, read on glommio's blocking thread pool (a blocking read must not stall the executor)
/// by a task of their own, so that no line is lost when the session wins a race against the reader.
fn stdin_lines() -> glommio::channels::local_channel::LocalReceiver<std::io::Result<String>> {
    let (sender, receiver) = glommio::channels::local_channel::new_bounded(1);
    glommio::spawn_local(async move {
        loop {
            let read = glommio::executor()
                .spawn_blocking(|| {
                    let mut line = String::new();
                    std::io::stdin().lock().take(CHAT_LINE_BYTES_MAX).read_line(&mut line).map(|n| (n, line))
                })
                .await;
            let item = match read {
                Ok((0, _)) => break,
                Ok((_, line)) => Ok(line),
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            if sender.send(item).await.is_err() || failed {
                break;
            }
        }
    })
    .detach();
    receiver
}

/// Connects to `url`, retrying like `reconnect` while the relay cannot be reached (`recv --follow` started
/// before its relay); any other failure (key directory in use, bad state) ends it at once.
async fn connect_retrying(
    url: &str,
    home: &Home,
    identity: &Identity,
    options: &SessionOptions,
) -> Result<Session, SessionError> {
    let mut delay = RECONNECT_DELAY_MIN;
    loop {
        // Each try consumes its copy of the identity.
        let attempt = Identity::from_seed(identity.seed());
        match Session::connect(url, home.clone(), attempt, options.clone()).await {
            Ok(session) => {
                if delay > RECONNECT_DELAY_MIN {
                    eprintln!("connected to {url}");
                }
                return Ok(session);
            }
            Err(e) if e.is_connection_error() => {
                eprintln!("{e}; retrying in {} s", delay.as_secs());
                glommio::timer::sleep(delay).await;
                delay = (delay * 2).min(RECONNECT_DELAY_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reconnects after `error` until it works (backing off from 1 s to 30 s), then re-subscribes and fetches
/// what was kept meanwhile; returns those messages.
async fn reconnect(session: &mut Session, error: &SessionError) -> Vec<ReceivedMessage> {
    eprintln!("{error}; reconnecting to {}", session.url());
    let mut delay = RECONNECT_DELAY_MIN;
    loop {
        glommio::timer::sleep(delay).await;
        let attempt = async {
            session.reconnect().await?;
            session.sync().await
        };
        match attempt.await {
            Ok(messages) => {
                eprintln!("reconnected to {}", session.url());
                return messages;
            }
            Err(e) => {
                eprintln!("{e}; retrying in {} s", delay.as_secs());
                delay = (delay * 2).min(RECONNECT_DELAY_MAX);
            }
        }
    }
}

fn show(e: SessionError) -> String {
    e.to_string()
}

/// Says on stderr that a send waits for the next window, and why (once per wait).
fn print_window_wait(w: &WindowWait) {
    let why = if w.free == 0 {
        format!("the {SEQS_PER_WINDOW} message parts per window to {} are used up", w.contact)
    } else {
        format!(
            "{} of the {SEQS_PER_WINDOW} message parts per window to {} are left and this message needs {}",
            w.free, w.contact, w.parts
        )
    };
    eprintln!("waiting {:.1} s for the next window: {why}", w.wait.as_secs_f64());
}

/// Says once, if the last sync found windows that could not be caught up: on stderr, and with `json` as a
/// JSON object on stdout too.
pub fn print_gap(session: &mut Session, json: bool) {
    if let Some(gap) = session.take_coverage_gap() {
        let text = gap_text(&gap);
        eprintln!("warning: {text}");
        if json {
            let object = serde_json::json!({
                "warning": "possible_loss",
                "lost_from": utc_time(gap.from_s),
                "lost_to": utc_time(gap.to_s),
                "lost_from_s": gap.from_s,
                "lost_to_s": gap.to_s,
                "retention_s": gap.retention_s,
                "text": text,
            });
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{object}").and_then(|()| out.flush());
        }
    }
}

/// `messages sent between T1 and T2 may have been lost (the relay keeps 1 h)`.
pub fn gap_text(gap: &CoverageGap) -> String {
    format!(
        "messages sent between {} and {} may have been lost (the relay keeps {})",
        utc_time(gap.from_s),
        utc_time(gap.to_s),
        duration_text(gap.retention_s)
    )
}

/// `1 h`, `90 min`, `45 s`: a retention as an operator would have written it.
pub fn duration_text(seconds: u64) -> String {
    match seconds {
        s if s > 0 && s % 3_600 == 0 => format!("{} h", s / 3_600),
        s if s > 0 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Prints a message on stdout, one line.
fn print_message(message: &ReceivedMessage, json: bool) {
    let time = utc_time(message.window_start_s);
    let line = if json {
        serde_json::json!({
            "from": message.contact,
            "window_start_s": message.window_start_s,
            "time": time,
            "text": message.text,
        })
        .to_string()
    } else {
        format!("{time} {}: {}", message.contact, escape_controls(&message.text))
    };
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) ends nothing here; the next write fails the same way.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// The text with every control character written as an escape (`\n`, `\u{1b}`…).
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (proleptic Gregorian calendar, UTC).
pub fn utc_time(unix_s: u64) -> String {
    let (days, secs) = (unix_s / 86_400, unix_s % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm, for non-negative days).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3_600, secs % 3_600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_escapes() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_time(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(escape_controls("a\nb\u{1b}[2Jc é"), "a\\nb\\u{1b}[2Jc é");
        assert_eq!(
            (duration_text(3_600), duration_text(5_400), duration_text(90)),
            ("1 h".into(), "90 min".into(), "90 s".into())
        );
        let gap = CoverageGap { from_s: 1_700_000_000, to_s: 1_700_003_600, retention_s: 3_600 };
        assert_eq!(
            gap_text(&gap),
            "messages sent between 2023-11-14T22:13:20Z and 2023-11-14T23:13:20Z may have been lost (the relay keeps 1 h)"
        );
    }
}
