//! Retention (issue 26): with the relay's `--history-max-entries 50`, a
//! room keeps only its newest 50 entries. A late joiner is told where the
//! history starts and is served exactly those, in order, every one checked
//! by its client from the host's signed checkpoint (no gap reported); the
//! stores of the host and its successor hold no entry below the cut, and a
//! restart from them (every member killed at once) serves the same; a
//! `$reset` still wipes what is left, on disk too.

use chat_node::history::History;
use chat_node::host::room::entry_seq;
use chat_proto::pb::chat::{client_frame, log_entry, server_frame};
use chat_tests::hostile::{current_host, HostileSession, SenderChain, Stranger};
use chat_tests::member::Member;
use chat_tests::procs::{kill_all_at_once, node_data_dir, spawn_node, RelayProcess};
use std::time::Duration;

/// Entries each room keeps.
const KEEP: u64 = 50;
/// Messages sent.
const TOTAL: u64 = 200;
/// Messages sent and not yet acknowledged at most.
const IN_FLIGHT: u64 = 32;
/// Longest the host may take to answer.
const STALL: Duration = Duration::from_secs(60);
const SECRET: &str = "retention-secret";

/// Waits for `late` to be told where the history starts and to show the
/// messages after it; checks they are exactly the newest [`KEEP`], in
/// order, and that nothing was reported.
async fn shows_only_the_newest(late: &mut Member) {
    let newest = |e: &serde_json::Value| e["type"] == "message" && e["seq"] == TOTAL;
    if late.wait_within(STALL, newest).await.is_none() {
        panic!(
            "{} did not show #{TOTAL}; it saw {:?}",
            late.name, late.seen
        );
    }
    let first = TOTAL - KEEP + 1;
    let mut shown = Vec::new();
    let mut starts = None;
    for event in &late.seen {
        match event["type"].as_str() {
            Some("history_starts") => starts = event["seq"].as_u64(),
            Some("message") => {
                assert!(starts.is_some(), "told where history starts first: {event}");
                let seq = event["seq"].as_u64().expect("a seq");
                assert_eq!(event["text"].as_str(), Some(format!("m{seq}").as_str()));
                shown.push(seq);
            }
            Some("tampering" | "error") => panic!("{} saw {event}", late.name),
            _ => {}
        }
    }
    assert_eq!(starts, Some(first), "history starts after the cut");
    assert_eq!(
        shown,
        (first..=TOTAL).collect::<Vec<_>>(),
        "the newest {KEEP}, in order"
    );
}

/// The sequence numbers of the messages and resets in `name`'s store.
fn stored(uri: &str, name: &str) -> (Vec<u64>, Vec<u64>) {
    let store = History::open(&node_data_dir(uri, name), name).expect("open the store");
    let room = store.room("lobby");
    let (mut messages, mut resets) = (Vec::new(), Vec::new());
    for (entry, _) in room.read(0, u64::MAX, 10_000).expect("read") {
        match entry.kind {
            Some(log_entry::Kind::Message(_)) => messages.push(entry_seq(&entry)),
            _ => resets.push(entry_seq(&entry)),
        }
    }
    (messages, resets)
}

async fn kill(members: &mut [&mut Member]) {
    let pids: Vec<u32> = members.iter().filter_map(|m| m.pid()).collect();
    kill_all_at_once(&pids).await;
    for m in members.iter_mut() {
        m.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_keeps_its_newest_entries_everywhere_and_a_late_joiner_is_told_where_they_start() {
    let relay = RelayProcess::start(&[
        "--min-users",
        "2",
        "--migration-interval",
        "1h",
        "--messages-per-second",
        "0",
        "--history-max-entries",
        "50",
        "--admin-secret",
        SECRET,
    ])
    .await;
    let uri = relay.uri();
    let mut host = spawn_node(&uri, "host", &[]).await;
    let mut standby = spawn_node(&uri, "standby", &[]).await;
    for m in [&mut host, &mut standby] {
        m.wait_event("activated", &[]).await;
    }
    let record = current_host(&uri).await;

    // A sender speaking the protocol itself sends 200 messages.
    let sender = Stranger::register(&uri, "sender").await;
    let mut session = HostileSession::open(&record.address).await;
    let hello = sender.hello(&session.challenge);
    session.send(client_frame::Frame::Hello(hello)).await;
    session.welcomed().await;
    let mut chain = SenderChain::default();
    let (mut sent, mut acked) = (0u64, 0u64);
    while acked < TOTAL {
        while sent < TOTAL && sent - acked < IN_FLIGHT {
            sent += 1;
            let m = chain.message(
                &sender.key,
                "sender",
                &format!("id{sent}"),
                &format!("m{sent}"),
            );
            session.send(client_frame::Frame::Send(m)).await;
        }
        let frame = tokio::time::timeout(STALL, session.frames.message())
            .await
            .expect("the host answers")
            .expect("the session stays open")
            .and_then(|f| f.frame);
        match frame {
            Some(server_frame::Frame::Ack(ack)) => {
                acked += 1;
                assert_eq!(ack.seq, acked, "acknowledged in order, once");
            }
            Some(server_frame::Frame::Rejected(r)) => panic!("refused: {r:?}"),
            None => panic!("the session ended"),
            Some(_) => {}
        }
    }
    drop(session);

    let mut late = spawn_node(&uri, "late", &[]).await;
    shows_only_the_newest(&mut late).await;

    // Every store holds the newest 50 only (the host's and its
    // successor's: every acknowledged entry was on both disks).
    kill(&mut [&mut host, &mut standby, &mut late]).await;
    let kept: Vec<u64> = (TOTAL - KEEP + 1..=TOTAL).collect();
    for name in ["host", "standby"] {
        let (messages, resets) = stored(&uri, name);
        assert_eq!(
            messages, kept,
            "{name}'s store holds no entry below the cut"
        );
        assert!(resets.is_empty());
    }

    // Restarted from those stores, the room serves the same history.
    let mut host = spawn_node(&uri, "host", &["--admin-secret", SECRET]).await;
    let mut standby = spawn_node(&uri, "standby", &[]).await;
    let mut later = spawn_node(&uri, "later", &[]).await;
    shows_only_the_newest(&mut later).await;
    // It leaves: host and standby hold the room's copies again.
    later.leave().await;

    // A reset wipes the rest, on disk too.
    host.say("$reset -2").await;
    for m in [&mut host, &mut standby] {
        m.wait_event("reset", &[("by", "host")]).await;
    }
    kill(&mut [&mut host, &mut standby]).await;
    for name in ["host", "standby"] {
        let (messages, resets) = stored(&uri, name);
        assert!(
            messages.is_empty(),
            "{name}'s store still holds {messages:?}"
        );
        assert_eq!(resets, [TOTAL + 1], "{name}'s store holds the reset only");
    }
}
