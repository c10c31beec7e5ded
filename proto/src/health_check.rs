//! A small `grpc.health.v1` client: the `health` subcommand of both
//! binaries (container images built `FROM scratch` have no shell or curl,
//! so their healthchecks run the binary itself) and the relay's checks of
//! members' addresses.

use std::process::ExitCode;
use std::time::Duration;
use tonic::transport::Endpoint;
pub use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How long a health check may take by default, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// How a health check verifies a TLS server.
#[derive(Debug, Clone, Default)]
pub struct TlsCheck {
    /// The authority to trust, PEM.
    pub ca_pem: String,
    /// The name the server's certificate must carry (default: the
    /// address's host).
    pub server_name: Option<String>,
}

/// Why a health check got no status.
#[derive(Debug, thiserror::Error)]
pub enum HealthCheckError {
    /// The address is not a valid `host:port` or URI.
    #[error("invalid address {address}: {reason}")]
    Address {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection could be made.
    #[error("cannot connect to {address}: {reason}")]
    Connect {
        /// The address dialed.
        address: String,
        /// The transport error and its causes.
        reason: String,
    },
    /// The server answered the call with an error status (e.g. `NOT_FOUND`
    /// for a service it does not know).
    #[error("{address}: {}: {}", .status.code(), .status.message())]
    Rpc {
        /// The address dialed.
        address: String,
        /// The status received.
        status: tonic::Status,
    },
    /// No answer in time.
    #[error("{address}: no answer within {timeout:?}")]
    Timeout {
        /// The address dialed.
        address: String,
        /// The time allowed.
        timeout: Duration,
    },
}

/// An error and its chain of causes, `outer: inner: ...` (a transport
/// error alone says little more than "transport error").
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut cause = error.source();
    while let Some(e) = cause {
        let part = e.to_string();
        // Layers often repeat their inner error's words; say them once.
        if parts.last() != Some(&part) {
            parts.push(part);
        }
        cause = e.source();
    }
    parts.join(": ")
}

/// Turns `host:port` into `http://host:port` (`https://` when `tls`); a
/// URI with a scheme is kept.
pub fn address_uri(address: &str, tls: bool) -> String {
    match (address.contains("://"), tls) {
        (true, _) => address.to_string(),
        (false, false) => format!("http://{address}"),
        (false, true) => format!("https://{address}"),
    }
}

/// The endpoint to check: over TLS as `tls` says (an `https://` address
/// needs it), plaintext otherwise.
fn endpoint(address: &str, tls: Option<&TlsCheck>) -> Result<Endpoint, HealthCheckError> {
    let bad = |reason: String| HealthCheckError::Address {
        address: address.to_string(),
        reason,
    };
    let uri = address_uri(address, tls.is_some());
    let endpoint = Endpoint::from_shared(uri.clone()).map_err(|e| bad(e.to_string()))?;
    match (uri.starts_with("https://"), tls) {
        (true, Some(tls)) => {
            let name = tls.server_name.as_deref();
            endpoint
                .tls_config(crate::tls::client_config(&tls.ca_pem, name, None))
                .map_err(|e| bad(with_causes(&e)))
        }
        (true, None) => Err(bad("an https:// address needs --ca FILE".into())),
        (false, Some(_)) => Err(bad("--ca needs an https:// address".into())),
        (false, None) => Ok(endpoint),
    }
}

/// Calls `grpc.health.v1.Health/Check` for `service` on `address`
/// (`host:port` or a URI) and returns the reported status. The empty
/// service `""` is the server as a whole. With `tls` the check runs over
/// TLS.
pub async fn check(
    address: &str,
    service: &str,
    timeout: Duration,
    tls: Option<&TlsCheck>,
) -> Result<ServingStatus, HealthCheckError> {
    let endpoint = endpoint(address, tls)?
        .connect_timeout(timeout)
        .timeout(timeout);
    let call = async {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| HealthCheckError::Connect {
                address: address.to_string(),
                reason: with_causes(&e),
            })?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .map_err(|status| HealthCheckError::Rpc {
                address: address.to_string(),
                status,
            })?;
        Ok(ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown))
    };
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(HealthCheckError::Timeout {
                address: address.to_string(),
                timeout,
            })
        })
}

