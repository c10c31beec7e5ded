//! The node's life with the relay: following its host records (and
//! registering again after the relay restarts or forgets us), and keeping
//! the name and TLS certificates fresh.

use super::NodeShared;
use crate::error::NodeError;
use crate::relay_link::{check_name_certificate, Claim};
use chat_proto::pb::relay::{NameGrant, RegisterResponse};
use chat_proto::trust;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::Status;

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
            let mut stream = shared.ctx.relay.watch(&shared.ctx.identity).await?;
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
            session_token: self.ctx.identity.session_token.clone(),
            name_certificate: Some(self.name_certificate()),
            rooms: self.claims(),
            certificate_request,
            client_only: self.ctx.identity.client_only(),
        };
        let me = &self.ctx.identity;
        let mut resp = self
            .ctx
            .relay
            .register(&self.ctx.key, &me.name, &me.address, claim)
            .await?;
        let cert = check_name_certificate(&self.ctx.relay_key, &self.ctx.key, &me.name, &resp)?;
        self.store.save_name_certificate(&me.name, &cert);
        self.ctx.set_name_certificate(cert);
        for host in std::mem::take(&mut resp.hosts) {
            self.on_host_record(host).await;
        }
        Ok(resp)
    }

    /// Renews the name certificate and, over TLS, the node's certificate
    /// (issued to expire with it), by registering again with a new
    /// certificate request.
    async fn renew_certificates(&self) -> Result<(), Status> {
        let me = &self.ctx.identity;
        let request = self
            .ctx
            .dialer
            .renewal_request(&me.name)
            .map_err(|e| NodeError::OwnCertificate(e.to_string()))?;
        let resp = self.register_again(request).await?;
        if self.ctx.dialer.is_tls() {
            self.ctx
                .dialer
                .renew(&resp.tls_certificate)
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
