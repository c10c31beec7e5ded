//! The dormant chat server every node carries, and the host role it takes
//! when the relay points at this node.

mod attendance;
mod copy_failures;
pub mod duties;
pub mod fencing;
pub mod handoff;
pub mod keep;
mod mailbox;
mod outbound;
pub mod rate;
mod reset;
pub mod room;
pub mod service;
mod session;
mod stored;
mod succession;
pub mod successor;
pub mod term;

use crate::context::NodeContext;
use crate::error::NodeError;
use attendance::Attendance;
use chat_proto::pb::chat::{Member, Migrate, ServerFrame, SignedHead};
use chat_proto::pb::relay::{HostRecord, HostTerm, HostTermCertificate};
use chat_proto::senders::Senders;
use room::Room;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use succession::Succession;
use term::{Tenure, TermChange};
use tokio::sync::{broadcast, watch};

pub use crate::context::CHAT_SERVICE_NAME;

/// This node's part in the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not hosting: chat calls are refused with the host's address.
    Dormant,
    /// The live host of `epoch`.
    Live {
        /// Host term.
        epoch: u64,
    },
    /// Still host of `epoch`, but shipping the room to a successor: messages
    /// are not sequenced (clients re-send them to the next host).
    HandingOff {
        /// Host term.
        epoch: u64,
    },
}

impl Role {
    /// The epoch hosted, if any.
    pub fn hosting_epoch(self) -> Option<u64> {
        match self {
            Role::Dormant => None,
            Role::Live { epoch } | Role::HandingOff { epoch } => Some(epoch),
        }
    }
}

/// What a host broadcasts to all its sessions.
#[derive(Debug, Clone)]
pub enum HostEvent {
    /// Forward this frame.
    Frame(ServerFrame),
    /// The role moved on: tell the client where, then end the session.
    Moved(Migrate),
    /// The node is stopping: end the session.
    Closing,
}

/// Host broadcasts buffered per session before a session counts as too slow.
const HOST_EVENTS_CAPACITY: usize = 1024;

/// One room's host side on this node: its term, its log (live) or replica
/// (dormant), its sessions and successor. Every part of the node that acts
/// for a room holds its `RoomHost`; its state changes only through it.
pub struct RoomHost {
    /// The room's name.
    pub room: String,
    /// What the room's host side needs of the node.
    pub(crate) ctx: Arc<NodeContext>,
    core: Mutex<HostCore>,
    /// Bumped whenever the room's log changes (wakes the replicator).
    pub(crate) log_tx: watch::Sender<u64>,
    pub(crate) host_events: broadcast::Sender<HostEvent>,
    /// Sealed private messages on their way to the sessions here.
    pub(crate) mailboxes: mailbox::Mailboxes,
    /// The latest host record of the room known (relay or handoff).
    pub(crate) host_tx: watch::Sender<Option<HostRecord>>,
    /// Why the relay says the room has no host right now, if it does.
    pub(crate) no_host_tx: watch::Sender<Option<String>>,
    /// Held for a whole sync of a replica: the replicator and a handoff
    /// send one at a time, so their counters arrive in order.
    pub(crate) replicate_turn: tokio::sync::Mutex<()>,
    /// Held for one lease renewal, from choosing what it names until the
    /// answer is applied (see `successor::renew_lease_asking`).
    pub(crate) renew_turn: tokio::sync::Mutex<()>,
    /// Each member's send rate, shared by its sessions.
    pub(crate) rates: Arc<rate::MemberRates>,
    /// Sender certificates checked in copies this node was sent.
    pub(crate) copy_senders: Mutex<Senders>,
    /// This node's copy of the room on its disk (none for a node that
    /// keeps nothing on disk).
    keeper: Option<keep::Keeper>,
}

impl std::fmt::Debug for RoomHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomHost")
            .field("room", &self.room)
            .finish()
    }
}

