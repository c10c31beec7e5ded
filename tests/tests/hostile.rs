//! Hostile clients against real in-process servers. The attacker is built
//! only from the project's protocol (`chat_proto::pb`, `chat_proto::trust`):
//! a stranger with a key of its own, or a registered member that does not
//! play by the rules. Every attack must get a clear gRPC status and leave
//! the chat intact: afterwards a fresh message from each honest member
//! reaches every honest member exactly once.

use chat_node::host::Role;
use chat_proto::pb::chat::chat_service_client::ChatServiceClient;
use chat_proto::pb::chat::peer_service_client::PeerServiceClient;
use chat_proto::pb::chat::{
    client_frame, log_entry, server_frame, Challenge, ChatMessage, ClientFrame, Hello, LogEntry,
    PrivateMessage, ReplicateBody, ReplicateRequest, RoomMeta, SendMessage, ServerFrame,
    TakeOverRequest, Welcome,
};
use chat_proto::pb::relay::relay_service_client::RelayServiceClient;
use chat_proto::pb::relay::{
    AuthorizeResetRequest, CurrentHostRequest, HostRecord, HostTerm, HostTermCertificate,
    LookupMemberRequest, MemberRecord, NameCertificate, RegisterRequest, RegisterResponse,
    WatchHostRequest,
};
use chat_proto::trust::{self, Keypair};
use chat_tests::{eventually, join, join_in, temp_dir, wait_for_host, Member, Relay, DEADLINE};
use prost::Message;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

const NO_MIGRATION: Duration = Duration::from_secs(3600);
/// Where hostile registrations claim to listen (nothing does).
const NOWHERE: &str = "127.0.0.1:1";

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
    let bob = members[1].shared().identity.clone();
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
    let alice = members[0].shared().identity.clone();
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
    assert_eq!(members[0].shared().role(), Role::Live { epoch: host.epoch });
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
    let bob = members[1].shared().identity.clone();
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
    };
    let err = to_bob
        .replicate(replicate(&stranger, &ahead, &body))
        .await
        .expect_err("a self-signed term");
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "self-signed term: {err}"
    );

    // The real host's certificate, signed with the stranger's key: a probe...
    let probe = ReplicateBody {
        counter: u64::MAX,
        ..Default::default()
    };
    let err = to_bob
        .replicate(replicate(&stranger, &real, &probe))
        .await
        .expect_err("a probe under a copied term");
    assert_eq!(err.code(), Code::PermissionDenied, "copied term: {err}");
    // ...and crafted entries that would follow bob's head.
    let crafted = ReplicateBody {
        counter: u64::MAX,
        meta: Some(forged_meta(head + 2, true)),
        entries: forged_entries(&stranger, alice_cert, head + 1, host.epoch, 2, 16, true),
        base_seq: head,
    };
    let err = to_bob
        .replicate(replicate(&stranger, &real, &crafted))
        .await
        .expect_err("crafted entries under a copied term");
    assert_eq!(err.code(), Code::PermissionDenied, "crafted entries: {err}");

    // Twenty requests of ~3.6 MB at once: each refused, nothing grows.
    let huge = ReplicateBody {
        counter: u64::MAX,
        meta: Some(forged_meta(256, false)),
        entries: forged_entries(&stranger, None, 1, host.epoch, 256, 14_000, false),
        base_seq: 0,
    };
    let huge = replicate(&stranger, &real, &huge);
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
        .shared()
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
// Attack 3: Register claiming to host.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn registering_with_a_claimed_host_term_never_moves_the_host() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut members = start_chat(&uri, &["alice", "bob", "carol"]).await;
    let host = current_host(&uri).await;
    let real = host
        .certificate
        .clone()
        .expect("the host record carries its term");
    let key = Keypair::generate();
    let mut rc = relay_client(&uri).await;
    let first = rc
        .register(signed_register(&key, "mallory", NOWHERE))
        .await
        .expect("anyone may register")
        .into_inner();
    let claim = |term: HostTermCertificate, hosting: bool| RegisterRequest {
        session_token: first.session_token.clone(),
        latest_term: Some(term),
        hosting,
        ..signed_register(&key, "mallory", NOWHERE)
    };

    // A self-signed term for the next epoch, naming mallory.
    let next = forged_term(&key, host.epoch + 1, &first.node_id, NOWHERE, "mallory");
    let err = rc
        .register(claim(next, true))
        .await
        .expect_err("a self-signed term");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert_same_host(&uri, &host).await;

    // The genuine current term, which names alice: refused or ignored.
    if let Err(err) = rc.register(claim(real, true)).await {
        assert!(
            matches!(
                err.code(),
                Code::PermissionDenied | Code::InvalidArgument | Code::FailedPrecondition
            ),
            "{err}"
        );
    }
    assert_same_host(&uri, &host).await;

    // A self-signed term of the last epoch there is, hosting or merely seen.
    let last = forged_term(&key, u64::MAX, &first.node_id, NOWHERE, "mallory");
    let err = rc
        .register(claim(last.clone(), true))
        .await
        .expect_err("a self-signed epoch u64::MAX");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    if let Err(err) = rc.register(claim(last, false)).await {
        assert!(
            matches!(err.code(), Code::PermissionDenied | Code::InvalidArgument),
            "{err}"
        );
    }
    assert_same_host(&uri, &host).await;

    // The host dies: a real member is promoted, at the next small epoch.
    members[0].kill().await;
    let promoted = wait_for_host(&uri, "a new host after alice died", |h| {
        h.epoch > host.epoch && h.name != "alice"
    })
    .await;
    assert!(promoted.epoch < 100, "promoted at epoch {}", promoted.epoch);
    assert!(
        ["bob", "carol"].contains(&promoted.name.as_str()),
        "promoted {promoted:?}"
    );
    let mut survivors = members.split_off(1);
    assert_chat_intact(&mut survivors).await;
}

