//! S4-S9 and the error rules, against a real relay and in-process nodes.

use chat_node::StartError;
use chat_tests::{join, join_admin, Relay};
use std::time::Duration;

/// No planned migration during these tests (they are about the room).
const NO_MIGRATION: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn held_messages_show_at_activation_in_send_order() {
    let relay = Relay::start(3, NO_MIGRATION).await;
    let mut alice = join(&relay.uri(), "alice").await.unwrap();
    alice.wait_event("waiting", &[("min_users", "3")]).await;
    alice.say("one").await;
    alice.wait_event("ack", &[("seq", "1")]).await;
    let mut bob = join(&relay.uri(), "bob").await.unwrap();
    bob.wait_event("joined", &[("name", "bob")]).await;
    bob.say("two").await;
    bob.wait_event("ack", &[("seq", "2")]).await;
    alice.say("three").await;
    alice.wait_event("ack", &[("seq", "3")]).await;
    // Nobody sees anything before the third member arrives.
    assert!(alice.messages().is_empty() && bob.messages().is_empty());
    assert!(!alice.has_seen("activated", &[]));

    let mut carol = join(&relay.uri(), "carol").await.unwrap();
    for m in [&mut alice, &mut bob, &mut carol] {
        m.wait_event("activated", &[]).await;
        let got = m.wait_messages(3).await;
        let expected = vec![
            (1, "alice".to_string(), "one".to_string()),
            (2, "bob".to_string(), "two".to_string()),
            (3, "alice".to_string(), "three".to_string()),
        ];
        assert_eq!(
            got, expected,
            "{} sees the held messages in send order",
            m.name
        );
    }
    // Activation is permanent: a member leaving does not deactivate it.
    carol.leave().await;
    alice.wait_event("left", &[("name", "carol")]).await;
    alice.say("still here").await;
    bob.wait_event("message", &[("text", "still here")]).await;
}

#[tokio::test]
async fn late_joiner_receives_the_whole_history() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let mut alice = join(&relay.uri(), "alice").await.unwrap();
    let mut bob = join(&relay.uri(), "bob").await.unwrap();
    for i in 0..5 {
        alice.say(&format!("m{i}")).await;
    }
    bob.wait_messages(5).await;
    let mut dave = join(&relay.uri(), "dave").await.unwrap();
    let history = dave.wait_messages(5).await;
    assert_eq!(
        history
            .iter()
            .map(|(_, _, t)| t.as_str())
            .collect::<Vec<_>>(),
        ["m0", "m1", "m2", "m3", "m4"]
    );
    assert!(dave.has_seen("activated", &[]));
}

#[tokio::test]
async fn names_follow_every_rule() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let _alice = join(&relay.uri(), "alice").await.unwrap();
    for bad in ["", "a:b", "a b", "tab\there", &"x".repeat(33)] {
        match join(&relay.uri(), bad).await {
            Err(StartError::NameRefused(why)) => assert!(!why.is_empty()),
            Err(e) => panic!("{bad:?}: wrong error {e}"),
            Ok(_) => panic!("{bad:?} was accepted"),
        }
    }
    match join(&relay.uri(), "alice").await {
        Err(StartError::NameRefused(why)) => assert!(why.contains("taken"), "{why}"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("a connected member's name was taken over"),
    }
    join(&relay.uri(), &"x".repeat(32))
        .await
        .expect("32 characters are fine");
}

