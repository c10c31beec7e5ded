//! Who may host: what the relay knows about reaching each member's
//! address (checked by `crate::reach`), the rules that follow from it, and
//! why a room has no host.

use super::{Member, Registry};
use std::time::{Duration, Instant};

impl Member {
    /// Whether the relay may make this member host (or keep it as the
    /// successor it promotes): it serves, and the last check reached it.
    pub fn can_host(&self) -> bool {
        self.cannot_host().is_none()
    }

    /// Why this member may not host now, if so.
    pub(super) fn cannot_host(&self) -> Option<&'static str> {
        if self.record.client_only {
            Some("it is a client-only member")
        } else if self.reach.reachable != Some(true) {
            Some(match self.reach.reachable {
                None => "the relay has not reached its address yet",
                _ => "the relay cannot reach its address",
            })
        } else {
            None
        }
    }

    /// Whether the relay has yet to decide if it reaches this member (a
    /// client-only one has nothing to decide).
    pub(super) fn undecided(&self) -> bool {
        !self.record.client_only && self.reach.reachable.is_none()
    }

    /// Whether a host may name this member its successor: it serves, and
    /// the relay reached it once or has not decided yet (it is promoted
    /// only once reached). A member the relay reached before keeps its
    /// place while its checks fail: the host reaches it, since it
    /// replicates to it, and it holds what the host acknowledged.
    pub(super) fn may_succeed(&self) -> bool {
        !self.record.client_only && (self.reach.reachable != Some(false) || self.reach.ever_reached)
    }

    /// Whether failover may promote this member as the successor the host
    /// named: it serves and the relay reached it at least once (the last
    /// checks may have failed under load; promoting another member could
    /// lose what the host acknowledged).
    pub(super) fn may_take_over_as_successor(&self) -> bool {
        !self.record.client_only && self.reach.ever_reached
    }
}

/// How long a reachable member's address goes between checks.
pub const CHECK_PERIOD: Duration = Duration::from_secs(3);
/// First retry of a member not reached yet (doubling up to [`CHECK_PERIOD`]):
/// a node starts serving right after it registers.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Failed checks in a row that make a reachable member unreachable (one
/// slow answer on a loaded machine does not).
const FAILURES_TO_LOSE: u32 = 2;
/// Failed checks in a row that make a member never reached unreachable.
const FAILURES_NEVER_REACHED: u32 = 3;

/// What the relay knows about reaching a member's address.
#[derive(Debug, Clone, Default)]
pub(super) struct Reach {
    /// `None` until decided; then whether the relay reaches it.
    pub(super) reachable: Option<bool>,
    /// Failed checks in a row.
    pub(super) failures: u32,
    /// When the last check ended.
    pub(super) checked: Option<Instant>,
    /// A check is under way.
    pub(super) in_flight: bool,
    /// Some check reached it (since it registered at this address).
    pub(super) ever_reached: bool,
}

impl Reach {
    /// Whether a check is due at `now`.
    pub(super) fn due(&self, now: Instant) -> bool {
        let wait = match self.reachable {
            Some(true) if self.failures == 0 => CHECK_PERIOD,
            // Unsure: look again soon.
            _ => (FIRST_RETRY * 2u32.saturating_pow(self.failures)).min(CHECK_PERIOD),
        };
        !self.in_flight && self.checked.is_none_or(|t| now.duration_since(t) >= wait)
    }

    /// Takes the result of a check.
    pub(super) fn record(&mut self, reached: bool, now: Instant) {
        self.in_flight = false;
        self.checked = Some(now);
        if reached {
            self.failures = 0;
            self.reachable = Some(true);
            self.ever_reached = true;
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let limit = match self.reachable {
            Some(true) => FAILURES_TO_LOSE,
            _ => FAILURES_NEVER_REACHED,
        };
        if self.failures >= limit {
            self.reachable = Some(false);
        }
    }
}

/// A member's address was not checked yet.
#[derive(Debug)]
pub(super) struct Undecided;

/// A member address to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReachCheck {
    /// The member.
    pub node_id: String,
    /// The address it registered.
    pub address: String,
}

impl Registry {
    /// Why no member of `room` but `dead` can host, once every such
    /// member's address was checked; `None` while a check is still to
    /// decide.
    pub(super) fn no_host_reason(&self, room: &str, dead: Option<&str>) -> Option<String> {
        let others = || {
            self.rooms
                .get(room)
                .into_iter()
                .flat_map(|r| r.members.keys())
                .filter(move |id| Some(id.as_str()) != dead)
                .filter_map(|id| self.members.get(id))
        };
        if others().any(Member::undecided) {
            return None;
        }
        let count = |f: fn(&Member) -> bool| others().filter(|m| f(m)).count();
        let unreachable = count(|m| !m.record.client_only && m.reach.reachable == Some(false));
        let client_only = count(|m| m.record.client_only);
        let away = count(|m| m.can_host() && m.watchers == 0);
        let lost = match dead {
            Some(_) => "the host stopped renewing its lease and ",
            None => "",
        };
        Some(format!(
            "{lost}no member can host (unreachable from the relay: {unreachable}, \
             client-only: {client_only}, disconnected: {away})"
        ))
    }

    /// The member addresses due for a check at `now`, marked as under way:
    /// a member not reached yet is retried soon, a reachable one every
    /// [`CHECK_PERIOD`]. Client-only members serve nothing to check.
    pub fn due_checks(&mut self, now: Instant) -> Vec<ReachCheck> {
        self.members
            .values_mut()
            .filter(|m| !m.record.client_only && m.reach.due(now))
            .map(|m| {
                m.reach.in_flight = true;
                ReachCheck {
                    node_id: m.record.node_id.clone(),
                    address: m.record.address.clone(),
                }
            })
            .collect()
    }

    /// Takes the result of `check`: whether the relay `reached` the
    /// member's address. Ignored if the member left or moved meanwhile.
    pub fn record_check(&mut self, check: &ReachCheck, reached: bool, now: Instant) {
        let Some(member) = self.members.get_mut(&check.node_id) else {
            return;
        };
        if member.record.address != check.address {
            return;
        }
        let before = (member.reach.reachable, member.reach.ever_reached);
        member.reach.record(reached, now);
        member.record.reachable = member.reach.reachable == Some(true);
        if (member.reach.reachable, member.reach.ever_reached) != before {
            // Who may host changed: rooms waiting for a host look again.
            self.schedule.stir();
            tracing::info!(name = %member.record.name, address = %check.address,
                           reachable = member.record.reachable, "member reachability changed");
        }
    }
}
