//! A relay and bot nodes, each in a container on a network of the test's
//! own, every connection over TLS as in `docker-compose.yml`: the relay
//! keeps its certificate authority in a volume of the cluster's own, which
//! the nodes mount read-only for `ca.pem`. A member can also live on a
//! home network of its own that nothing outside can connect into
//! ([`Cluster::start_unreachable_node`]).

use super::{
    docker, docker_result, docker_stdout, eventually, parse_timestamp, unique_name, Event, Images,
    Logged, View, DEADLINE, NODE_PORT, RELAY_PORT,
};
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Where the relay keeps its key and certificate authority in its container.
pub const RELAY_DATA: &str = "/data";
/// Where nodes find the relay's authority: its data volume, mounted read-only.
pub const NODE_RELAY_CA: &str = "/relay/ca.pem";
/// How long a reachability probe ([`Cluster::probe_node`]) may take.
pub const PROBE_TIMEOUT: &str = "3s";

/// What a [`Cluster`] runs.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The nodes' chat names, in start order (the first becomes host);
    /// [`Cluster::start_relay`] starts none of them.
    pub nodes: Vec<&'static str>,
    /// `--mode` of the nodes: `line` or `json`.
    pub mode: &'static str,
    /// How often each bot posts.
    pub bot_interval: &'static str,
    /// How often the host moves (relay `--migration-interval`).
    pub migration_interval: &'static str,
    /// Members needed to activate the chat.
    pub min_users: u32,
    /// Which of `nodes` run `--client-only` (no port, never host).
    pub client_only: Vec<&'static str>,
}

/// A relay and bot nodes, each in a container on a network of their own;
/// containers, networks and the relay's volume are removed on drop, also
/// when the test fails.
pub struct Cluster {
    prefix: String,
    network: String,
    /// Home networks of unreachable members, removed after the containers.
    homes: Vec<String>,
    volume: String,
    images: Arc<Images>,
    containers: Vec<String>,
    nodes: Vec<&'static str>,
    config: ClusterConfig,
}

impl Cluster {
    /// Builds (or shares) the images and starts the relay, waits until it
    /// serves, then starts the nodes one by one, each registered before the
    /// next starts (so the first is the first host).
    pub fn start(test: &str, config: &ClusterConfig) -> Cluster {
        let mut cluster = Self::start_relay(test, config);
        for name in config.nodes.clone() {
            cluster.start_node(name);
        }
        cluster
    }

    /// Builds (or shares) the images and starts the relay over TLS; waits
    /// until it serves. No node yet: see [`Cluster::start_node`].
    pub fn start_relay(test: &str, config: &ClusterConfig) -> Cluster {
        let images = Images::shared();
        let prefix = unique_name(test);
        let mut cluster = Cluster {
            network: prefix.clone(),
            homes: Vec::new(),
            volume: format!("{prefix}-relay-data"),
            prefix,
            images,
            containers: Vec::new(),
            nodes: Vec::new(),
            config: config.clone(),
        };
        docker(&["network", "create", &cluster.network]);
        // Filled from the image's /data (owned by the relay's user).
        docker(&["volume", "create", &cluster.volume]);
        let relay = cluster.relay();
        cluster.containers.push(relay.clone());
        docker(&[
            "run",
            "-d",
            "--name",
            &relay,
            "--network",
            &cluster.network,
            "-v",
            &format!("{}:{RELAY_DATA}", cluster.volume),
            "-e",
            "RUST_LOG=info",
            &cluster.images.relay,
            &format!("--listen=0.0.0.0:{RELAY_PORT}"),
            // The name nodes dial, as `relay` in docker-compose.yml.
            &format!("--tls-name={relay}"),
            &format!("--min-users={}", config.min_users),
            &format!("--migration-interval={}", config.migration_interval),
        ]);
        eventually("the relay serving over TLS", || {
            docker_result(&[
                "exec",
                &relay,
                "/relay-svc",
                "health",
                "--ca",
                &format!("{RELAY_DATA}/ca.pem"),
                &format!("127.0.0.1:{RELAY_PORT}"),
            ])
            .is_ok()
        });
        cluster
    }

    /// Starts the bot node `name` on the cluster's network (see
    /// [`Cluster::launch_node`]) and waits until it has reached a host.
    pub fn start_node(&mut self, name: &'static str) {
        self.launch_node(name);
        eventually(&format!("{name} registered"), || {
            self.events(name)
                .iter()
                .any(|e| matches!(e.event, Event::Host { .. }))
        });
    }

