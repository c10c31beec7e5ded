//! A hostile client built only from the project's protocol
//! (`chat_proto::pb`, `chat_proto::trust`): a stranger with a key of its
//! own, forged terms and signed requests, and a session driven frame by
//! frame; plus the check every attack ends with, that the chat is intact.

use crate::{join, Member, DEADLINE};
use chat_node::host::Role;
use chat_proto::chain::{self, Digest, Signed};
use chat_proto::pb::chat::chat_service_client::ChatServiceClient;
use chat_proto::pb::chat::peer_service_client::PeerServiceClient;
use chat_proto::pb::chat::{
    client_frame, log_entry, server_frame, Challenge, ChatMessage, ClientFrame, Hello, LogEntry,
    ReplicateBody, ReplicateRequest, RoomMeta, SendMessage, ServerFrame, TakeOverRequest, Welcome,
};
use chat_proto::pb::relay::relay_service_client::RelayServiceClient;
use chat_proto::pb::relay::{
    CopyPermit, CurrentHostRequest, HostRecord, HostTerm, HostTermCertificate, LookupMemberRequest,
    MemberRecord, NameCertificate, RegisterRequest, RegisterResponse, RenewLeaseRequest,
    WatchHostRequest,
};
use chat_proto::trust::{self, Keypair};
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

/// Where hostile registrations claim to listen (nothing does).
pub const NOWHERE: &str = "127.0.0.1:1";

/// Each member says a text of its own; each must reach every member, from
/// its sender, exactly once.
pub async fn assert_chat_intact(members: &mut [Member]) {
    let tag: u32 = rand::random();
    let texts: Vec<(String, String)> = members
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                format!("{} is still here ({tag:08x})", m.name),
            )
        })
        .collect();
    for (member, (_, text)) in members.iter_mut().zip(&texts) {
        member.say(text).await;
    }
    for member in members.iter_mut() {
        for (from, text) in &texts {
            member.wait_event("message", &[("text", text)]).await;
            member.drain();
            let seen: Vec<&serde_json::Value> = member
                .seen
                .iter()
                .filter(|e| e["type"] == "message" && e["text"] == text.as_str())
                .collect();
            assert_eq!(seen.len(), 1, "{} saw {text:?}: {seen:?}", member.name);
            assert_eq!(seen[0]["from"], from.as_str(), "{}: {seen:?}", member.name);
        }
    }
}

/// Joins honest members (the relay needs two) and waits until each is in
/// the room and the chat is active.
pub async fn start_chat(uri: &str, names: &[&str]) -> Vec<Member> {
    let mut members = Vec::new();
    for name in names {
        members.push(join(uri, name).await.expect("an honest member joins"));
    }
    for member in members.iter_mut() {
        let name = member.name.clone();
        member.wait_event("joined", &[("name", &name)]).await;
    }
    members[0].wait_event("activated", &[]).await;
    members
}

pub async fn relay_client(uri: &str) -> RelayServiceClient<Channel> {
    RelayServiceClient::connect(uri.to_string())
        .await
        .expect("the relay is reachable")
}

pub async fn current_host(uri: &str) -> HostRecord {
    relay_client(uri)
        .await
        .current_host(CurrentHostRequest::default())
        .await
        .expect("CurrentHost")
        .into_inner()
}

/// The relay still names the host of `before`, in the same term.
pub async fn assert_same_host(uri: &str, before: &HostRecord) {
    let now = current_host(uri).await;
    assert_eq!(
        (now.epoch, &now.node_id, &now.address),
        (before.epoch, &before.node_id, &before.address),
        "the host moved"
    );
}

pub async fn lookup(uri: &str, name: &str) -> Result<MemberRecord, Status> {
    relay_client(uri)
        .await
        .lookup_member(LookupMemberRequest { name: name.into() })
        .await
        .map(|r| r.into_inner())
}

pub async fn chat_client(address: &str) -> ChatServiceClient<Channel> {
    ChatServiceClient::connect(format!("http://{address}"))
        .await
        .expect("the node is reachable")
        .max_decoding_message_size(16 << 20)
}

pub async fn peer_client(address: &str) -> PeerServiceClient<Channel> {
    PeerServiceClient::connect(format!("http://{address}"))
        .await
        .expect("the peer endpoint is reachable")
}

