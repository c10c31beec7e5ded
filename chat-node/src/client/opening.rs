//! Opening a session with a host: connect, check the relay-signed term
//! it shows, say a signed Hello that resumes after the last message shown,
//! re-send what is pending; or follow the relay (or a dormant node's
//! refusal naming the host) elsewhere.

use super::inbound::Inbound;
use super::session::client_frame;
use super::{Client, SessionEnd};
use crate::dial::NodeAddr;
use chat_proto::pb::chat::chat_service_client::ChatServiceClient;
use chat_proto::pb::chat::*;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

/// Frames buffered towards the host.
const OUTBOUND_CAPACITY: usize = 64;
/// Bound on connecting to a host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on opening a session: response headers and the host's Challenge.
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);

impl Client {
    /// Where a dormant node says the host is, if it said: the host term
    /// certificate in its metadata, which the relay signed, names it.
    fn redirect_of(&self, status: &Status, tried: &str) -> Option<NodeAddr> {
        if status.code() != Code::Unavailable {
            return None;
        }
        let record = chat_proto::host_from_metadata(status)?;
        let term = self
            .node
            .ctx
            .verify_term(record.certificate.as_ref()?)
            .ok()?;
        (term.address != tried && term.room == self.room.room()).then_some(NodeAddr {
            address: term.address,
            node_id: term.node_id,
        })
    }

    /// Opens a session with `to`, unless the relay names another host
    /// while it is under way: then follows the relay at once. (A host that
    /// died leaves an address whose connect only times out, while the relay
    /// has already promoted its successor.)
    pub(super) async fn open_or_follow(
        &mut self,
        to: &NodeAddr,
    ) -> Result<(mpsc::Sender<ClientFrame>, Inbound), SessionEnd> {
        let mut host_rx = self.room.host_watch();
        host_rx.borrow_and_update();
        let tried = to.address.clone();
        let moved = async move {
            loop {
                if host_rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
                let newer = host_rx.borrow_and_update().clone();
                if let Some(h) = newer.filter(|h| h.address != tried) {
                    return super::node_of(&h);
                }
            }
        };
        tokio::select! {
            opened = self.open(to) => opened,
            next = moved => Err(SessionEnd::Redirect(next)),
        }
    }

    /// Connects to `to`, checks its host term, says Hello and re-sends what
    /// is pending.
    async fn open(
        &mut self,
        to: &NodeAddr,
    ) -> Result<(mpsc::Sender<ClientFrame>, Inbound), SessionEnd> {
        let address = to.address.as_str();
        let lost = |e: &dyn std::fmt::Display| SessionEnd::Lost(format!("{address}: {e}"));
        let endpoint = self
            .node
            .ctx
            .dialer
            .node(to, CONNECT_TIMEOUT)
            .map_err(|e| lost(&e))?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| lost(&crate::dial::with_causes(&e)))?;
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let (inbound, challenge) =
            tokio::time::timeout(OPEN_TIMEOUT, self.challenged(channel, rx, address))
                .await
                .map_err(|_| lost(&format!("no answer within {OPEN_TIMEOUT:?}")))??;
        let term = self.check_host_term(&challenge, address)?;
        self.host_key = chat_proto::trust::PublicKey::from_bytes(&term.public_key).ok();
        // Fresh channel: room for the first frame.
        let _ = tx.try_send(client_frame(client_frame::Frame::Hello(
            self.hello(&challenge),
        )));
        self.retry_at = None;
        self.refused.clear();
        if self.send_pending(&tx, |_| true).await.is_err() {
            return Err(lost(&"stream closed while re-sending"));
        }
        let inbound = Inbound::start(
            inbound,
            self.node.ctx.relay_key,
            self.room.room().to_string(),
            self.senders.clone(),
        );
        Ok((tx, inbound))
    }

    /// Opens the session stream and reads the host's Challenge. A dormant
    /// node's refusal that names the host redirects there.
    async fn challenged(
        &self,
        channel: tonic::transport::Channel,
        rx: mpsc::Receiver<ClientFrame>,
        address: &str,
    ) -> Result<(Streaming<ServerFrame>, Challenge), SessionEnd> {
        let lost = |e: &dyn std::fmt::Display| SessionEnd::Lost(format!("{address}: {e}"));
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Ok(room) = self.room.room().parse() {
            request
                .metadata_mut()
                .insert(chat_proto::ROOM_METADATA, room);
        }
        let response = ChatServiceClient::new(channel).session(request).await;
        let mut inbound = match response {
            Ok(r) => r.into_inner(),
            Err(status) => {
                return Err(match self.redirect_of(&status, address) {
                    Some(next) => SessionEnd::Redirect(next),
                    None => lost(&status),
                })
            }
        };
        match inbound.message().await {
            Ok(Some(ServerFrame {
                frame: Some(server_frame::Frame::Challenge(c)),
            })) => Ok((inbound, c)),
            Ok(_) => Err(lost(&"the host sent no Challenge")),
            Err(status) => Err(lost(&status)),
        }
    }

    /// This member's signed Hello for `challenge`, resuming after the last
    /// message shown.
    fn hello(&self, challenge: &Challenge) -> Hello {
        let me = &self.node.ctx.identity;
        let mut hello = Hello {
            name: me.name.clone(),
            node_id: me.node_id.clone(),
            address: me.address.clone(),
            resume_from_seq: self.view.last_seq,
            certificate: Some(self.node.ctx.name_certificate()),
            ..Default::default()
        };
        self.node
            .ctx
            .key
            .sign_hello(&mut hello, &challenge.nonce, &challenge.host_node_id);
        hello
    }

    /// Checks that the host we reached shows a relay-signed term for itself
    /// that is not older than the newest we know.
    fn check_host_term(
        &self,
        challenge: &Challenge,
        address: &str,
    ) -> Result<chat_proto::pb::relay::HostTerm, SessionEnd> {
        let lost = |why: String| SessionEnd::Lost(format!("{address}: {why}"));
        let cert = challenge
            .term
            .as_ref()
            .ok_or_else(|| lost("the host shows no host term".into()))?;
        let term = self
            .node
            .ctx
            .verify_term(cert)
            .map_err(|e| lost(e.to_string()))?;
        if term.node_id != challenge.host_node_id {
            return Err(lost("the host's term names another node".into()));
        }
        if term.room != self.room.room() {
            return Err(lost(format!("the host's term is for room {:?}", term.room)));
        }
        let newest = self.room.host_watch().borrow().clone();
        match newest {
            Some(h) if h.epoch > term.epoch && h.address != address => {
                Err(SessionEnd::Redirect(super::node_of(&h)))
            }
            _ => Ok(term),
        }
    }
}
