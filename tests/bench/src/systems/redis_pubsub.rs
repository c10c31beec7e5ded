//! Redis pub/sub (`redis-server` from Debian's packages) through the
//! `redis` crate with tokio; one connection per client. The publisher
//! pipelines up to [`IN_FLIGHT`] PUBLISH commands on its connection, as a
//! throughput-minded Redis client would.

use crate::stats::Probe;
use crate::{BenchError, Result};
use redis::AsyncCommands;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

/// The channel every benchmark message goes to.
const CHANNEL: &str = "bench";
/// PUBLISH commands a publisher keeps in flight.
const IN_FLIGHT: usize = 64;

fn client(addr: &str) -> Result<redis::Client> {
    Ok(redis::Client::open(format!("redis://{addr}/"))?)
}

/// Subscribes (own connection); returns once the server confirmed.
pub async fn subscribe(
    addr: &str,
    mut probe: Probe,
    cancel: CancellationToken,
) -> Result<JoinHandle<Probe>> {
    let mut pubsub = client(addr)?.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    Ok(tokio::spawn(async move {
        let mut messages = pubsub.into_on_message();
        loop {
            tokio::select! {
                m = messages.next() => match m {
                    Some(m) => probe.on_payload(m.get_payload_bytes()),
                    None => break,
                },
                _ = cancel.cancelled() => break,
            }
        }
        probe
    }))
}

/// A pipelining publisher.
pub struct RedisPublisher {
    conn: redis::aio::MultiplexedConnection,
    in_flight: Arc<Semaphore>,
    /// PUBLISH commands that failed.
    pub errors: Arc<AtomicU64>,
}

impl RedisPublisher {
    /// Connects.
    pub async fn connect(addr: &str) -> Result<Self> {
        let conn = client(addr)?.get_multiplexed_async_connection().await?;
        Ok(RedisPublisher {
            conn,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            errors: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Sends one PUBLISH once fewer than [`IN_FLIGHT`] are unanswered.
    pub async fn publish(&mut self, payload: String) -> Result<()> {
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BenchError::Setup("publisher closed".into()))?;
        let mut conn = self.conn.clone();
        let errors = self.errors.clone();
        tokio::spawn(async move {
            let sent: redis::RedisResult<i64> = conn.publish(CHANNEL, payload).await;
            if sent.is_err() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
        Ok(())
    }

    /// Waits for every PUBLISH in flight.
    pub async fn close(self) {
        let _ = self.in_flight.acquire_many(IN_FLIGHT as u32).await;
    }
}