/// The member's node does not host: its role, and what its health says.
pub async fn assert_dormant(member: &Member, after: &str) {
    let shared = member.shared();
    assert_eq!(
        member.lobby().role(),
        Role::Dormant,
        "{}: {after}",
        member.name
    );
    let status = chat_proto::health_check::check(
        &shared.ctx.identity.address,
        "chat.v1.ChatService",
        Duration::from_secs(5),
        None,
    )
    .await
    .expect("health answers");
    assert_eq!(
        format!("{status:?}"),
        "NotServing",
        "{}: {after}",
        member.name
    );
}

/// A Register for `name` at `address`, proving that it holds `key`.
pub fn signed_register(key: &Keypair, name: &str, address: &str) -> RegisterRequest {
    let mut req = RegisterRequest {
        name: name.into(),
        address: address.into(),
        ..Default::default()
    };
    key.sign_register(&mut req);
    req
}

/// A host term signed by `key` instead of the relay.
pub fn forged_term(
    key: &Keypair,
    epoch: u64,
    node_id: &str,
    address: &str,
    name: &str,
) -> HostTermCertificate {
    key.issue_host_term(&HostTerm {
        room: trust::ROOM.into(),
        epoch,
        node_id: node_id.into(),
        address: address.into(),
        name: name.into(),
        public_key: key.public_key(),
        issued_at_unix_ms: trust::now_unix_ms(),
        previous_epoch: epoch.saturating_sub(1),
    })
}

/// A TakeOver signed by `key` (as if it were the sender term's host).
pub fn take_over(
    key: &Keypair,
    new_term: Option<HostTermCertificate>,
    sender_term: Option<HostTermCertificate>,
) -> TakeOverRequest {
    let signed_at = trust::now_unix_ms();
    let term_bytes =
        |c: &Option<HostTermCertificate>| c.as_ref().map_or(Vec::new(), |c| c.term.clone());
    let payload =
        trust::take_over_payload(&term_bytes(&new_term), &term_bytes(&sender_term), signed_at);
    TakeOverRequest {
        signature: key.sign(&payload),
        new_term,
        sender_term,
        signed_at_unix_ms: signed_at,
    }
}

/// A Replicate of `body` under `term`, signed by `key`, carrying `permit`.
pub fn replicate(
    key: &Keypair,
    term: &HostTermCertificate,
    body: &ReplicateBody,
    permit: Option<&CopyPermit>,
) -> ReplicateRequest {
    let body = body.encode_to_vec();
    ReplicateRequest {
        signature: key.sign(&trust::replicate_payload(&term.term, &body)),
        term: Some(term.clone()),
        body,
        permit: permit.cloned(),
    }
}

/// Renews `host`'s lease of `record`'s term (naming `successor`, if not
/// empty) and asks the relay's copy permit for `copy_to`.
pub async fn renew_asking_permit(
    uri: &str,
    host: &Stranger,
    record: &HostRecord,
    successor: &str,
    copy_to: &str,
) -> Option<CopyPermit> {
    relay_client(uri)
        .await
        .renew_lease(RenewLeaseRequest {
            epoch: record.epoch,
            node_id: host.reg.node_id.clone(),
            session_token: host.reg.session_token.clone(),
            successor_node_id: successor.to_string(),
            room: record.room.clone(),
            copy_to_node_id: copy_to.to_string(),
            ..Default::default()
        })
        .await
        .expect("the relay renews the scripted host's lease")
        .into_inner()
        .copy_permit
}

pub fn forged_meta(head_seq: u64, same_members: bool) -> RoomMeta {
    RoomMeta {
        room_id: trust::ROOM.into(),
        head_seq,
        min_users: 1,
        activated: true,
        same_members,
        ..Default::default()
    }
}

