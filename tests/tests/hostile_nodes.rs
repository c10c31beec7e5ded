//! Hostile clients against the nodes' endpoints (TakeOver, Replicate,
//! Session, DeliverPrivate), built only from the project's protocol. Every
//! attack must get a clear gRPC status and leave the chat intact: afterwards
//! a fresh message from each honest member reaches every honest member
//! exactly once.

use chat_node::host::Role;
use chat_proto::pb::chat::chat_service_client::ChatServiceClient;
use chat_proto::pb::chat::{
    client_frame, server_frame, ClientFrame, Hello, PrivateMessage, ReplicateBody,
    ReplicateRequest, ServerFrame,
};
use chat_proto::trust::Keypair;
use chat_tests::hostile::*;
use chat_tests::{join, join_in, temp_dir, wait_for_host, Relay, DEADLINE};
use prost::Message;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

const NO_MIGRATION: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------
// Attack 1: TakeOver from a stranger.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_stranger_cannot_make_a_dormant_node_take_over() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut members = start_chat(&uri, &["alice", "bob"]).await;
    let host = current_host(&uri).await;
    assert_eq!(host.name, "alice");
    let real = host
        .certificate
        .clone()
        .expect("the host record carries its term");
    let bob = members[1].shared().ctx.identity.clone();
    let stranger = Keypair::generate();
    let own_term = forged_term(&stranger, host.epoch, "stranger", NOWHERE, "stranger");
    let next_for_bob = forged_term(&stranger, host.epoch + 1, &bob.node_id, &bob.address, "bob");
    let cases = [
        (
            "no certificate at all",
            take_over(&stranger, None, None),
            Code::PermissionDenied,
        ),
        (
            "a term for the next epoch that the stranger signed itself",
            take_over(&stranger, Some(next_for_bob), Some(own_term)),
            Code::PermissionDenied,
        ),
        // Genuine, but it names another node and the stranger cannot sign
        // as its host: the caller has no right to it.
        (
            "the current host's certificate, copied from CurrentHost",
            take_over(&stranger, Some(real.clone()), Some(real.clone())),
            Code::PermissionDenied,
        ),
    ];
    let mut to_bob = chat_client(&bob.address).await;
    for (what, request, code) in cases {
        let err = to_bob.take_over(request).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err}");
        assert_dormant(&members[1], what).await;
    }

    // The live host, offered a self-signed term of a huge epoch naming it.
    let alice = members[0].shared().ctx.identity.clone();
    let huge = forged_term(
        &stranger,
        host.epoch + 1_000_000_000,
        &alice.node_id,
        &alice.address,
        "alice",
    );
    let err = chat_client(&alice.address)
        .await
        .take_over(take_over(&stranger, Some(huge), Some(real)))
        .await
        .expect_err("a self-signed huge epoch");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert_same_host(&uri, &host).await;
    assert_eq!(members[0].lobby().role(), Role::Live { epoch: host.epoch });
    assert_chat_intact(&mut members).await;
}

