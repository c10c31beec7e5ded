//! The whole chat over TLS: a relay with its own certificate authority and
//! nodes that talk to it and to each other with relay-issued certificates.
//! Node-to-node calls refuse a caller whose certificate comes from another
//! authority, has expired, or names another node; plaintext against TLS is
//! a quick error, not a hang; a restarted relay keeps its authority.

use chat_node::dial::TransportOptions;
use chat_proto::health_check::{check, TlsCheck};
use chat_proto::pb::chat::chat_service_client::ChatServiceClient;
use chat_proto::pb::chat::peer_service_client::PeerServiceClient;
use chat_proto::pb::chat::{PrivateMessage, ReplicateBody};
use chat_proto::pb::relay::relay_service_client::RelayServiceClient;
use chat_proto::pb::relay::CurrentHostRequest;
use chat_proto::tls::{self, Authority, Credentials, TlsKey};
use chat_proto::trust::{self, Keypair};
use chat_tests::hostile::{assert_chat_intact, replicate, signed_register, NOWHERE};
use chat_tests::phases::{chat_through_moves, current_host, start_tls_chat, survive_a_host_kill};
use chat_tests::{join, join_relay, join_with_transport, temp_dir, Member, Relay, DEADLINE};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// How long a refused connection may take to say so.
const QUICK: Duration = Duration::from_secs(5);