/// Log entries "from alice" that alice never wrote: signed by `key` (or not
/// at all, when `signed` is false), under alice's genuine certificate if given.
pub fn forged_entries(
    key: &Keypair,
    sender: Option<NameCertificate>,
    first_seq: u64,
    epoch: u64,
    count: u64,
    padding: usize,
    sign: bool,
) -> Vec<LogEntry> {
    let pad = "x".repeat(padding);
    let mut prev = Vec::new();
    (0..count)
        .map(|i| {
            let mut message = ChatMessage {
                seq: first_seq + i,
                id: format!("forged-{i}"),
                from: "alice".into(),
                text: format!("FORGED {i} {pad}"),
                sent_at_unix_ms: trust::now_unix_ms(),
                epoch,
                sender: sender.clone(),
                chain_seq: i + 1,
                chain_prev: std::mem::take(&mut prev),
                ..Default::default()
            };
            let signed = Signed::served(trust::ROOM, &message);
            prev = signed.digest().to_vec();
            message.signature = if sign {
                key.sign(&signed.payload())
            } else {
                vec![0; 64]
            };
            LogEntry {
                kind: Some(log_entry::Kind::Message(message)),
            }
        })
        .collect()
}

/// One sender's chain of messages in the lobby, as a node keeps it.
#[derive(Debug, Default, Clone)]
pub struct SenderChain {
    /// Messages signed so far.
    pub signed: u64,
    /// Digest of the last one.
    pub prev: Vec<u8>,
}

impl SenderChain {
    /// The next chat message of this chain, signed by `key` as `from`.
    pub fn message(&mut self, key: &Keypair, from: &str, id: &str, text: &str) -> SendMessage {
        let mut msg = SendMessage {
            id: id.into(),
            text: text.into(),
            chain_seq: self.signed + 1,
            chain_prev: self.prev.clone(),
            ..Default::default()
        };
        self.prev = key.sign_message(trust::ROOM, from, &mut msg).to_vec();
        self.signed += 1;
        msg
    }
}

/// Keeps a WatchHost stream open for `reg`, as a live node does, so the
/// relay does not forget it.
pub async fn keep_watching(rc: &mut RelayServiceClient<Channel>, reg: &RegisterResponse) {
    try_keep_watching(rc, reg).await.expect("WatchHost");
}

/// [`keep_watching`], or why the relay refused (it may already have
/// forgotten the registration, e.g. when the name went back to its holder).
pub async fn try_keep_watching(
    rc: &mut RelayServiceClient<Channel>,
    reg: &RegisterResponse,
) -> Result<(), Status> {
    let mut watch = rc
        .watch_host(WatchHostRequest {
            node_id: reg.node_id.clone(),
            session_token: reg.session_token.clone(),
        })
        .await?
        .into_inner();
    tokio::spawn(async move { while let Ok(Some(_)) = watch.message().await {} });
    Ok(())
}

/// A hostile party registered at the relay under its own key, kept live
/// there by an open WatchHost stream.
pub struct Stranger {
    /// Its own key.
    pub key: Keypair,
    /// The name it registered.
    pub name: String,
    /// The address it registered (empty when client-only).
    pub address: String,
    /// What the relay answered.
    pub reg: RegisterResponse,
}

impl Stranger {
    /// Registers `name` with an address where nothing listens.
    pub async fn register(uri: &str, name: &str) -> Stranger {
        Self::register_at(uri, name, NOWHERE, false).await
    }

    /// Registers `name` as a client-only member (no address): private
    /// messages to it come sealed through the host.
    pub async fn register_client_only(uri: &str, name: &str) -> Stranger {
        Self::register_at(uri, name, "", true).await
    }

    /// Registers `name` at `address` (a client-only member when
    /// `client_only`), kept live by an open WatchHost stream.
    pub async fn register_at(uri: &str, name: &str, address: &str, client_only: bool) -> Stranger {
        Self::register_with(uri, Keypair::generate(), name, address, client_only).await
    }

    /// [`Stranger::register_at`] with `key`.
    pub async fn register_with(
        uri: &str,
        key: Keypair,
        name: &str,
        address: &str,
        client_only: bool,
    ) -> Stranger {
        let mut rc = relay_client(uri).await;
        let req = RegisterRequest {
            client_only,
            ..signed_register(&key, name, address)
        };
        let reg = rc
            .register(req)
            .await
            .expect("anyone may register")
            .into_inner();
        keep_watching(&mut rc, &reg).await;
        Stranger {
            key,
            name: name.into(),
            address: address.into(),
            reg,
        }
    }

    pub fn certificate(&self) -> NameCertificate {
        self.reg
            .name_certificate
            .clone()
            .expect("the relay issues a name certificate")
    }

