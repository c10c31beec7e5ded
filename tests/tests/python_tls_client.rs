//! The Python example client (`examples/python/chat_client.py`, stock
//! grpcio) over TLS, with private messages: a real `relay-svc` serving TLS,
//! two `chat-node` processes that host in turn every 2 s and a client-only
//! one. The Python client registers with a certificate signing request for
//! an ECDSA P-256 key, reaches the relay and every host with the
//! certificate the relay issued, chats both ways through host moves, sends
//! a private message straight to a node and one sealed through the host to
//! a client-only member, and receives one sealed through the host; every
//! message and private message it shows, it verified. Needs python3 with
//! grpcio, grpcio-tools, cryptography and pynacl (`.ci/run` installs them):
//! fails, never skips, without them.

use chat_tests::member::matches_event;
use chat_tests::procs::{spawn_node, RelayProcess};
use chat_tests::python::{assert_chatted, chat_rounds, of_type, require_python, PyClient};
use chat_tests::Member;
use serde_json::Value;
use std::time::Duration;

const ROUNDS: usize = 2;
/// How long a sealed private message may take to be shown before it is
/// sent again: the host refuses one whose recipient has no session with
/// it at that moment (both are moving to the next host), and the sender
/// sends again, as a user would.
const PRIVATE_TRY: Duration = Duration::from_secs(6);
const SEALED_TRIES: usize = 4;

/// The Python client sends `to` a private message until `to` shows it
/// (one try when it goes `direct`, to a node; a few when `sealed`); the
/// Python client must say it sent it that way.
async fn python_private_to(py: &mut PyClient, to: &mut Member, via: &str) {
    let tries = if via == "direct" { 1 } else { SEALED_TRIES };
    for attempt in 0..tries {
        let text = format!("py to {} {attempt}", to.name);
        py.say(&format!("$private {} {text}", to.name)).await;
        let fields = [("from", "pyuser"), ("text", text.as_str())];
        if to
            .wait_within(PRIVATE_TRY, |e| matches_event(e, "private", &fields))
            .await
            .is_some()
        {
            py.wait_until("how it was sent", |seen| {
                of_type(seen, "private_sent").any(|e| e["text"] == text.as_str())
            })
            .await;
            let sent = of_type(&py.seen, "private_sent").find(|e| e["text"] == text.as_str());
            assert_eq!(
                sent.map(|e| &e["via"]),
                Some(&Value::from(via)),
                "{:#?}",
                py.seen
            );
            return;
        }
        eprintln!(
            "{} did not show {text:?} within {PRIVATE_TRY:?}: again",
            to.name
        );
    }
    panic!(
        "{} never showed the Python member's private message ({tries} tries): {:#?}\n{:#?}",
        to.name, to.seen, py.seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_over_tls_chats_and_exchanges_private_messages_as_the_host_moves() {
    require_python().await;
    let relay = RelayProcess::start_tls(&["--min-users", "4", "--migration-interval", "2s"]).await;
    let uri = relay.uri();
    let ca = relay.ca().to_string_lossy().into_owned();
    let mut alice = spawn_node(&uri, "alice", &["--relay-ca", &ca]).await;
    alice.wait_event("host", &[]).await;
    let mut bob = spawn_node(&uri, "bob", &["--relay-ca", &ca]).await;
    bob.wait_event("host", &[]).await;
    // Client-only, as the Python client: what is sent to it goes sealed.
    let mut carol = spawn_node(&uri, "carol", &["--relay-ca", &ca, "--client-only"]).await;
    carol.wait_event("host", &[]).await;

    let expect = (3 * ROUNDS).to_string();
    let mut py = PyClient::start(&[
        "--relay",
        &uri,
        "--relay-ca",
        &ca,
        "--name",
        "pyuser",
        "--expect",
        &expect,
        "--timeout",
        "150",
    ]);
    py.wait_until("a welcome", |seen| of_type(seen, "host").count() > 0)
        .await;
    for m in [&mut alice, &mut bob, &mut carol] {
        m.wait_event("activated", &[]).await;
    }
    chat_rounds(&mut py, &mut [&mut alice, &mut bob], ROUNDS).await;

    // Private messages, as the host goes on moving. To alice, who listens:
    // straight to its node, over TLS with the Python client's certificate
    // (alice refuses a caller without one for the sender's node).
    python_private_to(&mut py, &mut alice, "direct").await;
    // To carol, client-only: sealed to its key through the host.
    python_private_to(&mut py, &mut carol, "sealed").await;
    // From alice to the Python client, client-only: sealed through the host.
    let mut received = None;
    for attempt in 0..SEALED_TRIES {
        let text = format!("alice to py {attempt}");
        alice.say(&format!("$private pyuser {text}")).await;
        let shown = |seen: &[Value]| of_type(seen, "private").any(|e| e["text"] == text.as_str());
        if py.wait_within(PRIVATE_TRY, shown).await {
            received = Some(text);
            break;
        }
        eprintln!("the Python client did not show {text:?} within {PRIVATE_TRY:?}: again");
    }
    let received = received.unwrap_or_else(|| {
        panic!(
            "the Python client never showed alice's private message: {:#?}\n{:#?}",
            py.seen, alice.seen
        )
    });

    py.finish().await;
    assert_chatted(&py, "pyuser", &mut [&mut alice, &mut bob], ROUNDS).await;
    let seen = &py.seen;
    let registered = of_type(seen, "registered").next().expect("registered");
    assert_eq!(registered["tls"], true, "over TLS: {registered}");
    // Every private message it showed is alice's, verified, and one of
    // those alice sent (a refused try may still arrive later).
    let privates: Vec<&Value> = of_type(seen, "private").collect();
    assert!(
        privates.iter().any(|e| e["text"] == received.as_str()),
        "{seen:#?}"
    );
    for e in &privates {
        assert_eq!(e["from"], "alice", "{e}");
        assert_eq!(e["verified"], true, "{e}");
        let text = e["text"].as_str().unwrap_or("");
        assert!(text.starts_with("alice to py "), "{e}");
    }
    assert!(
        of_type(seen, "private_failed").next().is_none(),
        "{seen:#?}"
    );
    for m in [&mut alice, &mut bob, &mut carol] {
        assert!(!m.has_seen("tampering", &[]), "{}: {:#?}", m.name, m.seen);
    }

    for m in [alice, bob, carol] {
        m.leave().await;
    }
    drop(relay);
}