impl RoomHost {
    /// A dormant host side for `room` on `node`, keeping its copy of the
    /// room in `history` if given.
    pub(crate) fn new(
        room: &str,
        ctx: Arc<NodeContext>,
        history: Option<crate::history::RoomHistory>,
    ) -> Arc<Self> {
        let settings = &ctx.settings;
        let rates = rate::MemberRates::new(settings.messages_per_second, settings.message_burst);
        Arc::new(Self {
            room: room.to_string(),
            ctx,
            core: Mutex::new(HostCore::new()),
            log_tx: watch::channel(0).0,
            host_events: broadcast::channel(HOST_EVENTS_CAPACITY).0,
            mailboxes: mailbox::Mailboxes::default(),
            host_tx: watch::channel(None).0,
            no_host_tx: watch::channel(None).0,
            replicate_turn: tokio::sync::Mutex::new(()),
            renew_turn: tokio::sync::Mutex::new(()),
            rates,
            copy_senders: Mutex::default(),
            keeper: history.map(keep::Keeper::new),
        })
    }

    pub(crate) fn core(&self) -> MutexGuard<'_, HostCore> {
        // Every mutation validates before it changes anything, so a panic
        // elsewhere cannot leave the core half-updated.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node's role in the room.
    pub fn role(&self) -> Role {
        self.core().tenure.role()
    }

    /// While hosting: the node id of the member named successor, if any.
    pub fn successor(&self) -> Option<String> {
        let core = self.core();
        core.tenure.role().hosting_epoch()?;
        core.succession.named().map(str::to_string)
    }

    /// What the client may see of the room (see [`crate::directory`]).
    pub fn view(&self) -> crate::directory::RoomView {
        crate::directory::RoomView::new(
            &self.room,
            self.host_tx.subscribe(),
            self.no_host_tx.subscribe(),
        )
    }

    /// What this node holds of the room, to show the relay.
    pub(crate) fn claim(&self) -> chat_proto::pb::relay::RoomClaim {
        let core = self.core();
        chat_proto::pb::relay::RoomClaim {
            room: self.room.clone(),
            latest_term: core.tenure.latest_cert().cloned(),
            hosting: core.tenure.role().hosting_epoch().is_some(),
            replica_head: core.room.as_ref().map_or(0, |r| r.head_seq()),
            replica_term: core.replica_term,
        }
    }
}

/// The host-side state of one room, guarded by the mutex in [`RoomHost`].
#[derive(Debug)]
pub struct HostCore {
    /// The room's host term: the only way to read or change the role, the
    /// known epoch, the lease and the commit point.
    tenure: Tenure,
    /// The live room when hosting; otherwise the replica kept from the last
    /// time this node hosted or received a handoff.
    room: Option<Room>,
    /// Who is in session with this host, and who is away since when.
    attendance: Attendance,
    /// Who may hold the room's copy, and who does.
    succession: Succession,
    /// The nonces of the resets accepted lately.
    resets: reset::SeenResets,
    /// The host term whose log `room` follows: the last term that
    /// replicated to this node, or the last this node hosted (shown to the
    /// relay after its restart, so it waits for the newest term's
    /// successor).
    replica_term: u64,
    /// The newest log head this node signed as it committed, sent to the
    /// sessions after the entries it covers.
    signed_head: Option<SignedHead>,
}

impl HostCore {
    pub(crate) fn new() -> Self {
        Self {
            tenure: Tenure::new(),
            room: None,
            attendance: Attendance::default(),
            succession: Succession::default(),
            resets: reset::SeenResets::default(),
            replica_term: 0,
            signed_head: None,
        }
    }

    /// Members with an open session that may host and did not fail a copy
    /// lately: the members to hand the room to, those hosting fewest rooms
    /// first (the relay's placement), then in name order starting after
    /// `me` so the role goes round.
    pub fn successors(&self, me: &str) -> Vec<Member> {
        let mut order = self.copy_holders(me);
        order.retain(|m| self.has_session(m));
        order
    }

    /// Every member that could hold the room's copy now: as
    /// [`HostCore::successors`], then the members without a session with
    /// this host (a member whose node serves holds copies whether or not
    /// its client is connected). Empty: the host commits alone.
    pub fn copy_holders(&self, me: &str) -> Vec<Member> {
        let Some(room) = &self.room else {
            return Vec::new();
        };
        let now = Instant::now();
        let candidate = |m: &&Member| self.succession.may_hold_copy(m, me, now);
        let (after, before): (Vec<Member>, Vec<Member>) = room
            .members()
            .filter(candidate)
            .cloned()
            .partition(|m| m.name.as_str() > me);
        let mut order: Vec<Member> = after.into_iter().chain(before).collect();
        // Stable: equal loads keep the round.
        order.sort_by_key(|m| (!self.has_session(m), self.succession.load(&m.node_id)));
        order
    }

