//! Members: names, keys, tokens, reaping, client-only nodes, and a
//! relay restart.

use super::*;

#[test]
fn names_are_unique_and_valid() {
    let mut r = registry();
    let now = Instant::now();
    r.register_now(reg("alice", 1), now).unwrap();
    let other_key = Registration {
        public_key: key_of("mallory").public_key(),
        ..reg("alice", 2)
    };
    assert_eq!(
        r.register_now(other_key, now).unwrap_err(),
        RegistryError::NameTaken("alice".into())
    );
    assert!(matches!(
        r.register_now(reg("a:b", 2), now),
        Err(RegistryError::InvalidName(_))
    ));
    assert!(matches!(
        r.register_now(reg("", 2), now),
        Err(RegistryError::InvalidName(_))
    ));
}

#[test]
fn re_registration_with_token_keeps_identity() {
    let mut r = registry();
    let now = Instant::now();
    let (alice, _) = r.register_now(reg("alice", 1), now).unwrap();
    let again = Registration {
        session_token: alice.session_token.clone(),
        ..reg("alice", 1)
    };
    let (same, _) = r.register_now(again, now).unwrap();
    assert_eq!(same.record.node_id, alice.record.node_id);
}

#[test]
fn host_reasserts_epoch_after_relay_restart() {
    let mut r = registry();
    let now = Instant::now();
    let follower = with_lobby(reg("bob", 2), Some(term(7, "alice")), false, 0);
    let (_, host) = r.register_now(follower, now).unwrap();
    assert!(
        host.is_none(),
        "a member that knew a host waits for it to re-assert"
    );
    let alice_id = trust::node_id_of(&key_of("alice").public_key());
    let hosting = with_lobby(
        Registration {
            session_token: format!("{alice_id}.secret"),
            ..reg("alice", 1)
        },
        Some(at(term(9, "alice"), 1)),
        true,
        0,
    );
    let (a, host) = r.register_now(hosting, now).unwrap();
    let host = host.unwrap();
    assert_eq!((host.epoch, &host.node_id), (9, &a.record.node_id));
    assert_eq!(a.session_token, format!("{alice_id}.secret"));
    // A term naming another node cannot be re-asserted.
    let bob_claims = with_lobby(reg("bob", 2), Some(term(10, "alice")), true, 0);
    assert!(matches!(
        r.register_now(bob_claims, now),
        Err(RegistryError::NotHost(_))
    ));
    assert_eq!(r.host().unwrap().epoch, 9);
    assert!(r.check_one(now + LEASE / 2).is_none());
}

/// A vacant "lobby" after a relay restart: alice hosted term 7 and does
/// not come back; bob saw term 7 and holds nothing.
fn vacant_lobby(t0: Instant) -> Registry {
    let mut r = registry();
    let (b, host) = r
        .register_now(
            with_lobby(reg("bob", 2), Some(term(7, "alice")), false, 0),
            t0,
        )
        .unwrap();
    assert!(host.is_none());
    r.watch_started(&b.record.node_id, &b.session_token)
        .unwrap();
    assert!(r.check_one(t0 + LEASE / 2).is_none());
    r
}

/// `name` claiming "lobby" at term 7 with a replica of `head` entries that
/// follows term `replica_term`.
fn holder(name: &str, port: u16, head: u64, replica_term: u64) -> Registration {
    let mut reg = with_lobby(reg(name, port), Some(term(7, "alice")), false, head);
    reg.rooms[0].replica_term = replica_term;
    reg
}

#[test]
fn a_vacancy_waits_for_the_newest_terms_successor_then_takes_the_freshest() {
    let t0 = Instant::now();
    let mut r = vacant_lobby(t0);
    // carol holds more, but from an older term: not what alice acknowledged.
    r.join_with(holder("carol", 3, 40, 5), true, t0);
    let wait = lease::MIN_VACANCY_WAIT;
    assert!(r.check_one(t0 + LEASE * 2).is_none(), "waits for alice");
    assert!(
        r.check_one(t0 + wait * 2).is_none(),
        "waits for term 7's successor"
    );
    let promoted = r.check_one(t0 + wait * 4 + LEASE).unwrap();
    assert_eq!((promoted.epoch, promoted.name.as_str()), (8, "carol"));
}

