//! Modified nodes played by a test: one that looks healthy but never
//! answers, one that will not hold copies, and a host that answers each
//! session with a Challenge and then lets the test play it frame by frame.

use super::*;

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
            history_start: None,
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
