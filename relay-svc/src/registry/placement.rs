//! Placement: which member hosts a room. The relay counts the rooms each
//! member hosts and spreads them: a room's first host is the live member
//! hosting fewest, failover prefers (after data safety) the freshest
//! member hosting fewest, and a migration that would put a member above
//! its fair share plus one is refused.

use super::reach::Undecided;
use super::room::{Holding, RoomState};
use super::{Member, Registry, RegistryError};
use chat_proto::pb::relay::MemberRecord;
use std::cmp::Ordering;
use std::time::Instant;

impl Member {
    /// Its watch stream is open: the node is alive.
    pub(super) fn is_connected(&self) -> bool {
        self.watchers > 0
    }

    /// Connected (its watch stream is open) and may host.
    fn live_and_hostable(&self) -> bool {
        self.is_connected() && self.can_host()
    }
}

impl Registry {
    /// Moves one hosted room from `from` to `to` in the counts.
    pub(super) fn count_hosting(&mut self, from: Option<&str>, to: Option<&str>) {
        if let Some(m) = from.and_then(|id| self.members.get_mut(id)) {
            m.hosted = m.hosted.saturating_sub(1);
        }
        if let Some(m) = to.and_then(|id| self.members.get_mut(id)) {
            m.hosted = m.hosted.saturating_add(1);
        }
    }

