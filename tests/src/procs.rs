//! Real `relay-svc` and `chat-node` processes, built by cargo from this
//! workspace and driven through `--mode json`.

use crate::member::Member;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// Path of a workspace binary, building the binaries once per test run.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut args = vec![
            "build",
            "--quiet",
            "-p",
            "relay-svc",
            "-p",
            "chat-node",
            "--bins",
        ];
        // Build the binaries in the profile these tests were built in.
        if !cfg!(debug_assertions) {
            args.push("--release");
        }
        let status = std::process::Command::new(cargo)
            .args(args)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the binaries failed");
    });
    // target/debug/deps/<test> -> target/debug/<name>
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join(name)
}

/// This test process's directory for relay and node data.
fn tests_dir() -> PathBuf {
    std::env::temp_dir().join(format!("chat-tests-{}", std::process::id()))
}

/// A free port on 127.0.0.1 (bound, then released for a process to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `relay-svc` process.
pub struct RelayProcess {
    /// Its address.
    pub addr: String,
    /// Its certificate authority (`DATA_DIR/ca.pem`) when it serves TLS.
    ca: Option<PathBuf>,
    child: Child,
}

impl RelayProcess {
    /// Starts `relay-svc` on a free port with these extra arguments.
    pub async fn start(args: &[&str]) -> RelayProcess {
        Self::start_at(&format!("127.0.0.1:{}", free_port()), args).await
    }

    /// Starts `relay-svc` on `addr` (to restart one where it was), in
    /// plaintext (its members dial `http://127.0.0.1`).
    pub async fn start_at(addr: &str, args: &[&str]) -> RelayProcess {
        Self::spawn(addr, false, args).await
    }

    /// Starts `relay-svc` on a free port serving TLS with its own
    /// certificate authority (members dial `https://127.0.0.1` and need
    /// `--relay-ca` [`RelayProcess::ca`]).
    pub async fn start_tls(args: &[&str]) -> RelayProcess {
        Self::spawn(&format!("127.0.0.1:{}", free_port()), true, args).await
    }

    async fn spawn(addr: &str, tls: bool, args: &[&str]) -> RelayProcess {
        let addr = addr.to_string();
        // The key stays with the address for this test process, so a relay
        // restarted where it was keeps the key its members pinned.
        let data_dir = tests_dir().join(format!("relay-{}", addr.replace(':', "-")));
        let ca = tls.then(|| data_dir.join(chat_proto::tls::AUTHORITY_CERT_FILE));
        let child = Command::new(binary("relay-svc"))
            .args(["--listen", &addr])
            .args((!tls).then_some("--plaintext"))
            .arg("--data-dir")
            .arg(&data_dir)
            .env(
                "RUST_LOG",
                std::env::var("CHAT_TEST_LOG").unwrap_or_else(|_| "error".into()),
            )
            // Every test node registers from 127.0.0.1, and a long chaos
            // run starts more than a minute's worth: no limit on new
            // identities unless a test passes --new-identities-per-minute.
            .env("RELAY_NEW_IDENTITIES_PER_MINUTE", "0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn relay-svc");
        let relay = RelayProcess { addr, ca, child };
        relay.wait_ready().await;
        relay
    }

    async fn wait_ready(&self) {
        let addr = self.addr.clone();
        crate::eventually("relay-svc accepts connections", || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(addr).await.is_ok() }
        })
        .await;
        // It listens before it loads its authority: the file comes after
        // (whole, written aside and linked into place).
        if let Some(ca) = self.ca.clone() {
            crate::eventually("relay-svc writes its ca.pem", || {
                let ca = ca.clone();
                async move { ca.exists() }
            })
            .await;
        }
    }

    /// URI of the relay: `https://` when it serves TLS, else `http://`.
    pub fn uri(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The certificate authority of a TLS relay (there once it started).
    pub fn ca(&self) -> &Path {
        self.ca
            .as_deref()
            .expect("the relay serves plaintext: it has no authority")
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the relay with SIGKILL and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

/// A `chat-node --mode json` process.
pub struct NodeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl NodeProcess {
    /// Writes one input line.
    pub async fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to chat-node");
        stdin.flush().await.expect("flush chat-node stdin");
    }

    /// Types `$exit` and waits for a clean exit.
    pub async fn exit(&mut self) {
        self.write_line("$exit").await;
        let status = tokio::time::timeout(crate::DEADLINE, self.child.wait())
            .await
            .expect("chat-node exits after $exit")
            .expect("wait for chat-node");
        assert!(status.success(), "chat-node exit status {status}");
    }

    /// Kills the node with SIGKILL.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends SIGTERM (as a service manager stops it), its stdin still
    /// open, and waits for it to exit; whether it exited within `limit`.
    pub async fn terminate(&mut self, limit: Duration) -> bool {
        let Some(pid) = self.child.id() else {
            return true;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .expect("run kill (procps)");
        assert!(sent.success(), "kill -TERM {pid}");
        tokio::time::timeout(limit, self.child.wait()).await.is_ok()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// How many TCP sockets the process `pid` holds in the LISTEN state (read
/// from /proc: its open sockets against the kernel's TCP tables).
pub fn listening_sockets(pid: u32) -> usize {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the process's open files");
    let inodes: std::collections::HashSet<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(inode.to_string())
        })
        .collect();
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .map(|line| {
                    line.split_whitespace()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        // Columns: sl local remote state ... uid timeout inode.
        .filter(|cols| cols.get(3).map(String::as_str) == Some("0A"))
        .filter(|cols| cols.get(9).is_some_and(|inode| inodes.contains(inode)))
        .count()
}

/// The data directory of the process member `name` of the relay at
/// `relay_uri`: one per user and relay, so tests running at once do not
/// share one (a node locks its name there), while a member started again
/// under its name with the same relay is the same user restarting.
pub fn node_data_dir(relay_uri: &str, name: &str) -> PathBuf {
    let relay: String = relay_uri
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    tests_dir().join(format!("node-{name}-{relay}"))
}

/// Starts `chat-node --mode json` as member `name`; its stdout events feed
/// the returned member.
pub async fn spawn_node(relay_uri: &str, name: &str, extra: &[&str]) -> Member {
    // The node binds a port of its own choosing (and tells the relay):
    // a port picked here and released could be taken by another process
    // of a test running at once before the node binds it.
    let mut child = Command::new(binary("chat-node"))
        .args([
            relay_uri,
            "--name",
            name,
            "--mode",
            "json",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("CHAT_DATA_DIR", node_data_dir(relay_uri, name))
        .env(
            "RUST_LOG",
            std::env::var("CHAT_TEST_LOG").unwrap_or_else(|_| "error".into()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chat-node");
    let stdout = child.stdout.take().expect("stdout piped");
    let stdin = child.stdin.take();
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("chat-node printed a non-JSON line {line:?}: {e}"));
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    Member::process(name, NodeProcess { child, stdin }, events)
}

/// Sends SIGKILL to every process of `pids` with one `kill -9`, so they
/// all stop at the same moment (as in a power cut).
pub async fn kill_all_at_once(pids: &[u32]) {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let sent = Command::new("kill")
        .arg("-9")
        .args(&pids)
        .status()
        .await
        .expect("run kill (procps)");
    assert!(sent.success(), "kill -9 {pids:?}");
}

/// Runs a binary to completion with `args`; returns (success, stdout+stderr).
pub async fn run_binary(name: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(binary(name))
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("binary finishes")
    .expect("run binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
