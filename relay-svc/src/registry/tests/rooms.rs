//! Rooms: independent hosts and epochs, joining and leaving, listing,
//! claims, vacancies after a relay restart, published changes.

use super::*;
use tonic::Code;

/// alice in red, bob in red and blue, carol in blue, all reached and
/// connected; the first hosts made.
fn two_rooms(r: &mut Registry, t0: Instant) -> [Member; 3] {
    let a = r.enter(reg_in("alice", 1, &["red"]), true, t0);
    let b = r.enter(reg_in("bob", 2, &["red", "blue"]), true, t0);
    let c = r.enter(reg_in("carol", 3, &["blue"]), true, t0);
    r.check_lease(t0);
    [a, b, c]
}

#[test]
fn two_rooms_have_their_own_hosts_successors_and_epochs() {
    let (mut r, t0) = (registry(), Instant::now());
    let [a, b, c] = two_rooms(&mut r, t0);
    // Rooms are settled by name: blue first (bob, the earliest of its
    // members), then red (alice hosts fewer rooms than bob).
    let blue = r.current_host("blue").unwrap();
    let red = r.current_host("red").unwrap();
    assert_eq!((blue.name.as_str(), blue.epoch), ("bob", 1));
    assert_eq!((red.name.as_str(), red.epoch), ("alice", 2));
    for (record, room) in [(&blue, "blue"), (&red, "red")] {
        let term = term_of(record);
        assert_eq!((term.room.as_str(), term.previous_epoch), (room, 0));
        assert_eq!(record.room, room);
    }
    r.renew_in(&b, "blue", 1, &c.record.node_id, t0).unwrap();
    // A migration in red takes the next epoch and names red's term before.
    let mid = t0 + LEASE / 2;
    let moved = r.migrate(&a, "red", 2, &b.record.node_id, mid).unwrap();
    assert_eq!((moved.name.as_str(), moved.epoch), ("bob", 3));
    assert_eq!(term_of(&moved).previous_epoch, 2);
    assert_eq!(
        r.current_host("blue").unwrap().epoch,
        1,
        "blue is untouched"
    );
    // Blue's lease runs out (red's does not): its successor takes it.
    let changed = r.check_lease(t0 + LEASE * 12 / 10);
    assert_eq!(changed.len(), 1, "{changed:?}");
    let blue = &changed[0];
    assert_eq!(
        (blue.room.as_str(), blue.name.as_str(), blue.epoch),
        ("blue", "carol", 4)
    );
    assert_eq!(term_of(blue).previous_epoch, 1);
    assert_eq!(r.current_host("red").unwrap().epoch, 3);
    assert_eq!(r.highest_epoch(), 4);
}

#[test]
fn a_migration_in_one_room_cannot_move_another() {
    let (mut r, t0) = (registry(), Instant::now());
    let [a, b, c] = two_rooms(&mut r, t0);
    let carol = c.record.node_id.as_str();
    // alice hosts red at 2, bob blue at 1.
    assert_eq!(
        r.migrate(&a, "blue", 2, carol, t0),
        Err(RegistryError::NotInRoom {
            node: a.record.node_id.clone(),
            room: "blue".into()
        })
    );
    assert_eq!(
        r.migrate(&b, "red", 1, &a.record.node_id, t0),
        Err(RegistryError::StaleEpoch {
            given: 1,
            current: 2
        })
    );
    assert_eq!(
        r.migrate(&b, "red", 2, &a.record.node_id, t0),
        Err(RegistryError::NotHost((&b.record.node_id).into()))
    );
    assert_eq!(
        r.migrate(&a, "red", 2, carol, t0),
        Err(RegistryError::NotInRoom {
            node: carol.to_string(),
            room: "red".into()
        }),
        "the target must be in the room"
    );
    assert!(r.take_changes().len() == 2, "only the first hosts");
    assert!(r.take_changes().is_empty(), "refusals change nothing");
}

