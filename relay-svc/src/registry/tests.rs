use super::*;

const LEASE: Duration = Duration::from_millis(500);

fn reg(name: &str, port: u16) -> Registration {
    Registration {
        name: name.to_string(),
        address: format!("127.0.0.1:{port}"),
        ..Registration::default()
    }
}

#[test]
fn first_node_hosts_at_epoch_one() {
    let mut r = Registry::new(LEASE);
    let now = Instant::now();
    let (alice, host) = r.register(reg("alice", 1), now).unwrap();
    let host = host.unwrap();
    assert_eq!(host.epoch, 1);
    assert_eq!(host.node_id, alice.record.node_id);
    let (_, host) = r.register(reg("bob", 2), now).unwrap();
    assert_eq!(
        host.unwrap().node_id,
        alice.record.node_id,
        "second node does not take over"
    );
}

#[test]
fn names_are_unique_and_valid() {
    let mut r = Registry::new(LEASE);
    let now = Instant::now();
    r.register(reg("alice", 1), now).unwrap();
    assert_eq!(
        r.register(reg("alice", 2), now).unwrap_err(),
        RegistryError::NameTaken("alice".into())
    );
    assert!(matches!(
        r.register(reg("a:b", 2), now),
        Err(RegistryError::InvalidName(_))
    ));
    assert!(matches!(
        r.register(reg("", 2), now),
        Err(RegistryError::InvalidName(_))
    ));
}

#[test]
fn re_registration_with_token_keeps_identity() {
    let mut r = Registry::new(LEASE);
    let now = Instant::now();
    let (alice, _) = r.register(reg("alice", 1), now).unwrap();
    let again = Registration {
        session_token: alice.session_token.clone(),
        ..reg("alice", 1)
    };
    let (same, _) = r.register(again, now).unwrap();
    assert_eq!(same.record.node_id, alice.record.node_id);
}

#[test]
fn migration_is_compare_and_set() {
    let mut r = Registry::new(LEASE);
    let now = Instant::now();
    let (a, _) = r.register(reg("alice", 1), now).unwrap();
    let (b, _) = r.register(reg("bob", 2), now).unwrap();
    let (aid, atok, bid) = (&a.record.node_id, &a.session_token, &b.record.node_id);
    // Forged: bob is not host.
    assert!(matches!(
        r.report_migration(bid, &b.session_token, 1, bid, now),
        Err(RegistryError::NotHost(_))
    ));
    // Wrong token.
    assert!(matches!(
        r.report_migration(aid, "x.y", 1, bid, now),
        Err(RegistryError::BadToken(_))
    ));
    let host = r.report_migration(aid, atok, 1, bid, now).unwrap();
    assert_eq!((host.epoch, host.node_id.as_str()), (2, bid.as_str()));
    // Stale: epoch 1 is gone; nothing changes.
    assert_eq!(
        r.report_migration(aid, atok, 1, aid, now).unwrap_err(),
        RegistryError::StaleEpoch {
            given: 1,
            current: 2
        }
    );
    assert_eq!(r.host().unwrap().node_id, *bid);
}

#[test]
fn host_reasserts_epoch_after_relay_restart() {
    let mut r = Registry::new(LEASE);
    let now = Instant::now();
    let follower = Registration {
        known_epoch: 7,
        ..reg("bob", 2)
    };
    let (_, host) = r.register(follower, now).unwrap();
    assert!(
        host.is_none(),
        "a member that knew a host waits for it to re-assert"
    );
    let hosting = Registration {
        session_token: "n1.secret".into(),
        known_epoch: 9,
        hosting_epoch: 9,
        ..reg("alice", 1)
    };
    let (a, host) = r.register(hosting, now).unwrap();
    let host = host.unwrap();
    assert_eq!((host.epoch, &host.node_id), (9, &a.record.node_id));
    assert_eq!(a.record.node_id, "n1");
    assert!(r.check_lease(now + LEASE / 2).is_none());
}

