//! Catching up in the pure client state (issue 12, items 2 and 3): a newly enrolled contact is covered
//! from the oldest window the relay keeps, an existing one from the window after the last it was covered
//! through; a lapse longer than the retention is reported as a gap, once; coverage survives a restart only
//! once confirmed; past filters are those sent while their grid chunk was current.
//!
//! ```text
//! window 10 s, horizon 6 windows ahead, retention 6 windows (60 s)
//! T0 = 1_700_000_003: main subscription [1_699_999_990, 1_700_000_060]; oldest kept window 1_699_999_940
//! ```

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tessera::client::{ClientConfig, ClientState, Contact, CoverageGap, Identity, PersistedState};
use tessera::proto::frame::{Subscribe, SubscribeEntry};
use tessera::proto::Proof;

const ALICE: [u8; 32] = [0xA1; 32];
const BOB: [u8; 32] = [0xB0; 32];
const T0: u64 = 1_700_000_003;

fn config() -> ClientConfig {
    ClientConfig { ahead_windows: 6, behind_windows: 6, retention_s: 60, renew_every_windows: 2, ..Default::default() }
}

fn client(me: [u8; 32], other: [u8; 32], name: &str, persisted: PersistedState) -> ClientState {
    let contact = Contact::new(name, *Identity::from_seed(&other).public(), vec![]).unwrap();
    ClientState::new(Identity::from_seed(&me), vec![contact], persisted, config()).unwrap()
}

fn entries(frames: &[Subscribe]) -> Vec<&SubscribeEntry> {
    frames.iter().flat_map(|f| &f.entries).collect()
}

/// Whether some entry would match `proof` (its bucket, a range holding its window, its fingerprint).
fn covered(frames: &[Subscribe], proof: &Proof) -> bool {
    let v = proof.view();
    entries(frames).iter().any(|e| {
        e.bucket == v.bucket()
            && (e.window_from_s..=e.window_to_s).contains(&v.window_start())
            && e.filter.contains_fingerprint(v.fingerprint())
    })
}

/// One sync as the session does it: catch up, subscribe, (SUBSCRIBED, FETCH), confirm.
fn sync(state: &mut ClientState, now_s: u64, rng: &mut ChaCha20Rng) -> (Vec<Subscribe>, Option<CoverageGap>) {
    let catch_up = state.catch_up(now_s, rng).unwrap();
    state.subscribe_now(now_s, rng).unwrap();
    state.confirm_coverage();
    (catch_up.frames, catch_up.gap)
}

#[test]
fn a_new_contact_is_caught_up_from_the_oldest_retained_window() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut alice = client(ALICE, BOB, "bob", PersistedState::default());
    let mut bob = client(BOB, ALICE, "alice", PersistedState::default());
    // Alice sent before Bob enrolled her (50 s and 20 s ago, windows 1_699_999_950 and 1_699_999_980).
    let early = alice.prepare_send("bob", "hi", T0 - 50, &mut rng).unwrap();
    let later = alice.prepare_send("bob", "still there?", T0 - 20, &mut rng).unwrap();

    assert_eq!(bob.covered_through_s("alice"), None);
    let catch_up = bob.catch_up(T0, &mut rng).unwrap();
    assert_eq!((catch_up.from_s, catch_up.gap), (Some(1_699_999_940), None), "never covered: no gap to report");
    let past = &catch_up.frames;
    assert!(entries(past).iter().all(|e| e.window_from_s >= 1_699_999_940), "nothing older than retention");
    // Every range ends at the main subscription's first window: the relay refuses ranges ending earlier.
    assert!(entries(past).iter().all(|e| e.window_to_s == 1_699_999_990));
    assert!(covered(past, &early[0]) && covered(past, &later[0]));
    let main = bob.subscribe_now(T0, &mut rng).unwrap();
    assert_eq!(past[0].subscriber, main[0].subscriber, "the catch-up reuses the subscription's ids");
    assert!(bob.has_unconfirmed_coverage());
    assert_eq!(bob.covered_through_s("alice"), None, "not covered before the relay acknowledged it");

    // What the relay matched in the past windows opens (the expectations reach back that far).
    assert_eq!(bob.handle_deliver(early[0].view()).unwrap().text, "hi");
    assert_eq!(bob.handle_deliver(later[0].view()).unwrap().text, "still there?");
    bob.confirm_coverage();
    assert_eq!(bob.covered_through_s("alice"), Some(1_700_000_060));
    assert!(!bob.has_unconfirmed_coverage());

    // Half a minute later the subscription still covers every window since: nothing to catch up.
    let catch_up = bob.catch_up(T0 + 30, &mut rng).unwrap();
    assert!(catch_up.frames.is_empty() && catch_up.gap.is_none(), "{catch_up:?}");
}

