//! The relay's soft state: registered member nodes (global identity:
//! name, key, token, reachability, watch streams) and the rooms they are
//! in, each with its own host, lease and successor (`room`). Pure and
//! synchronous, so every rule is unit-tested without a network.

use chat_proto::pb::relay::{HostRecord, HostTerm, MemberRecord, NameGrant};
use chat_proto::rules;
use chat_proto::trust::{self, Keypair};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use names::Reserved;
use reach::Reach;
use room::RoomState;
use sweep::Schedule;

pub use error::RegistryError;
pub use lease::{LeaseGrant, Renewal};
pub use reach::{ReachCheck, CHECK_PERIOD};

/// How long a name grant proves its binding, unless configured.
const NAME_GRANT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest accepted node address, in bytes.
pub const MAX_ADDRESS_BYTES: usize = 255;
/// Most rooms one member may claim in one registration (the protocol's
/// bound), and may be in unless the relay allows fewer
/// ([`Registry::with_room_limits`]).
pub const MAX_ROOMS_PER_MEMBER: usize = 1000;

/// The session token `reg` presented, if it is this node's and well
/// formed; else a new one.
fn session_token_for(reg: &Registration, node_id: &str) -> String {
    match reg.session_token.split_once('.') {
        Some((id, secret)) if id == node_id && secret.len() <= 64 => reg.session_token.clone(),
        _ => format!("{node_id}.{}", uuid::Uuid::new_v4().simple()),
    }
}

/// Checks what a registrant calls itself and where it listens: a valid
/// name, and an address `host:port`, printable, at most
/// [`MAX_ADDRESS_BYTES`]. A client-only node listens nowhere: its address
/// may be empty.
pub fn check_fields(name: &str, address: &str, client_only: bool) -> Result<(), RegistryError> {
    rules::validate_name(name)?;
    if client_only && address.is_empty() {
        return Ok(());
    }
    let printable = || address.bytes().all(|b| b.is_ascii_graphic());
    if address.len() > MAX_ADDRESS_BYTES || !address.contains(':') || !printable() {
        return Err(RegistryError::InvalidAddress);
    }
    Ok(())
}

/// The room `room` names ("lobby" for empty), if its name is valid.
pub fn room_name(room: &str) -> Result<String, RegistryError> {
    let room = rules::room_or_default(room);
    rules::validate_room(room).map_err(|why| RegistryError::InvalidRoom {
        room: room.into(),
        why,
    })?;
    Ok(room.to_string())
}

/// What a node holds of one room, its certificate checked by the service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claim {
    /// The room (empty: "lobby").
    pub room: String,
    /// The newest host term of this room the node has seen (relay-signed).
    pub latest_term: Option<HostTerm>,
    /// The node hosts `latest_term` right now.
    pub hosting: bool,
    /// Head of the node's replica of the room.
    pub replica_head: u64,
    /// The host term whose log the replica follows (see
    /// `RoomClaim.replica_term`).
    pub replica_term: u64,
}

impl Claim {
    fn known_epoch(&self) -> u64 {
        self.latest_term.as_ref().map_or(0, |t| t.epoch)
    }
}

/// A registration whose signatures the service has checked: the
/// registrant holds `public_key`, and the terms in `rooms` and
/// `name_claimed_at` come from certificates this relay signed.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    /// Chat name.
    pub name: String,
    /// Where the node's servers listen.
    pub address: String,
    /// Token of an earlier registration (`node_id.secret`), or empty.
    pub session_token: String,
    /// The node's Ed25519 public key (proven held).
    pub public_key: Vec<u8>,
    /// Since when this key holds the name, from a name certificate it
    /// showed (Unix ms): the earliest claim wins a contested name.
    pub name_claimed_at: Option<i64>,
    /// The node serves nothing: it may not host and has no address.
    pub client_only: bool,
    /// The rooms the node is in (empty: "lobby", holding nothing).
    pub rooms: Vec<Claim>,
}

/// A registered node and its credentials.
#[derive(Debug, Clone)]
pub struct Member {
    /// Public record.
    pub record: MemberRecord,
    /// Secret of this registration.
    pub session_token: String,
    /// Since when this key holds the name (Unix ms).
    pub claimed_at: i64,
    watchers: u32,
    last_seen: Instant,
    reach: Reach,
    /// Registration order (kept when the node registers again): breaks
    /// ties in the choice of a room's first host.
    joined: u64,
    /// The rooms it is in.
    rooms: BTreeSet<String>,
    /// How many rooms it hosts now (placement).
    hosted: u32,
    /// Its name's confusable skeleton ([`rules::name_skeleton`]).
    skeleton: String,
}

