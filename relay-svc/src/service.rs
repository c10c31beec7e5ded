//! `relay.v1.RelayService` over the registry.

use crate::admin::AdminGate;
use crate::config::RelayConfig;
use crate::registry::{ReachCheck, Registration, Registry};
use chat_proto::health_check::TlsCheck;
use chat_proto::pb::relay::relay_service_server::RelayService;
use chat_proto::pb::relay::*;
use chat_proto::tls::{self, Authority};
use chat_proto::trust::{self, Keypair, PublicKey};
use prost::Message;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// State shared by the handlers. The mutex is never held across an `.await`.
pub struct Shared {
    registry: Mutex<Registry>,
    relay_key: PublicKey,
    admin: AdminGate,
    epochs: EpochFile,
    host_tx: watch::Sender<Option<HostRecord>>,
    config: RelayConfig,
    closing: CancellationToken,
    /// Issues the nodes' TLS certificates (none when serving plaintext).
    authority: Option<Authority>,
}

impl Shared {
    /// Empty registry under `config`, signing with `key`; `authority`
    /// issues TLS certificates to the nodes (`None`: plaintext).
    pub fn new(config: RelayConfig, key: Keypair, authority: Option<Authority>) -> Arc<Self> {
        let relay_key = key.verifying();
        let epochs = EpochFile::open(config.data_dir.as_deref());
        let mut registry = Registry::new(config.lease, key).with_grant_ttl(config.certificate_ttl);
        registry.restore_epoch(epochs.last(), Instant::now());
        Arc::new(Self {
            registry: Mutex::new(registry),
            epochs,
            relay_key,
            admin: AdminGate::new(config.admin_secret.clone()),
            host_tx: watch::channel(None).0,
            config,
            closing: CancellationToken::new(),
            authority,
        })
    }

    /// The TLS certificate for a registrant's checked request and the
    /// authority's certificate, both DER; empty when serving plaintext
    /// (and no certificate without a request). The certificate expires
    /// with the member's name certificate.
    fn node_tls(
        &self,
        record: &MemberRecord,
        request: Option<tls::NodeRequest>,
    ) -> Result<(Vec<u8>, Vec<u8>), Status> {
        let Some(authority) = &self.authority else {
            return Ok(Default::default());
        };
        let certificate = match request {
            None => Vec::new(),
            Some(request) => {
                let expires = record
                    .certificate
                    .as_ref()
                    .and_then(|c| NameGrant::decode(c.grant.as_slice()).ok())
                    .map(|g| g.expires_at_unix_ms)
                    .ok_or_else(|| Status::internal("no name certificate to match"))?;
                authority
                    .issue_node(&request, &record.name, &record.node_id, expires)
                    .map_err(|e| Status::internal(format!("issuing the TLS certificate: {e}")))?
            }
        };
        Ok((certificate, authority.certificate_der().to_vec()))
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the registry half
        // updated (every method validates before mutating), so go on.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the registry and publishes the host record if it changed.
    fn update<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut registry = self.registry();
        let out = f(&mut registry);
        let host = registry.host();
        self.epochs.record(registry.highest_epoch());
        drop(registry);
        self.host_tx.send_if_modified(|cur| {
            let changed = *cur != host;
            *cur = host;
            changed
        });
        out
    }

    /// Ends every watch stream (the relay is stopping).
    pub fn close_watches(&self) {
        self.closing.cancel();
    }

    /// Promotes a successor if the host's lease ran out.
    pub fn check_lease(&self) {
        match self.update(|r| r.check_lease(Instant::now())) {
            Some(host) if host.no_host_reason.is_empty() => {
                tracing::warn!(epoch = host.epoch, to = %host.name, "made a new host");
            }
            Some(host) => tracing::warn!(reason = %host.no_host_reason, "the chat has no host"),
            None => {}
        }
    }

    /// The member addresses due for a reachability check (marked under way).
    pub fn due_checks(&self) -> Vec<ReachCheck> {
        self.registry().due_checks(Instant::now())
    }

    /// Takes a reachability check's result (which may make a host).
    pub fn record_check(&self, check: &ReachCheck, reached: bool) {
        self.update(|r| r.record_check(check, reached, Instant::now()));
    }

    /// How to check a member's address: over TLS with the relay's
    /// authority, expecting the member's certificate, when serving TLS.
    pub fn check_tls(&self, node_id: &str) -> Option<TlsCheck> {
        self.authority.as_ref().map(|authority| TlsCheck {
            ca_pem: authority.certificate_pem(),
            server_name: Some(tls::node_domain(node_id)),
        })
    }

