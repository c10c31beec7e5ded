//! A thin subscriber of our chat: what a client that never hosts (a phone,
//! a browser) would run. It speaks the real protocol (relay registration
//! with its Ed25519 key, the relay watch stream that keeps it a member and
//! tells it where the host is, and a `chat.v1.ChatService/Session` opened
//! with a signed Hello, resumed from the last sequence number after any
//! move or loss), but carries no dormant server, so a thousand of them fit
//! in one process. The host does the same work per session as for a full
//! node.
//!
//! Its advertised address refuses connections: the host never picks it as
//! successor for long (the standby node sorts first anyway).

use crate::stats::Probe;
use crate::{BenchError, Result};
use chat_proto::pb::chat::chat_service_client::ChatServiceClient;
use chat_proto::pb::chat::{
    client_frame, server_frame, Challenge, ClientFrame, Hello, ServerFrame,
};
use chat_proto::pb::relay::relay_service_client::RelayServiceClient;
use chat_proto::pb::relay::NameCertificate;
use chat_proto::pb::relay::{HostRecord, RegisterRequest, RegisterResponse, WatchHostRequest};
use chat_proto::trust::Keypair;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

/// The address a thin subscriber advertises (the discard port: refused).
const THIN_ADDRESS: &str = "127.0.0.1:9";
/// Pause before reopening a lost session.
const RECONNECT_DELAY: Duration = Duration::from_millis(50);
/// Attempts to open the first session (following redirects).
const OPEN_ATTEMPTS: usize = 100;

/// Who the thin subscriber is at the relay, and where it thinks the host is.
struct Member {
    key: Keypair,
    certificate: Option<NameCertificate>,
    name: String,
    node_id: String,
    host: HostRecord,
}

type Session = (mpsc::Sender<ClientFrame>, Streaming<ServerFrame>);

async fn channel(uri: String) -> Result<Channel> {
    Ok(Endpoint::from_shared(uri)
        .map_err(|e| BenchError::Setup(e.to_string()))?
        .connect()
        .await?)
}

impl Member {
    /// Takes a newer host record.
    fn learn(&mut self, host: HostRecord) {
        if host.epoch >= self.host.epoch {
            self.host = host;
        }
    }

    /// Opens a session with the host it knows, resuming after `last_seq`;
    /// returns once welcomed.
    async fn open_once(&mut self, last_seq: u64) -> Result<Session> {
        let (tx, rx) = mpsc::channel(1);
        let mut inbound = self.start_session(rx).await?;
        let challenge = match inbound.message().await? {
            Some(ServerFrame {
                frame: Some(server_frame::Frame::Challenge(c)),
            }) => c,
            other => return Err(self.unexpected("Challenge", other)),
        };
        tx.send(self.hello(last_seq, &challenge))
            .await
            .map_err(|_| BenchError::Setup("session channel closed".into()))?;
        match inbound.message().await? {
            Some(ServerFrame {
                frame: Some(server_frame::Frame::Welcome(_)),
            }) => Ok((tx, inbound)),
            other => Err(self.unexpected("Welcome", other)),
        }
    }

    /// Calls `Session` at the host it knows, sending `outbound`; a dormant
    /// node's refusal names the host, to go to next.
    async fn start_session(
        &mut self,
        outbound: mpsc::Receiver<ClientFrame>,
    ) -> Result<Streaming<ServerFrame>> {
        let address = format!("http://{}", self.host.address);
        let mut chat = ChatServiceClient::new(channel(address).await?);
        match chat.session(ReceiverStream::new(outbound)).await {
            Ok(r) => Ok(r.into_inner()),
            Err(status) => {
                if let Some(host) = chat_proto::host_from_metadata(&status) {
                    self.learn(host);
                }
                Err(status.into())
            }
        }
    }

    /// The signed Hello answering `challenge`.
    fn hello(&self, last_seq: u64, challenge: &Challenge) -> ClientFrame {
        let mut hello = Hello {
            name: self.name.clone(),
            node_id: self.node_id.clone(),
            address: THIN_ADDRESS.to_string(),
            resume_from_seq: last_seq,
            certificate: self.certificate.clone(),
            ..Default::default()
        };
        self.key
            .sign_hello(&mut hello, &challenge.nonce, &challenge.host_node_id);
        ClientFrame {
            frame: Some(client_frame::Frame::Hello(hello)),
        }
    }

