//! Host terms and leases of a room: the host renews its lease and names
//! its successor; a migration moves the term by compare-and-set on the
//! room's epoch. Every new term takes the next epoch of the relay's one
//! counter and names the room's term before it.

use super::room::Lease;
use super::{room_name, Registry, RegistryError};
use chat_proto::pb::relay::{CopyPermit, HostRecord, HostTerm, MemberRecord};
use chat_proto::trust;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Shortest wait for a host to re-assert itself after a relay restart.
pub(super) const MIN_VACANCY_WAIT: Duration = Duration::from_secs(1);

/// A host's lease renewal for one room.
#[derive(Debug, Clone, Default)]
pub struct Renewal {
    /// The room (empty: "lobby").
    pub room: String,
    /// The term the caller hosts.
    pub epoch: u64,
    /// The member it names successor (empty keeps the one named before).
    pub successor: String,
    /// The room is active (for ListRooms).
    pub activated: bool,
    /// The host commits alone: forget the successor named before.
    pub no_successor: bool,
    /// The member the host asks a copy permit for (empty: none).
    pub copy_to: String,
}

/// What a renewal answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseGrant {
    /// Members of the room that may not be named successor.
    pub unhostable: Vec<String>,
    /// How many rooms each other member of the room hosts now.
    pub rooms_hosted: HashMap<String, u32>,
    /// The permit asked for (see `copies`), if granted.
    pub copy_permit: Option<CopyPermit>,
}

impl Registry {
    /// The host renews its lease of a room and names its successor.
    /// Naming a member that may not succeed (see `Member::may_succeed`),
    /// or one not in the room, keeps the successor named before.
    pub fn renew_lease(
        &mut self,
        caller: &str,
        token: &str,
        renewal: &Renewal,
        now: Instant,
    ) -> Result<LeaseGrant, RegistryError> {
        self.authenticate(caller, token)?;
        let name = room_name(&renewal.room)?;
        self.check_host(&name, caller, renewal.epoch)?;
        self.check_renewable(&name, caller, renewal.epoch, now)?;
        let mut grant = self.lease_grant(&name, caller);
        grant.copy_permit = self.copy_permit(&name, renewal.epoch, caller, &renewal.copy_to, now);
        let named = self
            .rooms
            .get(&name)
            .filter(|r| r.members.contains_key(&renewal.successor))
            .and_then(|_| self.members.get(&renewal.successor))
            .filter(|m| m.may_succeed() && m.is_connected())
            .map(|m| m.record.node_id.clone());
        let deadline = now + self.lease_duration;
        if let Some(room) = self.rooms.get_mut(&name) {
            let before = room.lease.take().and_then(|l| l.successor);
            let successor = match renewal.no_successor {
                true => None,
                false => named.or(before),
            };
            room.lease = Some(Lease {
                deadline,
                successor,
            });
            room.activated = renewal.activated;
            // The host is back in time: the room needs nobody else.
            room.no_host = None;
        }
        self.touch(&name);
        self.reschedule(&name);
        Ok(grant)
    }

    /// Refuses to renew a term the relay ended or is ending: its lease ran
    /// out and nobody could take the room (the host may have it again in a
    /// new term, if nobody else can); or the named successor could take
    /// the room over while the relay cannot reach the host, or while the
    /// host keeps the room past the term limit. Refused, the lease runs out
    /// and the successor takes over as when a host dies. Only a named
    /// successor: it holds what the host acknowledged, while another
    /// member might not (a host that commits alone is never moved by
    /// force).
    fn check_renewable(
        &mut self,
        room: &str,
        caller: &str,
        epoch: u64,
        now: Instant,
    ) -> Result<(), RegistryError> {
        let ended = |why| Err(RegistryError::TermEnded { epoch, why });
        let state = self.room(room)?;
        if state.term_ended() {
            if let Some(state) = self.rooms.get_mut(room) {
                state.ended_host_back = true;
            }
            self.schedule.stir();
            return ended("its lease ran out");
        }
        if !self.successor_could_take_over(state) {
            return Ok(());
        }
        let unreachable = self
            .members
            .get(caller)
            .is_some_and(|m| m.reach.reachable == Some(false));
        if unreachable {
            return ended("the relay cannot reach the host's address");
        }
        let too_long = match (self.term_limit, state.term_started) {
            (Some(limit), Some(started)) => now.saturating_duration_since(started) > limit,
            _ => false,
        };
        if too_long {
            return ended("the host kept the room past the term limit");
        }
        Ok(())
    }

    /// The room's members that may not succeed, and how many rooms each
    /// member but `caller` hosts.
    fn lease_grant(&self, room: &str, caller: &str) -> LeaseGrant {
        let members = self
            .rooms
            .get(room)
            .into_iter()
            .flat_map(|r| r.members.keys())
            .filter_map(|id| self.members.get(id));
        let mut grant = LeaseGrant::default();
        for m in members {
            // A member without a watch stream would not be promoted: its
            // copy would not count, so the host must not wait for it.
            if !m.may_succeed() || !m.is_connected() {
                grant.unhostable.push(m.record.node_id.clone());
            }
            if m.record.node_id != caller {
                grant
                    .rooms_hosted
                    .insert(m.record.node_id.clone(), m.hosted);
            }
        }
        grant
    }