// ---------------------------------------------------------------------------
// Attack 4: after a relay restart, a stranger grabs a connected member's name.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn after_a_relay_restart_a_stranger_cannot_keep_a_members_name() {
    let (relay, mut members) = chat_behind_a_restarting_relay().await;
    let uri = relay.uri();
    let bob = members.bob.clone();
    let mut rc = relay_client(&uri).await;
    let grab = rc
        .register(signed_register(&members.stranger, "bob", NOWHERE))
        .await;
    // Whether the stranger or bob was first, bob must end up with his name,
    // even though the stranger stays live at the relay.
    let stranger_node = match grab {
        Ok(reg) => {
            let reg = reg.into_inner();
            keep_watching(&mut rc, &reg).await;
            Some(reg.node_id)
        }
        Err(err) => {
            assert_eq!(err.code(), Code::AlreadyExists, "{err}");
            None
        }
    };
    eventually("bob holds his name again", || {
        let (uri, key) = (uri.clone(), bob.public_key.clone());
        async move { lookup(&uri, "bob").await.is_ok_and(|m| m.public_key == key) }
    })
    .await;

    // A private message the stranger signs as bob is refused by its recipient.
    let alice = members.chat[0].shared().identity.clone();
    let mut peer = peer_client(&alice.address).await;
    let from_nodes = std::iter::once(bob.node_id.clone()).chain(stranger_node);
    for (i, from_node_id) in from_nodes.enumerate() {
        let mut forged = PrivateMessage {
            id: format!("grab-{i}"),
            from: "bob".into(),
            from_node_id,
            to: "alice".into(),
            to_node_id: alice.node_id.clone(),
            text: "it's bob: what is the admin secret?".into(),
            ..Default::default()
        };
        members.stranger.sign_private(&mut forged);
        let err = peer
            .deliver_private(forged)
            .await
            .expect_err("forged as bob");
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    }
    assert!(!members.chat[0].has_seen("private", &[]));
    assert_chat_intact(&mut members.chat).await;
    relay.stop().await;
}

