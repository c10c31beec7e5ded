use super::*;

const LEASE: Duration = Duration::from_millis(500);
const WALL_MS: i64 = 1_000_000;

/// One key per name, the same every time (a user with a key file).
fn key_of(name: &str) -> Keypair {
    let mut secret = [7u8; 32];
    for (i, b) in name.bytes().enumerate().take(32) {
        secret[i] = b;
    }
    Keypair::from_secret(secret)
}

fn reg(name: &str, port: u16) -> Registration {
    Registration {
        name: name.to_string(),
        address: format!("127.0.0.1:{port}"),
        public_key: key_of(name).public_key(),
        ..Registration::default()
    }
}

fn registry() -> Registry {
    Registry::new(LEASE, Keypair::generate())
}

/// A host term this registry's relay signed, as a node would hold it.
fn term(epoch: u64, name: &str) -> HostTerm {
    HostTerm {
        room: trust::ROOM.into(),
        epoch,
        node_id: trust::node_id_of(&key_of(name).public_key()),
        ..Default::default()
    }
}

impl Registry {
    fn register_now(
        &mut self,
        reg: Registration,
        now: Instant,
    ) -> Result<(Member, Option<HostRecord>), RegistryError> {
        self.register(reg, now, WALL_MS)
    }

    /// Registers `reg` as a running node does: it opens its watch stream,
    /// and the relay checks its address (`reached` or not). Then the lease
    /// check that makes a first host.
    fn join_with(&mut self, reg: Registration, reached: bool, now: Instant) -> Member {
        let (member, _) = self.register_now(reg, now).unwrap();
        self.watch_started(&member.record.node_id, &member.session_token)
            .unwrap();
        self.check_all(reached, now);
        self.check_lease(now);
        member
    }

    /// A running node the relay reaches.
    fn join(&mut self, name: &str, port: u16, now: Instant) -> Member {
        self.join_with(reg(name, port), true, now)
    }

    /// Answers a check of `m`'s address with `reached`.
    fn check_member(&mut self, m: &Member, reached: bool, now: Instant) {
        let check = ReachCheck {
            node_id: m.record.node_id.clone(),
            address: m.record.address.clone(),
        };
        self.record_check(&check, reached, now);
    }

    /// Answers every due address check with `reached`.
    fn check_all(&mut self, reached: bool, now: Instant) {
        for check in self.due_checks(now) {
            self.record_check(&check, reached, now);
        }
    }
}

#[test]
fn first_node_hosts_at_epoch_one_once_the_relay_reaches_it() {
    let mut r = registry();
    let now = Instant::now();
    let (alice, host) = r.register_now(reg("alice", 1), now).unwrap();
    assert!(host.is_none(), "not before its address was checked");
    r.watch_started(&alice.record.node_id, &alice.session_token)
        .unwrap();
    assert!(r.check_lease(now).is_none());
    r.check_all(true, now);
    let host = r.check_lease(now).unwrap();
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
    assert!(r.check_lease(now).is_none(), "waits for alice's check");
    r.check_member(&alice, true, now);
    let host = r.check_lease(now).unwrap();
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
    assert_eq!(r.current_host().unwrap().node_id, bob.record.node_id);
}

#[test]
fn failover_waits_for_the_check_of_a_successor_not_checked_yet() {
    let mut r = registry();
    let t0 = Instant::now();
    let a = r.join("alice", 1, t0);
    // bob holds the freshest replica, but carol is the named successor.
    let bob = Registration {
        replica_head: 99,
        ..reg("bob", 2)
    };
    r.join_with(bob, true, t0);
    let (c, _) = r.register_now(reg("carol", 3), t0).unwrap();
    r.watch_started(&c.record.node_id, &c.session_token)
        .unwrap();
    let (aid, atok) = (&a.record.node_id, &a.session_token);
    let unhostable = r.renew_lease(aid, atok, 1, &c.record.node_id, t0).unwrap();
    assert!(unhostable.is_empty(), "not decided yet: it may be named");
    let later = t0 + LEASE * 2;
    assert!(r.check_lease(later).is_none(), "waits for carol's check");
    r.check_member(&c, true, later);
    let promoted = r.check_lease(later).unwrap();
    assert_eq!((promoted.epoch, promoted.name.as_str()), (2, "carol"));
}

