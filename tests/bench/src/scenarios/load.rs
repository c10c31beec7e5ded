//! B, latency under load, and C, many clients: publishers at a fixed total
//! rate, many subscribers; send-to-receive latency percentiles, and (C)
//! the server's resident memory per idle connection.

use super::timing::{wait_until, Pace};
use super::{attach, join_publisher, LoadSpec};
use crate::payload;
use crate::procstat;
use crate::report::{Row, ScenarioId, Series};
use crate::stats::{percentile_curve, percentiles, Percentiles, Phase};
use crate::systems::{finish_all, Deployment, Publisher, Subscription, SystemKind};
use crate::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest wait for in-flight messages after the publishers stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);

/// Publishes one message at each of `pace`'s send times.
async fn publish_paced(
    mut publisher: Publisher,
    index: u32,
    mut pace: Pace,
    sent: Arc<AtomicU64>,
) -> Result<()> {
    while let Some(n) = pace.next().await {
        publisher.publish(payload::make(index, n)).await?;
        sent.fetch_add(1, Ordering::Relaxed);
    }
    publisher.close().await;
    Ok(())
}

/// Runs B or C for one system.
pub async fn run(
    scenario: ScenarioId,
    kind: SystemKind,
    spec: LoadSpec,
    series: &mut Series,
) -> Result<Row> {
    let dep = Deployment::start(kind).await?;
    let outcome = measure(scenario, &dep, spec, series).await;
    dep.stop().await;
    outcome
}

/// The server's resident memory around the subscribers' arrival.
struct Memory {
    /// The process that serves the sessions.
    serving: u32,
    /// Its size before the subscribers came.
    base: u64,
    /// Its size once they settled, before any message.
    idle: u64,
    /// Its size at the end of the measured window.
    loaded: u64,
}

/// Delivery and latency, once the subscribers are finished.
struct Delivery {
    /// Messages every subscriber together should have received.
    expected: u64,
    /// Messages they received.
    received: u64,
    /// Received within the measured window.
    counted: u64,
    reconnects: u64,
    latencies_ns: Vec<u64>,
}

async fn measure(
    scenario: ScenarioId,
    dep: &Deployment,
    spec: LoadSpec,
    series: &mut Series,
) -> Result<Row> {
    let (spec, thin) = sized_for(dep.kind, spec);
    let mut publishers = Vec::new();
    for i in 0..spec.pubs {
        publishers.push(dep.publisher(i).await?);
    }
    let pids = dep.pids();
    let rss_base: Vec<u64> = pids
        .iter()
        .map(|&p| procstat::rss_bytes(p))
        .collect::<std::io::Result<_>>()?;
    let (epoch_before, _) = dep.serving().await?;
    let phase = Arc::new(Phase::default());
    let attach_start = std::time::Instant::now();
    let subs = attach(dep, spec.subs, &phase, spec.members, thin).await?;
    let attach_s = attach_start.elapsed().as_secs_f64();
    // Let the server settle (as long as the warm-up) before reading memory.
    tokio::time::sleep(spec.warmup).await;
    let mut memory = idle_memory(dep, &pids, &rss_base).await?;
    let publishing = Publishing::start(publishers, &spec);
    tokio::time::sleep(spec.warmup).await;
    let cpu_ticks = window_cpu(&pids, &phase, spec.measure).await?;
    memory.loaded = procstat::rss_bytes(memory.serving)?;
    let (epoch_after, _) = dep.serving().await?;
    let sent = publishing.stop().await?;
    let mut delivery = drain(subs, sent * spec.subs as u64).await;
    let mut lat = std::mem::take(&mut delivery.latencies_ns);
    let summary = percentiles(&mut lat);
    let key = format!("{scenario:?}/{}", dep.kind.label());
    series.latency_curves.insert(key, percentile_curve(&lat));

    let subs_said = match (spec.members, thin) {
        (0, true) => format!("{} thin subs", spec.subs),
        (0, false) => format!("{} subs", spec.subs),
        (m, true) => format!(
            "{} subs ({m} member processes, {} thin)",
            spec.subs,
            spec.subs.saturating_sub(m)
        ),
        (m, false) => format!("{} subs ({m} member processes)", spec.subs),
    };
    let mut row = Row::new(
        scenario,
        dep.kind,
        format!("{subs_said}, {} pubs, {} msg/s", spec.pubs, spec.rate),
    );
    set_delivery(&mut row, &spec, &summary, &delivery, cpu_ticks);
    row.set("attach_s", attach_s);
    if spec.memory {
        set_memory(&mut row, &spec, &summary, &memory);
    }
    note_trouble(&mut row, epoch_after - epoch_before, &delivery);
    Ok(row)
}

/// The sizes for `kind` (ours may run fewer subscribers, and only ours has
/// member processes), and whether its subscribers are thin.
fn sized_for(kind: SystemKind, spec: LoadSpec) -> (LoadSpec, bool) {
    let ours = kind == SystemKind::Ours;
    let thin = spec.thin && ours;
    let spec = match spec.ours_subs {
        Some(n) if ours => LoadSpec { subs: n, ..spec },
        _ => spec,
    };
    let members = if ours { spec.members.min(spec.subs) } else { 0 };
    (LoadSpec { members, ..spec }, thin)
}

