//! A host that cannot lie unseen: the host of the moment is some member's
//! machine and may run modified code. Here a modified host, played frame
//! by frame by the test ([`ScriptedHost`]), reorders, repeats and drops
//! messages, shows members different histories and plants a bad copy in
//! its successor; honest members refuse each lie or show it as that host's
//! fault, and never as genuine.

use chat_proto::chain::GENESIS;
use chat_proto::pb::chat::{log_entry, server_frame::Frame, Ack, LogEntry, ReplicateBody};
use chat_proto::pb::relay::{CopyPermit, HostRecord, RenewLeaseRequest};
use chat_tests::hostile::{
    self, chat_client, lookup, replicate, served, ScriptedHost, SenderChain, Stranger,
};
use chat_tests::{join, Member, Relay};
use std::time::Duration;
use tokio::task::JoinHandle;
use tonic::Code;

const NO_MIGRATION: Duration = Duration::from_secs(3600);

/// Renews the scripted host's lease (naming `successor`) until aborted;
/// the relay has taken the first renewal when this returns, which asked
/// the relay's permit for the successor to hold the term's copies.
async fn keep_lease(
    uri: &str,
    host: &Stranger,
    record: &HostRecord,
    successor: &str,
) -> (JoinHandle<()>, CopyPermit) {
    let permit = hostile::renew_asking_permit(uri, host, record, successor, successor)
        .await
        .expect("the relay permits the successor to hold copies");
    let renewal = RenewLeaseRequest {
        epoch: record.epoch,
        node_id: host.reg.node_id.clone(),
        session_token: host.reg.session_token.clone(),
        successor_node_id: successor.to_string(),
        ..Default::default()
    };
    let mut rc = hostile::relay_client(uri).await;
    let lease = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if rc.renew_lease(renewal.clone()).await.is_err() {
                return;
            }
        }
    });
    (lease, permit)
}

/// Reports of tampering a member has seen so far.
fn reports(member: &mut Member) -> Vec<String> {
    member.drain();
    member
        .seen
        .iter()
        .filter(|e| e["type"] == "tampering")
        .map(|e| format!("{} {}", e["host"], e["what"]))
        .collect()
}

