//! Planned migration under load, fencing of stale or forged reports, and
//! the dormant ChatService's redirect.

use chat_proto::pb::chat::chat_service_client::ChatServiceClient;
use chat_proto::pb::chat::{client_frame, ClientFrame, Hello};
use chat_proto::pb::relay::relay_service_client::RelayServiceClient;
use chat_proto::pb::relay::{CurrentHostRequest, RegisterRequest, ReportMigrationRequest};
use chat_tests::{join, Member, Relay};
use std::collections::HashSet;
use std::time::Duration;
use tonic::Code;

const SENDERS: usize = 3;
const PER_SENDER: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_gets_every_message_once_in_one_order_across_20_migrations() {
    let relay = Relay::start(3, Duration::from_millis(200)).await;
    let mut members: Vec<Member> = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        members.push(join(&relay.uri(), name).await.unwrap());
    }
    for m in members.iter_mut() {
        m.wait_event("activated", &[]).await;
    }
    // Three members send concurrently, paced so the run spans many moves.
    let mut relay_client = RelayServiceClient::connect(relay.uri()).await.unwrap();
    let start_epoch = relay_client
        .current_host(CurrentHostRequest::default())
        .await
        .unwrap()
        .into_inner()
        .epoch;
    let mut hosts = HashSet::new();
    for i in 0..PER_SENDER {
        for m in members.iter_mut().take(SENDERS) {
            let line = format!("{} #{i}", m.name);
            m.say(&line).await;
        }
        tokio::time::sleep(Duration::from_millis(80)).await;
        let host = relay_client
            .current_host(CurrentHostRequest::default())
            .await
            .unwrap()
            .into_inner();
        hosts.insert(host.name);
    }
    let total = SENDERS * PER_SENDER;
    let mut reference: Option<Vec<(u64, String, String)>> = None;
    for m in members.iter_mut() {
        let got = m.wait_messages(total).await;
        let texts: HashSet<&str> = got.iter().map(|(_, _, t)| t.as_str()).collect();
        assert_eq!(got.len(), total, "{}: no duplicates", m.name);
        assert_eq!(texts.len(), total, "{}: every message once", m.name);
        let seqs: Vec<u64> = got.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(
            seqs,
            (1..=total as u64).collect::<Vec<_>>(),
            "{}: no gaps, in order",
            m.name
        );
        for sender in members_names().iter().take(SENDERS) {
            let own: Vec<&str> = got
                .iter()
                .filter(|(_, f, _)| f == sender)
                .map(|(_, _, t)| t.as_str())
                .collect();
            let expected: Vec<String> = (0..PER_SENDER).map(|i| format!("{sender} #{i}")).collect();
            assert_eq!(
                own, expected,
                "{}: {sender}'s messages keep their send order",
                m.name
            );
        }
        match &reference {
            None => reference = Some(got),
            Some(r) => assert_eq!(
                &got, r,
                "{} sees the same order as the first member",
                m.name
            ),
        }
    }
    let end_epoch = relay_client
        .current_host(CurrentHostRequest::default())
        .await
        .unwrap()
        .into_inner()
        .epoch;
    assert!(
        end_epoch - start_epoch >= 20,
        "only {} migrations",
        end_epoch - start_epoch
    );
    assert!(hosts.len() > 1, "the host visited {hosts:?}");
}

fn members_names() -> [&'static str; 4] {
    ["alice", "bob", "carol", "dave"]
}