// ---------------------------------------------------------------------------
// Attack 2: Replicate from a stranger into the successor's replica.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_write_into_a_replica_and_the_next_host_serves_the_real_history() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut members = start_chat(&uri, &["alice", "bob", "carol"]).await;
    let history = ["the real first", "the real second", "the real third"];
    for (member, text) in members.iter_mut().zip(history) {
        member.say(text).await;
    }
    for member in members.iter_mut() {
        for text in history {
            member.wait_event("message", &[("text", text)]).await;
        }
    }
    let host = current_host(&uri).await;
    assert_eq!(host.name, "alice");
    let real = host
        .certificate
        .clone()
        .expect("the host record carries its term");
    let alice_cert = lookup(&uri, "alice").await.expect("alice").certificate;
    let bob = members[1].shared().ctx.identity.clone();
    let stranger = Keypair::generate();
    let mut to_bob = chat_client(&bob.address).await;
    let head = history.len() as u64;

    // A self-signed term a million epochs ahead, starting the replica over.
    let ahead = forged_term(&stranger, host.epoch + 1_000_000, "stranger", NOWHERE, "x");
    let body = ReplicateBody {
        counter: 1,
        meta: Some(forged_meta(3, false)),
        entries: forged_entries(&stranger, alice_cert.clone(), 1, host.epoch, 3, 16, true),
        base_seq: 0,
        head: None,
    };
    refused_replicate(
        &mut to_bob,
        replicate(&stranger, &ahead, &body, None),
        "a self-signed term",
    )
    .await;

    // The real host's certificate, signed with the stranger's key: a probe...
    let probe = ReplicateBody {
        counter: u64::MAX,
        ..Default::default()
    };
    let request = replicate(&stranger, &real, &probe, None);
    refused_replicate(&mut to_bob, request, "a probe under a copied term").await;
    // ...and crafted entries that would follow bob's head.
    let crafted = ReplicateBody {
        counter: u64::MAX,
        meta: Some(forged_meta(head + 2, true)),
        entries: forged_entries(&stranger, alice_cert, head + 1, host.epoch, 2, 16, true),
        base_seq: head,
        head: None,
    };
    let request = replicate(&stranger, &real, &crafted, None);
    refused_replicate(&mut to_bob, request, "crafted entries under a copied term").await;

    // Twenty requests of ~3.6 MB at once: each refused, nothing grows.
    let huge = ReplicateBody {
        counter: u64::MAX,
        meta: Some(forged_meta(256, false)),
        entries: forged_entries(&stranger, None, 1, host.epoch, 256, 14_000, false),
        base_seq: 0,
        head: None,
    };
    let huge = replicate(&stranger, &real, &huge, None);
    assert!(huge.encoded_len() > 3_500_000, "{}", huge.encoded_len());
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (mut client, request) = (to_bob.clone(), huge.clone());
        calls.spawn(async move { client.replicate(request).await });
    }
    let answers = tokio::time::timeout(DEADLINE, calls.join_all())
        .await
        .expect("twenty huge Replicates answered in time");
    for answer in answers {
        let err = answer.expect_err("a huge forged Replicate");
        // Refused for its signature, or for its size before that.
        assert!(
            matches!(
                err.code(),
                Code::PermissionDenied | Code::ResourceExhausted | Code::OutOfRange
            ),
            "huge Replicate: {err}"
        );
    }
    assert_dormant(&members[1], "after forged Replicates").await;

    // A planned migration, then a newcomer: it gets the real history only.
    let moved = members[0]
        .lobby()
        .hand_off()
        .await
        .expect("a planned migration");
    wait_for_host(&uri, "the planned move", |h| h.epoch >= moved.epoch).await;
    let mut dave = join(&uri, "dave").await.expect("dave joins");
    for text in history {
        dave.wait_event("message", &[("text", text)]).await;
    }
    members.push(dave);
    for member in members.iter_mut() {
        let forged = member.has_seen("message", &[("text", "~FORGED")]);
        let texts = member.texts();
        assert!(!forged, "{} saw a forged entry: {texts:?}", member.name);
    }
    let dave = members.last_mut().expect("dave");
    let mut got = dave.texts();
    got.sort();
    let mut real: Vec<&str> = history.to_vec();
    real.sort();
    assert_eq!(got, real, "the newcomer's history");
    assert_chat_intact(&mut members).await;
}

// ---------------------------------------------------------------------------
// Attack 5: a captured Hello replayed; a Hello under a connected member's name.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_captured_hello_opens_no_other_session() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut members = start_chat(&uri, &["alice", "bob"]).await;
    let mallory = Stranger::register(&uri, "mallory").await;
    let host = current_host(&uri).await;

    let mut first = HostileSession::open(&host.address).await;
    let captured = mallory.hello(&first.challenge);
    first
        .send(client_frame::Frame::Hello(captured.clone()))
        .await;
    first.welcomed().await;
    let first_nonce = first.challenge.nonce.clone();
    drop(first);

    let mut second = HostileSession::open(&host.address).await;
    assert_ne!(second.challenge.nonce, first_nonce, "a fresh challenge");
    second.send(client_frame::Frame::Hello(captured)).await;
    let err = second.refused().await;
    assert!(
        matches!(err.code(), Code::Unauthenticated | Code::PermissionDenied),
        "replayed Hello: {err}"
    );

    // Bob's name, signed by mallory with mallory's own certificate.
    let bob = members[1].shared().ctx.identity.clone();
    for node_id in [bob.node_id.clone(), mallory.reg.node_id.clone()] {
        let mut session = HostileSession::open(&host.address).await;
        let mut hello = Hello {
            name: "bob".into(),
            node_id,
            address: bob.address.clone(),
            certificate: Some(mallory.certificate()),
            ..Default::default()
        };
        let challenge = &session.challenge;
        mallory
            .key
            .sign_hello(&mut hello, &challenge.nonce, &challenge.host_node_id);
        session.send(client_frame::Frame::Hello(hello)).await;
        let err = session.refused().await;
        assert!(
            matches!(err.code(), Code::Unauthenticated | Code::PermissionDenied),
            "Hello as bob: {err}"
        );
    }
    assert!(!members[1].has_seen("left", &[("name", "bob")]));
    assert_chat_intact(&mut members).await;
}

