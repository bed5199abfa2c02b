//! Safety codes and relay certificate pins through the real binary: two key directories invite and enrol
//! each other (one pinning its relay's certificate) and both print the same 40-digit safety code; `tessera
//! safety` shows it again, also for the one who enrolled before giving out their own code; a contacts file
//! of version 1 still reads.

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine;
use sha2::{Digest, Sha256};

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera")).args(args).env_remove("TESSERA_HOME").output().expect("tessera runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = tessera(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

fn safety_line(text: &str) -> String {
    let line = text.lines().find_map(|l| l.strip_prefix("safety code: ")).expect("a safety code line");
    let groups: Vec<&str> = line.split(' ').collect();
    assert_eq!(groups.len(), 8, "{line}");
    assert!(groups.iter().all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())), "{line}");
    line.to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Alice pins her wss relay's certificate (from a PEM file) and gives out her code first; Bob enrols it
/// before running `tessera invite` himself (so his `enroll` assumes the default invite), then gives out a
/// code naming another relay. After Alice enrols it, her code and Bob's `tessera safety alice` agree.
#[test]
fn both_sides_see_the_same_safety_code() {
    let tmp = tempfile::tempdir().unwrap();
    let home = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();
    let (ha, hb) = (home("alice"), home("bob"));
    ok(&["id", "new", "--home", &ha]);
    ok(&["id", "new", "--home", &hb]);

    // Loopback URLs only: `enroll` tries to register at the relay (2 s at most) whatever the scheme.
    let der = [0x30u8, 0x82, 0x01, 0x0a, 0x02, 0x01, 0x00, 0x5a];
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    );
    let cert = tmp.path().join("relay.pem");
    std::fs::write(&cert, pem).unwrap();
    let relay_a = "wss://127.0.0.1:9443";
    let cert_arg = format!("{relay_a}={}", cert.display());
    let code_a =
        ok(&["invite", "--home", &ha, "--relay", relay_a, "--relay-cert", &cert_arg, "--relay", "ws://127.0.0.1:9000"])
            .trim()
            .to_owned();
    // The same pin given as hex (with colons, as openssl prints it) makes the same code.
    let pin = Sha256::digest(der);
    let colons = pin.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
    let again = ok(&[
        "invite",
        "--home",
        &ha,
        "--relay",
        relay_a,
        "--relay-pin",
        &format!("{relay_a}={colons}"),
        "--relay",
        "ws://127.0.0.1:9000",
    ]);
    assert_eq!(again.trim(), code_a);
    assert_eq!(std::fs::read_to_string(tmp.path().join("alice/invite.txt")).unwrap().trim(), code_a);

    let enroll_b = tessera(&["enroll", &code_a, "--name", "alice", "--home", &hb]);
    assert!(enroll_b.status.success(), "{}", stderr(&enroll_b));
    let early = safety_line(&stdout(&enroll_b));
    assert!(stderr(&enroll_b).contains("tessera safety alice"), "{}", stderr(&enroll_b));
    let contacts_b = std::fs::read_to_string(tmp.path().join("bob/contacts.json")).unwrap();
    assert!(contacts_b.contains(&hex(&pin)) && contacts_b.contains("\"version\": 2"), "{contacts_b}");

    let code_b = ok(&["invite", "--home", &hb, "--relay", "wss://127.0.0.1:9444"]).trim().to_owned();
    let enroll_a = tessera(&["enroll", &code_b, "--name", "bob", "--home", &ha]);
    assert!(enroll_a.status.success(), "{}", stderr(&enroll_a));
    let alices = safety_line(&stdout(&enroll_a));
    let bobs = safety_line(&ok(&["safety", "alice", "--home", &hb]));
    assert_eq!(alices, bobs);
    // Bob's first code assumed the default invite, which he did not give out: it differs.
    assert_ne!(early, bobs);
    assert_eq!(safety_line(&ok(&["safety", "bob", "--home", &ha])), alices);
    assert_eq!(ok(&["safety", "--home", &ha]).trim(), format!("bob: {alices}"));

    // Had Bob enrolled a code without Alice's pin, the codes would differ.
    let unpinned = tessera(&["invite", "--home", &ha, "--relay", relay_a, "--relay", "ws://127.0.0.1:9000"]);
    assert!(stderr(&unpinned).contains("note: this code differs"), "{}", stderr(&unpinned));
    assert_ne!(stdout(&unpinned).trim(), code_a);
    assert_ne!(safety_line(&ok(&["safety", "bob", "--home", &ha])), bobs);
}

