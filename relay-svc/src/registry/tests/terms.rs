//! When the relay ends a host's term: past the term limit, after a lapsed
//! lease nobody could take over, for a host it cannot reach; and which
//! claimed terms it honours.

use super::*;
use crate::registry::sweep::HOST_GONE_GRACE;

const LIMIT: Duration = Duration::from_secs(5);

fn limited() -> Registry {
    registry().with_term_limit(LIMIT)
}

/// Renews "lobby" as `m` at `epoch`, keeping the successor.
fn renew(r: &mut Registry, m: &Member, epoch: u64, now: Instant) -> Result<(), RegistryError> {
    r.renew_in(m, LOBBY, epoch, "", now).map(|_| ())
}

/// Renews as `m` every half lease from `from` until `until`; the last
/// answer.
fn keep_renewing(
    r: &mut Registry,
    m: &Member,
    epoch: u64,
    from: Instant,
    until: Instant,
) -> Result<(), RegistryError> {
    let mut t = from;
    loop {
        let answer = renew(r, m, epoch, t);
        r.check_lease(t);
        if answer.is_err() || t >= until {
            return answer;
        }
        t += LEASE / 2;
    }
}

#[test]
fn a_host_that_keeps_renewing_loses_the_room_past_the_term_limit() {
    let (mut r, t0) = (limited(), Instant::now());
    let alice = r.join("alice", 1, t0);
    let bob = r.join("bob", 2, t0);
    renew(&mut r, &alice, 1, t0).unwrap();
    r.renew_in(&alice, LOBBY, 1, &bob.record.node_id, t0)
        .unwrap();
    // Within the limit, renewals hold; past it they are refused.
    keep_renewing(&mut r, &alice, 1, t0, t0 + LIMIT).unwrap();
    let refused = renew(&mut r, &alice, 1, t0 + LIMIT + LEASE / 2);
    assert!(
        matches!(refused, Err(RegistryError::TermEnded { epoch: 1, .. })),
        "{refused:?}"
    );
    // Its lease runs out and the named successor takes the room.
    let end = t0 + LIMIT + LEASE / 2 + LEASE * 2;
    let moved = r.check_one(end).expect("the room moves");
    assert_eq!((moved.name.as_str(), moved.epoch), ("bob", 2));
    assert_eq!(term_of(&moved).previous_epoch, 1);
}

#[test]
fn a_lone_host_keeps_its_room_past_the_term_limit() {
    let (mut r, t0) = (limited(), Instant::now());
    let alice = r.join("alice", 1, t0);
    // A client-only member could not take the room.
    r.join_with(client_only("carol"), true, t0);
    keep_renewing(&mut r, &alice, 1, t0, t0 + LIMIT * 3).unwrap();
    assert_eq!(r.host().unwrap().epoch, 1);
}

#[test]
fn a_host_the_relay_gave_up_on_cannot_renew_and_gets_a_new_term_if_nobody_else_can_host() {
    let (mut r, t0) = (registry(), Instant::now());
    let alice = r.join("alice", 1, t0);
    r.join_with(client_only("carol"), true, t0);
    // alice stops renewing (frozen): nobody can take the room.
    let lapsed = t0 + LEASE * 2;
    let gone = r
        .check_one(lapsed)
        .expect("the relay says there is no host");
    assert!(gone.certificate.is_none());
    assert!(!gone.no_host_reason.is_empty());
    // Back, alice may not renew the term the relay gave up on...
    let late = renew(&mut r, &alice, 1, lapsed);
    assert!(
        matches!(late, Err(RegistryError::TermEnded { epoch: 1, .. })),
        "{late:?}"
    );
    assert!(r.current_host(LOBBY).is_err(), "still no host");
    // ...but, alive and the only one who can host, she gets a new term.
    let back = r.check_one(lapsed).expect("a new term");
    assert_eq!((back.name.as_str(), back.epoch), ("alice", 2));
    renew(&mut r, &alice, 2, lapsed).unwrap();
    assert!(r
        .report_migration(
            &alice.record.node_id,
            &alice.session_token,
            LOBBY,
            1,
            "x",
            lapsed
        )
        .is_err());
}

#[test]
fn the_relay_stops_renewing_a_host_it_cannot_reach() {
    let (mut r, t0) = (registry(), Instant::now());
    let alice = r.join("alice", 1, t0);
    let bob = r.join("bob", 2, t0);
    r.renew_in(&alice, LOBBY, 1, &bob.record.node_id, t0)
        .unwrap();
    for _ in 0..3 {
        r.check_member(&alice, false, t0);
    }
    let refused = renew(&mut r, &alice, 1, t0);
    assert!(
        matches!(refused, Err(RegistryError::TermEnded { .. })),
        "{refused:?}"
    );
    let moved = r.check_one(t0 + LEASE * 2).expect("the room moves");
    assert_eq!(moved.name, "bob");
}

#[test]
fn a_member_without_a_watch_stream_may_not_be_successor() {
    let (mut r, t0) = (registry(), Instant::now());
    let alice = r.join("alice", 1, t0);
    let bob = r.join("bob", 2, t0);
    let grant = r.renew_in(&alice, LOBBY, 1, "", t0).unwrap();
    assert!(grant.unhostable.is_empty());
    // bob's node dies: its watch stream ends.
    r.watch_ended(&bob.record.node_id, t0);
    let grant = r
        .renew_in(&alice, LOBBY, 1, &bob.record.node_id, t0)
        .unwrap();
    assert_eq!(grant.unhostable, std::slice::from_ref(&bob.record.node_id));
    // Not recorded as successor: alice's death leaves nobody to promote.
    assert!(r
        .check_one(t0 + LEASE * 2)
        .is_some_and(|h| h.certificate.is_none()));
}

