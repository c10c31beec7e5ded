//! Server processes: this binary's own internal subcommands (relay, chat
//! node, bare tonic server) and the peers (`nats-server`, `redis-server`).
//!
//! Our own children exit when their stdin closes, so they never outlive
//! the benchmark, even if it is killed; every child is also killed on drop.

use crate::{within, BenchError, Result};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The stdout lines of a child after its READY line.
pub type StdoutLines = Lines<BufReader<ChildStdout>>;

/// How long a server may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running server process.
pub struct Server {
    /// What it is, for messages.
    pub label: String,
    /// Its process id.
    pub pid: u32,
    /// The address it serves on, `host:port`.
    pub addr: String,
    child: Child,
    /// Held open: our own children exit when it closes.
    stdin: Option<ChildStdin>,
}

impl Server {
    /// Runs this binary with an internal subcommand and waits for its
    /// `READY <addr>` line; the rest of its output is drained.
    pub async fn spawn_self(label: &str, args: &[&str]) -> Result<Server> {
        let (server, mut lines) = Self::spawn_self_lines(label, args).await?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(server)
    }

    /// Like [`Server::spawn_self`], but hands over the output lines after
    /// READY (lines before it are skipped).
    pub async fn spawn_self_lines(label: &str, args: &[&str]) -> Result<(Server, StdoutLines)> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError::Setup(format!("{label} exited at once")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Setup("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let what = format!("{label} to start");
        let addr = within(START_TIMEOUT, &what, async {
            loop {
                match lines.next_line().await? {
                    Some(line) => {
                        if let Some(addr) = line.strip_prefix("READY ") {
                            return Ok(addr.to_string());
                        }
                    }
                    None => return Err(BenchError::Setup(format!("{label} exited before READY"))),
                }
            }
        })
        .await?;
        let server = Server {
            label: label.to_string(),
            pid,
            addr,
            stdin: child.stdin.take(),
            child,
        };
        Ok((server, lines))
    }

    /// Writes one line to the process's stdin.
    pub async fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| BenchError::Setup(format!("{}: no stdin", self.label)))?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Runs an external server `program` that will listen on `addr`, and
    /// waits until it accepts connections. A missing program is
    /// [`BenchError::Missing`].
    pub async fn spawn_external(
        label: &str,
        program: &str,
        args: &[&str],
        addr: &str,
    ) -> Result<Server> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    BenchError::Missing(format!("{program} not found on PATH"))
                }
                _ => BenchError::Io(e),
            })?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError::Setup(format!("{label} exited at once")))?;
        let what = format!("{label} to accept connections on {addr}");
        within(START_TIMEOUT, &what, async {
            loop {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    return Ok(());
                }
                if let Some(status) = child.try_wait()? {
                    return Err(BenchError::Setup(format!("{label} exited: {status}")));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await?;
        Ok(Server {
            label: label.to_string(),
            pid,
            addr: addr.to_string(),
            child,
            stdin: None,
        })
    }

    /// `kill -9`, without waiting.
    pub fn kill9(&mut self) -> Result<()> {
        Ok(self.child.start_kill()?)
    }

    /// Kills the process and reaps it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A port on 127.0.0.1 that was free a moment ago (for external servers,
/// which take their port on the command line).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Stops every server, concurrently.
pub async fn stop_all(servers: Vec<Server>) {
    futures_util::future::join_all(servers.into_iter().map(Server::stop)).await;
}

/// Where `program` is: on `PATH`, or in an sbin directory (Debian puts
/// `nats-server` in /usr/sbin, which a non-root PATH may lack).
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(Into::into))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}
