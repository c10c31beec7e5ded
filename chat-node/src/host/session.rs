//! One client's session on the live host: reads its frames, answers them,
//! acknowledges its messages once committed, and forwards host broadcasts.
//! The log itself reaches the client through [`super::outbound`].

use super::mailbox::{self, Letter, Mailbox, NotQueued};
use super::outbound::frame;
use super::outbound::Outbound;
use super::rate::SessionRate;
use super::{HostEvent, Role};
use crate::checked::{Checked, Read};
use crate::error::{NodeError, RoomError};
use crate::host::RoomHost;
use chat_proto::chain::Signed;
use chat_proto::pb::chat::*;
use chat_proto::pb::relay::NameCertificate;
use chat_proto::runs;
use chat_proto::sealed;
use chat_proto::trust::PublicKey;
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};
use tonic::Streaming;

/// After how long a message that ran ahead of its sender's chain is to be
/// sent again (the one before it is on its way).
const OUT_OF_TURN_RETRY_MS: u64 = 50;

pub(super) struct Session {
    pub host: Arc<RoomHost>,
    /// Sealed private messages for this member, from other sessions.
    pub mailbox: Mailbox,
    pub name: String,
    /// The member's node id.
    pub node_id: String,
    /// The member's key, as its name certificate binds it.
    pub key: PublicKey,
    /// The member's name certificate, stored with each of its messages.
    pub certificate: NameCertificate,
    /// The member's send rate, shared with its other sessions.
    pub rate: SessionRate,
    pub tx: Outbound,
    /// Sequenced messages of this client waiting for the commit point, in
    /// sequence order.
    pub unacked: VecDeque<Ack>,
}

/// A client frame as the session's reader passes it on: a message comes
/// with whether its signature (or its run's) checks out.
/// Not boxed: an allocation per frame made on the reader's thread and
/// freed on the session's is what bloated a late joiner's memory
/// thirtyfold on the client side (`client/inbound.rs`).
enum Incoming {
    Frame(ClientFrame),
    Send(SendMessage, bool),
    End,
}

/// Checks the messages of a batch of client frames from `name`, signed
/// with `key`, one signature per run (see `chat_proto::runs`).
fn check_batch(
    batch: &mut Vec<Read<ClientFrame>>,
    room: &str,
    name: &str,
    key: PublicKey,
) -> Vec<Incoming> {
    let items: Vec<runs::Item<'_>> = batch
        .iter()
        .filter_map(|read| match read {
            Some(Ok(ClientFrame {
                frame: Some(client_frame::Frame::Send(m)),
            })) => Some(runs::Item {
                key,
                signed: Signed::sent(room, name, m),
            }),
            _ => None,
        })
        .collect();
    let mut valid = runs::check(&items).valid.into_iter();
    batch
        .drain(..)
        .map(|read| match read {
            Some(Ok(ClientFrame {
                frame: Some(client_frame::Frame::Send(m)),
            })) => Incoming::Send(m, valid.next().unwrap_or(false)),
            Some(Ok(f)) => Incoming::Frame(f),
            None | Some(Err(_)) => Incoming::End,
        })
        .collect()
}

/// What a client frame asks of the session.
enum Step {
    Continue,
    Reply(server_frame::Frame),
    /// Acknowledge once the successor holds the message.
    AckWhenCommitted(Ack),
    Left,
}

/// Why a session ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The member left the chat.
    Left,
    /// The client went away or fell too far behind.
    Gone,
    /// The host role moved; the client was told where.
    Moved,
}

/// Goes on while the client's stream is open; ends the session once the
/// client has gone.
fn gone_if_closed(sent: Result<(), ()>) -> ControlFlow<End> {
    match sent {
        Ok(()) => ControlFlow::Continue(()),
        Err(()) => ControlFlow::Break(End::Gone),
    }
}

