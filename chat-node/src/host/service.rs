//! `chat.v1.ChatService`: sessions when live, replication and takeover
//! between hosts, and a redirect to the host when dormant.

use super::outbound::{self, frame};
use super::room::{Joined, Room};
use super::{session, HostEvent, Role};
use crate::dial::PeerCerts;
use crate::error::NodeError;
use crate::host::RoomHost;
use chat_proto::chain::Digest;
use chat_proto::pb::chat::chat_service_server::ChatService;
use chat_proto::pb::chat::*;
use chat_proto::trust;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status, Streaming};

/// Names per Members frame.
const MEMBERS_PER_FRAME: usize = 256;
/// How long a new session may take to say Hello.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Finds the host side of a room this node is in (the node's rooms).
pub trait RoomLookup: Send + Sync {
    /// The room `name`, if this node is in it.
    fn room(&self, name: &str) -> Option<Arc<RoomHost>>;
}

/// The gRPC service: hands each call to the room it names.
pub struct ChatHost(pub Arc<dyn RoomLookup>);

impl ChatHost {
    /// The room a call names, if this node is in it.
    fn room(&self, room: &str) -> Result<Arc<RoomHost>, Status> {
        self.0
            .room(room)
            .ok_or_else(|| NodeError::NotInRoom(room.into()).into())
    }
}

