//! Containers for the tests across Docker (`tests/tests/docker.rs`,
//! `tests/tests/docker_faults.rs`): the demo's `FROM scratch` images built
//! from statically linked binaries, a relay and bot nodes each in its own
//! container on a network of the test's own, the `docker` CLI, and the
//! nodes' output read back from `docker logs --timestamps`.
//!
//! Every name (network, containers, image tags) carries the test's name,
//! the process id and a per-process counter, so tests running at once, in
//! one test binary or in several, never collide. A [`Cluster`] removes its
//! containers and network when dropped, also when the test fails; the
//! images are built once per process and removed when the last cluster
//! using them is gone.

mod output;

pub use output::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any awaited condition may take.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// The largest image the issue allows.
pub const MAX_IMAGE_BYTES: u64 = 20_000_000;
/// Port every node listens on inside its container.
pub const NODE_PORT: u16 = 7000;
/// Port the relay listens on inside its container.
pub const RELAY_PORT: u16 = 5000;

/// Whether a Docker test can run. Without a Docker engine it prints one
/// line saying so and returns false (the test then passes), except with
/// `CI=true`, where missing Docker fails the test.
pub fn docker_or_skip(test: &str) -> bool {
    match docker_available() {
        Ok(()) => true,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but Docker is not available: {why}"
            );
            println!("{test} skipped: Docker is not available ({why})");
            false
        }
    }
}

/// Whether the Docker engine answers; why not otherwise.
pub fn docker_available() -> Result<(), String> {
    docker_result(&["info", "--format", "{{.ServerVersion}}"]).map(|_| ())
}