#[test]
fn a_host_committing_alone_clears_the_successor() {
    let (mut r, t0) = (registry(), Instant::now());
    let alice = r.join("alice", 1, t0);
    r.join("bob", 2, t0);
    let carol = r.join("carol", 3, t0);
    r.renew_in(&alice, LOBBY, 1, &carol.record.node_id, t0)
        .unwrap();
    let alone = Renewal {
        room: LOBBY.into(),
        epoch: 1,
        no_successor: true,
        ..Renewal::default()
    };
    r.renew_lease(&alice.record.node_id, &alice.session_token, &alone, t0)
        .unwrap();
    // carol is no longer preferred: equal holdings, the first name is.
    let moved = r.check_one(t0 + LEASE * 2).expect("failover");
    assert_eq!(moved.name, "bob", "carol was forgotten as successor");
}

#[test]
fn only_the_host_may_clear_its_successor() {
    let (mut r, t0) = (registry(), Instant::now());
    let alice = r.join("alice", 1, t0);
    let bob = r.join("bob", 2, t0);
    let carol = r.join("carol", 3, t0);
    r.renew_in(&alice, LOBBY, 1, &carol.record.node_id, t0)
        .unwrap();
    let alone = Renewal {
        room: LOBBY.into(),
        epoch: 1,
        no_successor: true,
        ..Renewal::default()
    };
    // bob is a member, not the host; a stranger's token is no token.
    assert_eq!(
        r.renew_lease(&bob.record.node_id, &bob.session_token, &alone, t0),
        Err(RegistryError::NotHost((&bob.record.node_id).into()))
    );
    assert!(matches!(
        r.renew_lease(&alice.record.node_id, "guess", &alone, t0),
        Err(RegistryError::BadToken(_))
    ));
    // carol is still the successor: she takes the room when alice dies.
    let moved = r.check_one(t0 + LEASE * 2).expect("failover");
    assert_eq!(moved.name, "carol");
}

#[test]
fn a_claimed_term_is_honoured_only_at_its_address_and_from_an_earlier_relay_process() {
    let (mut r, t0) = (registry(), Instant::now());
    // From an earlier relay process, at another address: not honoured.
    let moved = with_lobby(reg("alice", 9), Some(at(term(7, "alice"), 1)), true, 0);
    let (_, host) = r.register_now(moved, t0).unwrap();
    assert!(host.is_none(), "not re-asserted from another address");
    // Issued by this relay process to a room it forgot: not honoured, and
    // the room starts over without waiting for that host.
    let mut r = registry();
    let fresh = HostTerm {
        issued_at_unix_ms: trust::now_unix_ms() + 1,
        ..at(term(7, "alice"), 1)
    };
    let (_, host) = r
        .register_now(with_lobby(reg("alice", 1), Some(fresh), true, 0), t0)
        .unwrap();
    assert!(host.is_none());
    r.join("bob", 2, t0);
    let first = r.current_host(LOBBY).expect("a first host at once");
    assert_eq!(first.name, "bob", "alice has no watch stream");
    assert!(first.epoch > 7, "a new epoch: {}", first.epoch);
}

#[test]
fn a_host_whose_node_went_away_loses_its_room_to_its_successor_before_its_lease_ends() {
    let (mut r, t0) = (registry(), Instant::now());
    let alice = r.join("alice", 1, t0);
    let bob = r.join("bob", 2, t0);
    r.renew_in(&alice, LOBBY, 1, &bob.record.node_id, t0)
        .unwrap();
    // alice's process dies: its watch stream closes at once.
    let died = t0 + Duration::from_millis(10);
    r.watch_ended(&alice.record.node_id, died);
    assert!(r.check_one(died + HOST_GONE_GRACE / 2).is_none());
    // Not before two renewals were missed (half a lease)...
    assert!(r
        .check_one(t0 + LEASE / 2 - Duration::from_millis(1))
        .is_none());
    // ...then at once, well before the lease ends.
    let moved = r
        .check_one(t0 + LEASE / 2 + Duration::from_millis(1))
        .expect("the successor takes the room");
    assert_eq!((moved.name.as_str(), moved.epoch), ("bob", 2));
}

#[test]
fn a_host_that_renews_after_its_watch_closed_keeps_its_room() {
    let (mut r, t0) = (registry(), Instant::now());
    let alice = r.join("alice", 1, t0);
    let bob = r.join("bob", 2, t0);
    r.renew_in(&alice, LOBBY, 1, &bob.record.node_id, t0)
        .unwrap();
    let closed = t0 + Duration::from_millis(10);
    r.watch_ended(&alice.record.node_id, closed);
    // Alive, reconnecting: it renews within the grace.
    r.renew_in(
        &alice,
        LOBBY,
        1,
        &bob.record.node_id,
        closed + HOST_GONE_GRACE / 2,
    )
    .unwrap();
    assert!(r.check_one(closed + HOST_GONE_GRACE * 2).is_none());
    assert_eq!(r.host().unwrap().name, "alice");
}

#[test]
fn a_host_that_went_away_with_no_successor_named_keeps_its_room_until_its_lease_ends() {
    let (mut r, t0) = (registry(), Instant::now());
    let alice = r.join("alice", 1, t0);
    let _bob = r.join("bob", 2, t0);
    r.renew_in(&alice, LOBBY, 1, "", t0).unwrap();
    let died = t0 + Duration::from_millis(10);
    r.watch_ended(&alice.record.node_id, died);
    // Nobody holds what alice acknowledged: the lease decides.
    assert!(r.check_one(died + HOST_GONE_GRACE * 2).is_none());
    assert_eq!(r.host().unwrap().name, "alice");
    let moved = r.check_one(t0 + LEASE * 2).expect("the lease ran out");
    assert_eq!(moved.name, "bob");
}
