//! Retention: the room drops the oldest entries of its log past a limit by
//! age or count (the relay's `--history-max-age`, `--history-max-entries`)
//! and goes on from a checkpoint, the sequence number and log hash of the
//! last entry dropped. Readers are served from the entry after it; a copy
//! told of the checkpoint drops the same entries, or starts there when it
//! is behind it.

use super::{entry_seq, Room};
use chat_proto::chain::{Chains, Digest};
use chat_proto::pb::chat::log_entry;

/// Every this many entries that leave memory, the room remembers the log
/// hash after one: a point retention can cut at without the disk.
pub(super) const MILESTONE_EVERY: u64 = 64;
/// Milestones remembered at most (the newest: 512 KiB, covering a million
/// entries beyond memory). A cut older than all of them waits.
pub(super) const MILESTONES: usize = 16_384;

/// The limits a host applies to its room's log (none by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Entries whose sender signed them longer ago than this (ms) go.
    pub max_age_ms: Option<u64>,
    /// All but the newest this many entries go.
    pub max_entries: Option<u64>,
}

impl Room {
    /// The checkpoint: the last entry retention dropped and the log hash
    /// after it (`None` if it never dropped any).
    pub fn expired(&self) -> Option<(u64, Digest)> {
        self.expired
    }

    /// The newest entry `policy` lets go at time `now_ms`: through the
    /// head less `max_entries`, and through the longest run of held
    /// messages (from the oldest) signed before `now_ms - max_age_ms`.
    /// (Entries that already left memory go with the first held entry
    /// after them that is old enough.)
    fn retention_target(&self, policy: Retention, now_ms: i64) -> u64 {
        let mut through = policy
            .max_entries
            .map_or(0, |max| self.head_seq.saturating_sub(max));
        if let Some(age) = policy.max_age_ms {
            let limit = now_ms.saturating_sub(i64::try_from(age).unwrap_or(i64::MAX));
            for entry in &self.log {
                match &entry.kind {
                    Some(log_entry::Kind::Message(m)) if m.sent_at_unix_ms < limit => {
                        through = through.max(m.seq);
                    }
                    // A reset goes with the messages after it.
                    Some(log_entry::Kind::Reset(_)) => {}
                    _ => break,
                }
            }
        }
        through
    }

    /// Applies `policy` at time `now_ms`: drops what it lets go, as far as
    /// a point whose log hash this room knows (an entry held, the last one
    /// that left memory, or a milestone). Returns the new checkpoint if
    /// anything was dropped.
    pub fn retain(&mut self, policy: Retention, now_ms: i64) -> Option<(u64, Digest)> {
        let target = self.retention_target(policy, now_ms);
        let floor = self
            .expired
            .map_or(0, |(seq, _)| seq)
            .max(self.reset_seq.saturating_sub(1));
        if target <= floor {
            return None;
        }
        let point = match self.hash_at(target) {
            Some(hash) => Some((target, hash)),
            None => self
                .milestones
                .iter()
                .rev()
                .find(|(seq, _)| *seq <= target)
                .copied(),
        };
        let (seq, hash) = point.filter(|(seq, _)| *seq > floor)?;
        self.expire_through(seq, hash).then_some((seq, hash))
    }

    /// Drops the entries through `seq`, whose log hash is `hash`: the log
    /// goes on from there. A copy whose head is before `seq` starts over
    /// at the checkpoint (what it held is all dropped). Returns whether
    /// anything changed.
    pub fn expire_through(&mut self, seq: u64, hash: Digest) -> bool {
        if seq == 0 || self.expired.is_some_and(|(at, _)| at >= seq) {
            return false;
        }
        if seq > self.head_seq {
            self.log.clear();
            self.hashes.clear();
            self.dedup.clear();
            self.milestones.clear();
            // The chains of what this copy held say nothing of the
            // entries it never had: they start again from the first seen.
            self.chains = Chains::default();
            self.head_seq = seq;
            self.base = Some((seq, hash));
        } else {
            while let Some(front) = self.log.front() {
                let at = entry_seq(front);
                if at > seq {
                    break;
                }
                if let Some(log_entry::Kind::Message(m)) = &front.kind {
                    let key = (m.from.clone(), m.id.clone());
                    if self.dedup.get(&key) == Some(&at) {
                        self.dedup.remove(&key);
                    }
                }
                self.log.pop_front();
                self.hashes.pop_front();
            }
            if self.base.is_none_or(|(at, _)| at < seq) {
                self.base = Some((seq, hash));
            }
            self.milestones.retain(|(at, _)| *at > seq);
        }
        self.expired = Some((seq, hash));
        true
    }

    /// Remembers `(seq, hash)` of an entry leaving memory if it is a
    /// milestone.
    pub(super) fn note_milestone(&mut self, seq: u64, hash: Digest) {
        if !seq.is_multiple_of(MILESTONE_EVERY) {
            return;
        }
        if self.milestones.len() >= MILESTONES {
            self.milestones.pop_front();
        }
        self.milestones.push_back((seq, hash));
    }
}