    /// Starts the bot node `name` on the cluster's network, listening on
    /// all its addresses and advertising its container name; does not wait.
    pub fn launch_node(&mut self, name: &'static str) {
        let container = self.node(name);
        let advertise = format!("{container}:{NODE_PORT}");
        let mut args = vec!["run".to_string(), "-d".into()];
        args.extend(self.container_args(name, &self.network));
        args.extend(self.node_args(name, "0.0.0.0", &advertise));
        self.containers.push(container);
        self.nodes.push(name);
        docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// Starts the bot node `name` behind the equivalent of a home router:
    /// on a home network of its own (internal: nothing outside it can
    /// connect in), listening and advertising only its address there,
    /// and also attached to the cluster's network, so that it can dial
    /// out to the relay and the hosts. Returns its advertised address.
    /// Waits until the relay has registered it, not for a host: the
    /// relay may have none it can reach yet.
    pub fn start_unreachable_node(&mut self, name: &'static str) -> String {
        let container = self.node(name);
        let home = format!("{container}-home");
        let ip = create_home_network(&home);
        self.homes.push(home.clone());
        let address = format!("{ip}:{NODE_PORT}");
        let mut args = vec!["create".to_string()];
        args.extend(self.container_args(name, &home));
        args.extend(["--ip".to_string(), ip.to_string()]);
        args.extend(self.node_args(name, &ip.to_string(), &address));
        self.containers.push(container.clone());
        self.nodes.push(name);
        docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
        docker(&["network", "connect", &self.network, &container]);
        docker(&["start", &container]);
        eventually(&format!("{name} registered at the relay"), || {
            self.relay_logged_since(
                "registered",
                &format!("name={name} "),
                SystemTime::UNIX_EPOCH,
            )
            .is_some()
        });
        address
    }

    /// `docker run`/`create` options of node `name`'s container, first on
    /// `network` (before the image).
    fn container_args(&self, name: &str, network: &str) -> Vec<String> {
        [
            "--name",
            &self.node(name),
            "--network",
            network,
            "-v",
            &format!("{}:/relay:ro", self.volume),
            "-e",
            "RUST_LOG=info",
        ]
        .map(String::from)
        .to_vec()
    }

    /// The image and command line of bot node `name` (a client-only one
    /// listens nowhere and gives no address).
    fn node_args(&self, name: &str, listen_ip: &str, advertise: &str) -> Vec<String> {
        let mut args = vec![
            self.images.node.clone(),
            format!("https://{}:{RELAY_PORT}", self.relay()),
            format!("--relay-ca={NODE_RELAY_CA}"),
            format!("--name={name}"),
            format!("--mode={}", self.config.mode),
            format!("--bot-interval={}", self.config.bot_interval),
        ];
        if self.config.client_only.contains(&name) {
            args.push("--client-only".into());
        } else {
            args.push(format!("--listen={listen_ip}:{NODE_PORT}"));
            args.push(format!("--advertise={advertise}"));
        }
        args
    }

    /// The network's name.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The relay's container name (also its DNS name on the network).
    pub fn relay(&self) -> String {
        format!("{}-relay", self.prefix)
    }

    /// A node's container name (also its DNS name on the network).
    pub fn node(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// The nodes' chat names.
    pub fn nodes(&self) -> &[&'static str] {
        &self.nodes
    }

    /// `chat-node health` of `name`'s own chat server, over TLS, from
    /// inside its container: the status it printed (`SERVING`,
    /// `NOT_SERVING`; empty if none). `service` "" is the node as a
    /// whole, `chat.v1.ChatService` the hosting role.
    pub fn node_health(&self, name: &str, service: &str) -> String {
        docker_stdout(&[
            "exec",
            &self.node(name),
            "/chat-node",
            "health",
            "--ca",
            NODE_RELAY_CA,
            "--node-key",
            &format!("/data/{name}.key"),
            "--service",
            service,
            &format!("127.0.0.1:{NODE_PORT}"),
        ])
    }

    /// The TLS name of node `name`'s certificate, `<node_id>.node.invalid`,
    /// from the key file in its container.
    pub fn node_server_name(&self, name: &str) -> String {
        let dir = std::env::temp_dir().join(unique_name("key"));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let key = dir.join("node.key");
        let from = format!("{}:/data/{name}.key", self.node(name));
        let copied = docker_result(&["cp", &from, &key.to_string_lossy()]);
        let server_name = copied.and_then(|_| chat_node::health::server_name_of_key(&key));
        let _ = std::fs::remove_dir_all(&dir);
        server_name.unwrap_or_else(|e| panic!("{name}'s key: {e}"))
    }

    /// A TLS health check of node `name` at `address`, run from inside
    /// `from` (the relay's container or a node's), as the relay probes a
    /// member: `Ok(status)` if it answered, else why not.
    pub fn probe_node(&self, from: &str, name: &str, address: &str) -> Result<String, String> {
        let (binary, ca) = if from == self.relay() {
            ("/relay-svc", format!("{RELAY_DATA}/ca.pem"))
        } else {
            ("/chat-node", NODE_RELAY_CA.to_string())
        };
        docker_result(&[
            "exec",
            from,
            binary,
            "health",
            "--ca",
            &ca,
            "--server-name",
            &self.node_server_name(name),
            "--timeout",
            PROBE_TIMEOUT,
            address,
        ])
        .map(|out| out.trim().to_string())
    }

    /// Everything a node has printed so far (its stdout, across restarts).
    pub fn events(&self, name: &str) -> Vec<Logged> {
        let out = docker(&["logs", "--timestamps", &self.node(name)]);
        out.lines().filter_map(Logged::parse).collect()
    }

    /// What a container wrote on stderr (its tracing log), lines with
    /// their docker timestamps.
    pub fn stderr(&self, container: &str) -> Vec<(SystemTime, String)> {
        let out = Command::new("docker")
            .args(["logs", "--timestamps", container])
            .output()
            .expect("run docker logs");
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter_map(|line| {
                let (at, text) = line.split_once(' ')?;
                Some((parse_timestamp(at)?, text.to_string()))
            })
            .collect()
    }

    /// When the relay logged, after `since`, a line containing `what`.
    pub fn relay_logged(&self, what: &str, since: SystemTime) -> Option<SystemTime> {
        self.relay_logged_since(what, "", since)
    }

    /// When the relay logged, after `since`, a line containing `what` and `and`.
    fn relay_logged_since(&self, what: &str, and: &str, since: SystemTime) -> Option<SystemTime> {
        self.stderr(&self.relay())
            .into_iter()
            .find(|(at, line)| *at >= since && line.contains(what) && line.contains(and))
            .map(|(at, _)| at)
    }

    /// Every node's output so far.
    pub fn view(&self) -> View {
        View {
            nodes: self
                .nodes
                .iter()
                .map(|name| (name.to_string(), self.events(name)))
                .collect(),
        }
    }

    /// Waits until `done` holds for the nodes' output; returns that output.
    pub fn wait_for(&self, what: &str, mut done: impl FnMut(&View) -> bool) -> View {
        let start = Instant::now();
        loop {
            let view = self.view();
            if done(&view) {
                println!(
                    "{}: {what}: after {:.1?}, up to message {}, host epoch {}",
                    self.prefix,
                    start.elapsed(),
                    view.max_seq(),
                    view.max_epoch()
                );
                return view;
            }
            assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Creates the internal network `name` and returns an address on it for
/// one container. Docker picks a free subnet; the network is then made
/// again with that subnet spelled out, because Docker gives a container a
/// fixed address (`--ip`) only on such a network (and the node must know
/// its address before it starts: it listens there alone).
fn create_home_network(name: &str) -> Ipv4Addr {
    let mut last_error = String::new();
    for _ in 0..5 {
        docker(&["network", "create", "--internal", name]);
        let config = docker(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
            name,
        ]);
        docker(&["network", "rm", name]);
        let mut parts = config.split_whitespace();
        let (Some(subnet), Some(gateway)) = (parts.next(), parts.next()) else {
            panic!("network {name} has no IPv4 subnet and gateway: {config:?}");
        };
        let gateway: Ipv4Addr = gateway.parse().expect("a gateway address");
        // A few addresses past the gateway, inside any subnet Docker picks.
        let ip = Ipv4Addr::from(u32::from(gateway) + 9);
        let created = docker_result(&[
            "network",
            "create",
            "--internal",
            "--subnet",
            subnet,
            "--gateway",
            &gateway.to_string(),
            name,
        ]);
        match created {
            Ok(_) => return ip,
            // Another test took the subnet in between: pick again.
            Err(e) => last_error = e,
        }
    }
    panic!("cannot create the home network {name}: {last_error}");
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for container in &self.containers {
                let state = docker_result(&[
                    "inspect",
                    "-f",
                    "{{.State.Status}} (exit code {{.State.ExitCode}}, restarts {{.RestartCount}})",
                    container,
                ]);
                eprintln!("--- {container}: {}", state.unwrap_or_else(|e| e));
                if let Ok(out) = Command::new("docker")
                    .args(["logs", "--timestamps", "--tail", "60", container])
                    .output()
                {
                    eprintln!(
                        "stdout:\n{}stderr:\n{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        for container in &self.containers {
            let _ = docker_result(&["rm", "-f", "-v", container]);
        }
        for network in self.homes.iter().chain([&self.network]) {
            let _ = docker_result(&["network", "rm", network]);
        }
        let _ = docker_result(&["volume", "rm", &self.volume]);
    }
}
