//! Who may hold the live room's copy, and who does: the successor the
//! relay names for this term, the one seeded by a planned handoff, the
//! members that failed to take copies ([`CopyFailures`]), and what the
//! relay said at the last renewal (whom it refuses, how many rooms each
//! member hosts). One owner: every change is a named transition.
//!
//! Invariants:
//! - `named` is what the relay names as successor for this term, as far
//!   as this host knows (a handoff's TakeOver, or a renewal the relay
//!   confirmed): only that member's copy may be acknowledged;
//! - a new term starts with nobody named, nothing seeded, no failures.

use super::copy_failures::{CopyFailures, Failure};
use chat_proto::pb::chat::Member;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// The successor state of a room's host side.
#[derive(Debug, Default)]
pub struct Succession {
    /// Node id of the member the relay names successor, if any.
    named: Option<String>,
    /// After a planned handoff: the previous host's node id and the head
    /// it holds, to keep as successor.
    seeded: Option<(String, u64)>,
    /// Members whose node refused or missed a copy in this term.
    failed: CopyFailures,
    /// Node ids the relay will not make host (client-only, unreachable,
    /// disconnected), as of the last renewal.
    refused: HashSet<String>,
    /// How many rooms each other member hosts, as of the last renewal.
    rooms_hosted: HashMap<String, u32>,
}

impl Succession {
    /// A new term: nobody named, nothing seeded, every member may try.
    pub fn begin_term(&mut self) {
        self.named = None;
        self.seeded = None;
        self.failed.clear();
    }

    /// The member the relay names successor, if any.
    pub fn named(&self) -> Option<&str> {
        self.named.as_deref()
    }

    /// The relay confirmed `node_id` (or nobody) as successor.
    pub fn name(&mut self, node_id: Option<String>) {
        self.named = node_id;
    }

    /// A planned handoff made this node host: its sender, which the relay
    /// names successor, holds everything up to `head`. False (nothing
    /// changed) if a successor was named already.
    pub fn seed(&mut self, sender: String, head: u64) -> bool {
        if self.named.is_some() {
            return false;
        }
        self.named = Some(sender.clone());
        self.seeded = Some((sender, head));
        true
    }

    /// The seeded successor, once.
    pub fn take_seed(&mut self) -> Option<(String, u64)> {
        self.seeded.take()
    }

    /// What a renewal answered: whom the relay refuses, and the rooms each
    /// member hosts.
    pub fn relay_said(&mut self, refused: Vec<String>, rooms_hosted: HashMap<String, u32>) {
        self.refused = refused.into_iter().collect();
        self.rooms_hosted = rooms_hosted;
    }

    /// Whether the relay refuses `node_id` as host (or as successor).
    pub fn refused(&self, node_id: &str) -> bool {
        self.refused.contains(node_id)
    }

    /// Whether `m` could ever take the room from `me`: another member, that
    /// serves, and that the relay does not refuse.
    pub fn may_host(&self, m: &Member, me: &str) -> bool {
        m.name != me && !m.address.is_empty() && !self.refused(&m.node_id)
    }

    /// Whether `m` could hold a copy at `now`: it may host and is not
    /// passed over for a failed copy.
    pub fn may_hold_copy(&self, m: &Member, me: &str, now: Instant) -> bool {
        self.may_host(m, me) && !self.failed.passed_over(&m.name, now)
    }

    /// How many rooms the member `node_id` hosts (placement: fewest first).
    pub fn load(&self, node_id: &str) -> u32 {
        self.rooms_hosted.get(node_id).copied().unwrap_or(0)
    }

    /// `m` failed to take a copy at `now`.
    pub fn copy_failed(&mut self, m: &Member, how: Failure, now: Instant) {
        self.failed.record(&m.name, &m.address, how, now);
    }

    /// `member` took a copy.
    pub fn copy_taken(&mut self, member: &str) {
        self.failed.forgive(member);
    }

    /// `member` opened a session from `address` (a restarted node may take
    /// copies again at once).
    pub fn session_opened(&mut self, member: &str, address: &str) {
        self.failed.session_opened(member, address);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::member;
    use super::*;

    #[test]
    fn a_handoff_seeds_the_successor_once_and_a_new_term_forgets_it() {
        let mut s = Succession::default();
        assert!(s.seed("id-bob".into(), 7));
        assert_eq!(s.named(), Some("id-bob"));
        assert!(!s.seed("id-carol".into(), 9), "bob is named already");
        assert_eq!(s.take_seed(), Some(("id-bob".into(), 7)));
        assert_eq!(s.take_seed(), None);
        s.begin_term();
        assert_eq!(s.named(), None);
    }

    #[test]
    fn who_may_hold_a_copy() {
        let mut s = Succession::default();
        let now = Instant::now();
        let bob = member("bob", "127.0.0.1:2");
        assert!(s.may_hold_copy(&bob, "alice", now));
        assert!(!s.may_hold_copy(&bob, "bob", now), "not itself");
        assert!(
            !s.may_hold_copy(&member("dave", ""), "alice", now),
            "serves nothing"
        );
        s.copy_failed(&bob, Failure::Refused, now);
        assert!(!s.may_hold_copy(&bob, "alice", now));
        s.copy_taken("bob");
        assert!(s.may_hold_copy(&bob, "alice", now));
        s.relay_said(
            vec!["id-bob".into()],
            HashMap::from([("id-carol".into(), 3)]),
        );
        assert!(!s.may_host(&bob, "alice"), "the relay refuses it");
        assert_eq!((s.load("id-carol"), s.load("id-bob")), (3, 0));
    }
}
