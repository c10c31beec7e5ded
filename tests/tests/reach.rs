//! Members the relay cannot reach (behind a router, or advertising a wrong
//! address) chat as clients but are never made host or successor, and the
//! room never stalls on them; when nobody can host, the room says so.

use chat_proto::pb::relay::{CurrentHostRequest, HostRecord};
use chat_tests::hostile::{assert_chat_intact, lookup, NOWHERE};
use chat_tests::{join, join_advertising, Member, Relay};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::Code;

/// Every host record the relay published while the watcher ran, and the
/// successors the hosting nodes named (node ids).
#[derive(Default)]
struct Seen {
    hosts: BTreeSet<(u64, String)>,
    successors: BTreeSet<String>,
}

/// Samples the relay's host record and each node's named successor until
/// dropped.
fn watch_roles(
    relay: &Relay,
    members: &[&Member],
) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let nodes: Vec<_> = members.iter().map(|m| m.shared()).collect();
    let client = relay.client();
    let task = tokio::spawn({
        let seen = seen.clone();
        async move {
            loop {
                let host = client
                    .clone()
                    .current_host(CurrentHostRequest::default())
                    .await;
                {
                    let mut seen = seen.lock().expect("lock");
                    if let Ok(host) = host.map(|h| h.into_inner()) {
                        seen.hosts.insert((host.epoch, host.node_id));
                    }
                    for node in &nodes {
                        seen.successors
                            .extend(node.room("").and_then(|r| r.successor()));
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    (seen, task)
}

async fn wait_epoch(relay: &Relay, what: &str, pred: impl Fn(&HostRecord) -> bool) -> HostRecord {
    relay.wait_for_host(what, pred).await
}

#[tokio::test]
async fn a_member_the_relay_cannot_reach_chats_but_never_hosts() {
    let relay = Relay::start(2, Duration::from_millis(600)).await;
    let uri = relay.uri();
    // It registers first: without the check it would be the first host.
    let hidden = join_advertising(&uri, "hidden", NOWHERE)
        .await
        .expect("a member behind a router joins");
    let hidden_id = hidden.shared().ctx.identity.node_id.clone();
    let mut members = vec![hidden];
    for name in ["alice", "bob", "carol"] {
        members.push(join(&uri, name).await.expect("joins"));
    }
    for member in members.iter_mut() {
        member.wait_event("activated", &[]).await;
    }
    let refs: Vec<&Member> = members.iter().collect();
    let (seen, sampler) = watch_roles(&relay, &refs);
    let record = lookup(&uri, "hidden").await.expect("hidden is a member");
    assert!(!record.reachable, "{record:?}");

    // The host moves on its schedule, never to hidden, and hidden's
    // messages reach everyone once.
    let start = relay
        .wait_for_host("a first host", |h| h.epoch > 0)
        .await
        .epoch;
    wait_epoch(&relay, "five planned migrations", |h| h.epoch >= start + 5).await;
    assert_chat_intact(&mut members).await;

    // Kill the host (never hidden): a reachable member takes over.
    let host = relay.wait_for_host("a host", |h| h.epoch > 0).await;
    let host_at = members
        .iter()
        .position(|m| m.shared().ctx.identity.node_id == host.node_id)
        .expect("the host is one of the members");
    members.remove(host_at).crash().await;
    wait_epoch(&relay, "a new host after the kill", |h| {
        h.epoch > host.epoch && h.node_id != host.node_id
    })
    .await;
    assert_chat_intact(&mut members).await;

    // Nobody can dial hidden: a private message reaches it sealed,
    // through the host; its own to others go direct.
    let hidden_at = members
        .iter()
        .position(|m| m.name == "hidden")
        .expect("hidden is still there");
    let other_at = (hidden_at + 1) % members.len();
    let other = members[other_at].name.clone();
    members[other_at].say("/msg hidden psst").await;
    members[hidden_at]
        .wait_event("private", &[("from", &other), ("text", "psst")])
        .await;
    members[hidden_at].say(&format!("/msg {other} hi")).await;
    members[other_at]
        .wait_event("private", &[("from", "hidden"), ("text", "hi")])
        .await;

    sampler.abort();
    let seen = seen.lock().expect("lock");
    assert!(seen.hosts.len() >= 6, "{:?}", seen.hosts);
    assert!(
        seen.hosts.iter().all(|(_, id)| *id != hidden_id),
        "hidden was made host: {:?}",
        seen.hosts
    );
    assert!(
        !seen.successors.contains(&hidden_id),
        "hidden was named successor"
    );
}

#[tokio::test]
async fn when_nobody_can_host_the_room_says_so_until_someone_can() {
    let relay = Relay::start(1, Duration::from_secs(3600)).await;
    let uri = relay.uri();
    let mut hidden = join_advertising(&uri, "hidden", NOWHERE)
        .await
        .expect("joins");
    let said = hidden.wait_event("no_host", &[]).await;
    let reason = said["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("unreachable from the relay: 1,"), "{said}");
    let status = relay
        .client()
        .current_host(CurrentHostRequest::default())
        .await
        .expect_err("no host");
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    assert!(status.message().contains("no member can host"), "{status}");
    hidden.say("sent while nobody hosts").await;

    // Someone the relay reaches joins: it hosts, and the held message goes
    // through.
    let mut alice = join(&uri, "alice").await.expect("joins");
    let host = relay.wait_for_host("alice hosts", |h| h.epoch > 0).await;
    assert_eq!(host.name, "alice");
    for member in [&mut hidden, &mut alice] {
        member
            .wait_event("message", &[("text", "sent while nobody hosts")])
            .await;
    }
    hidden.drain();
    let reasons = hidden
        .seen
        .iter()
        .filter(|e| e["type"] == "no_host")
        .count();
    assert_eq!(reasons, 1, "said once: {:?}", hidden.seen);
}
