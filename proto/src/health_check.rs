//! A small `grpc.health.v1` client, for the `health` subcommand of both
//! binaries: container images built `FROM scratch` have no shell or curl, so
//! their healthchecks run the binary itself.

use std::process::ExitCode;
use std::time::Duration;
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How long a health check may take by default, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// Arguments of the `health` subcommand of both binaries.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// Address of the server, `host:port` or `http://host:port`.
    #[arg(value_name = "ADDR")]
    pub address: String,

    /// Service to ask about; "" (the default) is the whole server.
    #[arg(long, value_name = "NAME", default_value = "")]
    pub service: String,

    /// How long to wait for an answer, connection included.
    #[arg(long, value_name = "DURATION", default_value = "3s",
          value_parser = crate::parse_duration)]
    pub timeout: Duration,
}

impl HealthArgs {
    /// Runs the check for `program`: prints the status, exit 0 only if SERVING.
    pub async fn run(&self, program: &str) -> ExitCode {
        run_command(program, &self.address, &self.service, self.timeout).await
    }
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

/// Turns `host:port` into `http://host:port`; a URI with a scheme is kept.
pub fn address_uri(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

/// Calls `grpc.health.v1.Health/Check` for `service` on `address`
/// (`host:port` or a URI) and returns the reported status. The empty
/// service `""` is the server as a whole.
pub async fn check(
    address: &str,
    service: &str,
    timeout: Duration,
) -> Result<ServingStatus, HealthCheckError> {
    let uri = address_uri(address);
    let endpoint = Endpoint::from_shared(uri).map_err(|e| HealthCheckError::Address {
        address: address.to_string(),
        reason: e.to_string(),
    })?;
    let endpoint = endpoint.connect_timeout(timeout).timeout(timeout);
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
) -> ExitCode {
    match check(address, service, timeout).await {
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
        assert_eq!(address_uri("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(address_uri("relay:5000"), "http://relay:5000");
        assert_eq!(address_uri("http://node1:7000"), "http://node1:7000");
    }

    #[tokio::test]
    async fn a_closed_port_is_an_error_not_a_hang() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let result = check(&format!("127.0.0.1:{port}"), "", Duration::from_secs(2)).await;
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
        let overall = check(&address, "", DEFAULT_TIMEOUT).await;
        assert!(matches!(overall, Ok(ServingStatus::Serving)), "{overall:?}");
        let thing = check(&address, "test.v1.Thing", DEFAULT_TIMEOUT).await;
        assert!(matches!(thing, Ok(ServingStatus::NotServing)), "{thing:?}");
        let unknown = check(&address, "no.such.Service", DEFAULT_TIMEOUT).await;
        assert!(
            matches!(&unknown, Err(HealthCheckError::Rpc { status, .. }) if status.code() == tonic::Code::NotFound),
            "{unknown:?}"
        );
        server.abort();
    }
}
