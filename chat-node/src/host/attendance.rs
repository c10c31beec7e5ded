//! Who is in session with the live host, and since when each member
//! without a session has been away. One owner: every change is a named
//! transition.
//!
//! Pure (time comes in as an argument), so it is tested beside it.
//!
//! Invariants:
//! - a member counts as connected while it has at least one open session;
//! - a member is away (with the time it went) only while it has none;
//! - a term begins with every member of the room away, and ends with
//!   nobody connected or away.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Sessions per member, and when each member without one went away.
#[derive(Debug, Default)]
pub struct Attendance {
    sessions: HashMap<String, usize>,
    away_since: HashMap<String, Instant>,
}

impl Attendance {
    /// A term begins: nobody is in session yet, and each of `members` is
    /// away from `now` (members gone from the old host count from here).
    pub fn begin_term(&mut self, members: impl IntoIterator<Item = String>, now: Instant) {
        self.sessions.clear();
        self.away_since = members.into_iter().map(|m| (m, now)).collect();
    }

    /// The term ended: nobody is in session or away.
    pub fn end_term(&mut self) {
        self.sessions.clear();
        self.away_since.clear();
    }

    /// `member` opened a session.
    pub fn opened(&mut self, member: &str) {
        *self.sessions.entry(member.to_string()).or_default() += 1;
        self.away_since.remove(member);
    }

    /// One of `member`'s sessions closed at `now`; with its last one it is
    /// away from then, if the host still counts (`live`).
    pub fn closed(&mut self, member: &str, live: bool, now: Instant) {
        let open = self.sessions.get(member).copied().unwrap_or(0);
        match open.saturating_sub(1) {
            0 => {
                self.sessions.remove(member);
                if live {
                    self.away_since.insert(member.to_string(), now);
                }
            }
            left => {
                self.sessions.insert(member.to_string(), left);
            }
        }
    }

    /// `member` left the room: it is neither connected nor away.
    pub fn left(&mut self, member: &str) {
        self.sessions.remove(member);
        self.away_since.remove(member);
    }

    /// Whether `member` has an open session.
    pub fn connected(&self, member: &str) -> bool {
        self.sessions.get(member).is_some_and(|n| *n > 0)
    }

    /// The members away for longer than `grace` at `now`.
    pub fn away_longer_than(&self, grace: Duration, now: Instant) -> Vec<String> {
        self.away_since
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) > grace)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_away_only_after_its_last_session_closes() {
        let (mut a, t0) = (Attendance::default(), Instant::now());
        let grace = Duration::from_secs(10);
        a.begin_term(["alice".to_string(), "bob".to_string()], t0);
        a.opened("alice");
        a.opened("alice");
        assert!(a.connected("alice"));
        assert_eq!(a.away_longer_than(grace, t0 + grace * 2), ["bob"]);
        a.closed("alice", true, t0);
        assert!(a.connected("alice"), "one session still open");
        a.closed("alice", true, t0 + grace);
        assert!(!a.connected("alice"));
        let mut away = a.away_longer_than(grace, t0 + grace * 2 + Duration::from_millis(1));
        away.sort();
        assert_eq!(away, ["alice", "bob"]);
        a.left("bob");
        assert_eq!(a.away_longer_than(grace, t0 + grace * 3), ["alice"]);
    }

    #[test]
    fn a_dormant_node_counts_nobody_away_and_a_term_ends_clean() {
        let (mut a, t0) = (Attendance::default(), Instant::now());
        a.opened("alice");
        a.closed("alice", false, t0);
        assert!(a
            .away_longer_than(Duration::ZERO, t0 + Duration::from_secs(1))
            .is_empty());
        a.opened("bob");
        a.begin_term(["carol".to_string()], t0);
        assert!(!a.connected("bob"), "a new term starts with no session");
        a.end_term();
        assert!(a
            .away_longer_than(Duration::ZERO, t0 + Duration::from_secs(1))
            .is_empty());
    }
}
