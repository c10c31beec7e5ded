//! G, catch-up: a late joiner receives and checks a history of N messages
//! from 100 senders; messages per second from its start until it has shown
//! (checked) all N, and its peak resident memory.
//!
//! - **ours**: a relay and member processes `h0` (host) and `h1` (standby);
//!   100 thin members, each with its own key and its own session, fill the
//!   room's log concurrently (each signs its own chain, at most 32 of its
//!   messages unacknowledged); then a fresh member process (a full node,
//!   the `node` subcommand) joins and shows the whole log, every message
//!   checked by its client, by runs, before it is shown.
//! - **bare tonic signed**: the bare tonic server keeping a log; this
//!   process signs N messages of 100 senders in turn (each its own chain,
//!   as a member signs) and sends them to it; then a late joiner process
//!   receives the log and checks every message by runs, in batches of what
//!   has arrived.
//!
//! Each joiner is a process of its own, so its peak memory (VmHWM) and CPU
//! are its own; the time runs from its spawn (process start, connection,
//! and for ours relay registration and a signed Hello) until it has shown
//! the N-th message. If ours cannot fill N messages within the fill limit,
//! it uses what it filled, and says so.

use super::CatchupSpec;
use crate::children::{Server, StdoutLines};
use crate::member::{Counter, Report};
use crate::payload;
use crate::procstat;
use crate::report::{Row, ScenarioId};
use crate::systems::ours::OursCluster;
use crate::systems::ours_thin::ThinPublisher;
use crate::systems::tonic_bare::{self, TonicPublisher};
use crate::systems::tonic_signed::{self, Signer, Verifier};
use crate::systems::{SystemKind, DEFAULT_LEASE, NO_MIGRATION};
use crate::{within, BenchError, Result};
use futures_util::{StreamExt, TryStreamExt};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Longest a filling member may take to join.
const JOIN_LIMIT: Duration = Duration::from_secs(60);

/// What filling the history gave.
struct Fill {
    /// Messages in the history.
    messages: u64,
    /// How long filling took.
    seconds: f64,
    /// Messages the host refused.
    refused: u64,
    /// Why publishing stopped before the end, if it did.
    stopped: Option<String>,
}

/// What the late joiner did.
struct Joined {
    /// From its spawn until it showed the last message.
    seconds: f64,
    /// Its peak resident set.
    peak_rss: u64,
    /// Its CPU time.
    cpu_s: f64,
}

/// Runs G for one system (ours or bare tonic signed).
pub async fn run(kind: SystemKind, spec: CatchupSpec) -> Result<Row> {
    let (fill, joined) = match kind {
        SystemKind::Ours => ours(spec).await?,
        SystemKind::TonicSigned => tonic(spec).await?,
        _ => {
            return Err(BenchError::Setup(
                "G runs ours and bare tonic signed only".into(),
            ))
        }
    };
    Ok(row(kind, spec, &fill, &joined))
}

async fn ours(spec: CatchupSpec) -> Result<(Fill, Joined)> {
    let names = ["h0".to_string(), "h1".to_string()];
    let cluster = OursCluster::start(NO_MIGRATION, DEFAULT_LEASE, &names).await?;
    let outcome = async {
        let (fill, publishers) = fill_ours(&cluster.uri, spec).await?;
        let args = [
            "node",
            "--relay",
            &cluster.uri,
            "--name",
            "late",
            "--count-to",
            &fill.messages.to_string(),
        ];
        let joined = late_joiner(&args, fill.messages, spec.join_limit).await;
        for p in publishers {
            p.close();
        }
        Ok((fill, joined?))
    }
    .await;
    cluster.stop().await;
    outcome
}

/// Fills the room's log: `spec.senders` thin members publish their shares
/// of `spec.messages` concurrently, until done or the fill limit.
async fn fill_ours(uri: &str, spec: CatchupSpec) -> Result<(Fill, Vec<ThinPublisher>)> {
    let senders = spec.senders.max(1);
    let publishers: Vec<ThinPublisher> = futures_util::stream::iter(0..senders)
        .map(|i| async move {
            let name = tonic_signed::sender_name(i);
            within(
                JOIN_LIMIT,
                &format!("{name} to join"),
                ThinPublisher::join(uri, &name),
            )
            .await
        })
        .buffered(8)
        .try_collect()
        .await?;
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + spec.fill_limit;
    let share = spec.messages.div_ceil(u64::from(senders));
    let tasks: Vec<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(i, mut p)| {
            let share = share.min(spec.messages.saturating_sub(share * i as u64));
            tokio::spawn(async move {
                for k in 0..share {
                    let sent =
                        tokio::time::timeout_at(deadline, p.publish(payload::make(i as u32, k)));
                    if !matches!(sent.await, Ok(Ok(()))) {
                        break;
                    }
                }
                p.settle(Duration::from_secs(10)).await;
                Ok::<_, BenchError>(p)
            })
        })
        .collect();
    let mut publishers = Vec::new();
    for task in tasks {
        let p = task
            .await
            .map_err(|e| BenchError::Setup(format!("publisher task: {e}")))??;
        publishers.push(p);
    }
    let sum = |f: fn(&ThinPublisher) -> u64| publishers.iter().map(f).sum::<u64>();
    let fill = Fill {
        messages: sum(|p| p.acked.load(Ordering::Relaxed)),
        seconds: start.elapsed().as_secs_f64(),
        refused: sum(|p| p.refused.load(Ordering::Relaxed)),
        stopped: publishers.iter().find_map(ThinPublisher::ended),
    };
    Ok((fill, publishers))
}