/// Adds to the result what went wrong beside the numbers: host changes
/// during the run, and messages not delivered.
fn note_trouble(row: &mut Row, host_changes: u64, delivery: &Delivery) {
    row.set("host_changes", host_changes as f64);
    if host_changes > 0 {
        row.result += &format!("; the host changed {host_changes} time(s) (lease lost under load)");
    }
    if delivery.received < delivery.expected {
        row.result += &format!("; delivered {} of {}", delivery.received, delivery.expected);
    }
}

/// The memory of whichever process serves the sessions now (ours may have
/// failed over during the joins), with its own baseline from `rss_base`
/// (one per process in `pids`).
async fn idle_memory(dep: &Deployment, pids: &[u32], rss_base: &[u64]) -> Result<Memory> {
    let (_, serving) = dep.serving().await?;
    let serving = serving.unwrap_or(dep.main_pid());
    let base = pids
        .iter()
        .position(|&p| p == serving)
        .map_or(0, |i| rss_base[i]);
    let idle = procstat::rss_bytes(serving)?;
    Ok(Memory {
        serving,
        base,
        idle,
        loaded: idle,
    })
}

/// The publishers while they run.
struct Publishing {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<Result<()>>>,
    sent: Arc<AtomicU64>,
}

impl Publishing {
    /// Starts the publishers, `spec.rate` messages per second in all.
    fn start(publishers: Vec<Publisher>, spec: &LoadSpec) -> Self {
        let stop = CancellationToken::new();
        let sent = Arc::new(AtomicU64::new(0));
        let t0 = Instant::now();
        let tasks = publishers
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let pace = Pace::new(t0, i, spec.pubs, spec.rate, stop.clone());
                tokio::spawn(publish_paced(p, i as u32, pace, sent.clone()))
            })
            .collect();
        Self { stop, tasks, sent }
    }

    /// Stops them; the messages they published.
    async fn stop(self) -> Result<u64> {
        self.stop.cancel();
        for task in self.tasks {
            join_publisher(task).await??;
        }
        Ok(self.sent.load(Ordering::Relaxed))
    }
}

/// The servers' (`pids`) CPU ticks over the measured window, marked on
/// `phase`.
async fn window_cpu(pids: &[u32], phase: &Phase, measure: Duration) -> Result<u64> {
    let cpu0 = procstat::cpu_ticks_all(pids)?;
    phase.measure();
    tokio::time::sleep(measure).await;
    phase.finish();
    let cpu1 = procstat::cpu_ticks_all(pids)?;
    Ok(cpu1 - cpu0)
}

/// Waits (at most [`DRAIN_LIMIT`]) for the messages in flight, then
/// finishes the subscribers.
async fn drain(subs: Vec<Subscription>, expected: u64) -> Delivery {
    let received = || subs.iter().map(|s| s.progress.received()).sum::<u64>();
    wait_until(DRAIN_LIMIT, Duration::from_millis(10), || {
        received() >= expected
    })
    .await;
    let received = received();
    let probes = finish_all(subs).await;
    Delivery {
        expected,
        received,
        counted: probes.iter().map(|p| p.counted).sum(),
        reconnects: probes.iter().map(|p| p.reconnects).sum(),
        latencies_ns: probes.into_iter().flat_map(|p| p.latencies_ns).collect(),
    }
}

/// Latency, delivery and CPU columns, and the result in latency.
fn set_delivery(
    row: &mut Row,
    spec: &LoadSpec,
    summary: &Percentiles,
    delivery: &Delivery,
    cpu_ticks: u64,
) {
    row.set("subs", spec.subs as f64);
    row.set("p50_ms", summary.p50_ms);
    row.set("p99_ms", summary.p99_ms);
    row.set("p999_ms", summary.p999_ms);
    row.set("max_ms", summary.max_ms);
    row.set("samples", summary.count as f64);
    row.set(
        "delivered_in_window_per_s",
        delivery.counted as f64 / spec.measure.as_secs_f64(),
    );
    row.set(
        "delivered_fraction",
        delivery.received as f64 / delivery.expected.max(1) as f64,
    );
    row.set("reconnects", delivery.reconnects as f64);
    let tps = procstat::ticks_per_second() as f64;
    row.set(
        "server_cpu_us_per_msg",
        cpu_ticks as f64 / tps * 1e6 / delivery.counted.max(1) as f64,
    );
    row.result = format!(
        "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
        summary.p50_ms, summary.p99_ms, summary.p999_ms
    );
}

/// C's memory columns, and the result said in memory per connection.
fn set_memory(row: &mut Row, spec: &LoadSpec, summary: &Percentiles, memory: &Memory) {
    let per_conn = |rss: u64| rss.saturating_sub(memory.base) as f64 / 1024.0 / spec.subs as f64;
    row.set("idle_kb_per_conn", per_conn(memory.idle));
    row.set("loaded_kb_per_conn", per_conn(memory.loaded));
    row.set("server_rss_idle_mb", memory.idle as f64 / 1048576.0);
    row.result = format!(
        "p99 {:.2} ms (p50 {:.2}); {:.1} KB/conn idle, {:.1} KB/conn under load",
        summary.p99_ms,
        summary.p50_ms,
        per_conn(memory.idle),
        per_conn(memory.loaded)
    );
}
