//! One session of the client with one host.

use super::inbound::{Arrived, Inbound};
use super::{chain, Client, ClientEvent, Connection, SealedOut, SessionEnd, UserCommand};
use crate::dial::NodeAddr;
use chat_proto::chain::Digest;
use chat_proto::pb::chat::*;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a goodbye may take.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn client_frame(f: client_frame::Frame) -> ClientFrame {
    ClientFrame { frame: Some(f) }
}

/// Sleeps until `at` (never called without one: the branch is disabled).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    tokio::time::sleep_until(at.unwrap_or_else(tokio::time::Instant::now)).await
}

/// After the relay fenced this session's host (a newer epoch elsewhere),
/// where to follow; `None` while the session's host is still current.
fn fenced(
    host_rx: &mut tokio::sync::watch::Receiver<Option<chat_proto::pb::relay::HostRecord>>,
    epoch: u64,
    address: &str,
) -> Option<SessionEnd> {
    let newer = host_rx
        .borrow_and_update()
        .clone()
        .filter(|h| h.epoch > epoch && epoch > 0 && h.address != address)?;
    Some(SessionEnd::Redirect(super::node_of(&newer)))
}

impl Client {
    /// Opens a session with the host `to`, resumes, re-sends what is
    /// pending, then serves commands and frames until the session ends.
    pub(super) async fn session(
        &mut self,
        to: &NodeAddr,
        commands: &mut mpsc::Receiver<UserCommand>,
        outbox: &mut mpsc::Receiver<SealedOut>,
        cancel: &CancellationToken,
    ) -> SessionEnd {
        let address = to.address.as_str();
        let (tx, mut inbound) = match self.open_or_follow(to).await {
            Ok(open) => open,
            Err(end) => return end,
        };
        let mut host_rx = self.room.host_watch();
        let mut no_host_rx = self.room.no_host_watch();
        let mut epoch = 0;
        loop {
            let retry_at = self.retry_at;
            let end = tokio::select! {
                arrived = inbound.next() => self.on_inbound(arrived, &mut epoch, address).await,
                cmd = commands.recv() => self.on_command(cmd, &tx, &mut inbound).await,
                Some(out) = outbox.recv() => self.pass_sealed(out, &tx).await,
                changed = host_rx.changed() => match changed {
                    Ok(()) => fenced(&mut host_rx, epoch, address),
                    Err(_) => Some(SessionEnd::Exit),
                },
                // The relay gave up on this host: whatever it still says,
                // nothing it acknowledges from now on would survive.
                changed = no_host_rx.changed() => match changed {
                    Ok(()) => no_host_rx.borrow_and_update().clone().map(SessionEnd::Lost),
                    Err(_) => Some(SessionEnd::Exit),
                },
                _ = sleep_until(retry_at), if retry_at.is_some() => self.retry_refused(&tx).await,
                _ = cancel.cancelled() => Some(SessionEnd::Exit),
            };
            if let Some(end) = end {
                return end;
            }
        }
    }

    /// Handles what the host's stream yielded; `Some` ends the session.
    /// Notes the epoch the host welcomed us with.
    async fn on_inbound(
        &mut self,
        arrived: Arrived,
        epoch: &mut u64,
        address: &str,
    ) -> Option<SessionEnd> {
        match arrived {
            Arrived::Frame(f) => {
                if let server_frame::Frame::Welcome(w) = &f {
                    *epoch = w.epoch;
                }
                self.on_frame(f, address).await
            }
            Arrived::Message(m, verdict) => {
                self.on_message(m, verdict, address).await;
                None
            }
            Arrived::Closed => Some(SessionEnd::Lost("the host closed the session".into())),
            Arrived::Broken(status) => Some(SessionEnd::Lost(status.to_string())),
        }
    }

    /// Handles a user command during a session; `Some` ends the session.
    async fn on_command(
        &mut self,
        cmd: Option<UserCommand>,
        tx: &mpsc::Sender<ClientFrame>,
        inbound: &mut Inbound,
    ) -> Option<SessionEnd> {
        match cmd {
            Some(UserCommand::Exit(done)) => {
                self.leave(tx, inbound).await;
                if let Some(done) = done {
                    let _ = done.send(());
                }
                Some(SessionEnd::Exit)
            }
            Some(cmd) => {
                self.online_command(cmd, tx).await;
                None
            }
            None => Some(SessionEnd::Exit),
        }
    }