    /// A Hello answering `challenge`, signed by this stranger as itself.
    pub fn hello(&self, challenge: &Challenge) -> Hello {
        let mut hello = Hello {
            name: self.name.clone(),
            node_id: self.reg.node_id.clone(),
            address: self.address.clone(),
            certificate: Some(self.certificate()),
            ..Default::default()
        };
        self.key
            .sign_hello(&mut hello, &challenge.nonce, &challenge.host_node_id);
        hello
    }
}

/// A chat session driven frame by frame.
pub struct HostileSession {
    /// Frames towards the host.
    pub tx: mpsc::Sender<ClientFrame>,
    /// Frames from the host.
    pub frames: Streaming<ServerFrame>,
    /// The host's Challenge of this session.
    pub challenge: Challenge,
}

impl HostileSession {
    /// Opens a session and reads the host's Challenge.
    pub async fn open(address: &str) -> HostileSession {
        let (tx, rx) = mpsc::channel(256);
        let mut frames = chat_client(address)
            .await
            .session(ReceiverStream::new(rx))
            .await
            .expect("the host opens a session")
            .into_inner();
        let challenge = match next_frame(&mut frames).await {
            Ok(Some(server_frame::Frame::Challenge(c))) => c,
            other => panic!("expected a Challenge first, got {other:?}"),
        };
        HostileSession {
            tx,
            frames,
            challenge,
        }
    }

    pub async fn send(&self, frame: client_frame::Frame) {
        self.tx
            .send(ClientFrame { frame: Some(frame) })
            .await
            .expect("the session is open");
    }

    /// The Welcome that admits this session.
    pub async fn welcomed(&mut self) -> Welcome {
        match next_frame(&mut self.frames).await {
            Ok(Some(server_frame::Frame::Welcome(w))) => w,
            other => panic!("expected a Welcome, got {other:?}"),
        }
    }

    /// The status the host ends this session with; any frame is a failure.
    pub async fn refused(&mut self) -> Status {
        match next_frame(&mut self.frames).await {
            Err(status) => status,
            Ok(frame) => panic!("expected a refusal, got {frame:?}"),
        }
    }
}

/// The next frame of a session (`None` at its end), within the deadline.
pub async fn next_frame(
    frames: &mut Streaming<ServerFrame>,
) -> Result<Option<server_frame::Frame>, Status> {
    match tokio::time::timeout(DEADLINE, frames.message()).await {
        Ok(next) => next.map(|f| f.and_then(|f| f.frame)),
        Err(_) => panic!("no frame from the host within {DEADLINE:?}"),
    }
}

/// A stranger's node that looks healthy (its health service answers
/// SERVING, so the relay reaches it) but never answers a chat call. Returns
/// its address and a count of the sessions opened to it so far.
pub async fn serve_silent_host() -> (String, mpsc::UnboundedReceiver<usize>) {
    serve_unhelpful_node(false).await
}

/// As [`serve_silent_host`], but refusing every Replicate at once when
/// `refuse_copies` (a member that will not hold the host's log).
pub async fn serve_unhelpful_node(refuse_copies: bool) -> (String, mpsc::UnboundedReceiver<usize>) {
    use chat_proto::pb::chat::chat_service_server::{ChatService, ChatServiceServer};
    use chat_proto::pb::chat::{ReplicateResponse, TakeOverResponse};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tonic::{Request, Response};

    struct Silent {
        sessions: AtomicUsize,
        opened: mpsc::UnboundedSender<usize>,
        refuse_copies: bool,
    }

    #[tonic::async_trait]
    impl ChatService for Silent {
        type SessionStream = ReceiverStream<Result<ServerFrame, Status>>;

        async fn session(
            &self,
            _req: Request<Streaming<ClientFrame>>,
        ) -> Result<Response<Self::SessionStream>, Status> {
            let n = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
            let _ = self.opened.send(n);
            std::future::pending().await
        }

        async fn replicate(
            &self,
            _req: Request<ReplicateRequest>,
        ) -> Result<Response<ReplicateResponse>, Status> {
            if self.refuse_copies {
                return Err(Status::permission_denied("no copies here"));
            }
            std::future::pending().await
        }

        async fn take_over(
            &self,
            _req: Request<TakeOverRequest>,
        ) -> Result<Response<TakeOverResponse>, Status> {
            std::future::pending().await
        }
    }

    let (opened, sessions) = mpsc::unbounded_channel();
    let address = serve_chat(ChatServiceServer::new(Silent {
        sessions: AtomicUsize::new(0),
        opened,
        refuse_copies,
    }))
    .await;
    (address, sessions)
}

