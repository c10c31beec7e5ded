//! The node's link to the relay: registration, the host watch stream, and
//! re-registration (re-asserting a hosted epoch) after the relay restarts.

use crate::dial::{DialError, Dialer};
use crate::error::NodeError;
use crate::node::{Identity, NodeShared};
use chat_proto::pb::relay::relay_service_client::RelayServiceClient;
use chat_proto::pb::relay::*;
use chat_proto::trust::{self, Keypair, PublicKey};
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Status;

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
    client: RelayServiceClient<Channel>,
}

impl RelayLink {
    /// A link to the relay at `uri` made by `dialer` (connects lazily and
    /// reconnects by itself).
    pub fn new(dialer: &Dialer, uri: &str) -> Result<Self, DialError> {
        Ok(Self {
            client: RelayServiceClient::new(dialer.relay(uri)?),
        })
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
        Ok(self
            .client
            .clone()
            .register(Self::unary(req))
            .await?
            .into_inner())
    }

    /// The relay's current host record of `room`.
    pub async fn current_host(&self, room: &str) -> Result<HostRecord, Status> {
        let req = Self::unary(CurrentHostRequest {
            room: room.to_string(),
        });
        Ok(self.client.clone().current_host(req).await?.into_inner())
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
        Ok(self.client.clone().join_room(req).await?.into_inner().host)
    }

    /// Takes us out of `room`.
    pub async fn leave_room(&self, me: &Identity, room: &str) -> Result<(), Status> {
        let req = Self::unary(LeaveRoomRequest {
            node_id: me.node_id.clone(),
            session_token: me.session_token.clone(),
            room: room.to_string(),
        });
        self.client.clone().leave_room(req).await?;
        Ok(())
    }

    /// The rooms whose names sort after `after`, at most `limit` (0: the
    /// relay's default page).
    pub async fn list_rooms(&self, after: &str, limit: u32) -> Result<ListRoomsResponse, Status> {
        let req = Self::unary(ListRoomsRequest {
            after: after.to_string(),
            limit,
        });
        Ok(self.client.clone().list_rooms(req).await?.into_inner())
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
        Ok(self
            .client
            .clone()
            .report_migration(req)
            .await?
            .into_inner())
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
        Ok(self.client.clone().renew_lease(req).await?.into_inner())
    }

    /// Asks the relay whether `admin_secret` allows a reset.
    pub async fn authorize_reset(&self, admin_secret: &str) -> Result<(), Status> {
        let req = Self::unary(AuthorizeResetRequest {
            admin_secret: admin_secret.to_string(),
        });
        self.client.clone().authorize_reset(req).await?;
        Ok(())
    }

    /// Leaves the registry.
    pub async fn unregister(&self, me: &Identity) -> Result<(), Status> {
        let req = Self::unary(UnregisterRequest {
            node_id: me.node_id.clone(),
            session_token: me.session_token.clone(),
        });
        self.client.clone().unregister(req).await?;
        Ok(())
    }

    async fn watch(&self, me: &Identity) -> Result<tonic::Streaming<HostRecord>, Status> {
        let req = WatchHostRequest {
            node_id: me.node_id.clone(),
            session_token: me.session_token.clone(),
        };
        Ok(self.client.clone().watch_host(req).await?.into_inner())
    }
}

/// Follows the relay's host record for as long as the node runs; after the
/// relay restarts or forgets us, registers again with the same identity.
pub async fn follow_relay(shared: Arc<NodeShared>, cancel: CancellationToken) {
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    let mut registered = true;
    loop {
        let attempt = async {
            if !registered {
                shared.reregister().await?;
                registered = true;
            }
            let mut stream = shared.relay.watch(&shared.identity).await?;
            while let Some(record) = stream.message().await? {
                backoff.reset();
                shared.on_host_record(record).await;
            }
            Err::<(), Status>(NodeError::WatchClosed.into())
        };
        let status = tokio::select! {
            r = attempt => r.err().unwrap_or_else(|| NodeError::WatchClosed.into()),
            _ = cancel.cancelled() => return,
        };
        tracing::warn!(%status, "lost the relay; retrying");
        // The relay may have restarted or forgotten us: registering again
        // with our token is harmless otherwise.
        registered = false;
        tokio::select! {
            _ = backoff.wait() => {}
            _ = cancel.cancelled() => return,
        }
    }
}

