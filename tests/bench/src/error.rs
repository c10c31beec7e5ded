//! Why a benchmark step failed.

use thiserror::Error;

/// Anything that stops a scenario.
#[derive(Debug, Error)]
pub enum BenchError {
    /// A local I/O call (process, socket, file) failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A gRPC call failed.
    #[error("grpc: {0}")]
    Status(#[from] tonic::Status),
    /// A gRPC connection failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A chat node could not start.
    #[error("chat-node: {0}")]
    Node(#[from] chat_node::StartError),
    /// The NATS client failed.
    #[error("nats: {0}")]
    Nats(String),
    /// The Redis client failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Results could not be written as JSON.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A plot could not be drawn.
    #[error("plot: {0}")]
    Plot(String),
    /// A required program is missing (a peer server).
    #[error("{0}")]
    Missing(String),
    /// Something the benchmark set up did not come up as expected.
    #[error("{0}")]
    Setup(String),
    /// A wait ran out of time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Awaits `fut` for at most `limit`, naming `what` on timeout.
pub async fn within<T>(
    limit: std::time::Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| BenchError::Timeout(what.to_string()))?
}
