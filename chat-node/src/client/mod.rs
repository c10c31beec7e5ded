//! The chat client: follows the host wherever it goes, resumes from the last
//! sequence number seen, and re-sends unacknowledged messages under the same
//! id, so nothing is lost or shown twice across migrations.

mod chain;
mod commands;
mod events;
mod inbound;
mod opening;
mod reconnect;
mod resets;
mod rooms;
mod session;

pub use commands::{parse_line, UserCommand, HELP};
pub use events::{ClientEvent, Connection, RoomEvent, RoomSummary};
pub use rooms::{run, RoomCall, RoomControl};

use crate::backoff::Backoff;
use crate::context::NodeContext;
use crate::dial::NodeAddr;
use crate::directory::RoomView;
use crate::peer::{Delivery, Peer};
use chat_proto::pb::chat::{SealedPrivate, SendMessage};
use chat_proto::pb::relay::HostRecord;
use chat_proto::rules;
use chat_proto::senders::Senders;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What the client gets of its node: what the node's parts share, the
/// private-message side, the node's rooms, and the admin secret the user
/// gave. Never the node itself.
#[derive(Clone)]
pub struct NodeLinks {
    /// Identity, keys and term checks, relay link, dialer, name certificate.
    pub ctx: Arc<NodeContext>,
    /// Sends and accepts private messages.
    pub peer: Arc<Peer>,
    /// Joins and leaves rooms.
    pub rooms: Arc<dyn RoomControl>,
    /// Secret presented with `$reset`, if the user has it.
    pub admin_secret: Option<String>,
    /// Where this member's message chains are kept (none: in memory).
    pub chain_dir: Option<std::path::PathBuf>,
}

/// Messages sent but not yet acknowledged, at most.
pub const MAX_PENDING: usize = 1000;
/// Sealed private messages waiting for a session with the host, at most.
const SEALED_OUTBOX: usize = 64;

/// A sealed private message for the host to pass on, with what to tell the
/// user once it went.
#[derive(Debug)]
struct SealedOut {
    to: String,
    text: String,
    sealed: SealedPrivate,
}

/// The client's view of the chat.
#[derive(Debug, Default)]
struct View {
    /// Highest sequence number shown.
    last_seq: u64,
    /// Sent, not yet acknowledged, in send order.
    pending: VecDeque<SendMessage>,
    /// Members' names, as the host lists them.
    members: BTreeSet<String>,
    /// A new session began: its first Members frame replaces the list
    /// (until then the old one answers, e.g. for a private message).
    members_stale: bool,
    activated: bool,
    /// Members the room activates at, as the host last said.
    min_users: u32,
    /// Epoch last announced to the user.
    announced_epoch: u64,
    /// The connection state last told to the user.
    connection: Option<Connection>,
    /// Why there is no host, as last told to the user (until a session).
    no_host: Option<String>,
    host_name: String,
}

/// The client of one room: its task state.
struct Client {
    node: NodeLinks,
    /// The room this client chats in.
    room: RoomView,
    events: mpsc::Sender<RoomEvent>,
    view: View,
    backoff: Backoff,
    /// Senders' certificates checked so far (shared with each session's
    /// reader, which checks the messages).
    senders: Arc<std::sync::Mutex<Senders>>,
    /// This member's chain of messages in the room.
    own_chain: chain::OwnChain,
    /// Checks the log hosts serve against what this client was shown.
    log_check: chain::LogCheck,
    /// The key of the current session's host (from its relay-signed term).
    host_key: Option<chat_proto::trust::PublicKey>,
    /// The resets applied (checks those the host serves).
    resets: resets::Resets,
    /// When to send again the messages the host refused as too fast.
    retry_at: Option<tokio::time::Instant>,
    /// Ids of pending messages the host refused as too fast (a subset of
    /// the pending queue, so bounded by it).
    refused: HashSet<String>,
    /// Sealed private messages for the next session to send.
    outbox: mpsc::Sender<SealedOut>,
}

/// How a session with a host ended.
enum SessionEnd {
    /// The user left.
    Exit,
    /// Go to this node next (host moved, or a dormant node redirected us).
    Redirect(NodeAddr),
    /// The host is unreachable or broke the stream.
    Lost(String),
}

/// Where the host of `record` listens.
fn node_of(record: &HostRecord) -> NodeAddr {
    NodeAddr {
        address: record.address.clone(),
        node_id: record.node_id.clone(),
    }
}

impl Client {
    async fn emit(&self, event: ClientEvent) {
        // The UI is gone only when the node is shutting down.
        let _ = self
            .events
            .send(RoomEvent::new(self.room.room(), event))
            .await;
    }

    /// Tells the user the connection changed, once per change: every
    /// failed attempt of one outage is the same "reconnecting".
    async fn connection(&mut self, state: Connection) {
        if self.view.connection != Some(state) {
            self.view.connection = Some(state);
            self.emit(ClientEvent::Connection { state }).await;
        }
    }