/// The room a Session asks for (its `x-chat-room` metadata; "lobby" if none).
/// Spelled as anywhere else: `lobby` and `#lobby` are the same room.
fn session_room<T>(req: &Request<T>) -> String {
    let label = req
        .metadata()
        .get(chat_proto::ROOM_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    chat_proto::rules::room_of_label(label).to_string()
}

/// The room of the host term a call carries.
fn term_room(term: Option<&chat_proto::pb::relay::HostTermCertificate>) -> String {
    use prost::Message;
    term.and_then(|cert| chat_proto::pb::relay::HostTerm::decode(cert.term.as_slice()).ok())
        .map(|t| t.room)
        .unwrap_or_default()
}

impl RoomHost {
    /// Joins the member to the live room; returns the frames that open its
    /// session (welcome and member list).
    /// `stored`: the log hash where the client resumes, as this node's disk
    /// holds it (for a client behind the memory tail).
    fn admit(
        &self,
        hello: &Hello,
        stored: Option<Digest>,
    ) -> Result<(Vec<ServerFrame>, u64), NodeError> {
        let (joined, welcome, members) = self.join_room(hello, stored)?;
        if joined.new_member {
            tracing::info!(name = %hello.name, "member joined");
            // A delta, not the whole list: joins stay linear in the members.
            self.broadcast(server_frame::Frame::Joined(MemberEvent {
                name: hello.name.clone(),
            }));
        }
        if joined.activated_now {
            tracing::info!("chat activated");
        }
        let head = welcome.head_seq;
        let opening = std::iter::once(server_frame::Frame::Welcome(welcome))
            .chain(members)
            .map(frame)
            .collect();
        Ok((opening, head))
    }

    /// Under the lock: joins the member to the live room and counts its
    /// session; returns the join, the welcome and the member list frames.
    fn join_room(
        &self,
        hello: &Hello,
        stored: Option<Digest>,
    ) -> Result<(Joined, Welcome, Vec<server_frame::Frame>), NodeError> {
        let member = Member {
            name: hello.name.clone(),
            node_id: hello.node_id.clone(),
            address: hello.address.clone(),
            public_key: hello.public_key.clone(),
        };
        let mut core = self.core();
        let Role::Live { epoch } = core.tenure.role() else {
            return Err(self.not_host());
        };
        // A node that came back under its name with another key (a
        // lost key file) has a new node id; the relay certified it only
        // once the old one was gone, so an old member without a session
        // gives way. (With its key kept, a node keeps its id.)
        let stale = !core.attendance.connected(&hello.name);
        let room = core.room.as_mut().ok_or_else(|| self.not_host())?;
        if stale
            && room
                .member(&hello.name)
                .is_some_and(|m| m.node_id != hello.node_id)
        {
            room.leave(&hello.name);
        }
        let joined = room.join(member)?;
        // The log hash where the client resumes (or where this log ends,
        // if sooner): the client checks that what it was shown is a prefix
        // of this log.
        let resume = hello.resume_from_seq.min(room.head_seq());
        // A client from before where the log now starts (retention dropped
        // the entries before; not wiped by a reset since) goes on from the
        // checkpoint, which it is told of, signed.
        let checkpoint = room
            .expired()
            .filter(|(seq, _)| resume < *seq && *seq >= room.reset_seq());
        let history_start =
            checkpoint.map(|(seq, hash)| self.ctx.key.sign_head(&self.room, epoch, seq, &hash));
        let stored = stored.filter(|_| resume >= room.reset_seq());
        let (at, hash) = match (checkpoint, room.hash_at(resume).or(stored)) {
            (Some(checkpoint), _) => checkpoint,
            (None, Some(hash)) => (resume, hash),
            (None, None) => (room.head_seq(), room.head_hash()), // reset since
        };
        let head = self.ctx.key.sign_head(&self.room, epoch, at, &hash);
        let welcome = Welcome {
            epoch,
            activated: room.activated(),
            min_users: room.min_users(),
            member_count: room.members().count() as u32,
            head_seq: room.head_seq(),
            host_name: self.ctx.identity.name.clone(),
            room: self.room.clone(),
            head: Some(head),
            history_start,
        };
        let members = members_frames(room);
        core.attendance.opened(&hello.name);
        core.succession.session_opened(&hello.name, &hello.address);
        if joined.activated_now {
            // Sessions wake on the commit point: held messages go out now.
            core.tenure.commit().tick();
        }
        Ok((joined, welcome, members))
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

async fn read_hello(inbound: &mut Streaming<ClientFrame>) -> Result<Hello, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| NodeError::HelloTimeout(HELLO_TIMEOUT))??;
    match first.and_then(|f| f.frame) {
        Some(client_frame::Frame::Hello(hello)) => Ok(hello),
        _ => Err(NodeError::NoHello.into()),
    }
}

/// Opens a session whose Challenge (with `nonce`) went out to a client
/// that presented the TLS certificates `peer`: reads and checks the Hello,
/// admits the member, then runs the session. Refusals end the stream.
async fn open_session(
    host: Arc<RoomHost>,
    mut inbound: Streaming<ClientFrame>,
    nonce: Vec<u8>,
    peer: PeerCerts,
    tx: outbound::Outbound,
    start: outbound::StartLog,
) {
    let opened = check_hello_and_admit(&host, &mut inbound, &nonce, &peer).await;
    let Admitted {
        hello,
        member_key,
        events,
        opening,
        head,
    } = match opened {
        Ok(opened) => opened,
        Err(status) => {
            let _ = tx.send(vec![Err(status)]).await;
            return;
        }
    };
    // A client told where history starts now (retention) goes on from there.
    let told = opening.iter().find_map(|f| match &f.frame {
        Some(server_frame::Frame::Welcome(w)) => w.history_start.as_ref().map(|h| h.seq),
        _ => None,
    });
    if tx
        .send(opening.into_iter().map(Ok).collect())
        .await
        .is_err()
    {
        host.session_closed(&hello.name, false);
        return;
    }
    // A client ahead of this host's log saw entries only crashed nodes
    // held; it is told, and follows this log from its head.
    start.from(hello.resume_from_seq.min(head).max(told.unwrap_or(0)));
    let rate = host
        .rates
        .session(&hello.node_id, tokio::time::Instant::now());
    let mailbox = host.mailboxes.open(&hello.node_id);
    let node_id = hello.node_id.clone();
    let ctx = session::Session {
        host: host.clone(),
        mailbox,
        name: hello.name,
        node_id,
        key: member_key,
        certificate: hello.certificate.unwrap_or_default(),
        rate,
        tx,
        unacked: Default::default(),
    };
    ctx.run(inbound, events).await;
}

/// A member admitted to the live room, its session not yet running.
struct Admitted {
    /// Its checked Hello.
    hello: Hello,
    /// Its key, as its name certificate binds it.
    member_key: trust::PublicKey,
    /// Host events from before the admission on.
    events: tokio::sync::broadcast::Receiver<HostEvent>,
    /// The frames that open its session.
    opening: Vec<ServerFrame>,
    /// The log head the welcome shows.
    head: u64,
}

/// Reads the Hello, checks it answers the challenge `nonce` from the node
/// whose certificates are `peer`, and admits the member.
async fn check_hello_and_admit(
    host: &RoomHost,
    inbound: &mut Streaming<ClientFrame>,
    nonce: &[u8],
    peer: &PeerCerts,
) -> Result<Admitted, Status> {
    let hello = read_hello(inbound).await?;
    host.ctx.authenticate(peer, &hello.node_id, "Session")?;
    host.ctx.stats.count_chat_frame();
    let member_key = trust::verify_hello(
        &host.ctx.relay_key,
        &hello,
        nonce,
        &host.ctx.identity.node_id,
    )
    .map_err(NodeError::BadHello)?;
    // Subscribe before admitting, so no event after the welcome is missed.
    let events = host.host_events.subscribe();
    let resume = hello.resume_from_seq;
    let stored = host.stored_at(resume).await.map(|(_, hash)| hash);
    let (opening, head) = host.admit(&hello, stored)?;
    Ok(Admitted {
        hello,
        member_key,
        events,
        opening,
        head,
    })
}

#[tonic::async_trait]
impl ChatService for ChatHost {
    type SessionStream = outbound::OutboundFrames;

    async fn session(
        &self,
        req: Request<Streaming<ClientFrame>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let host = &self.room(&session_room(&req))?;
        let term = host.core().tenure.hosted_cert().cloned();
        let Some(term) = term else {
            return Err(host.not_host().into());
        };
        let nonce = rand::random::<[u8; 32]>().to_vec();
        let challenge = frame(server_frame::Frame::Challenge(Challenge {
            nonce: nonce.clone(),
            host_node_id: host.ctx.identity.node_id.clone(),
            term: Some(term),
        }));
        let (tx, start, frames) = outbound::outbound(host.clone(), challenge);
        let peer = req.peer_certs();
        tokio::spawn(open_session(
            host.clone(),
            req.into_inner(),
            nonce,
            peer,
            tx,
            start,
        ));
        Ok(Response::new(frames))
    }

    async fn replicate(
        &self,
        req: Request<ReplicateRequest>,
    ) -> Result<Response<ReplicateResponse>, Status> {
        let room = term_room(req.get_ref().term.as_ref());
        // A copy labelled with another room than its term's is refused.
        if let Some(label) = req.metadata().get(chat_proto::ROOM_METADATA) {
            let named = label.to_str().ok().map(chat_proto::rules::room_of_label);
            if named != Some(room.as_str()) {
                return Err(NodeError::WrongRoom {
                    term: room.chars().take(64).collect(),
                    here: String::from_utf8_lossy(label.as_bytes())
                        .chars()
                        .take(64)
                        .collect(),
                }
                .into());
            }
        }
        let host = &self.room(&room)?;
        let sender = super::fencing::claimed_host(req.get_ref().term.as_ref())
            .ok_or(NodeError::ReplicateWithoutTerm)?;
        host.ctx
            .authenticate(&req.peer_certs(), &sender, "Replicate")?;
        let copy = host.verify_replicate(req.into_inner())?;
        let (signed_head, cert) = (copy.body.head.clone(), copy.cert.clone());
        if copy.term.epoch > host.core().tenure.known_epoch() {
            // A newer host we had not heard of yet: the relay signed it.
            host.on_term(copy.term.clone(), copy.cert).await;
        }
        let response = host.apply_replicate(&copy.term, copy.body, copy.head)?;
        // Answered only once the copy is on this node's disk: what the host
        // then acknowledges survives this node's crash too.
        host.note_copy_head(signed_head, cert);
        host.save_copy().await?;
        Ok(Response::new(response))
    }

    async fn take_over(
        &self,
        req: Request<TakeOverRequest>,
    ) -> Result<Response<TakeOverResponse>, Status> {
        let host = &self.room(&term_room(req.get_ref().new_term.as_ref()))?;
        let claimed = super::fencing::claimed_host(req.get_ref().sender_term.as_ref())
            .ok_or(NodeError::TakeOverWithoutTerms)?;
        host.ctx
            .authenticate(&req.peer_certs(), &claimed, "TakeOver")?;
        let (new_term, new_cert, sender) = host.verify_take_over(req.into_inner())?;
        let epoch = new_term.epoch;
        host.on_term(new_term, new_cert).await;
        let mut core = host.core();
        if core.tenure.role().hosting_epoch() != Some(epoch) {
            let known = core.tenure.known_epoch();
            return Err(NodeError::CannotTakeOver { epoch, known }.into());
        }
        // The sender just shipped us everything it sequenced, and the
        // relay names it our successor: it can hold the commit point from
        // the start. (Clients that followed the relay here first may
        // already have sent messages in this epoch: not shipped.)
        let head = core.room.as_ref().map_or(0, |r| r.head_before(epoch));
        if core.succession.seed(sender, head) {
            // What the old host shipped is held there: deliverable at once,
            // without waiting for a first round trip to it.
            core.tenure.advance_commit(epoch, head, Instant::now());
        }
        Ok(Response::new(TakeOverResponse {}))
    }
}
