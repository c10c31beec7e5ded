//! One chat-node: registration, its gRPC server (dormant ChatService and
//! PeerService), the relay link, host duties and the chat client, wired
//! together. Tests start the same [`Node`] in-process.

use crate::client::{self, RoomEvent, UserCommand};
use crate::context::{NodeContext, NodeContextParts};
pub use crate::context::{Settings, Stats};
use crate::dial::{DialError, Dialer, IssuedCertificate, TransportOptions};
use crate::history::{History, HistoryError};
use crate::host::keep::RestoredCopies;
use crate::host::{service::ChatHost, CHAT_SERVICE_NAME};
pub use crate::identity::Identity;
use crate::identity::{IdentityError, NodeStore};
use crate::peer::{Peer, PeerEndpoint, PrivateInbox};
use crate::relay_link::{self, RelayLink};
use chat_proto::pb::chat::chat_service_server::ChatServiceServer;
use chat_proto::pb::chat::peer_service_server::PeerServiceServer;
use chat_proto::pb::relay::{HostRecord, NameCertificate};
use chat_proto::rules;
use chat_proto::serve::{HealthReporter, ServingStatus};
use chat_proto::trust::{Keypair, PublicKey};
use rooms::RoomEntry;
pub use rooms::MAX_ROOMS;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// Events buffered towards the user interface.
const CLIENT_EVENTS_CAPACITY: usize = 1024;
/// How long a stopping node waits for its tasks before cutting them.
const STOP_GRACE: Duration = Duration::from_millis(500);
/// Commands buffered from the user interface.
const COMMANDS_CAPACITY: usize = 256;
/// Longest a leaving node spends saying goodbye (the client's goodbye,
/// handing its rooms off, unregistering) before it stops anyway.
const GOODBYE_LIMIT: Duration = Duration::from_secs(10);
/// Longest a leaving node waits for the relay to answer its unregister.
const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The relay refused the name (invalid or taken); ask for another.
    #[error("{0}")]
    NameRefused(String),
    /// The relay refused otherwise.
    #[error("relay: {0}")]
    Relay(tonic::Status),
    /// No connection to the relay (says why, and what may fix it).
    #[error("{0}")]
    RelayUnreachable(String),
    /// The listening socket failed.
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
    /// The inspection services could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] chat_proto::serve::ReflectionError),
    /// The node's key or the relay's pinned key.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// TLS or plaintext, as the relay URI and options ask, is not possible.
    #[error(transparent)]
    Transport(#[from] DialError),
    /// The store of the rooms' copies cannot be opened.
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// What the whole node shares: who it is, its links to the relay and to
/// other nodes, its keys, and the rooms it is in (each a [`RoomHost`]).
/// No mutex is held across an `.await`.
pub struct NodeShared {
    /// What the node's parts share: identity, settings, relay link,
    /// dialer, keys, name certificate, counters, health.
    pub ctx: Arc<NodeContext>,
    /// The private-message side.
    pub(crate) peer: Arc<Peer>,
    /// The rooms this node is in, by name.
    rooms: Mutex<BTreeMap<String, RoomEntry>>,
    /// The first room the node joined at its start.
    first_room: String,
    /// Stops the node's tasks, the rooms' host duties included.
    cancel: CancellationToken,
    /// Where the identity is kept.
    pub(crate) store: Arc<NodeStore>,
    /// Where the rooms' copies are kept (none: in memory only).
    history: Option<Arc<History>>,
    /// Secret presented with `$reset`, if the user has it.
    pub(crate) admin_secret: Option<String>,
}

impl NodeShared {
    /// The relay's current certificate of our name.
    pub fn name_certificate(&self) -> NameCertificate {
        self.ctx.name_certificate()
    }
}

/// A node bound to its port (or a client-only node, bound to none), not
/// yet registered.
pub struct BoundNode {
    /// `None` for a client-only node: it serves nothing.
    listener: Option<TcpListener>,
    address: String,
    relay_uri: String,
    relay: RelayLink,
    dialer: Dialer,
    store: Arc<NodeStore>,
    keep_history: bool,
    admin_secret: Option<String>,
    rooms: Vec<String>,
}

impl BoundNode {
    /// Binds `listen` for a plaintext relay URI on this machine (see
    /// [`BoundNode::bind_with`]).
    pub async fn bind(
        relay_uri: &str,
        listen: SocketAddr,
        advertise: Option<String>,
    ) -> Result<Self, StartError> {
        Self::bind_with(relay_uri, listen, advertise, TransportOptions::default()).await
    }

    /// Binds `listen`; `advertise` (default: the bound address, with a
    /// loopback IP if bound to all interfaces) is what others dial. The
    /// relay URI's scheme and `transport` decide between TLS and plaintext.
    pub async fn bind_with(
        relay_uri: &str,
        listen: SocketAddr,
        advertise: Option<String>,
        transport: TransportOptions,
    ) -> Result<Self, StartError> {
        let dialer = Dialer::new(relay_uri, &transport)?;
        let relay = RelayLink::new(&dialer, relay_uri)?;
        let listener = TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        let address = advertise.unwrap_or_else(|| {
            let ip = if local.ip().is_unspecified() {
                [127, 0, 0, 1].into()
            } else {
                local.ip()
            };
            SocketAddr::new(ip, local.port()).to_string()
        });
        Ok(Self::new(relay_uri, Some(listener), address, relay, dialer))
    }

    /// A client-only node: it opens no port and serves nothing (no chat
    /// server, no PeerService, no health), so it is never asked to host.
    /// It registers with an empty address; private messages reach it
    /// sealed to its key through the room's host.
    pub fn client_only(relay_uri: &str, transport: TransportOptions) -> Result<Self, StartError> {
        let dialer = Dialer::new(relay_uri, &transport)?;
        let relay = RelayLink::new(&dialer, relay_uri)?;
        Ok(Self::new(relay_uri, None, String::new(), relay, dialer))
    }

    fn new(
        relay_uri: &str,
        listener: Option<TcpListener>,
        address: String,
        relay: RelayLink,
        dialer: Dialer,
    ) -> Self {
        Self {
            listener,
            address,
            relay_uri: relay_uri.to_string(),
            relay,
            dialer,
            store: Arc::new(NodeStore::in_memory()),
            keep_history: false,
            admin_secret: None,
            rooms: vec![rules::DEFAULT_ROOM.to_string()],
        }
    }

    /// Keeps the node's keys, pins and certificates in `store`.
    pub fn with_store(mut self, store: NodeStore) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// Keeps the node's copy of every room it is in on disk, in the data
    /// directory of its store (`NAME.history`), and reads it back at start.
    pub fn with_history(mut self) -> Self {
        self.keep_history = true;
        self
    }

    /// Presents `secret` to the relay when this user resets the chat.
    pub fn with_admin_secret(mut self, secret: Option<String>) -> Self {
        self.admin_secret = secret;
        self
    }

    /// Joins `rooms` (names without `#`) when the node starts, rather than
    /// only "lobby". An empty list keeps "lobby".
    pub fn with_rooms(mut self, rooms: Vec<String>) -> Self {
        if !rooms.is_empty() {
            self.rooms = rooms;
        }
        self
    }

    /// The address others reach this node at (empty when client-only).
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// What the relay answered to a registration.
#[derive(Debug)]
pub struct Registration {
    /// Who we are now.
    pub identity: Identity,
    /// The relay's settings.
    pub settings: Settings,
    /// The rooms the node is in.
    pub rooms: Vec<String>,
    /// The rooms' hosts at registration time (those that had one).
    pub hosts: Vec<HostRecord>,
    /// Our key.
    pub key: Keypair,
    /// The relay's (pinned) key.
    pub relay_key: PublicKey,
    /// The relay's binding of our name to our key.
    pub name_cert: NameCertificate,
    /// Our TLS key and certificate, and the relay's authority (`None`:
    /// plaintext).
    pub tls: Option<IssuedCertificate>,
    /// Where the rooms' copies are kept, if on disk.
    pub history: Option<Arc<History>>,
    /// The copies read back from it, checked, as claimed at the relay.
    pub copies: RestoredCopies,
}

/// A running node.
pub struct Node {
    /// Shared state (for tests and the UI).
    pub shared: Arc<NodeShared>,
    /// Commands from the user.
    pub commands: mpsc::Sender<UserCommand>,
    events: Option<mpsc::Receiver<RoomEvent>>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl BoundNode {
    /// Registers `name` and starts the node. On [`StartError::NameRefused`]
    /// the caller may try again with another name.
    pub async fn register(&self, name: &str) -> Result<Registration, StartError> {
        self.store.lock_name(name)?;
        let key = self.store.key_for(name)?;
        let history = match (self.keep_history, self.store.dir()) {
            (true, Some(dir)) => Some(History::open(dir, name)?),
            _ => None,
        };
        // What this node holds of its rooms, checked against the relay key
        // it pinned before (none yet: nothing to claim).
        let copies = match (&history, self.store.pinned_relay(&self.relay_uri)) {
            (Some(history), Some(relay_key)) => {
                RestoredCopies::load(history, &relay_key, &self.rooms)
            }
            _ => RestoredCopies::default(),
        };
        // Over TLS: the node's TLS key, bound to `key` by the Register
        // signature, which covers the certificate request.
        let tls_key = match self.dialer.is_tls() {
            true => Some(self.store.tls_key_for(name)?),
            false => None,
        };
        let certificate_request = match &tls_key {
            Some(tls_key) => self.dialer.certificate_request(tls_key, name)?,
            None => Vec::new(),
        };
        let claim = relay_link::Claim {
            name_certificate: self.store.name_certificate(name),
            // A client-only node needs its certificate too: the nodes it
            // dials for private messages check who is calling.
            certificate_request,
            client_only: self.listener.is_none(),
            rooms: self.rooms.iter().map(|room| copies.claim(room)).collect(),
            ..Default::default()
        };
        let resp = self
            .relay
            .register(&key, name, &self.address, claim)
            .await
            .map_err(|status| self.registration_refused(status))?;
        let relay_key = self
            .store
            .pin_relay(&self.relay_uri, &resp.relay_public_key)?;
        let name_cert = relay_link::check_name_certificate(&relay_key, &key, name, &resp)
            .map_err(StartError::Relay)?;
        self.store.save_name_certificate(name, &name_cert);
        let settings = Settings::from_registration(&resp);
        let identity = Identity {
            name: name.to_string(),
            node_id: resp.node_id,
            session_token: resp.session_token,
            address: self.address.clone(),
        };
        let tls = tls_key.map(|key| IssuedCertificate {
            key,
            authority: resp.tls_authority,
            certificate: resp.tls_certificate,
        });
        Ok(Registration {
            identity,
            settings,
            rooms: self.rooms.clone(),
            hosts: resp.hosts,
            key,
            relay_key,
            name_cert,
            tls,
            history,
            copies,
        })
    }

    /// Why the relay did not register us: a refused name the user may
    /// replace, an unreachable relay (with what may fix it), or another refusal.
    fn registration_refused(&self, status: tonic::Status) -> StartError {
        match status.code() {
            Code::AlreadyExists | Code::InvalidArgument => {
                StartError::NameRefused(status.message().to_string())
            }
            _ => match self.dialer.unreachable(&self.relay_uri, &status) {
                Some(why) => StartError::RelayUnreachable(why),
                None => StartError::Relay(status),
            },
        }
    }

    /// Starts every part of the node under a registration.
    pub async fn launch(self, registration: Registration) -> Result<Node, StartError> {
        Node::launch(self, registration).await
    }

    /// Registers `name` and starts every part of the node.
    pub async fn join(self, name: &str) -> Result<Node, StartError> {
        let registration = self.register(name).await?;
        self.launch(registration).await
    }
}

impl Node {
    async fn launch(bound: BoundNode, registration: Registration) -> Result<Node, StartError> {
        let Registration {
            identity,
            settings,
            rooms,
            hosts,
            key,
            relay_key,
            name_cert,
            tls,
            history,
            mut copies,
        } = registration;
        let dialer = bound.dialer.registered(tls)?;
        let (events_tx, events) = mpsc::channel(CLIENT_EVENTS_CAPACITY);
        let (inbox_tx, inbox_rx) = mpsc::channel(CLIENT_EVENTS_CAPACITY);
        let (commands, commands_rx) = mpsc::channel(COMMANDS_CAPACITY);
        let (routes, health) = inspection().await?;
        let ctx = Arc::new(NodeContext::new(NodeContextParts {
            started_at_unix_ms: issued_at(&name_cert),
            identity,
            settings,
            relay: bound.relay,
            dialer,
            key: Arc::new(key),
            relay_key,
            stats: Arc::new(Stats::default()),
            health,
            name_cert,
        }));
        let inbox = PrivateInbox::new(inbox_tx, bound.store.dir())?;
        let shared = Arc::new(NodeShared {
            peer: Arc::new(Peer::new(ctx.clone(), inbox)),
            ctx,
            rooms: Mutex::new(BTreeMap::new()),
            first_room: rooms.first().cloned().unwrap_or_default(),
            cancel: CancellationToken::new(),
            store: bound.store,
            history,
            admin_secret: bound.admin_secret,
        });
        let cancel = shared.cancel.clone();
        let mut tasks = Vec::new();
        if let Some(listener) = bound.listener {
            tasks.push(serve(&shared, routes, listener, &cancel)?);
        }
        for room in &rooms {
            shared.add_room(room, copies.take(room));
        }
        for host in hosts {
            shared.on_host_record(host).await;
        }
        tasks.extend(spawn_duties(
            &shared,
            commands_rx,
            (events_tx, inbox_rx),
            &cancel,
        ));
        Ok(Node {
            shared,
            commands,
            events: Some(events),
            cancel,
            tasks,
        })
    }

    /// Takes the stream of events for the user (once).
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<RoomEvent>> {
        self.events.take()
    }

    /// Leaves the chat cleanly: the client says goodbye, a hosting node hands
    /// the chat to another member first, then the node unregisters and stops.
    /// Bounded by [`GOODBYE_LIMIT`]: with the relay or the other members
    /// gone, the node stops anyway.
    pub async fn shutdown(mut self) {
        if tokio::time::timeout(GOODBYE_LIMIT, self.goodbye())
            .await
            .is_err()
        {
            tracing::warn!("no clean goodbye within {GOODBYE_LIMIT:?}; stopping");
        }
        self.stop().await;
    }

    /// The client's goodbye, the hosted rooms' handoffs, unregistering.
    async fn goodbye(&self) {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        if self
            .commands
            .send(UserCommand::Exit(Some(done_tx)))
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(3), done_rx).await;
        }
        for room in self.shared.rooms() {
            if room.role().hosting_epoch().is_some() {
                if let Err(e) = room.hand_off().await {
                    tracing::info!(room = %room.room, error = %e, "no handoff on exit");
                }
            }
        }
        let ctx = &self.shared.ctx;
        match tokio::time::timeout(UNREGISTER_TIMEOUT, ctx.relay.unregister(&ctx.identity)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "unregister failed"),
            Err(_) => tracing::debug!("the relay did not answer the unregister"),
        }
    }

    /// Stops every task at once, like a crash but in-process (no goodbye).
    pub async fn stop(&mut self) {
        self.cancel.cancel();
        for room in self.shared.rooms() {
            let _ = room.host_events.send(crate::host::HostEvent::Closing);
        }
        // Open client streams may hold the server's graceful stop; cut what
        // has not stopped within the grace.
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        for task in self.tasks.drain(..) {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// When the relay issued `cert` (Unix ms; 0 if unreadable).
fn issued_at(cert: &NameCertificate) -> i64 {
    use prost::Message;
    chat_proto::pb::relay::NameGrant::decode(cert.grant.as_slice())
        .map_or(0, |g| g.issued_at_unix_ms)
}

impl Drop for Node {
    fn drop(&mut self) {
        // The node's tasks (and every room's host duties) end with it.
        self.cancel.cancel();
    }
}

/// The inspection services (reflection and health), with the chat service
/// reported not serving until this node hosts.
async fn inspection() -> Result<(tonic::service::RoutesBuilder, HealthReporter), StartError> {
    let mut routes = tonic::service::RoutesBuilder::default();
    let health = chat_proto::serve::add_inspection(
        &mut routes,
        &[CHAT_SERVICE_NAME, "chat.v1.PeerService"],
    )?;
    health
        .set_service_status(CHAT_SERVICE_NAME, ServingStatus::NotServing)
        .await;
    Ok((routes, health))
}

/// Starts the node's standing duties until `cancel`: following the relay,
/// the host duties, and the chat client between the user and the host;
/// and keeps the node's certificates fresh.
fn spawn_duties(
    shared: &Arc<NodeShared>,
    commands: mpsc::Receiver<UserCommand>,
    (events, inbox): (
        mpsc::Sender<RoomEvent>,
        mpsc::Receiver<crate::peer::Inbound>,
    ),
    cancel: &CancellationToken,
) -> [JoinHandle<()>; 4] {
    [
        tokio::spawn(client::show_inbox(inbox, events.clone(), cancel.clone())),
        tokio::spawn(relay::follow_relay(shared.clone(), cancel.clone())),
        tokio::spawn(relay::keep_certificates_fresh(
            shared.clone(),
            cancel.clone(),
        )),
        tokio::spawn(client::run(
            client_links(shared),
            commands,
            events,
            cancel.clone(),
        )),
    ]
}

/// What the client gets of the node.
fn client_links(shared: &Arc<NodeShared>) -> client::NodeLinks {
    client::NodeLinks {
        ctx: shared.ctx.clone(),
        peer: shared.peer.clone(),
        rooms: Arc::new(rooms::NodeRooms(shared.clone())),
        admin_secret: shared.admin_secret.clone(),
        chain_dir: shared.store.dir().map(|dir| {
            let name = &shared.ctx.identity.name;
            dir.join(format!("{name}.chains"))
        }),
    }
}

/// Serves the dormant ChatService, the PeerService and the inspection
/// services in `routes` on `listener` until `cancel`.
fn serve(
    shared: &Arc<NodeShared>,
    mut routes: tonic::service::RoutesBuilder,
    listener: TcpListener,
    cancel: &CancellationToken,
) -> Result<JoinHandle<()>, StartError> {
    routes.add_service(ChatServiceServer::new(ChatHost(shared.clone())));
    routes.add_service(PeerServiceServer::new(PeerEndpoint(shared.peer.clone())));
    let router = tonic::transport::Server::builder().add_routes(routes.routes());
    let server = chat_proto::serve::serve_router(
        router,
        listener,
        shared.ctx.dialer.server_tls()?,
        cancel.clone().cancelled_owned(),
    );
    Ok(tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "node server stopped");
        }
    }))
}

mod relay;
mod rooms;
