//! The room: the sequenced log, the dedup table, membership, activation and
//! threshold. Pure and synchronous; the host and every replica hold one.
//!
//! Memory is bounded: the room holds the newest entries of its log (at
//! least [`MEMORY_TAIL`] of them, more only while they are not yet on this
//! node's disk) with their log hashes, and what it needs to go on
//! sequencing and checking (the head, each sender's chain position, the
//! last reset). Older entries are on disk only: [`Room::read`] says when a
//! reader must fetch them from the store. A room whose node keeps no store
//! is never told anything is saved, so it keeps its whole log.

use chat_proto::chain::{self, Chains, Digest, Position, Signed, Step};
use chat_proto::pb::chat::{log_entry, ChatMessage, LogEntry, Member, RoomMeta, RoomReset};
use chat_proto::pb::relay::ResetCertificate;
use chat_proto::rules;
use std::collections::{BTreeMap, HashMap, VecDeque};

pub use crate::error::{RoomError, MAX_ID_CHARS};

/// Entries a room keeps in memory once they are on disk: the newest
/// 4096 (a few MiB at most, with 4 KiB messages). Readers behind them (a
/// late joiner, a client resuming far behind, a successor far behind) are
/// served from the store. The dedup table covers the same entries: a
/// retried send whose first copy left memory is refused by its sender's
/// chain (its position is taken), never sequenced twice.
pub const MEMORY_TAIL: usize = 4096;

/// Where the entries a reader asked for are.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// In memory: these (empty when there is nothing to read).
    Held(Vec<LogEntry>),
    /// On disk only: those after `after` through `through` (the caller
    /// reads them from the store, a page at a time).
    OnDisk {
        /// Read after this sequence number...
        after: u64,
        /// ...up to this one.
        through: u64,
    },
}

/// Result of appending a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Sequence number of the message.
    pub seq: u64,
    /// The id had been seen: nothing was added.
    pub duplicate: bool,
}

/// Result of a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    /// The name was not a member before.
    pub new_member: bool,
    /// This join activated the chat.
    pub activated_now: bool,
}

/// A chat room.
#[derive(Debug, Clone)]
pub struct Room {
    /// The room's name (what members' signatures cover).
    name: String,
    room_id: String,
    /// The newest entries since the last reset (the reset itself first
    /// if there was one and it is still held).
    log: VecDeque<LogEntry>,
    /// The log hash after each entry of `log`.
    hashes: VecDeque<Digest>,
    /// Once older entries left memory: the sequence number of the last
    /// one that did, and the log hash after it.
    base: Option<(u64, Digest)>,
    /// The last entry retention dropped and the log hash after it.
    expired: Option<(u64, Digest)>,
    /// Some of the entries that left memory, with the log hash after
    /// each (see [`retention::MILESTONE_EVERY`]).
    milestones: VecDeque<(u64, Digest)>,
    /// Entries up to here are on this node's disk, so they may leave
    /// memory (see [`Room::mark_saved`]).
    saved: u64,
    /// The last reset, kept when its entry leaves memory.
    last_reset: Option<RoomReset>,
    /// Where each sender's chain stands in this log (and before its last
    /// reset, as far as this copy saw).
    chains: Chains,
    head_seq: u64,
    reset_seq: u64,
    min_users: u32,
    activated: bool,
    members: BTreeMap<String, Member>,
    /// Bumped whenever `members` changes.
    members_version: u64,
    /// (sender, id) of the messages held in `log`, to their sequence.
    dedup: HashMap<(String, String), u64>,
}

/// Sequence number of a log entry.
pub fn entry_seq(entry: &LogEntry) -> u64 {
    match &entry.kind {
        Some(log_entry::Kind::Message(m)) => m.seq,
        Some(log_entry::Kind::Reset(r)) => r.seq,
        None => 0,
    }
}

/// Host epoch that sequenced a log entry.
pub fn entry_epoch(entry: &LogEntry) -> u64 {
    match &entry.kind {
        Some(log_entry::Kind::Message(m)) => m.epoch,
        Some(log_entry::Kind::Reset(r)) => r.epoch,
        None => 0,
    }
}

impl Room {
    /// An empty log of room `name` (incarnation `room_id`) that activates
    /// at `min_users` members.
    pub fn new(name: &str, room_id: String, min_users: u32) -> Self {
        Self {
            name: name.to_string(),
            room_id,
            log: VecDeque::new(),
            hashes: VecDeque::new(),
            base: None,
            expired: None,
            milestones: VecDeque::new(),
            saved: 0,
            last_reset: None,
            chains: Chains::default(),
            head_seq: 0,
            reset_seq: 0,
            min_users: min_users.max(1),
            activated: false,
            members: BTreeMap::new(),
            members_version: 0,
            dedup: HashMap::new(),
        }
    }

