//! Client-only members (`chat-node --client-only`): they open no port and
//! serve nothing, so they are never host or successor; they chat through
//! every move of the host, and private messages reach them sealed to their
//! key through the host, which can neither read nor forge them.

use chat_node::host::Role;
use chat_node::node::NodeShared;
use chat_proto::pb::chat::{client_frame, server_frame, PrivateMessage, SealedPrivate};
use chat_proto::pb::relay::NameCertificate;
use chat_proto::sealed::{open_private, seal_private, MAX_SEALED_BYTES};
use chat_proto::trust::{Keypair, PublicKey};
use chat_tests::hostile::{self, assert_chat_intact, next_frame, HostileSession, Stranger};
use chat_tests::phases::{chat_through_moves, current_host, survive_a_host_kill};
use chat_tests::procs::{listening_sockets, spawn_node, RelayProcess};
use chat_tests::{join, join_relay, join_relay_client_only, temp_dir, Member, Relay};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Samples, until stopped, whether the client-only node was ever host or
/// successor: the relay's record, every node's named successor, and the
/// client-only node's own role.
struct NeverHosts {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl NeverHosts {
    fn watch(relay: &Relay, members: &[Member], client_only: &Member) -> NeverHosts {
        let nodes: Vec<Arc<NodeShared>> = members.iter().map(Member::shared).collect();
        let lurker = client_only.shared();
        let (id, name) = (
            lurker.ctx.identity.node_id.clone(),
            client_only.name.clone(),
        );
        let relay = relay.client();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let (mut samples, mut seen) = (0, Vec::new());
            while !stopped.load(Ordering::Relaxed) {
                let host = relay
                    .clone()
                    .current_host(chat_proto::pb::relay::CurrentHostRequest::default())
                    .await;
                if let Ok(host) = host.map(|h| h.into_inner()) {
                    if host.node_id == id || host.name == name {
                        seen.push(format!("the relay names it host at epoch {}", host.epoch));
                    }
                }
                for node in &nodes {
                    if node.room("").and_then(|r| r.successor()).as_deref() == Some(id.as_str()) {
                        let by = &node.ctx.identity.name;
                        seen.push(format!("{by} names it successor"));
                    }
                }
                let role = lurker.room("").map_or(Role::Dormant, |r| r.role());
                if role != Role::Dormant {
                    seen.push(format!("its role is {role:?}"));
                }
                samples += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (samples, seen)
        });
        NeverHosts { stop, task }
    }