#[test]
fn a_vacancy_nobody_claims_is_filled_after_a_lease() {
    let mut r = Registry::new(LEASE);
    let t0 = Instant::now();
    let (b, host) = r
        .register(
            Registration {
                known_epoch: 7,
                ..reg("bob", 2)
            },
            t0,
        )
        .unwrap();
    assert!(host.is_none());
    r.watch_started(&b.record.node_id, &b.session_token)
        .unwrap();
    assert!(r.check_lease(t0 + LEASE / 2).is_none());
    // The freshest replica wins.
    let (c, _) = r
        .register(
            Registration {
                known_epoch: 7,
                replica_head: 40,
                ..reg("carol", 3)
            },
            t0,
        )
        .unwrap();
    r.watch_started(&c.record.node_id, &c.session_token)
        .unwrap();
    assert!(
        r.check_lease(t0 + LEASE * 2).is_none(),
        "waits for the host to re-assert"
    );
    let promoted = r.check_lease(t0 + MIN_VACANCY_WAIT * 2).unwrap();
    assert_eq!((promoted.epoch, promoted.name.as_str()), (8, "carol"));
}

#[test]
fn an_expired_lease_promotes_the_successor() {
    let mut r = Registry::new(LEASE);
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for (i, name) in ["alice", "bob", "carol"].iter().enumerate() {
        let (m, _) = r.register(reg(name, i as u16 + 1), t0).unwrap();
        r.watch_started(&m.record.node_id, &m.session_token)
            .unwrap();
        ids.push(m);
    }
    let (a, c) = (&ids[0], &ids[2]);
    r.renew_lease(
        &a.record.node_id,
        &a.session_token,
        1,
        &c.record.node_id,
        t0,
    )
    .unwrap();
    assert!(r.check_lease(t0 + LEASE / 2).is_none(), "lease still valid");
    // Only the host may renew, and only for its epoch.
    assert!(matches!(
        r.renew_lease(&c.record.node_id, &c.session_token, 1, "", t0),
        Err(RegistryError::NotHost(_))
    ));
    let promoted = r.check_lease(t0 + LEASE * 2).unwrap();
    assert_eq!((promoted.epoch, promoted.name.as_str()), (2, "carol"));
    assert!(matches!(
        r.renew_lease(&a.record.node_id, &a.session_token, 1, "", t0 + LEASE * 2),
        Err(RegistryError::StaleEpoch {
            given: 1,
            current: 2
        })
    ));
}

#[test]
fn a_dead_successor_is_skipped_for_a_live_member() {
    let mut r = Registry::new(LEASE);
    let t0 = Instant::now();
    let (a, _) = r.register(reg("alice", 1), t0).unwrap();
    let (b, _) = r.register(reg("bob", 2), t0).unwrap();
    let (c, _) = r.register(reg("carol", 3), t0).unwrap();
    r.watch_started(&c.record.node_id, &c.session_token)
        .unwrap();
    // bob is named successor but has no watch stream: not alive.
    r.renew_lease(
        &a.record.node_id,
        &a.session_token,
        1,
        &b.record.node_id,
        t0,
    )
    .unwrap();
    let promoted = r.check_lease(t0 + LEASE * 2).unwrap();
    assert_eq!(promoted.name, "carol");
}

#[test]
fn silent_members_are_reaped_after_grace() {
    let mut r = Registry::new(LEASE);
    let t0 = Instant::now();
    let (a, _) = r.register(reg("alice", 1), t0).unwrap();
    let (b, _) = r.register(reg("bob", 2), t0).unwrap();
    r.watch_started(&a.record.node_id, &a.session_token)
        .unwrap();
    let grace = Duration::from_secs(2);
    assert!(r.reap(t0 + Duration::from_secs(1), grace).is_empty());
    assert_eq!(r.reap(t0 + Duration::from_secs(3), grace), vec!["bob"]);
    assert!(r.lookup("alice").is_some());
    assert!(r.lookup(&b.record.name).is_none());
    // bob's name is free again.
    r.register(reg("bob", 3), t0).unwrap();
}
