//! relay-svc: the stable entry point of the migrating chat.
//!
//! It holds only soft state (registered nodes, their rooms and each room's
//! host record) that the nodes rebuild after a restart, and never carries
//! chat traffic. With `--store etcd` its durable part (the epoch counter,
//! the rooms' terms, the name bindings) lives in etcd and several
//! instances take turns leading (`leader`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod gate;
pub mod leader;
pub mod newcomers;
pub mod reach;
pub mod refusal;
pub mod registry;
pub mod service;
pub mod store;

pub use config::RelayConfig;

use chat_proto::pb::relay::relay_service_server::RelayServiceServer;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// How often the rooms' host leases are checked.
const LEASE_CHECK_PERIOD: Duration = Duration::from_millis(10);
/// How often silent members are looked for.
const REAP_PERIOD: Duration = Duration::from_millis(500);

/// Errors that stop the relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Binding or serving failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] chat_proto::serve::ReflectionError),
    /// The relay's key could not be read or created.
    #[error("relay key: {0}")]
    Key(#[from] std::io::Error),
    /// The TLS authority or the server certificate could not be set up.
    #[error("TLS: {0}")]
    Tls(#[from] chat_proto::tls::TlsError),
}

/// Serves the relay on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: RelayConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RelayError> {
    chat_proto::tls::init();
    if let config::StoreSpec::Etcd(endpoints) = config.store.clone() {
        return leader::run(listener, config, endpoints, shutdown).await;
    }
    let key = config.load_key()?;
    tracing::info!(key = %chat_proto::trust::hex(&key.public_key()), "relay key");
    let authority = config.load_authority()?;
    let tls = match &authority {
        Some(authority) => {
            let credentials = config.server_credentials(authority)?;
            Some(chat_proto::tls::server_config(&credentials, None)?)
        }
        None => {
            warn_if_exposed(&listener);
            None
        }
    };
    let shared = service::Shared::new(config, key, authority);
    let mut routes = tonic::service::RoutesBuilder::default();
    let health = chat_proto::serve::add_inspection(&mut routes, &["relay.v1.RelayService"])?;
    health
        .set_serving::<RelayServiceServer<service::Relay>>()
        .await;
    routes.add_service(RelayServiceServer::new(service::Relay(shared.clone())));
    let liveness = tokio::spawn(watch_liveness(shared.clone()));
    let checks = tokio::spawn(reach::check_members(shared.clone()));
    // On shutdown: promote nobody any more (members cannot reach a relay
    // that is going away) and end the members' watch streams, which would
    // otherwise hold the graceful stop open for ever.
    let stopping = async move {
        shutdown.await;
        liveness.abort();
        checks.abort();
        shared.close_watches();
    };
    let router = tonic::transport::Server::builder().add_routes(routes.routes());
    chat_proto::serve::serve_router(router, listener, tls, stopping).await?;
    Ok(())
}

/// Plaintext is for one machine: say so when other machines can reach us.
fn warn_if_exposed(listener: &TcpListener) {
    if listener.local_addr().is_ok_and(|a| !a.ip().is_loopback()) {
        tracing::warn!(
            "serving plaintext (--plaintext) on a non-loopback address: \
             anyone on the path can read what nodes send the relay"
        );
    }
}

/// Promotes a new host when a lease runs out; forgets silent members.
pub(crate) async fn watch_liveness(shared: std::sync::Arc<service::Shared>) {
    let mut lease = tokio::time::interval(LEASE_CHECK_PERIOD);
    let mut reap = tokio::time::interval(REAP_PERIOD);
    loop {
        tokio::select! {
            _ = lease.tick() => shared.check_lease(),
            _ = reap.tick() => shared.reap(),
        }
    }
}
