//! The four systems under test, behind one small interface: start the
//! server side, attach subscribers and publishers, stop.

pub mod nats;
pub mod ours;
pub mod ours_proc;
pub mod ours_thin;
pub mod redis_pubsub;
pub mod tonic_bare;
pub mod tonic_signed;

use crate::children::{find_program, free_port, Server};
use crate::stats::{Phase, Probe, Progress};
use crate::Result;
use chat_node::Node;
use ours::{OursCluster, OursPublisher};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Migration interval for scenarios that switch migration off.
pub const NO_MIGRATION: Duration = Duration::from_secs(3600);
/// The relay's default host lease.
pub const DEFAULT_LEASE: Duration = Duration::from_millis(500);

/// Which system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SystemKind {
    /// The migrating chat.
    Ours,
    /// The bare tonic broadcast server.
    Tonic,
    /// The bare tonic broadcast server, every message signed by its
    /// publisher and checked by every subscriber as the chat does.
    #[serde(rename = "tonic-signed")]
    TonicSigned,
    /// NATS core pub/sub.
    Nats,
    /// Redis pub/sub.
    Redis,
}

impl SystemKind {
    /// Every system, in the order runs alternate.
    pub const ALL: [SystemKind; 5] = [
        SystemKind::Ours,
        SystemKind::Tonic,
        SystemKind::TonicSigned,
        SystemKind::Nats,
        SystemKind::Redis,
    ];

    /// Name for tables.
    pub fn label(self) -> &'static str {
        match self {
            SystemKind::Ours => "ours",
            SystemKind::Tonic => "bare tonic",
            SystemKind::TonicSigned => "bare tonic signed",
            SystemKind::Nats => "NATS",
            SystemKind::Redis => "Redis pub/sub",
        }
    }

    /// The external server program a peer needs, if any.
    pub fn program(self) -> Option<&'static str> {
        match self {
            SystemKind::Nats => Some("nats-server"),
            SystemKind::Redis => Some("redis-server"),
            _ => None,
        }
    }
}

/// The full path of a peer's server program, or its bare name.
fn program(kind: SystemKind) -> String {
    let name = kind.program().unwrap_or_default();
    find_program(name).map_or(name.to_string(), |p| p.display().to_string())
}

enum ServerSide {
    Ours(OursCluster),
    Single(Server),
}

/// A running server side.
pub struct Deployment {
    /// Which system.
    pub kind: SystemKind,
    side: ServerSide,
}

/// What kind of subscriber ours attaches (the other systems have one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    /// A full node in this process.
    InProcess,
    /// A thin subscriber in this process ([`ours_thin`]).
    Thin,
    /// A full node in a process of its own ([`ours_proc`]): a member that
    /// checks what it shows on its own CPU.
    Member,
}

/// One attached subscriber.
pub struct Subscription {
    /// Its delivery count, for publisher flow control.
    pub progress: Arc<Progress>,
    /// Its process, when it runs in one of its own.
    pub pid: Option<u32>,
    task: JoinHandle<Probe>,
    cancel: CancellationToken,
    node: Option<Node>,
}

/// A publisher of any system.
pub enum Publisher {
    /// Through our client library.
    Ours(Box<OursPublisher>),
    /// A bare tonic session.
    Tonic(tonic_bare::TonicPublisher),
    /// A bare tonic session that signs.
    TonicSigned(Box<tonic_signed::SignedPublisher>),
    /// A NATS connection.
    Nats(nats::NatsPublisher),
    /// A Redis connection.
    Redis(redis_pubsub::RedisPublisher),
}

impl Publisher {
    /// Sends one payload.
    pub async fn publish(&mut self, payload: String) -> Result<()> {
        match self {
            Publisher::Ours(p) => p.publish(payload).await,
            Publisher::Tonic(p) => p.publish(payload).await,
            Publisher::TonicSigned(p) => p.publish(payload).await,
            Publisher::Nats(p) => p.publish(payload).await,
            Publisher::Redis(p) => p.publish(payload).await,
        }
    }

    /// Flushes and closes.
    pub async fn close(self) {
        match self {
            Publisher::Ours(p) => p.close().await,
            Publisher::Tonic(p) => p.close().await,
            Publisher::TonicSigned(p) => p.close().await,
            Publisher::Nats(p) => p.close().await,
            Publisher::Redis(p) => p.close().await,
        }
    }
}

impl Deployment {
    /// Starts the server side: for ours a relay (migration off) with a
    /// host node `h0` and a standby node `h1` (its successor), each a
    /// process; for the others one server process.
    pub async fn start(kind: SystemKind) -> Result<Deployment> {
        let side = match kind {
            SystemKind::Ours => {
                let names = ["h0".to_string(), "h1".to_string()];
                ServerSide::Ours(OursCluster::start(NO_MIGRATION, DEFAULT_LEASE, &names).await?)
            }
            SystemKind::Tonic | SystemKind::TonicSigned => ServerSide::Single(
                Server::spawn_self("bare tonic server", &["tonic-server"]).await?,
            ),
            SystemKind::Nats => {
                let port = free_port()?.to_string();
                let addr = format!("127.0.0.1:{port}");
                let args = ["-a", "127.0.0.1", "-p", &port];
                ServerSide::Single(
                    Server::spawn_external("nats-server", &program(kind), &args, &addr).await?,
                )
            }
            SystemKind::Redis => {
                let port = free_port()?.to_string();
                let addr = format!("127.0.0.1:{port}");
                let args = [
                    "--port",
                    &port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ];
                ServerSide::Single(
                    Server::spawn_external("redis-server", &program(kind), &args, &addr).await?,
                )
            }
        };
        Ok(Deployment { kind, side })
    }