/// Serves `chat` (with health and reflection, so the relay reaches it) on
/// 127.0.0.1 until the test ends; returns its address.
async fn serve_chat<S>(
    chat: chat_proto::pb::chat::chat_service_server::ChatServiceServer<S>,
) -> String
where
    S: chat_proto::pb::chat::chat_service_server::ChatService,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let mut routes = tonic::service::RoutesBuilder::default();
    chat_proto::serve::add_inspection(&mut routes, &[]).expect("inspection services");
    routes.add_service(chat);
    let router = tonic::transport::Server::builder().add_routes(routes.routes());
    tokio::spawn(chat_proto::serve::serve_router(
        router,
        listener,
        None,
        std::future::pending(),
    ));
    address
}

/// One session opened to a [`ScriptedHost`]: the member's Hello, and both
/// directions of the stream, for the test to play the host.
pub struct ScriptedSession {
    /// The member's Hello (not checked).
    pub hello: Hello,
    /// Frames to the member.
    pub to_member: mpsc::Sender<Result<ServerFrame, Status>>,
    /// Frames from the member, after its Hello.
    pub from_member: Streaming<ClientFrame>,
}

impl ScriptedSession {
    /// Sends `frame` to the member.
    pub async fn send(&self, frame: server_frame::Frame) {
        self.to_member
            .send(Ok(ServerFrame { frame: Some(frame) }))
            .await
            .expect("the member's session is open");
    }

    /// The member's next chat message (other frames are skipped).
    pub async fn next_message(&mut self) -> SendMessage {
        loop {
            if let client_frame::Frame::Send(m) = self.next().await {
                return m;
            }
        }
    }

    /// The member's next frame, within the deadline.
    pub async fn next(&mut self) -> client_frame::Frame {
        match tokio::time::timeout(DEADLINE, self.from_member.message()).await {
            Ok(Ok(Some(ClientFrame { frame: Some(f) }))) => f,
            other => panic!("expected a frame from the member, got {other:?}"),
        }
    }
}

/// A modified node hosting the lobby: it answers each session with a
/// Challenge under the term the test gives it, then hands the session to
/// the test, which plays the host frame by frame.
pub struct ScriptedHost {
    /// The host's key (also its Stranger's).
    pub key: Keypair,
    /// Where it listens.
    pub address: String,
    /// The term its Challenges show, once the relay made it host.
    pub term: Arc<std::sync::Mutex<Option<HostTermCertificate>>>,
    /// Sessions members opened, after their Hello.
    pub sessions: mpsc::UnboundedReceiver<ScriptedSession>,
    /// The secret of `key`, to register a Stranger with it.
    secret: [u8; 32],
}

impl ScriptedHost {
    /// Starts listening on 127.0.0.1 with a fresh key.
    pub async fn start() -> ScriptedHost {
        use chat_proto::pb::chat::chat_service_server::{ChatService, ChatServiceServer};
        use chat_proto::pb::chat::{ReplicateResponse, TakeOverResponse};
        use tonic::{Request, Response};

        struct Scripted {
            node_id: String,
            term: Arc<std::sync::Mutex<Option<HostTermCertificate>>>,
            sessions: mpsc::UnboundedSender<ScriptedSession>,
        }

        #[tonic::async_trait]
        impl ChatService for Scripted {
            type SessionStream = ReceiverStream<Result<ServerFrame, Status>>;

            async fn session(
                &self,
                req: Request<Streaming<ClientFrame>>,
            ) -> Result<Response<Self::SessionStream>, Status> {
                let (to_member, rx) = mpsc::channel(256);
                let challenge = Challenge {
                    nonce: rand::random::<[u8; 32]>().to_vec(),
                    host_node_id: self.node_id.clone(),
                    term: self.term.lock().expect("term").clone(),
                };
                let frame = server_frame::Frame::Challenge(challenge);
                let _ = to_member.send(Ok(ServerFrame { frame: Some(frame) })).await;
                let mut from_member = req.into_inner();
                let sessions = self.sessions.clone();
                tokio::spawn(async move {
                    if let Ok(Some(ClientFrame {
                        frame: Some(client_frame::Frame::Hello(hello)),
                    })) = from_member.message().await
                    {
                        let _ = sessions.send(ScriptedSession {
                            hello,
                            to_member,
                            from_member,
                        });
                    }
                });
                Ok(Response::new(ReceiverStream::new(rx)))
            }

            async fn replicate(
                &self,
                _req: Request<ReplicateRequest>,
            ) -> Result<Response<ReplicateResponse>, Status> {
                Err(Status::failed_precondition("this node is the live host"))
            }

            async fn take_over(
                &self,
                _req: Request<TakeOverRequest>,
            ) -> Result<Response<TakeOverResponse>, Status> {
                Err(Status::failed_precondition("this node is the live host"))
            }
        }

        let secret: [u8; 32] = rand::random();
        let key = Keypair::from_secret(secret);
        let term = Arc::new(std::sync::Mutex::new(None));
        let (sessions_tx, sessions) = mpsc::unbounded_channel();
        let address = serve_chat(ChatServiceServer::new(Scripted {
            node_id: trust::node_id_of(&key.public_key()),
            term: term.clone(),
            sessions: sessions_tx,
        }))
        .await;
        ScriptedHost {
            key,
            address,
            term,
            sessions,
            secret,
        }
    }

