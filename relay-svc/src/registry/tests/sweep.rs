//! The lease sweep with many rooms.

use super::*;

const ROOMS: usize = 10_000;
const MEMBERS: usize = 20;

/// Member `i` of [`MEMBERS`] is in rooms `500 i .. 500 i + 1000` (mod
/// [`ROOMS`]): every room has two members.
fn rooms_of(i: usize) -> Vec<String> {
    (0..MAX_ROOMS_PER_MEMBER)
        .map(|k| format!("r{:05}", (i * 500 + k) % ROOMS))
        .collect()
}

#[test]
fn a_sweep_over_ten_thousand_rooms_promotes_exactly_the_lapsed_ones() {
    let (mut r, t0) = (registry(), Instant::now());
    let members: Vec<Member> = (0..MEMBERS)
        .map(|i| {
            let rooms = rooms_of(i);
            let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
            r.enter(reg_in(&format!("m{i}"), i as u16 + 1, &rooms), true, t0)
        })
        .collect();
    assert_eq!(r.check_lease(t0).len(), ROOMS);
    assert_eq!(r.take_changes().len(), ROOMS);
    assert_eq!(
        r.schedule.sizes(),
        (ROOMS, 0),
        "a timer per room, none pending"
    );
    let counts: Vec<u32> = members
        .iter()
        .map(|m| r.members[&m.record.node_id].hosted())
        .collect();
    assert_eq!(counts.iter().sum::<u32>() as usize, ROOMS);
    assert!(r.check_lease(t0 + LEASE / 2).is_empty());
    // Every host renews but m0, which is gone.
    let mid = t0 + LEASE / 2;
    let before: HashMap<String, HostRecord> = r
        .rooms
        .iter()
        .filter_map(|(name, room)| Some((name.clone(), room.host.clone()?)))
        .collect();
    let dead = &members[0];
    for (room, host) in &before {
        let Some(m) = members.iter().find(|m| m.record.node_id == host.node_id) else {
            continue;
        };
        if m.record.node_id != dead.record.node_id {
            r.renew_in(m, room, host.epoch, "", mid).unwrap();
        }
    }
    r.watch_ended(&dead.record.node_id, mid);
    let moved = r.check_lease(t0 + LEASE * 12 / 10);
    assert_eq!(moved.len(), counts[0] as usize);
    for record in &moved {
        let old = &before[&record.room];
        assert_eq!(old.node_id, dead.record.node_id);
        assert_ne!(record.node_id, dead.record.node_id);
        assert_eq!(term_of(record).previous_epoch, old.epoch);
        assert!(record.epoch > old.epoch);
    }
    assert_eq!(r.take_changes().len(), moved.len());
    assert!(r.check_lease(t0 + LEASE * 12 / 10).is_empty());
    assert_eq!(r.schedule.sizes(), (ROOMS, 0));
}

#[test]
fn rooms_that_cannot_get_a_host_wait_without_being_swept_again() {
    let (mut r, t0) = (registry(), Instant::now());
    // Nobody reachable: every room says why it has no host, once.
    let rooms: Vec<String> = (0..100).map(|i| format!("r{i}")).collect();
    let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
    let a = r.enter(reg_in("alice", 1, &rooms), false, t0);
    let mut now = t0;
    for _ in 0..4 {
        now += CHECK_PERIOD;
        r.check_all(false, now);
    }
    let said = r.check_lease(now);
    assert_eq!(said.len(), 100);
    assert!(said
        .iter()
        .all(|h| h.certificate.is_none() && !h.no_host_reason.is_empty()));
    assert_eq!(r.schedule.sizes(), (0, 100));
    assert!(
        r.check_lease(now).is_empty(),
        "nothing changed: nothing swept"
    );
    // Once the relay reaches alice, every room gets her.
    now += CHECK_PERIOD;
    r.check_member(&a, true, now);
    assert_eq!(r.check_lease(now).len(), 100);
    assert_eq!(r.schedule.sizes(), (100, 0));
}