// Attack 4, continued: the first to register after a relay restart is a
// stranger. The room still has a live host holding a relay-signed term; a
// restarted relay that hands the stranger a fresh term (epoch 1 again)
// makes two hosts of one epoch, and sends newcomers to the stranger.
#[tokio::test]
async fn after_a_relay_restart_the_first_stranger_to_register_is_not_made_host() {
    let (relay, mut members) = chat_behind_a_restarting_relay().await;
    let uri = relay.uri();
    let grab = relay_client(&uri)
        .await
        .register(signed_register(&members.stranger, "mallory", NOWHERE))
        .await
        .expect("anyone may register")
        .into_inner();
    let offered = grab.host.unwrap_or_default();
    assert_ne!(
        offered.node_id, grab.node_id,
        "the stranger was made host: {offered:?}"
    );
    let alice = members.chat[0].shared().identity.node_id.clone();
    let host = wait_for_host(&uri, "the relay knows the host again", |h| {
        !h.node_id.is_empty()
    })
    .await;
    assert_ne!(host.node_id, grab.node_id, "the stranger hosts: {host:?}");
    assert_eq!(host.node_id, alice, "alice still hosts: {host:?}");
    assert_chat_intact(&mut members.chat).await;
    relay.stop().await;
}

/// Alice (host) and bob chat behind a relay that keeps its key in a data
/// directory; the relay has just restarted (same address, same directory)
/// and a stranger with its own key is ready to strike.
async fn chat_behind_a_restarting_relay() -> (Relay, RestartedChat) {
    let dir = temp_dir("hostile-relay");
    let any_port = "127.0.0.1:0".parse().expect("addr");
    let relay = Relay::start_in(any_port, &dir, 2, NO_MIGRATION).await;
    let (addr, uri) = (relay.addr, relay.uri());
    let chat = start_chat(&uri, &["alice", "bob"]).await;
    let bob = lookup(&uri, "bob").await.expect("bob is registered");
    relay.stop().await;
    let relay = Relay::start_in(addr, &dir, 2, NO_MIGRATION).await;
    let members = RestartedChat {
        chat,
        bob,
        stranger: Keypair::generate(),
    };
    (relay, members)
}