async fn tonic(spec: CatchupSpec) -> Result<(Fill, Joined)> {
    let server = Server::spawn_self("bare tonic server", &["tonic-server", "--log"]).await?;
    let outcome = async {
        let fill = fill_tonic(&server.addr, spec).await?;
        let args = [
            "tonic-joiner",
            "--addr",
            &server.addr,
            "--count-to",
            &fill.messages.to_string(),
        ];
        let joined = late_joiner(&args, fill.messages, spec.join_limit).await?;
        Ok((fill, joined))
    }
    .await;
    server.stop().await;
    outcome
}

/// Signs `spec.messages` messages of `spec.senders` senders in turn and
/// sends them to the server, which keeps them.
async fn fill_tonic(addr: &str, spec: CatchupSpec) -> Result<Fill> {
    let senders = spec.senders.max(1);
    let mut signers: Vec<Signer> = (0..senders).map(Signer::new).collect();
    let mut publisher = TonicPublisher::connect(addr).await?;
    let start = Instant::now();
    for n in 0..spec.messages {
        let i = (n % u64::from(senders)) as usize;
        let index = n / u64::from(senders);
        let frame = signers[i].sign(payload::make(i as u32, index));
        publisher.send(frame).await?;
    }
    publisher.close().await;
    Ok(Fill {
        messages: spec.messages,
        seconds: start.elapsed().as_secs_f64(),
        refused: 0,
        stopped: None,
    })
}

/// Starts a late joiner process (`args`), waits (at most `limit`) until
/// it has shown `expect` messages, reads its peak memory and CPU, and
/// stops it.
async fn late_joiner(args: &[&str], expect: u64, limit: Duration) -> Result<Joined> {
    let start = Instant::now();
    let (server, mut lines) = Server::spawn_self_lines("late joiner", args).await?;
    let outcome = async {
        let seconds = within(limit, "the late joiner to show the history", async {
            shown_all(&mut lines, expect).await?;
            Ok(start.elapsed().as_secs_f64())
        })
        .await?;
        let tps = procstat::ticks_per_second() as f64;
        Ok(Joined {
            seconds,
            peak_rss: procstat::peak_rss_bytes(server.pid)?,
            cpu_s: procstat::cpu_ticks(server.pid)? as f64 / tps,
        })
    }
    .await;
    server.stop().await;
    outcome
}

/// Reads count lines until one reaches `expect`.
async fn shown_all(lines: &mut StdoutLines, expect: u64) -> Result<()> {
    while let Some(line) = lines.next_line().await? {
        if let Some(Report::Count { count, .. }) = Report::parse(&line) {
            if count >= expect {
                return Ok(());
            }
        }
    }
    Err(BenchError::Setup(
        "the late joiner exited before showing the history".into(),
    ))
}

/// The late joiner of the signed bare tonic server (the `tonic-joiner`
/// subcommand): receives the log, checks every message by runs in batches
/// of what has arrived, and prints count lines as `node --count-to` does.
pub async fn tonic_joiner(addr: &str, count_to: u64) -> Result<()> {
    let (_open, mut inbound) = tonic_bare::replaying(addr).await?;
    let mut verifier = Verifier::default();
    let mut counter = Counter::new(count_to);
    println!(
        "{}",
        Report::Count {
            at_ns: crate::member::unix_ns(),
            count: 0
        }
    );
    loop {
        let batch = tonic_signed::next_batch(&mut inbound).await;
        if batch.is_empty() {
            return Ok(());
        }
        let shown = verifier.check(&batch).iter().filter(|v| **v).count();
        if let Some(line) = counter.add(shown as u64) {
            println!("{line}");
        }
    }
}

/// G's row.
fn row(kind: SystemKind, spec: CatchupSpec, fill: &Fill, joined: &Joined) -> Row {
    let n = fill.messages;
    let mut row = Row::new(
        ScenarioId::G,
        kind,
        format!("1 late joiner; {n} messages of {} senders", spec.senders),
    );
    let rate = n as f64 / joined.seconds.max(1e-9);
    let fill_rate = n as f64 / fill.seconds.max(1e-9);
    let mb = joined.peak_rss as f64 / 1048576.0;
    row.set("messages", n as f64);
    row.set("planned_messages", spec.messages as f64);
    row.set("senders", f64::from(spec.senders));
    row.set("catchup_s", joined.seconds);
    row.set("catchup_per_s", rate);
    row.set("joiner_peak_rss_mb", mb);
    row.set("joiner_cpu_s", joined.cpu_s);
    row.set(
        "joiner_cpu_us_per_msg",
        joined.cpu_s * 1e6 / n.max(1) as f64,
    );
    row.set("fill_s", fill.seconds);
    row.set("fill_per_s", fill_rate);
    row.set("refused", fill.refused as f64);
    row.result = format!(
        "{:.0}k msg/s shown and checked ({n} in {:.2} s), joiner CPU {:.1} us/msg, peak RSS {mb:.0} MB; history filled at {:.1}k msg/s",
        rate / 1e3,
        joined.seconds,
        joined.cpu_s * 1e6 / n.max(1) as f64,
        fill_rate / 1e3
    );
    match (&fill.stopped, n < spec.messages) {
        (Some(why), _) => {
            row.result += &format!(
                " (only {n} of {} filled: publishing stopped after {:.0} s, {why})",
                spec.messages, fill.seconds
            )
        }
        (None, true) => {
            row.result += &format!(
                " (only {n} of {} filled within {:.0} s)",
                spec.messages,
                spec.fill_limit.as_secs_f64()
            )
        }
        (None, false) => {}
    }
    if fill.refused > 0 {
        row.result += &format!("; the host refused {} messages", fill.refused);
    }
    row
}
