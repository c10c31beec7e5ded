//! Crash failover: the relay notices a silent host by its lease and promotes
//! the successor, which holds every acknowledged message.

use chat_tests::procs::RelayProcess;
use chat_tests::{join, join_in, temp_dir, Relay};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_host_is_replaced_and_no_acknowledged_message_is_lost() {
    let relay = Relay::start(2, Duration::from_secs(3600)).await;
    let alice = join(&relay.uri(), "alice").await.unwrap();
    let mut bob = join(&relay.uri(), "bob").await.unwrap();
    let mut carol = join(&relay.uri(), "carol").await.unwrap();
    carol.wait_event("activated", &[]).await;
    for i in 0..20 {
        bob.say(&format!("before {i}")).await;
    }
    bob.wait_until("20 acks", |seen| {
        seen.iter().filter(|e| e["type"] == "ack").count() >= 20
    })
    .await;

    alice.crash().await;
    let host = chat_tests::wait_for_host(&relay.uri(), "the relay promotes a new host", |h| {
        h.name != "alice" && h.epoch == 2
    })
    .await;
    for i in 0..20 {
        carol.say(&format!("after {i}")).await;
    }
    for m in [&mut bob, &mut carol] {
        m.wait_event("host", &[("epoch", "2"), ("name", &host.name)])
            .await;
        let got = m.wait_messages(40).await;
        let texts: Vec<String> = got.iter().map(|(_, _, t)| t.clone()).collect();
        let expected: Vec<String> = (0..20)
            .map(|i| format!("before {i}"))
            .chain((0..20).map(|i| format!("after {i}")))
            .collect();
        assert_eq!(texts, expected, "{}: everything once, in order", m.name);
        let seqs: Vec<u64> = got.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>(), "{}: no gaps", m.name);
        // The outage is told once, however many attempts it took.
        let states: Vec<&str> = m
            .seen
            .iter()
            .filter(|e| e["type"] == "connection")
            .filter_map(|e| e["state"].as_str())
            .collect();
        assert!(
            states.windows(2).all(|w| w[0] != w[1]),
            "{}: {states:?}",
            m.name
        );
        assert!(states.contains(&"reconnecting"), "{}: {states:?}", m.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_survives_a_relay_restart_and_goes_on_during_the_outage() {
    let mut relay = RelayProcess::start(&["--migration-interval", "1h"]).await;
    let mut alice = join(&relay.uri(), "alice").await.unwrap();
    let mut bob = join(&relay.uri(), "bob").await.unwrap();
    bob.wait_event("activated", &[]).await;
    alice.say("before").await;
    bob.wait_event("message", &[("text", "before")]).await;

    relay.kill().await;
    // The outage: members still chat through the host.
    bob.say("during").await;
    alice.wait_event("message", &[("text", "during")]).await;

    let relay = RelayProcess::start_at(&relay.addr, &["--migration-interval", "1h"]).await;
    chat_tests::wait_for_host(&relay.uri(), "the host re-asserts its epoch", |h| {
        h.name == "alice" && h.epoch == 1
    })
    .await;
    alice.say("after").await;
    bob.wait_event("message", &[("text", "after")]).await;
    // Nothing was lost or repeated, and bob never saw another host.
    assert_eq!(bob.texts(), ["before", "during", "after"]);
    assert!(!bob.has_seen("host", &[("epoch", "2")]));
    let host = chat_tests::wait_for_host(&relay.uri(), "the host record", |_| true).await;
    assert_eq!((host.epoch, host.name.as_str()), (1, "alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_back_under_its_key_before_the_failover_does_not_serve_an_empty_room() {
    let relay = Relay::start(2, Duration::from_secs(3600)).await;
    let dir = temp_dir("alice");
    let mut alice = join_in(&relay.uri(), "alice", &dir).await.unwrap();
    let mut bob = join(&relay.uri(), "bob").await.unwrap();
    bob.wait_event("activated", &[]).await;
    chat_tests::wait_for_host(&relay.uri(), "alice hosts", |h| h.name == "alice").await;
    for text in ["one", "two"] {
        bob.say(text).await;
        bob.wait_event("message", &[("text", text)]).await;
    }
    // alice crashes and comes back at once, under her key (the same node
    // id): the relay's record still names her host, but her log is gone.
    alice.kill().await;
    let mut alice = join_in(&relay.uri(), "alice", &dir).await.unwrap();
    bob.say("three").await;
    let texts = |m: &mut chat_tests::member::Member| m.texts();
    alice.wait_messages(3).await;
    bob.wait_messages(3).await;
    assert_eq!(texts(&mut alice), ["one", "two", "three"]);
    assert_eq!(texts(&mut bob), ["one", "two", "three"]);
    let host = chat_tests::wait_for_host(&relay.uri(), "bob took over", |h| h.epoch > 1).await;
    assert_eq!(host.name, "bob", "the successor holding the log took over");
    assert!(!bob.has_seen("error", &[]), "{:?}", bob.seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_relay_restart_nobody_else_can_take_a_members_name() {
    let mut relay = RelayProcess::start(&["--migration-interval", "1h"]).await;
    let mut alice = join(&relay.uri(), "alice").await.unwrap();
    let mut bob = join(&relay.uri(), "bob").await.unwrap();
    bob.wait_event("activated", &[]).await;

    relay.kill().await;
    let relay = RelayProcess::start_at(&relay.addr, &["--migration-interval", "1h"]).await;
    // A stranger asks for alice's name the moment the relay is back.
    let key = chat_proto::trust::Keypair::generate();
    let mut rc = chat_tests::hostile::relay_client(&relay.uri()).await;
    let stranger =
        chat_tests::hostile::signed_register(&key, "alice", chat_tests::hostile::NOWHERE);
    let taken = rc.register(stranger).await;
    assert_eq!(
        taken.map(|_| ()).unwrap_err().code(),
        tonic::Code::AlreadyExists,
        "the name stays with alice's key"
    );
    // Both are back under their keys: bob's private message reaches alice
    // from bob.
    let uri = relay.uri();
    chat_tests::eventually("alice and bob registered again", || {
        let uri = uri.clone();
        async move {
            let alice = chat_tests::hostile::lookup(&uri, "alice").await;
            let bob = chat_tests::hostile::lookup(&uri, "bob").await;
            alice.is_ok() && bob.is_ok()
        }
    })
    .await;
    let alice_id = chat_tests::hostile::lookup(&uri, "alice").await.unwrap();
    assert_eq!(alice_id.node_id, alice.shared().ctx.identity.node_id);
    bob.say("/msg alice still you?").await;
    alice
        .wait_event("private", &[("from", "bob"), ("text", "still you?")])
        .await;
}
