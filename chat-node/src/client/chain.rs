//! The client's side of the chains (see [`chat_proto::chain`]): this
//! member's own chain of messages in the room, kept in the data directory
//! so a restart goes on where it stopped; and the checks of what a host
//! serves, so that a host that reorders, repeats or drops messages, or
//! shows members different histories, is caught and named.

use chat_proto::chain::{self, Chains, Digest, Position, Signed, Step};
use chat_proto::pb::chat::{ChatMessage, RoomReset, SendMessage};
use chat_proto::trust::{self, Keypair};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

/// Log hashes remembered, newest last (to compare a new host's head with
/// after it rewinds the client).
const RECENT_HASHES: usize = 1024;
/// Own acknowledged messages remembered until the log shows them.
const ACKED: usize = 4096;

/// This member's chain in one room: the next counter and the digest of the
/// last message signed.
#[derive(Debug)]
pub(super) struct OwnChain {
    next_seq: u64,
    prev: Option<Digest>,
    /// Where the position is kept (none for an in-memory node).
    file: Option<PathBuf>,
}

impl OwnChain {
    /// The position kept for `room` in `dir` (the node's data directory
    /// for this member), or a new chain.
    pub(super) fn load(dir: Option<&Path>, room: &str) -> Self {
        let file = dir.map(|d| d.join(trust::hex(room.as_bytes())));
        let kept = file
            .as_ref()
            .and_then(|f| parse(&std::fs::read_to_string(f).ok()?));
        let (next_seq, prev) = kept.map_or((1, None), |(seq, prev)| (seq + 1, Some(prev)));
        Self {
            next_seq,
            prev,
            file,
        }
    }

    /// Links `msg` to this chain and signs it as `from`'s in `room`.
    pub(super) fn sign(&mut self, key: &Keypair, room: &str, from: &str, msg: &mut SendMessage) {
        msg.chain_seq = self.next_seq;
        msg.chain_prev = self.prev.map(|d| d.to_vec()).unwrap_or_default();
        let digest = key.sign_message(room, from, msg);
        self.next_seq += 1;
        self.prev = Some(digest);
        self.save();
    }

    /// Takes back the positions from `msg` on: the host refused it for
    /// good, so neither it nor what was signed after it is in the log.
    pub(super) fn rewind_to(&mut self, msg: &SendMessage) {
        self.next_seq = msg.chain_seq.max(1);
        self.prev = msg.chain_prev.as_slice().try_into().ok();
        self.save();
    }

    /// Starts a new chain: the messages after the last one the host holds
    /// were lost (a crash before they went out).
    pub(super) fn restart(&mut self) {
        self.next_seq = 1;
        self.prev = None;
        if let Some(file) = &self.file {
            let _ = std::fs::remove_file(file);
        }
    }

    fn save(&self) {
        let Some(file) = &self.file else { return };
        let Some(prev) = self.prev else { return };
        let line = format!("{} {}\n", self.next_seq - 1, trust::hex(&prev));
        let written = file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(file, line));
        if let Err(e) = written {
            tracing::warn!(file = %file.display(), error = %e, "cannot keep the message chain");
        }
    }
}

/// Parses "<seq> <hex digest>".
fn parse(text: &str) -> Option<(u64, Digest)> {
    let (seq, hex) = text.trim().split_once(' ')?;
    let seq = seq.parse().ok()?;
    let digest = chat_proto::trust::unhex(hex)?.try_into().ok()?;
    Some((seq, digest))
}

/// What a served message turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Show it.
    Show,
    /// Show it, and tell the user this (not the host's doing).
    ShowWithNotice(String),
    /// Show it, and report this about the host that served it.
    ShowAndReport(String),
    /// Do not show it; report this about the host that served it.
    Refuse(String),
}

/// The checks of what hosts serve this client, across its sessions.
#[derive(Debug)]
pub(super) struct LogCheck {
    /// Each sender's chain, as shown.
    chains: Chains,
    /// The log hash after the last entry seen (`None`: unknown, after a
    /// host skipped entries).
    hash: Option<Digest>,
    /// Recent log hashes by sequence number.
    recent: VecDeque<(u64, Digest)>,
    /// Own messages acknowledged at a sequence number not yet seen.
    acked: HashMap<u64, String>,
}

