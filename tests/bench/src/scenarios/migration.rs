//! D, migration pause (ours only): clients through the real client
//! library while messages flow and the host moves every interval; per
//! client and migration, the gap between the last message before the move
//! and the first after it; and every message delivered exactly once.

use super::tracker::{total_lost_and_dup, Crowd, Tracker};
use super::{incomplete_note, ms, MigrationSpec};
use crate::report::{Row, ScenarioId, Series};
use crate::stats::{percentiles, Percentiles};
use crate::systems::ours::{current_host, OursCluster};
use crate::systems::{SystemKind, DEFAULT_LEASE};
use crate::Result;
use std::collections::BTreeSet;
use std::time::Duration;

/// How long delivery may take to complete after the publishers stop.
const DELIVERY_LIMIT: Duration = Duration::from_secs(15);

/// Runs D.
pub async fn run(spec: MigrationSpec, series: &mut Series) -> Result<Row> {
    let names = ["h0".to_string(), "h1".to_string()];
    let cluster = OursCluster::start(spec.interval, DEFAULT_LEASE, &names).await?;
    let outcome = measure(&cluster, spec, series).await;
    cluster.stop().await;
    outcome
}

/// Per client and migration, the pause in delivery, in two parts: until
/// the new host welcomed the client, and from the welcome to the first
/// message.
#[derive(Default)]
struct Gaps {
    /// Last message before the move to first after it.
    pause: Vec<u64>,
    /// Last message before the move to the new host's welcome.
    to_welcome: Vec<u64>,
    /// The welcome to the first message after it.
    welcome_to_message: Vec<u64>,
    /// Hosts moved to.
    hosts: BTreeSet<String>,
    /// Switches with a message before and none after.
    unfinished: u32,
}

impl Gaps {
    /// Every switch after `start_epoch` of every tracker (each pause also
    /// added to `series`).
    fn of(trackers: &[Tracker], start_epoch: u64, series: &mut Series) -> Self {
        let mut gaps = Gaps::default();
        for s in trackers
            .iter()
            .flat_map(|t| &t.switches)
            .filter(|s| s.epoch > start_epoch)
        {
            gaps.hosts.insert(s.host.clone());
            match (s.last_before_ns, s.first_after_ns) {
                (Some(before), Some(after)) => {
                    let gap = after.saturating_sub(before);
                    gaps.pause.push(gap);
                    gaps.to_welcome.push(s.host_event_ns.saturating_sub(before));
                    gaps.welcome_to_message
                        .push(after.saturating_sub(s.host_event_ns));
                    series
                        .migration_gaps
                        .push(((s.epoch - start_epoch) as f64, gap as f64 / 1e6));
                }
                (Some(_), None) => gaps.unfinished += 1,
                _ => {}
            }
        }
        gaps
    }

    /// The pause columns of D's row; the pause percentiles.
    fn set_columns(&mut self, row: &mut Row) -> Percentiles {
        let pause = percentiles(&mut self.pause);
        row.set("hosts_visited", self.hosts.len() as f64);
        row.set("pause_p50_ms", pause.p50_ms);
        row.set("pause_p99_ms", pause.p99_ms);
        row.set("pause_max_ms", pause.max_ms);
        row.set("pause_samples", pause.count as f64);
        let (welcome, first) = (
            percentiles(&mut self.to_welcome),
            percentiles(&mut self.welcome_to_message),
        );
        row.set("until_welcome_p50_ms", welcome.p50_ms);
        row.set("until_welcome_p99_ms", welcome.p99_ms);
        row.set("welcome_to_message_p50_ms", first.p50_ms);
        row.set("welcome_to_message_p99_ms", first.p99_ms);
        row.set("switches_without_message_after", f64::from(self.unfinished));
        pause
    }
}

async fn measure(cluster: &OursCluster, spec: MigrationSpec, series: &mut Series) -> Result<Row> {
    let names = (0..spec.clients).map(|i| format!("u-{i:04}")).collect();
    let mut crowd = Crowd::join(&cluster.uri, names).await?;
    let start_epoch = current_host(&cluster.uri).await?.epoch;
    crowd.start_publishing(spec.pubs, spec.rate);
    let started = tokio::time::Instant::now();
    let epoch = migrations_seen(&cluster.uri, start_epoch, &spec).await?;
    // Let the last switch see messages on the new host.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let run_s = started.elapsed().as_secs_f64();
    crowd.stop_publishing().await;
    let complete = crowd.wait_delivered(DELIVERY_LIMIT).await;
    let sent = crowd.sent_counts();
    let trackers = crowd.finish().await;

    let (lost, dup) = total_lost_and_dup(&trackers, &sent);
    let errors: usize = trackers.iter().map(|t| t.errors.len()).sum();
    let mut gaps = Gaps::of(&trackers, start_epoch, series);
    let migrations = epoch.saturating_sub(start_epoch);
    let mut row = Row::new(
        ScenarioId::D,
        SystemKind::Ours,
        format!(
            "{} clients ({} publish), {} msg/s, move every {:.0} ms",
            spec.clients,
            spec.pubs,
            spec.rate,
            ms(spec.interval)
        ),
    );
    row.set("migrations", migrations as f64);
    let pause = gaps.set_columns(&mut row);
    row.set("sent", sent.iter().sum::<u64>() as f64);
    row.set("lost", lost as f64);
    row.set("dup", dup as f64);
    row.set("error_events", errors as f64);
    row.set("run_s", run_s);
    row.result = format!(
        "{migrations} migrations over {} hosts: pause p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; lost {lost}, dup {dup}{}",
        gaps.hosts.len(),
        pause.p50_ms,
        pause.p99_ms,
        pause.max_ms,
        incomplete_note(complete)
    );
    Ok(row)
}

/// Polls the relay until the host epoch has moved `spec.migrations` times
/// past `start_epoch` (or the time for that, with room for slow handoffs,
/// has passed); the epoch reached.
async fn migrations_seen(uri: &str, start_epoch: u64, spec: &MigrationSpec) -> Result<u64> {
    let limit = spec.interval * (spec.migrations as u32 + 2) * 3;
    let started = tokio::time::Instant::now();
    let mut epoch = start_epoch;
    while epoch < start_epoch + spec.migrations + 1 && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(200)).await;
        epoch = current_host(uri).await?.epoch;
    }
    Ok(epoch)
}
