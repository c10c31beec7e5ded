//! Private messages, node to node: the PeerService every node serves, and
//! the sending side. The chat host never sees them.

use crate::client::ClientEvent;
use crate::identity;
use crate::node::NodeShared;
use chat_proto::pb::chat::peer_service_client::PeerServiceClient;
use chat_proto::pb::chat::peer_service_server::PeerService;
use chat_proto::pb::chat::{DeliverPrivateResponse, Member, PrivateMessage};
use chat_proto::rules;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status};

/// Bound on delivering a private message.
const PRIVATE_TIMEOUT: Duration = Duration::from_secs(3);

/// Ids of recent private messages remembered to refuse replays.
const REPLAY_MEMORY: usize = 4096;

/// Where incoming private messages go, the member directory used to check
/// who sent them, and the ids already delivered.
pub struct PrivateInbox {
    events: mpsc::Sender<ClientEvent>,
    members: Mutex<HashMap<String, Member>>,
    recent: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl PrivateInbox {
    pub(crate) fn new(events: mpsc::Sender<ClientEvent>) -> Self {
        Self {
            events,
            members: Mutex::new(HashMap::new()),
            recent: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// Remembers `id`; false if it was delivered before (a replay).
    fn first_delivery(&self, id: &str) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let (ids, order) = &mut *recent;
        if !ids.insert(id.to_string()) {
            return false;
        }
        order.push_back(id.to_string());
        if order.len() > REPLAY_MEMORY {
            if let Some(old) = order.pop_front() {
                ids.remove(&old);
            }
        }
        true
    }

    fn directory(&self) -> std::sync::MutexGuard<'_, HashMap<String, Member>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Empties the directory: a new session's member list follows.
    pub(crate) fn clear_members(&self) {
        self.directory().clear();
    }

    /// Adds part of the host's member list.
    pub(crate) fn add_members(&self, members: Vec<Member>) {
        self.directory()
            .extend(members.into_iter().map(|m| (m.name.clone(), m)));
    }

    /// Adds or refreshes a member; true if the name was not known.
    pub(crate) fn upsert_member(&self, member: Member) -> bool {
        self.directory()
            .insert(member.name.clone(), member)
            .is_none()
    }

    /// Forgets a member who left.
    pub(crate) fn remove_member(&self, name: &str) {
        self.directory().remove(name);
    }

    /// Members' names, sorted.
    pub(crate) fn member_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.directory().keys().cloned().collect();
        names.sort();
        names
    }

    pub(crate) fn known_member(&self, name: &str) -> Option<Member> {
        self.directory().get(name).cloned()
    }
}

/// The gRPC PeerService of a node.
pub struct PeerEndpoint(pub Arc<NodeShared>);

#[tonic::async_trait]
impl PeerService for PeerEndpoint {
    async fn deliver_private(
        &self,
        req: Request<PrivateMessage>,
    ) -> Result<Response<DeliverPrivateResponse>, Status> {
        let msg = req.into_inner();
        let shared = &self.0;
        if msg.to != shared.identity.name {
            return Err(Status::not_found(format!(
                "this node is {:?}, not {:?}",
                shared.identity.name, msg.to
            )));
        }
        rules::validate_text(&msg.text)?;
        verify_sender(shared, &msg).await?;
        shared.stats.count_private();
        let event = ClientEvent::Private {
            from: msg.from,
            text: msg.text,
        };
        shared
            .inbox
            .events
            .send(event)
            .await
            .map_err(|_| Status::unavailable("the recipient is shutting down"))?;
        Ok(Response::new(DeliverPrivateResponse {}))
    }
}

/// The message must be signed by the key of the member the directory (or,
/// for a newcomer, the relay) knows under the sender's name and node id.
async fn verify_sender(shared: &NodeShared, msg: &PrivateMessage) -> Result<(), Status> {
    let (node_id, public_key) = match shared.inbox.known_member(&msg.from) {
        Some(m) if !m.public_key.is_empty() => (m.node_id, m.public_key),
        _ => {
            let record = shared.relay.lookup_member(&msg.from).await?;
            (record.node_id, record.public_key)
        }
    };
    if node_id != msg.from_node_id {
        return Err(Status::permission_denied(format!(
            "sender is not {:?}",
            msg.from
        )));
    }
    identity::verify_private(msg, &public_key)
        .map_err(|e| Status::permission_denied(format!("not from {:?}: {e}", msg.from)))?;
    if !shared.inbox.first_delivery(&msg.id) {
        return Err(Status::already_exists(
            "this private message was delivered before",
        ));
    }
    Ok(())
}

/// Delivers `text` to `to`'s node directly.
pub async fn send_private(shared: &NodeShared, to: &Member, text: &str) -> Result<(), String> {
    let endpoint = Endpoint::from_shared(format!("http://{}", to.address))
        .map_err(|e| e.to_string())?
        .connect_timeout(PRIVATE_TIMEOUT)
        .timeout(PRIVATE_TIMEOUT);
    let mut peer = PeerServiceClient::new(endpoint.connect_lazy());
    let me = &shared.identity;
    let mut msg = PrivateMessage {
        id: uuid::Uuid::new_v4().simple().to_string(),
        from: me.name.clone(),
        from_node_id: me.node_id.clone(),
        to: to.name.clone(),
        text: text.to_string(),
        ..Default::default()
    };
    shared.key.sign_private(&mut msg);
    peer.deliver_private(msg)
        .await
        .map(|_| ())
        .map_err(|status| {
            format!(
                "private message to {} failed: {}",
                to.name,
                status.message()
            )
        })
}