    /// Forgets members silent for longer than the grace period.
    pub fn reap(&self) {
        let grace = self.config.member_grace;
        let gone = self.update(|r| r.reap(Instant::now(), grace));
        for name in gone {
            tracing::info!(%name, "member forgotten after its watch stream closed");
        }
    }
}

/// The highest epoch issued, kept in the data directory so that a
/// restarted relay never issues an epoch twice.
struct EpochFile {
    path: Option<std::path::PathBuf>,
    written: std::sync::atomic::AtomicU64,
}

impl EpochFile {
    fn open(dir: Option<&std::path::Path>) -> Self {
        let path = dir.map(|d| d.join("epoch"));
        let last = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        Self {
            path,
            written: last.into(),
        }
    }

    fn last(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes `epoch` if it is higher than the last written.
    fn record(&self, epoch: u64) {
        let previous = self
            .written
            .fetch_max(epoch, std::sync::atomic::Ordering::Relaxed);
        let Some(path) = &self.path else { return };
        if epoch > previous {
            if let Err(e) = std::fs::write(path, epoch.to_string()) {
                tracing::warn!(path = %path.display(), error = %e, "cannot record the epoch");
            }
        }
    }
}

/// The gRPC service.
pub struct Relay(pub Arc<Shared>);

type WatchStream = ReceiverStream<Result<HostRecord, Status>>;

#[tonic::async_trait]
impl RelayService for Relay {
    async fn register(
        &self,
        req: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let (reg, tls_request) = verify_registration(&self.0.relay_key, req.into_inner())?;
        let now_ms = trust::now_unix_ms();
        let (member, host) = self.0.update(|r| r.register(reg, Instant::now(), now_ms))?;
        tracing::info!(name = %member.record.name, node = %member.record.node_id,
                       address = %member.record.address, "registered");
        let (tls_certificate, tls_authority) = self.0.node_tls(&member.record, tls_request)?;
        let config = &self.0.config;
        Ok(Response::new(RegisterResponse {
            node_id: member.record.node_id,
            session_token: member.session_token,
            host,
            min_users: config.min_users,
            migration_interval_ms: millis(config.migration_interval),
            away_grace_ms: millis(config.away_grace),
            lease_ms: millis(config.lease),
            relay_public_key: self.0.relay_key.to_bytes().to_vec(),
            name_certificate: member.record.certificate,
            messages_per_second: config.messages_per_second,
            message_burst: config.message_burst,
            tls_certificate,
            tls_authority,
            hosts: Vec::new(),
        }))
    }

    async fn current_host(
        &self,
        _req: Request<CurrentHostRequest>,
    ) -> Result<Response<HostRecord>, Status> {
        let host = self.0.registry().current_host();
        Ok(Response::new(host?))
    }

    async fn report_migration(
        &self,
        req: Request<ReportMigrationRequest>,
    ) -> Result<Response<HostRecord>, Status> {
        let r = req.into_inner();
        let host = self.0.update(|reg| {
            reg.report_migration(
                &r.node_id,
                &r.session_token,
                r.from_epoch,
                &r.to_node_id,
                Instant::now(),
            )
        });
        match &host {
            Ok(h) => tracing::info!(epoch = h.epoch, to = %h.name, "host migrated"),
            Err(e) => tracing::warn!(error = %e, "migration report refused"),
        }
        Ok(Response::new(host?))
    }

    async fn renew_lease(
        &self,
        req: Request<RenewLeaseRequest>,
    ) -> Result<Response<RenewLeaseResponse>, Status> {
        let r = req.into_inner();
        let unhostable_node_ids = self.0.update(|reg| {
            reg.renew_lease(
                &r.node_id,
                &r.session_token,
                r.epoch,
                &r.successor_node_id,
                Instant::now(),
            )
        })?;
        Ok(Response::new(RenewLeaseResponse {
            lease_ms: self.0.config.lease.as_millis() as u64,
            unhostable_node_ids,
            rooms_hosted: Default::default(),
        }))
    }

    async fn authorize_reset(
        &self,
        req: Request<AuthorizeResetRequest>,
    ) -> Result<Response<AuthorizeResetResponse>, Status> {
        let given = req.into_inner().admin_secret;
        self.0.admin.check(&given, Instant::now())?;
        Ok(Response::new(AuthorizeResetResponse {}))
    }

    type WatchHostStream = WatchStream;

