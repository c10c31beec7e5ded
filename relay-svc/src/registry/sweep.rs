//! The lease sweep: when each room's lease (or vacancy wait) ends, and
//! which rooms need a host now. The service sweeps every few
//! milliseconds, so a sweep touches only rooms whose time came, plus the
//! rooms waiting for a host when something that could give them one
//! changed (a member joined, left, connected or was checked).

use super::reach::Undecided;
use super::Registry;
use chat_proto::pb::relay::{HostRecord, MemberRecord};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// How long after a hosting node's last watch stream closed (and with no
/// renewal for half a lease) the relay hands its rooms to their named
/// successors, before their leases run out: a process that dies closes its
/// connections at once, while a node that only lost its stream watches or
/// renews again in time.
pub const HOST_GONE_GRACE: Duration = Duration::from_millis(100);

/// When each room next needs a look.
#[derive(Debug, Default)]
pub(super) struct Schedule {
    /// (time, room): the room needs a host once `now` is past the time.
    timers: BTreeSet<(Instant, String)>,
    /// Each timed room's entry in `timers`.
    timer_of: HashMap<String, Instant>,
    /// Rooms that need a host now (none could be chosen yet).
    pending: BTreeSet<String>,
    /// Something changed that could let a pending room get a host.
    stirred: bool,
}

impl Schedule {
    /// Looks at `room` once `now` is past `at`.
    fn set_timer(&mut self, room: &str, at: Instant) {
        self.forget(room);
        self.timers.insert((at, room.to_string()));
        self.timer_of.insert(room.to_string(), at);
    }

    /// `room` needs a host now: look at it at the next sweep.
    fn set_pending(&mut self, room: &str) {
        self.forget(room);
        self.pending.insert(room.to_string());
        self.stirred = true;
    }

    /// Looks at pending `room` again once `now` is past `at` too.
    fn also_at(&mut self, room: &str, at: Instant) {
        if let Some(old) = self.timer_of.insert(room.to_string(), at) {
            self.timers.remove(&(old, room.to_string()));
        }
        self.timers.insert((at, room.to_string()));
    }

    /// Looks at `room` at `at` if that is sooner than planned (a room
    /// pending already is looked at sooner still).
    fn sooner(&mut self, room: &str, at: Instant) {
        match self.timer_of.get(room) {
            Some(planned) if *planned <= at => {}
            Some(_) => self.set_timer(room, at),
            None if self.pending.contains(room) => {}
            None => self.set_timer(room, at),
        }
    }

    /// Stops looking at `room`.
    pub(super) fn forget(&mut self, room: &str) {
        if let Some(at) = self.timer_of.remove(room) {
            self.timers.remove(&(at, room.to_string()));
        }
        self.pending.remove(room);
    }

    /// Something changed that could give a pending room a host.
    pub(super) fn stir(&mut self) {
        self.stirred = true;
    }

    /// The rooms to look at `now`: those whose time passed (now pending),
    /// and every pending room if something changed.
    fn due(&mut self, now: Instant) -> Vec<String> {
        let mut fired = Vec::new();
        while let Some((at, room)) = self.timers.first() {
            if now <= *at {
                break;
            }
            let room = room.clone();
            // Pending from now on; looked at in this sweep (no need to
            // look at every other pending room for it).
            self.forget(&room);
            self.pending.insert(room.clone());
            fired.push(room);
        }
        if std::mem::take(&mut self.stirred) {
            return self.pending.iter().cloned().collect();
        }
        fired
    }

    /// Rooms with a timer, and rooms pending (for tests).
    #[cfg(test)]
    pub(super) fn sizes(&self) -> (usize, usize) {
        (self.timers.len(), self.pending.len())
    }
}

impl Registry {
    /// Promotes a new host in every room whose lease ran out, fills
    /// vacancies nobody re-asserted, and gives new rooms their first
    /// host. Returns the records that changed.
    pub fn check_lease(&mut self, now: Instant) -> Vec<HostRecord> {
        let due = self.schedule.due(now);
        due.iter()
            .filter_map(|room| self.settle_room(room, now))
            .collect()
    }

    /// Sets when to look at `room` next, from its state: at its lease's
    /// end (plus the margin), at its vacancy's end, or now (it needs a
    /// host).
    pub(super) fn reschedule(&mut self, room: &str) {
        let Some(state) = self.rooms.get(room) else {
            self.schedule.forget(room);
            return;
        };
        let wake = match (&state.host, &state.lease, state.vacant_since) {
            // The host stops acknowledging at the deadline by its own clock
            // (measured from before its renewal reached us); the margin
            // covers clock rate differences.
            (Some(_), Some(lease), _) => Some(lease.deadline + self.lease_margin()),
            (None, _, Some(since)) => Some(since + self.vacancy_wait()),
            _ => None,
        };
        match wake {
            Some(at) => self.schedule.set_timer(room, at),
            None => self.schedule.set_pending(room),
        }
    }

    /// The hosting node `node_id` closed its last watch stream: its rooms
    /// are looked at again once [`HOST_GONE_GRACE`] has passed.
    pub(super) fn host_went_away(&mut self, node_id: &str, now: Instant) {
        let hosted: Vec<String> = self
            .rooms
            .values()
            .filter(|r| r.lease.is_some() && r.host.as_ref().is_some_and(|h| h.node_id == node_id))
            .map(|r| r.name.clone())
            .collect();
        for room in hosted {
            self.schedule.sooner(&room, now + HOST_GONE_GRACE);
        }
    }

