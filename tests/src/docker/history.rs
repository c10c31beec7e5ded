//! Checks of what the nodes showed across faults: the host each reached,
//! and that nothing acknowledged was lost or shown twice.

use super::{Cluster, View};
use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

/// Whether each of `nodes` reached a host other than `not` of an epoch
/// above `epoch`, and printed an ack after that.
pub fn chatting_under_new_host(view: &View, nodes: &[&str], epoch: u64, not: &str) -> bool {
    nodes.iter().all(|n| {
        new_host_at(view, n, epoch, not)
            .is_some_and(|at| view.acks(n).iter().any(|(acked, ..)| *acked > at))
    })
}

/// When `node` first reached a host other than `not` of an epoch above `epoch`.
pub fn new_host_at(view: &View, node: &str, epoch: u64, not: &str) -> Option<SystemTime> {
    view.hosts(node)
        .into_iter()
        .find(|(_, e, name)| *e > epoch && name != not)
        .map(|(at, ..)| at)
}

/// When `node` printed its first ack after `since`.
pub fn first_ack_after(view: &View, node: &str, since: SystemTime) -> Option<SystemTime> {
    view.acks(node)
        .into_iter()
        .map(|(at, ..)| at)
        .find(|at| *at > since)
}

/// Waits until each of `shown_by` shows every message acknowledged in
/// `acked`; returns that view.
pub fn wait_for_acked(cluster: &Cluster, acked: &View, shown_by: &[&str]) -> View {
    let top = acked
        .nodes
        .keys()
        .flat_map(|n| acked.acks(n))
        .map(|(_, _, seq)| seq)
        .max()
        .unwrap_or(0);
    cluster.wait_for("every acknowledged message shown everywhere", |view| {
        shown_by.iter().all(|n| view.max_seq_of(n) >= top)
    })
}

/// What [`check_history`] found.
#[derive(Debug)]
pub struct Checked {
    /// Messages in the history.
    pub messages: u64,
    /// Acks found in it.
    pub acks: usize,
}

/// Nothing acknowledged lost, nothing twice, one history: every message a
/// node saw acknowledged is in the history of every node of `shown_by`,
/// under that node's name; each of them shows the same history, numbered
/// 1, 2, 3, ... without a gap; no text appears twice; each bot's messages
/// `#1..#k` are all there; and none of them printed an error. `acked`
/// holds the acks to check (every node's, a dead one's too), `last` a
/// later view in which `shown_by` show them all.
pub fn check_history(acked: &View, last: &View, shown_by: &[&str]) -> Checked {
    // One history: numbered 1, 2, 3, ... on every node, the same everywhere.
    let history = last.assert_one_history(shown_by);
    // No text twice; each bot's messages are its own, #1..#k, all there.
    let mut texts = BTreeSet::new();
    let mut numbers: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (seq, (from, text)) in &history {
        assert!(texts.insert(text), "message {seq}: {text:?} shown twice");
        let k = text
            .strip_prefix(&format!("bot {from} message #"))
            .and_then(|k| k.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("message {seq}: {text:?} is not a message of bot {from}"));
        numbers.entry(from).or_default().push(k);
    }
    for (bot, mut ks) in numbers {
        ks.sort_unstable();
        let top = ks.len() as u64;
        assert!(
            ks.iter().copied().eq(1..=top),
            "bot {bot}: messages missing between #1 and #{}: shown {ks:?}",
            ks.last().unwrap_or(&0)
        );
    }
    // Every ack any node printed is in the history, under its name.
    let mut acks = 0;
    for node in acked.nodes.keys() {
        let mut ids = BTreeSet::new();
        let mut seqs = BTreeSet::new();
        for (_, id, seq) in acked.acks(node) {
            assert!(ids.insert(id.clone()), "{node}: message {id} acked twice");
            assert!(seqs.insert(seq), "{node}: two acks for message {seq}");
            match history.get(&seq) {
                Some((from, _)) => assert_eq!(
                    from, node,
                    "{node} saw message {seq} acknowledged, but it is {from}'s"
                ),
                None => panic!(
                    "LOST: {node} saw message {seq} (id {id}) acknowledged, \
                     but {shown_by:?} do not show it (history ends at {})",
                    history.len()
                ),
            }
            acks += 1;
        }
    }
    for node in shown_by {
        let errors = last.errors(node);
        assert!(errors.is_empty(), "{node} printed errors: {errors:?}");
    }
    Checked {
        messages: history.len() as u64,
        acks,
    }
}