#[test]
fn members_leave_rooms_and_empty_rooms_vanish() {
    let (mut r, t0) = (registry(), Instant::now());
    let a = r.enter(reg_in("alice", 1, &["red", "blue"]), true, t0);
    let b = r.enter(reg_in("bob", 2, &["red"]), true, t0);
    let (aid, atok) = (a.record.node_id.as_str(), a.session_token.as_str());
    r.leave_room(aid, atok, "blue").unwrap();
    assert_eq!(r.room_names(), ["red"]);
    assert_eq!(
        r.leave_room(aid, atok, "blue"),
        Err(RegistryError::UnknownRoom("blue".into()))
    );
    assert!(matches!(
        r.leave_room(aid, atok, "no room"),
        Err(RegistryError::InvalidRoom { .. })
    ));
    assert!(matches!(
        r.leave_room(aid, "x.y", "red"),
        Err(RegistryError::BadToken(_))
    ));
    r.enter(reg_in("carol", 3, &["green"]), true, t0);
    let not_in = r.leave_room(aid, atok, "green").unwrap_err();
    assert!(matches!(not_in, RegistryError::NotInRoom { .. }));
    assert_eq!(tonic::Status::from(not_in).code(), Code::NotFound);
    // Unregistering leaves every room; the last member takes the room along.
    r.unregister(aid, atok).unwrap();
    assert_eq!(r.room_names(), ["green", "red"]);
    r.unregister(&b.record.node_id, &b.session_token).unwrap();
    assert_eq!(r.room_names(), ["green"]);
    // So does being forgotten.
    r.watch_ended(&id_of("carol"), t0);
    assert_eq!(
        r.reap(t0 + Duration::from_secs(5), Duration::from_secs(1)),
        ["carol"]
    );
    assert!(r.room_names().is_empty());
    assert!(r.current_host("green").is_err());
}

#[test]
fn rooms_are_listed_a_page_at_a_time() {
    let (mut r, t0) = (registry(), Instant::now());
    let names: Vec<String> = (0..250).map(|i| format!("r{i:03}")).collect();
    let rooms: Vec<&str> = names.iter().map(String::as_str).collect();
    let a = r.enter(reg_in("alice", 1, &rooms), true, t0);
    r.enter(reg_in("bob", 2, &rooms[..1]), true, t0);
    r.check_lease(t0);
    let renewal = Renewal {
        room: "r000".into(),
        epoch: r.current_host("r000").unwrap().epoch,
        activated: true,
        ..Renewal::default()
    };
    r.renew_lease(&a.record.node_id, &a.session_token, &renewal, t0)
        .unwrap();
    let (page, more) = r.list_rooms("", 0);
    assert_eq!((page.len(), more), (100, true));
    let first = &page[0];
    assert_eq!(first.name, "r000");
    assert_eq!(first.members, ["alice", "bob"]);
    assert_eq!((first.host.as_str(), first.activated), ("alice", true));
    assert_eq!(first.epoch, renewal.epoch);
    let (page, more) = r.list_rooms(&page[99].name, 0);
    assert_eq!((page[0].name.as_str(), more), ("r100", true));
    let (page, more) = r.list_rooms(&page[99].name, 0);
    assert_eq!((page.len(), more), (50, false));
    assert!(!page[0].activated && page[0].members == ["alice"]);
    let (all, more) = r.list_rooms("", 5000);
    assert_eq!((all.len(), more), (250, false));
    let (some, more) = r.list_rooms("r2", 3);
    let listed: Vec<&str> = some.iter().map(|i| i.name.as_str()).collect();
    assert_eq!((listed, more), (vec!["r200", "r201", "r202"], true));
}

#[test]
fn current_host_names_unknown_rooms_and_rooms_without_host() {
    let (mut r, t0) = (registry(), Instant::now());
    let unknown = r.current_host("nowhere").unwrap_err();
    assert_eq!(unknown, RegistryError::UnknownRoom("nowhere".into()));
    assert_eq!(tonic::Status::from(unknown).code(), Code::NotFound);
    let bad = r.current_host("a:b").unwrap_err();
    assert_eq!(tonic::Status::from(bad).code(), Code::InvalidArgument);
    r.register_now(reg_in("alice", 1, &["red"]), t0).unwrap();
    let waiting = r.current_host("red").unwrap_err();
    assert_eq!(waiting, RegistryError::NoHost);
    assert_eq!(tonic::Status::from(waiting).code(), Code::Unavailable);
}

#[test]
fn a_node_that_names_no_room_is_in_the_lobby() {
    let (mut r, t0) = (registry(), Instant::now());
    let a = r.join("alice", 1, t0);
    assert_eq!(a.rooms().collect::<Vec<_>>(), [LOBBY]);
    assert_eq!(r.room_names(), [LOBBY]);
    let host = r.current_host("").unwrap();
    assert_eq!(host, r.current_host(LOBBY).unwrap());
    assert_eq!(host.room, LOBBY);
    assert_eq!(term_of(&host).room, LOBBY);
}

