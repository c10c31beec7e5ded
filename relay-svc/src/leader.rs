//! A replicated relay (`--store etcd`), stage 1: every instance serves
//! the same port layout and campaigns for one etcd lease-backed leader
//! key. The leader restores the registry from etcd at takeover (as a
//! restarted relay does from its data directory: the epoch counter and
//! the name bindings; the nodes then register again and re-assert their
//! terms) and writes every durable change through to etcd, fenced by its
//! leader key, before answering. Standbys refuse every call with
//! UNAVAILABLE and keep campaigning. A leader that cannot renew its
//! lease in time, or cannot commit, stops answering at once.

use crate::config::RelayConfig;
use crate::gate::{Gate, Role};
use crate::service::Shared;
use crate::store::etcd::{self, Campaign, EtcdStore, Keys, Leadership};
use crate::store::StoreError;
use crate::RelayError;
use chat_proto::pb::relay::relay_service_server::RelayServiceServer;
use chat_proto::serve::HealthReporter;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Longest wait between two looks at the leader key while standing by.
const MAX_POLL: Duration = Duration::from_millis(500);

/// What the campaign needs.
struct Instance {
    config: RelayConfig,
    endpoints: Vec<String>,
    keys: Keys,
    role: watch::Sender<Role>,
    health: HealthReporter,
}

/// Serves a replicated relay instance on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    config: RelayConfig,
    endpoints: Vec<String>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RelayError> {
    // An instance without the shared keys never serves.
    let key = config.load_key()?;
    tracing::info!(key = %chat_proto::trust::hex(&key.public_key()), "relay key");
    let authority = config.load_authority()?;
    let tls = match &authority {
        Some(authority) => {
            let credentials = config.server_credentials(authority)?;
            Some(chat_proto::tls::server_config(&credentials, None)?)
        }
        None => None,
    };
    let (role, role_rx) = watch::channel(Role::Standby(None));
    let mut routes = tonic::service::RoutesBuilder::default();
    let health = chat_proto::serve::add_inspection(&mut routes, &["relay.v1.RelayService"])?;
    health.set_not_serving::<RelayServiceServer<Gate>>().await;
    routes.add_service(RelayServiceServer::new(Gate(role_rx)));
    let instance = Instance {
        keys: Keys::new(&config.etcd_prefix),
        config,
        endpoints,
        role,
        health,
    };
    let stop = CancellationToken::new();
    let campaign = tokio::spawn(campaign_for_ever(instance, stop.clone()));
    let router = tonic::transport::Server::builder().add_routes(routes.routes());
    let stopping = {
        let stop = stop.clone();
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stop.cancelled() => {}
            }
            stop.cancel();
            // Resign before the port closes: a standby takes over at once.
            let _ = campaign.await;
        }
    };
    chat_proto::serve::serve_router(router, listener, tls, stopping).await?;
    Ok(())
}

/// Campaigns until `stop`: leads whenever it wins, stands by otherwise.
async fn campaign_for_ever(instance: Instance, stop: CancellationToken) {
    let me = instance.config.advertised();
    let ttl = instance.config.etcd_lease.max(Duration::from_secs(2));
    let poll = (ttl / 4).min(MAX_POLL);
    let mut client = None;
    while !stop.is_cancelled() {
        if client.is_none() {
            let connected = tokio::select! {
                c = etcd::connect(&instance.endpoints) => c,
                _ = stop.cancelled() => return,
            };
            match connected {
                Ok(c) => client = Some(c),
                Err(e) => tracing::warn!(error = %e, "cannot reach etcd; retrying"),
            }
        }
        if let Some(c) = &client {
            let attempt = tokio::select! {
                a = etcd::campaign(c, &instance.keys, &me, ttl) => a,
                _ = stop.cancelled() => return,
            };
            match attempt {
                Ok(Campaign::Won(leadership)) => {
                    lead(&instance, c, leadership, &stop).await;
                    continue;
                }
                Ok(Campaign::Lost(leader)) => {
                    instance.role.send_if_modified(|role| match role {
                        Role::Standby(known) if known.as_deref() == Some(leader.as_str()) => false,
                        _ => {
                            tracing::info!(%leader, "standing by");
                            *role = Role::Standby(Some(leader));
                            true
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "campaign failed; retrying");
                    instance.role.send_replace(Role::Standby(None));
                    client = None;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Leads under `leadership` until it ends (or `stop`), then resigns.
async fn lead(
    instance: &Instance,
    client: &etcd_client::Client,
    won: Leadership,
    stop: &CancellationToken,
) {
    let why = match take_over(instance, client, won).await {
        Ok(shared) => {
            let liveness = tokio::spawn(crate::watch_liveness(shared.clone()));
            let checks = tokio::spawn(crate::reach::check_members(shared.clone()));
            instance.role.send_replace(Role::Leader(shared.clone()));
            instance
                .health
                .set_serving::<RelayServiceServer<Gate>>()
                .await;
            let why = tokio::select! {
                e = etcd::keep_leading(client, won) => e,
                e = shared.commit_changes() => e,
                _ = stop.cancelled() => StoreError::Fenced,
            };
            // Stop answering first, then everything else.
            instance.role.send_replace(Role::Standby(None));
            shared.fence();
            liveness.abort();
            checks.abort();
            instance
                .health
                .set_not_serving::<RelayServiceServer<Gate>>()
                .await;
            why
        }
        Err(e) => e,
    };
    etcd::resign(client, won).await;
    if stop.is_cancelled() {
        tracing::info!("stopped leading: the relay stops");
    } else {
        tracing::warn!(error = %why, "stopped leading");
    }
}

/// Reads the durable state back and builds the registry on it.
async fn take_over(
    instance: &Instance,
    client: &etcd_client::Client,
    won: Leadership,
) -> Result<Arc<Shared>, StoreError> {
    let store = EtcdStore::new(client.clone(), instance.keys.clone(), won.revision);
    let snapshot = store.load().await?;
    let config = &instance.config;
    let key = config
        .load_key()
        .map_err(|e| StoreError::Corrupt(format!("the relay key: {e}")))?;
    let authority = config
        .load_authority()
        .map_err(|e| StoreError::Corrupt(format!("the authority: {e}")))?;
    tracing::info!(
        epoch = snapshot.highest_epoch,
        names = snapshot.names.len(),
        rooms = snapshot.terms.len(),
        "leading: state restored from etcd"
    );
    Ok(Shared::with_store(
        config.clone(),
        key,
        authority,
        snapshot,
        Arc::new(store),
    ))
}
