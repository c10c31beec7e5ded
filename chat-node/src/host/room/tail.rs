//! The room's memory tail: which entries leave memory once they are on
//! disk, and where a reader finds the ones it asks for.

use super::{entry_seq, Read, Room, MEMORY_TAIL};
use chat_proto::chain::Digest;
use chat_proto::pb::chat::{log_entry, RoomReset};

impl Room {
    /// Notes that this node's disk holds the log up to `seq`, whose log
    /// hash there is `hash`; entries beyond the newest [`MEMORY_TAIL`] that
    /// are on disk leave memory. A note that does not match this log (it
    /// started over or was reset since) is ignored.
    pub fn mark_saved(&mut self, seq: u64, hash: Digest) {
        if seq > self.saved && seq <= self.head_seq && self.hash_at(seq) == Some(hash) {
            self.saved = seq;
            self.trim();
        }
    }

    /// Lets the entries beyond the tail that are on disk leave memory,
    /// with their dedup records.
    pub(super) fn trim(&mut self) {
        while self.log.len() > MEMORY_TAIL {
            let Some(front) = self.log.front() else {
                return;
            };
            let seq = entry_seq(front);
            if seq > self.saved {
                return;
            }
            if let Some(log_entry::Kind::Message(m)) = &front.kind {
                let key = (m.from.clone(), m.id.clone());
                if self.dedup.get(&key) == Some(&seq) {
                    self.dedup.remove(&key);
                }
            }
            self.log.pop_front();
            if let Some(hash) = self.hashes.pop_front() {
                self.base = Some((seq, hash));
                self.note_milestone(seq, hash);
            }
        }
    }

    /// The first sequence number held in memory (the head's next when
    /// none is).
    pub fn held_from(&self) -> u64 {
        self.log.front().map_or(self.head_seq + 1, entry_seq)
    }

    /// Entries held in memory (tests and health).
    pub fn held(&self) -> usize {
        self.log.len()
    }

    /// The last reset, if there was one.
    pub fn last_reset(&self) -> Option<&RoomReset> {
        self.last_reset.as_ref()
    }

    /// Where up to `max` entries after `after` and up to `through` are
    /// (from the last reset, or after the entries retention dropped, if
    /// `after` predates it): in memory, or on disk only.
    pub fn read(&self, after: u64, through: u64, max: usize) -> Read {
        let expired = self.expired.map_or(0, |(seq, _)| seq);
        let after = after.max(self.reset_seq.saturating_sub(1)).max(expired);
        if after >= through {
            return Read::Held(Vec::new());
        }
        let first = self.held_from();
        if after + 1 < first {
            return Read::OnDisk {
                after,
                through: through.min(first - 1),
            };
        }
        Read::Held(self.entries_after(after, through, max))
    }
}