    /// Compare-and-set of `room`'s host from `from_epoch` (the caller's
    /// term) to `to_node_id`, at the next epoch. Refuses a target that
    /// may not host, and one that hosts more than its share while another
    /// member of the room hosts fewer.
    pub fn report_migration(
        &mut self,
        caller: &str,
        token: &str,
        room: &str,
        from_epoch: u64,
        to_node_id: &str,
        now: Instant,
    ) -> Result<HostRecord, RegistryError> {
        self.authenticate(caller, token)?;
        let name = room_name(room)?;
        self.check_host(&name, caller, from_epoch)?;
        if self.room(&name)?.term_ended() {
            return Err(RegistryError::TermEnded {
                epoch: from_epoch,
                why: "its lease ran out",
            });
        }
        let target = self.migration_target(&name, to_node_id)?;
        let epoch = self
            .highest_epoch
            .checked_add(1)
            .ok_or(RegistryError::StaleEpoch {
                given: from_epoch,
                current: from_epoch,
            })?;
        self.set_host(&name, epoch, from_epoch, &target, now);
        // Until the new host names its own successor, the old host holds the
        // whole room: promote it back if the new host dies at once.
        let room = self.rooms.get_mut(&name);
        if let Some(lease) = room.and_then(|r| r.lease.as_mut()) {
            lease.successor = Some(caller.to_string());
        }
        self.current_host(&name)
    }

    /// The member `to_node_id` if it may take `room` over.
    fn migration_target(
        &self,
        room: &str,
        to_node_id: &str,
    ) -> Result<MemberRecord, RegistryError> {
        let target = self
            .members
            .get(to_node_id)
            .ok_or_else(|| RegistryError::UnknownNode(to_node_id.into()))?;
        if !target.rooms.contains(room) {
            return Err(RegistryError::NotInRoom {
                node: to_node_id.to_string(),
                room: room.to_string(),
            });
        }
        if let Some(why) = target.cannot_host() {
            return Err(RegistryError::CannotHost {
                name: target.record.name.clone(),
                why,
            });
        }
        self.check_fair_share(target)?;
        Ok(target.record.clone())
    }

    /// Checks that `caller` may act as the host of `room` at `epoch`.
    pub(super) fn check_host(
        &self,
        room: &str,
        caller: &str,
        epoch: u64,
    ) -> Result<(), RegistryError> {
        let state = self.room(room)?;
        if !state.members.contains_key(caller) {
            return Err(RegistryError::NotInRoom {
                node: caller.to_string(),
                room: state.name.clone(),
            });
        }
        let host = state.host.as_ref().ok_or(RegistryError::NoHost)?;
        if host.epoch != epoch {
            return Err(RegistryError::StaleEpoch {
                given: epoch,
                current: host.epoch,
            });
        }
        if host.node_id != caller {
            return Err(RegistryError::NotHost(caller.into()));
        }
        Ok(())
    }

    /// Makes `member` host of `room` at `epoch`, after the room's term at
    /// `previous_epoch`, with a full lease to start renewing.
    pub(super) fn set_host(
        &mut self,
        room: &str,
        epoch: u64,
        previous_epoch: u64,
        member: &MemberRecord,
        now: Instant,
    ) {
        let term = HostTerm {
            room: room.to_string(),
            epoch,
            node_id: member.node_id.clone(),
            address: member.address.clone(),
            name: member.name.clone(),
            public_key: member.public_key.clone(),
            issued_at_unix_ms: trust::now_unix_ms(),
            previous_epoch,
        };
        let record = HostRecord {
            epoch,
            node_id: member.node_id.clone(),
            address: member.address.clone(),
            name: member.name.clone(),
            certificate: Some(self.key.issue_host_term(&term)),
            no_host_reason: String::new(),
            room: room.to_string(),
        };
        let deadline = now + self.lease_duration;
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let before = state.host.replace(record).map(|h| h.node_id);
        state.lease = Some(Lease {
            deadline,
            successor: None,
        });
        state.term_started = Some(now);
        state.copy_permits.clear();
        state.ended_host_back = false;
        state.vacant_since = None;
        state.restored_since = None;
        state.no_host = None;
        self.highest_epoch = self.highest_epoch.max(epoch);
        self.count_hosting(before.as_deref(), Some(&member.node_id));
        self.touch(room);
        self.reschedule(room);
    }

    /// How long past a lease's deadline the relay waits before promoting:
    /// the host fences itself at the deadline.
    pub fn lease_margin(&self) -> Duration {
        self.lease_duration / 10
    }

    /// How long a vacancy waits for the old host to re-assert itself: long
    /// enough for every node's re-registration backoff.
    pub(super) fn vacancy_wait(&self) -> Duration {
        (self.lease_duration * 2).max(MIN_VACANCY_WAIT)
    }
}