#[test]
fn pins_are_refused_where_they_mean_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path().join("h").to_str().unwrap().to_owned();
    ok(&["id", "new", "--home", &h]);
    let pin = "ab".repeat(32);
    let ws = tessera(&[
        "invite",
        "--home",
        &h,
        "--relay",
        "ws://127.0.0.1:9000",
        "--relay-pin",
        &format!("ws://127.0.0.1:9000={pin}"),
    ]);
    assert_eq!(ws.status.code(), Some(1));
    assert!(stderr(&ws).contains("needs a wss:// relay URL"), "{}", stderr(&ws));
    let unknown = tessera(&["invite", "--home", &h, "--relay", "wss://a", "--relay-pin", &format!("wss://b={pin}")]);
    assert!(stderr(&unknown).contains("must be one of the --relay URLs"), "{}", stderr(&unknown));
    let short = tessera(&["invite", "--home", &h, "--relay", "wss://a", "--relay-pin", "wss://a=abcd"]);
    assert!(stderr(&short).contains("64 hexadecimal digits"), "{}", stderr(&short));
    let missing =
        tessera(&["invite", "--home", &h, "--relay", "wss://a", "--relay-cert", "wss://a=/nonexistent/c.pem"]);
    assert!(stderr(&missing).contains("/nonexistent/c.pem"), "{}", stderr(&missing));
    // None of them replaced the stored invite.
    assert!(!tmp.path().join("h/invite.txt").exists());
    // A damaged invite.txt is named by `safety`/`enroll`, and `invite` replaces it.
    write_private(&tmp.path().join("h/invite.txt"), "tessera1garbage");
    let damaged = tessera(&["safety", "--home", &h]);
    assert_eq!(damaged.status.code(), Some(1));
    assert!(stderr(&damaged).contains("invite.txt"), "{}", stderr(&damaged));
    let repaired = ok(&["invite", "--home", &h]);
    assert_eq!(std::fs::read_to_string(tmp.path().join("h/invite.txt")).unwrap(), repaired);
    let none = tessera(&["safety", "--home", &h]);
    assert!(stderr(&none).contains("no contacts yet"), "{}", stderr(&none));
}

/// A contacts file written before pins (version 1, relays as bare URLs) still reads, and the safety code
/// of its contacts is what a current build computes from the same (unpinned) invites.
#[test]
fn version_1_contacts_file_still_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (ha, hb) = (a.to_str().unwrap().to_owned(), b.to_str().unwrap().to_owned());
    ok(&["id", "new", "--home", &ha]);
    let bob_pk = ok(&["id", "new", "--home", &hb]).trim().to_owned();
    let code_a = ok(&["invite", "--home", &ha]).trim().to_owned();
    let code_b = ok(&["invite", "--home", &hb]).trim().to_owned();
    let alices = safety_line(&ok(&["enroll", &code_b, "--name", "bob", "--home", &ha]));
    let bobs = safety_line(&ok(&["enroll", &code_a, "--name", "alice", "--home", &hb]));
    assert_eq!(alices, bobs);
    let v1 = format!(
        "{{\"version\": 1, \"contacts\": [{{\"name\": \"bob\", \"public_key\": \"{bob_pk}\", \"relays\": [\"ws://127.0.0.1:8100\"]}}]}}"
    );
    write_private(&a.join("contacts.json"), &v1);
    assert_eq!(safety_line(&ok(&["safety", "bob", "--home", &ha])), alices);
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
