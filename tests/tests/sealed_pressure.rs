//! Sealed private messages under pressure: many at once to a client-only
//! member. Every one is either shown to its recipient or refused to its
//! sender; none vanishes.

use chat_proto::pb::chat::{client_frame, server_frame, ClientFrame, SealedPrivate, ServerFrame};
use chat_proto::sealed::MAX_SEALED_BYTES;
use chat_tests::hostile::{next_frame, HostileSession, Stranger};
use chat_tests::{join, join_relay_client_only, wait_for_host, Member, Relay, DEADLINE};
use relay_svc::RelayConfig;
use std::collections::HashSet;
use std::time::Duration;

const NO_MIGRATION: Duration = Duration::from_secs(3600);

/// A relay for `min_users` members whose hosts limit nobody's rate, so
/// that only the sealed messages' own limits are met.
async fn relay_without_rate_limit(min_users: u32) -> Relay {
    let mut config = RelayConfig::for_tests(min_users, NO_MIGRATION);
    config.messages_per_second = 0;
    Relay::start_with("127.0.0.1:0".parse().expect("addr"), config).await
}

/// The texts of the private messages `member` has shown from `from`.
fn shown_from(member: &Member, from: &str) -> Vec<String> {
    member
        .seen
        .iter()
        .filter(|e| e["type"] == "private" && e["from"] == from)
        .filter_map(|e| e["text"].as_str().map(str::to_string))
        .collect()
}

/// The errors `member` has shown.
fn errors(member: &Member) -> Vec<String> {
    member
        .seen
        .iter()
        .filter(|e| e["type"] == "error")
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_privates_under_pressure_are_shown_or_refused_to_their_senders() {
    const EACH: usize = 100;
    let relay = relay_without_rate_limit(4).await;
    let uri = relay.uri();
    let mut senders = Vec::new();
    for name in ["alice", "bob", "carol"] {
        senders.push(join(&uri, name).await.expect("a sender joins"));
    }
    let mut dave = join_relay_client_only(&relay, "dave")
        .await
        .expect("dave joins");
    for m in senders.iter_mut().chain([&mut dave]) {
        m.wait_event("activated", &[]).await;
    }
    // Everyone at once, as fast as they can type.
    for i in 0..EACH {
        for s in senders.iter_mut() {
            let line = format!("/msg dave p {} {i}", s.name);
            s.say(&line).await;
        }
    }
    // Each one is shown to dave, or its sender is told it was not sent
    // or not passed on.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        dave.drain();
        let mut settled = true;
        for s in senders.iter_mut() {
            s.drain();
            let done = shown_from(&dave, &s.name).len() + errors(s).len();
            assert!(done <= EACH, "{} has more outcomes than messages", s.name);
            settled &= done == EACH;
        }
        if settled {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "some sealed private messages vanished: {:?}",
            senders
                .iter()
                .map(|s| (
                    s.name.as_str(),
                    shown_from(&dave, &s.name).len(),
                    errors(s).len()
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut shown = 0;
    for s in &senders {
        let texts = shown_from(&dave, &s.name);
        let distinct: HashSet<&String> = texts.iter().collect();
        assert_eq!(distinct.len(), texts.len(), "shown twice: {texts:?}");
        shown += texts.len();
        for e in errors(s) {
            assert!(e.contains("private message"), "{}: {e}", s.name);
        }
    }
    assert!(shown > 0, "nothing reached dave");
    assert!(
        errors(&dave).is_empty(),
        "dave refused: {:?}",
        errors(&dave)
    );
    let stats = &dave.shared().ctx.stats;
    assert_eq!(stats.private_received(), shown as u64);
    assert_eq!(stats.private_unshown(), 0);
    eprintln!("{shown} of {} shown, the rest refused", 3 * EACH);
}

/// A sealed box of the largest size for `to_node_id` (its content does
/// not matter to the host, which cannot open it).
fn sealed_box(to_node_id: &str, i: usize) -> ClientFrame {
    let sealed = SealedPrivate {
        to_node_id: to_node_id.to_string(),
        sealed: vec![(i % 251) as u8; MAX_SEALED_BYTES],
    };
    ClientFrame {
        frame: Some(client_frame::Frame::SealedPrivate(sealed)),
    }
}

/// What one frame of the sender's session says: a refusal of a sealed
/// private message to `to` (checking why), or something else.
fn refused_to(frame: Result<Option<server_frame::Frame>, tonic::Status>, to: &str) -> bool {
    match frame {
        Ok(Some(server_frame::Frame::Rejected(r))) => {
            let prefix = format!("private message to {to} not passed on: ");
            assert!(r.reason.starts_with(&prefix), "{r:?}");
            assert!(r.id.is_empty() && r.retry_after_ms == 0, "{r:?}");
            true
        }
        Ok(Some(_)) => false,
        other => panic!("the sender's session ended: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_that_does_not_read_gets_what_was_queued_and_the_senders_hear_of_the_rest() {
    const SENT: usize = 2000;
    let relay = relay_without_rate_limit(1).await;
    let uri = relay.uri();
    let _alice = join(&uri, "alice").await.expect("alice joins");
    let host = wait_for_host(&uri, "alice hosts", |h| h.name == "alice").await;
    // mallory, client-only, opens a session and then reads nothing.
    let mallory = Stranger::register_client_only(&uri, "mallory").await;
    let mut to_mallory = HostileSession::open(&host.address).await;
    to_mallory
        .send(client_frame::Frame::Hello(
            mallory.hello(&to_mallory.challenge),
        ))
        .await;
    to_mallory.welcomed().await;
    let trent = Stranger::register_client_only(&uri, "trent").await;
    let mut from_trent = HostileSession::open(&host.address).await;
    from_trent
        .send(client_frame::Frame::Hello(
            trent.hello(&from_trent.challenge),
        ))
        .await;
    from_trent.welcomed().await;

    // trent sends 16 MiB of sealed boxes to mallory, far more than the
    // connection buffers hold while mallory does not read.
    let tx = from_trent.tx.clone();
    let to = mallory.reg.node_id.clone();
    let mut sending = tokio::spawn(async move {
        for i in 0..SENT {
            tx.send(sealed_box(&to, i)).await.expect("trent's session");
        }
    });
    let mut refused = 0;
    loop {
        tokio::select! {
            sent = &mut sending => break sent.expect("trent sent everything"),
            frame = next_frame(&mut from_trent.frames) => {
                refused += usize::from(refused_to(frame, "mallory"));
            }
        }
    }
    // Now mallory reads. Every box reaches her or is refused to trent.
    let mut received = 0;
    let deadline = tokio::time::sleep(DEADLINE);
    tokio::pin!(deadline);
    while received + refused < SENT {
        tokio::select! {
            frame = to_mallory.frames.message() => match frame {
                Ok(Some(ServerFrame { frame: Some(server_frame::Frame::SealedPrivate(s)) })) => {
                    assert_eq!(s.sealed.len(), MAX_SEALED_BYTES);
                    received += 1;
                }
                Ok(Some(_)) => {}
                other => panic!("mallory's session ended after {received}: {other:?}"),
            },
            frame = from_trent.frames.message() => {
                let frame = frame.map(|f| f.and_then(|f| f.frame));
                refused += usize::from(refused_to(frame, "mallory"));
            }
            _ = &mut deadline => panic!(
                "{} sealed messages vanished: {received} received, {refused} refused",
                SENT - received - refused
            ),
        }
    }
    assert_eq!(received + refused, SENT);
    assert!(received > 0, "mallory got nothing");
    assert!(refused > 0, "the host queued everything: no pressure");
    eprintln!("{received} received, {refused} refused");
}
