//! The real binaries: `relay-svc` and `chat-node --mode json` processes.

use chat_tests::procs::{run_binary, spawn_node, RelayProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_chat_through_migrations() {
    let relay = RelayProcess::start(&["--min-users", "3", "--migration-interval", "400ms"]).await;
    let uri = relay.uri();
    let mut alice = spawn_node(&uri, "alice", &[]).await;
    alice.wait_event("waiting", &[("min_users", "3")]).await;
    alice.say("held before activation").await;
    alice.wait_event("ack", &[]).await;
    let mut bob = spawn_node(&uri, "bob", &[]).await;
    bob.wait_event("host", &[("name", "alice")]).await;
    let mut carol = spawn_node(&uri, "carol", &[]).await;
    for m in [&mut alice, &mut bob, &mut carol] {
        m.wait_event("activated", &[]).await;
        m.wait_event(
            "message",
            &[
                ("seq", "1"),
                ("from", "alice"),
                ("text", "held before activation"),
            ],
        )
        .await;
    }
    // The host moves among the processes; clients follow.
    carol.wait_event("host", &[("name", "bob")]).await;
    carol.wait_event("host", &[("name", "carol")]).await;
    for i in 0..10 {
        bob.say(&format!("bob {i}")).await;
    }
    carol.say("$private alice only for you").await;
    alice
        .wait_event("private", &[("from", "carol"), ("text", "only for you")])
        .await;
    for m in [&mut alice, &mut bob, &mut carol] {
        let got = m.wait_messages(11).await;
        let texts: Vec<&str> = got.iter().skip(1).map(|(_, _, t)| t.as_str()).collect();
        let expected: Vec<String> = (0..10).map(|i| format!("bob {i}")).collect();
        assert_eq!(
            texts, expected,
            "{} sees every message once, in order",
            m.name
        );
        assert!(!m.has_seen("error", &[]), "{}: {:?}", m.name, m.seen);
    }
    carol.say("$private nobody hi").await;
    carol
        .wait_event("error", &[("message", "~no member named")])
        .await;
    carol.leave().await;
    alice.wait_event("left", &[("name", "carol")]).await;
    bob.leave().await;
    alice.leave().await;
}

#[tokio::test]
async fn invalid_or_taken_names_are_refused_by_the_binary() {
    let relay = RelayProcess::start(&[]).await;
    let uri = relay.uri();
    let mut alice = spawn_node(&uri, "alice", &[]).await;
    alice.wait_event("host", &[]).await;
    let (ok, out) = run_binary("chat-node", &[&uri, "--name", "alice", "--mode", "json"]).await;
    assert!(!ok && out.contains("taken"), "{out}");
    let (ok, out) = run_binary("chat-node", &[&uri, "--name", "a:b", "--mode", "json"]).await;
    assert!(!ok && out.contains("':'"), "{out}");
    let (ok, out) = run_binary("chat-node", &[&uri, "--mode", "json"]).await;
    assert!(!ok && out.contains("--name is required"), "{out}");
    alice.leave().await;
}

#[tokio::test]
async fn help_documents_every_flag() {
    let (ok, out) = run_binary("relay-svc", &["--help"]).await;
    assert!(ok, "{out}");
    for flag in [
        "--listen",
        "--min-users",
        "--migration-interval",
        "RELAY_LISTEN",
        "0.0.0.0:5000",
        "30s",
        "--tls-cert",
        "--tls-key",
        "--tls-name",
        "--plaintext",
        "--max-rooms",
        "--max-rooms-per-member",
        "--new-identities-per-minute",
        "RELAY_NEW_IDENTITIES_PER_MINUTE",
    ] {
        assert!(out.contains(flag), "relay-svc --help lacks {flag}: {out}");
    }
    let (ok, out) = run_binary("chat-node", &["--help"]).await;
    assert!(ok, "{out}");
    for flag in [
        "[RELAY_URI]",
        "--name",
        "--listen",
        "--advertise",
        "--mode",
        "http://127.0.0.1:5000",
        "tui",
        "json",
        "--relay-ca",
        "CHAT_RELAY_CA",
        "--allow-plaintext",
        "CHAT_ALLOW_PLAINTEXT",
    ] {
        assert!(out.contains(flag), "chat-node --help lacks {flag}: {out}");
    }
}

#[tokio::test]
async fn a_node_stops_on_sigterm_even_with_its_relay_gone_and_its_input_open() {
    let mut relay = RelayProcess::start(&["--min-users", "1"]).await;
    let mut alice = spawn_node(&relay.uri(), "alice", &[]).await;
    alice.wait_event("host", &[("name", "alice")]).await;
    relay.kill().await;
    // Its goodbye cannot reach the relay, and nothing more comes on its
    // input: it must stop anyway, within its goodbye limit and a margin.
    let stopped = alice.terminate(std::time::Duration::from_secs(20)).await;
    assert!(stopped, "chat-node still runs 20 s after SIGTERM");
}
