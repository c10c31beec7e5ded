//! A subscriber of ours that is a real member in a process of its own: the
//! `node` subcommand with `--probe-base` (see [`crate::member`]), a full
//! node whose client checks every message (by runs, in batches of what
//! has arrived) before it shows it. So the verification it does costs its
//! own process, not the benchmark's. It says how many messages it has
//! shown (for the publisher's flow control) and, once the run is over and
//! it is told the measured window, the latency of each message it showed
//! in it, measured against the benchmark's clock (its base instant, passed
//! as Unix nanoseconds on the command line).

use crate::children::Server;
use crate::member::{unix_ns, Report, Window};
use crate::payload::now_ns;
use crate::stats::{Phase, Probe};
use crate::{BenchError, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest wait for the window's answer once the run is over.
const ANSWER_LIMIT: Duration = Duration::from_secs(20);

/// Starts member `name` of the relay at `uri` in a process of its own;
/// returns once its chat is active, with its process id and the task that
/// follows it until `cancel`, then gathers what it showed in `phase`'s
/// window into `probe` and stops it.
pub async fn subscribe(
    uri: &str,
    name: &str,
    mut probe: Probe,
    phase: Arc<Phase>,
    cancel: CancellationToken,
) -> Result<(u32, JoinHandle<Probe>)> {
    let base = unix_ns().saturating_sub(now_ns()).to_string();
    let args = [
        "node",
        "--relay",
        uri,
        "--name",
        name,
        "--probe-base",
        &base,
    ];
    let (mut server, mut lines) =
        Server::spawn_self_lines(&format!("member {name}"), &args).await?;
    let pid = server.pid;
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(line)) => {
                        if let Some(Report::Progress(n)) = Report::parse(&line) {
                            probe.progress.set(n);
                        }
                    }
                    _ => break,
                },
                _ = cancel.cancelled() => break,
            }
        }
        let (start, end) = phase.window_ns();
        let asked = server.send_line(&format!("window {start} {end}")).await;
        let answer = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(w) = Window::parse(&line) {
                    return Some(w);
                }
            }
            None
        };
        match (asked, tokio::time::timeout(ANSWER_LIMIT, answer).await) {
            (Ok(()), Ok(Some(w))) => {
                probe.progress.set(w.shown);
                probe.counted = w.latencies_ns.len() as u64;
                probe.malformed = w.malformed;
                probe.latencies_ns = w.latencies_ns;
            }
            _ => eprintln!(
                "chat-bench: {}",
                BenchError::Setup(format!("{}: no window answer", server.label))
            ),
        }
        server.stop().await;
        probe
    });
    Ok((pid, task))
}
