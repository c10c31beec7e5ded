//! The chat in phases, as the TLS and client-only tests run it: members
//! chat through planned moves, then the host is killed with messages in
//! flight, and every survivor must hold every acknowledged message once,
//! in one order.

use crate::{join_relay, Member, Relay};
use chat_proto::pb::relay::{CurrentHostRequest, HostRecord};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// Joins `names` to the TLS relay and waits until the chat is active.
pub async fn start_tls_chat(relay: &Relay, names: &[&str]) -> Vec<Member> {
    let mut members = Vec::new();
    for name in names {
        let member = join_relay(relay, name).await.expect("joins over TLS");
        members.push(member);
    }
    for member in members.iter_mut() {
        member.wait_event("activated", &[]).await;
    }
    members
}

/// The relay's host record (over TLS when it serves TLS).
pub async fn current_host(relay: &Relay) -> HostRecord {
    relay
        .client()
        .current_host(CurrentHostRequest::default())
        .await
        .expect("CurrentHost over TLS")
        .into_inner()
}

/// Sequence numbers of the acks `member` received.
pub fn acked_seqs(member: &mut Member) -> Vec<u64> {
    member.drain();
    member
        .seen
        .iter()
        .filter(|e| e["type"] == "ack")
        .filter_map(|e| e["seq"].as_u64())
        .collect()
}

/// Rounds of messages from everyone until the host moved `moves` times
/// (and at least five rounds), each acknowledged; returns the rounds.
pub async fn chat_through_moves(relay: &Relay, members: &mut [Member], moves: u64) -> usize {
    let first = current_host(relay).await.epoch;
    let mut rounds = 0;
    loop {
        for member in members.iter_mut() {
            let line = format!("{} says {rounds}", member.name);
            member.say(&line).await;
        }
        rounds += 1;
        if current_host(relay).await.epoch >= first + moves && rounds >= 5 {
            break;
        }
        assert!(rounds < 200, "{moves} planned migrations within 200 rounds");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for member in members.iter_mut() {
        member
            .wait_until("every message of the planned part acknowledged", |seen| {
                seen.iter().filter(|e| e["type"] == "ack").count() >= rounds
            })
            .await;
    }
    rounds
}

/// A survivor's log once it shows every survivor's `during` and `after`
/// messages: each message once, gapless, with every acknowledged message
/// (its own and `killed`'s, by sequence number) where it was acknowledged,
/// and `rounds` messages at least from each of `everyone`.
pub async fn survivor_log(
    member: &mut Member,
    killed: (&str, &[u64]),
    survivors: &[String],
    rounds: usize,
) -> Vec<(u64, String, String)> {
    let (killed_name, killed_acks) = killed;
    member
        .wait_until("the survivors' messages of every phase", |seen| {
            survivors.iter().all(|n| {
                [
                    format!("{n} during the kill"),
                    format!("{n} after the kill"),
                ]
                .iter()
                .all(|t| {
                    seen.iter()
                        .any(|e| e["type"] == "message" && e["text"] == t.as_str())
                })
            })
        })
        .await;
    let own_acks = acked_seqs(member);
    let name = member.name.clone();
    let got = member.messages();
    let texts: HashSet<&str> = got.iter().map(|(_, _, t)| t.as_str()).collect();
    assert_eq!(texts.len(), got.len(), "{name}: no message twice");
    let seqs: Vec<u64> = got.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=got.len() as u64).collect::<Vec<_>>(),
        "{name}: no gaps"
    );
    let by_seq: BTreeMap<u64, &str> = got.iter().map(|(s, f, _)| (*s, f.as_str())).collect();
    for (sender, acks) in [(name.as_str(), &own_acks[..]), (killed_name, killed_acks)] {
        for seq in acks {
            let found = by_seq.get(seq);
            assert_eq!(
                found,
                Some(&sender),
                "{name}: {sender}'s acknowledged {seq}"
            );
        }
    }
    for n in survivors.iter().map(String::as_str).chain([killed_name]) {
        let said = got.iter().filter(|(_, f, _)| f == n).count();
        assert!(said >= rounds, "{name}: {n} said {said} < {rounds}");
    }
    got
}

/// What [`survive_a_host_kill`] did.
pub struct HostKill {
    /// The host that was killed.
    pub killed: HostRecord,
    /// The member the relay promoted.
    pub promoted: HostRecord,
}

/// Kills the host (one of `members`, removed from it) while the others send
/// messages, waits for the relay to promote a survivor, and checks that
/// every survivor holds every acknowledged message (`rounds` at least from
/// each member) exactly once, in one order, with nothing missing.
pub async fn survive_a_host_kill(
    relay: &Relay,
    members: &mut Vec<Member>,
    rounds: usize,
) -> HostKill {
    let host = current_host(relay).await;
    let index = members
        .iter()
        .position(|m| m.name == host.name)
        .expect("the host is a member");
    let mut killed = members.remove(index);
    for member in members.iter_mut() {
        member
            .say(&format!("{} during the kill", member.name))
            .await;
    }
    killed.kill().await;
    let promoted = relay
        .wait_for_host("the relay promotes a survivor", |h| {
            h.epoch > host.epoch && h.name != killed.name
        })
        .await;
    for member in members.iter_mut() {
        member.say(&format!("{} after the kill", member.name)).await;
    }
    let killed_acks = acked_seqs(&mut killed);
    let survivors: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    let mut reference: Option<Vec<(u64, String, String)>> = None;
    for member in members.iter_mut() {
        let killed = (killed.name.as_str(), &killed_acks[..]);
        let got = survivor_log(member, killed, &survivors, rounds).await;
        match &reference {
            None => reference = Some(got),
            Some(r) => assert_eq!(&got, r, "{}: the same order as the others", member.name),
        }
    }
    HostKill {
        killed: host,
        promoted,
    }
}