    fn unexpected(&self, expected: &str, got: Option<ServerFrame>) -> BenchError {
        BenchError::Setup(format!("{}: expected {expected}, got {got:?}", self.name))
    }

    /// Takes one answer from the session: counts a chat message, learns
    /// from a move; whether the session is over (moved, dropped, or the
    /// host died).
    fn take(
        &mut self,
        frame: std::result::Result<Option<ServerFrame>, Status>,
        probe: &mut Probe,
        last_seq: &mut u64,
    ) -> bool {
        match frame {
            Ok(Some(ServerFrame {
                frame: Some(server_frame::Frame::Message(m)),
            })) => {
                *last_seq = (*last_seq).max(m.seq);
                probe.on_payload(m.text.as_bytes());
                false
            }
            Ok(Some(ServerFrame {
                frame: Some(server_frame::Frame::Migrate(m)),
            })) => {
                self.learn(HostRecord {
                    epoch: m.epoch,
                    node_id: m.node_id,
                    address: m.address,
                    ..Default::default()
                });
                true
            }
            Ok(Some(_)) => false,
            Ok(None) | Err(_) => true,
        }
    }

    /// Opens a session, retrying (and following redirects) a few times.
    async fn open(&mut self, last_seq: u64) -> Result<Session> {
        let mut last = None;
        for _ in 0..OPEN_ATTEMPTS {
            match self.open_once(last_seq).await {
                Ok(session) => return Ok(session),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
        Err(last.unwrap_or_else(|| BenchError::Setup("no attempt".into())))
    }
}

/// Registers `name` at the relay `uri`, keeps it a member, opens a session
/// with the host and feeds every chat message to the probe. Returns once a
/// host has welcomed it.
pub async fn subscribe(
    uri: &str,
    name: &str,
    probe: Probe,
    cancel: CancellationToken,
) -> Result<JoinHandle<Probe>> {
    let (mut member, watch) = register(uri, name).await?;
    let session = member.open(0).await?;
    Ok(tokio::spawn(follow(member, session, watch, probe, cancel)))
}

/// Registers `name` with a new key and starts watching the host; the
/// member, and the watch that keeps it one.
async fn register(uri: &str, name: &str) -> Result<(Member, Streaming<HostRecord>)> {
    let key = Keypair::generate();
    let mut relay = RelayServiceClient::new(channel(uri.to_string()).await?);
    let (reg, watch) = register_and_watch(&mut relay, &key, name, THIN_ADDRESS).await?;
    let member = Member {
        key,
        certificate: reg.name_certificate,
        name: name.to_string(),
        node_id: reg.node_id,
        host: reg
            .host
            .ok_or_else(|| BenchError::Setup("the relay knows no host".into()))?,
    };
    Ok((member, watch))
}

/// Registers `name` at `address` with `key` (proving it holds it), then
/// opens the watch stream that keeps it a live member.
pub(crate) async fn register_and_watch(
    relay: &mut RelayServiceClient<Channel>,
    key: &Keypair,
    name: &str,
    address: &str,
) -> Result<(RegisterResponse, Streaming<HostRecord>)> {
    let mut register = RegisterRequest {
        name: name.to_string(),
        address: address.to_string(),
        ..Default::default()
    };
    key.sign_register(&mut register);
    let reg = relay.register(register).await?.into_inner();
    let watch = relay
        .watch_host(WatchHostRequest {
            node_id: reg.node_id.clone(),
            session_token: reg.session_token.clone(),
        })
        .await?
        .into_inner();
    Ok((reg, watch))
}

/// Receives until cancelled, resuming like a real client whenever the
/// session ends, and learning of new hosts from the watch.
async fn follow(
    mut member: Member,
    session: Session,
    mut watch: Streaming<HostRecord>,
    mut probe: Probe,
    cancel: CancellationToken,
) -> Probe {
    let (mut tx, mut inbound) = session;
    let mut last_seq = 0;
    loop {
        tokio::select! {
            m = inbound.message() => {
                if member.take(m, &mut probe, &mut last_seq) {
                    probe.reconnects += 1;
                    match member.open(last_seq).await {
                        Ok(open) => (tx, inbound) = open,
                        Err(_) => break,
                    }
                }
            }
            w = watch.message() => match w {
                Ok(Some(host)) => member.learn(host),
                _ => break,
            },
            _ = cancel.cancelled() => break,
        }
    }
    drop(tx);
    probe
}

/// Messages a thin publisher may have unacknowledged.
const THIN_PUBLISH_WINDOW: usize = 32;

/// A thin member that only publishes (scenario G fills a room's history
/// with a hundred of them): registered with its own key, in a session that
/// starts at the log's head, signing every message as a chat member does
/// (its own chain), with at most [`THIN_PUBLISH_WINDOW`] unacknowledged. It
/// reads every frame the host sends it (the host delivers the room's new
/// messages to every session), keeping only acknowledgements and refusals.
pub struct ThinPublisher {
    chain: crate::signatures::ChainSigner,
    tx: mpsc::Sender<ClientFrame>,
    window: std::sync::Arc<tokio::sync::Semaphore>,
    /// Messages acknowledged.
    pub acked: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Messages refused.
    pub refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ended: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl ThinPublisher {
    /// Registers `name` at the relay `uri` and opens a session at the head
    /// of the room's log.
    pub async fn join(uri: &str, name: &str) -> Result<Self> {
        use std::sync::atomic::Ordering;
        let (mut member, mut watch) = register(uri, name).await?;
        let (tx, mut inbound) = member.open(u64::MAX).await?;
        let window = std::sync::Arc::new(tokio::sync::Semaphore::new(THIN_PUBLISH_WINDOW));
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (w, a, r) = (window.clone(), acked.clone(), refused.clone());
        let ended = std::sync::Arc::new(std::sync::Mutex::new(None));
        let e = ended.clone();
        let reader = tokio::spawn(async move {
            let why = loop {
                match inbound.message().await {
                    Ok(Some(frame)) => match frame.frame {
                        Some(server_frame::Frame::Ack(_)) => {
                            a.fetch_add(1, Ordering::Relaxed);
                            w.add_permits(1);
                        }
                        Some(server_frame::Frame::Rejected(_)) => {
                            r.fetch_add(1, Ordering::Relaxed);
                            w.add_permits(1);
                        }
                        Some(server_frame::Frame::Migrate(_)) => {
                            break "the host moved".to_string()
                        }
                        _ => {}
                    },
                    Ok(None) => break "the host ended the session".to_string(),
                    Err(status) => break format!("the session broke: {status}"),
                }
            };
            // It does not follow the host: it stops publishing.
            *e.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            w.close();
        });
        let watching =
            tokio::spawn(async move { while let Ok(Some(_)) = watch.message().await {} });
        Ok(Self {
            chain: crate::signatures::ChainSigner::new(member.key, name.to_string()),
            tx,
            window,
            acked,
            refused,
            ended,
            tasks: vec![reader, watching],
        })
    }

    /// Why its session ended, if it did (it then publishes no more).
    pub fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Signs and sends `text` once the window allows.
    pub async fn publish(&mut self, text: String) -> Result<()> {
        let ended = self.ended.clone();
        let name = self.chain.name().to_string();
        let closed = move || {
            let why = ended.lock().map(|w| w.clone()).ok().flatten();
            BenchError::Setup(format!(
                "{name}: session ended: {}",
                why.unwrap_or_default()
            ))
        };
        self.window.acquire().await.map_err(|_| closed())?.forget();
        let frame = ClientFrame {
            frame: Some(client_frame::Frame::Send(self.chain.next(text))),
        };
        self.tx.send(frame).await.map_err(|_| closed())
    }

    /// Waits (at most `limit`) until every message is acknowledged or
    /// refused, or the session ended.
    pub async fn settle(&self, limit: Duration) {
        let all = THIN_PUBLISH_WINDOW as u32;
        if let Ok(Ok(permits)) = tokio::time::timeout(limit, self.window.acquire_many(all)).await {
            drop(permits);
        }
    }

    /// Ends the session and the membership.
    pub fn close(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}
