//! The key directory: permissions, atomic files, passphrase round trip and refusal of unsafe states.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tessera::client::persist::PersistedContact;
use tessera::client::store::{CONTACTS_FILE, FILE_BYTES_MAX, IDENTITY_FILE, STATE_FILE};
use tessera::client::{
    Contact, ContactError, Home, Identity, KdfParams, KeyFile, KeyFileError, PersistedState, StoreError,
};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn directory_and_files_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/home");
    let home = Home::create(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    let id = Identity::from_seed(&[1; 32]);
    home.write_identity(&KeyFile::plain(&id), false).unwrap();
    home.write_contacts(&[Contact::new("bob", *Identity::from_seed(&[2; 32]).public(), vec![]).unwrap()]).unwrap();
    home.write_state(&PersistedState::default()).unwrap();
    for name in [IDENTITY_FILE, CONTACTS_FILE, STATE_FILE] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.len(), 3, "no temporary file left behind: {names:?}");
    assert!(matches!(home.write_identity(&KeyFile::plain(&id), false), Err(StoreError::IdentityExists(_))));
    assert_eq!(home.read_identity().unwrap().unlock(None).unwrap().public(), id.public());
}

#[test]
fn unsafe_permissions_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let home = Home::create(&dir).unwrap();
    home.write_identity(&KeyFile::plain(&Identity::from_seed(&[1; 32])), false).unwrap();

    fs::set_permissions(dir.join(IDENTITY_FILE), fs::Permissions::from_mode(0o644)).unwrap();
    match home.read_identity() {
        Err(StoreError::InsecurePermissions { mode, path }) => {
            assert_eq!(mode, 0o644);
            assert_eq!(path, dir.join(IDENTITY_FILE));
        }
        other => panic!("expected InsecurePermissions, got {other:?}"),
    }
    fs::set_permissions(dir.join(IDENTITY_FILE), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(matches!(Home::open(&dir), Err(StoreError::InsecurePermissions { mode: 0o755, .. })));
    assert!(matches!(Home::create(&dir), Err(StoreError::InsecurePermissions { mode: 0o755, .. })));
    let file = tmp.path().join("plain-file");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(Home::open(&file), Err(StoreError::NotADirectory(_))));
}

#[test]
fn passphrase_round_trip_through_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::create(tmp.path().join("h").as_path()).unwrap();
    assert!(matches!(home.read_identity(), Err(StoreError::NoIdentity(_))));
    let id = Identity::from_seed(&[3; 32]);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let sealed = KeyFile::encrypted(&id, b"tr0ub4dor&3", KdfParams::DANGER_WEAK_FOR_TESTS, &mut rng).unwrap();
    home.write_identity(&sealed, false).unwrap();
    let on_disk = fs::read_to_string(home.path().join(IDENTITY_FILE)).unwrap();
    assert!(on_disk.contains("argon2id-aes256gcm"));
    assert!(!on_disk.contains("\"seed\""));
    let file = home.read_identity().unwrap();
    assert_eq!(file.public().unwrap(), *id.public(), "public key readable without the passphrase");
    assert_eq!(file.unlock(Some(b"tr0ub4dor&3")).unwrap().public(), id.public());
    assert_eq!(file.unlock(Some(b"Tr0ub4dor&3")).unwrap_err(), KeyFileError::WrongPassphrase);
    assert_eq!(file.unlock(None).unwrap_err(), KeyFileError::PassphraseRequired);
    // The recommended parameters are what a real key file records.
    assert_eq!(KdfParams::RECOMMENDED, KdfParams { memory_kib: 65_536, passes: 3, lanes: 1 });
}

#[test]
fn contacts_and_state_round_trip_and_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::create(tmp.path().join("h").as_path()).unwrap();
    let me = *Identity::from_seed(&[1; 32]).public();
    assert_eq!(home.read_contacts(&me).unwrap(), vec![]);
    assert_eq!(home.read_state().unwrap(), PersistedState::default());
    let bob = Contact::new("bob", *Identity::from_seed(&[2; 32]).public(), vec!["wss://r.example".into()]).unwrap();
    let carol = Contact::new("carol", *Identity::from_seed(&[3; 32]).public(), vec![]).unwrap();
    home.write_contacts(&[bob.clone(), carol.clone()]).unwrap();
    assert_eq!(home.read_contacts(&me).unwrap(), vec![bob.clone(), carol]);
    // A hand-edited file with a duplicate name is refused with the contact error.
    let other = *Identity::from_seed(&[4; 32]).public();
    home.write_contacts(&[bob.clone(), Contact { public: other, ..bob.clone() }]).unwrap();
    assert!(matches!(home.read_contacts(&me), Err(StoreError::Contact(ContactError::DuplicateName(_)))));
    home.write_contacts(&[Contact { name: "me".into(), ..Contact::new("me", me, vec![]).unwrap() }]).unwrap();
    assert!(matches!(home.read_contacts(&me), Err(StoreError::Contact(ContactError::OwnKey))));

    let mut state = PersistedState::default();
    state.subscriber_secrets.push("00".repeat(32));
    state
        .contacts
        .insert("k".into(), PersistedContact { send_window_s: 10, send_next_seq: 3, received: vec![(10, 1)] });
    home.write_state(&state).unwrap();
    assert_eq!(home.read_state().unwrap(), state);
    fs::write(home.path().join(STATE_FILE), "{\"version\": 1, \"oops\": true}").unwrap();
    fs::set_permissions(home.path().join(STATE_FILE), fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(home.read_state(), Err(StoreError::Malformed { .. })));
}

#[test]
fn oversized_files_are_refused_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::create(tmp.path().join("h").as_path()).unwrap();
    home.write_state(&PersistedState::default()).unwrap();
    // Sparse: costs no disk.
    fs::OpenOptions::new().write(true).open(home.path().join(STATE_FILE)).unwrap().set_len(FILE_BYTES_MAX + 1).unwrap();
    assert!(matches!(home.read_state(), Err(StoreError::TooLarge(_))));
}

#[test]
fn home_resolution_order() {
    let explicit = Some(PathBuf::from("/a"));
    let env = Some("/b".into());
    let home = Some("/c".into());
    assert_eq!(Home::resolve(explicit, env.clone(), home.clone()).unwrap(), PathBuf::from("/a"));
    assert_eq!(Home::resolve(None, env, home.clone()).unwrap(), PathBuf::from("/b"));
    assert_eq!(Home::resolve(None, Some("".into()), home).unwrap(), PathBuf::from("/c/.tessera"));
    assert!(matches!(Home::resolve(None, None, None), Err(StoreError::NoHome)));
}