    /// Whether `m`'s client is in session with this host.
    fn has_session(&self, m: &Member) -> bool {
        self.attendance.connected(&m.name)
    }
}

impl RoomHost {
    /// Refuses work under `epoch` if this node knows a newer one (`known`),
    /// naming the newest host so the caller learns it was fenced.
    pub(crate) fn refuse_stale(&self, epoch: u64, known: u64) -> Result<(), NodeError> {
        if epoch >= known {
            return Ok(());
        }
        Err(NodeError::StaleEpoch {
            epoch,
            known,
            host: self.newest_host(),
        })
    }

    /// The refusal of a chat call on a node that is not the live host,
    /// naming the host so clients redirect.
    pub(crate) fn not_host(&self) -> NodeError {
        NodeError::NotHost {
            host: self.newest_host(),
        }
    }

    /// The newest host record known, for refusals that name it.
    fn newest_host(&self) -> Option<Box<HostRecord>> {
        self.host_tx.borrow().clone().map(Box::new)
    }

    /// Applies a host record learned from the relay or a peer: takes the
    /// role if it names this node, steps down if it fences our epoch. Only
    /// its relay-signed certificate counts; a record without one is ignored.
    pub async fn on_host_record(&self, record: HostRecord) {
        let Some(cert) = record.certificate.clone() else {
            // The relay says why nobody hosts (nobody it can reach).
            if !record.no_host_reason.is_empty() {
                // If this node hosts that term, the relay gave up on it.
                self.term_ended(record.epoch, &record.no_host_reason).await;
                let reason = Some(record.no_host_reason);
                self.no_host_tx.send_if_modified(|cur| {
                    let changed = *cur != reason;
                    *cur = reason;
                    changed
                });
            }
            return;
        };
        match self.ctx.verify_term(&cert) {
            Ok(term) => {
                self.no_host_tx.send_if_modified(|cur| cur.take().is_some());
                self.on_term(term, cert).await
            }
            Err(error) => tracing::warn!(%error, "ignored a host record"),
        }
    }

    /// Applies a verified host term.
    pub(crate) async fn on_term(&self, term: HostTerm, cert: HostTermCertificate) {
        if term.room != self.room {
            tracing::warn!(room = %self.room, other = %term.room, "ignored a term of another room");
            return;
        }
        let record = record_of(&term, cert.clone());
        let change = {
            // Tenure decides which term is the newest; the room's host
            // watch follows it under the same lock, so it never goes back.
            let mut core = self.core();
            let change = core
                .tenure
                .observe(&term, cert.clone(), &self.ctx.identity.node_id);
            if change != TermChange::Stale {
                self.publish_host(&record);
            }
            change
        };
        if change == TermChange::Stale {
            return;
        }
        self.copy_changed();
        match change {
            TermChange::BecomeHost if term.issued_at_unix_ms < self.ctx.started_at_unix_ms => {
                // Issued to this node's previous run (it crashed and came
                // back under its key before the relay failed the room
                // over): that run's log is gone with it, so serving would
                // pass an empty room off as this one. Stay dormant: the
                // lease runs out and the relay promotes the successor.
                tracing::warn!(room = %self.room, epoch = term.epoch,
                               "named host by a term of this node's previous run; leaving it to failover");
            }
            TermChange::BecomeHost => self.become_host(term.epoch, cert).await,
            TermChange::StepDown => self.step_down(&record).await,
            TermChange::Stale | TermChange::Noted => {}
        }
    }

    /// Publishes the newest host record on the room's watch (for the
    /// client, and for refusals that name the host). Only under the core
    /// lock, right after [`Tenure::observe`] took the record's term as the
    /// newest.
    fn publish_host(&self, record: &HostRecord) {
        self.host_tx.send_if_modified(|cur| {
            let changed = cur.as_ref() != Some(record);
            if changed {
                *cur = Some(record.clone());
            }
            changed
        });
    }