impl Session {
    pub(super) async fn run(
        mut self,
        inbound: Streaming<ClientFrame>,
        mut events: broadcast::Receiver<HostEvent>,
    ) {
        let (room, name, key) = (self.host.room.clone(), self.name.clone(), self.key);
        let mut inbound =
            Checked::start(inbound, move |batch| check_batch(batch, &room, &name, key));
        // Acks wait for the commit point; sessions with none do not wake.
        let (mut commit_rx, mut role_rx) = {
            let core = self.host.core();
            (core.tenure.commit().subscribe(), core.tenure.watch_role())
        };
        let end = loop {
            tokio::select! {
                biased;
                event = events.recv() => {
                    if let ControlFlow::Break(end) = self.forward(event).await { break end }
                }
                // Waits while the client reads slowly: the queue fills and
                // the host refuses further ones to their senders.
                Some(letter) = self.mailbox.letters.recv() => {
                    let f = server_frame::Frame::SealedPrivate(letter.sealed);
                    if let ControlFlow::Break(end) = gone_if_closed(self.tx.frame(f).await) { break end }
                }
                incoming = inbound.next() => match incoming {
                    Some(Incoming::End) | None => break End::Gone,
                    Some(f) => {
                        let f = after_handoff(&mut role_rx, f).await;
                        if let ControlFlow::Break(end) = self.answer(f, &commit_rx).await { break end }
                    }
                },
                changed = commit_rx.changed(), if !self.unacked.is_empty() => {
                    if changed.is_err() || self.flush_acks(&commit_rx).await.is_err() { break End::Gone }
                }
            }
        };
        self.host.session_closed(&self.name, end == End::Left);
        // What is still queued for this member goes back to its senders.
        self.host.mailboxes.close(self.mailbox);
    }

