//! One client's session on the live host: reads its frames, forwards host
//! broadcasts, and streams the log from the client's cursor. A slow client
//! only falls behind in the log (bounded channel, resumed by sequence
//! number); it never makes the host buffer without bound.

use super::service::frame;
use super::{HostEvent, Role};
use crate::node::NodeShared;
use chat_proto::pb::chat::*;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc};
use tonic::{Status, Streaming};

/// Log entries read from the room per lock.
const DELIVERY_BATCH: usize = 128;

pub(super) struct Session {
    pub shared: Arc<NodeShared>,
    pub name: String,
    /// Last sequence number delivered to (or already held by) the client.
    pub cursor: u64,
    pub tx: mpsc::Sender<Result<ServerFrame, Status>>,
    /// Sequenced messages of this client waiting for the commit point.
    pub unacked: Vec<Ack>,
}

/// What a client frame asks of the session.
enum Step {
    Continue,
    Reply(server_frame::Frame),
    /// Acknowledge once the successor holds the message.
    AckWhenCommitted(Ack),
    /// A reset, once the relay accepts the admin secret.
    Reset(ResetRoom),
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

impl Session {
    pub(super) async fn run(
        mut self,
        mut inbound: Streaming<ClientFrame>,
        mut events: broadcast::Receiver<HostEvent>,
    ) {
        // Only committed entries are delivered, so the commit point (which
        // also ticks on activation) is the one thing to wake up for.
        let mut commit_rx = self.shared.commit_tx.subscribe();
        let mut activated_sent = false;
        let mut more = true;
        let end = loop {
            tokio::select! {
                biased;
                event = events.recv() => match event {
                    Ok(HostEvent::Frame(f)) => {
                        if self.tx.send(Ok(f)).await.is_err() { break End::Gone }
                    }
                    Ok(HostEvent::Moved(m)) => {
                        let _ = self.tx.send(Ok(frame(server_frame::Frame::Migrate(m)))).await;
                        break End::Moved;
                    }
                    Ok(HostEvent::Closing) => break End::Gone,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let status = Status::resource_exhausted("client too slow; resume from your last sequence number");
                        let _ = self.tx.send(Err(status)).await;
                        break End::Gone;
                    }
                    Err(broadcast::error::RecvError::Closed) => break End::Gone,
                },
                incoming = inbound.message() => match incoming {
                    Ok(Some(f)) => match self.handle(self.after_handoff(f).await) {
                        Step::Continue => {}
                        Step::Reply(f) => if self.tx.send(Ok(frame(f))).await.is_err() { break End::Gone },
                        Step::AckWhenCommitted(ack) => {
                            self.unacked.push(ack);
                            if self.flush_acks().await.is_err() { break End::Gone }
                        }
                        Step::Reset(r) => {
                            if let Step::Reply(f) = self.shared.reset_room(&self.name, r).await {
                                if self.tx.send(Ok(frame(f))).await.is_err() { break End::Gone }
                            }
                        }
                        Step::Left => break End::Left,
                    },
                    Ok(None) | Err(_) => break End::Gone,
                },
                changed = commit_rx.changed() => {
                    if changed.is_err() || self.flush_acks().await.is_err() { break End::Gone }
                    more = true;
                }
                _ = std::future::ready(()), if more => {
                    match self.deliver(&mut activated_sent).await {
                        Ok(m) => more = m,
                        Err(()) => break End::Gone,
                    }
                }
            }
        };
        self.shared.session_closed(&self.name, end == End::Left);
    }

    /// Holds a frame while the host ships its room to a successor: if the
    /// handoff fails the frame is served here, otherwise by the next host.
    async fn after_handoff(&self, f: ClientFrame) -> ClientFrame {
        let mut role_rx = self.shared.role_tx.subscribe();
        let _ = role_rx
            .wait_for(|r| !matches!(r, Role::HandingOff { .. }))
            .await;
        f
    }

    /// Handles one client frame.
    fn handle(&mut self, f: ClientFrame) -> Step {
        self.shared.stats.count_chat_frame();
        match f.frame {
            Some(client_frame::Frame::Send(m)) => self.shared.sequence(&self.name, m),
            Some(client_frame::Frame::Reset(r)) => Step::Reset(r),
            Some(client_frame::Frame::Leave(_)) => {
                self.shared.leave_room(&self.name);
                Step::Left
            }
            Some(client_frame::Frame::Hello(_)) => rejected("", "this session already said Hello"),
            None => rejected("", "empty frame"),
        }
    }

    /// Acknowledges every message of this client the successor now holds.
    async fn flush_acks(&mut self) -> Result<(), ()> {
        let commit = *self.shared.commit_tx.borrow();
        let (ready, waiting) = self.unacked.drain(..).partition(|a| a.seq <= commit);
        self.unacked = waiting;
        for ack in ready {
            let f = frame(server_frame::Frame::Ack(ack));
            self.tx.send(Ok(f)).await.map_err(|_| ())?;
        }
        Ok(())
    }

