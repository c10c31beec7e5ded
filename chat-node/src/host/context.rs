//! What a room's host side needs of its node, as one narrow handle shared
//! by the node's rooms: who the node is, the relay's settings, its links
//! to the relay and to other nodes, its key and the relay's (the term
//! checks), its counters, and the health it reports. A room's host side
//! never reaches the node itself, so nothing points back at the node.

use crate::dial::{Dialer, PeerCerts};
use crate::error::NodeError;
use crate::node::{Identity, Settings, Stats};
use crate::relay_link::RelayLink;
use chat_proto::pb::relay::{HostTerm, HostTermCertificate};
use chat_proto::serve::{HealthReporter, ServingStatus};
use chat_proto::trust::{Keypair, PublicKey};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use super::CHAT_SERVICE_NAME;

/// The node as its rooms' host sides see it.
pub struct HostContext {
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
}

/// The parts a [`HostContext`] is made of.
pub(crate) struct HostContextParts {
    pub(crate) identity: Identity,
    pub(crate) settings: Settings,
    pub(crate) relay: RelayLink,
    pub(crate) dialer: Dialer,
    pub(crate) key: Arc<Keypair>,
    pub(crate) relay_key: PublicKey,
    pub(crate) stats: Arc<Stats>,
    pub(crate) started_at_unix_ms: i64,
    pub(crate) health: HealthReporter,
}

impl HostContext {
    /// The context made of `parts`, hosting nothing.
    pub(crate) fn new(parts: HostContextParts) -> Self {
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
        }
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
        self.dialer.authenticate(peer, node_id, call)
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
