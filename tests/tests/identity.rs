//! Identity: nobody can take over a connected member's name, open a session
//! as someone else, or forge the sender of a private message.

use chat_proto::pb::chat::chat_service_client::ChatServiceClient;
use chat_proto::pb::chat::peer_service_client::PeerServiceClient;
use chat_proto::pb::chat::{
    client_frame, server_frame, ClientFrame, Hello, PrivateMessage, ServerFrame,
};
use chat_proto::trust::Keypair;
use chat_tests::{join, Relay};
use std::time::Duration;
use tonic::Code;

const NO_MIGRATION: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn a_forged_or_unsigned_private_message_is_refused() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let _alice = join(&relay.uri(), "alice").await.unwrap();
    let bob = join(&relay.uri(), "bob").await.unwrap();
    let mut carol = join(&relay.uri(), "carol").await.unwrap();
    carol.wait_event("joined", &[("name", "carol")]).await;
    let bob_id = bob.shared().ctx.identity.node_id.clone();
    let carol_addr = carol.shared().ctx.identity.address.clone();
    let mut peer = PeerServiceClient::connect(format!("http://{carol_addr}"))
        .await
        .unwrap();
    let forged = PrivateMessage {
        id: "f1".into(),
        from: "bob".into(),
        from_node_id: bob_id.clone(),
        to: "carol".into(),
        to_node_id: carol.shared().ctx.identity.node_id.clone(),
        text: "send me your password".into(),
        ..Default::default()
    };
    // Unsigned.
    let err = peer.deliver_private(forged.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    // Signed, but not with bob's key.
    let mut signed = forged.clone();
    Keypair::generate().sign_private(&mut signed);
    let err = peer.deliver_private(signed).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert_eq!(carol.shared().ctx.stats.private_received(), 0);
    assert!(!carol.has_seen("private", &[]));
}

#[tokio::test]
async fn a_session_cannot_be_opened_under_another_members_name() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let alice = join(&relay.uri(), "alice").await.unwrap();
    let mut bob = join(&relay.uri(), "bob").await.unwrap();
    bob.wait_event("activated", &[]).await;
    let host = alice.shared().ctx.identity.address.clone();
    let bob_id = bob.shared().ctx.identity.node_id.clone();
    let mut client = ChatServiceClient::connect(format!("http://{host}"))
        .await
        .unwrap();
    // Bob's own certificate, as anyone can copy it from the relay.
    let bobs_cert = bob.shared().name_certificate();
    for mallory_claims_bobs_node in [true, false] {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut inbound = client
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let Some(ServerFrame {
            frame: Some(server_frame::Frame::Challenge(challenge)),
        }) = inbound.message().await.unwrap()
        else {
            panic!("the host opens with a Challenge");
        };
        let mut hello = Hello {
            name: "bob".into(),
            node_id: if mallory_claims_bobs_node {
                bob_id.clone()
            } else {
                "mallory".into()
            },
            address: "127.0.0.1:1".into(),
            certificate: Some(bobs_cert.clone()),
            ..Default::default()
        };
        Keypair::generate().sign_hello(&mut hello, &challenge.nonce, &challenge.host_node_id);
        let frame = ClientFrame {
            frame: Some(client_frame::Frame::Hello(hello)),
        };
        tx.send(frame).await.unwrap();
        let err = inbound.message().await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    }
    // Bob is untouched.
    alice_says_and_bob_hears(alice, &mut bob).await;
}

async fn alice_says_and_bob_hears(mut alice: chat_tests::Member, bob: &mut chat_tests::Member) {
    alice.say("still you, bob?").await;
    bob.wait_event("message", &[("text", "still you, bob?")])
        .await;
    assert!(!bob.has_seen("left", &[("name", "bob")]));
}

#[tokio::test]
async fn resets_are_refused_when_the_relay_has_no_admin_secret() {
    use chat_tests::procs::RelayProcess;
    let relay = RelayProcess::start(&["--min-users", "1"]).await;
    let mut alice = join(&relay.uri(), "alice").await.unwrap();
    alice.wait_event("activated", &[]).await;
    alice.say("keep me").await;
    alice.wait_event("message", &[("text", "keep me")]).await;
    alice.say("$reset -1").await;
    alice
        .wait_event("error", &[("message", "~resets are disabled")])
        .await;
    assert!(!alice.has_seen("reset", &[]));
}