#[test]
fn registering_again_replaces_the_rooms() {
    let (mut r, t0) = (registry(), Instant::now());
    let a = r.enter(reg_in("alice", 1, &["red", "blue"]), true, t0);
    r.check_lease(t0);
    let again = Registration {
        session_token: a.session_token.clone(),
        ..reg_in("alice", 1, &["green", "blue"])
    };
    let (member, records) = r.register(again, t0, WALL_MS).unwrap();
    assert_eq!(member.rooms().collect::<Vec<_>>(), ["blue", "green"]);
    assert_eq!(r.room_names(), ["blue", "green"], "red is left, and gone");
    // In claim order; green has no host yet.
    assert!(records[0].is_none());
    assert_eq!(records[1].as_ref().unwrap().room, "blue");
}

#[test]
fn bad_claims_are_refused_and_change_nothing() {
    let (mut r, t0) = (registry(), Instant::now());
    let a = r.enter(reg_in("alice", 1, &["red"]), true, t0);
    let refused = |r: &mut Registry, reg: Registration| {
        let err = r.register_now(reg, t0).unwrap_err();
        assert_eq!(r.room_names(), ["red"]);
        assert_eq!(
            tonic::Status::from(err.clone()).code(),
            Code::InvalidArgument
        );
        err
    };
    assert!(matches!(
        refused(&mut r, reg_in("bob", 2, &["ok", "not ok"])),
        RegistryError::InvalidRoom { .. }
    ));
    assert_eq!(
        refused(&mut r, reg_in("bob", 2, &["red", "", "lobby"])),
        RegistryError::DuplicateRoom(LOBBY.into())
    );
    let other_room = Claim {
        latest_term: Some(room_term("blue", 3, "bob")),
        ..claim("red")
    };
    let bob = Registration {
        rooms: vec![other_room.clone()],
        ..reg("bob", 2)
    };
    assert!(matches!(
        refused(&mut r, bob),
        RegistryError::TermOfOtherRoom { .. }
    ));
    let names: Vec<String> = (0..=MAX_ROOMS_PER_MEMBER)
        .map(|i| format!("r{i}"))
        .collect();
    let rooms: Vec<&str> = names.iter().map(String::as_str).collect();
    let too_many = r.register_now(reg_in("bob", 2, &rooms), t0).unwrap_err();
    assert_eq!(r.room_names(), ["red"]);
    assert_eq!(too_many, RegistryError::TooManyRooms(MAX_ROOMS_PER_MEMBER));
    assert_eq!(
        tonic::Status::from(too_many).code(),
        Code::ResourceExhausted
    );
    let (aid, atok) = (&a.record.node_id, &a.session_token);
    assert!(r.join_room(aid, atok, &other_room, t0).is_err());
    for room in &rooms[..MAX_ROOMS_PER_MEMBER - 1] {
        r.join_room(aid, atok, &claim(room), t0).unwrap();
    }
    let one_more = r.join_room(aid, atok, &claim("one-more"), t0);
    assert_eq!(
        one_more,
        Err(RegistryError::TooManyRooms(MAX_ROOMS_PER_MEMBER))
    );
    // Joining a room it is in only updates the claim.
    r.join_room(aid, atok, &claim("red"), t0).unwrap();
}

#[test]
fn after_a_relay_restart_each_room_waits_for_its_host() {
    let (mut r, t0) = (registry(), Instant::now());
    r.restore_epoch(10, t0);
    let bob = Registration {
        rooms: vec![
            Claim {
                latest_term: Some(room_term("red", 7, "alice")),
                ..claim("red")
            },
            claim("blue"),
        ],
        ..reg("bob", 2)
    };
    r.enter(bob, true, t0);
    assert!(r.check_lease(t0).is_empty(), "both rooms wait");
    // alice re-asserts red's term at once; blue has nobody to re-assert.
    let alice = Registration {
        rooms: vec![Claim {
            latest_term: Some(at(room_term("red", 9, "alice"), 1)),
            hosting: true,
            ..claim("red")
        }],
        ..reg("alice", 1)
    };
    let (alice, red) = r.register_now(alice, t0).unwrap();
    assert_eq!(red.unwrap().epoch, 9);
    let wait = lease::MIN_VACANCY_WAIT;
    r.renew_in(&alice, "red", 9, "", t0 + wait / 2).unwrap();
    assert!(r.check_lease(t0 + wait).is_empty());
    let filled = r.check_lease(t0 + wait + Duration::from_millis(1));
    assert_eq!(filled.len(), 1);
    assert_eq!((filled[0].room.as_str(), filled[0].epoch), ("blue", 11));
    assert_eq!(term_of(&filled[0]).previous_epoch, 0);
    // After the wait, a new room gets its first host at once...
    let later = t0 + wait * 2;
    r.join_with(reg_in("carol", 3, &["green"]), true, later);
    let green = r.current_host("green").unwrap();
    assert_eq!(green.name, "carol");
    assert!(green.epoch > 11);
    // ...unless a member knew a host of it: then it waits for that one.
    let dave = Registration {
        rooms: vec![Claim {
            latest_term: Some(room_term("gold", 5, "erin")),
            ..claim("gold")
        }],
        ..reg("dave", 4)
    };
    r.join_with(dave, true, later);
    assert_eq!(r.current_host("gold"), Err(RegistryError::NoHost));
}

