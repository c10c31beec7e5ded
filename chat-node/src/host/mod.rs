//! The dormant chat server every node carries, and the host role it takes
//! when the relay points at this node.

pub mod handoff;
mod outbound;
pub mod rate;
pub mod replica;
pub mod room;
pub mod service;
mod session;

use crate::node::NodeShared;
use chat_proto::pb::chat::{Member, Migrate, ServerFrame};
use chat_proto::pb::relay::HostRecord;
use chat_proto::serve::ServingStatus;
use room::Room;
use std::collections::HashMap;
use std::time::Instant;

/// Name of the chat service for `grpc.health.v1`.
pub const CHAT_SERVICE_NAME: &str = "chat.v1.ChatService";

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

/// The host-side state of a node, guarded by one mutex in [`NodeShared`].
#[derive(Debug)]
pub struct HostCore {
    /// Current role.
    pub role: Role,
    /// Highest epoch seen anywhere.
    pub known_epoch: u64,
    /// The live room when hosting; otherwise the replica kept from the last
    /// time this node hosted or received a handoff.
    pub room: Option<Room>,
    /// Open sessions per member name (live host only).
    pub sessions: HashMap<String, usize>,
    /// When each member without a session lost its last one.
    pub away_since: HashMap<String, Instant>,
    /// Node id of the member holding the replicated log, if any.
    pub successor: Option<String>,
    /// Members whose node refused or missed replication, and since when.
    pub unreachable: HashMap<String, Instant>,
    /// After a planned handoff: the previous host's node id and the head it
    /// holds, to keep as successor.
    pub seed_successor: Option<(String, u64)>,
}

/// How long a member that failed to take the replica is passed over.
const UNREACHABLE_FOR: std::time::Duration = std::time::Duration::from_secs(2);

impl HostCore {
    pub(crate) fn new() -> Self {
        Self {
            role: Role::Dormant,
            known_epoch: 0,
            room: None,
            sessions: HashMap::new(),
            away_since: HashMap::new(),
            successor: None,
            unreachable: HashMap::new(),
            seed_successor: None,
        }
    }

    /// Members with an open session, except `me`: candidate successors, in
    /// name order starting after `me` so the role goes round.
    pub fn successors(&self, me: &str) -> Vec<Member> {
        let Some(room) = &self.room else {
            return Vec::new();
        };
        let connected = |m: &&Member| {
            m.name != me
                && self.sessions.get(&m.name).is_some_and(|n| *n > 0)
                && self
                    .unreachable
                    .get(&m.name)
                    .is_none_or(|t| t.elapsed() > UNREACHABLE_FOR)
        };
        let (after, before): (Vec<Member>, Vec<Member>) = room
            .members()
            .filter(connected)
            .cloned()
            .partition(|m| m.name.as_str() > me);
        after.into_iter().chain(before).collect()
    }
}

impl NodeShared {
    /// Applies a host record learned from the relay or a peer: takes the
    /// role if it names this node, steps down if it fences our epoch.
    pub async fn on_host_record(&self, record: HostRecord) {
        let (become_host, step_down) = {
            let mut core = self.core();
            if record.epoch < core.known_epoch {
                return;
            }
            core.known_epoch = record.epoch;
            let hosting = core.role.hosting_epoch();
            let mine = record.node_id == self.identity.node_id;
            (
                mine && hosting.is_none_or(|e| e < record.epoch),
                !mine && hosting.is_some_and(|e| e < record.epoch),
            )
        };
        self.publish_host(record.clone());
        if become_host {
            self.become_host(record.epoch).await;
        } else if step_down {
            self.step_down(&record).await;
        }
    }

    /// Records the latest host for clients and dormant answers.
    pub(crate) fn publish_host(&self, record: HostRecord) {
        self.host_tx.send_if_modified(|cur| {
            let replace = match cur {
                None => true,
                Some(c) => c.epoch < record.epoch || (c.epoch == record.epoch && *c != record),
            };
            if replace {
                *cur = Some(record);
            }
            replace
        });
    }

    /// Becomes the live host of `epoch` with the replica held (or a new room).
    pub async fn become_host(&self, epoch: u64) {
        {
            let mut core = self.core();
            if core.role.hosting_epoch().is_some_and(|e| e >= epoch) || core.known_epoch > epoch {
                return;
            }
            core.known_epoch = epoch;
            core.role = Role::Live { epoch };
            let min_users = self.settings.min_users;
            let room = core.room.get_or_insert_with(|| {
                Room::new(uuid::Uuid::new_v4().simple().to_string(), min_users)
            });
            let now = Instant::now();
            let names: Vec<String> = room.members().map(|m| m.name.clone()).collect();
            core.sessions.clear();
            core.away_since = names.into_iter().map(|n| (n, now)).collect();
            core.successor = None;
            core.seed_successor = None;
            core.unreachable.clear();
        }
        // Nothing is committed in this term until a successor holds it.
        self.commit_tx.send_replace(0);
        tracing::info!(epoch, "this node is now the chat host");
        self.role_tx.send_replace(Role::Live { epoch });
        self.health
            .set_service_status(CHAT_SERVICE_NAME, ServingStatus::Serving)
            .await;
    }

    /// Stops hosting because `next` holds a newer epoch; tells every session
    /// where to go.
    pub async fn step_down(&self, next: &HostRecord) {
        {
            let mut core = self.core();
            if core.role == Role::Dormant {
                return;
            }
            core.role = Role::Dormant;
            core.known_epoch = core.known_epoch.max(next.epoch);
            core.sessions.clear();
            core.away_since.clear();
        }
        tracing::info!(epoch = next.epoch, to = %next.name, "host role moved on; now dormant");
        self.role_tx.send_replace(Role::Dormant);
        let _ = self.host_events.send(HostEvent::Moved(Migrate {
            epoch: next.epoch,
            address: next.address.clone(),
            node_id: next.node_id.clone(),
        }));
        self.health
            .set_service_status(CHAT_SERVICE_NAME, ServingStatus::NotServing)
            .await;
    }
}
