//! Our system: a relay process, member nodes that host (each in a process
//! of its own), and clients through the real client library
//! ([`chat_node::Node`], in this process).

use crate::children::{self, Server};
use crate::stats::Probe;
use crate::{within, BenchError, Result};
use chat_node::client::{ClientEvent, UserCommand};
use chat_node::{BoundNode, Node};
use chat_proto::pb::relay::relay_service_client::RelayServiceClient;
use chat_proto::pb::relay::{CurrentHostRequest, HostRecord};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a client may take to join and see the chat active.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Messages a publisher may have unacknowledged (the client refuses more
/// than [`chat_node::client::MAX_PENDING`]).
const PUBLISH_WINDOW: usize = 500;

/// The relay and the member nodes that run as processes of their own.
pub struct OursCluster {
    /// `http://` URI of the relay.
    pub uri: String,
    /// The relay process.
    pub relay: Server,
    /// Member node processes, by name, in start order (the first hosts).
    pub nodes: Vec<(String, Server)>,
}

impl OursCluster {
    /// Starts the relay (N = 1, so the chat is active at once) and one node
    /// process per name, in order: the first becomes host at epoch 1.
    pub async fn start(interval: Duration, lease: Duration, names: &[String]) -> Result<Self> {
        let interval = format!("{}ms", interval.as_millis());
        let lease = format!("{}ms", lease.as_millis());
        let relay = Server::spawn_self(
            "relay",
            &[
                "relay",
                "--migration-interval",
                &interval,
                "--lease",
                &lease,
            ],
        )
        .await?;
        let uri = format!("http://{}", relay.addr);
        let mut nodes = Vec::new();
        for name in names {
            let node = Server::spawn_self(
                &format!("node {name}"),
                &["node", "--relay", &uri, "--name", name],
            )
            .await?;
            nodes.push((name.clone(), node));
        }
        Ok(OursCluster { uri, relay, nodes })
    }

    /// Process ids of every server-side process.
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(self.relay.pid)
            .chain(self.nodes.iter().map(|(_, s)| s.pid))
            .collect()
    }

    /// The node process called `name`.
    pub fn node_mut(&mut self, name: &str) -> Option<&mut Server> {
        self.nodes
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    /// Stops every process.
    pub async fn stop(self) {
        let mut all: Vec<Server> = self.nodes.into_iter().map(|(_, s)| s).collect();
        all.push(self.relay);
        children::stop_all(all).await;
    }
}

/// The relay's current host record.
pub async fn current_host(uri: &str) -> Result<HostRecord> {
    let mut relay = RelayServiceClient::connect(uri.to_string()).await?;
    Ok(relay
        .current_host(CurrentHostRequest::default())
        .await?
        .into_inner())
}

/// Starts an in-process member node and waits until its chat is active.
pub async fn join(
    uri: &str,
    name: &str,
) -> Result<(Node, mpsc::Receiver<chat_node::client::RoomEvent>)> {
    within(JOIN_TIMEOUT, &format!("{name} to join"), async {
        let bound = BoundNode::bind(uri, "127.0.0.1:0".parse().expect("addr"), None).await?;
        let mut node = bound.join(name).await?;
        let mut events = node
            .take_events()
            .ok_or_else(|| BenchError::Setup("no event stream".into()))?;
        while let Some(chat_node::client::RoomEvent { event, .. }) = events.recv().await {
            if matches!(event, ClientEvent::Activated) {
                return Ok((node, events));
            }
        }
        Err(BenchError::Setup(format!("{name} stopped before joining")))
    })
    .await
}

/// Stops in-process nodes, concurrently.
pub async fn stop_nodes(nodes: Vec<Node>) {
    futures_util::future::join_all(nodes.into_iter().map(|mut n| async move { n.stop().await }))
        .await;
}

/// A subscriber through the real client library: every chat message the
/// node's client delivers goes to the probe.
pub async fn subscribe(
    uri: &str,
    name: &str,
    mut probe: Probe,
    cancel: CancellationToken,
) -> Result<(Node, JoinHandle<Probe>)> {
    let (node, mut events) = join(uri, name).await?;
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                event = events.recv() => match event.map(|e| e.event) {
                    Some(ClientEvent::Message { text, .. }) => probe.on_payload(text.as_bytes()),
                    Some(_) => {}
                    None => break,
                },
                _ = cancel.cancelled() => break,
            }
        }
        probe
    });
    Ok((node, task))
}

/// A publisher through the real client library, keeping at most
/// [`PUBLISH_WINDOW`] messages unacknowledged. Its node is a member, so it
/// also receives every message (its events are drained, not counted).
pub struct OursPublisher {
    node: Node,
    commands: mpsc::Sender<UserCommand>,
    window: Arc<Semaphore>,
    drain: JoinHandle<()>,
    /// Error events seen (refused messages, for instance).
    pub errors: Arc<AtomicU64>,
}

impl OursPublisher {
    /// Joins as member `name`.
    pub async fn join(uri: &str, name: &str) -> Result<Self> {
        let (node, mut events) = join(uri, name).await?;
        let window = Arc::new(Semaphore::new(PUBLISH_WINDOW));
        let errors = Arc::new(AtomicU64::new(0));
        let (w, e) = (window.clone(), errors.clone());
        let drain = tokio::spawn(async move {
            while let Some(chat_node::client::RoomEvent { event, .. }) = events.recv().await {
                match event {
                    ClientEvent::Ack { .. } => w.add_permits(1),
                    ClientEvent::Error { .. } => {
                        e.fetch_add(1, Ordering::Relaxed);
                        w.add_permits(1);
                    }
                    _ => {}
                }
            }
        });
        Ok(OursPublisher {
            commands: node.commands.clone(),
            node,
            window,
            drain,
            errors,
        })
    }

    /// Sends one message once the window allows.
    pub async fn publish(&mut self, text: String) -> Result<()> {
        let stopped = || BenchError::Setup("publisher node stopped".into());
        self.window.acquire().await.map_err(|_| stopped())?.forget();
        self.commands
            .send(UserCommand::Say(text))
            .await
            .map_err(|_| stopped())
    }

    /// Waits (a few seconds at most) until every message is acknowledged,
    /// then stops the node.
    pub async fn close(mut self) {
        let all = PUBLISH_WINDOW as u32;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.window.acquire_many(all)).await;
        self.node.stop().await;
        self.drain.abort();
    }
}
