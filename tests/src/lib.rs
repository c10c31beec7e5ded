//! Harness for end-to-end tests: a relay and chat members, either in-process
//! (the same libraries the binaries run) or as real `relay-svc` and
//! `chat-node --mode json` processes. Both kinds of member expose the same
//! interface: send a line as a user would type it, wait for JSON events.
#![forbid(unsafe_code)]

pub mod chaos;
pub mod docker;
pub mod hostile;
pub mod member;
pub mod phases;
pub mod procs;
pub mod python;
pub mod tmux;

pub use member::Member;

use chat_node::dial::TransportOptions;
use chat_node::identity::NodeStore;
use chat_node::BoundNode;
use chat_proto::pb::relay::relay_service_client::RelayServiceClient;
use chat_proto::pb::relay::{CurrentHostRequest, HostRecord};
use relay_svc::RelayConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A relay running in this process.
pub struct Relay {
    /// Its address.
    pub addr: SocketAddr,
    /// Its certificate authority (PEM), when it serves TLS.
    ca_pem: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts a relay on 127.0.0.1:0.
    pub async fn start(min_users: u32, migration_interval: Duration) -> Relay {
        Self::start_at(
            "127.0.0.1:0".parse().expect("addr"),
            min_users,
            migration_interval,
        )
        .await
    }

    /// Starts a relay on `addr` (to restart one where it was), with an
    /// ephemeral key.
    pub async fn start_at(addr: SocketAddr, min_users: u32, migration_interval: Duration) -> Relay {
        let config = RelayConfig::for_tests(min_users, migration_interval);
        Self::start_with(addr, config).await
    }

    /// Starts a relay on `addr` whose key is kept in `data_dir` (restarting
    /// it with the same directory keeps the key nodes pinned).
    pub async fn start_in(
        addr: SocketAddr,
        data_dir: &Path,
        min_users: u32,
        migration_interval: Duration,
    ) -> Relay {
        let mut config = RelayConfig::for_tests(min_users, migration_interval);
        config.data_dir = Some(data_dir.to_path_buf());
        Self::start_with(addr, config).await
    }

    /// Starts a relay serving TLS on 127.0.0.1:0, its key and certificate
    /// authority kept in `data_dir`.
    pub async fn start_tls(data_dir: &Path, min_users: u32, migration_interval: Duration) -> Relay {
        let addr = "127.0.0.1:0".parse().expect("addr");
        Self::start_tls_at(addr, data_dir, min_users, migration_interval).await
    }

    /// Starts a relay serving TLS on `addr`, its key and certificate
    /// authority kept in `data_dir` (restarting it with the same directory
    /// keeps both).
    pub async fn start_tls_at(
        addr: SocketAddr,
        data_dir: &Path,
        min_users: u32,
        migration_interval: Duration,
    ) -> Relay {
        let config = RelayConfig::for_tls_tests(min_users, migration_interval, data_dir);
        Self::start_tls_with(addr, config).await
    }

    /// Starts a relay serving TLS on `addr` with `config`, whose data
    /// directory holds its key and certificate authority.
    pub async fn start_tls_with(addr: SocketAddr, config: RelayConfig) -> Relay {
        // The relay loads the same authority when it starts.
        let data_dir = config
            .data_dir
            .clone()
            .expect("a TLS test relay keeps a data directory");
        let authority = chat_proto::tls::Authority::load_or_create(&data_dir)
            .expect("the relay's certificate authority");
        let mut relay = Self::start_with(addr, config).await;
        relay.ca_pem = Some(authority.certificate_pem());
        relay
    }