    /// Passes a host event on to the client, if it concerns it.
    async fn forward(
        &mut self,
        event: Result<HostEvent, broadcast::error::RecvError>,
    ) -> ControlFlow<End> {
        match event {
            Ok(HostEvent::Frame(f)) => gone_if_closed(self.tx.send(vec![Ok(f)]).await),
            Ok(HostEvent::Moved(m)) => {
                let _ = self.tx.frame(server_frame::Frame::Migrate(m)).await;
                ControlFlow::Break(End::Moved)
            }
            Ok(HostEvent::Closing) => ControlFlow::Break(End::Gone),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let _ = self.tx.send(vec![Err(NodeError::TooSlow.into())]).await;
                ControlFlow::Break(End::Gone)
            }
            Err(broadcast::error::RecvError::Closed) => ControlFlow::Break(End::Gone),
        }
    }

    /// Handles one client frame and sends what it asks for: a reply, or
    /// its ack once committed.
    async fn answer(&mut self, f: Incoming, commit_rx: &watch::Receiver<u64>) -> ControlFlow<End> {
        if !matches!(f, Incoming::End) {
            self.host.ctx.stats.count_chat_frame();
        }
        let step = match f {
            Incoming::Send(m, verified) => self.send(m, verified),
            Incoming::Frame(f) => self.handle(f),
            Incoming::End => return ControlFlow::Break(End::Gone),
        };
        let sent = match step {
            Step::Continue => Ok(()),
            Step::Reply(f) => self.tx.frame(f).await,
            Step::AckWhenCommitted(ack) => {
                self.hold_ack(ack);
                self.flush_acks(commit_rx).await
            }
            Step::Left => return ControlFlow::Break(End::Left),
        };
        gone_if_closed(sent)
    }

    /// Handles one client frame.
    fn handle(&mut self, f: ClientFrame) -> Step {
        match f.frame {
            // The reader passes messages with their verdicts.
            Some(client_frame::Frame::Send(m)) => self.send(m, false),
            Some(client_frame::Frame::Reset(r)) => {
                match self.host.reset_room(&self.name, &self.node_id, r) {
                    Ok(()) => Step::Continue,
                    Err(why) => rejected("", why),
                }
            }
            Some(client_frame::Frame::SealedPrivate(p)) => self.pass_on(p),
            Some(client_frame::Frame::Leave(_)) => {
                self.host.leave_room(&self.name);
                Step::Left
            }
            Some(client_frame::Frame::Hello(_)) => rejected("", "this session already said Hello"),
            None => rejected("", "empty frame"),
        }
    }

    /// Checks a message's signature and the sender's rate, then sequences it.
    /// A message the host already holds (a re-send) is acknowledged again
    /// without spending the sender's rate.
    fn send(&mut self, m: SendMessage, verified: bool) -> Step {
        if let Some(seq) = self.host.sequenced(&self.name, &m.id) {
            return Step::AckWhenCommitted(Ack { id: m.id, seq });
        }
        if let Err(wait) = self.rate.try_take(tokio::time::Instant::now()) {
            let retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
            return Step::Reply(server_frame::Frame::Rejected(Rejected {
                id: m.id,
                reason: format!(
                    "sending too fast: at most {} messages per second",
                    self.host.ctx.settings.messages_per_second
                ),
                retry_after_ms,
                chain_expected: 0,
            }));
        }
        if !verified {
            return rejected(&m.id, "message not signed by you: bad signature");
        }
        let message = ChatMessage {
            id: m.id,
            from: self.name.clone(),
            text: m.text,
            sent_at_unix_ms: m.sent_at_unix_ms,
            signature: m.signature,
            sender: Some(self.certificate.clone()),
            chain_seq: m.chain_seq,
            chain_prev: m.chain_prev,
            ..Default::default()
        };
        self.host.sequence(message)
    }

    /// Passes a sealed private message on to the newest session of its
    /// recipient, a member of the room with a session open, through that
    /// session's bounded queue; refuses it to the sender (naming the
    /// recipient) when it cannot. The host cannot open it; it counts
    /// against the sender's rate like a message.
    fn pass_on(&mut self, p: SealedPrivate) -> Step {
        let to = match self.host.recipient_here(&p.to_node_id) {
            Ok(name) => name,
            Err(why) => return Step::Reply(mailbox::refusal("", &why)),
        };
        let refused = |why: String| Step::Reply(mailbox::refusal(&to, &why));
        if p.sealed.len() > sealed::MAX_SEALED_BYTES {
            return refused(format!(
                "a sealed private message is at most {} bytes; this one is {}",
                sealed::MAX_SEALED_BYTES,
                p.sealed.len()
            ));
        }
        if self.rate.try_take(tokio::time::Instant::now()).is_err() {
            return refused(format!(
                "sending too fast: at most {} messages per second",
                self.host.ctx.settings.messages_per_second
            ));
        }
        let to_node_id = p.to_node_id.clone();
        let letter = Letter {
            sealed: p,
            to: to.clone(),
            sender: self.tx.downgrade(),
        };
        match self.host.mailboxes.post(&to_node_id, letter) {
            Ok(()) => Step::Continue,
            Err(NotQueued::NoSession) => refused(format!("{to} is not connected to the host")),
            Err(NotQueued::Full) => refused(format!(
                "{to} is not taking private messages this fast ({} are waiting); send it again \
                 in a moment",
                mailbox::MAILBOX_CAPACITY
            )),
        }
    }

    /// Keeps an acknowledgement, in sequence order, until its commit. New
    /// messages come last; a re-sent one may go further in.
    fn hold_ack(&mut self, ack: Ack) {
        let at = self.unacked.partition_point(|a| a.seq <= ack.seq);
        self.unacked.insert(at, ack);
    }

    /// Acknowledges every message of this client the successor now holds.
    async fn flush_acks(&mut self, commit: &watch::Receiver<u64>) -> Result<(), ()> {
        let commit = *commit.borrow();
        let ready = self.unacked.partition_point(|a| a.seq <= commit);
        let batch = self
            .unacked
            .drain(..ready)
            .map(|ack| Ok(frame(server_frame::Frame::Ack(ack))))
            .collect();
        self.tx.send(batch).await
    }
}

