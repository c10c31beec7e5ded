//! Private messages, node to node: the PeerService every node serves, and
//! the sending side. The chat host never sees them, except those for a
//! client-only member, which nobody can dial: they travel sealed to the
//! recipient's key through the host ([`chat_proto::sealed`]), and are
//! checked on arrival by the same [`accept_private`] as delivered ones.

use crate::context::NodeContext;
use crate::dial::NodeAddr;
use crate::error::NodeError;
use crate::identity::IdentityError;
use crate::replay::ReplayGuard;
use chat_proto::pb::chat::peer_service_client::PeerServiceClient;
use chat_proto::pb::chat::peer_service_server::PeerService;
use chat_proto::pb::chat::{DeliverPrivateResponse, PrivateMessage, SealedPrivate};
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

/// What the inbox hands on to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A private message, checked.
    Private {
        /// Its sender's name.
        from: String,
        /// Its text.
        text: String,
    },
    /// Why a sealed private message the host passed on was refused.
    Refused(String),
}

/// Where incoming private messages go, and the ids already delivered
/// (kept in the data directory, so a replay is refused after a restart).
pub struct PrivateInbox {
    events: mpsc::Sender<Inbound>,
    replays: ReplayGuard,
}

impl PrivateInbox {
    pub(crate) fn new(
        events: mpsc::Sender<Inbound>,
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

/// The private-message side of a node: what it shares with the node's
/// other parts (identity, keys, relay, dialer, counters) and its inbox.
pub struct Peer {
    ctx: Arc<NodeContext>,
    inbox: PrivateInbox,
}

impl Peer {
    /// The peer side of the node `ctx` describes, delivering to `inbox`.
    pub(crate) fn new(ctx: Arc<NodeContext>, inbox: PrivateInbox) -> Self {
        Self { ctx, inbox }
    }
}

/// The gRPC PeerService of a node.
pub struct PeerEndpoint(pub Arc<Peer>);

#[tonic::async_trait]
impl PeerService for PeerEndpoint {
    async fn deliver_private(
        &self,
        req: Request<PrivateMessage>,
    ) -> Result<Response<DeliverPrivateResponse>, Status> {
        let peer = &self.0;
        let from = &req.get_ref().from_node_id;
        peer.ctx
            .authenticate(&req.peer_certs(), from, "DeliverPrivate")?;
        accept_private(peer, req.into_inner()).await?;
        Ok(Response::new(DeliverPrivateResponse {}))
    }
}

/// Accepts a private message delivered by its sender, and shows it: it
/// must be addressed to this node, signed by the key the relay knows (asked
/// now) for its sender's name and node id, fresh, and not seen before.
pub async fn accept_private(peer: &Peer, msg: PrivateMessage) -> Result<(), Status> {
    check_addressed(peer, &msg)?;
    let MemberRecord {
        node_id,
        public_key,
        ..
    } = peer.ctx.relay.lookup_member(&msg.from).await?;
    let event = check_signed(peer, msg, &node_id, &public_key)?;
    peer.inbox
        .events
        .send(event)
        .await
        .map_err(|_| NodeError::ShuttingDown)?;
    Ok(())
}

/// Opens and checks a sealed private message the host passed on, at once
/// (the session reads its next frame only then, so a flood slows the
/// session down and the host refuses to the senders what it cannot queue;
/// nothing is dropped here). The checks are those of a delivered message,
/// with the sender's binding from the relay's certificate the message
/// carries instead of a question to the relay. A refused one is reported
/// to the user as an error, never shown as a message.
pub(crate) fn accept_sealed(peer: Arc<Peer>, sealed: SealedPrivate) {
    let event = open_sealed(&peer, &sealed).unwrap_or_else(|status| {
        tracing::warn!(%status, "refused a sealed private message");
        Inbound::Refused(format!(
            "refused a sealed private message the host passed on: {}",
            status.message()
        ))
    });
    match peer.inbox.events.try_send(event) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Closed(_)) => {} // shutting down
        Err(mpsc::error::TrySendError::Full(event)) => {
            // The interface has not read its last events at all.
            peer.ctx.stats.count_private_unshown();
            let from = match &event {
                Inbound::Private { from, .. } => from.as_str(),
                Inbound::Refused(_) => "",
            };
            tracing::error!(
                %from,
                "the interface is not reading its events: a private message cannot be shown"
            );
        }
    }
}

/// The private message in `sealed`, checked (see [`accept_sealed`]).
fn open_sealed(peer: &Peer, sealed: &SealedPrivate) -> Result<Inbound, Status> {
    if sealed.to_node_id != peer.ctx.identity.node_id {
        return Err(NodeError::SealedForAnother.into());
    }
    let msg = chat_proto::sealed::open_private(&peer.ctx.key, sealed)
        .map_err(|e| NodeError::BadSealed(e.to_string()))?;
    check_addressed(peer, &msg)?;
    let cert = msg.sender.as_ref().ok_or(NodeError::NoSenderCertificate)?;
    let grant = peer
        .ctx
        .relay_key
        .verify_name(cert, trust::now_unix_ms())
        .map_err(|error| NodeError::NotFromSender {
            from: (&msg.from).into(),
            error,
        })?;
    if grant.name != msg.from {
        return Err(NodeError::WrongSender((&msg.from).into()).into());
    }
    check_signed(peer, msg, &grant.node_id, &grant.public_key)
}