    /// Starts a relay on `addr` with `config` (its URI is `http://`: for
    /// TLS, use [`Relay::start_tls`]).
    pub async fn start_with(addr: SocketAddr, config: RelayConfig) -> Relay {
        let listener = TcpListener::bind(addr).await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            relay_svc::run(listener, config, shutdown)
                .await
                .expect("relay runs");
        });
        Relay {
            addr,
            ca_pem: None,
            stop: Some(stop),
            task,
        }
    }

    /// URI of the relay: `https://` when it serves TLS, else `http://`.
    pub fn uri(&self) -> String {
        match self.ca_pem {
            Some(_) => format!("https://{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// The relay's certificate authority (PEM), when it serves TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// A client of the relay (over TLS when it serves TLS).
    pub fn client(&self) -> RelayServiceClient<Channel> {
        RelayServiceClient::new(relay_channel(&self.uri(), self.ca_pem()))
    }

    /// Polls the relay until its host record satisfies `pred`; returns it.
    pub async fn wait_for_host(
        &self,
        what: &str,
        pred: impl Fn(&HostRecord) -> bool,
    ) -> HostRecord {
        wait_for_host_via(self.client(), what, pred).await
    }

    /// Stops the relay.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // A graceful stop ends the members' watch streams, so they notice.
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// Starts an in-process member named `name`.
pub async fn join(relay_uri: &str, name: &str) -> Result<Member, chat_node::StartError> {
    join_with(relay_uri, name, None).await
}

/// Starts an in-process member that listens on 127.0.0.1 but tells
/// everyone it is at `advertise` (a member behind a router that names an
/// address nobody can reach).
pub async fn join_advertising(
    relay_uri: &str,
    name: &str,
    advertise: &str,
) -> Result<Member, chat_node::StartError> {
    let listen = "127.0.0.1:0".parse().expect("addr");
    let transport = TransportOptions::default();
    let bound =
        BoundNode::bind_with(relay_uri, listen, Some(advertise.to_string()), transport).await?;
    Ok(Member::in_process(name, bound.join(name).await?))
}

/// Starts an in-process member that holds the test relay's admin secret.
pub async fn join_admin(relay_uri: &str, name: &str) -> Result<Member, chat_node::StartError> {
    join_with(
        relay_uri,
        name,
        Some(relay_svc::config::TEST_ADMIN_SECRET.to_string()),
    )
    .await
}

/// Starts an in-process member whose key, pinned relay key and seen
/// private messages are kept in `data_dir` (joining again with the same
/// directory is the same user restarting).
pub async fn join_in(
    relay_uri: &str,
    name: &str,
    data_dir: &Path,
) -> Result<Member, chat_node::StartError> {
    let store = NodeStore::new(Some(data_dir.to_path_buf()), None, false);
    join_with_store(relay_uri, name, None, store, TransportOptions::default()).await
}

/// A fresh, empty directory for one test's files.
pub fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "chat-tests-{}/{label}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).expect("create a test directory");
    dir
}

/// Starts an in-process member of `relay`, over TLS when the relay serves
/// TLS (trusting its authority, as `--relay-ca` would).
pub async fn join_relay(relay: &Relay, name: &str) -> Result<Member, chat_node::StartError> {
    let transport = TransportOptions {
        relay_ca_pem: relay.ca_pem.clone(),
        allow_plaintext: false,
    };
    join_with_transport(&relay.uri(), name, transport).await
}

/// Starts an in-process client-only member of `relay` (`--client-only`:
/// no port, nothing served), over TLS when the relay serves TLS.
pub async fn join_relay_client_only(
    relay: &Relay,
    name: &str,
) -> Result<Member, chat_node::StartError> {
    let transport = TransportOptions {
        relay_ca_pem: relay.ca_pem.clone(),
        allow_plaintext: false,
    };
    let bound = BoundNode::client_only(&relay.uri(), transport)?;
    start_member(bound, name, None, NodeStore::in_memory()).await
}

/// Starts an in-process member in `rooms` (the first is its current
/// room), keeping its key in `data_dir` (joining again with the same
/// directory is the same user restarting).
pub async fn join_rooms(
    relay_uri: &str,
    name: &str,
    rooms: &[String],
    data_dir: &Path,
) -> Result<Member, chat_node::StartError> {
    let listen = "127.0.0.1:0".parse().expect("addr");
    let bound = BoundNode::bind(relay_uri, listen, None)
        .await?
        .with_rooms(rooms.to_vec());
    let store = NodeStore::new(Some(data_dir.to_path_buf()), None, false);
    start_member(bound, name, None, store).await
}

/// Starts an in-process member of the relay at `relay_uri` with these
/// TLS options.
pub async fn join_with_transport(
    relay_uri: &str,
    name: &str,
    transport: TransportOptions,
) -> Result<Member, chat_node::StartError> {
    join_with_store(relay_uri, name, None, NodeStore::in_memory(), transport).await
}

async fn join_with(
    relay_uri: &str,
    name: &str,
    admin_secret: Option<String>,
) -> Result<Member, chat_node::StartError> {
    let transport = TransportOptions::default();
    join_with_store(
        relay_uri,
        name,
        admin_secret,
        NodeStore::in_memory(),
        transport,
    )
    .await
}

async fn join_with_store(
    relay_uri: &str,
    name: &str,
    admin_secret: Option<String>,
    store: NodeStore,
    transport: TransportOptions,
) -> Result<Member, chat_node::StartError> {
    let listen = "127.0.0.1:0".parse().expect("addr");
    let bound = BoundNode::bind_with(relay_uri, listen, None, transport).await?;
    start_member(bound, name, admin_secret, store).await
}

async fn start_member(
    bound: BoundNode,
    name: &str,
    admin_secret: Option<String>,
    store: NodeStore,
) -> Result<Member, chat_node::StartError> {
    let bound = bound.with_store(store).with_admin_secret(admin_secret);
    let node = bound.join(name).await?;
    Ok(Member::in_process(name, node))
}

/// Polls `cond` until it holds or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the relay at `relay_uri` until its host record satisfies `pred`;
/// returns that record.
pub async fn wait_for_host(
    relay_uri: &str,
    what: &str,
    pred: impl Fn(&HostRecord) -> bool,
) -> HostRecord {
    wait_for_host_via(
        RelayServiceClient::new(relay_channel(relay_uri, None)),
        what,
        pred,
    )
    .await
}

/// A lazy channel to the relay at `relay_uri`, over TLS trusting `ca_pem`
/// when given.
pub fn relay_channel(relay_uri: &str, ca_pem: Option<&str>) -> Channel {
    let endpoint = Endpoint::from_shared(relay_uri.to_string()).expect("relay uri");
    let endpoint = match ca_pem {
        Some(ca) => endpoint
            .tls_config(chat_proto::tls::client_config(ca, None, None))
            .expect("TLS configuration"),
        None => endpoint,
    };
    endpoint.connect_lazy()
}

async fn wait_for_host_via(
    client: RelayServiceClient<Channel>,
    what: &str,
    pred: impl Fn(&HostRecord) -> bool,
) -> HostRecord {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let host = client
            .clone()
            .current_host(CurrentHostRequest::default())
            .await;
        match host.map(|h| h.into_inner()) {
            Ok(host) if pred(&host) => return host,
            _ => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
