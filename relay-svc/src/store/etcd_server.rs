//! A real single-member etcd for tests (feature `test-util`): in a
//! temporary directory, on free ports of 127.0.0.1, killed when dropped.
//! Without the `etcd` binary a test fails, saying what to install (CI
//! installs Debian's `etcd-server`): a test never passes by skipping.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long etcd may take to answer after it starts.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running etcd process.
pub struct EtcdServer {
    child: Child,
    /// `127.0.0.1:PORT` of its client endpoint.
    pub endpoint: String,
    dir: PathBuf,
}

/// A free port on 127.0.0.1 (bound, then released for etcd to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl EtcdServer {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> EtcdServer {
        let found = Command::new("etcd")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "the etcd binary is missing: install Debian's etcd-server (.ci/run does)"
        );
        let (client, peer) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("etcd-test-{}", uuid::Uuid::new_v4().simple()));
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "test", "--data-dir"])
            .arg(&dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}")])
            .args(["--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd");
        let server = EtcdServer {
            child,
            endpoint: format!("127.0.0.1:{client}"),
            dir,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        let endpoints = self.endpoints();
        loop {
            if let Ok(mut client) = super::etcd::connect(&endpoints).await {
                if client.get("ready", None).await.is_ok() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "etcd did not answer within {READY_WITHIN:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its client endpoints, as `etcd::connect` takes them.
    pub fn endpoints(&self) -> Vec<String> {
        vec![format!("http://{}", self.endpoint)]
    }

    /// The `--store` value of a relay using it.
    pub fn store_flag(&self) -> String {
        format!("etcd://{}", self.endpoint)
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
