//! What the two binaries share on their command line and at start-up:
//! duration arguments, the `health` subcommand, logging and the stop
//! signals. Behind the `cli` feature, so a client of the protocol alone
//! does not pull clap or a tracing subscriber.

use crate::health_check::{run_command, TlsCheck};
use std::process::ExitCode;
use std::time::Duration;

/// Parses a duration such as `30s`, `250ms` or `1m 30s` (for clap).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

/// Arguments of the `health` subcommand of both binaries.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// Address of the server, `host:port`, `http://host:port` or
    /// `https://host:port` (a bare `host:port` is https with `--ca`).
    #[arg(value_name = "ADDR")]
    pub address: String,

    /// Check over TLS, trusting this authority's certificate (PEM), e.g.
    /// the relay's `DATA_DIR/ca.pem`.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,

    /// With --ca: the name the server's certificate must carry, if not the
    /// address's host (a node's is `NODE_ID.node.invalid`).
    #[arg(long, value_name = "NAME", requires = "ca")]
    pub server_name: Option<String>,

    /// Service to ask about; "" (the default) is the whole server.
    #[arg(long, value_name = "NAME", default_value = "")]
    pub service: String,

    /// How long to wait for an answer, connection included.
    #[arg(long, value_name = "DURATION", default_value = "3s",
          value_parser = parse_duration)]
    pub timeout: Duration,
}

impl HealthArgs {
    /// Runs the check for `program`: prints the status, exit 0 only if SERVING.
    pub async fn run(&self, program: &str) -> ExitCode {
        let tls = match self.ca.as_deref().map(std::fs::read_to_string).transpose() {
            Ok(ca) => ca.map(|ca_pem| TlsCheck {
                ca_pem,
                server_name: self.server_name.clone(),
            }),
            Err(e) => {
                eprintln!("{program}: health check failed: --ca: {e}");
                return ExitCode::FAILURE;
            }
        };
        run_command(
            program,
            &self.address,
            &self.service,
            self.timeout,
            tls.as_ref(),
        )
        .await
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// For full-screen programs: logs only if `RUST_LOG` is set, and then to
/// the file `path` (appended), never to the terminal.
pub fn init_tracing_to_file(path: &str) {
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() else {
        return;
    };
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
