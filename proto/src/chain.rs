//! The hash chains that make a host's lies visible (the layouts are in
//! chat.v1's `SendMessage` and `SignedHead` comments):
//!
//! - each sender's messages in a room are chained by the sender, who signs
//!   its counter and the digest of its previous message: a host cannot
//!   reorder, repeat or drop one sender's messages unseen, and one valid
//!   signature vouches for every message of the run it ends;
//! - the room's log is chained by the host, which signs its head: members
//!   compare heads when the host role moves, so a host that showed them
//!   different histories is caught, and a late joiner's history is checked
//!   at the speed of hashing.

use crate::pb::chat::{log_entry, ChatMessage, LogEntry, RoomReset, SendMessage};
use crate::trust::frame;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// The log hash before the first entry, and before every reset.
pub const GENESIS: Digest = [0; 32];

const MESSAGE_TAG: &[u8] = b"chat.v1.ChatMessage";
const RESET_TAG: &[u8] = b"chat.v1.RoomReset";
const ENTRY_TAG: &[u8] = b"chat.v1.LogEntry";

fn sha256(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

/// The fields a chat message's signature covers, borrowed from whichever
/// form it travels in.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// The room it was said in.
    pub room: &'a str,
    /// The sender's message id.
    pub id: &'a str,
    /// The sender's name.
    pub from: &'a str,
    /// What was said.
    pub text: &'a str,
    /// When the sender signed it.
    pub sent_at_unix_ms: i64,
    /// The sender's counter in the room.
    pub chain_seq: u64,
    /// Digest of the sender's previous message (empty for a chain's first).
    pub chain_prev: &'a [u8],
    /// The sender's signature of the fields above (not part of what it
    /// signs, but part of the digest the next message chains to).
    pub signature: &'a [u8],
}

impl<'a> Signed<'a> {
    /// A message as the host serves it.
    pub fn served(room: &'a str, m: &'a ChatMessage) -> Self {
        Self {
            room,
            id: &m.id,
            from: &m.from,
            text: &m.text,
            sent_at_unix_ms: m.sent_at_unix_ms,
            chain_seq: m.chain_seq,
            chain_prev: &m.chain_prev,
            signature: &m.signature,
        }
    }

    /// A message as its sender sends it.
    pub fn sent(room: &'a str, from: &'a str, m: &'a SendMessage) -> Self {
        Self {
            room,
            id: &m.id,
            from,
            text: &m.text,
            sent_at_unix_ms: m.sent_at_unix_ms,
            chain_seq: m.chain_seq,
            chain_prev: &m.chain_prev,
            signature: &m.signature,
        }
    }

    /// The bytes the sender signs.
    pub fn payload(&self) -> Vec<u8> {
        frame(&[
            MESSAGE_TAG,
            self.room.as_bytes(),
            self.id.as_bytes(),
            self.from.as_bytes(),
            self.text.as_bytes(),
            &self.sent_at_unix_ms.to_be_bytes(),
            &self.chain_seq.to_be_bytes(),
            self.chain_prev,
        ])
    }

    /// The message's digest: what the sender's next message chains to.
    /// It covers the signature too, so one valid signature at the end of a
    /// run vouches for every byte of the messages before it, their
    /// signatures included: a copy whose mid-run signature was spoiled
    /// does not pass a check by runs and then fail a check one by one.
    pub fn digest(&self) -> Digest {
        self.digest_of(&self.payload())
    }

    /// The digest, given the bytes the sender signs ([`Signed::payload`]).
    /// A frame of parts is the frames of its parts one after the other, so
    /// this is the hash of the framed fields followed by the signature.
    pub fn digest_of(&self, payload: &[u8]) -> Digest {
        Sha256::new()
            .chain_update(payload)
            .chain_update(frame(&[self.signature]))
            .finalize()
            .into()
    }

    /// Where this message claims to be in its sender's chain.
    pub fn link(&self) -> Link<'a> {
        Link {
            seq: self.chain_seq,
            prev: self.chain_prev,
            sent_at_unix_ms: self.sent_at_unix_ms,
        }
    }
}

/// The digest of a reset entry: it covers the grant of the relay's
/// certificate (empty when the reset carries none), so a host that shows
/// members resets with different certificates shows different histories.
pub fn reset_digest(r: &RoomReset) -> Digest {
    let grant = r
        .certificate
        .as_ref()
        .map_or(&[][..], |c| c.grant.as_slice());
    sha256(&frame(&[
        RESET_TAG,
        &r.seq.to_be_bytes(),
        &r.min_users.to_be_bytes(),
        r.by.as_bytes(),
        grant,
    ]))
}

