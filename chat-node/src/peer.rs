//! Private messages, node to node: the PeerService every node serves, and
//! the sending side. The chat host never sees them.

use crate::client::ClientEvent;
use crate::node::NodeShared;
use chat_proto::pb::chat::peer_service_client::PeerServiceClient;
use chat_proto::pb::chat::peer_service_server::PeerService;
use chat_proto::pb::chat::{DeliverPrivateResponse, Member, PrivateMessage};
use chat_proto::rules;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status};

/// Bound on delivering a private message.
const PRIVATE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where incoming private messages go, and the member directory used to
/// check who sent them.
pub struct PrivateInbox {
    events: mpsc::Sender<ClientEvent>,
    members: Mutex<HashMap<String, Member>>,
}

impl PrivateInbox {
    pub(crate) fn new(events: mpsc::Sender<ClientEvent>) -> Self {
        Self {
            events,
            members: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the directory with the host's latest member list.
    pub(crate) fn set_members(&self, members: &[Member]) {
        let mut dir = self.members.lock().unwrap_or_else(|p| p.into_inner());
        *dir = members
            .iter()
            .map(|m| (m.name.clone(), m.clone()))
            .collect();
    }

    fn known_node(&self, name: &str) -> Option<String> {
        let dir = self.members.lock().unwrap_or_else(|p| p.into_inner());
        dir.get(name).map(|m| m.node_id.clone())
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

/// The sender must be the member the directory (or, for a newcomer, the
/// relay) knows under that name.
async fn verify_sender(shared: &NodeShared, msg: &PrivateMessage) -> Result<(), Status> {
    let known = match shared.inbox.known_node(&msg.from) {
        Some(node_id) => node_id,
        None => shared.relay.lookup_member(&msg.from).await?.node_id,
    };
    if known != msg.from_node_id {
        return Err(Status::permission_denied(format!(
            "sender is not {:?}",
            msg.from
        )));
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
    let msg = PrivateMessage {
        id: uuid::Uuid::new_v4().simple().to_string(),
        from: me.name.clone(),
        from_node_id: me.node_id.clone(),
        to: to.name.clone(),
        text: text.to_string(),
        sent_at_unix_ms: 0,
    };
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
