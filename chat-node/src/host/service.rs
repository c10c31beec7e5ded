//! `chat.v1.ChatService`: sessions when live, replication and takeover
//! between hosts, and a redirect to the host when dormant.

use super::room::{Room, RoomError};
use super::{outbound, session, HostEvent, Role};
use crate::identity;
use crate::node::NodeShared;
use chat_proto::pb::chat::chat_service_server::ChatService;
use chat_proto::pb::chat::*;
use chat_proto::{
    HOST_ADDRESS_METADATA, HOST_EPOCH_METADATA, HOST_NAME_METADATA, HOST_NODE_METADATA,
};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status, Streaming};

/// Names per Members frame.
const MEMBERS_PER_FRAME: usize = 256;
/// How long a new session may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The gRPC service, over the node's shared state.
pub struct ChatHost(pub Arc<NodeShared>);

impl From<RoomError> for Status {
    fn from(err: RoomError) -> Self {
        match err {
            RoomError::NameTaken(_) => Status::already_exists(err.to_string()),
            RoomError::Gap { .. } => Status::failed_precondition(err.to_string()),
            _ => Status::invalid_argument(err.to_string()),
        }
    }
}

impl NodeShared {
    /// UNAVAILABLE, naming the current host in metadata so clients redirect.
    pub(crate) fn not_host(&self) -> Status {
        self.with_host_metadata(Status::unavailable("this node is not the chat host"))
    }

    /// Adds the newest host record this node knows to `status`, so the
    /// caller can follow it (a client) or learn it was fenced (a host).
    fn with_host_metadata(&self, mut status: Status) -> Status {
        if let Some(host) = self.host_tx.borrow().clone() {
            let md = status.metadata_mut();
            for (key, value) in [
                (HOST_ADDRESS_METADATA, host.address),
                (HOST_EPOCH_METADATA, host.epoch.to_string()),
                (HOST_NODE_METADATA, host.node_id),
                (HOST_NAME_METADATA, host.name),
            ] {
                if let Ok(v) = value.parse() {
                    md.insert(key, v);
                }
            }
        }
        status
    }

    /// Joins the member to the live room; returns the frames that open its
    /// session (welcome and member list).
    fn admit(&self, hello: &Hello) -> Result<(Vec<ServerFrame>, u64), Status> {
        let member = Member {
            name: hello.name.clone(),
            node_id: hello.node_id.clone(),
            address: hello.address.clone(),
            public_key: hello.public_key.clone(),
        };
        let (joined, welcome, members) = {
            let mut core = self.core();
            let Role::Live { epoch } = core.role else {
                return Err(self.not_host());
            };
            // A node that crashed and came back under its name has a new
            // node id; the relay only let it register once the old one was
            // gone, so an old member without a session gives way.
            let stale = core.sessions.get(&hello.name).is_none_or(|n| *n == 0);
            let room = core.room.as_mut().ok_or_else(|| self.not_host())?;
            if stale
                && room
                    .member(&hello.name)
                    .is_some_and(|m| m.node_id != hello.node_id)
            {
                room.leave(&hello.name);
            }
            let joined = room.join(member)?;
            let welcome = Welcome {
                epoch,
                activated: room.activated(),
                min_users: room.min_users(),
                member_count: room.members().count() as u32,
                head_seq: room.head_seq(),
                host_name: self.identity.name.clone(),
            };
            let members = members_frames(room);
            *core.sessions.entry(hello.name.clone()).or_default() += 1;
            core.away_since.remove(&hello.name);
            (joined, welcome, members)
        };
        if joined.new_member {
            tracing::info!(name = %hello.name, "member joined");
            // A delta, not the whole list: joins stay linear in the members.
            self.broadcast(server_frame::Frame::Joined(MemberEvent {
                name: hello.name.clone(),
            }));
        }
        if joined.activated_now {
            tracing::info!("chat activated");
            // Sessions wake on the commit point: held messages go out now.
            self.commit_tx.send_modify(|_| {});
        }
        let head = welcome.head_seq;
        let opening = std::iter::once(server_frame::Frame::Welcome(welcome))
            .chain(members)
            .map(frame)
            .collect();
        Ok((opening, head))
    }

    /// Checks that the Hello is signed with the key the relay vouches for
    /// under this name and node id (a member already admitted with that key
    /// needs no new lookup).
    async fn vouch(&self, hello: &Hello) -> Result<(), Status> {
        identity::verify_hello(hello)
            .map_err(|e| Status::unauthenticated(format!("Hello: {e}")))?;
        let known = self
            .core()
            .room
            .as_ref()
            .and_then(|r| r.member(&hello.name))
            .is_some_and(|m| m.node_id == hello.node_id && m.public_key == hello.public_key);
        if known {
            return Ok(());
        }
        let record = self
            .relay
            .lookup_member(&hello.name)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::NotFound => Status::permission_denied(format!(
                    "{:?} is not registered at the relay",
                    hello.name
                )),
                _ => Status::unavailable(format!(
                    "cannot check {:?} with the relay: {}",
                    hello.name,
                    status.message()
                )),
            })?;
        if record.node_id != hello.node_id || record.public_key != hello.public_key {
            return Err(Status::permission_denied(format!(
                "the relay knows {:?} as another node",
                hello.name
            )));
        }
        Ok(())
    }

    /// Sends a frame to every session of this host.
    pub(crate) fn broadcast(&self, f: server_frame::Frame) {
        // No receivers simply means no sessions.
        let _ = self.host_events.send(HostEvent::Frame(frame(f)));
    }
}