/// Each node serves TLS with the certificate the relay issued for its node
/// id (what grpcurl `-cacert` with `-servername` sees).
async fn assert_nodes_serve_tls(relay: &Relay, members: &[Member]) {
    for member in members {
        let shared = member.shared();
        let tls = TlsCheck {
            ca_pem: relay.ca_pem().expect("a TLS relay").to_string(),
            server_name: Some(tls::node_domain(&shared.ctx.identity.node_id)),
        };
        let status = check(&shared.ctx.identity.address, "", QUICK, Some(&tls)).await;
        let name = status.as_ref().map(|s| s.as_str_name());
        assert_eq!(name.ok(), Some("SERVING"), "{}: {status:?}", member.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_runs_over_tls_through_migrations_and_a_host_kill() {
    let dir = temp_dir("tls-chat");
    let relay = Relay::start_tls(&dir, 3, Duration::from_millis(300)).await;
    let mut members = start_tls_chat(&relay, &["alice", "bob", "carol"]).await;
    assert_nodes_serve_tls(&relay, &members).await;
    let rounds = chat_through_moves(&relay, &mut members, 3).await;

    let kill = survive_a_host_kill(&relay, &mut members, rounds).await;
    eprintln!(
        "{rounds} rounds until epoch {}; {} killed; {} promoted at epoch {}",
        kill.killed.epoch, kill.killed.name, kill.promoted.name, kill.promoted.epoch
    );
    assert_chat_intact(&mut members).await;
}

/// A TLS channel to the node at `address`, which must prove to be
/// `node_id`; presents `identity` if given.
fn node_channel(
    relay: &Relay,
    address: &str,
    node_id: &str,
    identity: Option<&Credentials>,
) -> Channel {
    let ca = relay.ca_pem().expect("a TLS relay");
    let config = tls::client_config(ca, Some(&tls::node_domain(node_id)), identity);
    Endpoint::from_shared(format!("https://{address}"))
        .expect("node address")
        .connect_timeout(QUICK)
        .timeout(QUICK)
        .tls_config(config)
        .expect("TLS configuration")
        .connect_lazy()
}

/// Credentials for a fresh identity key and TLS key with a certificate
/// from `authority`, naming the identity key's own node, expiring at
/// `not_after_ms`.
fn credentials_from(authority: &Authority, not_after_ms: i64) -> (Keypair, Credentials) {
    let key = Keypair::generate();
    let tls_key = TlsKey::generate().expect("TLS key");
    let csr = tls::certificate_request(&tls_key, "mallory").expect("CSR");
    let request = tls::check_certificate_request(&csr).expect("a P-256 request");
    let node_id = trust::node_id_of(&key.public_key());
    let der = authority
        .issue_node(&request, "mallory", &node_id, not_after_ms)
        .expect("issue");
    let credentials = Credentials::for_node(&tls_key, &der).expect("credentials");
    (key, credentials)
}

/// Credentials from the relay's own authority (read from its data
/// directory, as someone who stole a backup could), valid two hours ago
/// for one hour only.
fn expired_credentials(dir: &std::path::Path) -> (Keypair, Credentials) {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("the relay's CA files");
    let ca_key = rcgen::KeyPair::from_pem(&read(tls::AUTHORITY_KEY_FILE)).expect("CA key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&read(tls::AUTHORITY_CERT_FILE), ca_key)
        .expect("CA certificate");
    let key = Keypair::generate();
    let node_id = trust::node_id_of(&key.public_key());
    let mut params =
        rcgen::CertificateParams::new(vec![tls::node_domain(&node_id)]).expect("params");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(2);
    params.not_after = now - time::Duration::hours(1);
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let tls_key = TlsKey::generate().expect("TLS key");
    let public = rcgen::KeyPair::from_pem(tls_key.pem()).expect("P-256 key");
    let cert = params.signed_by(&public, &issuer).expect("sign");
    let credentials = Credentials::for_node(&tls_key, cert.der()).expect("credentials");
    (key, credentials)
}

/// A private message to `to` claiming to come from `from_node_id`.
fn private_from(key: &Keypair, from_node_id: &str, to: &Member) -> PrivateMessage {
    let shared = to.shared();
    let mut msg = PrivateMessage {
        id: format!("{:032x}", rand::random::<u128>()),
        from: "mallory".into(),
        from_node_id: from_node_id.into(),
        to: to.name.clone(),
        to_node_id: shared.ctx.identity.node_id.clone(),
        text: "hello".into(),
        ..Default::default()
    };
    key.sign_private(&mut msg);
    msg
}

/// The refusal must be UNAUTHENTICATED and say `why`.
fn assert_refused(result: Result<impl std::fmt::Debug, Status>, why: &str, what: &str) {
    match result {
        Err(status) => {
            assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
            assert!(
                status.message().contains(why),
                "{what}: the message should say {why:?}: {status:?}"
            );
        }
        Ok(answer) => panic!("{what} was accepted: {answer:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_expired_or_someone_elses_certificate_is_refused_with_a_clear_status() {
    let dir = temp_dir("tls-refusals");
    let relay = Relay::start_tls(&dir, 2, Duration::from_secs(3600)).await;
    let members = start_tls_chat(&relay, &["alice", "bob"]).await;
    let host = current_host(&relay).await;
    let alice_id = members[0].shared().ctx.identity.node_id.clone();
    let bob = &members[1];
    let (bob_addr, bob_id) = {
        let shared = bob.shared();
        (
            shared.ctx.identity.address.clone(),
            shared.ctx.identity.node_id.clone(),
        )
    };
    let term = host.certificate.clone().expect("a signed term");
    // A Replicate in the host's name: its signature does not matter, the
    // caller's certificate is checked first.
    let forged_replicate =
        || replicate(&Keypair::generate(), &term, &ReplicateBody::default(), None);

    // No certificate at all: health and reflection would serve, Replicate
    // does not.
    let anonymous = node_channel(&relay, &bob_addr, &bob_id, None);
    let result = ChatServiceClient::new(anonymous)
        .replicate(forged_replicate())
        .await;
    assert_refused(
        result,
        "none was presented",
        "Replicate without a certificate",
    );

    // A certificate from another authority.
    let stranger = Authority::ephemeral().expect("another authority");
    let hour = 3_600_000;
    let (key, foreign) = credentials_from(&stranger, trust::now_unix_ms() + hour);
    let channel = node_channel(&relay, &bob_addr, &bob_id, Some(&foreign));
    let result = ChatServiceClient::new(channel.clone())
        .replicate(forged_replicate())
        .await;
    assert_refused(
        result,
        "not issued by this chat's relay",
        "a foreign Replicate",
    );
    let own_id = trust::node_id_of(&key.public_key());
    let result = PeerServiceClient::new(channel)
        .deliver_private(private_from(&key, &own_id, bob))
        .await;
    assert_refused(
        result,
        "not issued by this chat's relay",
        "a foreign DeliverPrivate",
    );

    // An expired certificate from the right authority.
    let (key, expired) = expired_credentials(&dir);
    let own_id = trust::node_id_of(&key.public_key());
    let channel = node_channel(&relay, &bob_addr, &bob_id, Some(&expired));
    let result = PeerServiceClient::new(channel.clone())
        .deliver_private(private_from(&key, &own_id, bob))
        .await;
    assert_refused(result, "expired", "an expired DeliverPrivate");
    let result = ChatServiceClient::new(channel)
        .replicate(forged_replicate())
        .await;
    assert_refused(result, "expired", "an expired Replicate");

    // A valid certificate the relay issued to another node (mallory
    // registers for real), used to speak for alice.
    let key = Keypair::generate();
    let tls_key = TlsKey::generate().expect("TLS key");
    let mut register = signed_register(&key, "mallory", NOWHERE);
    register.certificate_request = tls::certificate_request(&tls_key, "mallory").expect("CSR");
    key.sign_register(&mut register);
    let issued = relay
        .client()
        .register(register)
        .await
        .expect("mallory registers")
        .into_inner();
    assert!(
        !issued.tls_certificate.is_empty(),
        "the relay issued a certificate"
    );
    let mallory_id = issued.node_id.clone();
    let mallory =
        Credentials::for_node(&tls_key, &issued.tls_certificate).expect("mallory's credentials");
    let channel = node_channel(&relay, &bob_addr, &bob_id, Some(&mallory));
    let other_node = format!("is for node {mallory_id}, not for node {alice_id}");
    let result = ChatServiceClient::new(channel.clone())
        .replicate(forged_replicate())
        .await;
    assert_refused(result, &other_node, "Replicate with mallory's certificate");
    let result = PeerServiceClient::new(channel)
        .deliver_private(private_from(&key, &alice_id, bob))
        .await;
    assert_refused(
        result,
        &other_node,
        "DeliverPrivate with mallory's certificate",
    );

    // And a server must be the node we meant: bob's address is not alice.
    let wrong = node_channel(&relay, &bob_addr, &alice_id, Some(&mallory));
    let result = PeerServiceClient::new(wrong)
        .deliver_private(private_from(&key, &mallory_id, bob))
        .await;
    let status = result.expect_err("bob cannot pass for alice");
    assert_ne!(status.code(), Code::Ok);
    assert_eq!(
        bob.shared().ctx.stats.private_received(),
        0,
        "nothing got through"
    );
}

/// Runs `call` and checks that it fails within [`QUICK`]; returns why.
async fn fails_quickly<T, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> String {
    let started = Instant::now();
    let result = tokio::time::timeout(QUICK, call)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {QUICK:?}: a hang"));
    let Err(error) = result else {
        panic!("{what}: succeeded")
    };
    let elapsed = started.elapsed();
    assert!(elapsed < QUICK, "{what}: took {elapsed:?}");
    eprintln!("{what}: {error} (after {elapsed:?})");
    error.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_against_tls_is_a_quick_clear_error() {
    let dir = temp_dir("tls-plaintext");
    let relay = Relay::start_tls(&dir, 2, Duration::from_secs(3600)).await;
    let members = start_tls_chat(&relay, &["alice", "bob"]).await;
    let bob_addr = members[1].shared().ctx.identity.address.clone();
    let plain = |address: &str| {
        Endpoint::from_shared(format!("http://{address}"))
            .expect("address")
            .connect_timeout(QUICK)
            .connect_lazy()
    };
    let relay_addr = relay.addr.to_string();
    let _ = fails_quickly(
        "a plaintext client of the TLS relay",
        RelayServiceClient::new(plain(&relay_addr)).current_host(CurrentHostRequest::default()),
    )
    .await;
    let _ = fails_quickly(
        "a plaintext client of a TLS node",
        PeerServiceClient::new(plain(&bob_addr)).deliver_private(PrivateMessage::default()),
    )
    .await;
    // A node told http:// gets a clear error from the TLS relay.
    let error = fails_quickly(
        "a plaintext node joining a TLS relay",
        join(&format!("http://{relay_addr}"), "eve"),
    )
    .await;
    assert!(
        error.contains("https://"),
        "the error points at TLS: {error}"
    );

    // And the other way round: TLS against a plaintext relay.
    let plain_relay = Relay::start(2, Duration::from_secs(3600)).await;
    let ca = relay.ca_pem().expect("CA").to_string();
    let tls_uri = format!("https://{}", plain_relay.addr);
    let transport = TransportOptions {
        relay_ca_pem: Some(ca),
        allow_plaintext: false,
    };
    let error = fails_quickly(
        "a TLS node joining a plaintext relay",
        join_with_transport(&tls_uri, "eve", transport),
    )
    .await;
    assert!(
        error.contains("http://"),
        "the error points at plaintext: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_relay_keeps_its_authority_and_its_nodes() {
    let dir = temp_dir("tls-restart");
    let relay = Relay::start_tls(&dir, 2, Duration::from_secs(3600)).await;
    let addr = relay.addr;
    let ca_before = std::fs::read(dir.join(tls::AUTHORITY_CERT_FILE)).expect("ca.pem");
    let mut members = start_tls_chat(&relay, &["alice", "bob"]).await;
    members[0].say("before the restart").await;
    members[1]
        .wait_event("message", &[("text", "before the restart")])
        .await;

    relay.stop().await;
    let relay = Relay::start_tls_at(addr, &dir, 2, Duration::from_secs(3600)).await;
    let ca_after = std::fs::read(dir.join(tls::AUTHORITY_CERT_FILE)).expect("ca.pem");
    assert_eq!(ca_before, ca_after, "the same authority after the restart");
    // The nodes register again over TLS and the host re-asserts its term.
    let host = relay
        .wait_for_host("the host re-asserts its term", |h| h.epoch == 1)
        .await;
    assert_eq!(host.name, "alice");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let found = relay
            .client()
            .lookup_member(chat_proto::pb::relay::LookupMemberRequest { name: "bob".into() })
            .await;
        if found.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob registers again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A newcomer trusts the same ca.pem, and everyone chats on.
    let mut carol = join_relay(&relay, "carol").await.expect("carol joins");
    carol.wait_event("activated", &[]).await;
    members.push(carol);
    assert_chat_intact(&mut members).await;
}

/// When the name certificate `member` holds now was issued (Unix ms).
fn name_issued_at(member: &Member) -> i64 {
    use prost::Message;
    let cert = member.shared().name_certificate();
    chat_proto::pb::relay::NameGrant::decode(cert.grant.as_slice())
        .map(|g| g.issued_at_unix_ms)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_renew_their_certificates_and_the_chat_goes_on() {
    const TTL: Duration = Duration::from_secs(3);
    let dir = temp_dir("tls-renew");
    let mut config = relay_svc::RelayConfig::for_tls_tests(2, Duration::from_millis(700), &dir);
    config.certificate_ttl = TTL;
    let relay = Relay::start_tls_with("127.0.0.1:0".parse().expect("addr"), config).await;
    let mut members = start_tls_chat(&relay, &["alice", "bob", "carol"]).await;
    let start = trust::now_unix_ms();

    // Three lifetimes pass: every certificate the nodes started with has
    // expired, so the chat goes on only if each node renewed its name
    // certificate and the TLS certificate that expires with it (the host
    // moves every 700 ms, node to node over TLS, and the relay checks
    // each node's address over TLS).
    let lifetime = i64::try_from(TTL.as_millis()).expect("ms");
    chat_tests::eventually("every node renewed twice", || {
        let renewed = members
            .iter()
            .all(|m| name_issued_at(m) >= start + lifetime * 4 / 3);
        async move { renewed }
    })
    .await;
    // By now (4 s after the start) the first certificates have expired.
    assert_nodes_serve_tls(&relay, &members).await;
    assert_chat_intact(&mut members).await;
    let moved = relay
        .wait_for_host("the host still moves", |h| h.epoch >= 6)
        .await;
    assert!(moved.no_host_reason.is_empty(), "{moved:?}");
}