struct RestartedChat {
    /// Alice and bob.
    chat: Vec<Member>,
    /// Bob's record before the restart.
    bob: MemberRecord,
    stranger: Keypair,
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
    let bob = members[1].shared().identity.clone();
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
    let alice_id = alice.shared().identity.clone();
    let bob_id = bob.shared().identity.clone();

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
    let bob_now = bob.shared().identity.clone();
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
// Attack 7: malformed registrations.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn malformed_registrations_are_refused_and_store_nothing() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut members = start_chat(&uri, &["alice", "bob"]).await;
    let key = Keypair::generate();
    // Signed with the key the request carries, except where no signature
    // can fit the key: the field itself is what must be refused.
    let with_key = |public_key: Vec<u8>, name: &str| RegisterRequest {
        public_key,
        ..signed_register(&key, name, NOWHERE)
    };
    let cases = [
        (
            "a 1 MB address",
            signed_register(&key, "bigaddr", &"a".repeat(1 << 20)),
        ),
        ("a 1 MB key", with_key(vec![7; 1 << 20], "bigkey")),
        (
            "a 33-byte key",
            with_key([&key.public_key()[..], &[0]].concat(), "longkey"),
        ),
        (
            "a terminal escape in the name",
            signed_register(&key, "red\x1b[31m", NOWHERE),
        ),
    ];
    let mut rc = relay_client(&uri).await;
    for (what, request) in cases {
        let name = request.name.clone();
        let err = rc.register(request).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err}");
        let looked = lookup(&uri, &name).await.expect_err(what);
        // A lookup may also refuse the invalid name itself.
        let stored_nothing = looked.code() == Code::NotFound
            || (name.contains('\x1b') && looked.code() == Code::InvalidArgument);
        assert!(stored_nothing, "{what}: lookup {looked}");
    }
    for name in ["red", "red[31m"] {
        let looked = lookup(&uri, name).await.expect_err(name);
        assert_eq!(looked.code(), Code::NotFound, "{name}: {looked}");
    }
    assert_chat_intact(&mut members).await;
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
        for i in 0..FLOOD {
            let id = format!("flood-{i}");
            let mut text = format!("flood {i} ");
            text.push_str(&"x".repeat(FLOOD_TEXT_BYTES - text.len()));
            let send = signed_message(&key, "mallory", &id, &text);
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

// ---------------------------------------------------------------------------
// Attack 9: guessing the admin secret.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn guessing_the_admin_secret_is_cut_off_after_five_tries() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut members = start_chat(&uri, &["alice", "bob"]).await;
    let rc = relay_client(&uri).await;
    let try_secret = |secret: String| {
        let mut rc = rc.clone();
        async move {
            rc.authorize_reset(AuthorizeResetRequest {
                admin_secret: secret,
            })
            .await
            .expect_err("a wrong secret, or too many tries")
            .code()
        }
    };
    for guess in 1..=5 {
        let code = try_secret(format!("guess-{guess}")).await;
        assert_eq!(code, Code::PermissionDenied, "guess {guess}");
    }
    assert_eq!(
        try_secret("guess-6".into()).await,
        Code::ResourceExhausted,
        "the sixth wrong secret"
    );
    let right = relay_svc::config::TEST_ADMIN_SECRET.to_string();
    assert_eq!(
        try_secret(right).await,
        Code::ResourceExhausted,
        "even the right secret, right after"
    );
    assert_chat_intact(&mut members).await;
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

/// Each member says a text of its own; each must reach every member, from
/// its sender, exactly once.
async fn assert_chat_intact(members: &mut [Member]) {
    let tag: u32 = rand::random();
    let texts: Vec<(String, String)> = members
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                format!("{} is still here ({tag:08x})", m.name),
            )
        })
        .collect();
    for (member, (_, text)) in members.iter_mut().zip(&texts) {
        member.say(text).await;
    }
    for member in members.iter_mut() {
        for (from, text) in &texts {
            member.wait_event("message", &[("text", text)]).await;
            member.drain();
            let seen: Vec<&serde_json::Value> = member
                .seen
                .iter()
                .filter(|e| e["type"] == "message" && e["text"] == text.as_str())
                .collect();
            assert_eq!(seen.len(), 1, "{} saw {text:?}: {seen:?}", member.name);
            assert_eq!(seen[0]["from"], from.as_str(), "{}: {seen:?}", member.name);
        }
    }
}

/// Joins honest members (the relay needs two) and waits until each is in
/// the room and the chat is active.
async fn start_chat(uri: &str, names: &[&str]) -> Vec<Member> {
    let mut members = Vec::new();
    for name in names {
        members.push(join(uri, name).await.expect("an honest member joins"));
    }
    for member in members.iter_mut() {
        let name = member.name.clone();
        member.wait_event("joined", &[("name", &name)]).await;
    }
    members[0].wait_event("activated", &[]).await;
    members
}

async fn relay_client(uri: &str) -> RelayServiceClient<Channel> {
    RelayServiceClient::connect(uri.to_string())
        .await
        .expect("the relay is reachable")
}

async fn current_host(uri: &str) -> HostRecord {
    relay_client(uri)
        .await
        .current_host(CurrentHostRequest {})
        .await
        .expect("CurrentHost")
        .into_inner()
}

/// The relay still names the host of `before`, in the same term.
async fn assert_same_host(uri: &str, before: &HostRecord) {
    let now = current_host(uri).await;
    assert_eq!(
        (now.epoch, &now.node_id, &now.address),
        (before.epoch, &before.node_id, &before.address),
        "the host moved"
    );
}

async fn lookup(uri: &str, name: &str) -> Result<MemberRecord, Status> {
    relay_client(uri)
        .await
        .lookup_member(LookupMemberRequest { name: name.into() })
        .await
        .map(|r| r.into_inner())
}

async fn chat_client(address: &str) -> ChatServiceClient<Channel> {
    ChatServiceClient::connect(format!("http://{address}"))
        .await
        .expect("the node is reachable")
        .max_decoding_message_size(16 << 20)
}

