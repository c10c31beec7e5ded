//! The node's link to the relay: registration, the host watch stream, and
//! re-registration (re-asserting a hosted epoch) after the relay restarts.
//! A relay may have several addresses (instances of one replicated relay,
//! `CHAT_RELAY=https://r1:5000,https://r2:5000`): the link stays on one
//! and moves to the next when a call cannot reach it or it stands by; the
//! node then registers again there and re-opens its watch, as after a
//! relay restart.

use crate::dial::{relay_uris, DialError, Dialer};
use crate::error::NodeError;
use crate::identity::Identity;
use chat_proto::pb::relay::relay_service_client::RelayServiceClient;
use chat_proto::pb::relay::*;
use chat_proto::trust::{self, Keypair, PublicKey};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Status;

/// Whether a failed call means "try another relay address": the call
/// never reached a relay (a transport failure or our own timeout, which
/// carry their cause) or reached a standby instance. A relay's own
/// refusals (no host yet, a stale epoch) do not move the node.
fn moves_on(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
        || status
            .metadata()
            .contains_key(chat_proto::RELAY_STANDBY_METADATA)
}

/// Bound on each unary call to the relay.
const RELAY_CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// What a node shows the relay when it registers again.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    /// Token of the earlier registration.
    pub session_token: String,
    /// Our earlier name certificate.
    pub name_certificate: Option<NameCertificate>,
    /// The rooms we are in, with what we hold of each.
    pub rooms: Vec<RoomClaim>,
    /// A TLS certificate signing request for our key (empty: none).
    pub certificate_request: Vec<u8>,
    /// We serve nothing (and give no address): never make us host.
    pub client_only: bool,
}

/// The name certificate of a registration, checked against the relay's key:
/// it must bind `name` to `key`.
pub fn check_name_certificate(
    relay: &PublicKey,
    key: &Keypair,
    name: &str,
    resp: &RegisterResponse,
) -> Result<NameCertificate, Status> {
    let cert = resp
        .name_certificate
        .clone()
        .ok_or_else(|| NodeError::NameCertificate("none was sent".into()))?;
    let grant = relay
        .verify_name(&cert, trust::now_unix_ms())
        .map_err(|e| NodeError::NameCertificate(e.to_string()))?;
    if grant.name != name || grant.public_key != key.public_key() {
        let why = "it is for another name or key".to_string();
        return Err(NodeError::NameCertificate(why).into());
    }
    Ok(cert)
}

/// A cheap-to-clone handle on the relay.
#[derive(Clone, Debug)]
pub struct RelayLink {
    /// One client per relay address.
    clients: Arc<[RelayServiceClient<Channel>]>,
    /// The address in use.
    current: Arc<AtomicUsize>,
}

