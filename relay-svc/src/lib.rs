//! relay-svc: the stable entry point of the migrating chat.
//!
//! It holds only soft state (registered nodes and the host record) that the
//! nodes rebuild after a restart, and never carries chat traffic.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod registry;
pub mod service;

pub use config::RelayConfig;

use chat_proto::pb::relay::relay_service_server::RelayServiceServer;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

/// How often the host lease is checked.
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
}

/// Serves the relay on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: RelayConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RelayError> {
    let key = config.load_key()?;
    tracing::info!(key = %chat_proto::trust::hex(&key.public_key()), "relay key");
    let shared = service::Shared::new(config, key);
    let mut routes = tonic::service::RoutesBuilder::default();
    let health = chat_proto::serve::add_inspection(&mut routes, &["relay.v1.RelayService"])?;
    health
        .set_serving::<RelayServiceServer<service::Relay>>()
        .await;
    routes.add_service(RelayServiceServer::new(service::Relay(shared.clone())));
    let liveness = tokio::spawn(watch_liveness(shared.clone()));
    // On shutdown: promote nobody any more (members cannot reach a relay
    // that is going away) and end the members' watch streams, which would
    // otherwise hold the graceful stop open for ever.
    let stopping = async move {
        shutdown.await;
        liveness.abort();
        shared.close_watches();
    };
    tonic::transport::Server::builder()
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            stopping,
        )
        .await?;
    Ok(())
}

/// Promotes a new host when a lease runs out; forgets silent members.
async fn watch_liveness(shared: std::sync::Arc<service::Shared>) {
    let mut lease = tokio::time::interval(LEASE_CHECK_PERIOD);
    let mut reap = tokio::time::interval(REAP_PERIOD);
    loop {
        tokio::select! {
            _ = lease.tick() => shared.check_lease(),
            _ = reap.tick() => shared.reap(),
        }
    }
}