impl Member {
    /// The rooms this member is in, by name.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.iter().map(String::as_str)
    }

    /// How many rooms this member hosts now.
    pub fn hosted(&self) -> u32 {
        self.hosted
    }
}

/// Members, rooms and the host record of each room.
#[derive(Debug)]
pub struct Registry {
    members: HashMap<String, Member>,
    /// Sorted, for ListRooms paging.
    rooms: BTreeMap<String, RoomState>,
    /// One counter for every room: each new term gets the next epoch.
    highest_epoch: u64,
    /// Members registered so far (orders them).
    joined: u64,
    lease_duration: Duration,
    /// When a relay restart restored the epoch: rooms created within the
    /// vacancy wait after it wait for their hosts to re-assert.
    restored_at: Option<Instant>,
    /// When each room's lease or vacancy wait ends, and the rooms that
    /// need a host now.
    schedule: Schedule,
    /// The last record published per room, and the rooms touched since.
    published: HashMap<String, HostRecord>,
    touched: BTreeSet<String>,
    /// Signs host terms and name grants.
    key: Keypair,
    /// How long the name grants (and the TLS certificates, which expire
    /// with them) the relay issues stay valid.
    grant_ttl: Duration,
    /// How long a term may be renewed before the relay moves the room on
    /// (`None`: for ever).
    term_limit: Option<Duration>,
    /// When this registry began (Unix ms): a term issued since was issued
    /// by this relay process, so only this process's rooms can hold it.
    started_unix_ms: i64,
    /// After a restart: names bound to a key before it, kept for that key
    /// until the member grace ends, so nobody else can take a connected
    /// member's name (or a look-alike) while it re-registers.
    reserved_names: HashMap<String, Reserved>,
    /// Most rooms the relay holds at once: a room beyond it is not created.
    max_rooms: usize,
    /// Most rooms one member may be in.
    max_rooms_per_member: usize,
    /// Rooms forgotten, with their newest epoch.
    forgotten: forgotten::Forgotten,
}

impl Registry {
    /// An empty registry whose host leases last `lease_duration`, signing
    /// with the relay's `key`.
    pub fn new(lease_duration: Duration, key: Keypair) -> Self {
        Self {
            members: HashMap::new(),
            rooms: BTreeMap::new(),
            highest_epoch: 0,
            joined: 0,
            lease_duration,
            restored_at: None,
            schedule: Schedule::default(),
            published: HashMap::new(),
            touched: BTreeSet::new(),
            key,
            grant_ttl: NAME_GRANT_TTL,
            term_limit: None,
            started_unix_ms: trust::now_unix_ms(),
            reserved_names: HashMap::new(),
            max_rooms: usize::MAX,
            max_rooms_per_member: MAX_ROOMS_PER_MEMBER,
            forgotten: Default::default(),
        }
    }

    /// Holds at most `max_rooms` rooms (a join or registration that would
    /// create another is refused) and puts each member in at most
    /// `per_member` rooms (itself at most [`MAX_ROOMS_PER_MEMBER`]).
    pub fn with_room_limits(mut self, max_rooms: usize, per_member: usize) -> Self {
        self.max_rooms = max_rooms;
        self.max_rooms_per_member = per_member.min(MAX_ROOMS_PER_MEMBER);
        self
    }

    /// Moves a room on when its host renews one term for longer than
    /// `limit`, as if its lease had run out: an honest host's schedule
    /// moves the room well before.
    pub fn with_term_limit(mut self, limit: Duration) -> Self {
        self.term_limit = Some(limit);
        self
    }

    /// Issues name grants valid for `ttl` (nodes renew them at two thirds).
    pub fn with_grant_ttl(mut self, ttl: Duration) -> Self {
        self.grant_ttl = ttl;
        self
    }

    /// After a restart: the highest epoch an earlier relay process issued.
    /// No newcomer is made host of a room until its host re-asserts its
    /// term (or the vacancy wait runs out), so no epoch is issued twice.
    pub fn restore_epoch(&mut self, epoch: u64, now: Instant) {
        if epoch > 0 {
            self.highest_epoch = self.highest_epoch.max(epoch);
            self.restored_at = Some(now);
        }
    }

    /// The highest epoch issued or seen.
    pub fn highest_epoch(&self) -> u64 {
        self.highest_epoch
    }