/// The message must be for this node, with a valid text.
fn check_addressed(peer: &Peer, msg: &PrivateMessage) -> Result<(), Status> {
    let me = &peer.ctx.identity;
    if msg.to != me.name || msg.to_node_id != me.node_id {
        return Err(NodeError::NotRecipient {
            me: me.name.clone(),
            my_node_id: me.node_id.clone(),
            to: (&msg.to).into(),
            to_node_id: (&msg.to_node_id).into(),
        }
        .into());
    }
    rules::validate_text(&msg.text)?;
    Ok(())
}

/// The message must come from `node_id`, the node the relay binds to the
/// sender's name, be signed by its key `public_key`, be fresh, and not
/// have been seen before. Returns what to show.
fn check_signed(
    peer: &Peer,
    msg: PrivateMessage,
    node_id: &str,
    public_key: &[u8],
) -> Result<Inbound, Status> {
    if node_id != msg.from_node_id {
        return Err(NodeError::WrongSender((&msg.from).into()).into());
    }
    let now = trust::now_unix_ms();
    PublicKey::from_bytes(public_key)
        .and_then(|key| key.verify(&trust::private_payload(&msg), &msg.signature))
        .and_then(|()| trust::check_fresh(msg.sent_at_unix_ms, now))
        .map_err(|error| NodeError::NotFromSender {
            from: (&msg.from).into(),
            error,
        })?;
    if !peer
        .inbox
        .replays
        .first_sighting(&msg.id, msg.sent_at_unix_ms, now)
    {
        return Err(NodeError::ReplayedPrivate.into());
    }
    peer.ctx.stats.count_private();
    Ok(Inbound::Private {
        from: msg.from,
        text: msg.text,
    })
}

/// How a private message goes to its recipient.
#[derive(Debug)]
pub enum Delivery {
    /// Delivered to the recipient's node, which accepted it.
    Direct,
    /// The recipient is client-only: this sealed message is for the host
    /// to pass on.
    Sealed(SealedPrivate),
}

/// Sends `text` to `to`: straight to its node at the address the relay
/// knows, or, for a client-only member nobody can dial, sealed to its key
/// for the host to carry.
pub async fn send_private(peer: &Peer, to: &str, text: &str) -> Result<Delivery, String> {
    let to = peer.ctx.relay.lookup_member(to).await.map_err(|status| {
        let to = rules::Quoted::new(to);
        format!("cannot find {to} at the relay: {}", status.message())
    })?;
    let me = &peer.ctx.identity;
    let mut msg = PrivateMessage {
        id: uuid::Uuid::new_v4().simple().to_string(),
        from: me.name.clone(),
        from_node_id: me.node_id.clone(),
        to: to.name.clone(),
        to_node_id: to.node_id.clone(),
        text: text.to_string(),
        // Lets the recipient check a sealed message as it reads it.
        sender: Some(peer.ctx.name_certificate()),
        ..Default::default()
    };
    peer.ctx.key.sign_private(&mut msg);
    if to.client_only || to.address.is_empty() {
        return seal_for(&to, &msg).map(Delivery::Sealed);
    }
    match deliver(peer, &to, msg.clone()).await {
        Ok(()) => Ok(Delivery::Direct),
        // Nobody can dial it (the relay could not reach it either): the
        // host carries it, sealed, as for a client-only member.
        Err(_) if !to.reachable => seal_for(&to, &msg).map(Delivery::Sealed),
        Err(e) => Err(e),
    }
}

/// Seals `msg` to the key the relay knows for `to`.
fn seal_for(to: &MemberRecord, msg: &PrivateMessage) -> Result<SealedPrivate, String> {
    let fail = |e: &dyn std::fmt::Display| format!("private message to {}: {e}", to.name);
    let key = PublicKey::from_bytes(&to.public_key).map_err(|e| fail(&e))?;
    chat_proto::sealed::seal_private(&key, msg).map_err(|e| fail(&e))
}

/// Delivers `msg` to `to`'s PeerService.
async fn deliver(peer: &Peer, to: &MemberRecord, msg: PrivateMessage) -> Result<(), String> {
    let node = NodeAddr {
        address: to.address.clone(),
        node_id: to.node_id.clone(),
    };
    let endpoint = peer
        .ctx
        .dialer
        .node(&node, PRIVATE_TIMEOUT)
        .map_err(|e| format!("cannot reach {}: {e}", to.name))?
        .timeout(PRIVATE_TIMEOUT);
    let mut client = PeerServiceClient::new(endpoint.connect_lazy());
    client
        .deliver_private(msg)
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
