//! What the parts of a node share, as one handle: who the node is, the
//! relay's settings, its links to the relay and to other nodes, its key
//! and the relay's (the term checks), its name certificate, its counters,
//! and the health it reports. The rooms' host sides, the peer side and the
//! client each hold it; none of them reaches the node itself, so nothing
//! points back at the node.

use crate::dial::{Dialer, PeerCerts};
use crate::error::NodeError;
use crate::identity::Identity;
use crate::relay_link::RelayLink;
use chat_proto::pb::relay::{HostTerm, HostTermCertificate, NameCertificate, RegisterResponse};
use chat_proto::serve::{HealthReporter, ServingStatus};
use chat_proto::trust::{Keypair, PublicKey};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Name of the chat service for `grpc.health.v1`.
pub const CHAT_SERVICE_NAME: &str = "chat.v1.ChatService";

/// What the parts of a node share.
pub struct NodeContext {
    /// Who this node is.
    pub identity: Identity,
    /// Relay-given settings.
    pub settings: Settings,
    /// The relay.
    pub relay: RelayLink,
    /// Makes every connection to another node.
    pub(crate) dialer: Dialer,
    /// This node's signing key.
    pub(crate) key: Arc<Keypair>,
    /// The relay's key, pinned: the root of trust.
    pub(crate) relay_key: PublicKey,
    /// The node's counters.
    pub stats: Arc<Stats>,
    /// When the relay registered this run of the node: a host term issued
    /// before belongs to an earlier run.
    pub(crate) started_at_unix_ms: i64,
    /// The node's health service.
    health: HealthReporter,
    /// The rooms this node hosts now: the ChatService serves while any.
    hosting: Mutex<BTreeSet<String>>,
    /// The relay's binding of our name to our key (renewed on
    /// re-registration).
    name_cert: Mutex<NameCertificate>,
}

/// The parts a [`NodeContext`] is made of.
pub(crate) struct NodeContextParts {
    pub(crate) identity: Identity,
    pub(crate) settings: Settings,
    pub(crate) relay: RelayLink,
    pub(crate) dialer: Dialer,
    pub(crate) key: Arc<Keypair>,
    pub(crate) relay_key: PublicKey,
    pub(crate) stats: Arc<Stats>,
    pub(crate) started_at_unix_ms: i64,
    pub(crate) health: HealthReporter,
    pub(crate) name_cert: NameCertificate,
}

impl NodeContext {
    /// The context made of `parts`, hosting nothing.
    pub(crate) fn new(parts: NodeContextParts) -> Self {
        Self {
            identity: parts.identity,
            settings: parts.settings,
            relay: parts.relay,
            dialer: parts.dialer,
            key: parts.key,
            relay_key: parts.relay_key,
            stats: parts.stats,
            started_at_unix_ms: parts.started_at_unix_ms,
            health: parts.health,
            hosting: Mutex::default(),
            name_cert: Mutex::new(parts.name_cert),
        }
    }