    async fn assert_never(self) {
        self.stop.store(true, Ordering::Relaxed);
        let (samples, seen) = self.task.await.expect("the sampler runs");
        assert!(samples > 10, "sampled the roles {samples} times only");
        assert!(seen.is_empty(), "the client-only member hosted: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_only_member_chats_over_tls_through_migrations_and_a_host_kill() {
    let dir = temp_dir("client-only-chat");
    let relay = Relay::start_tls(&dir, 4, Duration::from_millis(300)).await;
    let mut members = Vec::new();
    for name in ["alice", "bob", "carol"] {
        members.push(join_relay(&relay, name).await.expect("joins over TLS"));
    }
    let dave = join_relay_client_only(&relay, "dave")
        .await
        .expect("a client-only member joins over TLS");
    let watch = NeverHosts::watch(&relay, &members, &dave);
    members.push(dave);
    for member in members.iter_mut() {
        member.wait_event("activated", &[]).await;
    }

    // Everyone, dave too, sends through five planned moves; then the host
    // dies with messages in flight. dave holds every message once, in the
    // same order as the others, and the others hold all of his.
    let rounds = chat_through_moves(&relay, &mut members, 5).await;
    let kill = survive_a_host_kill(&relay, &mut members, rounds).await;
    assert_ne!(kill.promoted.name, "dave");
    assert_chat_intact(&mut members).await;
    watch.assert_never().await;
    eprintln!(
        "{rounds} rounds; {} killed at epoch {}; {} promoted at epoch {}",
        kill.killed.name, kill.killed.epoch, kill.promoted.name, kill.promoted.epoch
    );
}

/// Private events `member` has shown so far: `(from, text)`.
fn privates(member: &mut Member) -> Vec<(String, String)> {
    member.drain();
    member
        .seen
        .iter()
        .filter(|e| e["type"] == "private")
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (field("from"), field("text"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_messages_reach_a_client_only_member_sealed_and_leave_it_direct() {
    let dir = temp_dir("client-only-private");
    let relay = Relay::start_tls(&dir, 3, Duration::from_secs(600)).await;
    let mut alice = join_relay(&relay, "alice").await.expect("alice joins");
    let mut bob = join_relay(&relay, "bob").await.expect("bob joins");
    let mut dave = join_relay_client_only(&relay, "dave")
        .await
        .expect("dave joins");
    // Activated at three members: dave has a session with the host (it
    // may have had one before bob, whose list then starts with dave).
    for m in [&mut alice, &mut bob, &mut dave] {
        m.wait_event("activated", &[]).await;
    }
    assert_eq!(current_host(&relay).await.name, "alice");

    // bob to dave: sealed, carried by alice's host. dave to bob: dialled
    // directly, dave presenting its relay-issued certificate.
    for round in 0..2 {
        bob.say(&format!("/msg dave for dave only {round}")).await;
        dave.say(&format!("/msg bob for bob only {round}")).await;
        let to_dave = format!("for dave only {round}");
        let to_bob = format!("for bob only {round}");
        dave.wait_event("private", &[("from", "bob"), ("text", &to_dave)])
            .await;
        bob.wait_event("private_sent", &[("to", "dave"), ("text", &to_dave)])
            .await;
        bob.wait_event("private", &[("from", "dave"), ("text", &to_bob)])
            .await;
        dave.wait_event("private_sent", &[("to", "bob"), ("text", &to_bob)])
            .await;
    }
    // Each arrived once (the second round came after the first), and was
    // shown nowhere else.
    assert_eq!(privates(&mut dave).len(), 2, "{:?}", dave.seen);
    assert_eq!(privates(&mut bob).len(), 2, "{:?}", bob.seen);
    assert!(
        privates(&mut alice).is_empty(),
        "the host saw: {:?}",
        alice.seen
    );
    assert_eq!(dave.shared().ctx.stats.private_received(), 2);
    assert_eq!(bob.shared().ctx.stats.private_received(), 2);
    assert_eq!(alice.shared().ctx.stats.private_received(), 0);
    for m in [&mut alice, &mut bob, &mut dave] {
        assert!(!m.has_seen("error", &[]), "{}: {:?}", m.name, m.seen);
    }
}

/// A private message `from` (with node id `from_node_id`) to `to`, signed
/// by `key` (which need not be the sender's), showing the name
/// certificate `sender` (which need not be the sender's either).
fn private(
    key: &Keypair,
    sender: Option<&NameCertificate>,
    from: (&str, &str),
    to: (&str, &str),
    text: &str,
) -> PrivateMessage {
    let mut msg = PrivateMessage {
        id: format!("{:032x}", rand::random::<u128>()),
        from: from.0.into(),
        from_node_id: from.1.into(),
        to: to.0.into(),
        to_node_id: to.1.into(),
        text: text.into(),
        sender: sender.cloned(),
        ..Default::default()
    };
    key.sign_private(&mut msg);
    msg
}

/// The next frame of `session` that `pick` accepts, skipping the others.
async fn next_such<T>(
    session: &mut HostileSession,
    pick: impl Fn(server_frame::Frame) -> Option<T>,
) -> T {
    loop {
        match next_frame(&mut session.frames).await {
            Ok(Some(frame)) => {
                if let Some(found) = pick(frame) {
                    return found;
                }
            }
            other => panic!("the session ended: {other:?}"),
        }
    }
}

async fn rejected_because(session: &mut HostileSession, why: &str) {
    let reason = next_such(session, |f| match f {
        server_frame::Frame::Rejected(r) => Some(r.reason),
        _ => None,
    })
    .await;
    assert!(reason.contains(why), "refused for {reason:?}, not {why:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_tampered_sealed_messages_are_refused_and_the_host_cannot_read_them() {
    let relay = Relay::start(2, Duration::from_secs(600)).await;
    let uri = relay.uri();
    let mut alice = join(&uri, "alice").await.expect("alice joins");
    let mut dave = join_relay_client_only(&relay, "dave")
        .await
        .expect("dave joins");
    for m in [&mut alice, &mut dave] {
        m.wait_event("activated", &[]).await;
    }
    let host = current_host(&relay).await;
    assert_eq!(host.name, "alice");

    // mallory: a client-only member speaking the protocol by hand.
    let mallory = Stranger::register_client_only(&uri, "mallory").await;
    let mut session = HostileSession::open(&host.address).await;
    let hello = mallory.hello(&session.challenge);
    session.send(client_frame::Frame::Hello(hello)).await;
    session.welcomed().await;
    alice.wait_event("joined", &[("name", "mallory")]).await;

    // What the host passes on to mallory is the sealed box: the text is
    // not in it, and only mallory's key opens it, to alice's signed words.
    let secret = "the plan is at noon";
    alice.say(&format!("/msg mallory {secret}")).await;
    let sealed = next_such(&mut session, |f| match f {
        server_frame::Frame::SealedPrivate(s) => Some(s),
        _ => None,
    })
    .await;
    assert_eq!(sealed.to_node_id, mallory.reg.node_id);
    let plain = secret.as_bytes();
    assert!(
        !sealed.sealed.windows(plain.len()).any(|w| w == plain),
        "the host could read the message"
    );
    assert!(open_private(&Keypair::generate(), &sealed).is_err());
    let opened = open_private(&mallory.key, &sealed).expect("mallory opens it");
    assert_eq!(
        (opened.from.as_str(), opened.text.as_str()),
        ("alice", secret)
    );

    // Sealed messages to dave that dave must refuse.
    let dave_record = hostile::lookup(&uri, "dave").await.expect("dave's record");
    assert!(dave_record.client_only && dave_record.address.is_empty());
    let dave_key = PublicKey::from_bytes(&dave_record.public_key).expect("dave's key");
    let alice_id = alice.shared().ctx.identity.node_id.clone();
    let me = ("mallory", mallory.reg.node_id.as_str());
    let to_dave = ("dave", dave_record.node_id.as_str());
    let seal = |msg: &PrivateMessage| seal_private(&dave_key, msg).expect("seals");
    let mine = mallory.reg.name_certificate.as_ref();
    let honest = |text: &str| private(&mallory.key, mine, me, to_dave, text);
    let alice_record = hostile::lookup(&uri, "alice")
        .await
        .expect("alice's record");
    let alices = alice_record.certificate.as_ref();
    let mut altered = seal(&honest("altered on the way"));
    altered.sealed[60] ^= 0x20;
    let forgeries: Vec<(SealedPrivate, &str)> = vec![
        (
            seal_private(&mallory.key.verifying(), &honest("sealed to the wrong key"))
                .expect("seals"),
            "does not open",
        ),
        (altered, "does not open"),
        (
            // alice's own certificate, mallory's signature.
            seal(&private(
                &mallory.key,
                alices,
                ("alice", &alice_id),
                to_dave,
                "I am alice",
            )),
            "not from \"alice\"",
        ),
        (
            // mallory's certificate, claiming to be alice.
            seal(&private(
                &mallory.key,
                mine,
                ("alice", &alice_id),
                to_dave,
                "I am alice too",
            )),
            "sender is not \"alice\"",
        ),
        (
            seal(&private(&mallory.key, None, me, to_dave, "who am I")),
            "no name certificate of its sender",
        ),
        (
            // Inside, for alice; outside, for dave.
            SealedPrivate {
                to_node_id: dave_record.node_id.clone(),
                ..seal(&private(
                    &mallory.key,
                    mine,
                    me,
                    ("alice", &alice_id),
                    "misaddressed",
                ))
            },
            "not \"alice\" (",
        ),
    ];
    let why: Vec<&str> = forgeries.iter().map(|(_, why)| *why).collect();
    for (sealed, _) in forgeries {
        session
            .send(client_frame::Frame::SealedPrivate(sealed))
            .await;
    }
    // A genuine one, sent twice: shown once.
    let genuine = seal(&honest("a genuine note"));
    for _ in 0..2 {
        session
            .send(client_frame::Frame::SealedPrivate(genuine.clone()))
            .await;
    }
    let refusals = why.len() + 1;
    dave.wait_until("every forgery and the replay refused", |seen| {
        seen.iter().filter(|e| e["type"] == "error").count() >= refusals
    })
    .await;
    dave.wait_event(
        "private",
        &[("from", "mallory"), ("text", "a genuine note")],
    )
    .await;
    assert_eq!(privates(&mut dave).len(), 1, "{:#?}", dave.seen);
    assert_eq!(dave.shared().ctx.stats.private_received(), 1);
    let errors: Vec<String> = dave
        .seen
        .iter()
        .filter(|e| e["type"] == "error")
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect();
    for why in why.iter().chain(&["delivered before"]) {
        assert!(
            errors.iter().any(|e| e.contains(why)),
            "no refusal saying {why:?}: {errors:?}"
        );
    }

    // The host refuses what it cannot pass on, and says why.
    let nobody = SealedPrivate {
        to_node_id: "no-such-node".into(),
        sealed: vec![1; 100],
    };
    session
        .send(client_frame::Frame::SealedPrivate(nobody))
        .await;
    rejected_because(&mut session, "not a member").await;
    let huge = SealedPrivate {
        to_node_id: dave_record.node_id.clone(),
        sealed: vec![1; MAX_SEALED_BYTES + 1],
    };
    session.send(client_frame::Frame::SealedPrivate(huge)).await;
    rejected_because(&mut session, "at most 8192 bytes").await;
    assert_chat_intact(&mut [alice, dave]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_only_node_opens_no_port_and_the_relay_records_no_address() {
    let relay = RelayProcess::start(&["--min-users", "2"]).await;
    let uri = relay.uri();
    let mut alice = spawn_node(&uri, "alice", &[]).await;
    let mut dave = spawn_node(&uri, "dave", &["--client-only"]).await;
    for m in [&mut alice, &mut dave] {
        m.wait_event("activated", &[]).await;
    }
    dave.say("hello from behind a router").await;
    alice
        .wait_event(
            "message",
            &[("from", "dave"), ("text", "hello from behind a router")],
        )
        .await;
    let record = hostile::lookup(&uri, "dave").await.expect("dave's record");
    assert!(record.client_only, "{record:?}");
    assert_eq!(record.address, "");
    assert!(
        !hostile::lookup(&uri, "alice")
            .await
            .expect("alice")
            .client_only
    );
    // The same check finds alice's port: dave's process holds none.
    let pid = |m: &Member| m.pid().expect("running");
    assert!(listening_sockets(pid(&alice)) >= 1, "alice listens");
    assert_eq!(listening_sockets(pid(&dave)), 0, "dave listens nowhere");
    alice.leave().await;
    dave.leave().await;
}