async fn peer_client(address: &str) -> PeerServiceClient<Channel> {
    PeerServiceClient::connect(format!("http://{address}"))
        .await
        .expect("the peer endpoint is reachable")
}

/// The member's node does not host: its role, and what its health says.
async fn assert_dormant(member: &Member, after: &str) {
    let shared = member.shared();
    assert_eq!(shared.role(), Role::Dormant, "{}: {after}", member.name);
    let status = chat_proto::health_check::check(
        &shared.identity.address,
        "chat.v1.ChatService",
        Duration::from_secs(5),
    )
    .await
    .expect("health answers");
    assert_eq!(
        format!("{status:?}"),
        "NotServing",
        "{}: {after}",
        member.name
    );
}

/// A Register for `name` at `address`, proving that it holds `key`.
fn signed_register(key: &Keypair, name: &str, address: &str) -> RegisterRequest {
    let mut req = RegisterRequest {
        name: name.into(),
        address: address.into(),
        ..Default::default()
    };
    key.sign_register(&mut req);
    req
}

/// A host term signed by `key` instead of the relay.
fn forged_term(
    key: &Keypair,
    epoch: u64,
    node_id: &str,
    address: &str,
    name: &str,
) -> HostTermCertificate {
    key.issue_host_term(&HostTerm {
        room: trust::ROOM.into(),
        epoch,
        node_id: node_id.into(),
        address: address.into(),
        name: name.into(),
        public_key: key.public_key(),
        issued_at_unix_ms: trust::now_unix_ms(),
    })
}

/// A TakeOver signed by `key` (as if it were the sender term's host).
fn take_over(
    key: &Keypair,
    new_term: Option<HostTermCertificate>,
    sender_term: Option<HostTermCertificate>,
) -> TakeOverRequest {
    let signed_at = trust::now_unix_ms();
    let term_bytes =
        |c: &Option<HostTermCertificate>| c.as_ref().map_or(Vec::new(), |c| c.term.clone());
    let payload =
        trust::take_over_payload(&term_bytes(&new_term), &term_bytes(&sender_term), signed_at);
    TakeOverRequest {
        signature: key.sign(&payload),
        new_term,
        sender_term,
        signed_at_unix_ms: signed_at,
    }
}

/// A Replicate of `body` under `term`, signed by `key`.
fn replicate(key: &Keypair, term: &HostTermCertificate, body: &ReplicateBody) -> ReplicateRequest {
    let body = body.encode_to_vec();
    ReplicateRequest {
        signature: key.sign(&trust::replicate_payload(&term.term, &body)),
        term: Some(term.clone()),
        body,
    }
}

fn forged_meta(head_seq: u64, same_members: bool) -> RoomMeta {
    RoomMeta {
        room_id: trust::ROOM.into(),
        head_seq,
        min_users: 1,
        activated: true,
        same_members,
        ..Default::default()
    }
}

/// Log entries "from alice" that alice never wrote: signed by `key` (or not
/// at all, when `signed` is false), under alice's genuine certificate if given.
fn forged_entries(
    key: &Keypair,
    sender: Option<NameCertificate>,
    first_seq: u64,
    epoch: u64,
    count: u64,
    padding: usize,
    signed: bool,
) -> Vec<LogEntry> {
    let pad = "x".repeat(padding);
    (0..count)
        .map(|i| {
            let id = format!("forged-{i}");
            let text = format!("FORGED {i} {pad}");
            let sent_at = trust::now_unix_ms();
            let signature = if signed {
                key.sign(&trust::message_payload(
                    trust::ROOM,
                    &id,
                    "alice",
                    &text,
                    sent_at,
                ))
            } else {
                vec![0; 64]
            };
            let message = ChatMessage {
                seq: first_seq + i,
                id,
                from: "alice".into(),
                text,
                sent_at_unix_ms: sent_at,
                epoch,
                signature,
                sender: sender.clone(),
            };
            LogEntry {
                kind: Some(log_entry::Kind::Message(message)),
            }
        })
        .collect()
}

