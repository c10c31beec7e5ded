//! NATS core pub/sub (`nats-server` from Debian's packages) through the
//! `async-nats` client; one connection per client.

use crate::stats::Probe;
use crate::{BenchError, Result};
use prost::bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

/// The subject every benchmark message goes to.
const SUBJECT: &str = "bench";

fn nats_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Nats(e.to_string())
}

/// Subscribes (own connection); returns once the server has the
/// subscription.
pub async fn subscribe(
    addr: &str,
    mut probe: Probe,
    cancel: CancellationToken,
) -> Result<JoinHandle<Probe>> {
    let client = async_nats::connect(addr).await.map_err(nats_err)?;
    let mut sub = client.subscribe(SUBJECT).await.map_err(nats_err)?;
    client.flush().await.map_err(nats_err)?;
    Ok(tokio::spawn(async move {
        let _client = client;
        loop {
            tokio::select! {
                m = sub.next() => match m {
                    Some(m) => probe.on_payload(&m.payload),
                    None => break,
                },
                _ = cancel.cancelled() => break,
            }
        }
        probe
    }))
}

/// A publisher (own connection).
pub struct NatsPublisher {
    client: async_nats::Client,
}

impl NatsPublisher {
    /// Connects.
    pub async fn connect(addr: &str) -> Result<Self> {
        let client = async_nats::connect(addr).await.map_err(nats_err)?;
        Ok(NatsPublisher { client })
    }

    /// Publishes one payload (the client buffers and flushes on its own).
    pub async fn publish(&mut self, payload: String) -> Result<()> {
        self.client
            .publish(SUBJECT, Bytes::from(payload))
            .await
            .map_err(nats_err)
    }

    /// Flushes what is buffered.
    pub async fn close(self) {
        let _ = self.client.flush().await;
    }
}
