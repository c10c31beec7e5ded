//! Reset grants: only a member of the room, with its token, gets one,
//! naming itself; each grant has its own nonce.

use super::*;

#[test]
fn a_reset_grant_names_the_member_that_asked_and_its_room() {
    let mut r = Registry::new(LEASE, key_of("relay"));
    let t0 = Instant::now();
    let alice = r
        .register(reg_in("alice", 1, &["ops"]), t0, WALL_MS)
        .unwrap()
        .0;
    let bob = r.register(reg("bob", 2), t0, WALL_MS).unwrap().0;
    let token = &alice.session_token;
    let grant = r
        .reset_grant(&id_of("alice"), token, "ops", 3, WALL_MS)
        .unwrap();
    assert_eq!(
        (grant.room.as_str(), grant.min_users, grant.by.as_str()),
        ("ops", 3, "alice")
    );
    assert_eq!(grant.by_node_id, id_of("alice"));
    assert_eq!(grant.issued_at_unix_ms, WALL_MS);
    assert_eq!(grant.nonce.len(), trust::RESET_NONCE_BYTES);
    let again = r
        .reset_grant(&id_of("alice"), token, "ops", 3, WALL_MS)
        .unwrap();
    assert_ne!(again.nonce, grant.nonce, "a nonce of its own");
    let cert = r.issue_reset(&grant);
    assert_eq!(key_of("relay").verifying().verify_reset(&cert), Ok(grant));

    // An empty room is the lobby, which bob is in.
    let lobby = r.reset_grant(&id_of("bob"), &bob.session_token, "", 1, WALL_MS);
    assert_eq!(lobby.map(|g| g.room), Ok(LOBBY.to_string()));
    // Bob is not in ops; nobody passes with another's token or unregistered.
    let refused = r.reset_grant(&id_of("bob"), &bob.session_token, "ops", 1, WALL_MS);
    assert!(
        matches!(refused, Err(RegistryError::NotInRoom { .. })),
        "{refused:?}"
    );
    let refused = r.reset_grant(&id_of("alice"), &bob.session_token, "ops", 1, WALL_MS);
    assert!(
        matches!(refused, Err(RegistryError::BadToken(_))),
        "{refused:?}"
    );
    let refused = r.reset_grant(&id_of("carol"), "", "ops", 1, WALL_MS);
    assert!(
        matches!(refused, Err(RegistryError::UnknownNode(_))),
        "{refused:?}"
    );
    let refused = r.reset_grant(&id_of("alice"), token, "a room", 1, WALL_MS);
    assert!(
        matches!(refused, Err(RegistryError::InvalidRoom { .. })),
        "{refused:?}"
    );
}