#[tokio::test]
async fn private_messages_go_node_to_node_and_never_through_the_host() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let mut alice = join(&relay.uri(), "alice").await.unwrap(); // host
    let mut bob = join(&relay.uri(), "bob").await.unwrap();
    let mut carol = join(&relay.uri(), "carol").await.unwrap();
    carol.wait_event("activated", &[]).await;
    bob.say("/who").await;
    bob.wait_event("members", &[]).await;
    let host = alice.shared();
    assert!(
        alice.lobby().role().hosting_epoch().is_some(),
        "alice hosts"
    );
    let frames_before = host.ctx.stats.chat_frames();

    bob.say("$private carol psst carol").await;
    carol
        .wait_event("private", &[("from", "bob"), ("text", "psst carol")])
        .await;
    bob.wait_event("private_sent", &[("to", "carol")]).await;
    assert_eq!(carol.shared().ctx.stats.private_received(), 1);
    assert_eq!(
        host.ctx.stats.chat_frames(),
        frames_before,
        "the host's ChatService saw nothing"
    );
    assert!(!alice.has_seen("private", &[]), "nobody else sees it");

    bob.say("/msg nobody hi").await;
    bob.wait_event("error", &[("message", "~no member named")])
        .await;
    bob.say("$private bob hi me").await;
    bob.wait_event("error", &[("message", "~yourself")]).await;
    bob.say("$private carol").await;
    bob.wait_event("error", &[("message", "~usage")]).await;
}

#[tokio::test]
async fn exit_leaves_cleanly_and_frees_the_name() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let mut alice = join(&relay.uri(), "alice").await.unwrap();
    let bob = join(&relay.uri(), "bob").await.unwrap();
    alice.wait_event("activated", &[]).await;
    bob.leave().await;
    alice.wait_event("left", &[("name", "bob")]).await;
    let mut bob_again = join(&relay.uri(), "bob")
        .await
        .expect("the name is free after $exit");
    bob_again.wait_event("joined", &[("name", "bob")]).await;
}

#[tokio::test]
async fn host_exit_hands_the_chat_over() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let alice = join(&relay.uri(), "alice").await.unwrap();
    let mut bob = join(&relay.uri(), "bob").await.unwrap();
    bob.wait_event("activated", &[]).await;
    bob.say("before").await;
    bob.wait_event("message", &[("text", "before")]).await;
    alice.leave().await;
    bob.wait_event("host", &[("name", "bob")]).await;
    bob.say("after").await;
    bob.wait_event("message", &[("text", "after")]).await;
    assert_eq!(bob.texts(), ["before", "after"]);
}

#[tokio::test]
async fn reset_wipes_history_and_restarts_activation() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let mut alice = join_admin(&relay.uri(), "alice").await.unwrap();
    let mut bob = join(&relay.uri(), "bob").await.unwrap();
    alice.say("old").await;
    bob.wait_event("message", &[("text", "old")]).await;

    // Only a member with the relay's admin secret may reset.
    bob.say("$reset -3").await;
    bob.wait_event(
        "error",
        &[("message", "~reset refused: wrong admin secret")],
    )
    .await;
    alice.say("$reset -3").await;
    for m in [&mut alice, &mut bob] {
        m.wait_event("reset", &[("by", "alice"), ("min_users", "3")])
            .await;
    }
    bob.say("held after reset").await;
    bob.wait_event("ack", &[]).await;
    let mut carol = join(&relay.uri(), "carol").await.unwrap();
    for m in [&mut alice, &mut bob, &mut carol] {
        m.wait_event("message", &[("text", "held after reset")])
            .await;
    }
    assert_eq!(
        carol.texts(),
        ["held after reset"],
        "the wiped history is gone"
    );
    assert_eq!(alice.texts(), ["old", "held after reset"]);
    alice.say("$reset -0").await;
    alice.wait_event("error", &[("message", "~usage")]).await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let relay = Relay::start(1, NO_MIGRATION).await;
    let mut alice = join(&relay.uri(), "alice").await.unwrap();
    alice.wait_event("activated", &[]).await;
    alice.say(&"x".repeat(4097)).await;
    alice.wait_event("error", &[("message", "~4 KiB")]).await;
    alice.say("/frobnicate").await;
    alice
        .wait_event("error", &[("message", "~unknown command")])
        .await;
    alice.say(&"y".repeat(4096)).await;
    let got = alice.wait_messages(1).await;
    assert_eq!(got[0].0, 1, "the refused message took no sequence number");
}