#[test]
fn a_successor_whose_checks_fail_for_a_while_still_takes_over() {
    let mut r = registry();
    let t0 = Instant::now();
    let a = r.join("alice", 1, t0);
    let b = r.join("bob", 2, t0);
    // carol looks fresher, but bob is the successor that holds the room.
    let carol = Registration {
        replica_head: 99,
        ..reg("carol", 3)
    };
    r.join_with(carol, true, t0);
    let (aid, atok) = (&a.record.node_id, &a.session_token);
    r.renew_lease(aid, atok, 1, &b.record.node_id, t0).unwrap();
    // The relay's checks of bob fail (a loaded machine): he may not be
    // made host by a move, but he stays the successor.
    let now = t0 + CHECK_PERIOD;
    r.check_member(&b, false, now);
    r.check_member(&b, false, now);
    assert!(!r.members[&b.record.node_id].can_host());
    let unhostable = r.renew_lease(aid, atok, 1, &b.record.node_id, now).unwrap();
    assert!(unhostable.is_empty(), "{unhostable:?}");
    let promoted = r.check_lease(now + LEASE * 2).unwrap();
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
    let said = r.check_lease(now).unwrap();
    assert!(said.certificate.is_none() && said.node_id.is_empty());
    assert!(
        said.no_host_reason
            .contains("unreachable from the relay: 1,"),
        "{}",
        said.no_host_reason
    );
    assert!(matches!(
        r.current_host(),
        Err(RegistryError::NoHostable(_))
    ));
    // A member it reaches takes the room at once.
    let bob = r.join("bob", 2, now);
    let host = r.current_host().unwrap();
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
    let unhostable = r.renew_lease(aid, atok, 1, &b.record.node_id, t0).unwrap();
    assert!(unhostable.is_empty(), "carol is not decided yet");
    let now = t0 + CHECK_PERIOD;
    for _ in 0..3 {
        r.check_member(&c, false, now);
    }
    let unhostable = r.renew_lease(aid, atok, 1, &c.record.node_id, now).unwrap();
    assert_eq!(unhostable, vec![c.record.node_id.clone()]);
    assert_eq!(
        r.report_migration(aid, atok, 1, &c.record.node_id, now),
        Err(RegistryError::CannotHost {
            name: "carol".into(),
            why: "the relay cannot reach its address"
        })
    );
    // Naming carol kept bob, who is promoted when alice goes silent.
    let promoted = r.check_lease(now + LEASE * 2).unwrap();
    assert_eq!((promoted.epoch, promoted.name.as_str()), (2, "bob"));
}

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
fn migration_is_compare_and_set() {
    let mut r = registry();
    let now = Instant::now();
    let a = r.join("alice", 1, now);
    let b = r.join("bob", 2, now);
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
    let mut r = registry();
    let now = Instant::now();
    let follower = Registration {
        latest_term: Some(term(7, "alice")),
        ..reg("bob", 2)
    };
    let (_, host) = r.register_now(follower, now).unwrap();
    assert!(
        host.is_none(),
        "a member that knew a host waits for it to re-assert"
    );
    let alice_id = trust::node_id_of(&key_of("alice").public_key());
    let hosting = Registration {
        session_token: format!("{alice_id}.secret"),
        latest_term: Some(term(9, "alice")),
        hosting: true,
        ..reg("alice", 1)
    };
    let (a, host) = r.register_now(hosting, now).unwrap();
    let host = host.unwrap();
    assert_eq!((host.epoch, &host.node_id), (9, &a.record.node_id));
    assert_eq!(a.session_token, format!("{alice_id}.secret"));
    // A term naming another node cannot be re-asserted.
    let bob_claims = Registration {
        latest_term: Some(term(10, "alice")),
        hosting: true,
        ..reg("bob", 2)
    };
    assert!(matches!(
        r.register_now(bob_claims, now),
        Err(RegistryError::NotHost(_))
    ));
    assert_eq!(r.host().unwrap().epoch, 9);
    assert!(r.check_lease(now + LEASE / 2).is_none());
}

#[test]
fn a_vacancy_nobody_claims_is_filled_after_a_lease() {
    let mut r = registry();
    let t0 = Instant::now();
    let (b, host) = r
        .register_now(
            Registration {
                latest_term: Some(term(7, "alice")),
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
    let carol = Registration {
        latest_term: Some(term(7, "alice")),
        replica_head: 40,
        ..reg("carol", 3)
    };
    r.join_with(carol, true, t0);
    assert!(
        r.check_lease(t0 + LEASE * 2).is_none(),
        "waits for the host to re-assert"
    );
    let promoted = r.check_lease(t0 + MIN_VACANCY_WAIT * 2).unwrap();
    assert_eq!((promoted.epoch, promoted.name.as_str()), (8, "carol"));
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
    let mut r = registry();
    let t0 = Instant::now();
    let a = r.join("alice", 1, t0);
    let (b, _) = r.register_now(reg("bob", 2), t0).unwrap();
    r.check_all(true, t0);
    r.join("carol", 3, t0);
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
    let top = Registration {
        latest_term: Some(term(u64::MAX, "alice")),
        hosting: true,
        ..reg("alice", 1)
    };
    let (a, host) = r.register_now(top, t0).unwrap();
    assert_eq!(host.unwrap().epoch, u64::MAX);
    let (b, _) = r.register_now(reg("bob", 2), t0).unwrap();
    r.watch_started(&b.record.node_id, &b.session_token)
        .unwrap();
    assert!(r.check_lease(t0 + LEASE * 3).is_none(), "no epoch 0");
    assert!(r
        .report_migration(
            &a.record.node_id,
            &a.session_token,
            u64::MAX,
            &b.record.node_id,
            t0
        )
        .is_err());
}

/// A client-only registration: no address.
fn client_only(name: &str) -> Registration {
    Registration {
        address: String::new(),
        client_only: true,
        ..reg(name, 0)
    }
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
    assert_eq!(r.current_host().unwrap().node_id, alice.record.node_id);
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
        .renew_lease(
            &a.record.node_id,
            &a.session_token,
            1,
            &d.record.node_id,
            t0,
        )
        .unwrap();
    assert_eq!(unhostable, vec![d.record.node_id.clone()]);
    let promoted = r.check_lease(t0 + LEASE * 2).unwrap();
    assert_eq!(promoted.name, "bob");
    // With only the client-only member left, nobody is promoted.
    r.unregister(&a.record.node_id, &a.session_token).unwrap();
    r.unregister(&b.record.node_id, &b.session_token).unwrap();
    let said = r.check_lease(t0 + LEASE * 10).unwrap();
    assert!(said.no_host_reason.contains("client-only: 1,"), "{said:?}");
}
