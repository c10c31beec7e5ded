//! Memory is bounded: a room's host and its successor keep only a tail of
//! the log in memory while their stores hold all of it, and a late joiner
//! is served the whole history from the host's disk, every message checked
//! by its client, in order.
//!
//! The plan's size comes from `BOUNDED_HISTORY_MESSAGES` (default 20,000,
//! about five memory tails, so most of the history is read back from
//! disk). The long plan: `BOUNDED_HISTORY_MESSAGES=1000000 cargo test
//! --release -p chat-tests --test bounded_history -- --nocapture`.
//!
//! Each message carries 3,000 bytes of text, so a log held whole in memory
//! would pass the stated bound ([`RSS_BOUND`]) long before the short plan
//! ends (20,000 of them are 60 MB of text alone).

use chat_node::history::History;
use chat_proto::pb::chat::{client_frame, server_frame};
use chat_tests::hostile::{current_host, HostileSession, SenderChain, Stranger};
use chat_tests::procs::{kill_all_at_once, node_data_dir, spawn_node, RelayProcess};
use std::time::Duration;

/// Resident memory each of the host's and the successor's processes stays
/// under, whatever the plan's size.
const RSS_BOUND: u64 = 96 << 20;
/// Text bytes per message.
const TEXT_BYTES: usize = 3000;
/// Messages sent and not yet acknowledged at most.
const IN_FLIGHT: u64 = 128;
/// Longest a stage of the plan may make no progress.
const STALL: Duration = Duration::from_secs(60);

fn plan() -> u64 {
    std::env::var("BOUNDED_HISTORY_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn text(i: u64) -> String {
    let head = format!("{i:08} ");
    format!("{head}{}", "x".repeat(TEXT_BYTES - head.len()))
}

/// Resident set size of `pid` in bytes (`VmRSS` in /proc).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS in /proc status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_successor_keep_a_bounded_tail_and_a_late_joiner_gets_it_all() {
    let total = plan();
    let relay = RelayProcess::start(&[
        "--min-users",
        "2",
        "--migration-interval",
        "1h",
        "--messages-per-second",
        "0",
    ])
    .await;
    let uri = relay.uri();
    let mut host = spawn_node(&uri, "host", &[]).await;
    let mut standby = spawn_node(&uri, "standby", &[]).await;
    for m in [&mut host, &mut standby] {
        m.wait_event("activated", &[]).await;
    }
    // Whichever registered first hosts; the other is its successor.
    let record = current_host(&uri).await;
    let (first, second) = (
        host.pid().expect("host running"),
        standby.pid().expect("standby running"),
    );
    let pids = match record.name.as_str() {
        "host" => [first, second],
        "standby" => [second, first],
        other => panic!("{other} hosts the room"),
    };

    // A sender speaking the protocol itself, so the plan is not bounded
    // by a user's pace.
    let sender = Stranger::register(&uri, "sender").await;
    let mut session = HostileSession::open(&record.address).await;
    let hello = sender.hello(&session.challenge);
    session.send(client_frame::Frame::Hello(hello)).await;
    session.welcomed().await;
    let mut chain = SenderChain::default();
    let (mut sent, mut acked, mut peak) = (0u64, 0u64, [0u64; 2]);
    while acked < total {
        while sent < total && sent - acked < IN_FLIGHT {
            sent += 1;
            let m = chain.message(&sender.key, "sender", &format!("m{sent}"), &text(sent));
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
                if acked % 1000 == 0 || acked == total {
                    for (peak, pid) in peak.iter_mut().zip(pids) {
                        *peak = (*peak).max(rss(pid));
                    }
                }
            }
            Some(server_frame::Frame::Rejected(r)) => panic!("refused: {r:?}"),
            None => panic!("the session ended"),
            Some(_) => {}
        }
    }
    drop(session);
    println!(
        "{total} messages: peak RSS host {} MiB, successor {} MiB (bound {} MiB)",
        peak[0] >> 20,
        peak[1] >> 20,
        RSS_BOUND >> 20
    );
    for (name, peak) in ["host", "successor"].iter().zip(peak) {
        assert!(
            peak < RSS_BOUND,
            "the {name} holds {peak} bytes resident, over the bound {RSS_BOUND}"
        );
    }

    // A late joiner is served everything, from the host's disk, and its
    // client checks every message before showing it.
    let mut late = spawn_node(&uri, "late", &[]).await;
    let mut shown = 0u64;
    while shown < total {
        let event = late.take_event().await.expect("the late joiner goes on");
        match event["type"].as_str() {
            Some("message") => {
                shown += 1;
                assert_eq!(event["seq"].as_u64(), Some(shown), "in order, gapless");
                assert_eq!(event["text"].as_str(), Some(text(shown).as_str()));
            }
            Some("tampering" | "error") => panic!("the late joiner saw {event}"),
            _ => {}
        }
    }
    let late_rss = rss(late.pid().expect("late running"));
    println!(
        "the late joiner showed all {total}; its RSS {} MiB",
        late_rss >> 20
    );

    // Both stores hold every message.
    let mut all = pids.to_vec();
    all.extend(late.pid());
    kill_all_at_once(&all).await;
    for m in [&mut host, &mut standby, &mut late] {
        m.kill().await;
    }
    for name in ["host", "standby"] {
        let store = History::open(&node_data_dir(&uri, name), name).expect("open the store");
        let room = store.room("lobby");
        let (mut next, mut count) = (1, 0u64);
        loop {
            let page = room.read(next, u64::MAX, 4096).expect("read");
            let Some((last, _)) = page.last() else { break };
            next = chat_node::host::room::entry_seq(last) + 1;
            count += page.len() as u64;
        }
        assert_eq!(count, total, "{name}'s store holds every message");
    }
}