/// Runs `docker` with `args`; its stdout, or its stderr as the error.
pub fn docker_result(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Runs `docker` with `args`, failing the test if it fails.
pub fn docker(args: &[&str]) -> String {
    docker_result(args).unwrap_or_else(|e| panic!("docker {}: {e}", args.join(" ")))
}

/// Runs `docker` with `args` whatever its exit code; its trimmed stdout
/// (e.g. the status a `health` subcommand prints, `NOT_SERVING` included).
pub fn docker_stdout(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker: {e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs a command to success; its stdout.
pub fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `done` until it holds, failing the test after [`DEADLINE`].
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A name no other test, run or process uses: `chat-{test}-{pid}-{n}`
/// (lower case, safe for container, network and DNS names).
pub fn unique_name(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // The time tells apart runs whose process ids repeat, in case a killed
    // run left something behind.
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    format!(
        "chat-{}-{}-{n}-{micros:x}",
        test.to_lowercase(),
        std::process::id()
    )
}

// ---------------------------------------------------------------- images

/// The two images (`relay-svc` and `chat-node`) built from the repository's
/// Dockerfile; removed when the last holder drops them.
pub struct Images {
    /// The relay-svc image tag.
    pub relay: String,
    /// The chat-node image tag.
    pub node: String,
}

/// The images this process built and still uses. Building and removing
/// happen under this lock, so a test that starts while another removes the
/// images builds new ones under new tags.
static IMAGES: Mutex<Weak<Images>> = Mutex::new(Weak::new());

impl Images {
    /// The images, built once for every test of this process that runs
    /// while another still holds them.
    pub fn shared() -> Arc<Images> {
        let mut slot = IMAGES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(images) = slot.upgrade() {
            return images;
        }
        let images = Arc::new(build_images(&unique_name("img")));
        *slot = Arc::downgrade(&images);
        images
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let _lock = IMAGES.lock().unwrap_or_else(|p| p.into_inner());
        for image in [&self.relay, &self.node] {
            if !image.is_empty() {
                let _ = docker_result(&["rmi", image]);
            }
        }
    }
}

/// Builds the static binaries as `scripts/demo-up.sh` does and the two
/// images from the repository's Dockerfile, tagged under `prefix`; checks
/// their size.
fn build_images(prefix: &str) -> Images {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let target_dir = target_dir();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = run(Command::new(rustc).arg("-vV"));
    let triple = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host triple");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Its progress and errors go straight to the terminal.
    let status = Command::new(cargo)
        .current_dir(root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .args(["build", "--release", "--locked", "--target", triple])
        .args([
            "-p",
            "relay-svc",
            "-p",
            "chat-node",
            "--bins",
            "--target-dir",
        ])
        .arg(&target_dir)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building the static binaries failed");
    // A build context of our own, laid out as the Dockerfile expects.
    let context = target_dir.join(prefix);
    let staged = context.join("target/docker");
    std::fs::create_dir_all(staged.join("data")).expect("create the build context");
    std::fs::write(staged.join("data/.keep"), b"").expect("create the data directory");
    std::fs::copy(root.join("Dockerfile"), context.join("Dockerfile")).expect("copy Dockerfile");
    // Filled in as each image is built, so that a failure removes what was.
    let mut images = Images {
        relay: String::new(),
        node: String::new(),
    };
    for bin in ["relay-svc", "chat-node"] {
        let built = target_dir.join(triple).join("release").join(bin);
        run(Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(staged.join(bin))
            .arg(&built));
        let image = format!("{prefix}/{bin}:test");
        let context = context.to_string_lossy();
        docker(&["build", "--quiet", "--target", bin, "-t", &image, &context]);
        if bin == "relay-svc" {
            images.relay = image.clone();
        } else {
            images.node = image.clone();
        }
        let size: u64 = docker(&["image", "inspect", "-f", "{{.Size}}", &image])
            .trim()
            .parse()
            .expect("image size");
        assert!(size < MAX_IMAGE_BYTES, "{image} is {size} bytes");
    }
    let _ = std::fs::remove_dir_all(&context);
    images
}

/// The target directory this test was built in: target/debug/deps/<test>.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .expect("target directory above the test executable")
        .to_path_buf()
}

// ---------------------------------------------------------------- cluster

/// What a [`Cluster`] runs.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The nodes' chat names, in start order (the first becomes host).
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
/// containers and network are removed on drop, also when the test fails.
pub struct Cluster {
    prefix: String,
    network: String,
    images: Arc<Images>,
    containers: Vec<String>,
    nodes: Vec<&'static str>,
}

impl Cluster {
    /// Builds (or shares) the images and starts the relay, waits until it
    /// serves, then starts the nodes one by one, each registered before the
    /// next starts (so the first is the first host).
    pub fn start(test: &str, config: &ClusterConfig) -> Cluster {
        let images = Images::shared();
        let prefix = unique_name(test);
        let mut cluster = Cluster {
            network: prefix.clone(),
            prefix,
            images,
            containers: Vec::new(),
            nodes: config.nodes.clone(),
        };
        docker(&["network", "create", &cluster.network]);
        let relay = cluster.relay();
        cluster.containers.push(relay.clone());
        docker(&[
            "run",
            "-d",
            "--name",
            &relay,
            "--network",
            &cluster.network,
            "-e",
            "RUST_LOG=info",
            &cluster.images.relay,
            &format!("--listen=0.0.0.0:{RELAY_PORT}"),
            // TLS in containers comes with the compose demo's switch.
            "--plaintext",
            &format!("--min-users={}", config.min_users),
            &format!("--migration-interval={}", config.migration_interval),
        ]);
        eventually("the relay serving", || {
            docker_result(&[
                "exec",
                &relay,
                "/relay-svc",
                "health",
                &format!("127.0.0.1:{RELAY_PORT}"),
            ])
            .is_ok()
        });
        for name in config.nodes.clone() {
            let container = cluster.node(name);
            cluster.containers.push(container.clone());
            // A client-only node listens nowhere and gives no address.
            let serving = [
                format!("--listen=0.0.0.0:{NODE_PORT}"),
                format!("--advertise={container}:{NODE_PORT}"),
            ];
            let reach: &[String] = if config.client_only.contains(&name) {
                &["--client-only".to_string()]
            } else {
                &serving
            };
            let mut args: Vec<String> = [
                "run",
                "-d",
                "--name",
                &container,
                "--network",
                &cluster.network,
                "-e",
                "RUST_LOG=info",
                &cluster.images.node,
            ]
            .map(str::to_string)
            .to_vec();
            args.extend([
                format!("http://{relay}:{RELAY_PORT}"),
                format!("--name={name}"),
                "--allow-plaintext".to_string(),
                format!("--mode={}", config.mode),
                format!("--bot-interval={}", config.bot_interval),
            ]);
            args.extend(reach.iter().cloned());
            docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
            eventually(&format!("{name} registered"), || {
                cluster
                    .events(name)
                    .iter()
                    .any(|e| matches!(e.event, Event::Host { .. }))
            });
        }
        cluster
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
        self.stderr(&self.relay())
            .into_iter()
            .find(|(at, line)| *at >= since && line.contains(what))
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
        let _ = docker_result(&["network", "rm", &self.network]);
    }
}