#[test]
fn a_vacancy_goes_to_the_newest_terms_successor_as_soon_as_it_is_back() {
    let t0 = Instant::now();
    let mut r = vacant_lobby(t0);
    r.join_with(holder("carol", 3, 40, 5), true, t0);
    let wait = lease::MIN_VACANCY_WAIT;
    assert!(r.check_one(t0 + wait * 2).is_none());
    // dave, term 7's successor, registers again: the room is his at once.
    r.enter(holder("dave", 4, 35, 7), true, t0 + wait * 2);
    let promoted = r.check_one(t0 + wait * 2).unwrap();
    assert_eq!((promoted.epoch, promoted.name.as_str()), (8, "dave"));
}

#[test]
fn a_host_back_after_a_restart_that_dies_before_naming_a_successor_waits_for_its_terms_copy() {
    let t0 = Instant::now();
    let mut r = registry();
    // alice re-asserts term 7 at her address after the relay restarted.
    let alice_id = trust::node_id_of(&key_of("alice").public_key());
    let hosting = with_lobby(
        Registration {
            session_token: format!("{alice_id}.secret"),
            ..reg("alice", 1)
        },
        Some(at(term(7, "alice"), 1)),
        true,
        30,
    );
    let alice = r.enter(hosting, true, t0);
    assert_eq!(r.host().map(|h| h.epoch), Some(7));
    // carol holds more, but from an older term: not what alice acknowledged.
    r.join_with(holder("carol", 3, 40, 5), true, t0);
    // alice dies before her first renewal names a successor.
    r.watch_ended(&alice.record.node_id, t0);
    let later = t0 + LEASE * 2;
    assert!(r.check_one(later).is_none(), "waits for term 7's copy");
    // dave, term 7's successor, registers again: the room is his.
    r.enter(holder("dave", 4, 35, 7), true, later);
    let promoted = r.check_one(later).expect("a new host");
    assert_eq!((promoted.epoch, promoted.name.as_str()), (8, "dave"));
}

#[test]
fn a_host_back_after_a_restart_that_dies_goes_to_the_freshest_after_the_wait() {
    let t0 = Instant::now();
    let mut r = registry();
    let alice_id = trust::node_id_of(&key_of("alice").public_key());
    let hosting = with_lobby(
        Registration {
            session_token: format!("{alice_id}.secret"),
            ..reg("alice", 1)
        },
        Some(at(term(7, "alice"), 1)),
        true,
        30,
    );
    let alice = r.enter(hosting, true, t0);
    r.join_with(holder("carol", 3, 40, 5), true, t0);
    r.watch_ended(&alice.record.node_id, t0);
    let wait = lease::MIN_VACANCY_WAIT;
    assert!(r.check_one(t0 + wait * 2).is_none(), "still waiting");
    let promoted = r.check_one(t0 + wait * 4 + LEASE).expect("a new host");
    assert_eq!(promoted.name, "carol");
}

#[test]
fn a_forgotten_room_created_again_waits_for_a_copy_of_its_last_term() {
    let t0 = Instant::now();
    let mut r = registry();
    let alice = r.join("alice", 1, t0);
    let bob = r.join("bob", 2, t0);
    let epoch = r.host().expect("a first host").epoch;
    r.renew_in(&alice, LOBBY, epoch, &bob.record.node_id, t0)
        .unwrap();
    // Both stop for longer than the member grace: the relay forgets them,
    // and the room with them.
    let grace = Duration::from_secs(3);
    r.watch_ended(&alice.record.node_id, t0);
    r.watch_ended(&bob.record.node_id, t0);
    let later = t0 + grace * 2;
    assert_eq!(r.reap(later, grace).len(), 2);
    assert!(r.room(LOBBY).is_err(), "forgotten");
    // A newcomer holding nothing registers first: it must not take the
    // room, whose history alice and bob hold.
    r.join_with(reg("carol", 3), true, later);
    let wait = lease::MIN_VACANCY_WAIT;
    assert!(r.check_one(later + wait * 2).is_none(), "waits for a copy");
    let mut back = with_lobby(reg("bob", 2), Some(term(epoch, "alice")), false, 30);
    back.rooms[0].replica_term = epoch;
    r.enter(back, true, later + wait * 2);
    let promoted = r.check_one(later + wait * 2).expect("a new host");
    assert_eq!(promoted.name, "bob");
    assert!(promoted.epoch > epoch);
}