/// Holds a frame while the host ships its room to a successor: if the
/// handoff fails the frame is served here, otherwise by the next host.
async fn after_handoff(roles: &mut watch::Receiver<Role>, f: Incoming) -> Incoming {
    let _ = roles
        .wait_for(|r| !matches!(r, Role::HandingOff { .. }))
        .await;
    f
}

fn rejected(id: &str, reason: impl Into<String>) -> Step {
    Step::Reply(server_frame::Frame::Rejected(Rejected {
        id: id.to_string(),
        reason: reason.into(),
        retry_after_ms: 0,
        chain_expected: 0,
    }))
}

impl RoomHost {
    /// The name of the member `node_id` if the live room has it with a
    /// session open here; says why not.
    fn recipient_here(&self, node_id: &str) -> Result<String, String> {
        let core = self.core();
        let room = match (core.tenure.role(), core.room.as_ref()) {
            (Role::Live { .. }, Some(room)) => room,
            _ => return Err("the host is moving; try again".into()),
        };
        let Some(member) = room.members().find(|m| m.node_id == node_id) else {
            return Err("the recipient is not a member of this chat".into());
        };
        if !core.attendance.connected(&member.name) {
            return Err(format!("{} is not connected to the host", member.name));
        }
        Ok(member.name.clone())
    }

    /// The sequence number of `from`'s message `id`, if the live room holds it.
    fn sequenced(&self, from: &str, id: &str) -> Option<u64> {
        let core = self.core();
        match (core.tenure.role(), core.room.as_ref()) {
            (Role::Live { .. }, Some(room)) => room.seq_of(from, id),
            _ => None,
        }
    }

    /// Sequences a message from `from`: acknowledges it, or says why not.
    /// A dormant node sequences nothing and answers nothing: the client
    /// re-sends the message to the next host under the same id.
    fn sequence(&self, mut m: ChatMessage) -> Step {
        let id = m.id.clone();
        let appended = {
            let mut core = self.core();
            let Role::Live { epoch } = core.tenure.role() else {
                return Step::Continue;
            };
            m.epoch = epoch;
            match core.room.as_mut() {
                Some(room) => {
                    let appended = room.append_message(m);
                    // Retention: the oldest entries past the limits go
                    // (from the disk and the copies as they follow).
                    room.retain(self.retention(), chat_proto::trust::now_unix_ms());
                    appended
                }
                None => return Step::Continue,
            }
        };
        match appended {
            Ok(a) => {
                if !a.duplicate {
                    self.log_tx.send_modify(|n| *n += 1);
                }
                Step::AckWhenCommitted(Ack { id, seq: a.seq })
            }
            // An earlier message of this sender is still on its way (or
            // waits to go again): this one goes again after it.
            Err(e @ RoomError::OutOfTurn { expected }) => {
                Step::Reply(server_frame::Frame::Rejected(Rejected {
                    id,
                    reason: e.to_string(),
                    retry_after_ms: OUT_OF_TURN_RETRY_MS,
                    chain_expected: expected,
                }))
            }
            Err(e) => rejected(&id, e.to_string()),
        }
    }

    /// Removes a member from the room and tells everyone.
    pub(crate) fn leave_room(&self, name: &str) {
        let left = {
            let mut core = self.core();
            core.attendance.left(name);
            core.room.as_mut().is_some_and(|r| r.leave(name))
        };
        if left {
            tracing::info!(name, "member left");
            self.broadcast(server_frame::Frame::Left(MemberEvent {
                name: name.to_string(),
            }));
        }
    }

    pub(super) fn session_closed(&self, name: &str, left: bool) {
        if left {
            return;
        }
        let mut core = self.core();
        let live = core.tenure.role() != Role::Dormant;
        core.attendance
            .closed(name, live, std::time::Instant::now());
    }
}