/// A chat message signed by `key` as `from`.
fn signed_message(key: &Keypair, from: &str, id: &str, text: &str) -> SendMessage {
    let mut msg = SendMessage {
        id: id.into(),
        text: text.into(),
        ..Default::default()
    };
    key.sign_message(from, &mut msg);
    msg
}

/// Keeps a WatchHost stream open for `reg`, as a live node does, so the
/// relay does not forget it.
async fn keep_watching(rc: &mut RelayServiceClient<Channel>, reg: &RegisterResponse) {
    let mut watch = rc
        .watch_host(WatchHostRequest {
            node_id: reg.node_id.clone(),
            session_token: reg.session_token.clone(),
        })
        .await
        .expect("WatchHost")
        .into_inner();
    tokio::spawn(async move { while let Ok(Some(_)) = watch.message().await {} });
}

/// A hostile party registered at the relay under its own key, kept live
/// there by an open WatchHost stream.
struct Stranger {
    key: Keypair,
    name: String,
    reg: RegisterResponse,
}

impl Stranger {
    async fn register(uri: &str, name: &str) -> Stranger {
        let key = Keypair::generate();
        let mut rc = relay_client(uri).await;
        let reg = rc
            .register(signed_register(&key, name, NOWHERE))
            .await
            .expect("anyone may register")
            .into_inner();
        keep_watching(&mut rc, &reg).await;
        Stranger {
            key,
            name: name.into(),
            reg,
        }
    }

    fn certificate(&self) -> NameCertificate {
        self.reg
            .name_certificate
            .clone()
            .expect("the relay issues a name certificate")
    }

    /// A Hello answering `challenge`, signed by this stranger as itself.
    fn hello(&self, challenge: &Challenge) -> Hello {
        let mut hello = Hello {
            name: self.name.clone(),
            node_id: self.reg.node_id.clone(),
            address: NOWHERE.into(),
            certificate: Some(self.certificate()),
            ..Default::default()
        };
        self.key
            .sign_hello(&mut hello, &challenge.nonce, &challenge.host_node_id);
        hello
    }
}

/// A chat session driven frame by frame.
struct HostileSession {
    tx: mpsc::Sender<ClientFrame>,
    frames: Streaming<ServerFrame>,
    challenge: Challenge,
}

impl HostileSession {
    /// Opens a session and reads the host's Challenge.
    async fn open(address: &str) -> HostileSession {
        let (tx, rx) = mpsc::channel(256);
        let mut frames = chat_client(address)
            .await
            .session(ReceiverStream::new(rx))
            .await
            .expect("the host opens a session")
            .into_inner();
        let challenge = match next_frame(&mut frames).await {
            Ok(Some(server_frame::Frame::Challenge(c))) => c,
            other => panic!("expected a Challenge first, got {other:?}"),
        };
        HostileSession {
            tx,
            frames,
            challenge,
        }
    }

    async fn send(&self, frame: client_frame::Frame) {
        self.tx
            .send(ClientFrame { frame: Some(frame) })
            .await
            .expect("the session is open");
    }

    /// The Welcome that admits this session.
    async fn welcomed(&mut self) -> Welcome {
        match next_frame(&mut self.frames).await {
            Ok(Some(server_frame::Frame::Welcome(w))) => w,
            other => panic!("expected a Welcome, got {other:?}"),
        }
    }

    /// The status the host ends this session with; any frame is a failure.
    async fn refused(&mut self) -> Status {
        match next_frame(&mut self.frames).await {
            Err(status) => status,
            Ok(frame) => panic!("expected a refusal, got {frame:?}"),
        }
    }
}

/// The next frame of a session (`None` at its end), within the deadline.
async fn next_frame(
    frames: &mut Streaming<ServerFrame>,
) -> Result<Option<server_frame::Frame>, Status> {
    match tokio::time::timeout(DEADLINE, frames.message()).await {
        Ok(next) => next.map(|f| f.and_then(|f| f.frame)),
        Err(_) => panic!("no frame from the host within {DEADLINE:?}"),
    }
}
