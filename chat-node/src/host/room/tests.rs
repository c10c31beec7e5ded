use super::*;
use chat_proto::chain;
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

#[test]
fn retention_keeps_the_newest_entries_and_a_copy_goes_on_from_the_checkpoint() {
    let policy = Retention {
        max_entries: Some(50),
        ..Default::default()
    };
    let mut room = Room::new("lobby", "r".into(), 1);
    let mut hashes = vec![chain::GENESIS];
    let mut cuts = 0;
    for i in 1..=200u64 {
        room.append("a", &format!("m{i}"), "hi", 0, 1).unwrap();
        hashes.push(room.head_hash());
        cuts += usize::from(room.retain(policy, 0).is_some());
    }
    assert_eq!(cuts, 150, "one entry goes with each past the limit");
    assert_eq!(room.expired(), Some((150, hashes[150])));
    assert_eq!(room.held(), 50);
    assert_eq!((room.head_seq(), room.head_hash()), (200, hashes[200]));
    // Readers from before the cut read from the entry after it.
    let Read::Held(entries) = room.read(0, u64::MAX, 1000) else {
        panic!("all in memory");
    };
    assert_eq!(
        entries.iter().map(entry_seq).collect::<Vec<_>>(),
        (151..=200).collect::<Vec<_>>()
    );
    // A copy that never held any of it starts at the checkpoint the
    // metadata names and checks the rest against the host's head.
    let meta = room.meta(true);
    assert_eq!(
        (meta.expired_seq, meta.expired_hash.clone()),
        (150, hashes[150].to_vec())
    );
    let mut copy = Room::new("lobby", "r".into(), 1);
    assert!(copy.expire_through(150, hashes[150]));
    assert!(!copy.expire_through(150, hashes[150]), "once");
    copy.check_copy(&entries, Some((200, hashes[200])))
        .expect("follows the checkpoint");
    copy.apply_replica(meta, entries.clone()).expect("applies");
    assert_eq!((copy.head_seq(), copy.head_hash()), (200, hashes[200]));
    // A copy from another checkpoint does not reach the host's head.
    let mut forged = Room::new("lobby", "r".into(), 1);
    forged.expire_through(150, [9; 32]);
    assert!(forged
        .check_copy(&entries, Some((200, hashes[200])))
        .is_err());
    // A copy that held the older entries drops them.
    let mut behind = Room::new("lobby", "r".into(), 1);
    for i in 1..=120u64 {
        behind.append("a", &format!("m{i}"), "hi", 0, 1).unwrap();
    }
    behind.expire_through(100, hashes[100]);
    assert_eq!((behind.held(), behind.held_from()), (20, 101));
    // A reset is kept until the messages after it go.
    room.reset("a", 1, 1, None).unwrap();
    assert_eq!(
        room.retain(policy, 0),
        None,
        "fewer than 50 since the reset"
    );
}

#[test]
fn retention_by_age_drops_the_oldest_run_of_old_messages_only() {
    let policy = Retention {
        max_age_ms: Some(1_000),
        ..Default::default()
    };
    let mut room = Room::new("lobby", "r".into(), 1);
    for (i, sent) in [100, 200, 5_000, 300, 6_000].into_iter().enumerate() {
        room.append("a", &format!("m{i}"), "hi", sent, 1).unwrap();
    }
    // At 5,500 the first two are older than a second; the third is not,
    // so the one after it (signed earlier, by its sender's clock) stays.
    let cut = room.retain(policy, 5_500);
    assert_eq!(cut.map(|(seq, _)| seq), Some(2));
    assert_eq!(room.held_from(), 3);
    assert_eq!(room.retain(policy, 5_500), None, "nothing more");
    assert_eq!(room.retain(policy, 10_000).map(|(seq, _)| seq), Some(5));
    assert_eq!(room.held(), 0);
    assert_eq!(room.read(0, u64::MAX, 10), Read::Held(Vec::new()));
}

#[test]
fn retention_beyond_memory_cuts_at_a_milestone_it_knows() {
    let mut room = Room::new("lobby", "r".into(), 1);
    let total = (MEMORY_TAIL * 2) as u64;
    for i in 1..=total {
        room.append("a", &format!("m{i}"), "hi", 0, 1).unwrap();
    }
    room.mark_saved(total, room.head_hash());
    assert_eq!(room.held(), MEMORY_TAIL);
    // Keep 5000: the cut would be at 3192, on disk only; it goes to the
    // milestone at or before it (3136), keeping a few more.
    let policy = Retention {
        max_entries: Some(5_000),
        ..Default::default()
    };
    let (seq, _) = room.retain(policy, 0).expect("a cut");
    assert_eq!(seq, 3_136);
    assert_eq!(room.held(), MEMORY_TAIL, "memory unchanged");
    assert_eq!(
        room.read(0, total, 10),
        Read::OnDisk {
            after: 3_136,
            through: MEMORY_TAIL as u64
        }
    );
}