    /// The relay's current certificate of our name.
    pub fn name_certificate(&self) -> NameCertificate {
        self.name_cert
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Keeps the certificate of our name the relay issued last.
    pub(crate) fn set_name_certificate(&self, cert: NameCertificate) {
        *self.name_cert.lock().unwrap_or_else(|p| p.into_inner()) = cert;
    }

    /// The term a certificate states, if the relay signed it.
    pub(crate) fn verify_term(&self, cert: &HostTermCertificate) -> Result<HostTerm, NodeError> {
        self.relay_key
            .verify_host_term(cert)
            .map_err(NodeError::TermCertificate)
    }

    /// Checks that a call between nodes comes from `node_id` (over TLS,
    /// by its relay-issued client certificate).
    pub(crate) fn authenticate(
        &self,
        peer: &PeerCerts,
        node_id: &str,
        call: &'static str,
    ) -> Result<(), NodeError> {
        Ok(self.dialer.authenticate(peer, node_id, call)?)
    }

    /// Notes whether this node hosts `room` now, and reports the
    /// ChatService serving while it hosts any room.
    pub(crate) async fn set_hosting(&self, room: &str, hosting: bool) {
        let any = {
            let mut rooms = self.hosting.lock().unwrap_or_else(|p| p.into_inner());
            if hosting {
                rooms.insert(room.to_string());
            } else {
                rooms.remove(room);
            }
            !rooms.is_empty()
        };
        let status = match any {
            true => ServingStatus::Serving,
            false => ServingStatus::NotServing,
        };
        self.health
            .set_service_status(CHAT_SERVICE_NAME, status)
            .await;
    }
}

/// Settings handed out by the relay.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Members needed to activate a new room.
    pub min_users: u32,
    /// How often the host role moves.
    pub migration_interval: Duration,
    /// How long a host lease lasts without renewal.
    pub lease: Duration,
    /// How long a room member may be without a session before the host
    /// counts it as gone (the relay's `--away-grace`).
    pub away_grace: Duration,
    /// Chat messages a member may send per second (0: no limit).
    pub messages_per_second: u32,
    /// Messages a member may send at once before the rate applies.
    pub message_burst: u32,
    /// How long a room keeps its entries (the relay's
    /// `--history-max-age`; `None`: for ever).
    pub history_max_age: Option<Duration>,
    /// How many entries a room keeps at most (the relay's
    /// `--history-max-entries`; `None`: no limit).
    pub history_max_entries: Option<u64>,
}

impl Settings {
    /// The relay's settings from its registration answer, raising to a
    /// floor those that cannot be zero.
    pub(crate) fn from_registration(resp: &RegisterResponse) -> Settings {
        Settings {
            min_users: resp.min_users.max(1),
            migration_interval: Duration::from_millis(resp.migration_interval_ms.max(1)),
            // A relay from before --away-grace sends 0: keep its old 10 s.
            away_grace: match resp.away_grace_ms {
                0 => Duration::from_secs(10),
                ms => Duration::from_millis(ms),
            },
            lease: Duration::from_millis(resp.lease_ms.max(10)),
            messages_per_second: resp.messages_per_second,
            message_burst: resp.message_burst.max(1),
            history_max_age: (resp.history_max_age_ms > 0)
                .then(|| Duration::from_millis(resp.history_max_age_ms)),
            history_max_entries: (resp.history_max_entries > 0).then_some(resp.history_max_entries),
        }
    }
}

/// Counters tests and operators can read.
#[derive(Debug, Default)]
pub struct Stats {
    chat_frames: AtomicU64,
    private_received: AtomicU64,
    private_unshown: AtomicU64,
    handoffs: AtomicU64,
    replays_refused: AtomicU64,
}

impl Stats {
    pub(crate) fn count_chat_frame(&self) {
        self.chat_frames.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_private(&self) {
        self.private_received.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_private_unshown(&self) {
        self.private_unshown.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_handoff(&self) {
        self.handoffs.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_replay_refused(&self) {
        self.replays_refused.fetch_add(1, Ordering::Relaxed);
    }
    /// Planned migrations this node completed as the outgoing host.
    pub fn handoffs(&self) -> u64 {
        self.handoffs.load(Ordering::Relaxed)
    }
    /// Replicate calls this node refused as replays (a counter not above
    /// the last one accepted in the term): never between honest nodes.
    pub fn replays_refused(&self) -> u64 {
        self.replays_refused.load(Ordering::Relaxed)
    }
    /// Client frames this node's ChatService has handled (as host).
    pub fn chat_frames(&self) -> u64 {
        self.chat_frames.load(Ordering::Relaxed)
    }
    /// Private messages this node accepted (delivered to its PeerService,
    /// or sealed and passed on by the host).
    pub fn private_received(&self) -> u64 {
        self.private_received.load(Ordering::Relaxed)
    }
    /// Sealed private messages accepted but not shown because the
    /// interface had not read its last events at all (logged as errors).
    pub fn private_unshown(&self) -> u64 {
        self.private_unshown.load(Ordering::Relaxed)
    }
}
