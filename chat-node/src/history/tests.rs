use super::*;
use chat_proto::pb::chat::{ChatMessage, RoomReset};

fn message(seq: u64) -> LogEntry {
    LogEntry {
        kind: Some(log_entry::Kind::Message(ChatMessage {
            seq,
            id: format!("m{seq}"),
            text: format!("text {seq}"),
            ..Default::default()
        })),
    }
}

fn reset(seq: u64) -> LogEntry {
    LogEntry {
        kind: Some(log_entry::Kind::Reset(RoomReset {
            seq,
            min_users: 2,
            ..Default::default()
        })),
    }
}

fn record(room_id: &str) -> RoomRecord {
    RoomRecord {
        room_id: room_id.into(),
        min_users: 2,
        ..Default::default()
    }
}

fn seqs(copy: &StoredCopy) -> Vec<u64> {
    copy.entries
        .iter()
        .map(|e| match &e.kind {
            Some(log_entry::Kind::Message(m)) => m.seq,
            Some(log_entry::Kind::Reset(r)) => r.seq,
            None => 0,
        })
        .collect()
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "chat-node-history-{what}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test]
async fn writes_are_kept_per_room_and_read_back_after_reopening() {
    let dir = temp_dir("roundtrip");
    {
        let store = History::open(&dir, "alice").expect("open");
        let lobby = store.room("lobby");
        let ops = store.room("ops");
        assert!(lobby.load().expect("load").is_none());
        let write = |start_over, range: std::ops::RangeInclusive<u64>| CopyWrite {
            start_over,
            entries: range.clone().map(message).collect(),
            hashes: range.map(|seq| [seq as u8; 32]).collect(),
            record: record("one"),
        };
        lobby.write(write(false, 1..=3)).await.expect("write");
        lobby.write(write(false, 4..=5)).await.expect("write");
        ops.write(write(false, 1..=2)).await.expect("write");
        let copy = lobby.load().expect("load").expect("a copy");
        assert_eq!(seqs(&copy), [1, 2, 3, 4, 5]);
        assert_eq!(copy.record, record("one"));
        // A reset drops what came before it; starting over drops it all.
        let mut with_reset = write(false, 7..=8);
        with_reset.entries.insert(0, reset(6));
        lobby.write(with_reset).await.expect("write");
        assert_eq!(seqs(&lobby.load().unwrap().unwrap()), [6, 7, 8]);
        ops.write(write(true, 1..=1)).await.expect("write");
        assert_eq!(seqs(&ops.load().unwrap().unwrap()), [1]);
    }
    // The writer thread lets go of the file once the handles are gone.
    let reopened = reopen(&dir).await;
    let lobby = reopened.room("lobby");
    assert_eq!(seqs(&lobby.load().unwrap().unwrap()), [6, 7, 8]);
    lobby.forget().await.expect("forget");
    assert!(lobby.load().unwrap().is_none());
    assert_eq!(seqs(&reopened.room("ops").load().unwrap().unwrap()), [1]);
}

/// Opens the store in `dir` again once the previous writer has let go.
async fn reopen(dir: &Path) -> Arc<History> {
    for _ in 0..200 {
        match History::open(dir, "alice") {
            Ok(store) => return store,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
    History::open(dir, "alice").expect("reopen")
}

#[test]
fn a_damaged_file_or_a_blocked_path_is_a_clear_error() {
    let dir = temp_dir("damaged");
    std::fs::write(store_path(&dir, "alice"), vec![0x5a; 8192]).expect("garbage");
    let err = History::open(&dir, "alice").expect_err("not a store");
    assert!(matches!(err, HistoryError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("alice.history"), "{err}");

    let dir = temp_dir("blocked");
    std::fs::create_dir_all(store_path(&dir, "alice")).expect("a directory in the way");
    let err = History::open(&dir, "alice").expect_err("cannot be written");
    assert!(matches!(err, HistoryError::Unwritable { .. }), "{err}");

    let file = temp_dir("file").join("not-a-dir");
    std::fs::write(&file, b"x").expect("a file");
    let err = History::open(&file, "alice").expect_err("a file is no directory");
    assert!(err.to_string().contains("writable"), "{err}");
}

#[tokio::test]
async fn pages_are_read_with_their_hashes_and_hashes_go_with_their_entries() {
    let dir = temp_dir("pages");
    let store = History::open(&dir, "alice").expect("open");
    let lobby = store.room("lobby");
    let write = CopyWrite {
        start_over: false,
        entries: (1..=10).map(message).collect(),
        // The last two have no hash given.
        hashes: (1..=8).map(|seq| [seq as u8; 32]).collect(),
        record: record("one"),
    };
    lobby.write(write).await.expect("write");
    let page = lobby.read(3, 9, 4).expect("read");
    let seqs: Vec<u64> = page
        .iter()
        .map(|(e, _)| match &e.kind {
            Some(log_entry::Kind::Message(m)) => m.seq,
            _ => 0,
        })
        .collect();
    assert_eq!(seqs, [3, 4, 5, 6], "from 3, at most 4");
    assert_eq!(page[0].1, Some([3; 32]));
    let tail = lobby.read(8, 20, 10).expect("read");
    assert_eq!(tail.len(), 3);
    assert_eq!((tail[0].1, tail[1].1), (Some([8; 32]), None));
    lobby.put_hashes(&[(9, [9; 32])]).expect("put");
    assert_eq!(lobby.read(9, 9, 1).expect("read")[0].1, Some([9; 32]));
    // A reset drops the hashes before it with the entries.
    let write = CopyWrite {
        start_over: false,
        entries: vec![reset(11)],
        hashes: vec![[11; 32]],
        record: record("one"),
    };
    lobby.write(write).await.expect("write");
    let after = lobby.read(0, 20, 20).expect("read");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].1, Some([11; 32]));
    assert_eq!(lobby.record().expect("read"), Some(record("one")));
}

#[tokio::test]
async fn a_record_with_a_checkpoint_drops_the_entries_through_it_and_a_reset_still_wipes() {
    let dir = temp_dir("retention");
    let store = History::open(&dir, "alice").expect("open");
    let lobby = store.room("lobby");
    let ops = store.room("ops");
    let write = |range: std::ops::RangeInclusive<u64>, expired_seq: u64| CopyWrite {
        entries: range.clone().map(message).collect(),
        hashes: range.map(|seq| [seq as u8; 32]).collect(),
        record: RoomRecord {
            expired_seq,
            expired_hash: if expired_seq > 0 {
                vec![expired_seq as u8; 32]
            } else {
                Vec::new()
            },
            ..record("one")
        },
        ..Default::default()
    };
    lobby.write(write(1..=10, 0)).await.expect("write");
    ops.write(write(1..=4, 0)).await.expect("write");
    // Retention cut through 6: entries and hashes up to it go, on disk.
    lobby.write(write(11..=12, 6)).await.expect("write");
    let copy = lobby.load().expect("load").expect("a copy");
    assert_eq!(seqs(&copy), [7, 8, 9, 10, 11, 12]);
    assert_eq!(copy.record.expired_seq, 6);
    assert!(
        lobby.read(1, 6, 100).expect("read").is_empty(),
        "no entry below the cut"
    );
    let page = lobby.read(1, 12, 100).expect("read");
    assert_eq!(page.first().and_then(|(_, h)| *h), Some([7; 32]));
    assert_eq!(
        seqs(&ops.load().unwrap().unwrap()),
        [1, 2, 3, 4],
        "per room"
    );
    // After reopening it is still gone.
    drop((lobby, ops, store));
    let store = reopen(&dir).await;
    let lobby = store.room("lobby");
    assert_eq!(seqs(&lobby.load().unwrap().unwrap()), [7, 8, 9, 10, 11, 12]);
    // A reset wipes everything before it, the checkpoint's entries too.
    let mut with_reset = write(14..=14, 6);
    with_reset.entries.insert(0, reset(13));
    lobby.write(with_reset).await.expect("write");
    assert_eq!(seqs(&lobby.load().unwrap().unwrap()), [13, 14]);
    let _ = std::fs::remove_dir_all(dir);
}
