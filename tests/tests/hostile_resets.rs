//! Resets a host cannot fake. A reset wipes a room's history, and control
//! frames are not signed by the host, so a reset counts only with the
//! relay's certificate for it, which names the room, the member who asked
//! (with the admin secret) and the threshold. A hostile host serving a
//! forged, altered or replayed reset gets it refused by every member, as
//! an error naming the host; a hostile member cannot make an honest host
//! log a reset with a certificate that is not its own, or use one twice.

use chat_proto::pb::chat::chat_service_server::{ChatService, ChatServiceServer};
use chat_proto::pb::chat::{
    client_frame, server_frame, Challenge, ClientFrame, Rejected, ReplicateRequest,
    ReplicateResponse, ResetRoom, RoomReset, ServerFrame, TakeOverRequest, TakeOverResponse,
    Welcome,
};
use chat_proto::pb::relay::{
    AuthorizeResetRequest, HostRecord, RenewLeaseRequest, ResetCertificate, ResetGrant,
};
use chat_proto::trust;
use chat_tests::hostile::*;
use chat_tests::{join, wait_for_host, Member, Relay, DEADLINE};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

const NO_MIGRATION: Duration = Duration::from_secs(3600);
const SECRET: &str = relay_svc::config::TEST_ADMIN_SECRET;

/// Asks the relay, as the node `node_id` with `session_token`, for the
/// certificate of a reset of the lobby to `min_users`.
async fn reset_certificate(
    uri: &str,
    node_id: &str,
    session_token: &str,
    min_users: u32,
) -> ResetCertificate {
    relay_client(uri)
        .await
        .authorize_reset(AuthorizeResetRequest {
            admin_secret: SECRET.into(),
            room: trust::ROOM.into(),
            min_users,
            node_id: node_id.into(),
            session_token: session_token.into(),
        })
        .await
        .expect("a member with the admin secret gets a certificate")
        .into_inner()
        .certificate
        .expect("the answer carries the certificate")
}

// ---------------------------------------------------------------------------
// A hostile host: it registered first, so the relay made it host with a
// genuine term, and it renews its lease; it admits every session and then
// serves whatever frames the test gives it.
// ---------------------------------------------------------------------------

struct HostileHost {
    /// Its registration at the relay.
    mallory: Stranger,
    /// Frames to serve on every session, in order.
    frames: broadcast::Sender<ServerFrame>,
    /// Names of the members admitted, as they are.
    admitted: mpsc::UnboundedReceiver<String>,
    renewing: tokio::task::JoinHandle<()>,
}

impl Drop for HostileHost {
    fn drop(&mut self) {
        self.renewing.abort();
    }
}

/// Serves a Session: a Challenge under the genuine term (once the relay
/// gave it), a Welcome to whoever says Hello, then `frames`.
struct Forger {
    term: Arc<OnceLock<HostRecord>>,
    frames: broadcast::Sender<ServerFrame>,
    admitted: mpsc::UnboundedSender<String>,
}

fn frame(f: server_frame::Frame) -> ServerFrame {
    ServerFrame { frame: Some(f) }
}

#[tonic::async_trait]
impl ChatService for Forger {
    type SessionStream = ReceiverStream<Result<ServerFrame, Status>>;

