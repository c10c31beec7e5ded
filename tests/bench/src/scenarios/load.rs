//! B, latency under load, and C, many clients: publishers at a fixed total
//! rate, many subscribers; send-to-receive latency percentiles, and (C)
//! the server's resident memory per idle connection.

use super::{attach, LoadSpec};
use crate::payload;
use crate::procstat;
use crate::report::{Row, ScenarioId, Series};
use crate::stats::{percentile_curve, percentiles, Phase};
use crate::systems::{finish_all, Deployment, Publisher, SystemKind};
use crate::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Longest wait for in-flight messages after the publishers stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);

/// Publishes at `period` intervals, starting at `start`, until `stop`.
async fn publish_paced(
    mut publisher: Publisher,
    index: u32,
    start: Instant,
    period: Duration,
    stop: CancellationToken,
    sent: Arc<AtomicU64>,
) -> Result<()> {
    let mut tick = tokio::time::interval_at(start, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut n = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        publisher.publish(payload::make(index, n)).await?;
        sent.fetch_add(1, Ordering::Relaxed);
        n += 1;
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

async fn measure(
    scenario: ScenarioId,
    dep: &Deployment,
    spec: LoadSpec,
    series: &mut Series,
) -> Result<Row> {
    let thin = spec.thin && dep.kind == SystemKind::Ours;
    let spec = match spec.ours_subs {
        Some(n) if dep.kind == SystemKind::Ours => LoadSpec { subs: n, ..spec },
        _ => spec,
    };
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
    let subs = attach(dep, spec.subs, &phase, thin).await?;
    let attach_s = attach_start.elapsed().as_secs_f64();
    // Let the server settle (as long as the warm-up) before reading memory.
    tokio::time::sleep(spec.warmup).await;
    // Memory of whichever process serves the sessions now (ours may have
    // failed over during the joins), against its own baseline.
    let (_, serving) = dep.serving().await?;
    let serving = serving.unwrap_or(dep.main_pid());
    let base = pids
        .iter()
        .position(|&p| p == serving)
        .map_or(0, |i| rss_base[i]);
    let rss_idle = procstat::rss_bytes(serving)?;

    let stop = CancellationToken::new();
    let sent = Arc::new(AtomicU64::new(0));
    let period = Duration::from_secs_f64(spec.pubs as f64 / f64::from(spec.rate));
    let t0 = Instant::now();
    let tasks: Vec<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let offset = period.mul_f64(i as f64 / spec.pubs as f64);
            tokio::spawn(publish_paced(
                p,
                i as u32,
                t0 + offset,
                period,
                stop.clone(),
                sent.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(spec.warmup).await;
    let cpu0 = procstat::cpu_ticks_all(&pids)?;
    phase.measure();
    tokio::time::sleep(spec.measure).await;
    phase.finish();
    let cpu1 = procstat::cpu_ticks_all(&pids)?;
    let rss_loaded = procstat::rss_bytes(serving)?;
    let (epoch_after, _) = dep.serving().await?;
    stop.cancel();
    for task in tasks {
        task.await
            .map_err(|e| crate::BenchError::Setup(format!("publisher task: {e}")))??;
    }
    let expected = sent.load(Ordering::Relaxed) * spec.subs as u64;
    let received = || subs.iter().map(|s| s.progress.received()).sum::<u64>();
    let drain_until = Instant::now() + DRAIN_LIMIT;
    while received() < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let received = received();
    let probes = finish_all(subs).await;
    let reconnects: u64 = probes.iter().map(|p| p.reconnects).sum();
    let counted: u64 = probes.iter().map(|p| p.counted).sum();
    let mut lat: Vec<u64> = probes.into_iter().flat_map(|p| p.latencies_ns).collect();
    let summary = percentiles(&mut lat);
    let key = format!("{scenario:?}/{}", dep.kind.label());
    series.latency_curves.insert(key, percentile_curve(&lat));

    let kind = if thin { "thin subs" } else { "subs" };
    let mut row = Row::new(
        scenario,
        dep.kind,
        format!(
            "{} {kind}, {} pubs, {} msg/s",
            spec.subs, spec.pubs, spec.rate
        ),
    );
    row.set("subs", spec.subs as f64);
    row.set("p50_ms", summary.p50_ms);
    row.set("p99_ms", summary.p99_ms);
    row.set("p999_ms", summary.p999_ms);
    row.set("max_ms", summary.max_ms);
    row.set("samples", summary.count as f64);
    row.set(
        "delivered_in_window_per_s",
        counted as f64 / spec.measure.as_secs_f64(),
    );
    row.set(
        "delivered_fraction",
        received as f64 / expected.max(1) as f64,
    );
    row.set("reconnects", reconnects as f64);
    row.set("attach_s", attach_s);
    let tps = procstat::ticks_per_second() as f64;
    row.set(
        "server_cpu_us_per_msg",
        (cpu1 - cpu0) as f64 / tps * 1e6 / counted.max(1) as f64,
    );
    row.result = format!(
        "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
        summary.p50_ms, summary.p99_ms, summary.p999_ms
    );
    if spec.memory {
        let per_conn = |rss: u64| rss.saturating_sub(base) as f64 / 1024.0 / spec.subs as f64;
        row.set("idle_kb_per_conn", per_conn(rss_idle));
        row.set("loaded_kb_per_conn", per_conn(rss_loaded));
        row.set("server_rss_idle_mb", rss_idle as f64 / 1048576.0);
        row.result = format!(
            "p99 {:.2} ms (p50 {:.2}); {:.1} KB/conn idle, {:.1} KB/conn under load",
            summary.p99_ms,
            summary.p50_ms,
            per_conn(rss_idle),
            per_conn(rss_loaded)
        );
    }
    row.set("host_changes", (epoch_after - epoch_before) as f64);
    if epoch_after > epoch_before {
        row.result += &format!(
            "; the host changed {} time(s) (lease lost under load)",
            epoch_after - epoch_before
        );
    }
    if received < expected {
        row.result += &format!("; delivered {received} of {expected}");
    }
    Ok(row)
}