// ---------------------------------------------------------------------------
// Attack 6: a private message replayed across its recipient's restart, and
// one signed for another recipient.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_private_message_is_accepted_once_even_across_a_restart() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let dir = temp_dir("hostile-bob");
    let mut alice = join(&uri, "alice").await.expect("alice joins");
    let mut bob = join_in(&uri, "bob", &dir).await.expect("bob joins");
    alice.wait_event("joined", &[("name", "alice")]).await;
    bob.wait_event("joined", &[("name", "bob")]).await;
    let mallory = Stranger::register(&uri, "mallory").await;
    let alice_id = alice.shared().ctx.identity.clone();
    let bob_id = bob.shared().ctx.identity.clone();

    let mut genuine = PrivateMessage {
        id: "pm-1".into(),
        from: "mallory".into(),
        from_node_id: mallory.reg.node_id.clone(),
        to: "bob".into(),
        to_node_id: bob_id.node_id.clone(),
        text: "meet me at noon".into(),
        ..Default::default()
    };
    mallory.key.sign_private(&mut genuine);
    peer_client(&bob_id.address)
        .await
        .deliver_private(genuine.clone())
        .await
        .expect("a genuine private message is delivered");
    bob.wait_event(
        "private",
        &[("from", "mallory"), ("text", "meet me at noon")],
    )
    .await;
    let err = peer_client(&bob_id.address)
        .await
        .deliver_private(genuine.clone())
        .await
        .expect_err("replayed at once");
    assert!(
        matches!(err.code(), Code::AlreadyExists | Code::PermissionDenied),
        "replay: {err}"
    );

    // Bob restarts (same data dir: same user); the replay is still refused.
    bob.kill().await;
    let mut bob = join_in(&uri, "bob", &dir).await.expect("bob restarts");
    bob.wait_event("connection", &[("state", "connected")])
        .await;
    let bob_now = bob.shared().ctx.identity.clone();
    let err = peer_client(&bob_now.address)
        .await
        .deliver_private(genuine)
        .await
        .expect_err("replayed after the restart");
    assert!(
        matches!(err.code(), Code::AlreadyExists | Code::PermissionDenied),
        "replay after restart: {err}"
    );

    // Signed for alice's node, delivered to bob.
    let mut misdirected = PrivateMessage {
        id: "pm-2".into(),
        from: "mallory".into(),
        from_node_id: mallory.reg.node_id.clone(),
        to: "bob".into(),
        to_node_id: alice_id.node_id.clone(),
        text: "meant for another node".into(),
        ..Default::default()
    };
    mallory.key.sign_private(&mut misdirected);
    let err = peer_client(&bob_now.address)
        .await
        .deliver_private(misdirected)
        .await
        .expect_err("signed for another recipient node");
    // Not for this node: refused as not its recipient, or as not permitted.
    assert!(
        matches!(err.code(), Code::NotFound | Code::PermissionDenied),
        "misdirected: {err}"
    );
    assert!(!bob.has_seen("private", &[]), "{:?}", bob.seen);
    assert_chat_intact(&mut [alice, bob]).await;
}

// ---------------------------------------------------------------------------
// Attack 8: one member floods the host.
// ---------------------------------------------------------------------------

const FLOOD: usize = 5_000;
const FLOOD_TEXT_BYTES: usize = 4096;

