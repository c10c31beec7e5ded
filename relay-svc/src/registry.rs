//! The relay's soft state: registered member nodes and the host record.
//! Pure and synchronous, so every rule is unit-tested without a network.

use chat_proto::pb::relay::{HostRecord, HostTerm, MemberRecord, NameGrant};
use chat_proto::rules::{self, RuleError};
use chat_proto::trust::{self, Keypair};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use thiserror::Error;

use reach::{Reach, Undecided};
pub use reach::{ReachCheck, CHECK_PERIOD};

/// Shortest wait for a host to re-assert itself after a relay restart.
const MIN_VACANCY_WAIT: Duration = Duration::from_secs(1);
/// How long a name grant proves its binding, unless configured.
const NAME_GRANT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest accepted node address, in bytes.
pub const MAX_ADDRESS_BYTES: usize = 255;

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

/// Why the registry refused a request. Converted to a gRPC status in one place.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RegistryError {
    /// The name breaks a naming rule.
    #[error(transparent)]
    InvalidName(#[from] RuleError),
    /// The node gave no usable address to reach it.
    #[error("address must be host:port, printable, at most 255 bytes")]
    InvalidAddress,
    /// Another connected member holds the name.
    #[error("name {0:?} is taken by a connected member")]
    NameTaken(String),
    /// No such node or member.
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    /// The caller's token does not match its node.
    #[error("session token does not match node {0:?}")]
    BadToken(String),
    /// The caller is not the current host.
    #[error("node {0:?} is not the current host")]
    NotHost(String),
    /// Compare-and-set on the epoch failed.
    #[error("stale epoch {given}: the current epoch is {current}")]
    StaleEpoch {
        /// Epoch in the request.
        given: u64,
        /// The relay's current epoch.
        current: u64,
    },
    /// No node has registered yet.
    #[error("no host yet: no member has registered, or the relay is still checking that it can reach them")]
    NoHost,
    /// No member can host right now (the reason says why).
    #[error("no host: {0}")]
    NoHostable(String),
    /// The member may not host: the relay cannot reach it, or it is a
    /// client only.
    #[error("member {name:?} cannot host: {why}")]
    CannotHost {
        /// The member's name.
        name: String,
        /// Why.
        why: &'static str,
    },
}

impl From<RegistryError> for tonic::Status {
    fn from(err: RegistryError) -> Self {
        use tonic::Status;
        let msg = err.to_string();
        match err {
            RegistryError::InvalidName(_) | RegistryError::InvalidAddress => {
                Status::invalid_argument(msg)
            }
            RegistryError::NameTaken(_) => Status::already_exists(msg),
            RegistryError::UnknownNode(_) => Status::not_found(msg),
            RegistryError::BadToken(_) | RegistryError::NotHost(_) => {
                Status::permission_denied(msg)
            }
            RegistryError::StaleEpoch { .. } | RegistryError::CannotHost { .. } => {
                Status::failed_precondition(msg)
            }
            RegistryError::NoHost | RegistryError::NoHostable(_) => Status::unavailable(msg),
        }
    }
}

/// A registration whose signatures the service has checked: the
/// registrant holds `public_key`, and `latest_term` and `name_claimed_at`
/// come from certificates this relay signed.
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
    /// The newest host term the node has seen (relay-signed).
    pub latest_term: Option<HostTerm>,
    /// The node hosts `latest_term` right now.
    pub hosting: bool,
    /// Since when this key holds the name, from a name certificate it
    /// showed (Unix ms): the earliest claim wins a contested name.
    pub name_claimed_at: Option<i64>,
    /// Head of the node's room replica.
    pub replica_head: u64,
    /// The node serves nothing: it may not host and has no address.
    pub client_only: bool,
}

impl Registration {
    fn known_epoch(&self) -> u64 {
        self.latest_term.as_ref().map_or(0, |t| t.epoch)
    }
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
    known_epoch: u64,
    replica_head: u64,
    watchers: u32,
    last_seen: Instant,
    reach: Reach,
    /// Registration order (kept when the node registers again): a new
    /// chat's first host is the first member to register that can host.
    joined: u64,
}