#[test]
fn silent_members_are_reaped_after_grace() {
    let mut r = registry();
    let t0 = Instant::now();
    let (a, _) = r.register_now(reg("alice", 1), t0).unwrap();
    let (b, _) = r.register_now(reg("bob", 2), t0).unwrap();
    r.watch_started(&a.record.node_id, &a.session_token)
        .unwrap();
    let grace = Duration::from_secs(2);
    assert!(r.reap(t0 + Duration::from_secs(1), grace).is_empty());
    assert_eq!(r.reap(t0 + Duration::from_secs(3), grace), vec!["bob"]);
    assert!(r.lookup("alice").is_some());
    assert!(r.lookup(&b.record.name).is_none());
    // bob's name is free again, for anyone.
    r.register_now(
        Registration {
            public_key: key_of("mallory").public_key(),
            ..reg("bob", 3)
        },
        t0,
    )
    .unwrap();
}

#[test]
fn a_name_is_bound_to_its_key() {
    let mut r = registry();
    let t0 = Instant::now();
    let (bob, _) = r.register_now(reg("bob", 1), t0).unwrap();
    let stranger = Registration {
        public_key: key_of("mallory").public_key(),
        ..reg("bob", 2)
    };
    assert_eq!(
        r.register_now(stranger.clone(), t0).unwrap_err(),
        RegistryError::NameTaken("bob".into())
    );
    // The same key reclaims the name at once (a restarted node), same id.
    let (again, _) = r.register_now(reg("bob", 3), t0).unwrap();
    assert_eq!(again.record.node_id, bob.record.node_id);
    assert_eq!(again.record.address, "127.0.0.1:3");
    let cert = again.record.certificate.as_ref().unwrap();
    let grant = r.key.verifying().verify_name(cert, WALL_MS).unwrap();
    assert_eq!(grant.name, "bob");
    assert_eq!(grant.public_key, key_of("bob").public_key());
}

#[test]
fn an_earlier_name_certificate_takes_the_name_back() {
    let mut r = registry();
    let t0 = Instant::now();
    // After a relay restart a stranger registers bob's name first...
    let stranger = Registration {
        public_key: key_of("mallory").public_key(),
        ..reg("bob", 2)
    };
    let (s, _) = r.register_now(stranger.clone(), t0).unwrap();
    // ...then bob shows the certificate he got before the restart.
    let bob = Registration {
        name_claimed_at: Some(WALL_MS - 60_000),
        ..reg("bob", 1)
    };
    let (b, _) = r.register_now(bob, t0).unwrap();
    assert_eq!(r.lookup("bob").unwrap().node_id, b.record.node_id);
    assert!(r.authenticate(&s.record.node_id, &s.session_token).is_err());
    // The stranger's own (later) certificate does not win it back.
    let comeback = Registration {
        name_claimed_at: Some(WALL_MS),
        ..stranger
    };
    assert_eq!(
        r.register_now(comeback, t0).unwrap_err(),
        RegistryError::NameTaken("bob".into())
    );
}

#[test]
fn epochs_never_wrap() {
    let mut r = registry();
    let t0 = Instant::now();
    let top = with_lobby(
        reg("alice", 1),
        Some(at(term(u64::MAX, "alice"), 1)),
        true,
        0,
    );
    let (a, host) = r.register_now(top, t0).unwrap();
    assert_eq!(host.unwrap().epoch, u64::MAX);
    let (b, _) = r.register_now(reg("bob", 2), t0).unwrap();
    r.watch_started(&b.record.node_id, &b.session_token)
        .unwrap();
    assert!(r.check_one(t0 + LEASE * 3).is_none(), "no epoch 0");
    assert!(r
        .report_migration(
            &a.record.node_id,
            &a.session_token,
            LOBBY,
            u64::MAX,
            &b.record.node_id,
            t0
        )
        .is_err());
}