    /// Until when `room`'s host still holds it (`None`: no longer). Its
    /// lease (with the margin) holds it, unless its node went away: its
    /// watch streams closed [`HOST_GONE_GRACE`] ago and it has not renewed
    /// for half a lease (two renewals missed), while the successor it
    /// named can take over. Moving the room then, before the lease ends,
    /// loses nothing and cannot give it two hosts: the old host
    /// acknowledges only what that successor holds, names no other
    /// successor without the relay, and the successor, host at a newer
    /// epoch, refuses its copies. A live host that only lost its stream
    /// renews in time and keeps the room.
    fn held_until(&self, room: &str, now: Instant) -> Option<Instant> {
        let state = self.rooms.get(room)?;
        let (Some(host), Some(lease)) = (&state.host, &state.lease) else {
            return None;
        };
        let lease_end = lease.deadline + self.lease_margin();
        if now > lease_end {
            return None;
        }
        if !self.successor_could_take_over(state) {
            return Some(lease_end);
        }
        // A host the relay forgot holds nothing.
        let member = self.members.get(&host.node_id)?;
        let renewed_at = lease.deadline.checked_sub(self.lease_duration)?;
        if member.watchers > 0 || member.last_seen < renewed_at {
            // Watching, or renewed since its watch closed: alive.
            return Some(lease_end);
        }
        let gone_at =
            (member.last_seen + HOST_GONE_GRACE).max(renewed_at + self.lease_duration / 2);
        (now < gone_at).then_some(gone_at.min(lease_end))
    }

    /// Gives a room that needs a host one, or says why none can be.
    /// Returns the room's record if it changed.
    fn settle_room(&mut self, room: &str, now: Instant) -> Option<HostRecord> {
        if let Some(until) = self.held_until(room, now) {
            self.schedule.set_timer(room, until);
            return None;
        }
        let state = self.rooms.get(room)?;
        let before = state.record();
        let dead = state.host.as_ref().map(|h| h.node_id.clone());
        let next = match self.choose_host(room, now) {
            Ok(next) => next,
            // A member that decides is still being checked, or the
            // successor of a vacant room is still to come back: wait for
            // it (and look again when its wait ends).
            Err(Undecided) => {
                if let Some(at) = self.successor_wait_ends(room) {
                    self.schedule.also_at(room, at);
                }
                return None;
            }
        };
        match next {
            Some(next) => {
                self.log_promotion(room, dead.as_deref(), &next, now);
                self.promote(room, &next, now)
            }
            None => {
                // Nobody can take the room: say why, once every member was
                // checked (and look again when something changes). A host
                // whose lease ran out has lost its term: the relay gave up
                // on it, so it may not renew it (it may get a new one).
                let reason = self.no_host_reason(room, dead.as_deref());
                if let Some(state) = self.rooms.get_mut(room) {
                    if reason.is_some() {
                        state.lease = None;
                    }
                    state.no_host = reason;
                }
                self.touch(room);
            }
        }
        let after = self.rooms.get(room)?.record();
        (after != before).then_some(after).flatten()
    }

    /// Says in the log why `next` takes `room`, and from whom.
    fn log_promotion(&self, room: &str, dead: Option<&str>, next: &MemberRecord, now: Instant) {
        let Some(state) = self.rooms.get(room) else {
            return;
        };
        let name_of = |id: &str| {
            self.members
                .get(id)
                .map_or_else(|| id.to_string(), |m| m.record.name.clone())
        };
        let named = state.lease.as_ref().and_then(|l| l.successor.as_deref());
        let role = if named == Some(next.node_id.as_str()) {
            "its successor"
        } else {
            "a member"
        };
        let Some(dead) = dead else {
            return match state.vacant_since {
                Some(_) => tracing::warn!(%room, to = %next.name,
                    "made {role} host: the room's host did not come back after a relay restart"),
                None => tracing::info!(%room, to = %next.name, "made the room's first host"),
            };
        };
        let from = name_of(dead);
        let lapsed = state
            .lease
            .as_ref()
            .is_none_or(|l| now > l.deadline + self.lease_margin());
        // Why the named successor was passed over, when it was.
        let passed_over = named.filter(|id| *id != next.node_id).map(|id| {
            let why = match self.members.get(id) {
                None => "forgotten",
                Some(m) if m.watchers == 0 => "not watching",
                Some(m) if !m.may_take_over_as_successor() => "never reached",
                Some(_) => "the host itself",
            };
            format!("{} ({why})", name_of(id))
        });
        if lapsed {
            tracing::warn!(%room, %from, to = %next.name, ?passed_over,
                "promoted {role} after the host's lease ran out");
        } else {
            tracing::warn!(%room, %from, to = %next.name,
                "promoted {role}: the host's node went away (its watch stream closed)");
        }
    }

    /// Makes `next` host of `room` at the next epoch.
    fn promote(&mut self, room: &str, next: &MemberRecord, now: Instant) {
        let Some(epoch) = self.highest_epoch.checked_add(1) else {
            tracing::error!("epochs are exhausted; no host can be promoted");
            return;
        };
        let previous = self.rooms.get(room).map_or(0, |r| r.epoch());
        self.set_host(room, epoch, previous, next, now);
    }
}