    /// Hands a sealed private message to the host and tells the user.
    async fn pass_sealed(
        &mut self,
        out: SealedOut,
        tx: &mpsc::Sender<ClientFrame>,
    ) -> Option<SessionEnd> {
        let frame = client_frame(client_frame::Frame::SealedPrivate(out.sealed));
        if tx.send(frame).await.is_err() {
            let why = "stream closed while sending a private message";
            return Some(SessionEnd::Lost(why.into()));
        }
        let (to, text) = (out.to, out.text);
        self.emit(ClientEvent::PrivateSent { to, text }).await;
        None
    }

    /// Sends again the messages the host refused as too fast.
    async fn retry_refused(&mut self, tx: &mpsc::Sender<ClientFrame>) -> Option<SessionEnd> {
        self.retry_at = None;
        let refused = std::mem::take(&mut self.refused);
        if self
            .send_pending(tx, |m| refused.contains(&m.id))
            .await
            .is_err()
        {
            return Some(SessionEnd::Lost("stream closed while re-sending".into()));
        }
        None
    }

    /// Sends the pending messages `which` selects (again) on this session.
    pub(super) async fn send_pending(
        &self,
        tx: &mpsc::Sender<ClientFrame>,
        which: impl Fn(&SendMessage) -> bool,
    ) -> Result<(), ()> {
        let again: Vec<SendMessage> = self
            .view
            .pending
            .iter()
            .filter(|m| which(m))
            .cloned()
            .collect();
        for msg in again {
            let frame = client_frame(client_frame::Frame::Send(msg));
            tx.send(frame).await.map_err(|_| ())?;
        }
        Ok(())
    }

    /// Applies one frame from the host; `Some` ends the session.
    async fn on_frame(&mut self, f: server_frame::Frame, address: &str) -> Option<SessionEnd> {
        use server_frame::Frame;
        match f {
            Frame::Welcome(w) => self.welcomed(w, address).await,
            Frame::Message(m) => {
                // Only the reader passes messages, with their verdicts.
                let why = Err(chat_proto::trust::TrustError::Malformed);
                self.on_message(m, why, address).await
            }
            Frame::Ack(a) => {
                self.view.pending.retain(|p| p.id != a.id);
                if a.seq > self.view.last_seq {
                    // Checked when the log reaches it: the host may not
                    // serve another message there.
                    self.log_check.acked(&a.id, a.seq);
                }
                let (id, seq) = (a.id, a.seq);
                self.emit(ClientEvent::Ack { id, seq }).await;
            }
            Frame::Members(m) => {
                if std::mem::take(&mut self.view.members_stale) {
                    self.view.members.clear();
                }
                self.view.members.extend(m.names);
                self.still_waiting().await;
            }
            Frame::Joined(j) => {
                self.view.members.insert(j.name.clone());
                self.emit(ClientEvent::Joined { name: j.name }).await;
                self.still_waiting().await;
            }
            Frame::Left(l) => {
                self.view.members.remove(&l.name);
                self.emit(ClientEvent::Left { name: l.name }).await;
                self.still_waiting().await;
            }
            Frame::Activated(_) if !self.view.activated => {
                self.view.activated = true;
                self.emit(ClientEvent::Activated).await;
            }
            Frame::Activated(_) => {}
            Frame::Reset(r) => self.on_reset(r, address).await,
            Frame::Migrate(m) => {
                return Some(SessionEnd::Redirect(NodeAddr {
                    address: m.address,
                    node_id: m.node_id,
                }))
            }
            Frame::Challenge(_) => {} // only first
            Frame::Head(h) => self.on_head(h, address).await,
            Frame::SealedPrivate(p) => crate::peer::accept_sealed(self.node.peer.clone(), p),
            Frame::Rejected(r) => self.on_rejected(r).await,
        }
        None
    }

    /// Tells the user that the session's host served something that does
    /// not check out.
    pub(super) async fn report(&self, address: &str, what: String) {
        let host = format!("{} at {address}", self.view.host_name);
        tracing::warn!(%host, %what, "the host served something that does not check out");
        self.emit(ClientEvent::Tampering { host, what }).await;
    }

