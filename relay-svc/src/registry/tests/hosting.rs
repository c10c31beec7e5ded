//! Who hosts a room: first host, failover, reachability, migration.

use super::*;

#[test]
fn first_node_hosts_at_epoch_one_once_the_relay_reaches_it() {
    let mut r = registry();
    let now = Instant::now();
    let (alice, host) = r.register_now(reg("alice", 1), now).unwrap();
    assert!(host.is_none(), "not before its address was checked");
    r.watch_started(&alice.record.node_id, &alice.session_token)
        .unwrap();
    assert!(r.check_one(now).is_none());
    r.check_all(true, now);
    let host = r.check_one(now).unwrap();
    assert_eq!(host.epoch, 1);
    assert_eq!(host.node_id, alice.record.node_id);
    r.join("bob", 2, now);
    assert_eq!(
        r.host().unwrap().node_id,
        alice.record.node_id,
        "second node does not take over"
    );
}

#[test]
fn the_first_member_to_register_hosts_whichever_check_ends_first() {
    let mut r = registry();
    let now = Instant::now();
    let (alice, _) = r.register_now(reg("alice", 1), now).unwrap();
    let (bob, _) = r.register_now(reg("bob", 2), now).unwrap();
    for m in [&alice, &bob] {
        r.watch_started(&m.record.node_id, &m.session_token)
            .unwrap();
    }
    let _ = r.due_checks(now);
    r.check_member(&bob, true, now);
    assert!(r.check_one(now).is_none(), "waits for alice's check");
    r.check_member(&alice, true, now);
    let host = r.check_one(now).unwrap();
    assert_eq!((host.epoch, host.name.as_str()), (1, "alice"));
    // Had alice been unreachable, bob would host.
    let mut r = registry();
    let (alice, _) = r.register_now(reg("alice", 1), now).unwrap();
    r.watch_started(&alice.record.node_id, &alice.session_token)
        .unwrap();
    for _ in 0..3 {
        r.check_member(&alice, false, now);
    }
    let bob = r.join("bob", 2, now);
    assert_eq!(r.current_host(LOBBY).unwrap().node_id, bob.record.node_id);
}

#[test]
fn failover_waits_for_the_check_of_a_successor_not_checked_yet() {
    let mut r = registry();
    let t0 = Instant::now();
    let a = r.join("alice", 1, t0);
    // bob holds the freshest replica, but carol is the named successor.
    let bob = with_lobby(reg("bob", 2), None, false, 99);
    r.join_with(bob, true, t0);
    let (c, _) = r.register_now(reg("carol", 3), t0).unwrap();
    r.watch_started(&c.record.node_id, &c.session_token)
        .unwrap();
    let (aid, atok) = (&a.record.node_id, &a.session_token);
    let unhostable = r
        .renew_lease_lobby(aid, atok, 1, &c.record.node_id, t0)
        .unwrap();
    assert!(unhostable.is_empty(), "not decided yet: it may be named");
    let later = t0 + LEASE * 2;
    assert!(r.check_one(later).is_none(), "waits for carol's check");
    r.check_member(&c, true, later);
    let promoted = r.check_one(later).unwrap();
    assert_eq!((promoted.epoch, promoted.name.as_str()), (2, "carol"));
}

#[test]
fn a_successor_whose_checks_fail_for_a_while_still_takes_over() {
    let mut r = registry();
    let t0 = Instant::now();
    let a = r.join("alice", 1, t0);
    let b = r.join("bob", 2, t0);
    // carol looks fresher, but bob is the successor that holds the room.
    let carol = with_lobby(reg("carol", 3), None, false, 99);
    r.join_with(carol, true, t0);
    let (aid, atok) = (&a.record.node_id, &a.session_token);
    r.renew_lease_lobby(aid, atok, 1, &b.record.node_id, t0)
        .unwrap();
    // The relay's checks of bob fail (a loaded machine): he may not be
    // made host by a move, but he stays the successor.
    let now = t0 + CHECK_PERIOD;
    r.check_member(&b, false, now);
    r.check_member(&b, false, now);
    assert!(!r.members[&b.record.node_id].can_host());
    let unhostable = r
        .renew_lease_lobby(aid, atok, 1, &b.record.node_id, now)
        .unwrap();
    assert!(unhostable.is_empty(), "{unhostable:?}");
    let promoted = r.check_one(now + LEASE * 2).unwrap();
    assert_eq!(promoted.name, "bob");
}