impl Default for LogCheck {
    fn default() -> Self {
        Self {
            chains: Chains::default(),
            hash: Some(chain::GENESIS),
            recent: VecDeque::new(),
            acked: HashMap::new(),
        }
    }
}

impl LogCheck {
    /// Judges message `m` served after `last_seq` (the last entry seen),
    /// and takes it into the log hash. `me` is this member's name;
    /// `digest` the message's, when the signature check computed it.
    pub(super) fn message(
        &mut self,
        room: &str,
        last_seq: u64,
        m: &ChatMessage,
        me: &str,
        digest: Option<Digest>,
    ) -> Verdict {
        let skipped = (m.seq != last_seq + 1)
            .then(|| format!("skipped log entries {}..={}", last_seq + 1, m.seq - 1));
        let signed = Signed::served(room, m);
        let digest = digest.unwrap_or_else(|| signed.digest());
        self.extend(m.seq, m.epoch, &digest, false, skipped.is_some());
        let acked = self.acked.remove(&m.seq);
        let mut dropped = acked.filter(|id| m.from != me || *id != m.id).map(|id| {
            format!(
                "acknowledged your message {id} at seq {} but served another message there",
                m.seq
            )
        });
        let passed: Vec<u64> = self.acked.keys().filter(|&&s| s < m.seq).copied().collect();
        for seq in passed {
            if let Some(id) = self.acked.remove(&seq) {
                dropped.get_or_insert(format!(
                    "acknowledged your message {id} at seq {seq} but never served it"
                ));
            }
        }
        let verdict = match self.chains.judge(&m.from, signed.link()) {
            Step::Follows => Verdict::Show,
            Step::NewChain => Verdict::ShowWithNotice(format!(
                "{}'s node lost its place in its chain of messages and started a new one: \
                 messages it sent before may be missing",
                m.from
            )),
            Step::Gap { missing } => Verdict::ShowAndReport(format!(
                "did not serve {missing} message(s) of {} sent before this one",
                m.from
            )),
            Step::Fork => Verdict::ShowAndReport(format!(
                "served a message of {} that does not follow the one before it \
                 (its sender signed two messages at #{})",
                m.from, m.chain_seq
            )),
            Step::Repeat => Verdict::Refuse(format!(
                "served message #{} of {} again or out of order (at seq {}); not shown",
                m.chain_seq, m.from, m.seq
            )),
            Step::Malformed => Verdict::Refuse(format!(
                "served a message of {} with no valid place in its chain (at seq {}); not shown",
                m.from, m.seq
            )),
        };
        if !matches!(verdict, Verdict::Refuse(_)) {
            let position = Position {
                seq: m.chain_seq,
                digest,
                sent_at_unix_ms: m.sent_at_unix_ms,
            };
            self.chains.record(&m.from, position);
        }
        // The host's fault comes first: it is what the user must know.
        match (skipped.or(dropped), verdict) {
            (None, v) => v,
            (Some(fault), Verdict::Refuse(why)) => Verdict::Refuse(format!("{fault}; {why}")),
            (Some(fault), Verdict::ShowAndReport(why)) => {
                Verdict::ShowAndReport(format!("{fault}; {why}"))
            }
            (Some(fault), _) => Verdict::ShowAndReport(fault),
        }
    }

    /// Takes reset `r` into the log hash (a reset starts the log over).
    pub(super) fn reset(&mut self, r: &RoomReset) {
        self.extend(r.seq, r.epoch, &chain::reset_digest(r), true, false);
    }

    /// Notes that the host acknowledged own message `id` at `seq`, not yet
    /// seen in the log.
    pub(super) fn acked(&mut self, id: &str, seq: u64) {
        if self.acked.len() >= ACKED {
            self.acked.clear();
        }
        self.acked.insert(seq, id.to_string());
    }