/// The host's right to serve, renewed by the host.
#[derive(Debug, Clone)]
struct Lease {
    deadline: Instant,
    successor: Option<String>,
}

/// Members and the host record.
#[derive(Debug)]
pub struct Registry {
    members: HashMap<String, Member>,
    host: Option<HostRecord>,
    highest_epoch: u64,
    /// Members registered so far (orders them).
    joined: u64,
    lease_duration: Duration,
    lease: Option<Lease>,
    /// Since when nodes that knew a host are waiting for it to re-assert
    /// itself (after a relay restart).
    vacant_since: Option<Instant>,
    /// Why the room has no host although it needs one: set when a host is
    /// wanted (a lease ran out, a vacancy) but every member was checked and
    /// none can host.
    no_host: Option<String>,
    /// Signs host terms and name grants.
    key: Keypair,
    /// How long the name grants (and the TLS certificates, which expire
    /// with them) the relay issues stay valid.
    grant_ttl: Duration,
}

impl Registry {
    /// An empty registry whose host leases last `lease_duration`, signing
    /// with the relay's `key`.
    pub fn new(lease_duration: Duration, key: Keypair) -> Self {
        Self {
            members: HashMap::new(),
            host: None,
            highest_epoch: 0,
            joined: 0,
            lease_duration,
            lease: None,
            vacant_since: None,
            no_host: None,
            key,
            grant_ttl: NAME_GRANT_TTL,
        }
    }

    /// Issues name grants valid for `ttl` (nodes renew them at two thirds).
    pub fn with_grant_ttl(mut self, ttl: Duration) -> Self {
        self.grant_ttl = ttl;
        self
    }

    /// After a restart: the highest epoch an earlier relay process issued.
    /// No newcomer is made host until the host re-asserts its term (or the
    /// vacancy wait runs out), so no epoch is issued twice.
    pub fn restore_epoch(&mut self, epoch: u64, now: Instant) {
        if epoch > 0 {
            self.highest_epoch = self.highest_epoch.max(epoch);
            self.vacant_since = Some(now);
        }
    }

    /// The highest epoch issued or seen.
    pub fn highest_epoch(&self) -> u64 {
        self.highest_epoch
    }

    /// The host record to publish: the host's, or, when the room needs a
    /// host and no member can be one, a record without certificate that
    /// says why (`no_host_reason`). `None` before any host.
    pub fn host(&self) -> Option<HostRecord> {
        match &self.no_host {
            Some(reason) => Some(HostRecord {
                epoch: self.highest_epoch,
                no_host_reason: reason.clone(),
                ..HostRecord::default()
            }),
            None => self.host.clone(),
        }
    }

    /// The current host, or why there is none.
    pub fn current_host(&self) -> Result<HostRecord, RegistryError> {
        match (&self.no_host, &self.host) {
            (Some(reason), _) => Err(RegistryError::NoHostable(reason.clone())),
            (None, Some(host)) => Ok(host.clone()),
            (None, None) => Err(RegistryError::NoHost),
        }
    }