    /// Identity of the room (replicas of another room are discarded).
    pub fn room_id(&self) -> &str {
        &self.room_id
    }
    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The log hash at the head ([`chain::GENESIS`] for an empty log).
    pub fn head_hash(&self) -> Digest {
        self.hashes
            .back()
            .copied()
            .or(self.base.map(|(_, hash)| hash))
            .unwrap_or(chain::GENESIS)
    }
    /// The log hash after the entry at `seq`, if this log holds it
    /// ([`chain::GENESIS`] for 0).
    pub fn hash_at(&self, seq: u64) -> Option<Digest> {
        if seq == 0 {
            return Some(chain::GENESIS);
        }
        match self.base {
            Some((at, hash)) if at == seq => Some(hash),
            _ => self.hashes.get(self.index_of(seq)?).copied(),
        }
    }
    /// How a message from `from` stands against its sender's chain here.
    pub fn judge(&self, from: &str, link: chain::Link<'_>) -> Step {
        self.chains.judge(from, link)
    }
    /// Highest sequence number given out.
    pub fn head_seq(&self) -> u64 {
        self.head_seq
    }
    /// Sequence number of the last reset, 0 if none.
    pub fn reset_seq(&self) -> u64 {
        self.reset_seq
    }
    /// Whether the chat is active (messages are shown).
    pub fn activated(&self) -> bool {
        self.activated
    }
    /// Members needed to activate.
    pub fn min_users(&self) -> u32 {
        self.min_users
    }
    /// Members by name.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }
    /// Changes whenever the member list does.
    pub fn members_version(&self) -> u64 {
        self.members_version
    }
    /// One member.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.get(name)
    }

    /// Adds (or refreshes the address of) a member; may activate the chat.
    pub fn join(&mut self, member: Member) -> Result<Joined, RoomError> {
        rules::validate_name(&member.name)?;
        if let Some(existing) = self.members.get(&member.name) {
            if existing.node_id != member.node_id {
                return Err(RoomError::NameTaken(member.name));
            }
        }
        if self.members.get(&member.name) != Some(&member) {
            self.members_version += 1;
        }
        let new_member = self.members.insert(member.name.clone(), member).is_none();
        let activated_now = self.activate_if_ready();
        Ok(Joined {
            new_member,
            activated_now,
        })
    }

    fn activate_if_ready(&mut self) -> bool {
        let ready = !self.activated && self.members.len() as u64 >= u64::from(self.min_users);
        if ready {
            self.activated = true;
        }
        ready
    }

    /// Removes a member; true if it was one.
    pub fn leave(&mut self, name: &str) -> bool {
        let left = self.members.remove(name).is_some();
        if left {
            self.members_version += 1;
        }
        left
    }

    /// Sequences an unsigned message in host `epoch` (tests and tools),
    /// or returns the sequence it already has.
    pub fn append(
        &mut self,
        from: &str,
        id: &str,
        text: &str,
        sent_at_unix_ms: i64,
        epoch: u64,
    ) -> Result<Appended, RoomError> {
        let (chain_seq, chain_prev) = match self.chains.position(from) {
            Some(p) => (p.seq + 1, p.digest.to_vec()),
            None => (1, Vec::new()),
        };
        self.append_message(ChatMessage {
            id: id.to_string(),
            from: from.to_string(),
            text: text.to_string(),
            sent_at_unix_ms,
            epoch,
            chain_seq,
            chain_prev,
            ..Default::default()
        })
    }

    /// The sequence number `from` already has for message `id`, if any.
    pub fn seq_of(&self, from: &str, id: &str) -> Option<u64> {
        self.dedup.get(&(from.to_string(), id.to_string())).copied()
    }

    /// Sequences `message` (its `seq` is assigned here) or returns the
    /// sequence its id already has from the same sender. The message must
    /// follow its sender's chain in this log (or start one).
    pub fn append_message(&mut self, mut message: ChatMessage) -> Result<Appended, RoomError> {
        if message.id.is_empty() || message.id.chars().count() > MAX_ID_CHARS {
            return Err(RoomError::BadId);
        }
        let key = (message.from.clone(), message.id.clone());
        if let Some(&seq) = self.dedup.get(&key) {
            return Ok(Appended {
                seq,
                duplicate: true,
            });
        }
        rules::validate_text(&message.text)?;
        match self.judge(&message.from, Signed::served(&self.name, &message).link()) {
            Step::Follows | Step::NewChain => {}
            Step::Gap { missing } => {
                let expected = message.chain_seq - missing;
                return Err(RoomError::OutOfTurn { expected });
            }
            Step::Repeat => return Err(RoomError::BadChain("a position already taken")),
            Step::Fork => return Err(RoomError::BadChain("a fork")),
            Step::Malformed => return Err(RoomError::BadChain("not a valid link")),
        }
        let seq = self.head_seq + 1;
        message.seq = seq;
        self.push(LogEntry {
            kind: Some(log_entry::Kind::Message(message)),
        });
        Ok(Appended {
            seq,
            duplicate: false,
        })
    }

    /// Wipes the history and restarts activation with threshold `min_users`
    /// (activating at once if enough members are already here). The entry
    /// carries the relay's `certificate` for the reset, for members to check.
    pub fn reset(
        &mut self,
        by: &str,
        min_users: u32,
        epoch: u64,
        certificate: Option<ResetCertificate>,
    ) -> Result<RoomReset, RoomError> {
        if min_users == 0 {
            return Err(RoomError::BadThreshold);
        }
        let reset = RoomReset {
            seq: self.head_seq + 1,
            min_users,
            by: by.to_string(),
            epoch,
            certificate,
        };
        self.push(LogEntry {
            kind: Some(log_entry::Kind::Reset(reset.clone())),
        });
        self.min_users = min_users;
        self.activated = false;
        self.activate_if_ready();
        Ok(reset)
    }

    /// Appends an entry whose sequence is `head_seq + 1`, or a reset.
    fn push(&mut self, entry: LogEntry) {
        let seq = entry_seq(&entry);
        // One hash of the entry: its digest is both its link in the log
        // hash and, for a message, its sender's chain position.
        let Some(digest) = chain::entry_digest(&self.name, &entry) else {
            return;
        };
        let Some(hash) = chain::extend_by(&self.head_hash(), &entry, &digest) else {
            return;
        };
        match &entry.kind {
            Some(log_entry::Kind::Reset(r)) => {
                self.log.clear();
                self.hashes.clear();
                self.base = None;
                self.dedup.clear();
                self.reset_seq = seq;
                self.last_reset = Some(r.clone());
            }
            Some(log_entry::Kind::Message(m)) => {
                self.dedup.insert((m.from.clone(), m.id.clone()), seq);
                let position = Position {
                    seq: m.chain_seq,
                    digest,
                    sent_at_unix_ms: m.sent_at_unix_ms,
                };
                self.chains.record(&m.from, position);
            }
            None => return,
        }
        self.head_seq = seq;
        self.log.push_back(entry);
        self.hashes.push_back(hash);
        self.trim();
    }

    /// Index in `log` of the entry at `seq`, if held.
    fn index_of(&self, seq: u64) -> Option<usize> {
        let first = self.held_from();
        usize::try_from(seq.checked_sub(first)?)
            .ok()
            .filter(|&i| i < self.log.len())
    }

    /// Up to `max` entries held in memory after sequence `after` and up to
    /// `through` (from the first held if `after` predates it: see
    /// [`Room::read`] for entries that may have left memory).
    pub fn entries_after(&self, after: u64, through: u64, max: usize) -> Vec<LogEntry> {
        if after >= through {
            return Vec::new();
        }
        let first = self.held_from();
        let start = (after + 1).saturating_sub(first);
        let end = through.saturating_add(1).saturating_sub(first);
        let take = usize::try_from(end.saturating_sub(start)).map_or(max, |n| n.min(max));
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        self.log.iter().skip(start).take(take).cloned().collect()
    }

    /// Epoch of the entry at `seq` (0 for the empty prefix); `None` if this
    /// log no longer holds it.
    pub fn epoch_at(&self, seq: u64) -> Option<u64> {
        if seq == 0 {
            return Some(0);
        }
        self.log.get(self.index_of(seq)?).map(entry_epoch)
    }

    /// Highest sequence number given out before host `epoch`: the head
    /// without the entries `epoch` (or a later one) sequenced.
    pub fn head_before(&self, epoch: u64) -> u64 {
        let newer = self
            .log
            .iter()
            .rev()
            .take_while(|e| entry_epoch(e) >= epoch)
            .count();
        self.head_seq - newer as u64
    }

    /// Epoch of the last entry (0 if empty).
    pub fn last_epoch(&self) -> u64 {
        self.log.back().map_or(0, entry_epoch)
    }

    /// Everything but the log; the member list only `with_members`.
    pub fn meta(&self, with_members: bool) -> RoomMeta {
        RoomMeta {
            room_id: self.room_id.clone(),
            head_seq: self.head_seq,
            min_users: self.min_users,
            activated: self.activated,
            members: if with_members {
                self.members.values().cloned().collect()
            } else {
                Vec::new()
            },
            reset_seq: self.reset_seq,
            same_members: !with_members,
            expired_seq: self.expired.map_or(0, |(seq, _)| seq),
            expired_hash: self.expired.map(|(_, h)| h.to_vec()).unwrap_or_default(),
        }
    }

    /// Checks a replication delta before anything of it is held: each new
    /// entry follows the one before (or is a reset), each message follows
    /// its sender's chain, and the log hash reaches `head` (the sequence
    /// number and hash the host signed), which is required when there are
    /// new entries. (The messages' signatures are the caller's to check.)
    pub fn check_copy(
        &self,
        entries: &[LogEntry],
        head: Option<(u64, Digest)>,
    ) -> Result<(), RoomError> {
        let (seq, hash) = self.check_entries(entries)?;
        if seq == self.head_seq {
            return Ok(()); // nothing new
        }
        match head {
            Some(head) if head == (seq, hash) => Ok(()),
            Some((at, _)) => Err(RoomError::BadCopy(format!(
                "the log through {seq} does not hash to the head signed at {at}"
            ))),
            None => Err(RoomError::BadCopy(
                "new entries without a signed head".into(),
            )),
        }
    }

    /// Checks that `entries` follow this log (see [`Room::check_copy`])
    /// and returns the sequence number and log hash they reach.
    pub fn check_entries(&self, entries: &[LogEntry]) -> Result<(u64, Digest), RoomError> {
        let bad = |why: String| Err(RoomError::BadCopy(why));
        let (mut seq, mut hash) = (self.head_seq, self.head_hash());
        let mut senders: HashMap<&str, Position> = HashMap::new();
        for entry in entries {
            let at = entry_seq(entry);
            let message = match &entry.kind {
                Some(log_entry::Kind::Message(m)) => Some(m),
                Some(log_entry::Kind::Reset(_)) => None,
                None => return bad("an empty entry".into()),
            };
            if at <= self.head_seq && seq == self.head_seq {
                continue; // already held
            }
            if at != seq + 1 && (message.is_some() || at <= seq) {
                return Err(RoomError::Gap { have: seq, got: at });
            }
            if let Some(m) = message {
                let signed = Signed::served(&self.name, m);
                let known = senders
                    .get(m.from.as_str())
                    .or_else(|| self.chains.position(&m.from));
                match chain::judge(known, signed.link()) {
                    Step::Follows | Step::NewChain => {}
                    step => return bad(format!("entry {at} from {:?}: {step:?}", m.from)),
                }
                let position = Position {
                    seq: m.chain_seq,
                    digest: signed.digest(),
                    sent_at_unix_ms: m.sent_at_unix_ms,
                };
                senders.insert(&m.from, position);
            }
            hash = match chain::extend(&self.name, &hash, entry) {
                Some(next) => next,
                None => return bad("an empty entry".into()),
            };
            seq = at;
        }
        Ok((seq, hash))
    }

    /// Applies a replication delta: entries that follow `head_seq` (or start
    /// with a reset), then the sender's metadata. Returns the new head.
    pub fn apply_replica(
        &mut self,
        meta: RoomMeta,
        entries: Vec<LogEntry>,
    ) -> Result<u64, RoomError> {
        for entry in entries {
            let seq = entry_seq(&entry);
            let is_reset = matches!(entry.kind, Some(log_entry::Kind::Reset(_)));
            if seq <= self.head_seq {
                continue; // already held
            }
            if seq != self.head_seq + 1 && !is_reset {
                return Err(RoomError::Gap {
                    have: self.head_seq,
                    got: seq,
                });
            }
            self.push(entry);
        }
        self.min_users = meta.min_users.max(1);
        self.activated = meta.activated;
        if !meta.same_members {
            self.members = meta
                .members
                .into_iter()
                .map(|m| (m.name.clone(), m))
                .collect();
            self.members_version += 1;
        }
        Ok(self.head_seq)
    }
}

mod retention;
mod tail;

pub use retention::Retention;
#[cfg(test)]
mod tests;