    /// Goes on from a checkpoint the host signed, at `at` with log hash
    /// `hash`: the entries through `at` expired before this client saw
    /// them. The senders' chains start again from the first message seen
    /// (what came before in them expired too).
    pub(super) fn start_at(&mut self, at: u64, hash: Digest) {
        self.chains = Chains::default();
        self.hash = Some(hash);
        self.recent.retain(|(s, _)| *s < at);
        if self.recent.len() >= RECENT_HASHES {
            self.recent.pop_front();
        }
        self.recent.push_back((at, hash));
        self.acked.retain(|s, _| *s > at);
    }

    /// Checks a new host's signed head, at `at` with log hash `hash`,
    /// against what this client was shown up to `last_seq`. Returns what to
    /// report (a different history), and whether the host's log is shorter
    /// (the client then follows it from `at`).
    pub(super) fn head(&mut self, at: u64, hash: Digest, last_seq: u64) -> Option<String> {
        let mine = if at == last_seq {
            self.hash
        } else {
            self.recent
                .iter()
                .rev()
                .find(|(s, _)| *s == at)
                .map(|(_, h)| *h)
        };
        let differs = mine.is_some_and(|mine| mine != hash) && at <= last_seq;
        if at <= last_seq {
            // Follow this host's log from here.
            self.hash = Some(hash);
            self.recent.retain(|(s, _)| *s <= at);
            self.acked.retain(|s, _| *s > at);
        }
        differs.then(|| {
            format!("shows a history that differs from what you were shown up to seq {at}")
        })
    }

    /// Checks a head the session's host signed, at `at` with log hash
    /// `hash`, against the log it served: what to report if it differs.
    pub(super) fn served_head(&self, at: u64, hash: Digest) -> Option<String> {
        let mine = self.recent.iter().rev().find(|(s, _)| *s == at)?;
        (mine.1 != hash).then(|| {
            format!("signed a log head at seq {at} that differs from the log it served you")
        })
    }

    fn extend(&mut self, seq: u64, epoch: u64, digest: &Digest, reset: bool, skipped: bool) {
        let previous = if reset {
            Some(chain::GENESIS)
        } else if skipped {
            None
        } else {
            self.hash
        };
        self.hash = previous.map(|p| chain::log_step(&p, seq, epoch, digest));
        if let Some(hash) = self.hash {
            if self.recent.len() >= RECENT_HASHES {
                self.recent.pop_front();
            }
            self.recent.push_back((seq, hash));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_chain_survives_a_restart_and_rewinds_on_refusal() {
        let dir = std::env::temp_dir().join(format!("own-chain-{}", rand::random::<u64>()));
        let key = Keypair::generate();
        let mut chain = OwnChain::load(Some(&dir), "lobby");
        let mut first = SendMessage {
            id: "a".into(),
            text: "hi".into(),
            ..Default::default()
        };
        chain.sign(&key, "lobby", "ann", &mut first);
        assert_eq!((first.chain_seq, first.chain_prev.len()), (1, 0));
        let mut second = SendMessage {
            id: "b".into(),
            text: "again".into(),
            ..Default::default()
        };
        chain.sign(&key, "lobby", "ann", &mut second);
        assert_eq!(second.chain_seq, 2);
        assert_eq!(
            second.chain_prev,
            Signed::sent("lobby", "ann", &first).digest().to_vec()
        );

        let mut again = OwnChain::load(Some(&dir), "lobby");
        let mut third = SendMessage {
            id: "c".into(),
            text: "after a restart".into(),
            ..Default::default()
        };
        again.sign(&key, "lobby", "ann", &mut third);
        assert_eq!(third.chain_seq, 3);
        assert_eq!(
            third.chain_prev,
            Signed::sent("lobby", "ann", &second).digest().to_vec()
        );
        again.rewind_to(&third);
        let mut retry = third.clone();
        again.sign(&key, "lobby", "ann", &mut retry);
        assert_eq!((retry.chain_seq, &retry.chain_prev), (3, &third.chain_prev));
        assert_eq!(OwnChain::load(Some(&dir), "hall").next_seq, 1, "per room");
        let _ = std::fs::remove_dir_all(dir);
    }
}
