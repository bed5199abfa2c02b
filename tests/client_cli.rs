//! The `tessera id`, `invite` and `enroll` commands, run as the real binary against temporary key
//! directories.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn tessera(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(args).env_remove("TESSERA_HOME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("tessera runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn home_arg(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

#[test]
fn identity_invite_and_enroll_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("alice"), tmp.path().join("bob"));
    let (ha, hb) = (home_arg(&a), home_arg(&b));

    let new_a = tessera(&["id", "new", "--home", &ha], &[]);
    assert!(new_a.status.success(), "{}", stderr(&new_a));
    let alice_pk = stdout(&new_a).trim().to_owned();
    assert_eq!(alice_pk.len(), 43);
    assert_eq!(std::fs::metadata(&a).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(a.join("identity.json")).unwrap().permissions().mode() & 0o777, 0o600);
    // TESSERA_HOME stands in for --home.
    let new_b = tessera(&["id", "new"], &[("TESSERA_HOME", &hb)]);
    assert!(new_b.status.success(), "{}", stderr(&new_b));

    let again = tessera(&["id", "new", "--home", &ha], &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already holds an identity"), "{}", stderr(&again));

    let show = tessera(&["id", "show", "--home", &ha], &[]);
    assert!(show.status.success());
    assert!(stdout(&show).contains(&alice_pk));
    assert!(stdout(&show).contains("not encrypted"));

    let invite_a = tessera(&["invite", "--home", &ha, "--relay", "ws://127.0.0.1:9000"], &[]);
    assert!(invite_a.status.success(), "{}", stderr(&invite_a));
    let code_a = stdout(&invite_a).trim().to_owned();
    assert!(code_a.starts_with("tessera1") && !code_a.contains(char::is_whitespace));
    let code_b = stdout(&tessera(&["invite", "--home", &hb], &[])).trim().to_owned();

    let enroll_b = tessera(&["enroll", &code_a, "--name", "alice", "--home", &hb], &[]);
    assert!(enroll_b.status.success(), "{}", stderr(&enroll_b));
    let enroll_a = tessera(&["enroll", &code_b, "--name", "bob", "--home", &ha], &[]);
    assert!(enroll_a.status.success(), "{}", stderr(&enroll_a));
    // Both sides print the same safety code.
    let safety = |o: &Output| stdout(o).lines().find(|l| l.starts_with("safety code:")).unwrap().to_owned();
    assert_eq!(safety(&enroll_a), safety(&enroll_b));

    let contacts = std::fs::read_to_string(b.join("contacts.json")).unwrap();
    assert!(contacts.contains("\"alice\"") && contacts.contains(&alice_pk) && contacts.contains("ws://127.0.0.1:9000"));
    // Bob's code carried the default relay.
    assert!(std::fs::read_to_string(a.join("contacts.json")).unwrap().contains("ws://127.0.0.1:8100"));

    let dup = tessera(&["enroll", &code_a, "--name", "alice2", "--home", &hb], &[]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(stderr(&dup).contains("already enrolled as \"alice\""), "{}", stderr(&dup));
    let own = tessera(&["enroll", &code_a, "--name", "me", "--home", &ha], &[]);
    assert!(stderr(&own).contains("your own"), "{}", stderr(&own));

    // Alice moves to another relay: Bob enrols her new code under the same name, the contact's relays are
    // replaced, and the safety code he is shown is the one Alice's side computes for it.
    let new_a = tessera(&["invite", "--home", &ha, "--relay", "ws://127.0.0.1:9001"], &[]);
    let code_a2 = stdout(&new_a).trim().to_owned();
    let update = tessera(&["enroll", &code_a2, "--name", "alice", "--home", &hb], &[]);
    assert!(update.status.success(), "{}", stderr(&update));
    assert!(stdout(&update).contains("updated alice"), "{}", stdout(&update));
    let contacts = std::fs::read_to_string(b.join("contacts.json")).unwrap();
    assert!(contacts.contains("ws://127.0.0.1:9001") && !contacts.contains("ws://127.0.0.1:9000"), "{contacts}");
    let alice_side = tessera(&["safety", "bob", "--home", &ha], &[]);
    assert_eq!(safety(&update), safety(&alice_side));
    assert_ne!(safety(&update), safety(&enroll_b), "the code covers the relays");
    let again = tessera(&["enroll", &code_a2, "--name", "alice", "--home", &hb], &[]);
    assert!(stdout(&again).contains("already enrolled with this invite"), "{}", stdout(&again));
    // Another key under a taken name is still refused: Carol's code enrolled as "alice".
    let hc = home_arg(&tmp.path().join("carol"));
    assert!(tessera(&["id", "new", "--home", &hc], &[]).status.success());
    let code_c = stdout(&tessera(&["invite", "--home", &hc], &[])).trim().to_owned();
    let other = tessera(&["enroll", &code_c, "--name", "alice", "--home", &hb], &[]);
    assert_eq!(other.status.code(), Some(1), "{}", stderr(&other));
    assert!(stderr(&other).contains("alice"), "{}", stderr(&other));
}

#[test]
fn malformed_invites_and_names_fail_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let h = home_arg(&tmp.path().join("h"));
    assert!(tessera(&["id", "new", "--home", &h], &[]).status.success());
    let code = stdout(&tessera(&["invite", "--home", &h], &[])).trim().to_owned();
    let mut tampered = code.clone().into_bytes();
    let last = tampered.len() - 5;
    tampered[last] = if tampered[last] == b'q' { b'p' } else { b'q' };
    let tampered = String::from_utf8(tampered).unwrap();
    let other = tempfile::tempdir().unwrap();
    let o = home_arg(other.path());
    std::fs::set_permissions(other.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(tessera(&["id", "new", "--home", &o], &[]).status.success());

    let bad = tessera(&["enroll", &tampered, "--name", "x", "--home", &o], &[]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("checksum does not match"), "{}", stderr(&bad));
    let garbage = tessera(&["enroll", "hello", "--name", "x", "--home", &o], &[]);
    assert!(stderr(&garbage).contains("not a Tessera invite code"), "{}", stderr(&garbage));
    let bad_name = tessera(&["enroll", &code, "--name", "a b", "--home", &o], &[]);
    assert!(stderr(&bad_name).contains("contact name"), "{}", stderr(&bad_name));
    let bad_relay = tessera(&["invite", "--home", &h, "--relay", "http://x"], &[]);
    assert!(stderr(&bad_relay).contains("ws:// or wss://"), "{}", stderr(&bad_relay));
    let no_home = tessera(&["invite", "--home", &home_arg(&tmp.path().join("missing"))], &[]);
    assert_eq!(no_home.status.code(), Some(1));
}

#[test]
fn passphrase_protected_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let h = home_arg(&tmp.path().join("h"));
    let env = [("TESSERA_TEST_PASS", "correct horse battery staple")];
    let new = tessera(&["id", "new", "--home", &h, "--passphrase-env", "TESSERA_TEST_PASS", "--danger-weak-kdf"], &env);
    assert!(new.status.success(), "{}", stderr(&new));
    let text = std::fs::read_to_string(tmp.path().join("h/identity.json")).unwrap();
    assert!(text.contains("argon2id-aes256gcm") && !text.contains("\"seed\""));

    let show = tessera(&["id", "show", "--home", &h], &[]);
    assert!(stdout(&show).contains("sealed under a passphrase"));
    let check = tessera(&["id", "show", "--home", &h, "--check", "--passphrase-env", "TESSERA_TEST_PASS"], &env);
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(stdout(&check).contains("unlocked successfully"));
    let wrong = tessera(
        &["id", "show", "--home", &h, "--check", "--passphrase-env", "TESSERA_TEST_PASS"],
        &[("TESSERA_TEST_PASS", "wrong")],
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr(&wrong).contains("wrong passphrase"), "{}", stderr(&wrong));
    let missing = tessera(&["id", "show", "--home", &h, "--check"], &[]);
    assert!(stderr(&missing).contains("protected by a passphrase"), "{}", stderr(&missing));
    let unset = tessera(&["id", "show", "--home", &h, "--check", "--passphrase-env", "TESSERA_NOPE"], &[]);
    assert!(stderr(&unset).contains("TESSERA_NOPE is not set"), "{}", stderr(&unset));
}