/// What the host answered to the flood.
#[derive(Debug, Default)]
struct FloodAnswers {
    acked: HashSet<String>,
    /// Refused with `retry_after_ms > 0`.
    throttled: HashSet<String>,
    /// Refused for another reason.
    refused: Vec<String>,
    /// How the session ended before every message was answered, if it did.
    ended: Option<String>,
}

impl FloodAnswers {
    fn answered(&self) -> usize {
        self.acked.len() + self.throttled.len() + self.refused.len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_member_is_rate_limited_and_the_chat_goes_on() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut members = start_chat(&uri, &["alice", "bob"]).await;
    let mallory = Stranger::register(&uri, "mallory").await;
    let (rate, burst) = (mallory.reg.messages_per_second, mallory.reg.message_burst);
    assert!(rate > 0 && burst > 0, "rate {rate}/s, burst {burst}");
    let host = current_host(&uri).await;
    let mut session = HostileSession::open(&host.address).await;
    session
        .send(client_frame::Frame::Hello(
            mallory.hello(&session.challenge),
        ))
        .await;
    session.welcomed().await;
    let HostileSession { tx, frames, .. } = session;

    let answers = Arc::new(Mutex::new(FloodAnswers::default()));
    let started = Instant::now();
    let reader = tokio::spawn(read_flood_answers(frames, answers.clone()));
    // Signing is the slow part: done on a blocking thread, as fast as it goes.
    let (key, sender) = (mallory.key, tx.clone());
    let writer = tokio::task::spawn_blocking(move || {
        let mut chain = SenderChain::default();
        for i in 0..FLOOD {
            let id = format!("flood-{i}");
            let mut text = format!("flood {i} ");
            text.push_str(&"x".repeat(FLOOD_TEXT_BYTES - text.len()));
            let send = chain.message(&key, "mallory", &id, &text);
            let frame = ClientFrame {
                frame: Some(client_frame::Frame::Send(send)),
            };
            if sender.blocking_send(frame).is_err() {
                return i;
            }
        }
        FLOOD
    });
    let finished = tokio::time::timeout(DEADLINE, reader).await;
    let elapsed = started.elapsed();
    let answers = std::mem::take(&mut *answers.lock().expect("answers"));
    let summary = format!(
        "{} acked, {} throttled, refused {:?}, ended {:?}, after {elapsed:?}",
        answers.acked.len(),
        answers.throttled.len(),
        answers.refused,
        answers.ended
    );
    assert!(
        finished.is_ok(),
        "the host did not answer the flood: {summary}"
    );
    let written = writer.await.expect("writer");
    assert_eq!(written, FLOOD, "the session closed mid-flood: {summary}");
    assert_eq!(
        answers.answered(),
        FLOOD,
        "every message answered: {summary}"
    );
    assert!(answers.refused.is_empty(), "{summary}");
    assert!(!answers.throttled.is_empty(), "no rate limit: {summary}");
    // A token bucket: the burst, the rate over the time taken, a little slack.
    let allowed = f64::from(burst) + f64::from(rate) * (elapsed.as_secs_f64() + 0.25) + 2.0;
    assert!(
        answers.acked.len() as f64 <= allowed,
        "at most {allowed:.0} acks for {rate}/s, burst {burst}: {summary}"
    );
    drop(tx);
    assert_chat_intact(&mut members).await;
}

/// Counts the host's answers until every flood message has one or the
/// session ends.
async fn read_flood_answers(mut frames: Streaming<ServerFrame>, answers: Arc<Mutex<FloodAnswers>>) {
    loop {
        let frame = match frames.message().await {
            Ok(Some(frame)) => frame.frame,
            Ok(None) => {
                answers.lock().expect("answers").ended = Some("closed without a status".into());
                return;
            }
            Err(status) => {
                answers.lock().expect("answers").ended = Some(status.to_string());
                return;
            }
        };
        let mut answers = answers.lock().expect("answers");
        match frame {
            Some(server_frame::Frame::Ack(ack)) => {
                answers.acked.insert(ack.id);
            }
            Some(server_frame::Frame::Rejected(r)) if r.retry_after_ms > 0 => {
                answers.throttled.insert(r.id);
            }
            Some(server_frame::Frame::Rejected(r)) => answers.refused.push(r.reason),
            _ => {}
        }
        if answers.answered() >= FLOOD {
            return;
        }
    }
}

/// Sends a forged Replicate to a node and expects PERMISSION_DENIED.
async fn refused_replicate(
    to: &mut ChatServiceClient<Channel>,
    request: ReplicateRequest,
    what: &str,
) {
    let err = to.replicate(request).await.expect_err(what);
    assert_eq!(err.code(), Code::PermissionDenied, "{what}: {err}");
}

// ---------------------------------------------------------------------------
// Attack 8b: one member floods the host over several sessions at once.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_sessions_share_one_rate_limit() {
    const SESSIONS: usize = 5;
    const MESSAGES: usize = 100;
    // A burst of 10 and 1 a second: five sessions of their own would get
    // 50 messages through at once.
    let (rate, burst) = (1, 10);
    let config = relay_svc::RelayConfig {
        messages_per_second: rate,
        message_burst: burst,
        ..relay_svc::RelayConfig::for_tests(2, NO_MIGRATION)
    };
    let relay = Relay::start_with("127.0.0.1:0".parse().expect("addr"), config).await;
    let uri = relay.uri();
    let mut members = start_chat(&uri, &["alice", "bob"]).await;
    let mallory = Stranger::register(&uri, "mallory").await;
    assert_eq!(
        (mallory.reg.messages_per_second, mallory.reg.message_burst),
        (rate, burst)
    );
    let host = current_host(&uri).await;