#[tokio::test]
async fn stale_or_forged_migration_reports_are_refused_and_the_chat_goes_on() {
    let relay = Relay::start(2, Duration::from_secs(3600)).await;
    let mut alice = join(&relay.uri(), "alice").await.unwrap();
    let mut bob = join(&relay.uri(), "bob").await.unwrap();
    bob.wait_event("activated", &[]).await;
    let mut rc = RelayServiceClient::connect(relay.uri()).await.unwrap();
    let host = rc
        .current_host(CurrentHostRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(host.name, "alice");
    let alice_id = alice.shared().ctx.identity.clone();
    let bob_id = bob.shared().ctx.identity.clone();

    // Stale epoch, with the real host's credentials.
    let stale = ReportMigrationRequest {
        from_epoch: host.epoch - 1,
        to_node_id: bob_id.node_id.clone(),
        node_id: alice_id.node_id.clone(),
        session_token: alice_id.session_token.clone(),
        ..Default::default()
    };
    let err = rc.report_migration(stale).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    // Forged: bob claims to be host.
    let forged = ReportMigrationRequest {
        from_epoch: host.epoch,
        to_node_id: bob_id.node_id.clone(),
        node_id: bob_id.node_id.clone(),
        session_token: bob_id.session_token.clone(),
        ..Default::default()
    };
    assert_eq!(
        rc.report_migration(forged).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // Forged: someone uses alice's node id without her token.
    let stolen = ReportMigrationRequest {
        from_epoch: host.epoch,
        to_node_id: bob_id.node_id.clone(),
        node_id: alice_id.node_id.clone(),
        session_token: format!("{}.guess", alice_id.node_id),
        ..Default::default()
    };
    assert_eq!(
        rc.report_migration(stolen).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // Nothing changed, and the chat goes on.
    assert_eq!(
        rc.current_host(CurrentHostRequest::default())
            .await
            .unwrap()
            .into_inner(),
        host
    );
    alice.say("still fine").await;
    bob.wait_event("message", &[("text", "still fine")]).await;
    // Registering a taken name with another key is refused.
    let mut grab = RegisterRequest {
        name: "alice".into(),
        address: "127.0.0.1:1".into(),
        ..Default::default()
    };
    chat_proto::trust::Keypair::generate().sign_register(&mut grab);
    assert_eq!(
        rc.register(grab.clone()).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    // Unsigned, it proves nothing.
    let unsigned = RegisterRequest {
        signature: Vec::new(),
        ..grab
    };
    assert_eq!(
        rc.register(unsigned).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn a_dormant_chat_service_redirects_to_the_host() {
    let relay = Relay::start(2, Duration::from_secs(3600)).await;
    let alice = join(&relay.uri(), "alice").await.unwrap();
    let bob = join(&relay.uri(), "bob").await.unwrap();
    let host_addr = alice.shared().ctx.identity.address.clone();
    let bob_addr = bob.shared().ctx.identity.address.clone();
    chat_tests::eventually("bob knows the host", || {
        let lobby = bob.lobby();
        async move { lobby.view().host_watch().borrow().is_some() }
    })
    .await;
    let mut client = ChatServiceClient::connect(format!("http://{bob_addr}"))
        .await
        .unwrap();
    let hello = ClientFrame {
        frame: Some(client_frame::Frame::Hello(Hello {
            name: "x".into(),
            ..Default::default()
        })),
    };
    let err = client
        .session(tokio_stream::iter(vec![hello]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let pointed = err
        .metadata()
        .get(chat_proto::HOST_ADDRESS_METADATA)
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(pointed, host_addr);
}

#[tokio::test]
async fn the_relay_pointer_follows_each_move_and_clients_are_told() {
    let relay = Relay::start(2, Duration::from_millis(300)).await;
    let mut alice = join(&relay.uri(), "alice").await.unwrap();
    let mut bob = join(&relay.uri(), "bob").await.unwrap();
    let mut rc = RelayServiceClient::connect(relay.uri()).await.unwrap();
    bob.wait_event("host", &[("name", "bob"), ("epoch", "2")])
        .await;
    alice
        .wait_event("host", &[("name", "bob"), ("epoch", "2")])
        .await;
    alice
        .wait_event("host", &[("name", "alice"), ("epoch", "3")])
        .await;
    let now = rc
        .current_host(CurrentHostRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(now.epoch >= 3);
}

#[tokio::test]
async fn a_node_refuses_replication_and_takeover_without_a_relay_signed_term() {
    use chat_proto::pb::chat::{ReplicateRequest, TakeOverRequest};
    let relay = Relay::start(2, Duration::from_millis(300)).await;
    let alice = join(&relay.uri(), "alice").await.unwrap();
    let mut bob = join(&relay.uri(), "bob").await.unwrap();
    bob.wait_event("host", &[("epoch", "3")]).await;
    for target in [&alice, &bob] {
        let addr = target.shared().ctx.identity.address.clone();
        let mut client = ChatServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let err = client
            .replicate(ReplicateRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        let err = client
            .take_over(TakeOverRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    }
    // The chat is unharmed.
    bob.say("fine").await;
    bob.wait_event("message", &[("text", "fine")]).await;
}
