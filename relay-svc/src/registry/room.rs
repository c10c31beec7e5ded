//! One room's state: its members and what each claimed of it, its host
//! record, lease and successor, its vacancy after a relay restart, and why
//! it has no host. Rooms come into being with their first member and are
//! forgotten with their last.

use super::{room_name, Claim, Registry, RegistryError, MAX_ROOMS_PER_MEMBER};
use chat_proto::pb::relay::{HostRecord, HostTerm, MemberRecord, RoomInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::time::Instant;

/// Rooms per ListRooms page unless asked otherwise, and at most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// What a member showed of a room when it joined (or registered again):
/// failover promotes the freshest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Holding {
    /// Epoch of the newest term of the room it has seen.
    pub(super) known_epoch: u64,
    /// Head of its replica of the room.
    pub(super) replica_head: u64,
    /// The host term its replica follows.
    pub(super) replica_term: u64,
}

/// The host's right to serve, renewed by the host.
#[derive(Debug, Clone)]
pub(super) struct Lease {
    pub(super) deadline: Instant,
    pub(super) successor: Option<String>,
}

/// One room.
#[derive(Debug)]
pub(super) struct RoomState {
    pub(super) name: String,
    /// Node id -> what it holds of the room (sorted: ties break the same
    /// way every time).
    pub(super) members: BTreeMap<String, Holding>,
    pub(super) host: Option<HostRecord>,
    /// The host's lease; `None` once the relay ended the host's term (its
    /// lease ran out and nobody could take the room over).
    pub(super) lease: Option<Lease>,
    /// When the current term began (the term limit counts from it).
    pub(super) term_started: Option<Instant>,
    /// The host of an ended term asked to renew it since: it is alive, so
    /// it may have the room again, in a new term, if nobody else can.
    pub(super) ended_host_back: bool,
    /// Since when members that knew a host are waiting for it to
    /// re-assert itself (after a relay restart).
    pub(super) vacant_since: Option<Instant>,
    /// Since when the host holds a term it re-asserted after a relay
    /// restart (or a takeover by another relay instance): until it names a
    /// successor again, the relay does not know who holds what it
    /// acknowledged, so a failover waits for the copy that follows the
    /// term, as a vacancy does.
    pub(super) restored_since: Option<Instant>,
    /// The newest epoch of the room before the relay forgot it (its
    /// members all gone), 0 if it did not: a copy of it is waited for.
    pub(super) forgotten_epoch: u64,
    /// Why the room has no host although it needs one: set when a host is
    /// wanted (a lease ran out, a vacancy) but every member was checked and
    /// none can host.
    pub(super) no_host: Option<String>,
    /// As the host last reported with its lease.
    pub(super) activated: bool,
    /// Who may hold copies of the current term's log.
    pub(super) copy_permits: super::copies::Permits,
}

impl RoomState {
    fn new(name: String) -> Self {
        Self {
            name,
            members: BTreeMap::new(),
            host: None,
            lease: None,
            term_started: None,
            ended_host_back: false,
            vacant_since: None,
            restored_since: None,
            forgotten_epoch: 0,
            no_host: None,
            activated: false,
            copy_permits: Default::default(),
        }
    }

    /// Whether the relay ended the host's term (its lease ran out and
    /// nobody could take the room over).
    pub(super) fn term_ended(&self) -> bool {
        self.host.is_some() && self.lease.is_none()
    }

    /// The epoch of the room's current term (0 before its first).
    pub(super) fn epoch(&self) -> u64 {
        self.host.as_ref().map_or(0, |h| h.epoch)
    }

    /// The record to publish: the host's, or, when the room needs a host
    /// and no member can be one, a record without certificate that says
    /// why. `None` before any host.
    pub(super) fn record(&self) -> Option<HostRecord> {
        match &self.no_host {
            Some(reason) => Some(HostRecord {
                epoch: self.epoch(),
                no_host_reason: reason.clone(),
                room: self.name.clone(),
                ..HostRecord::default()
            }),
            None => self.host.clone(),
        }
    }
}

/// Checks a claim list (an empty one claims "lobby", holding nothing):
/// at most `max` (itself at most [`MAX_ROOMS_PER_MEMBER`]), each room
/// valid and named once, each term for its own room, and a hosting
/// claim's term naming `node_id`. Returns the claims with their rooms'
/// full names.
pub(super) fn checked_claims(
    claims: &[Claim],
    node_id: &str,
    max: usize,
) -> Result<Vec<Claim>, RegistryError> {
    let max = max.min(MAX_ROOMS_PER_MEMBER);
    if claims.len() > max {
        return Err(RegistryError::TooManyRooms(max));
    }
    if claims.is_empty() {
        return Ok(vec![checked_claim(&Claim::default(), node_id)?]);
    }
    let mut seen = BTreeSet::new();
    claims
        .iter()
        .map(|claim| {
            let claim = checked_claim(claim, node_id)?;
            if !seen.insert(claim.room.clone()) {
                return Err(RegistryError::DuplicateRoom(claim.room));
            }
            Ok(claim)
        })
        .collect()
}