/// The digest of a log entry of `room` (`None` for an empty entry).
pub fn entry_digest(room: &str, entry: &LogEntry) -> Option<Digest> {
    match entry.kind.as_ref()? {
        log_entry::Kind::Message(m) => Some(Signed::served(room, m).digest()),
        log_entry::Kind::Reset(r) => Some(reset_digest(r)),
    }
}

/// The log hash after an entry at `seq`, sequenced in `epoch`, whose digest
/// is `entry`, following the log hash `previous`.
pub fn log_step(previous: &Digest, seq: u64, epoch: u64, entry: &Digest) -> Digest {
    sha256(&frame(&[
        ENTRY_TAG,
        previous,
        &seq.to_be_bytes(),
        &epoch.to_be_bytes(),
        entry,
    ]))
}

/// The log hash after `entry` of `room`, following `previous` (a reset
/// starts over from [`GENESIS`]); `None` for an empty entry.
pub fn extend(room: &str, previous: &Digest, entry: &LogEntry) -> Option<Digest> {
    extend_by(previous, entry, &entry_digest(room, entry)?)
}

/// As [`extend`], for an entry whose digest is known already.
pub fn extend_by(previous: &Digest, entry: &LogEntry, digest: &Digest) -> Option<Digest> {
    let (seq, epoch, previous) = match entry.kind.as_ref()? {
        log_entry::Kind::Message(m) => (m.seq, m.epoch, previous),
        log_entry::Kind::Reset(r) => (r.seq, r.epoch, &GENESIS),
    };
    Some(log_step(previous, seq, epoch, digest))
}

/// What a message says about its place in its sender's chain.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    /// The sender's counter.
    pub seq: u64,
    /// Digest of the sender's previous message.
    pub prev: &'a [u8],
    /// When the sender signed it.
    pub sent_at_unix_ms: i64,
}

/// How a message stands against what is known of its sender's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The next message of the chain, or the first one known of it.
    Follows,
    /// The first message of a new chain: the sender lost its place.
    NewChain,
    /// Messages are missing before this one.
    Gap {
        /// How many.
        missing: u64,
    },
    /// A position already seen, again or out of order.
    Repeat,
    /// The right position, but not after the message seen before it: the
    /// sender signed two different messages there.
    Fork,
    /// Not a valid link (counter 0, or a previous digest that is missing
    /// where one is needed, or present where none is).
    Malformed,
}

/// The last known message of one sender's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Its counter.
    pub seq: u64,
    /// Its digest.
    pub digest: Digest,
    /// When it was signed.
    pub sent_at_unix_ms: i64,
}

/// How `link` stands against `known`, the last known message of its
/// sender's chain (`None`: nothing known, so any valid link follows).
pub fn judge(known: Option<&Position>, link: Link<'_>) -> Step {
    let first = link.seq == 1;
    if link.seq == 0 || first != link.prev.is_empty() || (!first && link.prev.len() != 32) {
        return Step::Malformed;
    }
    let Some(known) = known else {
        return Step::Follows;
    };
    if first {
        return if link.sent_at_unix_ms > known.sent_at_unix_ms {
            Step::NewChain
        } else {
            Step::Repeat
        };
    }
    match link.seq.checked_sub(known.seq) {
        None | Some(0) => Step::Repeat,
        Some(1) if link.prev == known.digest => Step::Follows,
        Some(1) => Step::Fork,
        Some(n) => Step::Gap { missing: n - 1 },
    }
}

/// Senders tracked at most: past it the tracker forgets everyone and
/// starts over (an honest chain then simply "follows" again).
pub const MAX_SENDERS: usize = 65_536;

/// Where each sender's chain stands, as far as one log or one reader knows.
#[derive(Debug, Clone, Default)]
pub struct Chains {
    senders: HashMap<String, Position>,
}

impl Chains {
    /// How `link` from `from` stands against what is known.
    pub fn judge(&self, from: &str, link: Link<'_>) -> Step {
        judge(self.senders.get(from), link)
    }

    /// Records `position` as the last known message of `from`.
    pub fn record(&mut self, from: &str, position: Position) {
        if self.senders.len() >= MAX_SENDERS && !self.senders.contains_key(from) {
            self.senders.clear();
        }
        self.senders.insert(from.to_string(), position);
    }