/// Runs a health check as a command: prints the status (e.g. `SERVING`) on
/// stdout, or the error on stderr prefixed by `program`, and exits with
/// success only when the status is `SERVING`.
pub async fn run_command(
    program: &str,
    address: &str,
    service: &str,
    timeout: Duration,
    tls: Option<&TlsCheck>,
) -> ExitCode {
    match check(address, service, timeout, tls).await {
        Ok(status) => {
            println!("{}", status.as_str_name());
            if status == ServingStatus::Serving {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{program}: health check failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_get_the_http_scheme() {
        assert_eq!(
            address_uri("127.0.0.1:5000", false),
            "http://127.0.0.1:5000"
        );
        assert_eq!(address_uri("relay:5000", false), "http://relay:5000");
        assert_eq!(address_uri("relay:5000", true), "https://relay:5000");
        assert_eq!(address_uri("http://node1:7000", true), "http://node1:7000");
    }

    #[tokio::test]
    async fn a_closed_port_is_an_error_not_a_hang() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let result = check(
            &format!("127.0.0.1:{port}"),
            "",
            Duration::from_secs(2),
            None,
        )
        .await;
        assert!(
            matches!(result, Err(HealthCheckError::Connect { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn serving_and_not_serving_are_reported() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("local address").to_string();
        let mut routes = tonic::service::RoutesBuilder::default();
        let reporter = crate::serve::add_inspection(&mut routes, &["test.v1.Thing"])
            .expect("inspection services");
        reporter
            .set_service_status("test.v1.Thing", crate::serve::ServingStatus::NotServing)
            .await;
        let server = tonic::transport::Server::builder()
            .add_routes(routes.routes())
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        let server = tokio::spawn(server);
        let overall = check(&address, "", DEFAULT_TIMEOUT, None).await;
        assert!(matches!(overall, Ok(ServingStatus::Serving)), "{overall:?}");
        let thing = check(&address, "test.v1.Thing", DEFAULT_TIMEOUT, None).await;
        assert!(matches!(thing, Ok(ServingStatus::NotServing)), "{thing:?}");
        let unknown = check(&address, "no.such.Service", DEFAULT_TIMEOUT, None).await;
        assert!(
            matches!(&unknown, Err(HealthCheckError::Rpc { status, .. }) if status.code() == tonic::Code::NotFound),
            "{unknown:?}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_tls_server_is_checked_with_its_authority_and_refuses_plaintext() {
        let ca = crate::tls::Authority::ephemeral().expect("authority");
        let identity = ca.issue_server(&[]).expect("server certificate");
        let tls = crate::tls::server_config(&identity, None).expect("TLS config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let mut routes = tonic::service::RoutesBuilder::default();
        crate::serve::add_inspection(&mut routes, &[]).expect("inspection services");
        let router = tonic::transport::Server::builder().add_routes(routes.routes());
        let server = tokio::spawn(crate::serve::serve_router(
            router,
            listener,
            Some(tls),
            std::future::pending(),
        ));
        let tls = TlsCheck {
            ca_pem: ca.certificate_pem(),
            server_name: None,
        };
        let address = format!("127.0.0.1:{port}");
        let overall = check(&address, "", DEFAULT_TIMEOUT, Some(&tls)).await;
        assert!(matches!(overall, Ok(ServingStatus::Serving)), "{overall:?}");
        // Plaintext gets an error at once, not a hang until its deadline.
        let plain = tokio::time::timeout(
            Duration::from_secs(3),
            check(&address, "", Duration::from_secs(10), None),
        )
        .await
        .expect("plaintext against TLS fails at once, not at its 10 s deadline");
        assert!(plain.is_err(), "{plain:?}");
        let https_without_ca =
            check(&format!("https://{address}"), "", DEFAULT_TIMEOUT, None).await;
        assert!(
            matches!(&https_without_ca, Err(HealthCheckError::Address { reason, .. }) if reason.contains("--ca")),
            "{https_without_ca:?}"
        );
        server.abort();
    }
}
