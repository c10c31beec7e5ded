//! Private messages, node to node: the PeerService every node serves, and
//! the sending side. The chat host never sees them.

use crate::client::ClientEvent;
use crate::dial::NodeAddr;
use crate::error::NodeError;
use crate::identity::IdentityError;
use crate::node::NodeShared;
use crate::replay::ReplayGuard;
use chat_proto::pb::chat::peer_service_client::PeerServiceClient;
use chat_proto::pb::chat::peer_service_server::PeerService;
use chat_proto::pb::chat::{DeliverPrivateResponse, PrivateMessage};
use chat_proto::pb::relay::MemberRecord;
use chat_proto::rules;
use chat_proto::trust::{self, PublicKey};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

/// Bound on delivering a private message.
const PRIVATE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where incoming private messages go, and the ids already delivered
/// (kept in the data directory, so a replay is refused after a restart).
pub struct PrivateInbox {
    events: mpsc::Sender<ClientEvent>,
    replays: ReplayGuard,
}

impl PrivateInbox {
    pub(crate) fn new(
        events: mpsc::Sender<ClientEvent>,
        dir: Option<&Path>,
    ) -> Result<Self, IdentityError> {
        let replays = match dir {
            Some(dir) => {
                let path = dir.join("private-seen");
                ReplayGuard::open(&path).map_err(|source| IdentityError::Io { path, source })?
            }
            None => ReplayGuard::in_memory(),
        };
        Ok(Self { events, replays })
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
        let shared = &self.0;
        let from = &req.get_ref().from_node_id;
        shared.authenticate(&req.peer_certs(), from, "DeliverPrivate")?;
        let msg = req.into_inner();
        let me = &shared.identity;
        if msg.to != me.name || msg.to_node_id != me.node_id {
            return Err(NodeError::NotRecipient {
                me: me.name.clone(),
                my_node_id: me.node_id.clone(),
                to: msg.to,
                to_node_id: msg.to_node_id,
            }
            .into());
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
            .map_err(|_| NodeError::ShuttingDown)?;
        Ok(Response::new(DeliverPrivateResponse {}))
    }
}

/// The message must be signed by the key the relay knows under the
/// sender's name and node id.
async fn verify_sender(shared: &NodeShared, msg: &PrivateMessage) -> Result<(), Status> {
    let MemberRecord {
        node_id,
        public_key,
        ..
    } = shared.relay.lookup_member(&msg.from).await?;
    if node_id != msg.from_node_id {
        return Err(NodeError::WrongSender(msg.from.clone()).into());
    }
    let now = trust::now_unix_ms();
    PublicKey::from_bytes(&public_key)
        .and_then(|key| key.verify(&trust::private_payload(msg), &msg.signature))
        .and_then(|()| trust::check_fresh(msg.sent_at_unix_ms, now))
        .map_err(|error| NodeError::NotFromSender {
            from: msg.from.clone(),
            error,
        })?;
    if !shared
        .inbox
        .replays
        .first_sighting(&msg.id, msg.sent_at_unix_ms, now)
    {
        return Err(NodeError::ReplayedPrivate.into());
    }
    Ok(())
}

/// Delivers `text` to `to`'s node directly, at the address the relay knows.
pub async fn send_private(shared: &NodeShared, to: &str, text: &str) -> Result<(), String> {
    let to = shared
        .relay
        .lookup_member(to)
        .await
        .map_err(|status| format!("cannot find {to:?} at the relay: {}", status.message()))?;
    let node = NodeAddr {
        address: to.address.clone(),
        node_id: to.node_id.clone(),
    };
    let endpoint = shared
        .dialer
        .node(&node, PRIVATE_TIMEOUT)
        .map_err(|e| format!("cannot reach {}: {e}", to.name))?
        .timeout(PRIVATE_TIMEOUT);
    let mut peer = PeerServiceClient::new(endpoint.connect_lazy());
    let me = &shared.identity;
    let mut msg = PrivateMessage {
        id: uuid::Uuid::new_v4().simple().to_string(),
        from: me.name.clone(),
        from_node_id: me.node_id.clone(),
        to: to.name.clone(),
        to_node_id: to.node_id.clone(),
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