    /// The last known message of `from`.
    pub fn position(&self, from: &str) -> Option<&Position> {
        self.senders.get(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64, prev: &[u8], at: i64) -> (Link<'_>, Position) {
        let m = Signed {
            room: "lobby",
            id: "m",
            from: "ann",
            text: "hi",
            sent_at_unix_ms: at,
            chain_seq: seq,
            chain_prev: prev,
            signature: &[],
        };
        let position = Position {
            seq,
            digest: m.digest(),
            sent_at_unix_ms: at,
        };
        (m.link(), position)
    }

    #[test]
    fn a_chain_is_judged_link_by_link() {
        let mut chains = Chains::default();
        let (l1, p1) = message(1, &[], 10);
        assert_eq!(chains.judge("ann", l1), Step::Follows);
        chains.record("ann", p1);
        let (l2, p2) = message(2, &p1.digest, 11);
        assert_eq!(chains.judge("ann", l2), Step::Follows);
        let (forked, _) = message(2, &[7; 32], 11);
        chains.record("ann", p2);
        assert_eq!(chains.judge("ann", forked), Step::Repeat);
        assert_eq!(chains.judge("ann", l1), Step::Repeat, "a replayed start");
        assert_eq!(chains.judge("ann", l2), Step::Repeat);
        let (l4, _) = message(4, &[1; 32], 12);
        assert_eq!(chains.judge("ann", l4), Step::Gap { missing: 1 });
        let (fork3, _) = message(3, &[1; 32], 12);
        assert_eq!(chains.judge("ann", fork3), Step::Fork);
        let (restart, _) = message(1, &[], 20);
        assert_eq!(chains.judge("ann", restart), Step::NewChain);
        let (bad, _) = message(0, &[], 20);
        assert_eq!(chains.judge("ann", bad), Step::Malformed);
        let (bad, _) = message(2, &[], 20);
        assert_eq!(chains.judge("bob", bad), Step::Malformed);
        let (bad, _) = message(1, &[1; 32], 20);
        assert_eq!(chains.judge("bob", bad), Step::Malformed);
    }

    #[test]
    fn the_log_hash_covers_order_and_restarts_at_a_reset() {
        let entry = |seq: u64, text: &str| LogEntry {
            kind: Some(log_entry::Kind::Message(ChatMessage {
                seq,
                id: format!("m{seq}"),
                from: "ann".into(),
                text: text.into(),
                epoch: 1,
                chain_seq: 1,
                ..Default::default()
            })),
        };
        let reset = LogEntry {
            kind: Some(log_entry::Kind::Reset(RoomReset {
                seq: 3,
                min_users: 2,
                by: "ann".into(),
                epoch: 1,
                certificate: None,
            })),
        };
        let chain = |entries: &[LogEntry]| {
            entries.iter().fold(GENESIS, |h, e| {
                extend("lobby", &h, e).expect("entries are not empty")
            })
        };
        let (a, b) = (entry(1, "a"), entry(2, "b"));
        assert_ne!(
            chain(&[a.clone(), b.clone()]),
            chain(&[b.clone(), a.clone()])
        );
        assert_ne!(chain(std::slice::from_ref(&a)), chain(&[entry(1, "A")]));
        assert_eq!(
            chain(&[a.clone(), b.clone(), reset.clone()]),
            chain(std::slice::from_ref(&reset)),
            "a reset starts the chain over"
        );
        assert_ne!(
            extend("lobby", &GENESIS, &a),
            extend("hall", &GENESIS, &a),
            "the room is covered"
        );
    }

    #[test]
    fn a_resets_digest_covers_its_certificates_grant() {
        use crate::pb::relay::ResetCertificate;
        let reset = |grant: &[u8], signature: &[u8]| RoomReset {
            seq: 3,
            min_users: 2,
            by: "ann".into(),
            epoch: 1,
            certificate: Some(ResetCertificate {
                grant: grant.to_vec(),
                signature: signature.to_vec(),
            }),
        };
        let bare = RoomReset {
            certificate: None,
            ..reset(&[], &[])
        };
        assert_eq!(reset_digest(&reset(&[], &[])), reset_digest(&bare));
        assert_ne!(reset_digest(&reset(&[1], &[])), reset_digest(&bare));
        assert_ne!(
            reset_digest(&reset(&[1], &[])),
            reset_digest(&reset(&[2], &[]))
        );
        // The grant is what the relay signed; the signature is not hashed.
        assert_eq!(
            reset_digest(&reset(&[1], &[7])),
            reset_digest(&reset(&[1], &[8]))
        );
    }
}