#[test]
fn a_client_only_node_registers_without_an_address() {
    let mut r = registry();
    let now = Instant::now();
    let dave = r.join_with(client_only("dave"), true, now);
    assert!(dave.record.client_only && dave.record.address.is_empty());
    assert!(!r.members[&dave.record.node_id].can_host());
    assert!(
        r.host().is_some_and(|h| h.certificate.is_none()),
        "a client-only first member is not made host: {:?}",
        r.host()
    );
    let record = r.lookup("dave").unwrap();
    assert!(record.client_only && record.address.is_empty());
    // Everyone else still needs an address.
    let mut no_address = reg("erin", 0);
    no_address.address.clear();
    assert_eq!(
        r.register_now(no_address, now).unwrap_err(),
        RegistryError::InvalidAddress
    );
    assert_eq!(check_fields("dave", "", true), Ok(()));
    assert_eq!(
        check_fields("dave", "", false),
        Err(RegistryError::InvalidAddress)
    );
    // The next member that can host becomes host.
    let alice = r.join("alice", 1, now);
    assert_eq!(r.current_host(LOBBY).unwrap().node_id, alice.record.node_id);
}

#[test]
fn a_client_only_node_is_never_made_host() {
    let mut r = registry();
    let t0 = Instant::now();
    let a = r.join("alice", 1, t0);
    let d = r.join_with(client_only("dave"), true, t0);
    let b = r.join("bob", 2, t0);
    // Not as a migration target...
    assert_eq!(
        r.report_migration(
            &a.record.node_id,
            &a.session_token,
            LOBBY,
            1,
            &d.record.node_id,
            t0
        ),
        Err(RegistryError::CannotHost {
            name: "dave".into(),
            why: "it is a client-only member"
        })
    );
    assert_eq!(
        r.host().unwrap().epoch,
        1,
        "a refused migration changes nothing"
    );
    // ...nor successor (the relay says so), nor promoted.
    let unhostable = r
        .renew_lease_lobby(
            &a.record.node_id,
            &a.session_token,
            1,
            &d.record.node_id,
            t0,
        )
        .unwrap();
    assert_eq!(unhostable, vec![d.record.node_id.clone()]);
    let promoted = r.check_one(t0 + LEASE * 2).unwrap();
    assert_eq!(promoted.name, "bob");
    // With only the client-only member left, nobody is promoted.
    r.unregister(&a.record.node_id, &a.session_token).unwrap();
    r.unregister(&b.record.node_id, &b.session_token).unwrap();
    let said = r.check_one(t0 + LEASE * 10).unwrap();
    assert!(said.no_host_reason.contains("client-only: 1,"), "{said:?}");
}

#[test]
fn after_a_restart_a_name_stays_with_its_key_for_the_grace() {
    let (mut r, t0) = (registry(), Instant::now());
    let grace = Duration::from_secs(3);
    r.reserve_names(
        [
            ("alice".to_string(), id_of("alice")),
            ("bob".to_string(), id_of("bob")),
        ],
        t0 + grace,
    );
    let stolen = |name: &str| Registration {
        public_key: key_of("mallory").public_key(),
        ..reg(name, 9)
    };
    // A stranger registering first gets nothing while the binding holds.
    assert_eq!(
        r.register_now(stolen("alice"), t0).unwrap_err(),
        RegistryError::NameTaken("alice".into())
    );
    // Its own key takes the name back at once.
    let (alice, _) = r.register_now(reg("alice", 1), t0).unwrap();
    assert_eq!(alice.record.node_id, id_of("alice"));
    // A name whose key did not come back is free after the grace.
    assert!(r.register_now(stolen("bob"), t0 + grace / 2).is_err());
    assert!(r.register_now(stolen("bob"), t0 + grace).is_ok());
}

/// `name` registered under mallory's key.
fn mallory_as(name: &str, port: u16) -> Registration {
    Registration {
        public_key: key_of("mallory").public_key(),
        ..reg(name, port)
    }
}

