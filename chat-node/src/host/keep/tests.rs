use super::restore as restore_paged;
use super::*;
use crate::history::StoredCopy;
use chat_proto::pb::chat::{LogEntry, SendMessage};
use chat_proto::pb::relay::{HostTerm, NameGrant};
use chat_proto::trust::Keypair;

/// A room's log as a host wrote it to disk: `count` messages from "ann",
/// signed by her, and its head signed by the host of a relay-signed term.
struct Written {
    relay: Keypair,
    stored: StoredCopy,
}

fn written(count: u64) -> Written {
    let relay = Keypair::generate();
    let ann = Keypair::generate();
    let host = Keypair::generate();
    let sender = relay.issue_name(&NameGrant {
        name: "ann".into(),
        node_id: "ann-id".into(),
        public_key: ann.public_key(),
        issued_at_unix_ms: 1,
        expires_at_unix_ms: 2,
    });
    let term = relay.issue_host_term(&HostTerm {
        room: "lobby".into(),
        epoch: 7,
        node_id: "host-id".into(),
        public_key: host.public_key(),
        ..Default::default()
    });
    let mut room = Room::new("lobby", "incarnation".into(), 2);
    let mut prev = Vec::new();
    for i in 1..=count {
        let mut sent = SendMessage {
            id: format!("m{i}"),
            text: format!("hello {i}"),
            chain_seq: i,
            chain_prev: prev.clone(),
            ..Default::default()
        };
        prev = ann.sign_message("lobby", "ann", &mut sent).to_vec();
        let message = ChatMessage {
            id: sent.id,
            from: "ann".into(),
            text: sent.text,
            sent_at_unix_ms: sent.sent_at_unix_ms,
            epoch: 7,
            signature: sent.signature,
            sender: Some(sender.clone()),
            chain_seq: sent.chain_seq,
            chain_prev: sent.chain_prev,
            seq: 0,
        };
        room.append_message(message).expect("follows the chain");
    }
    let head = host.sign_head("lobby", 7, count, &room.head_hash());
    let record = RoomRecord {
        room_id: "incarnation".into(),
        min_users: 2,
        activated: true,
        replica_term: 7,
        latest_term: Some(term.clone()),
        head: Some(head),
        head_term: Some(term),
        ..Default::default()
    };
    let entries = room.entries_after(0, count, usize::MAX);
    Written {
        relay,
        stored: StoredCopy { record, entries },
    }
}

/// Writes `stored` as the copy of `name` in a fresh store (without log
/// hashes, as a store written before they were kept), then restores it.
fn restore_from(
    relay_key: &PublicKey,
    name: &str,
    stored: StoredCopy,
) -> (Result<Restored, String>, RoomHistory) {
    let dir = std::env::temp_dir().join(format!(
        "chat-node-keep-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let history = History::open(&dir, "ann").expect("open a store").room(name);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    for (i, chunk) in stored.entries.chunks(MAX_ENTRIES_PER_WRITE).enumerate() {
        let write = CopyWrite {
            start_over: i == 0,
            entries: chunk.to_vec(),
            hashes: Vec::new(),
            record: stored.record.clone(),
        };
        runtime.block_on(history.write(write)).expect("written");
    }
    let record = history.record().expect("read").expect("a record");
    (restore_paged(&history, relay_key, name, record), history)
}

fn restore(relay_key: &PublicKey, name: &str, stored: StoredCopy) -> Result<Restored, String> {
    restore_from(relay_key, name, stored).0
}

fn text_of(entry: &mut LogEntry) -> &mut String {
    match &mut entry.kind {
        Some(log_entry::Kind::Message(m)) => &mut m.text,
        _ => panic!("a message"),
    }
}

#[test]
fn a_copy_that_checks_out_is_held_as_it_was() {
    let w = written(5);
    let restored = restore(&w.relay.verifying(), "lobby", w.stored).expect("checks out");
    assert_eq!(restored.room.head_seq(), 5);
    assert_eq!(restored.room.room_id(), "incarnation");
    assert!(restored.room.activated());
    assert_eq!(restored.replica_term, 7);
    assert_eq!(restored.latest.map(|(epoch, _)| epoch), Some(7));
    // The dedup table and the chains come back with the log.
    assert_eq!(restored.room.seq_of("ann", "m3"), Some(3));
}

#[test]
fn a_copy_that_does_not_check_out_is_never_held() {
    let relay_key = |w: &Written| w.relay.verifying();
    // An altered message.
    let mut w = written(5);
    text_of(&mut w.stored.entries[2]).push('!');
    assert!(restore(&relay_key(&w), "lobby", w.stored).is_err());
    // A missing entry.
    let mut w = written(5);
    w.stored.entries.remove(1);
    assert!(restore(&relay_key(&w), "lobby", w.stored).is_err());
    // Read as another room's copy.
    let w = written(5);
    assert!(restore(&relay_key(&w), "ops", w.stored).is_err());
    // A term the relay did not sign.
    let w = written(5);
    assert!(restore(&Keypair::generate().verifying(), "lobby", w.stored).is_err());
    // A head signed by someone else than the term's host.
    let mut w = written(5);
    let forged = Keypair::generate().sign_head("lobby", 7, 5, &[0; 32]);
    w.stored.record.head = Some(forged);
    assert!(restore(&relay_key(&w), "lobby", w.stored).is_err());
    // No room id.
    let mut w = written(5);
    w.stored.record.room_id.clear();
    assert!(restore(&relay_key(&w), "lobby", w.stored).is_err());
}

#[test]
fn entries_past_the_signed_head_are_left_out() {
    let mut w = written(5);
    let head = written_head_at(&mut w, 3);
    w.stored.record.head = Some(head);
    let restored = restore(&w.relay.verifying(), "lobby", w.stored).expect("checks out");
    assert_eq!(restored.room.head_seq(), 3);
}

/// Re-signs `w`'s head at `seq` (as if only that much had been vouched for).
fn written_head_at(w: &mut Written, seq: u64) -> SignedHead {
    let host = Keypair::generate();
    let term = w.relay.issue_host_term(&HostTerm {
        room: "lobby".into(),
        epoch: 8,
        node_id: "other-host".into(),
        public_key: host.public_key(),
        ..Default::default()
    });
    let mut room = Room::new("lobby", "incarnation".into(), 2);
    let entries: Vec<LogEntry> = w.stored.entries[..seq as usize].to_vec();
    room.apply_replica(
        RoomMeta {
            room_id: "incarnation".into(),
            min_users: 2,
            same_members: true,
            ..Default::default()
        },
        entries,
    )
    .expect("applies");
    w.stored.record.head_term = Some(term);
    host.sign_head("lobby", 8, seq, &room.head_hash())
}

#[test]
fn a_long_copy_is_read_back_a_page_at_a_time_keeping_only_the_tail() {
    let count = (crate::host::room::MEMORY_TAIL + 100) as u64;
    let w = written(count);
    let (restored, history) = restore_from(&w.relay.verifying(), "lobby", w.stored);
    let restored = restored.expect("checks out");
    assert_eq!(restored.room.head_seq(), count);
    assert_eq!(restored.room.held(), crate::host::room::MEMORY_TAIL);
    // The log hashes the store lacked were written back.
    let first = history.read(1, 1, 1).expect("read");
    assert!(first[0].1.is_some(), "entry 1 has its log hash on disk");
}