    /// Registers (or re-registers) a node and puts it in the rooms it
    /// claims; returns it and each claimed room's record, in claim order
    /// (none while a room has no host yet). `unix_ms` is the wall clock,
    /// for the name grant.
    ///
    /// Registering again REPLACES the node's rooms with those claimed: a
    /// node registers with everything it holds (after a relay restart,
    /// or to renew its name certificate), so a room it no longer claims
    /// is one it left.
    pub fn register(
        &mut self,
        reg: Registration,
        now: Instant,
        unix_ms: i64,
    ) -> Result<(Member, Vec<Option<HostRecord>>), RegistryError> {
        check_fields(&reg.name, &reg.address, reg.client_only)?;
        let node_id = trust::node_id_of(&reg.public_key);
        let claims = room::checked_claims(&reg.rooms, &node_id, self.max_rooms_per_member)?;
        self.check_room_space(&claims)?;
        self.check_reserved(&reg.name, &node_id, now)?;
        let claimed_at = self.settle_name(&reg, &node_id, unix_ms)?;
        let member = self.new_member(&reg, node_id.clone(), claimed_at, now, unix_ms);
        self.store_member(member);
        self.set_rooms(&node_id, &claims, now);
        let records = claims.iter().map(|c| self.record(&c.room)).collect();
        let member = self.members.get(&node_id).cloned();
        member
            .map(|m| (m, records))
            .ok_or(RegistryError::UnknownNode(node_id.into()))
    }

    /// Puts `node_id` in exactly the rooms of `claims`.
    fn set_rooms(&mut self, node_id: &str, claims: &[Claim], now: Instant) {
        let keep: BTreeSet<&str> = claims.iter().map(|c| c.room.as_str()).collect();
        let leaving: Vec<String> = self.members.get(node_id).map_or_else(Vec::new, |m| {
            m.rooms()
                .filter(|r| !keep.contains(r))
                .map(str::to_string)
                .collect()
        });
        for room in leaving {
            self.exit_room(node_id, &room);
        }
        for claim in claims {
            self.enter_room(node_id, claim, now);
        }
    }

    /// The member `reg` makes of `node_id`, holding its name since
    /// `claimed_at`, with a name certificate issued at `unix_ms`.
    fn new_member(
        &self,
        reg: &Registration,
        node_id: String,
        claimed_at: i64,
        now: Instant,
        unix_ms: i64,
    ) -> Member {
        let grant = NameGrant {
            name: reg.name.clone(),
            node_id: node_id.clone(),
            public_key: reg.public_key.clone(),
            issued_at_unix_ms: unix_ms,
            expires_at_unix_ms: unix_ms
                .saturating_add(i64::try_from(self.grant_ttl.as_millis()).unwrap_or(i64::MAX)),
        };
        Member {
            session_token: session_token_for(reg, &node_id),
            record: MemberRecord {
                node_id,
                name: reg.name.clone(),
                address: reg.address.clone(),
                public_key: reg.public_key.clone(),
                certificate: Some(self.key.issue_name(&grant)),
                reachable: false,
                client_only: reg.client_only,
            },
            claimed_at,
            watchers: 0,
            last_seen: now,
            reach: Reach::default(),
            joined: self.joined,
            rooms: BTreeSet::new(),
            hosted: 0,
            skeleton: rules::name_skeleton(&reg.name),
        }
    }

    /// Stores a newly registered member. The same node registering again
    /// keeps its open watch streams, its rooms and place, and what the
    /// relay knows of its address if that did not change.
    fn store_member(&mut self, mut member: Member) {
        let id = member.record.node_id.clone();
        match self.members.get(&id) {
            Some(previous) => {
                if previous.record.address == member.record.address {
                    member.reach = previous.reach.clone();
                }
                member.watchers = previous.watchers;
                member.joined = previous.joined;
                member.rooms = previous.rooms.clone();
                member.hosted = previous.hosted;
            }
            None => {
                self.joined += 1;
                // Rooms it hosted before it was forgotten still name it.
                member.hosted = self.rooms_hosted_by(&id);
            }
        }
        member.record.reachable = member.reach.reachable == Some(true);
        self.members.insert(id, member);
        self.schedule.stir();
    }

    /// Checks that `token` belongs to `node_id`.
    pub fn authenticate(&self, node_id: &str, token: &str) -> Result<&Member, RegistryError> {
        let member = self
            .members
            .get(node_id)
            .ok_or_else(|| RegistryError::UnknownNode(node_id.into()))?;
        if member.session_token != token {
            return Err(RegistryError::BadToken(node_id.into()));
        }
        Ok(member)
    }

    /// Removes a node that leaves for good (from all its rooms).
    pub fn unregister(&mut self, node_id: &str, token: &str) -> Result<(), RegistryError> {
        self.authenticate(node_id, token)?;
        self.remove_member(node_id);
        Ok(())
    }