    /// Handles a command with no session; false on exit.
    async fn offline_command(&mut self, cmd: UserCommand) -> bool {
        match cmd {
            UserCommand::Exit(done) => {
                if let Some(done) = done {
                    let _ = done.send(());
                }
                return false;
            }
            UserCommand::Say(text) => {
                // Queued: sent when the next session opens.
                self.queue(text).await;
            }
            UserCommand::Reset(_) => {
                self.emit(ClientEvent::error(
                    "not connected to the host; try again in a moment",
                ))
                .await
            }
            other => self.local_command(other).await,
        }
        true
    }

    /// Adds a message to the pending queue and tells the user its id;
    /// `None` if refused (the user is told why).
    async fn queue(&mut self, text: String) -> Option<SendMessage> {
        if let Err(e) = rules::validate_text(&text) {
            self.emit(ClientEvent::error(e.to_string())).await;
            return None;
        }
        if self.view.pending.len() >= MAX_PENDING {
            self.emit(ClientEvent::error(format!(
                "{MAX_PENDING} messages are still waiting for the host; not sent"
            )))
            .await;
            return None;
        }
        let mut msg = SendMessage {
            id: uuid::Uuid::new_v4().simple().to_string(),
            text,
            ..Default::default()
        };
        let ctx = &self.node.ctx;
        self.own_chain
            .sign(&ctx.key, self.room.room(), &ctx.identity.name, &mut msg);
        self.view.pending.push_back(msg.clone());
        self.emit(ClientEvent::Queued {
            id: msg.id.clone(),
            text: msg.text.clone(),
        })
        .await;
        Some(msg)
    }

    /// Commands that need no host: private messages, /who, /host, /help.
    async fn local_command(&mut self, cmd: UserCommand) {
        match cmd {
            UserCommand::Private { to, text } => self.send_private(to, text),
            UserCommand::Who => {
                let names = self.view.members.iter().cloned().collect();
                let host = self.view.host_name.clone();
                self.emit(ClientEvent::Members { names, host }).await;
            }
            UserCommand::Host => {
                let message = match self.room.host_watch().borrow().clone() {
                    Some(h) => format!(
                        "host: {} at {} (epoch {})",
                        rules::escape_for_display(&h.name),
                        rules::escape_for_display(&h.address),
                        h.epoch
                    ),
                    None => "no host known yet".to_string(),
                };
                self.emit(ClientEvent::Info { message }).await;
            }
            UserCommand::Help => {
                self.emit(ClientEvent::Info {
                    message: HELP.to_string(),
                })
                .await
            }
            // Handled by the session, or by the rooms above this client.
            UserCommand::Say(_)
            | UserCommand::Reset(_)
            | UserCommand::Exit(_)
            | UserCommand::Join(_)
            | UserCommand::Part(_)
            | UserCommand::Rooms
            | UserCommand::Switch(_) => {}
        }
    }

    /// Sends a private message straight to the recipient's node, or sealed
    /// through the host to a client-only member.
    fn send_private(&self, to: String, text: String) {
        let me = &self.node.ctx.identity;
        let check = if to == me.name {
            Err("you cannot send a private message to yourself".to_string())
        } else if let Err(e) = rules::validate_text(&text) {
            Err(e.to_string())
        } else {
            Ok(())
        };
        let events = self.events.clone();
        let room = self.room.room().to_string();
        let peer = self.node.peer.clone();
        let outbox = self.outbox.clone();
        tokio::spawn(async move {
            let result = match check {
                Ok(()) => crate::peer::send_private(&peer, &to, &text).await,
                Err(e) => Err(e),
            };
            let event = match result {
                Ok(Delivery::Direct) => ClientEvent::PrivateSent { to, text },
                // Told once the session sent it.
                Ok(Delivery::Sealed(sealed)) => {
                    if outbox.try_send(SealedOut { to, text, sealed }).is_ok() {
                        return;
                    }
                    let why = "private messages are still waiting for the host; not sent";
                    ClientEvent::error(format!("{SEALED_OUTBOX} {why}"))
                }
                Err(e) => ClientEvent::error(e),
            };
            let _ = events.send(RoomEvent::new(room, event)).await;
        });
    }
}

/// Shows what the private inbox accepts (or refuses), until the node
/// stops.
pub(crate) async fn show_inbox(
    mut inbox: mpsc::Receiver<crate::peer::Inbound>,
    events: mpsc::Sender<RoomEvent>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let inbound = tokio::select! {
            inbound = inbox.recv() => inbound,
            _ = cancel.cancelled() => None,
        };
        let Some(inbound) = inbound else { return };
        if events.send(inbound.into()).await.is_err() {
            return;
        }
    }
}