/// Checks one claim (see [`checked_claims`]).
pub(super) fn checked_claim(claim: &Claim, node_id: &str) -> Result<Claim, RegistryError> {
    let room = room_name(&claim.room)?;
    if let Some(term) = &claim.latest_term {
        let term_room = chat_proto::rules::room_or_default(&term.room);
        if term_room != room {
            return Err(RegistryError::TermOfOtherRoom {
                room,
                term_room: term_room.to_string(),
            });
        }
        if claim.hosting && term.node_id != node_id {
            return Err(RegistryError::NotHost(node_id.into()));
        }
    }
    Ok(Claim {
        room,
        ..claim.clone()
    })
}

impl Registry {
    /// Puts a registered node in a room (creating it), or updates what it
    /// claims of a room it is in; answers the room's record, if any.
    pub fn join_room(
        &mut self,
        node_id: &str,
        token: &str,
        claim: &Claim,
        now: Instant,
    ) -> Result<Option<HostRecord>, RegistryError> {
        let member = self.authenticate(node_id, token)?;
        let claim = checked_claim(claim, node_id)?;
        if !member.rooms.contains(&claim.room) && member.rooms.len() >= self.max_rooms_per_member {
            return Err(RegistryError::TooManyRooms(self.max_rooms_per_member));
        }
        self.check_room_space(std::slice::from_ref(&claim))?;
        self.enter_room(node_id, &claim, now);
        Ok(self.record(&claim.room))
    }

    /// Refuses `claims` (checked) if the rooms among them that do not
    /// exist yet would take the relay past its most rooms.
    pub(super) fn check_room_space(&self, claims: &[Claim]) -> Result<(), RegistryError> {
        let new = claims
            .iter()
            .filter(|c| !self.rooms.contains_key(&c.room))
            .count();
        if new > 0 && self.rooms.len().saturating_add(new) > self.max_rooms {
            return Err(RegistryError::RelayFull(self.max_rooms));
        }
        Ok(())
    }

    /// Takes a node out of a room; the room is forgotten with its last
    /// member. A host that leaves keeps its term until its lease runs out
    /// (it may not renew it any more): then its successor takes over.
    pub fn leave_room(
        &mut self,
        node_id: &str,
        token: &str,
        room: &str,
    ) -> Result<(), RegistryError> {
        self.authenticate(node_id, token)?;
        let room = self.room(room)?.name.clone();
        if !self.is_in_room(node_id, &room) {
            return Err(RegistryError::NotInRoom {
                node: node_id.to_string(),
                room,
            });
        }
        self.exit_room(node_id, &room);
        Ok(())
    }

    /// The room `room` names, if someone is in it.
    pub(super) fn room(&self, room: &str) -> Result<&RoomState, RegistryError> {
        let name = room_name(room)?;
        self.rooms
            .get(&name)
            .ok_or(RegistryError::UnknownRoom(name))
    }

    /// The published record of `room` (a valid name or empty): `None` for
    /// a room nobody is in or that has no host yet.
    pub fn record(&self, room: &str) -> Option<HostRecord> {
        self.room(room).ok().and_then(RoomState::record)
    }

    /// The current host of `room`, or why there is none.
    pub fn current_host(&self, room: &str) -> Result<HostRecord, RegistryError> {
        let room = self.room(room)?;
        match (&room.no_host, &room.host) {
            (Some(reason), _) => Err(RegistryError::NoHostable(reason.clone())),
            (None, Some(host)) => Ok(host.clone()),
            (None, None) => Err(RegistryError::NoHost),
        }
    }

