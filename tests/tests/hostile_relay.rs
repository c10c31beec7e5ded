//! Hostile clients against the relay (Register, names across a relay
//! restart, AuthorizeReset), built only from the project's protocol. Every
//! attack must get a clear gRPC status and leave the chat intact: afterwards
//! a fresh message from each honest member reaches every honest member
//! exactly once.

use chat_proto::pb::chat::PrivateMessage;
use chat_proto::pb::relay::{
    AuthorizeResetRequest, HostTermCertificate, MemberRecord, RegisterRequest, RenewLeaseRequest,
};
use chat_proto::trust::Keypair;
use chat_tests::hostile::*;
use chat_tests::{eventually, join, temp_dir, wait_for_host, Member, Relay};
use std::time::Duration;
use tonic::Code;

const NO_MIGRATION: Duration = Duration::from_secs(3600);

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

// Attack 3, the tail: a host that accepts connections and never answers.
// Anyone may host (the first to register does), so a member's machine that
// hangs, or a stranger that hosts and stays silent, must not hold clients:
// opening a session has a deadline, and clients follow the relay when it
// replaces the silent host.
#[tokio::test]
async fn a_host_that_never_answers_does_not_hold_its_clients() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    // A node that the relay reaches (its health service answers) but that
    // never answers a chat session.
    let (silent_addr, mut accepted) = serve_silent_host().await;

    // The stranger registers first, so the relay makes it host, and keeps
    // its lease alive.
    let key = Keypair::generate();
    let mut rc = relay_client(&uri).await;
    let reg = rc
        .register(signed_register(&key, "mallory", &silent_addr))
        .await
        .expect("anyone may register")
        .into_inner();
    keep_watching(&mut rc, &reg).await;
    let host = wait_for_host(&uri, "the first to register hosts", |h| h.epoch > 0).await;
    assert_eq!(host.node_id, reg.node_id, "the first to register hosts");
    let renewing = tokio::spawn({
        let mut rc = rc.clone();
        let renew = RenewLeaseRequest {
            epoch: host.epoch,
            node_id: reg.node_id.clone(),
            session_token: reg.session_token.clone(),
            successor_node_id: String::new(),
            ..Default::default()
        };
        async move {
            loop {
                let _ = rc.renew_lease(renew.clone()).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    // Alice and bob join and dial the silent host: each gives up on it and
    // dials again, rather than waiting for ever.
    let mut members = vec![
        join(&uri, "alice").await.expect("alice joins"),
        join(&uri, "bob").await.expect("bob joins"),
    ];
    tokio::time::timeout(chat_tests::DEADLINE, async {
        while accepted.recv().await.is_some_and(|n| n < 4) {}
    })
    .await
    .expect("both members opened a session with the silent host again after giving up");

    // The stranger goes quiet at the relay too: a member takes over and
    // the chat works.
    renewing.abort();
    let promoted = wait_for_host(&uri, "a member replaces the silent host", |h| {
        h.epoch > host.epoch
    })
    .await;
    assert!(
        ["alice", "bob"].contains(&promoted.name.as_str()),
        "promoted {promoted:?}"
    );
    for member in members.iter_mut() {
        member.wait_event("activated", &[]).await;
    }
    assert_chat_intact(&mut members).await;
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
            // Bob may already have taken his name back, and the relay
            // forgotten the stranger's registration.
            if let Err(err) = try_keep_watching(&mut rc, &reg).await {
                assert_eq!(err.code(), Code::NotFound, "{err}");
            }
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
    let alice = members.chat[0].shared().ctx.identity.clone();
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
    let alice = members.chat[0].shared().ctx.identity.node_id.clone();
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
// Attack 9: guessing the admin secret.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn guessing_the_admin_secret_is_cut_off_after_five_tries() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut members = start_chat(&uri, &["alice", "bob"]).await;
    // Only a member of the room has its secret compared: mallory joins.
    let mallory = Stranger::register(&uri, "mallory").await;
    let rc = relay_client(&uri).await;
    let try_secret = |secret: String| {
        let mut rc = rc.clone();
        let (node_id, session_token) = (
            mallory.reg.node_id.clone(),
            mallory.reg.session_token.clone(),
        );
        async move {
            rc.authorize_reset(AuthorizeResetRequest {
                admin_secret: secret,
                room: String::new(),
                min_users: 1,
                node_id,
                session_token,
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