impl NodeShared {
    /// Registers again under the same identity, re-asserting a hosted term
    /// and our name with the certificates we hold. The TLS certificate
    /// issued before stays valid (the relay keeps its authority across
    /// restarts), so none is asked for.
    async fn reregister(&self) -> Result<(), Status> {
        self.register_again(Vec::new()).await.map(|_| ())
    }

    /// Registers again, sending `certificate_request` (empty: none); takes
    /// the new name certificate and the host record. Returns the response.
    async fn register_again(
        &self,
        certificate_request: Vec<u8>,
    ) -> Result<RegisterResponse, Status> {
        let claim = Claim {
            session_token: self.identity.session_token.clone(),
            name_certificate: Some(self.name_certificate()),
            rooms: self.claims(),
            certificate_request,
            client_only: self.identity.client_only(),
        };
        let me = &self.identity;
        let mut resp = self
            .relay
            .register(&self.key, &me.name, &me.address, claim)
            .await?;
        let cert = check_name_certificate(&self.relay_key, &self.key, &me.name, &resp)?;
        self.store.save_name_certificate(&me.name, &cert);
        *self.name_cert.lock().unwrap_or_else(|p| p.into_inner()) = cert;
        for host in std::mem::take(&mut resp.hosts) {
            self.on_host_record(host).await;
        }
        Ok(resp)
    }

    /// Renews the name certificate and, over TLS, the node's certificate
    /// (issued to expire with it), by registering again with a new
    /// certificate request.
    async fn renew_certificates(&self) -> Result<(), Status> {
        let me = &self.identity;
        let request = self
            .dialer
            .certificate_request(&self.key, &me.name)
            .map_err(|e| NodeError::OwnCertificate(e.to_string()))?;
        let resp = self.register_again(request).await?;
        if self.dialer.is_tls() {
            self.dialer
                .renew(&self.key, &resp.tls_certificate)
                .map_err(|e| NodeError::OwnCertificate(e.to_string()))?;
        }
        Ok(())
    }

    /// How long until the name certificate is due for renewal: when two
    /// thirds of its validity have passed.
    fn renewal_due_in(&self) -> Duration {
        let grant = NameGrant::decode(self.name_certificate().grant.as_slice());
        let Ok(grant) = grant else {
            return RENEWAL_RETRY;
        };
        let lifetime = grant
            .expires_at_unix_ms
            .saturating_sub(grant.issued_at_unix_ms);
        let due = grant.issued_at_unix_ms.saturating_add(lifetime / 3 * 2);
        let wait = due.saturating_sub(trust::now_unix_ms());
        Duration::from_millis(u64::try_from(wait).unwrap_or(0))
    }
}

/// How long after a failed renewal the node tries again.
const RENEWAL_RETRY: Duration = Duration::from_secs(5);

/// Keeps the node's name certificate (and its TLS certificate) valid for
/// as long as the node runs: renews each at two thirds of its validity
/// (24 hours by default), retrying every few seconds while the relay
/// cannot be reached.
pub async fn keep_certificates_fresh(shared: Arc<NodeShared>, cancel: CancellationToken) {
    loop {
        let wait = shared.renewal_due_in();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return,
        }
        let renewed = tokio::select! {
            r = shared.renew_certificates() => r,
            _ = cancel.cancelled() => return,
        };
        match renewed {
            Ok(()) => tracing::info!("renewed the name and TLS certificates"),
            Err(status) => {
                tracing::warn!(%status, "could not renew the certificates; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(RENEWAL_RETRY) => {}
                    _ = cancel.cancelled() => return,
                }
            }
        }
    }
}

impl RelayLink {
    /// Finds a registered member by name.
    pub async fn lookup_member(&self, name: &str) -> Result<MemberRecord, Status> {
        let req = Self::unary(LookupMemberRequest {
            name: name.to_string(),
        });
        Ok(self.client.clone().lookup_member(req).await?.into_inner())
    }
}
