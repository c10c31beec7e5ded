//! History that lasts: each node keeps its copy of every room it is in on
//! disk, so rooms whose members and relay are all killed at the same
//! moment (`kill -9`, as in a power cut) come back with their history:
//! every acknowledged message once, in order, at the sequence number it
//! was acknowledged with, and the chat goes on after it. A member whose
//! store is gone catches up from the host; a damaged store or one that
//! cannot be written stops the node at its start with an error that says
//! so; a room's copy altered on disk is dropped and taken again from the
//! host, never shown.

use chat_node::history::{CopyWrite, History};
use chat_proto::pb::chat::log_entry;
use chat_tests::member::Member;
use chat_tests::procs::{kill_all_at_once, node_data_dir, run_binary, spawn_node, RelayProcess};
use std::collections::{BTreeMap, HashMap};

/// Planned moves every second: the rooms change hosts before the crash.
const RELAY_ARGS: &[&str] = &["--min-users", "2", "--migration-interval", "1s"];

/// Who is in which rooms.
const MEMBERS: &[(&str, &[&str])] = &[
    ("alice", &["lobby", "ops"]),
    ("bob", &["lobby", "ops", "dev"]),
    ("carol", &["lobby", "dev"]),
];

/// Messages each member says in each of its rooms before the crash.
const BEFORE: usize = 6;

/// The acknowledged messages of each room: (seq, text).
type Acked = BTreeMap<String, Vec<(u64, String)>>;

fn rooms_of(name: &str) -> &'static [&'static str] {
    MEMBERS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[], |(_, rooms)| *rooms)
}

/// Starts every member (its rooms given with `--room`).
async fn start_members(uri: &str) -> Vec<Member> {
    let mut members = Vec::new();
    for (name, rooms) in MEMBERS {
        let args: Vec<&str> = rooms.iter().flat_map(|r| ["--room", *r]).collect();
        members.push(spawn_node(uri, name, &args).await);
    }
    members
}

/// The messages `m` sent that a host acknowledged, by room: (seq, text).
fn acknowledged(m: &Member, acked: &mut Acked) {
    let mut queued: HashMap<&str, (&str, &str)> = HashMap::new();
    for e in &m.seen {
        let id = e["id"].as_str().unwrap_or_default();
        match e["type"].as_str() {
            Some("queued") => {
                let room = e["room"].as_str().unwrap_or_default();
                queued.insert(id, (room, e["text"].as_str().unwrap_or_default()));
            }
            Some("ack") => {
                if let Some((room, text)) = queued.get(id) {
                    let seq = e["seq"].as_u64().unwrap_or(0);
                    acked
                        .entry(room.to_string())
                        .or_default()
                        .push((seq, text.to_string()));
                }
            }
            _ => {}
        }
    }
}

/// Runs the rooms, kills every member at once (and the relay with them if
/// `relay_too`), calls `before_restart` with the relay's URI, starts them
/// all again and checks the history and that the chat goes on.
async fn crash_and_restart(relay_too: bool, before_restart: impl FnOnce(&str)) {
    let mut relay = RelayProcess::start(RELAY_ARGS).await;
    let uri = relay.uri();
    let mut members = start_members(&uri).await;
    for m in &mut members {
        for room in rooms_of(&m.name) {
            m.wait_event("activated", &[("room", room)]).await;
            // After a move every room has a successor holding it (a host
            // whose members the relay has not reached yet commits alone,
            // and then holds the only copy).
            wait_for_a_move(m, room).await;
        }
    }
    for m in &mut members {
        let name = m.name.clone();
        for room in rooms_of(&name) {
            for i in 0..BEFORE {
                m.say_in(room, &format!("{name} in {room}: {i}")).await;
            }
        }
    }
    for m in &mut members {
        let want = rooms_of(&m.name).len() * BEFORE;
        m.wait_until("every message acknowledged", |seen| {
            seen.iter().filter(|e| e["type"] == "ack").count() >= want
        })
        .await;
    }
    // More on their way at the crash: acknowledged or not, never twice.
    for m in &mut members {
        let name = m.name.clone();
        for i in 0..3 {
            m.say_in(rooms_of(&name)[0], &format!("{name} in flight {i}"))
                .await;
        }
    }
    let mut pids: Vec<u32> = members.iter().filter_map(Member::pid).collect();
    if relay_too {
        pids.extend(relay.pid());
    }
    kill_all_at_once(&pids).await;
    if relay_too {
        relay.kill().await;
    }
    let mut acked = Acked::new();
    for m in &mut members {
        m.kill().await;
        m.finish().await;
        acknowledged(m, &mut acked);
    }
    drop(members);
    before_restart(&uri);

    let relay = match relay_too {
        true => RelayProcess::start_at(&relay.addr, RELAY_ARGS).await,
        false => relay,
    };
    let mut members = start_members(&relay.uri()).await;
    for m in &mut members {
        for room in rooms_of(&m.name) {
            shows_history(m, room, acked.get(*room).map_or(&[], Vec::as_slice)).await;
        }
    }
    // The chat goes on after the history.
    for (room, said) in &acked {
        let last = said.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
        let text = format!("after the restart in {room}");
        let speaker = members
            .iter_mut()
            .find(|m| rooms_of(&m.name).contains(&room.as_str()))
            .expect("a member of the room");
        speaker.say_in(room, &text).await;
        for m in members
            .iter_mut()
            .filter(|m| rooms_of(&m.name).contains(&room.as_str()))
        {
            let got = m
                .wait_event("message", &[("room", room), ("text", &text)])
                .await;
            let seq = got["seq"].as_u64().unwrap_or(0);
            assert!(seq > last, "{} in {room}: {seq} after {last}", m.name);
        }
    }
    for m in &mut members {
        m.drain();
        let bad: Vec<_> = m
            .seen
            .iter()
            .filter(|e| e["type"] == "tampering" || e["type"] == "error")
            .collect();
        assert!(bad.is_empty(), "{}: {bad:#?}", m.name);
    }
}