#[test]
fn names_that_look_like_a_members_are_refused() {
    let (mut r, t0) = (registry(), Instant::now());
    let (a, _) = r.register_now(reg("rust-a", 1), t0).unwrap();
    for look_alike in ["rust\u{2010}a", "rust-\u{430}", "rust\u{FF0D}a"] {
        let refused = r.register_now(mallory_as(look_alike, 2), t0).unwrap_err();
        assert_eq!(
            refused,
            RegistryError::NameConfusable {
                name: look_alike.into(),
                held: "rust-a".into(),
            }
        );
        let status = tonic::Status::from(refused);
        assert_eq!(status.code(), tonic::Code::AlreadyExists);
        assert!(
            status.message().contains("looks like \"rust-a\""),
            "{status}"
        );
        assert!(status.message().contains("(spelled rust"), "{status}");
        assert!(r.lookup(look_alike).is_none());
    }
    // Different names are fine, and so is the same name for its own key,
    // or a look-alike of its own name.
    r.register_now(mallory_as("rust-b", 2), t0).unwrap();
    let (again, _) = r.register_now(reg("rust-a", 3), t0).unwrap();
    assert_eq!(again.record.node_id, a.record.node_id);
    let renamed = Registration {
        name: "rust\u{2010}a".into(),
        ..reg("rust-a", 3)
    };
    let (renamed, _) = r.register_now(renamed, t0).unwrap();
    assert!(r.lookup("rust-a").is_none());
    // Once its holder is gone, a look-alike is free.
    r.unregister(&renamed.record.node_id, &renamed.session_token)
        .unwrap();
    let carol = Registration {
        public_key: key_of("carol").public_key(),
        ..reg("rust-\u{430}", 4)
    };
    r.register_now(carol, t0).unwrap();
}

#[test]
fn an_earlier_name_certificate_takes_a_look_alike_back() {
    let (mut r, t0) = (registry(), Instant::now());
    // After a relay restart a stranger registers a look-alike first...
    let (s, _) = r.register_now(mallory_as("b\u{43E}b", 2), t0).unwrap();
    let plain = r.register_now(reg("bob", 1), t0).unwrap_err();
    assert!(matches!(plain, RegistryError::NameConfusable { .. }));
    // ...then bob shows the certificate he got before the restart.
    let bob = Registration {
        name_claimed_at: Some(WALL_MS - 60_000),
        ..reg("bob", 1)
    };
    r.register_now(bob, t0).unwrap();
    assert!(r.authenticate(&s.record.node_id, &s.session_token).is_err());
    assert!(r.lookup("b\u{43E}b").is_none());
}

#[test]
fn after_a_restart_look_alikes_of_a_kept_name_wait_for_the_grace() {
    let (mut r, t0) = (registry(), Instant::now());
    let grace = Duration::from_secs(3);
    r.reserve_names([("alice".to_string(), id_of("alice"))], t0 + grace);
    let refused = r
        .register_now(mallory_as("\u{430}lice", 9), t0)
        .unwrap_err();
    assert!(matches!(refused, RegistryError::NameConfusable { .. }));
    assert!(r
        .register_now(mallory_as("\u{430}lice", 9), t0 + grace)
        .is_ok());
}

#[test]
fn a_room_whose_members_all_stopped_goes_to_the_copy_of_its_newest_term() {
    let t0 = Instant::now();
    let mut r = registry();
    let alice = r.join("alice", 1, t0);
    let bob = r.join("bob", 2, t0);
    let epoch = r.host().expect("a first host").epoch;
    assert_eq!(r.host().map(|h| h.name), Some("alice".into()));
    r.renew_in(&alice, LOBBY, epoch, &bob.record.node_id, t0)
        .unwrap();
    // Every member stops: nobody can take the room, its term ends.
    r.watch_ended(&alice.record.node_id, t0);
    r.watch_ended(&bob.record.node_id, t0);
    let later = t0 + LEASE * 4;
    r.check_lease(later);
    assert!(r.room(LOBBY).is_ok_and(|room| room.term_ended()));
    // bob comes back first, with a copy of an older term: the room waits
    // for the copy that follows its newest term.
    let back = |name: &str, port: u16, member: &Member, head: u64, replica_term: u64| {
        let mut reg = with_lobby(reg(name, port), Some(term(epoch, "alice")), false, head);
        reg.rooms[0].replica_term = replica_term;
        Registration {
            session_token: member.session_token.clone(),
            ..reg
        }
    };
    let stale = back("bob", 2, &bob, 40, epoch - 1);
    r.enter(stale, true, later);
    assert!(r.check_one(later).is_none(), "waits for alice's copy");
    let whole = back("alice", 1, &alice, 30, epoch);
    r.enter(whole, true, later);
    let promoted = r.check_one(later).expect("a new host");
    assert_eq!(promoted.name, "alice");
    assert!(promoted.epoch > epoch);
}
