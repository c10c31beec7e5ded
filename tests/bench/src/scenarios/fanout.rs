//! A, fan-out throughput: one publisher at full speed, N subscribers;
//! delivered messages per second and server CPU per delivered message.
//!
//! "Full speed" is flow-controlled the same way for every system: the
//! publisher never runs more than [`WINDOW`] messages ahead of its slowest
//! subscriber, so what is measured is the rate every subscriber sustains
//! with nothing dropped, not how fast a buffer fills.

use super::{attach, join_publisher, FanoutSpec};
use crate::payload;
use crate::procstat;
use crate::report::{Row, ScenarioId};
use crate::stats::{percentiles, Phase, Probe, Progress};
use crate::systems::{finish_all, Deployment, Publisher, SystemKind};
use crate::Result;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How far the publisher may run ahead of the slowest subscriber.
pub const WINDOW: u64 = 5_000;

/// Publishes as fast as the window allows until `stop`; returns the count.
async fn publish_flat_out(
    mut publisher: Publisher,
    progress: Vec<Arc<Progress>>,
    stop: CancellationToken,
) -> Result<u64> {
    let mut sent = 0u64;
    while !stop.is_cancelled() {
        let slowest = progress.iter().min_by_key(|p| p.received());
        if let Some(slowest) = slowest {
            if sent.saturating_sub(slowest.received()) >= WINDOW {
                // Woken every few hundred deliveries; re-check now and then.
                let _ =
                    tokio::time::timeout(Duration::from_millis(5), slowest.notify.notified()).await;
                continue;
            }
        }
        publisher.publish(payload::make(0, sent)).await?;
        sent += 1;
    }
    publisher.close().await;
    Ok(sent)
}

/// Runs A for one system.
pub async fn run(kind: SystemKind, spec: FanoutSpec) -> Result<Row> {
    let dep = Deployment::start(kind).await?;
    let outcome = measure(&dep, spec).await;
    dep.stop().await;
    outcome
}

/// CPU ticks so far: every server process, the host alone, and the
/// clients' processes (this one, and ours' member processes).
#[derive(Debug, Clone, Copy)]
struct Cpu {
    servers: u64,
    host: u64,
    clients: u64,
}

impl Cpu {
    fn read(dep: &Deployment, pids: &[u32], clients: &[u32]) -> Result<Self> {
        Ok(Self {
            servers: procstat::cpu_ticks_all(pids)?,
            host: procstat::cpu_ticks(dep.main_pid())?,
            clients: procstat::cpu_ticks_all(clients)?,
        })
    }

    /// The ticks spent since `before`.
    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            servers: self.servers - before.servers,
            host: self.host - before.host,
            clients: self.clients - before.clients,
        }
    }
}

async fn measure(dep: &Deployment, spec: FanoutSpec) -> Result<Row> {
    let phase = Arc::new(Phase::default());
    // Ours' subscribers are all member processes.
    let subs = attach(dep, spec.subs, &phase, spec.subs, false).await?;
    let clients: Vec<u32> = std::iter::once(std::process::id())
        .chain(subs.iter().filter_map(|s| s.pid))
        .collect();
    let progress = subs.iter().map(|s| s.progress.clone()).collect();
    let publisher = dep.publisher(0).await?;
    let stop = CancellationToken::new();
    let publishing = tokio::spawn(publish_flat_out(publisher, progress, stop.clone()));

    tokio::time::sleep(spec.warmup).await;
    let pids = dep.pids();
    let cpu0 = Cpu::read(dep, &pids, &clients)?;
    let start = Instant::now();
    phase.measure();
    tokio::time::sleep(spec.measure).await;
    phase.finish();
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = Cpu::read(dep, &pids, &clients)?.since(cpu0);
    stop.cancel();
    let sent = join_publisher(publishing).await??;
    let probes = finish_all(subs).await;
    Ok(row(dep.kind, spec, elapsed, cpu, sent, probes))
}

/// A's row from the measured window of `elapsed` seconds.
fn row(
    kind: SystemKind,
    spec: FanoutSpec,
    elapsed: f64,
    cpu: Cpu,
    sent: u64,
    probes: Vec<Probe>,
) -> Row {
    let delivered: u64 = probes.iter().map(|p| p.counted).sum();
    let mut lat: Vec<u64> = probes.into_iter().flat_map(|p| p.latencies_ns).collect();
    let lat = percentiles(&mut lat);
    let tps = procstat::ticks_per_second() as f64;
    let per_msg_us = |ticks: u64| ticks as f64 / tps * 1e6 / delivered.max(1) as f64;
    let rate = delivered as f64 / elapsed;

    let mut row = Row::new(ScenarioId::A, kind, format!("{} subs, 1 pub", spec.subs));
    row.set("subs", spec.subs as f64);
    row.set("delivered_per_s", rate);
    row.set("server_cpu_us_per_msg", per_msg_us(cpu.servers));
    row.set("host_cpu_us_per_msg", per_msg_us(cpu.host));
    row.set("client_cpu_us_per_msg", per_msg_us(cpu.clients));
    row.set("published", sent as f64);
    row.set("latency_p50_ms", lat.p50_ms);
    row.set("latency_p99_ms", lat.p99_ms);
    row.result = format!(
        "{:.0}k msg/s delivered; server CPU {:.2} us/msg",
        rate / 1e3,
        per_msg_us(cpu.servers)
    );
    row
}