    /// Every server-side process (for ours: relay, host and standby).
    pub fn pids(&self) -> Vec<u32> {
        match &self.side {
            ServerSide::Ours(c) => c.pids(),
            ServerSide::Single(s) => vec![s.pid],
        }
    }

    /// The process the clients' sessions live in at the start (for ours:
    /// the first host, `h0`).
    pub fn main_pid(&self) -> u32 {
        match &self.side {
            ServerSide::Ours(c) => c.nodes.first().map_or(c.relay.pid, |(_, s)| s.pid),
            ServerSide::Single(s) => s.pid,
        }
    }

    /// For ours, the current host epoch and the process hosting (if it is
    /// one of the node processes); for the others, `(0, server pid)`.
    pub async fn serving(&self) -> Result<(u64, Option<u32>)> {
        match &self.side {
            ServerSide::Ours(c) => {
                let host = ours::current_host(&c.uri).await?;
                let pid = c
                    .nodes
                    .iter()
                    .find(|(n, _)| *n == host.name)
                    .map(|(_, s)| s.pid);
                Ok((host.epoch, pid))
            }
            ServerSide::Single(s) => Ok((0, Some(s.pid))),
        }
    }

    /// Attaches subscriber number `index`, ready once this returns; for
    /// ours, of the kind `how`.
    pub async fn subscribe(
        &self,
        index: usize,
        phase: &Arc<Phase>,
        how: Receiver,
    ) -> Result<Subscription> {
        let probe = Probe::new(phase.clone());
        let progress = probe.progress.clone();
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let mut pid = None;
        let (task, node) = match &self.side {
            ServerSide::Ours(cluster) if how == Receiver::Member => {
                let name = format!("m-{index:04}");
                let (p, task) =
                    ours_proc::subscribe(&cluster.uri, &name, probe, phase.clone(), c).await?;
                pid = Some(p);
                (task, None)
            }
            ServerSide::Ours(cluster) if how == Receiver::Thin => {
                let name = format!("t-{index:04}");
                (
                    ours_thin::subscribe(&cluster.uri, &name, probe, c).await?,
                    None,
                )
            }
            ServerSide::Ours(cluster) => {
                let name = format!("u-{index:04}");
                let (node, task) = ours::subscribe(&cluster.uri, &name, probe, c).await?;
                (task, Some(node))
            }
            ServerSide::Single(s) => match self.kind {
                SystemKind::Nats => (nats::subscribe(&s.addr, probe, c).await?, None),
                SystemKind::Redis => (redis_pubsub::subscribe(&s.addr, probe, c).await?, None),
                SystemKind::TonicSigned => {
                    (tonic_signed::subscribe(&s.addr, probe, c).await?, None)
                }
                _ => (tonic_bare::subscribe(&s.addr, probe, c).await?, None),
            },
        };
        Ok(Subscription {
            progress,
            pid,
            task,
            cancel,
            node,
        })
    }

    /// Attaches publisher number `index`.
    pub async fn publisher(&self, index: usize) -> Result<Publisher> {
        Ok(match &self.side {
            ServerSide::Ours(cluster) => {
                let name = format!("p-{index:04}");
                Publisher::Ours(Box::new(OursPublisher::join(&cluster.uri, &name).await?))
            }
            ServerSide::Single(s) => match self.kind {
                SystemKind::Nats => Publisher::Nats(nats::NatsPublisher::connect(&s.addr).await?),
                SystemKind::Redis => {
                    Publisher::Redis(redis_pubsub::RedisPublisher::connect(&s.addr).await?)
                }
                SystemKind::TonicSigned => Publisher::TonicSigned(Box::new(
                    tonic_signed::SignedPublisher::connect(&s.addr, index as u32).await?,
                )),
                _ => Publisher::Tonic(tonic_bare::TonicPublisher::connect(&s.addr).await?),
            },
        })
    }

    /// Stops the server side.
    pub async fn stop(self) {
        match self.side {
            ServerSide::Ours(c) => c.stop().await,
            ServerSide::Single(s) => s.stop().await,
        }
    }
}

/// Stops every subscriber and returns their probes.
pub async fn finish_all(subs: Vec<Subscription>) -> Vec<Probe> {
    let mut nodes = Vec::new();
    let mut tasks = Vec::new();
    for sub in subs {
        sub.cancel.cancel();
        tasks.push(sub.task);
        nodes.extend(sub.node);
    }
    let probes = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .filter_map(|r| r.ok())
        .collect();
    ours::stop_nodes(nodes).await;
    probes
}