#[test]
fn a_lapse_longer_than_retention_is_reported_once() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut bob = client(BOB, ALICE, "alice", PersistedState::default());
    sync(&mut bob, T0, &mut rng);
    assert_eq!(bob.covered_through_s("alice"), Some(1_700_000_060));

    // Back within the horizon plus retention: the windows after 1_700_000_060 are still kept.
    let soon = T0 + 100; // window 1_700_000_100: oldest kept 1_700_000_040
    let catch_up = bob.catch_up(soon, &mut rng).unwrap();
    assert_eq!((catch_up.from_s, catch_up.gap), (Some(1_700_000_070), None));
    bob.subscription_lost(); // crash before SUBSCRIBED: nothing confirmed…
    assert_eq!(bob.covered_through_s("alice"), Some(1_700_000_060));
    assert_eq!(bob.catch_up(soon, &mut rng).unwrap().from_s, Some(1_700_000_070), "…so it is caught up again");

    // Away for an hour: windows 1_700_000_070 ..< oldest are gone.
    let late = T0 + 3_600; // window 1_700_003_600: oldest kept 1_700_003_540
    let (frames, gap) = sync(&mut bob, late, &mut rng);
    assert_eq!(gap, Some(CoverageGap { from_s: 1_700_000_070, to_s: 1_700_003_540, retention_s: 60 }));
    assert!(entries(&frames).iter().map(|e| e.window_from_s).min() == Some(1_700_003_540));
    assert_eq!(bob.covered_through_s("alice"), Some(1_700_003_660));
    // Confirmed: the next sync neither catches up nor reports the gap again.
    let (frames, gap) = sync(&mut bob, late + 20, &mut rng);
    assert!(frames.is_empty() && gap.is_none());
}

#[test]
fn coverage_survives_a_restart_once_confirmed() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut bob = client(BOB, ALICE, "alice", PersistedState::default());
    bob.catch_up(T0, &mut rng).unwrap();
    bob.subscribe_now(T0, &mut rng).unwrap();
    // Saved between SUBSCRIBE and SUBSCRIBED (new subscriber ids must be): no coverage recorded.
    let unconfirmed = bob.persisted();
    assert_eq!(unconfirmed.covered_through_s.as_ref().map(|m| m.len()), Some(0));
    let mut restarted = client(BOB, ALICE, "alice", unconfirmed);
    assert_eq!(restarted.catch_up(T0 + 1, &mut rng).unwrap().from_s, Some(1_699_999_940));

    bob.confirm_coverage();
    let restarted = client(BOB, ALICE, "alice", bob.persisted());
    assert_eq!(restarted.covered_through_s("alice"), Some(1_700_000_060));

    // A state file from before coverage was recorded: its contacts count as covered through its last
    // subscription; a contact it does not know is new.
    let mut legacy = bob.persisted();
    legacy.covered_through_s = None;
    let carol = Contact::new("carol", *Identity::from_seed(&[0xC4; 32]).public(), vec![]).unwrap();
    let alice = Contact::new("alice", *Identity::from_seed(&ALICE).public(), vec![]).unwrap();
    let old = ClientState::new(Identity::from_seed(&BOB), vec![alice, carol], legacy, config()).unwrap();
    assert_eq!((old.covered_through_s("alice"), old.covered_through_s("carol")), (Some(1_700_000_060), None));
}

#[test]
fn past_filters_are_those_sent_while_their_chunk_was_current() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    // One contact: grid chunks of 8 windows (80 s), e.g. [1_699_999_920, 1_699_999_990].
    let mut then = client(BOB, ALICE, "alice", PersistedState::default());
    let sent_then = then.subscribe_now(1_699_999_955, &mut rng).unwrap();
    let chunk_then: Vec<_> = entries(&sent_then).into_iter().filter(|e| e.window_to_s <= 1_699_999_990).collect();
    assert_eq!(chunk_then.len(), 64);

    // A client enrolling Alice later catches the chunk up from the oldest kept window 1_699_999_950: the
    // windows before it left the table and are recomputed, so every filter comes out bit for bit the same.
    let mut now = client(BOB, ALICE, "alice", PersistedState::default());
    let catch_up = now.catch_up(T0 + 10, &mut rng).unwrap();
    let chunk_now: Vec<_> = entries(&catch_up.frames).into_iter().filter(|e| e.window_from_s < 1_700_000_000).collect();
    assert_eq!(chunk_now.len(), 64);
    for e in chunk_now {
        assert_eq!(e.window_from_s, 1_699_999_950);
        assert!(chunk_then.iter().any(|f| f.bucket == e.bucket && f.filter == e.filter), "bucket {}", e.bucket);
    }
}