    async fn session(
        &self,
        req: Request<Streaming<ClientFrame>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let host = self
            .term
            .get()
            .ok_or_else(|| Status::unavailable("not host yet"))?;
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let challenge = Challenge {
            nonce: rand::random::<[u8; 32]>().to_vec(),
            host_node_id: host.node_id.clone(),
            term: host.certificate.clone(),
        };
        let _ = tx.try_send(Ok(frame(server_frame::Frame::Challenge(challenge))));
        let mut frames = self.frames.subscribe();
        let (admitted, epoch) = (self.admitted.clone(), host.epoch);
        tokio::spawn(async move {
            let Ok(Some(ClientFrame {
                frame: Some(client_frame::Frame::Hello(hello)),
            })) = inbound.message().await
            else {
                return;
            };
            let welcome = Welcome {
                epoch,
                activated: true,
                min_users: 1,
                member_count: 2,
                head_seq: 0,
                host_name: "mallory".into(),
                room: trust::ROOM.into(),
            };
            if tx
                .send(Ok(frame(server_frame::Frame::Welcome(welcome))))
                .await
                .is_err()
            {
                return;
            }
            let _ = admitted.send(hello.name);
            // Whatever the client sends is read and ignored.
            tokio::spawn(async move { while let Ok(Some(_)) = inbound.message().await {} });
            while let Ok(f) = frames.recv().await {
                if tx.send(Ok(f)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn replicate(
        &self,
        _req: Request<ReplicateRequest>,
    ) -> Result<Response<ReplicateResponse>, Status> {
        Err(Status::unimplemented("no copies here"))
    }

    async fn take_over(
        &self,
        _req: Request<TakeOverRequest>,
    ) -> Result<Response<TakeOverResponse>, Status> {
        Err(Status::unimplemented("no take-overs here"))
    }
}

impl HostileHost {
    /// Starts the hostile host and waits until the relay names it host.
    async fn start(uri: &str) -> HostileHost {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let (frames, _) = broadcast::channel(64);
        let (admitted_tx, admitted) = mpsc::unbounded_channel();
        let term = Arc::new(OnceLock::new());
        let forger = Forger {
            term: term.clone(),
            frames: frames.clone(),
            admitted: admitted_tx,
        };
        // Its health service answers, so the relay reaches it.
        let mut routes = tonic::service::RoutesBuilder::default();
        chat_proto::serve::add_inspection(&mut routes, &[]).expect("inspection services");
        routes.add_service(ChatServiceServer::new(forger));
        let router = tonic::transport::Server::builder().add_routes(routes.routes());
        tokio::spawn(chat_proto::serve::serve_router(
            router,
            listener,
            None,
            std::future::pending(),
        ));
        let mallory = Stranger::register_at(uri, "mallory", &address, false).await;
        let host = wait_for_host(uri, "the first to register hosts", |h| {
            h.node_id == mallory.reg.node_id
        })
        .await;
        assert!(host.certificate.is_some(), "a genuine term");
        let _ = term.set(host.clone());
        let renew = RenewLeaseRequest {
            epoch: host.epoch,
            node_id: mallory.reg.node_id.clone(),
            session_token: mallory.reg.session_token.clone(),
            ..Default::default()
        };
        let rc = relay_client(uri).await;
        let renewing = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let _ = rc.clone().renew_lease(renew.clone()).await;
            }
        });
        HostileHost {
            mallory,
            frames,
            admitted,
            renewing,
        }
    }

    /// Waits until `count` more sessions were admitted.
    async fn admitted(&mut self, count: usize) {
        for _ in 0..count {
            tokio::time::timeout(DEADLINE, self.admitted.recv())
                .await
                .expect("a member opened a session in time")
                .expect("the hostile host runs");
        }
    }

    /// Serves `reset` on every session.
    fn serve(&self, reset: RoomReset) {
        self.frames
            .send(frame(server_frame::Frame::Reset(reset)))
            .expect("sessions are open");
    }
}

fn room_reset(seq: u64, by: &str, min_users: u32, cert: Option<ResetCertificate>) -> RoomReset {
    RoomReset {
        seq,
        min_users,
        by: by.into(),
        epoch: 1,
        certificate: cert,
    }
}

/// Waits until `member` shows the refusal of reset `seq`, naming the host.
async fn refused(member: &mut Member, seq: u64, why: &str) {
    let error = member
        .wait_event("error", &[("message", &format!("~reset {seq} "))])
        .await;
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("refused") && message.contains(why),
        "{}: reset {seq}: {message}",
        member.name
    );
    assert!(
        message.contains("served by host mallory at 127.0.0.1:"),
        "{}: the error names the host: {message}",
        member.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_refuse_a_forged_or_replayed_reset_and_name_the_host() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut host = HostileHost::start(&uri).await;
    let mut alice = join(&uri, "alice").await.expect("alice joins");
    let mut bob = join(&uri, "bob").await.expect("bob joins");
    host.admitted(2).await;
    for m in [&mut alice, &mut bob] {
        m.wait_event("host", &[("name", "mallory")]).await;
    }
    // Alice reset the room once, with the admin secret: the host holds
    // her genuine certificate.
    let me = alice.shared().ctx.identity.clone();
    let genuine = reset_certificate(&uri, &me.node_id, &me.session_token, 2).await;

    // 1: bob's reset, with no certificate at all.
    host.serve(room_reset(1, "bob", 1, None));
    // 2: bob's reset, certified by the host's own key instead of the relay's.
    let grant = ResetGrant {
        room: trust::ROOM.into(),
        min_users: 1,
        by: "bob".into(),
        by_node_id: bob.shared().ctx.identity.node_id.clone(),
        issued_at_unix_ms: trust::now_unix_ms(),
        nonce: trust::reset_nonce(),
    };
    let forged = host.mallory.key.issue_reset(&grant);
    host.serve(room_reset(2, "bob", 1, Some(forged)));
    // 3: alice's genuine reset, shown as bob's; 4: as a threshold of 1.
    host.serve(room_reset(3, "bob", 2, Some(genuine.clone())));
    host.serve(room_reset(4, "alice", 1, Some(genuine.clone())));
    // 5: alice's reset as it was: the one reset shown.
    host.serve(room_reset(5, "alice", 2, Some(genuine.clone())));
    // 6: the same reset served again.
    host.serve(room_reset(6, "alice", 2, Some(genuine)));

    for m in [&mut alice, &mut bob] {
        refused(m, 1, "malformed certificate").await;
        refused(m, 2, "bad signature").await;
        refused(m, 3, "does not match: member").await;
        refused(m, 4, "does not match: threshold").await;
        refused(m, 6, "used before").await;
        m.drain();
        let resets: Vec<_> = m.seen.iter().filter(|e| e["type"] == "reset").collect();
        assert_eq!(resets.len(), 1, "{}: {resets:?}", m.name);
        assert_eq!(
            (resets[0]["by"].as_str(), resets[0]["min_users"].as_u64()),
            (Some("alice"), Some(2)),
            "{}: {resets:?}",
            m.name
        );
        assert!(
            !m.has_seen("error", &[("message", "~reset 5 ")]),
            "{}: the genuine reset was refused: {:?}",
            m.name,
            m.seen
        );
    }
}

// ---------------------------------------------------------------------------
// A hostile member against an honest host.
// ---------------------------------------------------------------------------

/// The next Rejected on `session`, skipping other frames; the RoomResets
/// skipped are returned too.
async fn next_rejection(session: &mut HostileSession) -> (Rejected, Vec<RoomReset>) {
    let mut resets = Vec::new();
    loop {
        match next_frame(&mut session.frames).await {
            Ok(Some(server_frame::Frame::Rejected(r))) => return (r, resets),
            Ok(Some(server_frame::Frame::Reset(r))) => resets.push(r),
            Ok(Some(_)) => {}
            other => panic!("expected a Rejected, got {other:?}"),
        }
    }
}

/// The next RoomReset on `session`, skipping other frames.
async fn next_reset(session: &mut HostileSession) -> RoomReset {
    loop {
        match next_frame(&mut session.frames).await {
            Ok(Some(server_frame::Frame::Reset(r))) => return r,
            Ok(Some(server_frame::Frame::Rejected(r))) => panic!("refused: {r:?}"),
            Ok(Some(_)) => {}
            other => panic!("expected a RoomReset, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_host_logs_a_reset_only_with_the_askers_unused_certificate() {
    let relay = Relay::start(2, NO_MIGRATION).await;
    let uri = relay.uri();
    let mut members = start_chat(&uri, &["alice", "bob"]).await;
    let mallory = Stranger::register(&uri, "mallory").await;
    let host = current_host(&uri).await;
    assert_eq!(host.name, "alice");
    let mut session = HostileSession::open(&host.address).await;
    session
        .send(client_frame::Frame::Hello(
            mallory.hello(&session.challenge),
        ))
        .await;
    session.welcomed().await;
    let reset = |min_users, certificate| {
        client_frame::Frame::Reset(ResetRoom {
            min_users,
            certificate,
        })
    };
    let (node, token) = (&mallory.reg.node_id, &mallory.reg.session_token);

    // Mallory has the admin secret here: her certificate resets the room,
    // and the host logs it with the certificate for members to check.
    let own = reset_certificate(&uri, node, token, 2).await;
    session.send(reset(2, Some(own.clone()))).await;
    let logged = next_reset(&mut session).await;
    assert_eq!((logged.by.as_str(), logged.min_users), ("mallory", 2));
    assert_eq!(logged.certificate.as_ref(), Some(&own));
    for m in members.iter_mut() {
        m.wait_event("reset", &[("by", "mallory"), ("min_users", "2")])
            .await;
    }

    // The same certificate again; alice's certificate; one for another
    // threshold; none at all.
    let alice = members[0].shared().ctx.identity.clone();
    let alices = reset_certificate(&uri, &alice.node_id, &alice.session_token, 2).await;
    let for_three = reset_certificate(&uri, node, token, 3).await;
    let attempts = [
        (reset(2, Some(own)), "used before"),
        (reset(2, Some(alices)), "does not match: member"),
        (reset(2, Some(for_three)), "does not match: threshold"),
        (reset(2, None), "malformed certificate"),
    ];
    for (attempt, why) in attempts {
        session.send(attempt).await;
        let (rejected, resets) = next_rejection(&mut session).await;
        assert!(
            rejected.reason.starts_with("reset refused: ") && rejected.reason.contains(why),
            "{why}: {rejected:?}"
        );
        assert!(resets.is_empty(), "{why}: logged {resets:?}");
    }
    for m in members.iter_mut() {
        m.drain();
        let resets = m.seen.iter().filter(|e| e["type"] == "reset").count();
        assert_eq!(resets, 1, "{}: {:?}", m.name, m.seen);
    }
    drop(session);
    assert_chat_intact(&mut members).await;
}
