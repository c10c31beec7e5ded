//! One surviving member's log of a room, as the checks read it.

use super::tracing_line;
use crate::member::Member;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Seq to (from, text).
pub(super) type Log = BTreeMap<u64, (String, String)>;

/// What one survivor showed.
pub(super) struct MemberLog {
    pub(super) name: String,
    pub(super) log: Log,
    /// Sequence numbers shown more than once.
    pub(super) dup_seqs: usize,
    /// Sequence numbers missing below the head.
    pub(super) gaps: usize,
    /// Reports that a host served something that does not check out.
    pub(super) tampering: usize,
}

impl MemberLog {
    pub(super) fn of(member: &mut Member, room: &str) -> Self {
        member.drain();
        let mut tampering = 0;
        for e in member
            .seen
            .iter()
            .filter(|e| (e["type"] == "error" || e["type"] == "tampering") && e["room"] == room)
        {
            tracing_line(&format!("{}: {} event {e}", member.name, e["type"]));
            tampering += usize::from(e["type"] == "tampering");
        }
        let mut log = Log::new();
        let mut dup_seqs = 0;
        let in_room = |e: &&Value| e["type"] == "message" && e["room"] == room;
        for e in member.seen.iter().filter(in_room) {
            let seq = e["seq"].as_u64().unwrap_or(0);
            if log
                .insert(seq, (str_of(e, "from"), str_of(e, "text")))
                .is_some()
            {
                dup_seqs += 1;
            }
        }
        let head = log.keys().next_back().copied().unwrap_or(0);
        let gaps = (1..=head).filter(|s| !log.contains_key(s)).count();
        MemberLog {
            name: member.name.clone(),
            log,
            dup_seqs,
            gaps,
            tampering,
        }
    }
}

pub(super) fn duplicate_texts(log: &Log) -> usize {
    let mut seen = HashMap::new();
    for (_, text) in log.values() {
        *seen.entry(text).or_insert(0usize) += 1;
    }
    seen.values().map(|n| n - 1).sum()
}

fn str_of(e: &Value, k: &str) -> String {
    e[k].as_str().unwrap_or("").to_string()
}