    /// The rooms whose names sort after `after`, at most `limit` of them
    /// (0: 100; at most 1000), and whether more follow.
    pub fn list_rooms(&self, after: &str, limit: u32) -> (Vec<RoomInfo>, bool) {
        let limit = match usize::try_from(limit).unwrap_or(MAX_PAGE) {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let range = (Bound::Excluded(after), Bound::Unbounded);
        let mut page = self.rooms.range::<str, _>(range);
        let rooms = page
            .by_ref()
            .take(limit)
            .map(|(_, r)| self.info(r))
            .collect();
        (rooms, page.next().is_some())
    }

    fn info(&self, room: &RoomState) -> RoomInfo {
        let mut members: Vec<String> = room
            .members
            .keys()
            .filter_map(|id| self.members.get(id))
            .map(|m| m.record.name.clone())
            .collect();
        members.sort();
        let record = room.record().unwrap_or_default();
        RoomInfo {
            name: room.name.clone(),
            members,
            host: record.name,
            epoch: record.epoch,
            activated: room.activated,
        }
    }

    /// Puts `node_id` in the claim's (checked) room, creating the room,
    /// and settles the room's host with what the node claims.
    pub(super) fn enter_room(&mut self, node_id: &str, claim: &Claim, now: Instant) {
        let Some(member) = self.members.get_mut(node_id) else {
            return;
        };
        member.rooms.insert(claim.room.clone());
        let created = !self.rooms.contains_key(&claim.room);
        let in_restore_wait = self.in_restore_wait(now);
        let forgotten = match created {
            true => self.forgotten.take(&claim.room),
            false => None,
        };
        let room = self
            .rooms
            .entry(claim.room.clone())
            .or_insert_with(|| RoomState::new(claim.room.clone()));
        if created {
            // A room forgotten earlier waits for a copy of its last term,
            // as after a relay restart.
            room.vacant_since = in_restore_wait.or(forgotten.map(|_| now));
            room.forgotten_epoch = forgotten.unwrap_or(0);
        }
        let holding = Holding {
            known_epoch: claim.known_epoch(),
            replica_head: claim.replica_head,
            replica_term: claim.replica_term,
        };
        room.members.insert(node_id.to_string(), holding);
        self.highest_epoch = self.highest_epoch.max(holding.known_epoch);
        self.touch(&claim.room);
        self.schedule.stir();
        self.settle_claim(node_id, claim, now);
        self.reschedule(&claim.room);
    }

    /// When the restore happened, if `now` is within the vacancy wait
    /// after a relay restart.
    fn in_restore_wait(&self, now: Instant) -> Option<Instant> {
        self.restored_at
            .filter(|&t| now.saturating_duration_since(t) <= self.vacancy_wait())
    }

    /// Makes the claimant host when it re-asserts a newer term of the
    /// room than the relay knows (after a relay restart; see
    /// [`Registry::honours`]). A node that knew an earlier relay
    /// process's host starts a vacancy: the host gets the vacancy wait to
    /// re-assert itself before anyone else is made host. Otherwise a room
    /// without a host gets one at the next [`Registry::check_lease`], once
    /// the relay reached a member.
    fn settle_claim(&mut self, node_id: &str, claim: &Claim, now: Instant) {
        // A client-only member serves nothing: it cannot hold a term.
        // (Others re-assert a term before the relay reached them again.)
        let Some(member) = self.members.get(node_id).filter(|m| !m.record.client_only) else {
            return;
        };
        let member = member.record.clone();
        let Some(current) = self.rooms.get(&claim.room).map(RoomState::epoch) else {
            return;
        };
        let reasserted = claim
            .latest_term
            .as_ref()
            .filter(|t| claim.hosting && t.epoch > current)
            .filter(|t| self.honours(t, &member));
        let from_earlier_process = claim
            .latest_term
            .as_ref()
            .is_some_and(|t| self.issued_before_start(t));
        if let Some(term) = reasserted {
            let (epoch, previous) = (term.epoch, term.previous_epoch);
            self.set_host(&claim.room, epoch, previous, &member, now);
            if let Some(room) = self.rooms.get_mut(&claim.room) {
                room.restored_since = Some(now);
            }
        } else if let Some(room) = self.rooms.get_mut(&claim.room) {
            // Members coming back with copies of a room whose term ended
            // (its host and successor went away, every member stopped):
            // as after a relay restart, the room waits for the copy that
            // follows its newest term rather than taking the first back.
            let ended_with_copies = room.term_ended() && claim.replica_head > 0;
            if (room.host.is_none() && from_earlier_process) || ended_with_copies {
                room.vacant_since.get_or_insert(now);
            }
        }
    }

    /// Whether `member` may re-assert `term`, which is newer than the
    /// room's: only a term an earlier relay process issued (this process
    /// holds every term it issued, unless it forgot the room, which then
    /// starts over with a new epoch), and only at the address it was
    /// issued for (a term is never reissued elsewhere).
    fn honours(&self, term: &HostTerm, member: &MemberRecord) -> bool {
        let earlier_process = self.issued_before_start(term);
        let same_address = term.address == member.address;
        if !(earlier_process && same_address) {
            tracing::info!(room = %term.room, epoch = term.epoch, name = %member.name,
                           earlier_process, same_address, "a claim to host is not honoured");
        }
        earlier_process && same_address
    }

    /// Whether an earlier relay process issued `term` (this one holds every
    /// term it issued).
    fn issued_before_start(&self, term: &HostTerm) -> bool {
        term.issued_at_unix_ms < self.started_unix_ms
    }

    /// Takes `node_id` out of `room`, forgetting the room if it was the
    /// last member.
    pub(super) fn exit_room(&mut self, node_id: &str, room: &str) {
        if let Some(member) = self.members.get_mut(node_id) {
            member.rooms.remove(room);
        }
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        state.members.remove(node_id);
        self.schedule.stir();
        if state.members.is_empty() {
            self.drop_room(room);
        }
    }

    /// Forgets a room nobody is in.
    fn drop_room(&mut self, room: &str) {
        let Some(state) = self.rooms.remove(room) else {
            return;
        };
        self.forgotten
            .remember(room, state.epoch().max(state.forgotten_epoch));
        if let Some(host) = &state.host {
            self.count_hosting(Some(&host.node_id), None);
        }
        self.schedule.forget(room);
        self.touch(room);
    }
}