    async fn watch_host(
        &self,
        req: Request<WatchHostRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let req = req.into_inner();
        self.0
            .update(|r| r.watch_started(&req.node_id, &req.session_token))?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(forward_host_changes(self.0.clone(), req.node_id, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn unregister(
        &self,
        req: Request<UnregisterRequest>,
    ) -> Result<Response<UnregisterResponse>, Status> {
        let req = req.into_inner();
        self.0
            .update(|r| r.unregister(&req.node_id, &req.session_token))?;
        tracing::info!(node = %req.node_id, "unregistered");
        Ok(Response::new(UnregisterResponse {}))
    }

    async fn join_room(
        &self,
        _req: Request<JoinRoomRequest>,
    ) -> Result<Response<JoinRoomResponse>, Status> {
        Err(Status::unimplemented("rooms are not served yet"))
    }

    async fn leave_room(
        &self,
        _req: Request<LeaveRoomRequest>,
    ) -> Result<Response<LeaveRoomResponse>, Status> {
        Err(Status::unimplemented("rooms are not served yet"))
    }

    async fn list_rooms(
        &self,
        _req: Request<ListRoomsRequest>,
    ) -> Result<Response<ListRoomsResponse>, Status> {
        Err(Status::unimplemented("rooms are not served yet"))
    }

    async fn lookup_member(
        &self,
        req: Request<LookupMemberRequest>,
    ) -> Result<Response<MemberRecord>, Status> {
        let name = req.into_inner().name;
        let found = self.0.registry().lookup(&name).cloned();
        found
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no member named {name:?}")))
    }
}

/// Milliseconds of `d`, saturating.
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Longest accepted session token, in bytes.
const MAX_TOKEN_BYTES: usize = 128;

/// Checks what a registrant sent before the registry sees it: sizes, the
/// proof that it holds its key, that every certificate it shows was
/// signed by this relay, and that its TLS certificate request (if any) is
/// for its own key. Returns the registration and the checked request.
fn verify_registration(
    relay: &PublicKey,
    req: RegisterRequest,
) -> Result<(Registration, Option<tls::NodeRequest>), Status> {
    if req.session_token.len() > MAX_TOKEN_BYTES {
        return Err(Status::invalid_argument("session token is too long"));
    }
    if req.certificate_request.len() > tls::MAX_CSR_BYTES {
        return Err(Status::invalid_argument(format!(
            "certificate_request is longer than {} bytes",
            tls::MAX_CSR_BYTES
        )));
    }
    let key = PublicKey::from_bytes(&req.public_key)
        .map_err(|_| Status::invalid_argument("public_key must be a 32-byte Ed25519 key"))?;
    let now = trust::now_unix_ms();
    // Fields first: the payload below must not be built from huge ones.
    crate::registry::check_fields(&req.name, &req.address, req.client_only)?;
    key.verify(&trust::register_payload(&req), &req.signature)
        .and_then(|()| trust::check_fresh(req.signed_at_unix_ms, now))
        .map_err(|e| Status::unauthenticated(format!("registration not signed by its key: {e}")))?;
    let latest_term = req
        .latest_term
        .map(|cert| relay.verify_host_term(&cert))
        .transpose()
        .map_err(|e| Status::permission_denied(format!("host term certificate: {e}")))?;
    // An old name certificate counts only for this name and this key.
    let name_claimed_at = req
        .name_certificate
        .and_then(|cert| relay.verify_name(&cert, now).ok())
        .filter(|g| g.name == req.name && g.public_key == req.public_key)
        .map(|g| g.issued_at_unix_ms);
    let tls_request = (!req.certificate_request.is_empty())
        .then(|| tls::check_certificate_request(&req.certificate_request, &req.public_key))
        .transpose()
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let registration = Registration {
        name: req.name,
        address: req.address,
        session_token: req.session_token,
        public_key: req.public_key,
        latest_term,
        hosting: req.hosting,
        name_claimed_at,
        replica_head: req.replica_head,
        client_only: req.client_only,
    };
    Ok((registration, tls_request))
}

/// Sends the current host and every change until the watcher goes away; the
/// node counts as alive for as long as this runs.
async fn forward_host_changes(
    shared: Arc<Shared>,
    node_id: String,
    tx: mpsc::Sender<Result<HostRecord, Status>>,
) {
    let mut rx = shared.host_tx.subscribe();
    loop {
        let host = rx.borrow_and_update().clone();
        if let Some(host) = host {
            if tx.send(Ok(host)).await.is_err() {
                break;
            }
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { break },
            _ = tx.closed() => break,
            _ = shared.closing.cancelled() => break,
        }
    }
    shared.update(|r| r.watch_ended(&node_id, Instant::now()));
}