    /// Becomes the live host of `epoch` (whose verified certificate is
    /// `cert`) with the replica held (or a new room). Nothing is committed
    /// in the new term until a successor holds it.
    pub(crate) async fn become_host(&self, epoch: u64, cert: HostTermCertificate) {
        {
            let mut core = self.core();
            if !core.tenure.begin(epoch, cert) {
                return;
            }
            let min_users = self.ctx.settings.min_users;
            let room = core.room.get_or_insert_with(|| {
                Room::new(
                    &self.room,
                    uuid::Uuid::new_v4().simple().to_string(),
                    min_users,
                )
            });
            let names: Vec<String> = room.members().map(|m| m.name.clone()).collect();
            core.attendance.begin_term(names, Instant::now());
            core.succession.begin_term();
            core.replica_term = epoch;
        }
        self.copy_changed();
        tracing::info!(room = %self.room, epoch, "this node is now the room's host");
        self.report_hosting().await;
    }

    /// The retention the relay set for every room.
    pub(crate) fn retention(&self) -> room::Retention {
        let settings = &self.ctx.settings;
        room::Retention {
            max_age_ms: settings
                .history_max_age
                .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            max_entries: settings.history_max_entries,
        }
    }

    /// Stops hosting because `next` holds a newer epoch; tells every session
    /// where to go.
    pub async fn step_down(&self, next: &HostRecord) {
        {
            let mut core = self.core();
            if !core.tenure.end() {
                return;
            }
            core.attendance.end_term();
        }
        tracing::info!(room = %self.room, epoch = next.epoch, to = %next.name, "host role moved on; now dormant");
        let _ = self.host_events.send(HostEvent::Moved(Migrate {
            epoch: next.epoch,
            address: next.address.clone(),
            node_id: next.node_id.clone(),
        }));
        self.report_hosting().await;
    }
}

impl RoomHost {
    /// The relay ended this node's term of `epoch` (its lease ran out and
    /// nobody could take over, it kept the room too long, or the relay
    /// cannot reach it): stop serving it at once. Sessions end; clients
    /// follow the relay to the next host, or show that there is none.
    pub(crate) async fn term_ended(&self, epoch: u64, why: &str) {
        {
            let mut core = self.core();
            if core.tenure.role().hosting_epoch() != Some(epoch) || !core.tenure.end() {
                return;
            }
            core.attendance.end_term();
        }
        tracing::warn!(room = %self.room, epoch, %why, "the relay ended this node's host term; now dormant");
        let _ = self.host_events.send(HostEvent::Closing);
        self.report_hosting().await;
    }
}

impl RoomHost {
    /// Tells the node's health whether this room is hosted here now.
    async fn report_hosting(&self) {
        let hosting = self.role().hosting_epoch().is_some();
        self.ctx.set_hosting(&self.room, hosting).await;
    }
}

/// The readable record of a verified term.
pub(crate) fn record_of(term: &HostTerm, cert: HostTermCertificate) -> HostRecord {
    HostRecord {
        epoch: term.epoch,
        node_id: term.node_id.clone(),
        address: term.address.clone(),
        name: term.name.clone(),
        certificate: Some(cert),
        no_host_reason: String::new(),
        room: term.room.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member `name` at `address` (empty: serves nothing), for the tests
    /// of the host's parts.
    pub(super) fn member(name: &str, address: &str) -> Member {
        Member {
            name: name.into(),
            node_id: format!("id-{name}"),
            address: address.into(),
            public_key: vec![1; 32],
        }
    }

    #[test]
    fn a_member_without_an_address_is_never_a_successor() {
        let mut core = HostCore::new();
        let mut room = Room::new("lobby", "room".into(), 1);
        for (name, address) in [
            ("alice", "127.0.0.1:1"),
            ("bob", "127.0.0.1:2"),
            ("dave", ""),
            ("carol", "127.0.0.1:3"),
        ] {
            room.join(member(name, address)).unwrap();
            core.attendance.opened(name);
        }
        core.room = Some(room);
        let names = |core: &HostCore, me: &str| -> Vec<String> {
            core.successors(me).into_iter().map(|m| m.name).collect()
        };
        assert_eq!(names(&core, "alice"), ["bob", "carol"]);
        assert_eq!(names(&core, "carol"), ["alice", "bob"]);
        // Only client-only members besides the host: nobody.
        for name in ["bob", "carol"] {
            core.attendance.left(name);
        }
        assert!(names(&core, "alice").is_empty());
    }
}