    /// Shows a chat message once, if its signatures check out and it
    /// follows its sender's chain; reports what the host got wrong.
    async fn on_message(
        &mut self,
        m: ChatMessage,
        verified: Result<Digest, chat_proto::trust::TrustError>,
        address: &str,
    ) {
        if m.seq <= self.view.last_seq {
            return; // already shown
        }
        let me = &self.node.ctx.identity.name;
        let verdict = self.log_check.message(
            self.room.room(),
            self.view.last_seq,
            &m,
            me,
            verified.clone().ok(),
        );
        self.view.last_seq = m.seq;
        if let Err(e) = verified {
            let what = format!(
                "served message {} claiming to be from {:?}, which failed verification ({e}); not shown",
                m.seq, m.from
            );
            self.report(address, what).await;
            return;
        }
        match verdict {
            chain::Verdict::Show => {}
            chain::Verdict::ShowWithNotice(message) => {
                self.emit(ClientEvent::Info { message }).await
            }
            chain::Verdict::ShowAndReport(what) => self.report(address, what).await,
            chain::Verdict::Refuse(what) => return self.report(address, what).await,
        }
        self.emit(ClientEvent::Message {
            seq: m.seq,
            from: m.from,
            text: m.text,
            sent_at_unix_ms: m.sent_at_unix_ms,
        })
        .await;
    }

    /// A refusal from the host: a message refused as too fast stays pending
    /// and goes again later; any other refusal is final.
    async fn on_rejected(&mut self, r: Rejected) {
        let queued = !r.id.is_empty() && self.view.pending.iter().any(|p| p.id == r.id);
        if r.chain_expected > 0 && queued && self.lost_before(&r) {
            self.restart_chain();
        }
        if r.retry_after_ms > 0 {
            if queued {
                self.refused.insert(r.id);
            }
            let at = tokio::time::Instant::now() + Duration::from_millis(r.retry_after_ms);
            self.retry_at = Some(self.retry_at.map_or(at, |t| t.max(at)));
            return;
        }
        self.emit(ClientEvent::error(r.reason)).await;
        if queued {
            // Refused for good: if nothing was signed after it, its place
            // in the chain goes to the next message (no gap for others).
            if let Some(last) = self.view.pending.back().filter(|p| p.id == r.id) {
                self.own_chain.rewind_to(last);
            }
            self.view.pending.retain(|p| p.id != r.id);
            self.emit(ClientEvent::Refused { id: r.id }).await;
        }
    }

    /// Checks a signed head of the session's host: its signature, and the
    /// log hash against what this client computed. `None` if it checks out.
    fn verified_head(&self, head: Option<&SignedHead>) -> Result<(u64, Digest), String> {
        let head = head.ok_or("sent no signed head of its log")?;
        let key = self.host_key.as_ref().ok_or("has no host key")?;
        key.verify_head(self.room.room(), head)
            .map(|hash| (head.seq, hash))
            .map_err(|e| format!("signed its log head badly ({e})"))
    }

    /// The host's log starts after `checkpoint` (retention dropped the
    /// entries before): a client that saw less goes on from there, its log
    /// hash the one the host signed, and tells the user.
    async fn history_starts(&mut self, checkpoint: &SignedHead, address: &str) {
        match self.verified_head(Some(checkpoint)) {
            Ok((at, hash)) if at > self.view.last_seq => {
                self.log_check.start_at(at, hash);
                self.view.last_seq = at;
                self.emit(ClientEvent::HistoryStarts { seq: at + 1 }).await;
            }
            Ok(_) => {}
            Err(what) => {
                self.report(address, format!("{what} (its checkpoint)"))
                    .await
            }
        }
    }

    /// A head the host signed as it committed: it must match the log it
    /// served this client.
    async fn on_head(&mut self, head: SignedHead, address: &str) {
        let finding = match self.verified_head(Some(&head)) {
            Ok((at, hash)) => self.log_check.served_head(at, hash),
            Err(why) => Some(why),
        };
        if let Some(what) = finding {
            self.report(address, what).await;
        }
    }

    /// Whether the message the host refused as ahead of its chain follows
    /// messages this client no longer holds (lost in a crash).
    fn lost_before(&self, r: &Rejected) -> bool {
        let Some(refused) = self.view.pending.iter().find(|p| p.id == r.id) else {
            return false;
        };
        let wanted = r.chain_expected..refused.chain_seq;
        !self
            .view
            .pending
            .iter()
            .any(|p| wanted.contains(&p.chain_seq))
    }