    /// How many rooms name `node_id` as host (for a member registering
    /// anew while rooms it hosted before are still in their lease).
    pub(super) fn rooms_hosted_by(&self, node_id: &str) -> u32 {
        let count = self
            .rooms
            .values()
            .filter(|r| r.host.as_ref().is_some_and(|h| h.node_id == node_id))
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// Rooms with a host per live member that serves, rounded up. A
    /// member counts once the relay reached it: a check failing for a
    /// moment on a loaded machine does not raise everyone's share.
    pub fn fair_share(&self) -> u32 {
        let (hosted, hosts) = self
            .members
            .values()
            .fold((0u64, 0u64), |(rooms, hosts), m| {
                let live = u64::from(m.watchers > 0 && m.may_take_over_as_successor());
                (rooms + u64::from(m.hosted), hosts + live)
            });
        let fair = hosted.div_ceil(hosts.max(1));
        u32::try_from(fair).unwrap_or(u32::MAX)
    }

    /// Refuses `target` when it hosts more than its fair share already:
    /// the move would put it above the share plus one. A refused host
    /// keeps the room, or tries another member (the lightest first).
    pub(super) fn check_fair_share(&self, target: &Member) -> Result<(), RegistryError> {
        let fair = self.fair_share();
        if target.hosted <= fair {
            return Ok(());
        }
        Err(RegistryError::Overloaded {
            name: target.record.name.clone(),
            hosted: target.hosted,
            fair,
        })
    }

    /// The room's members with what each holds of it.
    fn room_members<'a>(&'a self, room: &str) -> impl Iterator<Item = (&'a Member, Holding)> + 'a {
        self.rooms
            .get(room)
            .into_iter()
            .flat_map(|r| r.members.iter())
            .filter_map(|(id, holding)| self.members.get(id).map(|m| (m, *holding)))
    }

    /// Who should host `room` now that it needs a host: its first host,
    /// or the one taking over from a host that is gone.
    pub(super) fn choose_host(
        &self,
        room: &str,
        now: Instant,
    ) -> Result<Option<MemberRecord>, Undecided> {
        let Some(state) = self.rooms.get(room) else {
            return Ok(None);
        };
        if state.host.is_none() && state.vacant_since.is_none() {
            return self.first_host(room);
        }
        if state.host.is_none() || (state.term_ended() && state.vacant_since.is_some()) {
            return self.fill_vacancy(state, now);
        }
        let named = state.lease.as_ref().and_then(|l| l.successor.as_ref());
        if state.restored_since.is_some() && named.is_none() {
            // A host back after a relay restart that has not named its
            // successor since: who holds what it acknowledged is known
            // only from the members' claims.
            return self.fill_vacancy(state, now);
        }
        self.promotion_candidate(state)
    }

    /// Who takes a room whose host did not come back after a relay
    /// restart (or whose term ended and whose members came back with
    /// copies): a live member whose replica follows the room's newest
    /// term (that term's successor, which holds what its host
    /// acknowledged), the freshest first. Until one registers, the room
    /// waits, up to [`Registry::successor_wait_ends`]; then the freshest
    /// member takes it.
    fn fill_vacancy(
        &self,
        room: &RoomState,
        now: Instant,
    ) -> Result<Option<MemberRecord>, Undecided> {
        let newest = room.members.values().map(|h| h.known_epoch).max();
        let newest = newest.unwrap_or(0).max(room.forgotten_epoch);
        if newest == 0 {
            // Nobody saw a term of this room: no successor to wait for.
            return self.promotion_candidate(room);
        }
        let follows_newest = self
            .room_members(&room.name)
            .filter(|(m, h)| m.live_and_hostable() && h.replica_term >= newest)
            .max_by(fresher)
            .map(|(m, _)| m.record.clone());
        if follows_newest.is_some() {
            return Ok(follows_newest);
        }
        if self
            .successor_wait_ends(&room.name)
            .is_some_and(|end| now <= end)
        {
            return Err(Undecided);
        }
        self.promotion_candidate(room)
    }

    /// Until when a vacant room (or one whose host, back after a relay
    /// restart, named no successor yet) waits for the successor of its
    /// newest term: four vacancy waits from the start of the vacancy.
    pub(super) fn successor_wait_ends(&self, room: &str) -> Option<Instant> {
        let state = self.rooms.get(room)?;
        let since = state.vacant_since.or(state.restored_since)?;
        Some(since + self.vacancy_wait() * 4)
    }

    /// A room's first host: once every member of the room was checked
    /// (so the order of the checks does not decide), the live member that
    /// can host and hosts fewest rooms, the earliest registered first.
    fn first_host(&self, room: &str) -> Result<Option<MemberRecord>, Undecided> {
        if self.room_members(room).any(|(m, _)| m.undecided()) {
            return Err(Undecided);
        }
        Ok(self
            .room_members(room)
            .filter(|(m, _)| m.live_and_hostable())
            .min_by_key(|(m, _)| (m.hosted, m.joined))
            .map(|(m, _)| m.record.clone()))
    }

    /// The successor the host named if it may take over, else the live
    /// member that can host and holds the freshest (known epoch, replica),
    /// hosting fewest, by name. A successor the relay has not checked yet,
    /// or whose node is not watching (restarting, or reconnecting to the
    /// relay) while another member could take the room, is waited for: it
    /// holds what the host acknowledged, another member may not.
    fn promotion_candidate(&self, room: &RoomState) -> Result<Option<MemberRecord>, Undecided> {
        let dead = room.host.as_ref().map(|h| h.node_id.as_str());
        let live = |m: &Member| m.watchers > 0 && Some(m.record.node_id.as_str()) != dead;
        let preferred = room.lease.as_ref().and_then(|l| l.successor.as_deref());
        let successor = preferred
            .filter(|id| room.members.contains_key(*id) && Some(*id) != dead)
            .and_then(|id| self.members.get(id));
        let freshest = || {
            self.room_members(&room.name)
                .filter(|(m, _)| live(m) && m.can_host())
                .max_by(fresher)
                .map(|(m, _)| m.record.clone())
        };
        if let Some(m) = successor {
            if m.watchers == 0 && freshest().is_some() {
                // Its node's watch stream closed (it is restarting, or
                // its connection to the relay broke). It holds what the
                // host acknowledged and the other members may not: wait
                // for it to watch again, or to be forgotten after the
                // member grace; then the freshest takes the room.
                return Err(Undecided);
            }
            if m.watchers > 0 && m.may_take_over_as_successor() {
                return Ok(Some(m.record.clone()));
            }
            if m.watchers > 0 && m.undecided() {
                return Err(Undecided);
            }
        }
        Ok(freshest().or_else(|| self.host_back(room)))
    }

    /// The host whose term ended, when it asked to renew since and may
    /// still host: nobody else could take the room, and it holds it all.
    fn host_back(&self, room: &RoomState) -> Option<MemberRecord> {
        let host = room.host.as_ref().filter(|_| room.ended_host_back)?;
        let member = self.members.get(&host.node_id)?;
        member.live_and_hostable().then(|| member.record.clone())
    }

    /// Whether the successor the host named could take the room over now.
    pub(super) fn successor_could_take_over(&self, room: &RoomState) -> bool {
        let host = room.host.as_ref().map(|h| h.node_id.as_str());
        let Some(named) = room.lease.as_ref().and_then(|l| l.successor.as_deref()) else {
            return false;
        };
        Some(named) != host
            && matches!(self.promotion_candidate(room), Ok(Some(m)) if m.node_id == named)
    }
}

/// Orders candidates for failover: the freshest holding first, then the
/// one hosting fewer rooms, then the name sorting first.
fn fresher(a: &(&Member, Holding), b: &(&Member, Holding)) -> Ordering {
    let ((a, ha), (b, hb)) = (a, b);
    ha.cmp(hb)
        .then(b.hosted.cmp(&a.hosted))
        .then(b.record.name.cmp(&a.record.name))
}
