//! Placement: the relay spreads the rooms' host roles over the members.

use super::*;

/// `n` names `prefix0`, `prefix1`...
fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn strs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

/// How many rooms each member hosts, by name.
fn hosted(r: &Registry, members: &[String]) -> Vec<u32> {
    members.iter().map(|m| r.member(m).hosted()).collect()
}

#[test]
fn first_hosts_are_spread_evenly() {
    let (mut r, t0) = (registry(), Instant::now());
    let rooms = names("room", 50);
    let members = names("m", 10);
    for (i, m) in members.iter().enumerate() {
        r.enter(reg_in(m, i as u16 + 1, &strs(&rooms)), true, t0);
    }
    let made = r.check_lease(t0);
    assert_eq!(made.len(), 50);
    assert_eq!(hosted(&r, &members), vec![5; 10]);
    let mut epochs: Vec<u64> = made.iter().map(|h| h.epoch).collect();
    epochs.sort();
    assert_eq!(
        epochs,
        (1..=50).collect::<Vec<_>>(),
        "one counter, no epoch twice"
    );
    assert_eq!(r.fair_share(), 5);
}

#[test]
fn the_rooms_of_a_failed_member_are_spread() {
    let (mut r, t0) = (registry(), Instant::now());
    let rooms = names("room", 50);
    let members = names("m", 10);
    let joined: Vec<Member> = members
        .iter()
        .enumerate()
        .map(|(i, m)| r.enter(reg_in(m, i as u16 + 1, &strs(&rooms)), true, t0))
        .collect();
    r.check_lease(t0);
    // Everyone renews but m0, which is gone.
    let mid = t0 + LEASE / 2;
    let lost: Vec<String> = rooms
        .iter()
        .filter(|room| r.current_host(room).unwrap().name == "m0")
        .cloned()
        .collect();
    assert_eq!(lost.len(), 5);
    for room in rooms.iter().filter(|room| !lost.contains(room)) {
        let host = r.current_host(room).unwrap();
        let m = joined
            .iter()
            .find(|m| m.record.node_id == host.node_id)
            .unwrap();
        r.renew_in(m, room, host.epoch, "", mid).unwrap();
    }
    r.watch_ended(&joined[0].record.node_id, mid);
    let moved = r.check_lease(t0 + LEASE * 12 / 10);
    assert_eq!(moved.len(), 5);
    let mut takers: Vec<&str> = moved.iter().map(|h| h.name.as_str()).collect();
    takers.sort();
    takers.dedup();
    assert_eq!(
        takers.len(),
        5,
        "five members take one room each: {takers:?}"
    );
    assert!(hosted(&r, &members[1..]).iter().all(|&n| n <= 6));
}

/// alice hosts "main"; bob hosts four rooms of his own and is in main;
/// carol is in main and hosts nothing.
fn unbalanced(r: &mut Registry, t0: Instant) -> [Member; 3] {
    let a = r.join_with(reg_in("alice", 1, &["main"]), true, t0);
    let b = r.join_with(
        reg_in("bob", 2, &["x1", "x2", "x3", "x4", "main"]),
        true,
        t0,
    );
    let c = r.join_with(reg_in("carol", 3, &["main"]), true, t0);
    assert_eq!(r.current_host("main").unwrap().name, "alice");
    assert_eq!(r.member("bob").hosted(), 4);
    [a, b, c]
}

#[test]
fn a_migration_to_an_overloaded_member_is_refused_while_another_could_take_it() {
    let (mut r, t0) = (registry(), Instant::now());
    let [a, b, c] = unbalanced(&mut r, t0);
    let (bob, carol) = (b.record.node_id.as_str(), c.record.node_id.as_str());
    // Five rooms with a host, three members: a fair share is 2.
    let refused = r.migrate(&a, "main", 1, bob, t0).unwrap_err();
    assert_eq!(
        refused,
        RegistryError::Overloaded {
            name: "bob".into(),
            hosted: 4,
            fair: 2
        }
    );
    assert_eq!(
        tonic::Status::from(refused).code(),
        tonic::Code::FailedPrecondition
    );
    let moved = r.migrate(&a, "main", 1, carol, t0).unwrap();
    assert_eq!(moved.name, "carol");
    // From carol, alice (not the caller) hosts fewer than bob: refused.
    assert!(matches!(
        r.migrate(&c, "main", moved.epoch, bob, t0),
        Err(RegistryError::Overloaded { .. })
    ));
    // With nobody lighter left in the room, bob may take it.
    r.leave_room(&a.record.node_id, &a.session_token, "main")
        .unwrap();
    let moved = r.migrate(&c, "main", moved.epoch, bob, t0).unwrap();
    assert_eq!(moved.name, "bob");
    assert_eq!(r.member("bob").hosted(), 5);
}

#[test]
fn a_renewal_tells_how_many_rooms_the_other_members_host() {
    let (mut r, t0) = (registry(), Instant::now());
    let [a, b, c] = unbalanced(&mut r, t0);
    let grant = r.renew_in(&a, "main", 1, &c.record.node_id, t0).unwrap();
    let expected = HashMap::from([(b.record.node_id.clone(), 4), (c.record.node_id.clone(), 0)]);
    assert_eq!(grant.rooms_hosted, expected);
    assert!(grant.unhostable.is_empty());
}

#[test]
fn a_new_room_goes_to_the_member_hosting_fewest() {
    let (mut r, t0) = (registry(), Instant::now());
    let [a, b, c] = unbalanced(&mut r, t0);
    for m in [&a, &b, &c] {
        r.join_room(&m.record.node_id, &m.session_token, &claim("new"), t0)
            .unwrap();
    }
    r.check_lease(t0);
    assert_eq!(r.current_host("new").unwrap().name, "carol");
}
