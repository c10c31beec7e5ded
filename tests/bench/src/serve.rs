//! Internal subcommands that run as the server processes of a benchmark:
//! our relay, a chat node that is a member like any other (it may host),
//! and the bare tonic broadcast server. Each prints `READY <addr>` once it
//! serves, and exits when its stdin closes (the benchmark went away).

use crate::systems::tonic_bare;
use crate::{BenchError, Result};
use relay_svc::RelayConfig;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Completes when stdin reaches EOF (or fails).
pub async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Logs to stderr as the real binaries do, but only when `RUST_LOG` is set
/// (a benchmark's server processes are quiet by default).
pub(crate) fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        chat_proto::cli::init_tracing();
    }
}

pub(crate) fn ready(addr: impl std::fmt::Display) {
    // stdout is line-buffered: the line goes out at once.
    println!("READY {addr}");
}

/// Runs `relay-svc` (the library the binary runs) on an ephemeral port,
/// N = 1, with the given migration interval, lease and member grace.
pub async fn relay(
    migration_interval: Duration,
    lease: Duration,
    member_grace: Duration,
) -> Result<()> {
    init_logs();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut config = RelayConfig::for_tests(1, migration_interval);
    config.listen = addr;
    config.lease = lease;
    config.member_grace = member_grace;
    config.admin_secret = None;
    // The benchmark measures how fast the chat goes: no per-member limit
    // (the bare tonic, NATS and Redis peers have none either).
    config.messages_per_second = 0;
    ready(addr);
    relay_svc::run(listener, config, stdin_closed())
        .await
        .map_err(|e| BenchError::Setup(format!("relay: {e}")))
}

/// Runs a member node as a process of its own (see [`crate::member`]).
pub async fn node(relay_uri: &str, name: &str, output: crate::member::Output) -> Result<()> {
    init_logs();
    crate::member::run(relay_uri, name, output).await
}

/// Runs the bare tonic broadcast server on an ephemeral port (keeping a
/// log to replay with `log`).
pub async fn tonic_server(log: bool) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    ready(listener.local_addr()?);
    tonic_bare::serve(listener, stdin_closed(), log).await
}

/// Runs a late joiner of the signed bare tonic server (see
/// [`crate::scenarios::catchup`]) until stdin closes.
pub async fn tonic_joiner(addr: &str, count_to: u64) -> Result<()> {
    ready("-");
    tokio::select! {
        r = crate::scenarios::catchup::tonic_joiner(addr, count_to) => r?,
        _ = stdin_closed() => return Ok(()),
    }
    stdin_closed().await;
    Ok(())
}