    /// Registers this host's node as `name` at the relay `uri`, waits
    /// until the relay makes it the lobby's host, and shows that term in
    /// its Challenges. Returns its registration and the host record.
    pub async fn host_lobby(&self, uri: &str, name: &str) -> (Stranger, HostRecord) {
        let key = Keypair::from_secret(self.secret);
        let stranger = Stranger::register_with(uri, key, name, &self.address, false).await;
        let record = crate::wait_for_host(uri, "the scripted host hosts", |h| {
            h.node_id == stranger.reg.node_id
        })
        .await;
        *self.term.lock().expect("term") = record.certificate.clone();
        (stranger, record)
    }

    /// The next session a member opened, within the deadline.
    pub async fn session(&mut self) -> ScriptedSession {
        tokio::time::timeout(DEADLINE, self.sessions.recv())
            .await
            .expect("a member opens a session in time")
            .expect("the scripted host runs")
    }

    /// A Welcome into an active lobby of `epoch`, with this host's head
    /// signed at `at` with log hash `hash`.
    pub fn welcome(&self, epoch: u64, at: u64, hash: &Digest) -> server_frame::Frame {
        server_frame::Frame::Welcome(Welcome {
            epoch,
            activated: true,
            min_users: 1,
            member_count: 2,
            head_seq: at,
            host_name: "mallory".into(),
            room: trust::ROOM.into(),
            head: Some(self.key.sign_head(trust::ROOM, epoch, at, hash)),
        })
    }
}

impl ScriptedHost {
    /// A Replicate body that starts the receiver's copy over with `log`
    /// (from seq 1), with this host's head signed after it in `epoch`.
    pub fn copy_from_start(&self, epoch: u64, log: &[LogEntry]) -> ReplicateBody {
        let head_seq = log.len() as u64;
        ReplicateBody {
            counter: 1,
            meta: Some(RoomMeta {
                room_id: "scripted".into(),
                head_seq,
                min_users: 1,
                activated: true,
                ..Default::default()
            }),
            entries: log.to_vec(),
            base_seq: 0,
            head: Some(
                self.key
                    .sign_head(trust::ROOM, epoch, head_seq, &log_hash(log)),
            ),
        }
    }
}

/// `msg`, sent by `from` (certified by `cert`), as a host serves it at
/// `seq` in `epoch`.
pub fn served(
    msg: &SendMessage,
    from: &str,
    cert: &NameCertificate,
    seq: u64,
    epoch: u64,
) -> ChatMessage {
    ChatMessage {
        seq,
        id: msg.id.clone(),
        from: from.into(),
        text: msg.text.clone(),
        sent_at_unix_ms: msg.sent_at_unix_ms,
        epoch,
        signature: msg.signature.clone(),
        sender: Some(cert.clone()),
        chain_seq: msg.chain_seq,
        chain_prev: msg.chain_prev.clone(),
    }
}

/// The log hash after `entries` from the start of the lobby's log.
pub fn log_hash(entries: &[LogEntry]) -> Digest {
    entries.iter().fold(chain::GENESIS, |hash, entry| {
        chain::extend(trust::ROOM, &hash, entry).expect("a log entry")
    })
}
