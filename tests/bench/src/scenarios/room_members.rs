//! The members of scenario F: registered with keys of their own, each on a
//! connection of its own (as real nodes are) with its watch stream open
//! (the relay makes only live members host), all advertising the one
//! health server this process runs, so the relay's reachability checks
//! pass and rooms get hosts.

use crate::systems::ours_thin::register_and_watch;
use crate::{BenchError, Result};
use chat_proto::pb::relay::relay_service_client::RelayServiceClient;
use chat_proto::pb::relay::{HostRecord, LookupMemberRequest};
use chat_proto::serve::HealthReporter;
use chat_proto::trust::Keypair;
use futures_util::{StreamExt, TryStreamExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

/// A relay client on one member's own connection.
pub type RelayClient = RelayServiceClient<Channel>;

/// Calls under way at once while setting up.
pub const SETUP_IN_FLIGHT: usize = 32;
/// How long the relay may take to reach every member.
const REACH_LIMIT: Duration = Duration::from_secs(120);
/// How often reachability is asked again.
const POLL: Duration = Duration::from_millis(50);

/// One registered member.
pub struct Member {
    /// Its name.
    pub name: String,
    /// Its node id.
    pub node_id: String,
    /// Its session token.
    pub token: String,
    /// The relay, over the member's own connection.
    pub client: RelayClient,
}

/// Every member, with the tasks that keep their watch streams open (they
/// close when this is dropped).
pub struct Fleet {
    /// The members, in registration order.
    pub members: Arc<Vec<Member>>,
    /// Host records the watch streams delivered, all members together.
    pub records: Arc<AtomicU64>,
    /// Watch streams that ended.
    ended: Arc<AtomicU64>,
    watches: JoinSet<()>,
}

impl Fleet {
    /// Registers `count` members named `m0000`.. at the relay `uri`, each
    /// advertising `address`, and opens every watch stream.
    pub async fn register(uri: &str, address: &str, count: usize) -> Result<Fleet> {
        let registered: Vec<(Member, Streaming<HostRecord>)> = futures_util::stream::iter(0..count)
            .map(|i| register_one(uri, address, format!("m{i:04}")))
            .buffer_unordered(SETUP_IN_FLIGHT)
            .try_collect()
            .await?;
        let records = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(AtomicU64::new(0));
        let mut watches = JoinSet::new();
        let mut members = Vec::with_capacity(count);
        for (member, watch) in registered {
            watches.spawn(drain(watch, records.clone(), ended.clone()));
            members.push(member);
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Fleet {
            members: Arc::new(members),
            records,
            ended,
            watches,
        })
    }

    /// Waits until the relay's checks reached every member (a room gets
    /// its first host only once every member of it was checked).
    pub async fn wait_reachable(&self) -> Result<()> {
        let mut waiting: Vec<usize> = (0..self.members.len()).collect();
        let deadline = tokio::time::Instant::now() + REACH_LIMIT;
        while !waiting.is_empty() {
            let reached = futures_util::stream::iter(waiting.iter().copied())
                .map(|i| self.reachable(i))
                .buffered(SETUP_IN_FLIGHT)
                .try_collect::<Vec<bool>>()
                .await?;
            waiting = waiting
                .into_iter()
                .zip(reached)
                .filter_map(|(i, r)| (!r).then_some(i))
                .collect();
            if tokio::time::Instant::now() >= deadline {
                return Err(BenchError::Timeout(format!(
                    "the relay to reach {} more members",
                    waiting.len()
                )));
            }
            if !waiting.is_empty() {
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(())
    }

    /// Whether the relay reached member `i` at its last check.
    async fn reachable(&self, i: usize) -> Result<bool> {
        let member = &self.members[i];
        let record = member
            .client
            .clone()
            .lookup_member(LookupMemberRequest {
                name: member.name.clone(),
            })
            .await?
            .into_inner();
        Ok(record.reachable)
    }

    /// Watch streams that ended (the relay closed them) so far.
    pub fn watches_ended(&self) -> u64 {
        self.ended.load(Ordering::Relaxed)
    }

    /// Closes every watch stream.
    pub async fn close(mut self) {
        self.watches.abort_all();
        while self.watches.join_next().await.is_some() {}
    }
}

/// Registers one member with a new key on a connection of its own; the
/// member and its watch stream.
async fn register_one(
    uri: &str,
    address: &str,
    name: String,
) -> Result<(Member, Streaming<HostRecord>)> {
    let key = Keypair::generate();
    let channel = Endpoint::from_shared(uri.to_string())
        .map_err(|e| BenchError::Setup(e.to_string()))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut client = RelayServiceClient::new(channel);
    let (reg, watch) = register_and_watch(&mut client, &key, &name, address).await?;
    let member = Member {
        name,
        node_id: reg.node_id,
        token: reg.session_token,
        client,
    };
    Ok((member, watch))
}

/// Reads a watch stream until it ends, counting its records, then that
/// it ended.
async fn drain(mut watch: Streaming<HostRecord>, records: Arc<AtomicU64>, ended: Arc<AtomicU64>) {
    while let Ok(Some(_)) = watch.message().await {
        records.fetch_add(1, Ordering::Relaxed);
    }
    ended.fetch_add(1, Ordering::Relaxed);
}

/// The one `grpc.health.v1` server every member advertises.
pub struct HealthServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// Held so the statuses stay set.
    _reporter: HealthReporter,
}

impl HealthServer {
    /// Serves health (SERVING for the whole server) on 127.0.0.1:0.
    pub async fn start() -> Result<HealthServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut routes = tonic::service::RoutesBuilder::default();
        let reporter = chat_proto::serve::add_inspection(&mut routes, &[])
            .map_err(|e| BenchError::Setup(format!("health server: {e}")))?;
        let router = tonic::transport::Server::builder().add_routes(routes.routes());
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            let serving = chat_proto::serve::serve_router(router, listener, None, async move {
                shutdown.cancelled().await;
            });
            if let Err(e) = serving.await {
                eprintln!("chat-bench: health server: {e}");
            }
        });
        Ok(HealthServer {
            addr,
            stop,
            task,
            _reporter: reporter,
        })
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