#[test]
fn a_member_the_relay_cannot_reach_never_hosts_and_the_room_says_so() {
    let mut r = registry();
    let t0 = Instant::now();
    let hidden = r.join_with(reg("alice", 1), false, t0);
    // Retried soon, a few times, before it counts as unreachable.
    let mut now = t0;
    for _ in 0..4 {
        now += CHECK_PERIOD;
        r.check_all(false, now);
    }
    assert!(!r.members[&hidden.record.node_id].record.reachable);
    let said = r.check_one(now).unwrap();
    assert!(said.certificate.is_none() && said.node_id.is_empty());
    assert!(
        said.no_host_reason
            .contains("unreachable from the relay: 1,"),
        "{}",
        said.no_host_reason
    );
    assert!(matches!(
        r.current_host(LOBBY),
        Err(RegistryError::NoHostable(_))
    ));
    // A member it reaches takes the room at once.
    let bob = r.join("bob", 2, now);
    let host = r.current_host(LOBBY).unwrap();
    assert_eq!((host.epoch, &host.node_id), (1, &bob.record.node_id));
    assert!(host.no_host_reason.is_empty());
}

#[test]
fn one_failed_check_does_not_make_a_member_unreachable() {
    let mut r = registry();
    let mut now = Instant::now();
    let alice = r.join("alice", 1, now);
    let reachable = |r: &Registry| r.members[&alice.record.node_id].can_host();
    now += CHECK_PERIOD;
    r.check_all(false, now);
    assert!(reachable(&r), "one slow answer is not enough");
    now += CHECK_PERIOD;
    r.check_all(true, now);
    now += CHECK_PERIOD;
    r.check_all(false, now);
    assert!(reachable(&r), "the count starts again after a success");
    now += CHECK_PERIOD;
    r.check_all(false, now);
    assert!(!reachable(&r));
    assert!(!r.members[&alice.record.node_id].record.reachable);
}

#[test]
fn an_unreachable_member_is_neither_successor_nor_migration_target() {
    let mut r = registry();
    let t0 = Instant::now();
    let a = r.join("alice", 1, t0);
    let b = r.join("bob", 2, t0);
    let c = r.join_with(reg("carol", 3), false, t0);
    let (aid, atok) = (&a.record.node_id, &a.session_token);
    let unhostable = r
        .renew_lease_lobby(aid, atok, 1, &b.record.node_id, t0)
        .unwrap();
    assert!(unhostable.is_empty(), "carol is not decided yet");
    let now = t0 + CHECK_PERIOD;
    for _ in 0..3 {
        r.check_member(&c, false, now);
    }
    let unhostable = r
        .renew_lease_lobby(aid, atok, 1, &c.record.node_id, now)
        .unwrap();
    assert_eq!(unhostable, vec![c.record.node_id.clone()]);
    assert_eq!(
        r.report_migration(aid, atok, LOBBY, 1, &c.record.node_id, now),
        Err(RegistryError::CannotHost {
            name: "carol".into(),
            why: "the relay cannot reach its address"
        })
    );
    // Naming carol kept bob, who is promoted when alice goes silent.
    let promoted = r.check_one(now + LEASE * 2).unwrap();
    assert_eq!((promoted.epoch, promoted.name.as_str()), (2, "bob"));
}

#[test]
fn migration_is_compare_and_set() {
    let mut r = registry();
    let now = Instant::now();
    let a = r.join("alice", 1, now);
    let b = r.join("bob", 2, now);
    let (aid, atok, bid) = (&a.record.node_id, &a.session_token, &b.record.node_id);
    // Forged: bob is not host.
    assert!(matches!(
        r.report_migration(bid, &b.session_token, LOBBY, 1, bid, now),
        Err(RegistryError::NotHost(_))
    ));
    // Wrong token.
    assert!(matches!(
        r.report_migration(aid, "x.y", LOBBY, 1, bid, now),
        Err(RegistryError::BadToken(_))
    ));
    let host = r.report_migration(aid, atok, LOBBY, 1, bid, now).unwrap();
    assert_eq!((host.epoch, host.node_id.as_str()), (2, bid.as_str()));
    // Stale: epoch 1 is gone; nothing changes.
    assert_eq!(
        r.report_migration(aid, atok, LOBBY, 1, aid, now)
            .unwrap_err(),
        RegistryError::StaleEpoch {
            given: 1,
            current: 2
        }
    );
    assert_eq!(r.host().unwrap().node_id, *bid);
}

#[test]
fn an_expired_lease_promotes_the_successor() {
    let mut r = registry();
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for (i, name) in ["alice", "bob", "carol"].iter().enumerate() {
        ids.push(r.join(name, i as u16 + 1, t0));
    }
    let (a, c) = (&ids[0], &ids[2]);
    r.renew_lease_lobby(
        &a.record.node_id,
        &a.session_token,
        1,
        &c.record.node_id,
        t0,
    )
    .unwrap();
    assert!(r.check_one(t0 + LEASE / 2).is_none(), "lease still valid");
    // Only the host may renew, and only for its epoch.
    assert!(matches!(
        r.renew_lease_lobby(&c.record.node_id, &c.session_token, 1, "", t0),
        Err(RegistryError::NotHost(_))
    ));
    let promoted = r.check_one(t0 + LEASE * 2).unwrap();
    assert_eq!((promoted.epoch, promoted.name.as_str()), (2, "carol"));
    assert!(matches!(
        r.renew_lease_lobby(&a.record.node_id, &a.session_token, 1, "", t0 + LEASE * 2),
        Err(RegistryError::StaleEpoch {
            given: 1,
            current: 2
        })
    ));
}