    // Time runs from before the first session, so the bucket earns no
    // more than `rate * elapsed` after its burst.
    let started = Instant::now();
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        let mut session = HostileSession::open(&host.address).await;
        session
            .send(client_frame::Frame::Hello(
                mallory.hello(&session.challenge),
            ))
            .await;
        session.welcomed().await;
        sessions.push(session);
    }
    // The sessions take turns, each message answered before the next goes
    // (so they reach the host in the order of mallory's chain); a message
    // refused as too fast leaves its place in the chain to the next one.
    let mut answers = FloodAnswers::default();
    let mut chain = SenderChain::default();
    for i in 0..MESSAGES {
        let session = &mut sessions[i % SESSIONS];
        let before = chain.clone();
        let id = format!("fast-{i}");
        let msg = chain.message(&mallory.key, "mallory", &id, &format!("fast {i}"));
        session.send(client_frame::Frame::Send(msg)).await;
        match answer(&mut session.frames, &id).await {
            Answer::Acked => {
                answers.acked.insert(id);
            }
            Answer::Throttled => {
                answers.throttled.insert(id);
                chain = before;
            }
            Answer::Refused(why) => answers.refused.push(why),
        }
    }
    let elapsed = started.elapsed();
    let summary = format!(
        "{} acked, {} throttled, refused {:?}, after {elapsed:?}",
        answers.acked.len(),
        answers.throttled.len(),
        answers.refused
    );
    assert!(answers.refused.is_empty(), "{summary}");
    // One bucket for the member: its burst, then `rate` a second.
    let budget = f64::from(burst) + f64::from(rate) * elapsed.as_secs_f64();
    assert!(
        answers.acked.len() as f64 <= budget,
        "at most {budget:.1} acks across {SESSIONS} sessions: {summary}"
    );
    assert!(
        answers.acked.len() >= burst as usize,
        "the burst: {summary}"
    );
    drop(sessions);
    assert_chat_intact(&mut members).await;
}

/// How the host answered one message.
enum Answer {
    Acked,
    /// Refused as too fast (to be sent again later).
    Throttled,
    /// Refused for another reason.
    Refused(String),
}

/// The host's answer to message `id` on a session, skipping other frames.
async fn answer(frames: &mut Streaming<ServerFrame>, id: &str) -> Answer {
    loop {
        match next_frame(frames).await {
            Ok(Some(server_frame::Frame::Ack(ack))) if ack.id == id => return Answer::Acked,
            Ok(Some(server_frame::Frame::Rejected(r))) if r.id == id => {
                return match r.retry_after_ms {
                    0 => Answer::Refused(r.reason),
                    _ => Answer::Throttled,
                }
            }
            Ok(Some(_)) => {}
            other => panic!("expected the answer to {id}, got {other:?}"),
        }
    }
}