#[tokio::test]
async fn each_message_is_queued_under_the_id_its_ack_carries() {
    let relay = Relay::start(1, NO_MIGRATION).await;
    let mut alice = join(&relay.uri(), "alice").await.unwrap();
    alice.wait_event("activated", &[]).await;
    alice.say("same").await;
    alice.say(&"x".repeat(4097)).await;
    alice.say("same").await;
    alice.wait_event("error", &[("message", "~4 KiB")]).await;
    alice
        .wait_until("two acks", |seen| {
            seen.iter().filter(|e| e["type"] == "ack").count() >= 2
        })
        .await;
    let ids = |kind: &str| -> Vec<String> {
        let of_kind = alice.seen.iter().filter(|e| e["type"] == kind);
        of_kind.map(|e| e["id"].to_string()).collect()
    };
    let queued = ids("queued");
    assert_eq!(queued.len(), 2, "the over-long text was never queued");
    assert_ne!(queued[0], queued[1], "identical texts get their own ids");
    let (mut queued, mut acked) = (queued, ids("ack"));
    queued.sort();
    acked.sort();
    assert_eq!(acked, queued, "each ack names a queued message");
}

#[tokio::test]
async fn a_session_names_its_room_with_or_without_the_hash() {
    use chat_proto::pb::chat::{server_frame, ClientFrame};
    use chat_tests::hostile::{chat_client, current_host, start_chat};
    let relay = Relay::start(2, NO_MIGRATION).await;
    let _members = start_chat(&relay.uri(), &["alice", "bob"]).await;
    let host = current_host(&relay.uri()).await;
    let open = |label: &'static str| {
        let address = host.address.clone();
        async move {
            let (_tx, rx) = tokio::sync::mpsc::channel::<ClientFrame>(1);
            let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            let label = label.parse().expect("ascii metadata");
            request
                .metadata_mut()
                .insert(chat_proto::ROOM_METADATA, label);
            let mut frames = chat_client(&address)
                .await
                .session(request)
                .await?
                .into_inner();
            frames.message().await.map(|f| f.and_then(|f| f.frame))
        }
    };
    for label in ["lobby", "#lobby"] {
        let first = open(label).await;
        assert!(
            matches!(first, Ok(Some(server_frame::Frame::Challenge(_)))),
            "{label}: {first:?}"
        );
    }
    let refused = open("#nowhere")
        .await
        .expect_err("a room the host is not in");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");
}

#[tokio::test]
async fn a_waiting_room_counts_each_member_once() {
    let relay = Relay::start(3, NO_MIGRATION).await;
    let mut alice = join(&relay.uri(), "alice").await.unwrap();
    alice.wait_event("joined", &[("name", "alice")]).await;
    alice
        .wait_event("waiting", &[("members", "1"), ("min_users", "3")])
        .await;
    let _bob = join(&relay.uri(), "bob").await.unwrap();
    alice.wait_event("joined", &[("name", "bob")]).await;
    alice
        .wait_event("waiting", &[("members", "2"), ("min_users", "3")])
        .await;
    let waits: Vec<String> = alice
        .seen
        .iter()
        .filter(|e| e["type"] == "waiting")
        .map(|e| e["members"].to_string())
        .collect();
    assert!(waits.iter().all(|n| n == "1" || n == "2"), "{waits:?}");
}

#[tokio::test]
async fn joining_an_active_room_shows_no_wait() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let mut alice = join(&relay.uri(), "alice").await.unwrap();
    let _bob = join(&relay.uri(), "bob").await.unwrap();
    alice.wait_event("activated", &[]).await;
    let mut carol = join(&relay.uri(), "carol").await.unwrap();
    carol.wait_event("activated", &[]).await;
    carol.say("carol is in").await;
    carol
        .wait_event("message", &[("text", "carol is in")])
        .await;
    let waits: Vec<String> = carol
        .seen
        .iter()
        .filter(|e| e["type"] == "waiting")
        .map(|e| e.to_string())
        .collect();
    assert!(waits.is_empty(), "an active room is not waiting: {waits:?}");
}