/// The members' names in frames of at most [`MEMBERS_PER_FRAME`], so no
/// frame grows with the room.
fn members_frames(room: &Room) -> Vec<server_frame::Frame> {
    let names: Vec<String> = room.members().map(|m| m.name.clone()).collect();
    names
        .chunks(MEMBERS_PER_FRAME)
        .map(|chunk| {
            server_frame::Frame::Members(Members {
                names: chunk.to_vec(),
            })
        })
        .collect()
}

pub(crate) fn frame(f: server_frame::Frame) -> ServerFrame {
    ServerFrame { frame: Some(f) }
}

async fn read_hello(inbound: &mut Streaming<ClientFrame>) -> Result<Hello, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no Hello within 10 s"))??;
    match first.and_then(|f| f.frame) {
        Some(client_frame::Frame::Hello(hello)) => Ok(hello),
        _ => Err(Status::invalid_argument(
            "the first frame of a session must be Hello",
        )),
    }
}

#[tonic::async_trait]
impl ChatService for ChatHost {
    type SessionStream = outbound::OutboundFrames;

    async fn session(
        &self,
        req: Request<Streaming<ClientFrame>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let shared = &self.0;
        if shared.core().role.hosting_epoch().is_none() {
            return Err(shared.not_host());
        }
        let mut inbound = req.into_inner();
        let hello = read_hello(&mut inbound).await?;
        shared.stats.count_chat_frame();
        shared.vouch(&hello).await?;
        // Subscribe before admitting, so no event after the welcome is missed.
        let events = shared.host_events.subscribe();
        let (opening, head) = shared.admit(&hello)?;
        // A client ahead of this host's log saw entries only crashed nodes
        // held; it is told, and follows this log from its head.
        let cursor = hello.resume_from_seq.min(head);
        let (tx, frames) = outbound::outbound(shared.clone(), opening, cursor);
        let ctx = session::Session {
            shared: shared.clone(),
            name: hello.name,
            tx,
            unacked: Default::default(),
        };
        tokio::spawn(ctx.run(inbound, events));
        Ok(Response::new(frames))
    }

    async fn replicate(
        &self,
        req: Request<ReplicateRequest>,
    ) -> Result<Response<ReplicateResponse>, Status> {
        let req = req.into_inner();
        let mut core = self.0.core();
        if req.epoch < core.known_epoch {
            let stale = Status::failed_precondition(format!(
                "stale epoch {}: this node knows epoch {}",
                req.epoch, core.known_epoch
            ));
            drop(core);
            return Err(self.0.with_host_metadata(stale));
        }
        if core.role != Role::Dormant {
            return Err(Status::failed_precondition("this node is the live host"));
        }
        core.known_epoch = req.epoch;
        if let Some(meta) = req.meta {
            // Another room, or the host found our log diverged: start over.
            let start_over = req.base_seq == 0
                || core
                    .room
                    .as_ref()
                    .is_none_or(|r| r.room_id() != meta.room_id);
            if start_over {
                if meta.same_members {
                    return Err(Status::failed_precondition(
                        "no replica of this room here: send the member list",
                    ));
                }
                core.room = Some(Room::new(meta.room_id.clone(), meta.min_users));
            }
            if let Some(room) = core.room.as_mut() {
                if room.head_seq() != req.base_seq {
                    return Err(RoomError::Gap {
                        have: room.head_seq(),
                        got: req.base_seq + 1,
                    }
                    .into());
                }
                room.apply_replica(meta, req.entries)?;
            }
        }
        let response = core
            .room
            .as_ref()
            .map_or_else(ReplicateResponse::default, |r| ReplicateResponse {
                room_id: r.room_id().to_string(),
                have_seq: r.head_seq(),
                have_epoch: r.last_epoch(),
            });
        Ok(Response::new(response))
    }

    async fn take_over(
        &self,
        req: Request<TakeOverRequest>,
    ) -> Result<Response<TakeOverResponse>, Status> {
        let req = req.into_inner();
        let known = self.0.core().known_epoch;
        if req.epoch <= known && self.0.core().role.hosting_epoch() != Some(req.epoch) {
            return Err(Status::failed_precondition(format!(
                "stale epoch {}: this node knows epoch {known}",
                req.epoch
            )));
        }
        self.0.become_host(req.epoch).await;
        let mut core = self.0.core();
        if core.role.hosting_epoch() == Some(req.epoch) && core.successor.is_none() {
            // The sender just shipped us everything it sequenced, and the
            // relay names it our successor: it can hold the commit point
            // from the start. (Clients that followed the relay here first
            // may already have sent messages in this epoch: not shipped.)
            let head = core.room.as_ref().map_or(0, |r| r.head_before(req.epoch));
            core.successor = Some(req.from_node_id.clone());
            core.seed_successor = Some((req.from_node_id, head));
            drop(core);
            // What the old host shipped is held there: deliverable at once,
            // without waiting for a first round trip to it.
            self.0.advance_commit(head);
        }
        Ok(Response::new(TakeOverResponse {}))
    }
}
