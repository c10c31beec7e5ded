//! Copy permits: which members may hold a room's log for its host. A
//! member accepts a Replicate only with the relay's permit naming it for
//! that term, so a host (a member's machine, possibly modified) cannot
//! push copies into members the relay would never name successor.
//!
//! The relay grants a permit to a member of the room it would name
//! successor (it serves an address the relay reached, has an open watch,
//! is not client-only), asked by the room's current host, and to at most
//! [`PERMITS_PER_WINDOW`] distinct members of a room within
//! [`PERMIT_WINDOW`] (an honest host asks for one member at a time and
//! only asks again when that one fails; a new term starts afresh).

use super::Registry;
use chat_proto::pb::relay::{CopyGrant, CopyPermit};
use std::time::{Duration, Instant};

/// Distinct members of one room that may be granted permits within
/// [`PERMIT_WINDOW`] (and within one term).
pub const PERMITS_PER_WINDOW: usize = 4;
/// How long a grant counts against [`PERMITS_PER_WINDOW`].
pub const PERMIT_WINDOW: Duration = Duration::from_secs(60);

/// The members granted permits in a room's current term, and when.
#[derive(Debug, Default)]
pub(super) struct Permits(Vec<(String, Instant)>);

impl Permits {
    /// A new term: nobody holds a permit for it.
    pub(super) fn clear(&mut self) {
        self.0.clear();
    }

    /// Records a grant to `node_id` at `now`; false if the room had its
    /// share of distinct members within the window.
    fn grant(&mut self, node_id: &str, now: Instant) -> bool {
        self.0
            .retain(|(_, at)| now.saturating_duration_since(*at) < PERMIT_WINDOW);
        if let Some(entry) = self.0.iter_mut().find(|(id, _)| id == node_id) {
            entry.1 = now;
            return true;
        }
        if self.0.len() >= PERMITS_PER_WINDOW {
            return false;
        }
        self.0.push((node_id.to_string(), now));
        true
    }
}

impl Registry {
    /// A permit for `node_id` to hold copies of `room` from `host`, the
    /// host of `epoch` (checked by the caller), if the relay would name it
    /// successor and the room has not had its share of permits.
    pub(super) fn copy_permit(
        &mut self,
        room: &str,
        epoch: u64,
        host: &str,
        node_id: &str,
        now: Instant,
    ) -> Option<CopyPermit> {
        if node_id.is_empty() || node_id == host {
            return None;
        }
        let in_room = self
            .rooms
            .get(room)
            .is_some_and(|r| r.members.contains_key(node_id));
        let eligible = self
            .members
            .get(node_id)
            .is_some_and(|m| m.may_succeed() && m.is_connected());
        if !(in_room && eligible) {
            return None;
        }
        let state = self.rooms.get_mut(room)?;
        if !state.copy_permits.grant(node_id, now) {
            tracing::warn!(
                room,
                epoch,
                "the host asked copy permits for too many members; refused"
            );
            return None;
        }
        Some(self.key.issue_copy_permit(&CopyGrant {
            room: room.to_string(),
            epoch,
            node_id: node_id.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_grants_a_few_distinct_members_a_window() {
        let mut p = Permits::default();
        let t0 = Instant::now();
        for id in ["a", "b", "c", "d"] {
            assert!(p.grant(id, t0), "{id}");
        }
        assert!(!p.grant("e", t0), "a fifth member within the window");
        assert!(p.grant("b", t0), "one granted before may be granted again");
        assert!(p.grant("e", t0 + PERMIT_WINDOW), "the window has passed");
        p.clear();
        for id in ["f", "g", "h"] {
            assert!(p.grant(id, t0), "a new term starts afresh: {id}");
        }
    }
}