    /// Registers (or re-registers) a node; returns it and the host record
    /// (none while the relay waits for a known host to re-assert itself).
    /// `unix_ms` is the wall clock, for the name grant.
    pub fn register(
        &mut self,
        reg: Registration,
        now: Instant,
        unix_ms: i64,
    ) -> Result<(Member, Option<HostRecord>), RegistryError> {
        check_fields(&reg.name, &reg.address, reg.client_only)?;
        let node_id = trust::node_id_of(&reg.public_key);
        if let Some(term) = &reg.latest_term {
            if reg.hosting && term.node_id != node_id {
                return Err(RegistryError::NotHost(node_id));
            }
        }
        let claimed_at = self.settle_name(&reg, &node_id, unix_ms)?;
        let member = self.new_member(&reg, node_id, claimed_at, now, unix_ms);
        let member = self.store_member(member);
        self.highest_epoch = self.highest_epoch.max(reg.known_epoch());
        let host = self.settle_host(&member, &reg, now);
        Ok((member, host))
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
            known_epoch: reg.known_epoch(),
            replica_head: reg.replica_head,
            watchers: 0,
            last_seen: now,
            reach: Reach::default(),
            joined: self.joined,
        }
    }

    /// Stores a newly registered member and returns it (without the watch
    /// streams, which stay with the stored copy).
    fn store_member(&mut self, mut member: Member) -> Member {
        // The same node registering again keeps its open watch streams, and
        // what the relay knows of its address if that did not change.
        let previous = self.members.get(&member.record.node_id);
        let watchers = previous.map_or(0, |m| m.watchers);
        let reach = previous
            .filter(|m| m.record.address == member.record.address)
            .map(|m| m.reach.clone())
            .unwrap_or_default();
        member.record.reachable = reach.reachable == Some(true);
        member.reach = reach;
        match previous {
            Some(p) => member.joined = p.joined,
            None => self.joined += 1,
        }
        self.members.insert(
            member.record.node_id.clone(),
            Member {
                watchers,
                ..member.clone()
            },
        );
        member
    }

    /// Decides who holds `reg.name`: the same key keeps it (a restarted
    /// node reclaims it at once); another key gets it only with an earlier
    /// claim (a name certificate from before a relay restart), which evicts
    /// the holder. Returns since when the registrant holds it.
    fn settle_name(
        &mut self,
        reg: &Registration,
        node_id: &str,
        unix_ms: i64,
    ) -> Result<i64, RegistryError> {
        let claim = reg.name_claimed_at.unwrap_or(unix_ms);
        let holder = self
            .members
            .values()
            .find(|m| m.record.name == reg.name)
            .map(|m| (m.record.node_id.clone(), m.claimed_at));
        match holder {
            Some((id, since)) if id == node_id => Ok(claim.min(since)),
            Some((id, since)) if claim < since => {
                tracing::warn!(name = %reg.name, evicted = %id, "an earlier name certificate takes the name back");
                self.members.remove(&id);
                Ok(claim)
            }
            Some(_) => Err(RegistryError::NameTaken(reg.name.clone())),
            None => Ok(claim),
        }
    }

    /// Makes the registrant host when it re-asserts a newer epoch than the
    /// relay knows (after a relay restart). A node that knew an earlier
    /// host starts a vacancy: the host gets a lease period to re-assert
    /// itself before anyone else is made host. Otherwise a room without a
    /// host gets one at the next [`Registry::check_lease`], once the relay
    /// has reached a member's address.
    fn settle_host(
        &mut self,
        member: &Member,
        reg: &Registration,
        now: Instant,
    ) -> Option<HostRecord> {
        // A client-only member serves nothing: it cannot hold a term.
        // (Others re-assert a term before the relay reached them again.)
        if member.record.client_only {
            return self.host();
        }
        let member = &member.record;
        let current = self.host.as_ref().map_or(0, |h| h.epoch);
        let reasserted = reg
            .latest_term
            .as_ref()
            .filter(|t| reg.hosting && t.epoch > current);
        if let Some(term) = reasserted {
            self.set_host(term.epoch, member, now);
        } else if self.host.is_none() && reg.known_epoch() > 0 {
            self.vacant_since.get_or_insert(now);
        }
        self.host()
    }

    fn set_host(&mut self, epoch: u64, member: &MemberRecord, now: Instant) {
        self.highest_epoch = self.highest_epoch.max(epoch);
        let term = HostTerm {
            room: trust::ROOM.to_string(),
            epoch,
            node_id: member.node_id.clone(),
            address: member.address.clone(),
            name: member.name.clone(),
            public_key: member.public_key.clone(),
            issued_at_unix_ms: trust::now_unix_ms(),
            previous_epoch: self.host.as_ref().map_or(0, |h| h.epoch),
        };
        self.host = Some(HostRecord {
            epoch,
            node_id: member.node_id.clone(),
            address: member.address.clone(),
            name: member.name.clone(),
            certificate: Some(self.key.issue_host_term(&term)),
            no_host_reason: String::new(),
            room: trust::ROOM.to_string(),
        });
        // A new host gets a full lease to start renewing.
        self.lease = Some(Lease {
            deadline: now + self.lease_duration,
            successor: None,
        });
        self.vacant_since = None;
        self.no_host = None;
    }

    /// The host renews its lease for `epoch` and names its successor.
    /// Returns the members it may not name (see [`Member::may_succeed`]);
    /// naming one of them keeps the successor named before.
    pub fn renew_lease(
        &mut self,
        caller: &str,
        token: &str,
        epoch: u64,
        successor: &str,
        now: Instant,
    ) -> Result<Vec<String>, RegistryError> {
        self.check_host(caller, token, epoch)?;
        // An empty (or refused) successor keeps the one named before.
        let named = Some(successor)
            .filter(|id| self.members.get(*id).is_some_and(Member::may_succeed))
            .map(str::to_string);
        let successor = named.or_else(|| self.lease.take().and_then(|l| l.successor));
        self.lease = Some(Lease {
            deadline: now + self.lease_duration,
            successor,
        });
        // The host is back in time: the room needs nobody else.
        self.no_host = None;
        Ok(self
            .members
            .values()
            .filter(|m| !m.may_succeed())
            .map(|m| m.record.node_id.clone())
            .collect())
    }

    /// Promotes a new host if the lease ran out (or fills a vacancy nobody
    /// re-asserted). Returns the new host record if it changed.
    pub fn check_lease(&mut self, now: Instant) -> Option<HostRecord> {
        let expired = match (&self.host, &self.lease, self.vacant_since) {
            // The host stops acknowledging at the deadline by its own clock
            // (measured from before its renewal reached us); the margin
            // covers clock rate differences.
            (Some(_), Some(lease), _) => now > lease.deadline + self.lease_margin(),
            (None, _, Some(since)) => now.duration_since(since) > self.vacancy_wait(),
            // A new room: its first host as soon as one can be.
            (None, _, None) => !self.members.is_empty(),
            _ => false,
        };
        if !expired {
            return None;
        }
        let dead = self.host.as_ref().map(|h| h.node_id.clone());
        let preferred = self.lease.as_ref().and_then(|l| l.successor.clone());
        let next = match &self.host {
            None if self.vacant_since.is_none() => match self.first_host() {
                Ok(first) => first,
                // An earlier member is still being checked: wait for it.
                Err(Undecided) => return None,
            },
            _ => match self.promotion_candidate(dead.as_deref(), preferred.as_deref()) {
                Ok(next) => next,
                // The successor holding the room is still being checked.
                Err(Undecided) => return None,
            },
        };
        let Some(next) = next else {
            // Nobody can take the room: say why, once every member was
            // checked (and look again at the next call).
            let before = self.no_host.take();
            self.no_host = self.no_host_reason(dead.as_deref());
            return (self.no_host != before).then(|| self.host()).flatten();
        };
        let Some(epoch) = self.highest_epoch.checked_add(1) else {
            tracing::error!("epochs are exhausted; no host can be promoted");
            return None;
        };
        self.set_host(epoch, &next, now);
        self.host.clone()
    }

    /// How long past a lease's deadline the relay waits before promoting:
    /// the host fences itself at the deadline.
    pub fn lease_margin(&self) -> Duration {
        self.lease_duration / 10
    }

    /// How long a vacancy waits for the old host to re-assert itself: long
    /// enough for every node's re-registration backoff.
    fn vacancy_wait(&self) -> Duration {
        (self.lease_duration * 2).max(MIN_VACANCY_WAIT)
    }

    /// The designated successor if it is alive, else the live member that
    /// knew the newest epoch and holds the freshest replica. A successor
    /// the relay has not checked yet is waited for (it holds what the host
    /// acknowledged; another member may not).
    fn promotion_candidate(
        &self,
        dead: Option<&str>,
        preferred: Option<&str>,
    ) -> Result<Option<MemberRecord>, Undecided> {
        let live = |m: &&Member| m.watchers > 0 && Some(m.record.node_id.as_str()) != dead;
        let alive = |m: &&Member| live(m) && m.can_host();
        if let Some(m) = preferred.and_then(|id| self.members.get(id)).filter(live) {
            if m.may_take_over_as_successor() {
                return Ok(Some(m.record.clone()));
            }
            if m.undecided() {
                return Err(Undecided);
            }
        }
        Ok(self
            .members
            .values()
            .filter(alive)
            .max_by(|a, b| {
                (a.known_epoch, a.replica_head)
                    .cmp(&(b.known_epoch, b.replica_head))
                    .then(b.record.name.cmp(&a.record.name))
            })
            .map(|m| m.record.clone()))
    }

    fn check_host(&self, caller: &str, token: &str, epoch: u64) -> Result<(), RegistryError> {
        self.authenticate(caller, token)?;
        let host = self.host.as_ref().ok_or(RegistryError::NoHost)?;
        if host.epoch != epoch {
            return Err(RegistryError::StaleEpoch {
                given: epoch,
                current: host.epoch,
            });
        }
        if host.node_id != caller {
            return Err(RegistryError::NotHost(caller.to_string()));
        }
        Ok(())
    }

    /// Checks that `token` belongs to `node_id`.
    pub fn authenticate(&self, node_id: &str, token: &str) -> Result<&Member, RegistryError> {
        let member = self
            .members
            .get(node_id)
            .ok_or_else(|| RegistryError::UnknownNode(node_id.to_string()))?;
        if member.session_token != token {
            return Err(RegistryError::BadToken(node_id.to_string()));
        }
        Ok(member)
    }

    /// Compare-and-set of the host pointer from `from_epoch` to `to_node_id`.
    pub fn report_migration(
        &mut self,
        caller: &str,
        token: &str,
        from_epoch: u64,
        to_node_id: &str,
        now: Instant,
    ) -> Result<HostRecord, RegistryError> {
        self.check_host(caller, token, from_epoch)?;
        let epoch = from_epoch.checked_add(1).ok_or(RegistryError::StaleEpoch {
            given: from_epoch,
            current: from_epoch,
        })?;
        let target = self
            .members
            .get(to_node_id)
            .ok_or_else(|| RegistryError::UnknownNode(to_node_id.to_string()))?;
        if let Some(why) = target.cannot_host() {
            return Err(RegistryError::CannotHost {
                name: target.record.name.clone(),
                why,
            });
        }
        let target = target.record.clone();
        self.set_host(epoch, &target, now);
        // Until the new host names its own successor, the old host holds the
        // whole room: promote it back if the new host dies at once.
        if let Some(lease) = self.lease.as_mut() {
            lease.successor = Some(caller.to_string());
        }
        Ok(self.host.clone().unwrap_or_default())
    }

    /// Removes a node that leaves for good.
    pub fn unregister(&mut self, node_id: &str, token: &str) -> Result<(), RegistryError> {
        self.authenticate(node_id, token)?;
        self.members.remove(node_id);
        Ok(())
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
        Ok(())
    }

    /// A node's watch stream closed.
    pub fn watch_ended(&mut self, node_id: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(node_id) {
            m.watchers = m.watchers.saturating_sub(1);
            m.last_seen = now;
        }
    }

    /// Forgets members with no open watch stream for longer than `grace`,
    /// freeing their names. Returns the names removed.
    pub fn reap(&mut self, now: Instant, grace: Duration) -> Vec<String> {
        let dead: Vec<String> = self
            .members
            .values()
            .filter(|m| m.watchers == 0 && now.duration_since(m.last_seen) > grace)
            .map(|m| m.record.node_id.clone())
            .collect();
        dead.iter()
            .filter_map(|id| self.members.remove(id))
            .map(|m| m.record.name)
            .collect()
    }
}

mod reach;

#[cfg(test)]
mod tests;