    /// Sends the next batch of committed log entries the client lacks; true
    /// if more wait.
    async fn deliver(&mut self, activated_sent: &mut bool) -> Result<bool, ()> {
        let commit = *self.shared.commit_tx.borrow();
        let (committed, activated) = {
            let core = self.shared.core();
            match (&core.role, &core.room) {
                (Role::Dormant, _) | (_, None) => return Ok(false),
                (_, Some(room)) => (
                    room.entries_after(self.cursor, commit, DELIVERY_BATCH),
                    room.activated(),
                ),
            }
        };
        let full = committed.len() == DELIVERY_BATCH;
        for entry in committed {
            let f = match entry.kind {
                Some(log_entry::Kind::Reset(r)) => {
                    self.cursor = r.seq;
                    *activated_sent = false;
                    server_frame::Frame::Reset(r)
                }
                Some(log_entry::Kind::Message(m)) if activated => {
                    self.send_activated_once(activated_sent).await?;
                    self.cursor = m.seq;
                    server_frame::Frame::Message(m)
                }
                _ => return Ok(false), // held until activation
            };
            self.tx.send(Ok(frame(f))).await.map_err(|_| ())?;
        }
        if activated {
            self.send_activated_once(activated_sent).await?;
        }
        Ok(full)
    }

    async fn send_activated_once(&self, sent: &mut bool) -> Result<(), ()> {
        if !*sent {
            *sent = true;
            let count = self
                .shared
                .core()
                .room
                .as_ref()
                .map_or(0, |r| r.members().count());
            let f = server_frame::Frame::Activated(Activated {
                member_count: count as u32,
            });
            self.tx.send(Ok(frame(f))).await.map_err(|_| ())?;
        }
        Ok(())
    }
}

fn rejected(id: &str, reason: impl Into<String>) -> Step {
    Step::Reply(server_frame::Frame::Rejected(Rejected {
        id: id.to_string(),
        reason: reason.into(),
    }))
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl NodeShared {
    /// Sequences a message from `from`: acknowledges it, or says why not.
    /// A dormant node sequences nothing and answers nothing: the client
    /// re-sends the message to the next host under the same id.
    fn sequence(&self, from: &str, m: SendMessage) -> Step {
        let appended = {
            let mut core = self.core();
            let Role::Live { epoch } = core.role else {
                return Step::Continue;
            };
            match core.room.as_mut() {
                Some(room) => room.append(from, &m.id, &m.text, now_unix_ms(), epoch),
                None => return Step::Continue,
            }
        };
        match appended {
            Ok(a) => {
                if !a.duplicate {
                    self.log_tx.send_modify(|n| *n += 1);
                }
                Step::AckWhenCommitted(Ack {
                    id: m.id,
                    seq: a.seq,
                })
            }
            Err(e) => rejected(&m.id, e.to_string()),
        }
    }

    /// Wipes the room if the relay accepts the admin secret.
    async fn reset_room(&self, by: &str, r: ResetRoom) -> Step {
        if let Err(status) = self.relay.authorize_reset(&r.admin_secret).await {
            return rejected("", format!("reset refused: {}", status.message()));
        }
        let min_users = r.min_users;
        let result = {
            let mut core = self.core();
            match (core.role, core.room.as_mut()) {
                (Role::Live { epoch }, Some(room)) => room.reset(by, min_users, epoch),
                _ => return rejected("", "the host is moving; try again"),
            }
        };
        match result {
            Ok(r) => {
                tracing::info!(by, min_users, seq = r.seq, "chat reset");
                self.log_tx.send_modify(|n| *n += 1);
                Step::Continue
            }
            Err(e) => rejected("", e.to_string()),
        }
    }

    /// Removes a member from the room and tells everyone.
    pub(crate) fn leave_room(&self, name: &str) {
        let left = {
            let mut core = self.core();
            core.sessions.remove(name);
            core.away_since.remove(name);
            core.room.as_mut().is_some_and(|r| r.leave(name))
        };
        if left {
            tracing::info!(name, "member left");
            self.broadcast(server_frame::Frame::Left(MemberEvent {
                name: name.to_string(),
                member: None,
            }));
        }
    }

    fn session_closed(&self, name: &str, left: bool) {
        if left {
            return;
        }
        let mut core = self.core();
        let open = core
            .sessions
            .get(name)
            .copied()
            .unwrap_or(0)
            .saturating_sub(1);
        if open == 0 {
            core.sessions.remove(name);
            if core.role != Role::Dormant {
                core.away_since
                    .insert(name.to_string(), std::time::Instant::now());
            }
        } else {
            core.sessions.insert(name.to_string(), open);
        }
    }
}
