use super::*;
use chat_proto::rules::RuleError;

fn member(name: &str) -> Member {
    Member {
        name: name.into(),
        node_id: format!("id-{name}"),
        address: "127.0.0.1:1".into(),
        public_key: Vec::new(),
    }
}

fn texts(entries: &[LogEntry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| match &e.kind {
            Some(log_entry::Kind::Message(m)) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn holds_messages_until_threshold_then_activates_for_good() {
    let mut room = Room::new("lobby", "r".into(), 2);
    assert!(!room.join(member("a")).unwrap().activated_now);
    room.append("a", "1", "early", 0, 1).unwrap();
    assert!(!room.activated());
    let joined = room.join(member("b")).unwrap();
    assert!(joined.activated_now && joined.new_member);
    let version = room.members_version();
    let again = room.join(member("b")).unwrap();
    assert!(!again.new_member && !again.activated_now);
    assert_eq!(room.members_version(), version, "nothing changed");
    let moved = room
        .join(Member {
            address: "127.0.0.1:2".into(),
            ..member("b")
        })
        .unwrap();
    assert!(!moved.new_member);
    assert_ne!(room.members_version(), version, "a new address is a change");
    assert!(room.leave("b"));
    assert!(room.activated(), "activation is permanent");
    assert_eq!(texts(&room.entries_after(0, u64::MAX, 10)), ["early"]);
}

#[test]
fn ids_make_retries_idempotent() {
    let mut room = Room::new("lobby", "r".into(), 1);
    let first = room.append("a", "m1", "hi", 0, 1).unwrap();
    let again = room.append("a", "m1", "hi", 0, 1).unwrap();
    assert_eq!(
        again,
        Appended {
            seq: first.seq,
            duplicate: true
        }
    );
    // Another sender may use the same id.
    assert_eq!(room.append("b", "m1", "yo", 0, 1).unwrap().seq, 2);
    assert_eq!(room.head_seq(), 2);
}

#[test]
fn refuses_bad_input_without_change() {
    let mut room = Room::new("lobby", "r".into(), 1);
    room.join(member("a")).unwrap();
    let mut other = member("a");
    other.node_id = "someone-else".into();
    assert_eq!(room.join(other), Err(RoomError::NameTaken("a".into())));
    assert!(matches!(
        room.append("a", "x", &"x".repeat(5000), 0, 1),
        Err(RoomError::Rule(RuleError::MessageTooLarge(5000)))
    ));
    assert_eq!(room.append("a", "", "hi", 0, 1), Err(RoomError::BadId));
    assert_eq!(room.reset("a", 0, 1, None), Err(RoomError::BadThreshold));
    assert_eq!(room.head_seq(), 0);
}

#[test]
fn reset_wipes_history_and_restarts_activation() {
    let mut room = Room::new("lobby", "r".into(), 1);
    room.join(member("a")).unwrap();
    room.append("a", "1", "old", 0, 1).unwrap();
    let reset = room.reset("a", 3, 1, None).unwrap();
    assert_eq!(reset.seq, 2);
    assert!(!room.activated());
    room.append("a", "2", "new", 0, 1).unwrap();
    let entries = room.entries_after(0, u64::MAX, 10);
    assert_eq!(
        entry_seq(&entries[0]),
        2,
        "a reader behind the reset gets the reset first"
    );
    assert_eq!(texts(&entries), ["new"]);
    // The same id is fresh after a reset: the history it deduplicated is gone.
    assert!(!room.append("a", "1", "again", 0, 1).unwrap().duplicate);
}

#[test]
fn replica_catches_up_by_delta() {
    let mut host = Room::new("lobby", "r".into(), 1);
    host.join(member("a")).unwrap();
    for i in 0..5 {
        host.append("a", &i.to_string(), "m", 0, 1).unwrap();
    }
    let mut replica = Room::new("lobby", "r".into(), 9);
    replica
        .apply_replica(host.meta(true), host.entries_after(0, u64::MAX, 3))
        .unwrap();
    assert_eq!(replica.head_seq(), 3);
    let have = replica
        .apply_replica(host.meta(false), host.entries_after(3, u64::MAX, 100))
        .unwrap();
    assert_eq!(have, 5);
    assert!(
        replica.member("a").is_some(),
        "a delta without the member list keeps the list held"
    );
    let version = replica.members_version();
    host.join(member("b")).unwrap();
    replica.apply_replica(host.meta(true), Vec::new()).unwrap();
    assert!(replica.member("b").is_some());
    assert_ne!(replica.members_version(), version);
    assert!(replica.activated());
    assert_eq!(replica.min_users(), 1);
    // A gap is refused.
    let mut stale = Room::new("lobby", "r".into(), 1);
    assert_eq!(
        stale.apply_replica(host.meta(true), host.entries_after(2, u64::MAX, 10)),
        Err(RoomError::Gap { have: 0, got: 3 })
    );
    // Dedup survives replication.
    assert!(replica.append("a", "4", "m", 0, 1).unwrap().duplicate);
}

#[test]
fn epochs_identify_log_prefixes() {
    let mut room = Room::new("lobby", "r".into(), 1);
    room.append("a", "1", "x", 0, 3).unwrap();
    room.append("a", "2", "y", 0, 4).unwrap();
    assert_eq!(room.epoch_at(0), Some(0));
    assert_eq!(room.epoch_at(1), Some(3));
    assert_eq!(room.epoch_at(2), Some(4));
    assert_eq!(room.epoch_at(3), None);
    assert_eq!(room.last_epoch(), 4);
    room.reset("a", 1, 5, None).unwrap();
    assert_eq!(room.epoch_at(1), None, "wiped by the reset");
    assert_eq!(room.epoch_at(3), Some(5));
}

#[test]
fn entries_after_stops_at_the_bound_and_the_batch_size() {
    let mut room = Room::new("lobby", "r".into(), 1);
    for i in 1..=6 {
        room.append("a", &i.to_string(), &format!("m{i}"), 0, 1)
            .unwrap();
    }
    assert_eq!(texts(&room.entries_after(1, 4, 10)), ["m2", "m3", "m4"]);
    assert_eq!(texts(&room.entries_after(1, 4, 2)), ["m2", "m3"]);
    assert!(room.entries_after(4, 4, 10).is_empty());
    assert!(room.entries_after(5, 3, 10).is_empty());
    assert_eq!(texts(&room.entries_after(5, u64::MAX, 10)), ["m6"]);
    room.reset("a", 1, 1, None).unwrap();
    room.append("a", "x", "after reset", 0, 1).unwrap();
    // A cursor before the reset starts at the reset.
    let entries = room.entries_after(2, 8, 10);
    assert_eq!(entries.iter().map(entry_seq).collect::<Vec<_>>(), [7, 8]);
}

#[test]
fn head_before_leaves_out_the_entries_of_the_new_epoch() {
    let mut room = Room::new("lobby", "r".into(), 1);
    assert_eq!(room.head_before(2), 0);
    room.append("a", "1", "old", 0, 1).unwrap();
    room.append("a", "2", "old", 0, 1).unwrap();
    assert_eq!(room.head_before(2), 2);
    room.append("a", "3", "new", 0, 2).unwrap();
    assert_eq!(room.head_before(2), 2);
    assert_eq!(room.head_before(3), 3);
}

#[test]
fn only_entries_on_disk_leave_memory_and_readers_are_told_where_the_rest_is() {
    let mut room = Room::new("lobby", "r".into(), 1);
    let total = (MEMORY_TAIL * 2) as u64;
    for i in 1..=total {
        room.append("a", &format!("m{i}"), "hi", 0, 1).unwrap();
    }
    // Nothing is on disk yet: everything stays.
    assert_eq!(room.held(), MEMORY_TAIL * 2);
    // Half of it is: all but the tail of what is on disk leaves memory.
    let half = MEMORY_TAIL as u64;
    room.mark_saved(half, room.hash_at(half).unwrap());
    assert_eq!(room.held(), MEMORY_TAIL);
    assert_eq!(room.held_from(), half + 1);
    // A note for another log (a wrong hash) changes nothing.
    room.mark_saved(total, [7; 32]);
    assert_eq!(room.held(), MEMORY_TAIL);
    room.mark_saved(total, room.head_hash());
    assert_eq!(room.held(), MEMORY_TAIL, "the tail stays");
    // The hash where memory starts is still known, the ones before not.
    assert!(room.hash_at(half).is_some());
    assert!(room.hash_at(half - 1).is_none());
    assert_eq!(
        room.read(0, total, 10),
        Read::OnDisk {
            after: 0,
            through: half
        }
    );
    assert!(matches!(room.read(half, total, 10), Read::Held(e) if e.len() == 10));
    // Dedup covers the tail; older ids are refused by the sender's chain.
    assert_eq!(room.seq_of("a", &format!("m{total}")), Some(total));
    assert_eq!(room.seq_of("a", "m1"), None);
    let retried = room.append_message(ChatMessage {
        id: "m1".into(),
        from: "a".into(),
        text: "hi".into(),
        epoch: 1,
        chain_seq: 1,
        ..Default::default()
    });
    assert!(retried.is_err(), "never sequenced twice");
    assert_eq!(room.head_seq(), total);
    // A reset starts memory over; readers from before it read from it.
    room.reset("a", 1, 2, None).unwrap();
    assert_eq!(room.held(), 1);
    assert!(matches!(room.read(0, u64::MAX, 10), Read::Held(e) if e.len() == 1));
    assert_eq!(room.last_reset().map(|r| r.seq), Some(total + 1));
}