/// Waits until `m` has seen `room` move from one host to another.
async fn wait_for_a_move(m: &mut Member, room: &str) {
    m.wait_until("a move", |seen| {
        let hosts: Vec<&str> = seen
            .iter()
            .filter(|e| e["type"] == "host" && e["room"] == room)
            .filter_map(|e| e["name"].as_str())
            .collect();
        hosts.windows(2).any(|w| w[0] != w[1])
    })
    .await;
}

/// Waits until `m` shows every message of `acked` in `room`, then checks
/// that it showed each once, at its sequence number, in order.
async fn shows_history(m: &mut Member, room: &str, acked: &[(u64, String)]) {
    assert!(!acked.is_empty(), "messages were acknowledged in {room}");
    let what = format!("the history of {room}");
    m.wait_until(&what, |seen| {
        acked.iter().all(|(_, text)| {
            seen.iter()
                .any(|e| e["type"] == "message" && e["room"] == room && e["text"] == *text)
        })
    })
    .await;
    let shown = m.room_messages(room);
    assert!(
        shown.windows(2).all(|w| w[0].0 < w[1].0),
        "{} in {room}: in order, none twice: {shown:?}",
        m.name
    );
    let mut texts: Vec<&str> = shown.iter().map(|(_, _, t)| t.as_str()).collect();
    texts.sort_unstable();
    let before = texts.len();
    texts.dedup();
    assert_eq!(
        texts.len(),
        before,
        "{} in {room}: no message twice",
        m.name
    );
    for (seq, text) in acked {
        let at: Vec<u64> = shown
            .iter()
            .filter(|(_, _, t)| t == text)
            .map(|(s, _, _)| *s)
            .collect();
        assert_eq!(at, [*seq], "{} in {room}: {text:?} once, at {seq}", m.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_killed_at_once_with_their_relay_come_back_with_their_history() {
    crash_and_restart(true, |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_whose_members_are_killed_at_once_come_back_with_their_history() {
    crash_and_restart(false, |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_store_is_gone_catches_up_from_the_host() {
    crash_and_restart(true, |uri| {
        let store = node_data_dir(uri, "bob").join("bob.history");
        std::fs::remove_file(&store).expect("bob's store is there to delete");
    })
    .await;
}

#[tokio::test]
async fn a_damaged_store_or_one_that_cannot_be_written_stops_the_node_at_its_start() {
    // Nothing is listening there: the node must stop before it dials.
    let nowhere = format!("http://127.0.0.1:{}", chat_tests::procs::free_port());
    let start = |dir: std::path::PathBuf| {
        let nowhere = nowhere.clone();
        async move {
            let dir = dir.to_string_lossy().into_owned();
            let args = [
                &nowhere,
                "--name",
                "alice",
                "--mode",
                "json",
                "--data-dir",
                &dir,
            ];
            run_binary("chat-node", &args).await
        }
    };
    let damaged = chat_tests::temp_dir("damaged-store");
    std::fs::write(damaged.join("alice.history"), vec![0x5a; 16384]).expect("write garbage");
    let (ok, out) = start(damaged).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("alice.history") && out.contains("damaged"),
        "{out}"
    );
    assert!(!out.contains("panicked"), "{out}");

    let blocked = chat_tests::temp_dir("blocked-store");
    std::fs::create_dir_all(blocked.join("alice.history")).expect("a directory in the way");
    let (ok, out) = start(blocked).await;
    assert!(!ok, "{out}");
    assert!(out.contains("cannot open the history store"), "{out}");
    assert!(!out.contains("panicked"), "{out}");

    let file = chat_tests::temp_dir("file-as-data-dir").join("not-a-directory");
    std::fs::write(&file, b"a file").expect("write a file");
    let (ok, out) = start(file).await;
    assert!(!ok, "{out}");
    assert!(out.contains("not-a-directory"), "{out}");
    assert!(!out.contains("panicked"), "{out}");
}

/// Alters the text of one message in `name`'s copy of `room` on disk (its
/// node stopped), keeping everything else as it was.
async fn alter_copy(uri: &str, name: &str, room: &str) -> String {
    let store = History::open(&node_data_dir(uri, name), name).expect("open the store");
    let copy = store.room(room);
    let kept = copy.load().expect("read").expect("a copy of the room");
    let mut entries = kept.entries;
    let Some(log_entry::Kind::Message(m)) = entries.get_mut(1).and_then(|e| e.kind.as_mut()) else {
        panic!("a message at the second entry of {name}'s copy");
    };
    let original = m.text.clone();
    m.text = "planted".into();
    let write = CopyWrite {
        start_over: true,
        entries,
        hashes: Vec::new(),
        record: kept.record,
    };
    copy.write(write).await.expect("write the altered copy");
    original
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_altered_on_disk_is_dropped_and_taken_again_from_the_host() {
    let args = RELAY_ARGS;
    let mut relay = RelayProcess::start(args).await;
    let uri = relay.uri();
    let mut alice = spawn_node(&uri, "alice", &[]).await;
    let mut bob = spawn_node(&uri, "bob", &[]).await;
    bob.wait_event("activated", &[]).await;
    // After a move both nodes hold the room: the old host its own copy,
    // the new one the copy it was handed.
    wait_for_a_move(&mut alice, "lobby").await;
    for i in 0..4 {
        alice.say(&format!("said {i}")).await;
    }
    alice
        .wait_until("4 acks", |seen| {
            seen.iter().filter(|e| e["type"] == "ack").count() >= 4
        })
        .await;
    let pids = [alice.pid(), bob.pid(), relay.pid()];
    kill_all_at_once(&pids.into_iter().flatten().collect::<Vec<_>>()).await;
    relay.kill().await;
    alice.kill().await;
    bob.kill().await;
    let original = alter_copy(&uri, "bob", "lobby").await;

    let relay = RelayProcess::start_at(&relay.addr, args).await;
    let mut alice = spawn_node(&uri, "alice", &[]).await;
    let mut bob = spawn_node(&uri, "bob", &[]).await;
    bob.say("after").await;
    for m in [&mut alice, &mut bob] {
        m.wait_event("message", &[("text", "after")]).await;
        let texts = m.texts();
        assert_eq!(
            texts,
            ["said 0", "said 1", "said 2", "said 3", "after"],
            "{}: the history as it was said, nothing planted",
            m.name
        );
        assert!(!m.has_seen("tampering", &[]), "{}: {:?}", m.name, m.seen);
    }
    assert_eq!(original, "said 1");
    // Bob's node took the copy again from the host: the one on its disk
    // is whole again once everyone stopped.
    chat_tests::wait_for_host(&relay.uri(), "a host", |_| true).await;
    let pids = [alice.pid(), bob.pid()];
    kill_all_at_once(&pids.into_iter().flatten().collect::<Vec<_>>()).await;
    alice.kill().await;
    bob.kill().await;
    let store = History::open(&node_data_dir(&uri, "bob"), "bob").expect("open");
    let kept = store.room("lobby").load().expect("read").expect("a copy");
    let texts: Vec<&str> = kept
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            Some(log_entry::Kind::Message(m)) => Some(m.text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["said 0", "said 1", "said 2", "said 3", "after"]);
}