    /// Starts a new chain and signs every waiting message again on it
    /// (none was accepted: each ran ahead of the lost ones). Receivers show
    /// that this member started a new chain.
    fn restart_chain(&mut self) {
        tracing::info!(
            "messages of this member were lost before they went out; starting a new chain"
        );
        self.own_chain.restart();
        let ctx = &self.node.ctx;
        for msg in self.view.pending.iter_mut() {
            self.own_chain
                .sign(&ctx.key, self.room.room(), &ctx.identity.name, msg);
            self.refused.insert(msg.id.clone());
        }
    }

    async fn welcomed(&mut self, w: Welcome, address: &str) {
        self.backoff.reset();
        // The member list follows, in Members frames: the first replaces it.
        self.view.members_stale = true;
        let previous_host = std::mem::take(&mut self.view.host_name);
        self.view.host_name = w.host_name.clone();
        if let Some(start) = w.history_start.as_ref() {
            self.history_starts(start, address).await;
        }
        // What this client was shown must be a prefix of this host's log.
        match self.verified_head(w.head.as_ref()) {
            Ok((at, hash)) => {
                if let Some(what) = self.log_check.head(at, hash, self.view.last_seq) {
                    let what = format!("{what} (by host {previous_host})");
                    self.report(address, what).await;
                }
                if at < self.view.last_seq {
                    // Only crashed nodes held these (or a host lies): say
                    // so, and follow the new log. Its senders' chains keep
                    // anything already shown from showing twice.
                    let lost = format!(
                        "the new host lacks messages {}..={} (held only by crashed nodes)",
                        at + 1,
                        self.view.last_seq
                    );
                    self.emit(ClientEvent::error(lost)).await;
                    self.view.last_seq = at;
                }
            }
            Err(what) => self.report(address, what).await,
        }
        self.connection(Connection::Connected).await;
        self.view.no_host = None;
        if w.epoch > self.view.announced_epoch {
            self.view.announced_epoch = w.epoch;
            self.emit(ClientEvent::Host {
                epoch: w.epoch,
                address: address.to_string(),
                name: w.host_name,
            })
            .await;
        }
        self.view.min_users = w.min_users;
        if !w.activated && !self.view.activated {
            self.emit(ClientEvent::Waiting {
                members: w.member_count,
                min_users: w.min_users,
            })
            .await;
        }
    }

    /// While the room waits to activate, tells the user how many members
    /// it has now, once the member list is known (each member counted
    /// once: the Welcome's count already includes this member).
    async fn still_waiting(&self) {
        if self.view.activated || self.view.members_stale || self.view.min_users == 0 {
            return;
        }
        let members = u32::try_from(self.view.members.len()).unwrap_or(u32::MAX);
        let min_users = self.view.min_users;
        // Enough members: the host's activation is on its way (the member
        // list of a session into an active room comes before it).
        if members >= min_users {
            return;
        }
        self.emit(ClientEvent::Waiting { members, min_users }).await;
    }

    async fn online_command(&mut self, cmd: UserCommand, tx: &mpsc::Sender<ClientFrame>) {
        let frame = match cmd {
            UserCommand::Say(text) => match self.queue(text).await {
                // An older message waits to go again (the host said "too
                // fast"): this one goes after it, so the user's messages
                // keep their order.
                Some(msg) if !self.refused.is_empty() => {
                    self.refused.insert(msg.id);
                    return;
                }
                Some(msg) => client_frame::Frame::Send(msg),
                None => return,
            },
            // The relay checks the admin secret and certifies the reset.
            UserCommand::Reset(min_users) => match self.reset_certificate(min_users).await {
                Ok(certificate) => client_frame::Frame::Reset(ResetRoom {
                    min_users,
                    certificate: Some(certificate),
                }),
                Err(why) => return self.emit(ClientEvent::error(why)).await,
            },
            other => return self.local_command(other).await,
        };
        // If the stream just broke, the session ends on its next read and
        // pending messages are re-sent to the next host.
        let _ = tx.send(client_frame(frame)).await;
    }

    /// Says goodbye and waits (bounded) for the host to close the session.
    async fn leave(&mut self, tx: &mpsc::Sender<ClientFrame>, inbound: &mut Inbound) {
        if tx
            .send(client_frame(client_frame::Frame::Leave(Leave {})))
            .await
            .is_err()
        {
            return;
        }
        let _ = tokio::time::timeout(LEAVE_TIMEOUT, async {
            while let Arrived::Frame(_) | Arrived::Message(..) = inbound.next().await {}
        })
        .await;
    }
}
