//! Private messages, node to node: the PeerService every node serves, and
//! the sending side. The chat host never sees them.

use crate::client::ClientEvent;
use crate::identity;
use crate::node::NodeShared;
use chat_proto::pb::chat::peer_service_client::PeerServiceClient;
use chat_proto::pb::chat::peer_service_server::PeerService;
use chat_proto::pb::chat::{DeliverPrivateResponse, PrivateMessage};
use chat_proto::pb::relay::MemberRecord;
use chat_proto::rules;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status};

/// Bound on delivering a private message.
const PRIVATE_TIMEOUT: Duration = Duration::from_secs(3);

/// Ids of recent private messages remembered to refuse replays.
const REPLAY_MEMORY: usize = 4096;

/// Where incoming private messages go, and the ids already delivered.
pub struct PrivateInbox {
    events: mpsc::Sender<ClientEvent>,
    recent: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl PrivateInbox {
    pub(crate) fn new(events: mpsc::Sender<ClientEvent>) -> Self {
        Self {
            events,
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

/// The message must be signed by the key the relay knows under the
/// sender's name and node id.
async fn verify_sender(shared: &NodeShared, msg: &PrivateMessage) -> Result<(), Status> {
    let MemberRecord {
        node_id,
        public_key,
        ..
    } = shared.relay.lookup_member(&msg.from).await?;
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

/// Delivers `text` to `to`'s node directly, at the address the relay knows.
pub async fn send_private(shared: &NodeShared, to: &str, text: &str) -> Result<(), String> {
    let to = shared
        .relay
        .lookup_member(to)
        .await
        .map_err(|status| format!("cannot find {to:?} at the relay: {}", status.message()))?;
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