fn entry(m: chat_proto::pb::chat::ChatMessage) -> LogEntry {
    LogEntry {
        kind: Some(log_entry::Kind::Message(m)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_reorders_or_repeats_a_senders_messages_is_caught() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut host = ScriptedHost::start().await;
    let (_mallory, record) = host.host_lobby(&uri, "mallory").await;
    let epoch = record.epoch;
    let alice = Stranger::register(&uri, "alice").await;
    let cert = alice.certificate();
    let mut chain = SenderChain::default();
    let texts = ["first", "second", "third"];
    let sent: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| chain.message(&alice.key, "alice", &format!("a{i}"), text))
        .collect();

    let mut bob = join(&uri, "bob").await.expect("bob joins");
    let session = host.session().await;
    assert_eq!(session.hello.name, "bob");
    session.send(host.welcome(epoch, 0, &GENESIS)).await;
    // Her second message first, then her first, her second again at a new
    // sequence number, and her third.
    for (seq, i) in [(1, 1), (2, 0), (3, 1), (4, 2)] {
        let m = served(&sent[i], "alice", &cert, seq, epoch);
        session.send(Frame::Message(m)).await;
    }
    bob.wait_event("message", &[("text", "third")]).await;
    assert_eq!(
        bob.texts(),
        ["second", "third"],
        "each shown once, in order"
    );
    // Her first message, served after her second, and her second again:
    // both refused and reported, naming the host.
    let found = reports(&mut bob);
    assert_eq!(found.len(), 2, "{found:?}");
    for (report, n) in found.iter().zip(["#1", "#2"]) {
        assert!(report.contains("mallory"), "{found:?}");
        assert!(
            report.contains(&format!("message {n} of alice again or out of order")),
            "{found:?}"
        );
    }
    // A message that skips one of hers is shown with a report.
    let fifth = {
        chain.message(&alice.key, "alice", "a3", "fourth");
        chain.message(&alice.key, "alice", "a4", "fifth")
    };
    session
        .send(Frame::Message(served(&fifth, "alice", &cert, 5, epoch)))
        .await;
    bob.wait_event("message", &[("text", "fifth")]).await;
    let found = reports(&mut bob);
    assert!(
        found[2].contains("did not serve 1 message(s) of alice"),
        "{found:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_drops_an_acknowledged_message_is_caught() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut host = ScriptedHost::start().await;
    let (_mallory, record) = host.host_lobby(&uri, "mallory").await;
    let epoch = record.epoch;
    let alice = Stranger::register(&uri, "alice").await;
    let cert = alice.certificate();
    let mut chain = SenderChain::default();
    let one = chain.message(&alice.key, "alice", "a1", "one");
    let two = chain.message(&alice.key, "alice", "a2", "two");

    let mut bob = join(&uri, "bob").await.expect("bob joins");
    let mut to_bob = host.session().await;
    to_bob.send(host.welcome(epoch, 0, &GENESIS)).await;
    let mut carol = join(&uri, "carol").await.expect("carol joins");
    let to_carol = host.session().await;
    assert_eq!(to_carol.hello.name, "carol");
    to_carol.send(host.welcome(epoch, 0, &GENESIS)).await;

    // Bob's message is acknowledged at seq 2, then alice's goes there.
    bob.say("mine").await;
    let mine = to_bob.next_message().await;
    assert_eq!(mine.text, "mine");
    to_bob
        .send(Frame::Ack(Ack {
            id: mine.id.clone(),
            seq: 2,
        }))
        .await;
    bob.wait_event("ack", &[("seq", "2")]).await;
    to_bob
        .send(Frame::Message(served(&one, "alice", &cert, 1, epoch)))
        .await;
    to_bob
        .send(Frame::Message(served(&two, "alice", &cert, 2, epoch)))
        .await;
    // Carol is simply not served seq 2.
    to_carol
        .send(Frame::Message(served(&one, "alice", &cert, 1, epoch)))
        .await;
    to_carol
        .send(Frame::Message(served(&two, "alice", &cert, 3, epoch)))
        .await;

    bob.wait_event("tampering", &[("what", "~acknowledged your message")])
        .await;
    carol
        .wait_event("tampering", &[("what", "~skipped log entries 2..=2")])
        .await;
    for member in [&mut bob, &mut carol] {
        member.wait_event("message", &[("text", "two")]).await;
        let found = reports(member);
        assert!(found.iter().all(|r| r.contains("mallory")), "{found:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_showed_members_different_histories_is_caught_at_the_next_move() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut host = ScriptedHost::start().await;
    let (mallory, record) = host.host_lobby(&uri, "mallory").await;
    let epoch = record.epoch;
    let alice = Stranger::register(&uri, "alice").await;
    let dave = Stranger::register(&uri, "dave").await;
    let said_by_alice =
        SenderChain::default().message(&alice.key, "alice", "a1", "alice's version");
    let said_by_dave = SenderChain::default().message(&dave.key, "dave", "d1", "dave's version");

    let mut bob = join(&uri, "bob").await.expect("bob joins");
    let bob_node = bob.shared().ctx.identity.clone();
    let (lease, permit) = keep_lease(&uri, &mallory, &record, &bob_node.node_id).await;
    let to_bob = host.session().await;
    let mut carol = join(&uri, "carol").await.expect("carol joins");
    let to_carol = host.session().await;
    // Bob is shown alice's message at seq 1, carol dave's.
    let bobs_view = served(&said_by_alice, "alice", &alice.certificate(), 1, epoch);
    let carols_view = served(&said_by_dave, "dave", &dave.certificate(), 1, epoch);
    for (session, view) in [(&to_bob, &bobs_view), (&to_carol, &carols_view)] {
        session.send(host.welcome(epoch, 0, &GENESIS)).await;
        session.send(Frame::Message(view.clone())).await;
    }
    bob.wait_event("message", &[("text", "alice's version")])
        .await;
    carol
        .wait_event("message", &[("text", "dave's version")])
        .await;

    // Bob, the successor, gets bob's version, then the lease lapses.
    let body = host.copy_from_start(epoch, &[entry(bobs_view)]);
    let cert = record.certificate.clone().expect("a term");
    chat_client(&bob_node.address)
        .await
        .replicate(replicate(&host.key, &cert, &body, Some(&permit)))
        .await
        .expect("bob holds a copy that checks out");
    lease.abort();
    relay
        .wait_for_host("bob takes over", |h| h.name == "bob")
        .await;
    carol
        .wait_event(
            "tampering",
            &[("what", "~differs from what you were shown")],
        )
        .await;
    let found = reports(&mut carol);
    assert!(
        found[0].contains("bob") && found[0].contains("mallory"),
        "names both hosts: {found:?}"
    );
    bob.wait_event("host", &[("name", "bob")]).await;
    bob.say("after the move").await;
    carol
        .wait_event("message", &[("text", "after the move")])
        .await;
    assert!(reports(&mut bob).is_empty(), "{:?}", reports(&mut bob));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_copy_planted_before_a_move_is_refused_and_the_message_survives() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut host = ScriptedHost::start().await;
    let (mallory, record) = host.host_lobby(&uri, "mallory").await;
    let epoch = record.epoch;
    let mut bob = join(&uri, "bob").await.expect("bob joins");
    let mut to_bob = host.session().await;
    to_bob.send(host.welcome(epoch, 0, &GENESIS)).await;
    let mut carol = join(&uri, "carol").await.expect("carol joins");
    let carol_node = carol.shared().ctx.identity.clone();
    let (lease, permit) = keep_lease(&uri, &mallory, &record, &carol_node.node_id).await;
    let to_carol = host.session().await;
    to_carol.send(host.welcome(epoch, 0, &GENESIS)).await;

    // Bob's message reaches the host, which never acknowledges it and
    // plants an altered version under its id in carol's copy.
    bob.say("the genuine words").await;
    let genuine = to_bob.next_message().await;
    let bob_cert = lookup(&uri, "bob").await.expect("bob").certificate;
    let mut altered = served(&genuine, "bob", &bob_cert.expect("a cert"), 1, epoch);
    altered.text = "ALTERED words".into();
    let body = host.copy_from_start(epoch, &[entry(altered)]);
    let cert = record.certificate.clone().expect("a term");
    let refused = chat_client(&carol_node.address)
        .await
        .replicate(replicate(&host.key, &cert, &body, Some(&permit)))
        .await
        .expect_err("carol refuses a copy that fails verification");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused}");
    assert!(refused.message().contains("verification"), "{refused}");

    // The room moves to carol; bob's message goes again and is delivered.
    lease.abort();
    relay
        .wait_for_host("carol takes over", |h| h.name == "carol")
        .await;
    for member in [&mut bob, &mut carol] {
        member
            .wait_event("message", &[("text", "the genuine words")])
            .await;
        assert_eq!(member.texts(), ["the genuine words"], "{}", member.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_labelled_with_another_room_is_refused() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let host = ScriptedHost::start().await;
    let (mallory, record) = host.host_lobby(&uri, "mallory").await;
    let bob = join(&uri, "bob").await.expect("bob joins");
    let bob_node = bob.shared().ctx.identity.clone();
    let cert = record.certificate.clone().expect("a term");
    let permit = hostile::renew_asking_permit(&uri, &mallory, &record, "", &bob_node.node_id)
        .await
        .expect("bob may hold copies");
    let probe = ReplicateBody {
        counter: 1,
        ..Default::default()
    };
    let mut request = tonic::Request::new(replicate(&host.key, &cert, &probe, Some(&permit)));
    request
        .metadata_mut()
        .insert(chat_proto::ROOM_METADATA, "hall".parse().expect("metadata"));
    let refused = chat_client(&bob_node.address)
        .await
        .replicate(request)
        .await
        .expect_err("a copy of the lobby labelled as the hall");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused}");
    // The same copy, labelled right, is answered.
    chat_client(&bob_node.address)
        .await
        .replicate(replicate(&host.key, &cert, &probe, Some(&permit)))
        .await
        .expect("the lobby's host may ask how far bob is");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_pushed_to_a_member_without_the_relays_permit_are_refused() {
    const PUSHES: u64 = 70;
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let host = ScriptedHost::start().await;
    let (mallory, record) = host.host_lobby(&uri, "mallory").await;
    let epoch = record.epoch;
    let cert = record.certificate.clone().expect("a term");
    let bob = join(&uri, "bob").await.expect("bob joins");
    let carol = join(&uri, "carol").await.expect("carol joins");
    let bob_node = bob.shared().ctx.identity.clone();
    let carol_node = carol.shared().ctx.identity.clone();
    // The relay names carol successor and permits her copies; bob has none.
    let (_lease, carols) = keep_lease(&uri, &mallory, &record, &carol_node.node_id).await;
    let mut forged_permit = carols.clone();
    forged_permit.signature = mallory.key.sign(&forged_permit.grant);
    let mut to_bob = chat_client(&bob_node.address).await;

    // Seventy pushes of about 1 MB of mallory's own messages, each a
    // copy that checks out (signed, chained, under the head the host
    // signed): none carries a permit for bob, so bob holds none of it.
    let mut chain = SenderChain::default();
    let padding = "x".repeat(4_000);
    let entries: Vec<LogEntry> = (1..=256)
        .map(|seq| {
            let said = chain.message(&mallory.key, "mallory", &format!("m{seq}"), &padding);
            entry(served(&said, "mallory", &mallory.certificate(), seq, epoch))
        })
        .collect();
    let body = host.copy_from_start(epoch, &entries);
    let mut pushed = 0;
    for i in 0..PUSHES {
        let permit = match i % 3 {
            0 => None,
            1 => Some(&carols),
            _ => Some(&forged_permit),
        };
        let mut body = body.clone();
        body.counter = i + 1;
        let request = replicate(&host.key, &cert, &body, permit);
        pushed += prost::Message::encoded_len(&request);
        let refused = to_bob
            .replicate(request)
            .await
            .expect_err("bob is not permitted to hold copies");
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused}");
        assert!(refused.message().contains("copy permit"), "{refused}");
    }
    assert!(pushed > 70_000_000, "pushed {pushed} bytes");

    // Asked how far it is under a permit of its own, bob holds nothing.
    let bobs = hostile::renew_asking_permit(&uri, &mallory, &record, "", &bob_node.node_id)
        .await
        .expect("bob may be permitted");
    let probe = ReplicateBody {
        counter: u64::MAX,
        ..Default::default()
    };
    let have = to_bob
        .replicate(replicate(&host.key, &cert, &probe, Some(&bobs)))
        .await
        .expect("a probe under bob's permit")
        .into_inner();
    assert_eq!(have.have_seq, 0, "bob holds no copy: {have:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_with_a_forged_or_missing_head_is_reported() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut host = ScriptedHost::start().await;
    let (_mallory, record) = host.host_lobby(&uri, "mallory").await;
    let epoch = record.epoch;
    let mut bob = join(&uri, "bob").await.expect("bob joins");

    // The head of the Welcome signed by a key that is not the host's.
    let session = host.session().await;
    let Frame::Welcome(mut welcome) = host.welcome(epoch, 0, &GENESIS) else {
        unreachable!("welcome() makes a Welcome")
    };
    let stranger = chat_proto::trust::Keypair::generate();
    welcome.head = Some(stranger.sign_head(chat_proto::trust::ROOM, epoch, 0, &GENESIS));
    session.send(Frame::Welcome(welcome.clone())).await;
    let tampering = |what: &'static str| {
        move |e: &serde_json::Value| {
            e["type"] == "tampering"
                && e["host"].as_str().is_some_and(|h| h.contains("mallory"))
                && e["what"].as_str().is_some_and(|w| w.contains(what))
        }
    };
    bob.wait_for(
        "a forged head reported",
        tampering("signed its log head badly"),
    )
    .await;

    // The next session's Welcome carries no head at all.
    drop(session);
    let session = host.session().await;
    welcome.head = None;
    session.send(Frame::Welcome(welcome)).await;
    bob.wait_for(
        "a missing head reported",
        tampering("sent no signed head of its log"),
    )
    .await;
}