    /// Takes `node_id` out of its rooms (forgetting rooms left empty) and
    /// out of the registry. The rooms it hosts keep it as host until their
    /// leases run out, as when it crashes.
    fn remove_member(&mut self, node_id: &str) -> Option<Member> {
        let rooms: Vec<String> = self.members.get(node_id)?.rooms.iter().cloned().collect();
        for room in rooms {
            self.exit_room(node_id, &room);
        }
        self.schedule.stir();
        self.members.remove(node_id)
    }

    /// Whether `node_id` is a registered member.
    pub fn has_member(&self, node_id: &str) -> bool {
        self.members.contains_key(node_id)
    }

    /// Finds a registered member by name.
    pub fn lookup(&self, name: &str) -> Option<&MemberRecord> {
        self.members
            .values()
            .map(|m| &m.record)
            .find(|r| r.name == name)
    }

    /// A node opened its watch stream: it is alive while the stream is open.
    pub fn watch_started(&mut self, node_id: &str, token: &str) -> Result<(), RegistryError> {
        self.authenticate(node_id, token)?;
        if let Some(m) = self.members.get_mut(node_id) {
            m.watchers += 1;
        }
        self.schedule.stir();
        Ok(())
    }

    /// A node's watch stream closed. When it was the node's last and the
    /// node hosts rooms, the relay looks at those rooms again shortly: a
    /// process that died closed its connections at once (see
    /// [`Registry::host_went_away`]).
    pub fn watch_ended(&mut self, node_id: &str, now: Instant) {
        let mut gone = false;
        if let Some(m) = self.members.get_mut(node_id) {
            m.watchers = m.watchers.saturating_sub(1);
            m.last_seen = now;
            gone = m.watchers == 0 && m.hosted > 0;
        }
        if gone {
            self.host_went_away(node_id, now);
        }
        self.schedule.stir();
    }

    /// Forgets members with no open watch stream for longer than `grace`,
    /// freeing their names and leaving their rooms. Returns the names
    /// removed.
    pub fn reap(&mut self, now: Instant, grace: Duration) -> Vec<String> {
        let dead: Vec<String> = self
            .members
            .values()
            .filter(|m| m.watchers == 0 && now.duration_since(m.last_seen) > grace)
            .map(|m| m.record.node_id.clone())
            .collect();
        dead.iter()
            .filter_map(|id| self.remove_member(id))
            .map(|m| m.record.name)
            .collect()
    }

    /// Whether `node_id` is a member of `room` (a valid room name).
    pub fn is_in_room(&self, node_id: &str, room: &str) -> bool {
        self.members
            .get(node_id)
            .is_some_and(|m| m.rooms.contains(room))
    }

    /// The node ids of `room`'s members (none if there is no such room).
    pub fn room_member_ids<'a>(&'a self, room: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.rooms
            .get(room)
            .into_iter()
            .flat_map(|r| r.members.keys().map(String::as_str))
    }

    /// The current records of every room `node_id` is in that has one.
    pub fn records_of(&self, node_id: &str) -> Vec<HostRecord> {
        let Some(member) = self.members.get(node_id) else {
            return Vec::new();
        };
        member.rooms().filter_map(|r| self.record(r)).collect()
    }

    /// The records of the rooms touched since the last call whose
    /// published record changed (each room at most once). A room that
    /// vanished is forgotten, not reported.
    pub fn take_changes(&mut self) -> Vec<HostRecord> {
        self.take_changes_and_gone().0
    }

    /// As [`Registry::take_changes`], and the rooms whose published
    /// record vanished with them (their durable records go too).
    pub fn take_changes_and_gone(&mut self) -> (Vec<HostRecord>, Vec<String>) {
        let mut changed = Vec::new();
        let mut gone = Vec::new();
        for name in std::mem::take(&mut self.touched) {
            match self.record(&name) {
                Some(record) if self.published.get(&name) != Some(&record) => {
                    self.published.insert(name, record.clone());
                    changed.push(record);
                }
                Some(_) => {}
                None => {
                    if self.published.remove(&name).is_some() {
                        gone.push(name);
                    }
                }
            }
        }
        (changed, gone)
    }

    /// Notes that `room`'s record may have changed.
    fn touch(&mut self, room: &str) {
        if !self.touched.contains(room) {
            self.touched.insert(room.to_string());
        }
    }
}

mod copies;
mod error;
mod forgotten;
mod lease;
mod names;
mod placement;
mod reach;
mod reset;
mod room;
mod sweep;

#[cfg(test)]
mod tests;