impl RelayLink {
    /// A link to the relay at `uri` (a comma-separated list: several
    /// addresses of one relay) made by `dialer` (connects lazily and
    /// reconnects by itself).
    pub fn new(dialer: &Dialer, uri: &str) -> Result<Self, DialError> {
        let clients = relay_uris(uri)
            .into_iter()
            .map(|u| dialer.relay(u).map(RelayServiceClient::new))
            .collect::<Result<Vec<_>, _>>()?;
        if clients.is_empty() {
            return Err(DialError::RelayUri {
                uri: uri.to_string(),
                reason: "no relay address".to_string(),
            });
        }
        Ok(Self {
            clients: clients.into(),
            current: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Makes one call on the address in use; when it could not reach a
    /// relay that answers, the next call goes to the next address.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, Status>
    where
        F: FnOnce(RelayServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let used = self.current.load(Ordering::Relaxed) % self.clients.len();
        let Some(client) = self.clients.get(used).cloned() else {
            return Err(NodeError::WatchClosed.into());
        };
        let answer = f(client).await;
        if let Err(status) = &answer {
            if self.clients.len() > 1 && moves_on(status) {
                let next = (used + 1) % self.clients.len();
                // Several calls failing at once move the link once.
                if self
                    .current
                    .compare_exchange(used, next, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    tracing::info!(%status, from = used, to = next, "moving to another relay address");
                }
            }
        }
        answer.map(tonic::Response::into_inner)
    }

    fn unary<T>(msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(RELAY_CALL_TIMEOUT);
        req
    }

    /// Registers (or re-registers) `name` with `key`, proving we hold it.
    pub async fn register(
        &self,
        key: &Keypair,
        name: &str,
        address: &str,
        claim: Claim,
    ) -> Result<RegisterResponse, Status> {
        let mut req = RegisterRequest {
            name: name.to_string(),
            address: address.to_string(),
            session_token: claim.session_token,
            rooms: claim.rooms,
            name_certificate: claim.name_certificate,
            certificate_request: claim.certificate_request,
            client_only: claim.client_only,
            ..Default::default()
        };
        key.sign_register(&mut req);
        self.call(|mut c| async move { c.register(Self::unary(req)).await })
            .await
    }

    /// The relay's current host record of `room`.
    pub async fn current_host(&self, room: &str) -> Result<HostRecord, Status> {
        let req = Self::unary(CurrentHostRequest {
            room: room.to_string(),
        });
        self.call(|mut c| async move { c.current_host(req).await })
            .await
    }

    /// Puts us in a room, showing what we hold of it; the room's host
    /// record, if it has one.
    pub async fn join_room(
        &self,
        me: &Identity,
        claim: RoomClaim,
    ) -> Result<Option<HostRecord>, Status> {
        let req = Self::unary(JoinRoomRequest {
            node_id: me.node_id.clone(),
            session_token: me.session_token.clone(),
            claim: Some(claim),
        });
        let answer = self
            .call(|mut c| async move { c.join_room(req).await })
            .await?;
        Ok(answer.host)
    }

    /// Takes us out of `room`.
    pub async fn leave_room(&self, me: &Identity, room: &str) -> Result<(), Status> {
        let req = Self::unary(LeaveRoomRequest {
            node_id: me.node_id.clone(),
            session_token: me.session_token.clone(),
            room: room.to_string(),
        });
        self.call(|mut c| async move { c.leave_room(req).await })
            .await?;
        Ok(())
    }

    /// The rooms whose names sort after `after`, at most `limit` (0: the
    /// relay's default page).
    pub async fn list_rooms(&self, after: &str, limit: u32) -> Result<ListRoomsResponse, Status> {
        let req = Self::unary(ListRoomsRequest {
            after: after.to_string(),
            limit,
        });
        self.call(|mut c| async move { c.list_rooms(req).await })
            .await
    }

    /// Asks the relay to move `room`'s host pointer from `from_epoch` to
    /// `to_node_id`.
    pub async fn report_migration(
        &self,
        me: &Identity,
        room: &str,
        from_epoch: u64,
        to_node_id: &str,
    ) -> Result<HostRecord, Status> {
        let req = Self::unary(ReportMigrationRequest {
            from_epoch,
            to_node_id: to_node_id.to_string(),
            node_id: me.node_id.clone(),
            session_token: me.session_token.clone(),
            room: room.to_string(),
        });
        self.call(|mut c| async move { c.report_migration(req).await })
            .await
    }

    /// Renews the host lease of `lease.room` for `epoch`, naming the
    /// successor. Answers whom the relay will not take as successor
    /// (client-only or unreachable from the relay) and how many rooms the
    /// others host.
    pub async fn renew_lease(
        &self,
        me: &Identity,
        lease: RenewLeaseRequest,
        timeout: Duration,
    ) -> Result<RenewLeaseResponse, Status> {
        let mut req = tonic::Request::new(RenewLeaseRequest {
            node_id: me.node_id.clone(),
            session_token: me.session_token.clone(),
            ..lease
        });
        req.set_timeout(timeout);
        self.call(|mut c| async move { c.renew_lease(req).await })
            .await
    }

    /// Asks the relay, with `admin_secret`, for the certificate of a reset
    /// of `room` to `min_users` by us, which the room's host and every
    /// member check.
    pub async fn authorize_reset(
        &self,
        me: &Identity,
        room: &str,
        min_users: u32,
        admin_secret: &str,
    ) -> Result<ResetCertificate, Status> {
        let req = Self::unary(AuthorizeResetRequest {
            admin_secret: admin_secret.to_string(),
            room: room.to_string(),
            min_users,
            node_id: me.node_id.clone(),
            session_token: me.session_token.clone(),
        });
        let answer = self
            .call(|mut c| async move { c.authorize_reset(req).await })
            .await?;
        answer
            .certificate
            .ok_or_else(|| NodeError::NoResetCertificate.into())
    }

    /// Leaves the registry.
    pub async fn unregister(&self, me: &Identity) -> Result<(), Status> {
        let req = Self::unary(UnregisterRequest {
            node_id: me.node_id.clone(),
            session_token: me.session_token.clone(),
        });
        self.call(|mut c| async move { c.unregister(req).await })
            .await?;
        Ok(())
    }

    pub(crate) async fn watch(
        &self,
        me: &Identity,
    ) -> Result<tonic::Streaming<HostRecord>, Status> {
        let req = WatchHostRequest {
            node_id: me.node_id.clone(),
            session_token: me.session_token.clone(),
        };
        self.call(|mut c| async move { c.watch_host(req).await })
            .await
    }
}

impl RelayLink {
    /// Finds a registered member by name.
    pub async fn lookup_member(&self, name: &str) -> Result<MemberRecord, Status> {
        let req = Self::unary(LookupMemberRequest {
            name: name.to_string(),
        });
        self.call(|mut c| async move { c.lookup_member(req).await })
            .await
    }
}
