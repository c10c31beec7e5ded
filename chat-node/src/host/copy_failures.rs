//! Members that failed to take the room's copies in the current term. A
//! host never waits on a member that cannot hold its log: one that refused
//! or did not answer a Replicate in time is passed over for a while
//! (doubling with each failure in a row), and after
//! [`FAILURES_FOR_THE_TERM`] failures for the rest of the term. While every
//! possible successor is passed over, the host commits alone.
//!
//! Pure (time comes in as an argument), so the rule is tested beside it.
//!
//! Invariants:
//! - a member is passed over only after a failure in this term;
//! - the wait after the n-th failure in a row is `FIRST_WAIT * 2^(n-1)`,
//!   and from the [`FAILURES_FOR_THE_TERM`]-th on it lasts the term;
//! - a copy taken forgives the member's earlier failures, and so does a
//!   new session from a member that was gone (its node did not answer at
//!   all) or comes from another address: a restarted node gets a chance
//!   at once, a frozen one (whose calls time out) does not.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a member that failed once is passed over.
const FIRST_WAIT: Duration = Duration::from_secs(2);
/// Failures in a row after which a member is never tried again this term.
pub const FAILURES_FOR_THE_TERM: u32 = 3;

/// One member's failures in a row, and the last one's time.
#[derive(Debug, Clone)]
struct Failures {
    count: u32,
    last: Instant,
    /// Where the member's node was when it failed.
    address: String,
    /// The last failure found no node there at all.
    gone: bool,
}

/// How a copy failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No node answered at the member's address (it is not running).
    Gone,
    /// Its node refused the copy, or did not answer in time.
    Refused,
}

/// Who failed to take a copy in this term.
#[derive(Debug, Default)]
pub struct CopyFailures {
    by_member: HashMap<String, Failures>,
}

impl CopyFailures {
    /// `member`, at `address`, failed to take a copy at `now`.
    pub fn record(&mut self, member: &str, address: &str, how: Failure, now: Instant) {
        let entry = self
            .by_member
            .entry(member.to_string())
            .or_insert_with(|| Failures {
                count: 0,
                last: now,
                address: address.to_string(),
                gone: false,
            });
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        entry.address = address.to_string();
        entry.gone = how == Failure::Gone;
    }

    /// `member` opened a session from `address`: if its node was gone, or
    /// was elsewhere, this is a new run of it, which may take copies.
    pub fn session_opened(&mut self, member: &str, address: &str) {
        let restarted = self
            .by_member
            .get(member)
            .is_some_and(|f| f.gone || f.address != address);
        if restarted {
            self.by_member.remove(member);
        }
    }

    /// `member` took a copy: its earlier failures no longer count.
    pub fn forgive(&mut self, member: &str) {
        self.by_member.remove(member);
    }

    /// Whether `member` is passed over at `now`.
    pub fn passed_over(&self, member: &str, now: Instant) -> bool {
        let Some(f) = self.by_member.get(member) else {
            return false;
        };
        if f.count >= FAILURES_FOR_THE_TERM {
            return true;
        }
        let wait = FIRST_WAIT.saturating_mul(1 << (f.count.saturating_sub(1)).min(16));
        now.saturating_duration_since(f.last) < wait
    }

    /// A new term: every member gets another chance.
    pub fn clear(&mut self) {
        self.by_member.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "127.0.0.1:7000";

    #[test]
    fn a_member_back_from_the_dead_or_from_elsewhere_gets_a_chance_a_frozen_one_does_not() {
        let mut f = CopyFailures::default();
        let t0 = Instant::now();
        f.record("bob", A, Failure::Refused, t0);
        f.session_opened("bob", A);
        assert!(f.passed_over("bob", t0), "the same node, timing out");
        f.session_opened("bob", "127.0.0.1:7001");
        assert!(!f.passed_over("bob", t0), "a new node elsewhere");
        f.record("bob", A, Failure::Gone, t0);
        assert!(f.passed_over("bob", t0));
        f.session_opened("bob", A);
        assert!(!f.passed_over("bob", t0), "restarted where it was");
    }

    #[test]
    fn a_failing_member_is_passed_over_longer_each_time_then_for_the_term() {
        let mut f = CopyFailures::default();
        let t0 = Instant::now();
        assert!(!f.passed_over("bob", t0));
        f.record("bob", A, Failure::Refused, t0);
        assert!(f.passed_over("bob", t0 + FIRST_WAIT / 2));
        assert!(!f.passed_over("bob", t0 + FIRST_WAIT), "tried again");
        let t1 = t0 + FIRST_WAIT;
        f.record("bob", A, Failure::Refused, t1);
        assert!(f.passed_over("bob", t1 + FIRST_WAIT), "twice as long");
        assert!(!f.passed_over("bob", t1 + FIRST_WAIT * 2));
        let t2 = t1 + FIRST_WAIT * 2;
        f.record("bob", A, Failure::Refused, t2);
        assert!(
            f.passed_over("bob", t2 + Duration::from_secs(3600)),
            "never again in this term"
        );
        assert!(!f.passed_over("carol", t2), "only the one that failed");
        f.clear();
        assert!(!f.passed_over("bob", t2), "a new term starts afresh");
    }

    #[test]
    fn a_copy_taken_forgives_earlier_failures() {
        let mut f = CopyFailures::default();
        let t0 = Instant::now();
        f.record("bob", A, Failure::Refused, t0);
        f.record("bob", A, Failure::Refused, t0);
        f.forgive("bob");
        assert!(!f.passed_over("bob", t0));
        f.record("bob", A, Failure::Refused, t0);
        assert!(!f.passed_over("bob", t0 + FIRST_WAIT), "counted from one");
    }
}
