//! The inspection services every server carries: `grpc.health.v1` and gRPC
//! reflection, both v1 and v1alpha (older grpcurl builds ask for v1alpha).

use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;

/// Health reporter handle, to flip a service between SERVING and NOT_SERVING.
pub use tonic_health::server::HealthReporter;
pub use tonic_health::ServingStatus;

/// The inspection services every server advertises.
const INSPECTION_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Adds health and both reflection versions to `routes`, advertising
/// `services` (plus health and reflection themselves); returns the health
/// reporter so the caller can set each service's status.
pub fn add_inspection(
    routes: &mut RoutesBuilder,
    services: &[&str],
) -> Result<HealthReporter, tonic_reflection::server::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    routes.add_service(health);
    let builder = || {
        services.iter().chain(INSPECTION_SERVICES.iter()).fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
            |b, name| b.with_service_name(*name),
        )
    };
    routes.add_service(builder().build_v1()?);
    routes.add_service(builder().build_v1alpha()?);
    Ok(reporter)
}

/// Serves `router` on `listener` until `shutdown` completes: over TLS
/// under `tls` (see [`crate::tls::incoming`]), else in plaintext.
pub async fn serve_router(
    router: tonic::transport::server::Router,
    listener: tokio::net::TcpListener,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    match tls {
        Some(config) => {
            let incoming = crate::tls::incoming(listener, config);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    }
}

/// Error building the reflection service.
pub use tonic_reflection::server::Error as ReflectionError;