#[test]
fn take_changes_reports_only_the_rooms_that_changed() {
    let (mut r, t0) = (registry(), Instant::now());
    let [a, b, _] = two_rooms(&mut r, t0);
    let mut first: Vec<String> = r.take_changes().into_iter().map(|h| h.room).collect();
    first.sort();
    assert_eq!(first, ["blue", "red"]);
    r.renew_in(&a, "red", 2, &b.record.node_id, t0).unwrap();
    assert!(r.take_changes().is_empty(), "a renewal changes no record");
    r.enter(reg_in("dave", 4, &["red"]), true, t0);
    assert!(r.take_changes().is_empty(), "nor does a new member");
    r.migrate(&a, "red", 2, &b.record.node_id, t0).unwrap();
    let changed = r.take_changes();
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (changed[0].room.as_str(), changed[0].name.as_str()),
        ("red", "bob")
    );
    assert!(r.take_changes().is_empty());
}

impl Registry {
    /// The rooms, by name.
    fn room_names(&self) -> Vec<String> {
        self.rooms.keys().cloned().collect()
    }
}

#[test]
fn the_relay_creates_no_room_beyond_its_most() {
    let t0 = Instant::now();
    let mut r = registry().with_room_limits(3, MAX_ROOMS_PER_MEMBER);
    let a = r.enter(reg_in("alice", 1, &["red", "blue"]), true, t0);
    let (aid, atok) = (&a.record.node_id, &a.session_token);
    r.join_room(aid, atok, &claim("green"), t0).unwrap();
    // A fourth room is not created, by a join or by a registration...
    let full = r.join_room(aid, atok, &claim("black"), t0);
    assert_eq!(full, Err(RegistryError::RelayFull(3)));
    assert_eq!(
        tonic::Status::from(full.unwrap_err()).code(),
        Code::ResourceExhausted
    );
    let bob = r.register_now(reg_in("bob", 2, &["red", "black"]), t0);
    assert_eq!(bob.unwrap_err(), RegistryError::RelayFull(3));
    assert!(r.record("black").is_none() && r.lookup("bob").is_none());
    // ...but rooms that exist may still be joined.
    let b = r.enter(reg_in("bob", 2, &["red", "blue"]), true, t0);
    r.join_room(&b.record.node_id, &b.session_token, &claim("green"), t0)
        .unwrap();
    assert_eq!(r.list_rooms("", 0).0.len(), 3);
    // A room that empties makes space for another.
    r.leave_room(aid, atok, "green").unwrap();
    r.leave_room(&b.record.node_id, &b.session_token, "green")
        .unwrap();
    r.join_room(aid, atok, &claim("black"), t0).unwrap();
    assert_eq!(
        r.join_room(aid, atok, &claim("white"), t0),
        Err(RegistryError::RelayFull(3))
    );
}

#[test]
fn a_member_is_in_at_most_the_rooms_the_relay_allows_each() {
    let t0 = Instant::now();
    let mut r = registry().with_room_limits(usize::MAX, 2);
    let three = r.register_now(reg_in("alice", 1, &["red", "blue", "green"]), t0);
    let refused = three.unwrap_err();
    assert_eq!(refused, RegistryError::TooManyRooms(2));
    assert_eq!(tonic::Status::from(refused).code(), Code::ResourceExhausted);
    assert!(r.lookup("alice").is_none());
    let a = r.enter(reg_in("alice", 1, &["red", "blue"]), true, t0);
    let (aid, atok) = (&a.record.node_id, &a.session_token);
    assert_eq!(
        r.join_room(aid, atok, &claim("green"), t0),
        Err(RegistryError::TooManyRooms(2))
    );
    assert!(r.record("green").is_none());
    // A room it is in may be claimed again; one it left makes space.
    r.join_room(aid, atok, &claim("red"), t0).unwrap();
    r.leave_room(aid, atok, "blue").unwrap();
    r.join_room(aid, atok, &claim("green"), t0).unwrap();
    // The configured bound never exceeds what one Register may claim.
    let r = registry().with_room_limits(usize::MAX, usize::MAX);
    assert_eq!(r.max_rooms_per_member, MAX_ROOMS_PER_MEMBER);
}