#[test]
fn a_dead_successor_is_skipped_for_a_live_member() {
    let mut r = registry();
    let t0 = Instant::now();
    let a = r.join("alice", 1, t0);
    let (b, _) = r.register_now(reg("bob", 2), t0).unwrap();
    r.check_all(true, t0);
    r.join("carol", 3, t0);
    // bob is named successor but has no watch stream: not alive.
    r.renew_lease_lobby(
        &a.record.node_id,
        &a.session_token,
        1,
        &b.record.node_id,
        t0,
    )
    .unwrap();
    let promoted = r.check_one(t0 + LEASE * 2).unwrap();
    assert_eq!(promoted.name, "carol");
}

/// alice hosts with bob named successor, carol a member too; then bob's
/// node stops watching.
fn named_successor_stops_watching(t0: Instant) -> (Registry, Member) {
    let mut r = registry();
    let a = r.join("alice", 1, t0);
    let b = r.join("bob", 2, t0);
    r.join("carol", 3, t0);
    let (aid, atok, bid) = (&a.record.node_id, &a.session_token, &b.record.node_id);
    r.renew_lease_lobby(aid, atok, 1, bid, t0).unwrap();
    r.watch_ended(bid, t0);
    (r, b)
}

#[test]
fn a_named_successor_that_stopped_watching_is_waited_for_not_passed_over() {
    let t0 = Instant::now();
    let (mut r, bob) = named_successor_stops_watching(t0);
    // alice goes silent too: carol may lack what alice acknowledged (only
    // bob is sure to hold it), so the room waits for bob.
    let later = t0 + LEASE * 2;
    assert!(r.check_one(later).is_none(), "carol must not take the room");
    r.watch_started(&bob.record.node_id, &bob.session_token)
        .unwrap();
    let promoted = r.check_one(later).expect("bob is back");
    assert_eq!((promoted.epoch, promoted.name.as_str()), (2, "bob"));
}

#[test]
fn a_named_successor_forgotten_after_the_grace_lets_the_freshest_take_over() {
    let t0 = Instant::now();
    let (mut r, _bob) = named_successor_stops_watching(t0);
    let grace = Duration::from_secs(3);
    assert!(r.check_one(t0 + LEASE * 2).is_none(), "waits for bob");
    let later = t0 + grace + LEASE * 2;
    assert_eq!(r.reap(later, grace), vec!["bob".to_string()]);
    let promoted = r.check_one(later).expect("a new host");
    assert_eq!(promoted.name, "carol");
}

#[test]
fn copy_permits_go_only_to_members_the_relay_would_name_successor() {
    let mut r = registry();
    let t0 = Instant::now();
    let alice = r.join("alice", 1, t0);
    let bob = r.join("bob", 2, t0);
    // Never reached at its address.
    let carol = r.join_with(reg("carol", 3), false, t0);
    for _ in 0..3 {
        r.check_member(&carol, false, t0);
    }
    let (dave, _) = r.register_now(client_only("dave"), t0).unwrap();
    r.watch_started(&dave.record.node_id, &dave.session_token)
        .unwrap();
    let epoch = r.host().unwrap().epoch;
    let ask = |r: &mut Registry, to: &str| {
        let renewal = Renewal {
            room: LOBBY.to_string(),
            epoch,
            copy_to: to.to_string(),
            ..Renewal::default()
        };
        r.renew_lease(&alice.record.node_id, &alice.session_token, &renewal, t0)
            .unwrap()
            .copy_permit
    };
    let permit = ask(&mut r, &bob.record.node_id).expect("bob may hold copies");
    let grant = r.key.verifying().verify_copy_permit(&permit).unwrap();
    assert_eq!(
        (grant.room.as_str(), grant.epoch, grant.node_id.as_str()),
        (LOBBY, epoch, bob.record.node_id.as_str())
    );
    for (who, why) in [
        (&alice.record.node_id, "the host itself"),
        (&carol.record.node_id, "unreachable"),
        (&dave.record.node_id, "client-only"),
        (&id_of("zed"), "not a member"),
        (&String::new(), "nobody asked"),
    ] {
        assert!(ask(&mut r, who).is_none(), "{why}");
    }
    // Only the host of the term may ask.
    let renewal = Renewal {
        room: LOBBY.to_string(),
        epoch,
        copy_to: carol.record.node_id.clone(),
        ..Renewal::default()
    };
    assert!(r
        .renew_lease(&bob.record.node_id, &bob.session_token, &renewal, t0)
        .is_err());
}
