//! E, crash failover (ours only): every member node runs in a process of
//! its own, so whichever one hosts is killed with SIGKILL, again and
//! again; per kill, the time until every surviving member receives
//! messages again, and at the end every acknowledged message delivered
//! exactly once to every survivor. It runs twice: in a crowd (killed
//! members stay dead) and in a two-member room (after each kill a new
//! member joins and catches up, so the next kill again leaves one
//! survivor, which hosts itself).

use super::proc_crowd::{Outcome, ProcCrowd};
use super::timing::wait_until;
use super::tracker::total_lost_and_dup;
use super::{incomplete_note, FailoverSpec};
use crate::member::unix_ns;
use crate::report::{Row, ScenarioId, Series};
use crate::stats::{percentiles, Percentiles};
use crate::systems::ours::{current_host, OursCluster};
use crate::systems::{SystemKind, DEFAULT_LEASE, NO_MIGRATION};
use crate::{BenchError, Result};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long members may take to receive again after a kill.
const RECOVERY_LIMIT: Duration = Duration::from_secs(15);
/// How long delivery may take to complete after the publishers stop.
const DELIVERY_LIMIT: Duration = Duration::from_secs(15);
/// How long a member joining between kills may take to catch up.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(15);

/// One kill.
struct Kill {
    epoch: u64,
    at_ns: u64,
}

/// Runs E with `spec`: a crowd, or a two-member room (`replace`), whose
/// points go to their own series.
pub async fn run(spec: FailoverSpec, series: &mut Series) -> Result<Row> {
    let points = if spec.replace {
        &mut series.failover_pair
    } else {
        &mut series.failover
    };
    let cluster = OursCluster::start(NO_MIGRATION, DEFAULT_LEASE, &[]).await?;
    let names: Vec<String> = (0..spec.members).map(|i| format!("m{i:02}")).collect();
    let crowd = ProcCrowd::start(&cluster.uri, &names).await;
    let outcome = match crowd {
        Ok(crowd) => measure(&cluster.uri, crowd, spec, points).await,
        Err(e) => Err(e),
    };
    cluster.stop().await;
    outcome
}

/// Waits until every running member receives through a host newer than
/// `epoch`; the number still waiting at the deadline.
async fn recovered(crowd: &ProcCrowd, epoch: u64) -> usize {
    let waiting = || {
        crowd
            .live()
            .filter(|l| l.receiving_epoch.load(Ordering::Acquire) <= epoch)
            .count()
    };
    wait_until(RECOVERY_LIMIT, Duration::from_millis(5), || waiting() == 0).await;
    waiting()
}

async fn measure(
    uri: &str,
    mut crowd: ProcCrowd,
    spec: FailoverSpec,
    points: &mut Vec<(f64, f64)>,
) -> Result<Row> {
    let rate_each = f64::from(spec.rate) / spec.pubs as f64;
    for _ in 0..spec.pubs {
        crowd.add_publisher(rate_each).await?;
    }
    tokio::time::sleep(spec.settle).await;
    let mut kills = Vec::new();
    let mut timeouts = 0;
    for k in 0..spec.kills {
        let (kill, waiting) = kill_host(uri, &mut crowd, k, spec.pubs, rate_each).await?;
        kills.push(kill);
        if waiting > 0 {
            timeouts += 1;
        }
        if spec.replace && k + 1 < spec.kills {
            join_one(uri, &mut crowd, k + 1).await?;
        }
        tokio::time::sleep(spec.settle).await;
    }
    crowd.stop_publishing().await?;
    let complete = crowd.wait_delivered(DELIVERY_LIMIT).await;
    let expected = crowd.expected();
    let outcomes = crowd.finish().await;

    let (mut all_members, mut each) = recovery_times(&kills, &outcomes, points);
    let (lost, dup) = total_lost_and_dup(
        outcomes
            .iter()
            .filter(|o| o.killed_at.is_none())
            .map(|o| &o.tracker),
        &expected,
    );
    let tally = Tally {
        kills: kills.len(),
        timeouts,
        all: percentiles(&mut all_members),
        each: percentiles(&mut each),
        expected: expected.iter().sum(),
        lost,
        dup,
        complete,
    };
    Ok(row(&spec, &tally))
}

/// What E counted, for its row.
struct Tally {
    kills: usize,
    /// Kills after which some member was not receiving by the deadline.
    timeouts: u32,
    /// Per kill, until the last member received again.
    all: Percentiles,
    /// Per kill and member, until it received again.
    each: Percentiles,
    /// Messages every survivor must have.
    expected: u64,
    lost: u64,
    dup: u64,
    /// Whether delivery completed by the deadline.
    complete: bool,
}

fn row(spec: &FailoverSpec, t: &Tally) -> Row {
    let publish = if spec.pubs == 1 {
        "1 publishes".to_string()
    } else {
        format!("{} publish", spec.pubs)
    };
    let joins = if spec.replace {
        ", a new member after each kill"
    } else {
        ""
    };
    let mut row = Row::new(
        ScenarioId::E,
        SystemKind::Ours,
        format!(
            "{} member processes ({publish}), {} msg/s{joins}",
            spec.members, spec.rate
        ),
    );
    let receiving = if spec.members == 2 {
        "the survivor"
    } else {
        "every member"
    };
    row.set("members", spec.members as f64);
    row.set("kills", t.kills as f64);
    row.set("recovery_timeouts", f64::from(t.timeouts));
    row.set("failover_p50_ms", t.all.p50_ms);
    row.set("failover_max_ms", t.all.max_ms);
    row.set("per_member_p50_ms", t.each.p50_ms);
    row.set("per_member_p99_ms", t.each.p99_ms);
    row.set("expected_messages", t.expected as f64);
    row.set("lost", t.lost as f64);
    row.set("dup", t.dup as f64);
    row.result = format!(
        "{} kill -9 of the host: {receiving} receiving again after p50 {:.0} ms, max {:.0} ms; lost {}, dup {}{}",
        t.kills,
        t.all.p50_ms,
        t.all.max_ms,
        t.lost,
        t.dup,
        incomplete_note(t.complete)
    );
    row
}

/// Kill number `k`: kills whichever member hosts, replaces it as a
/// publisher if it was one (keeping `pubs` publishing `rate_each`), and
/// waits until the others receive again; the kill and how many members
/// were still waiting at the deadline.
async fn kill_host(
    uri: &str,
    crowd: &mut ProcCrowd,
    k: usize,
    pubs: usize,
    rate_each: f64,
) -> Result<(Kill, usize)> {
    let host = current_host(uri).await?;
    let at_ns = unix_ns();
    crowd.kill(&host.name, k)?;
    // Keep the message flow up: a killed publisher is replaced.
    while crowd.publishing() < pubs {
        crowd.add_publisher(rate_each).await?;
    }
    let waiting = recovered(crowd, host.epoch).await;
    let took = (unix_ns() - at_ns) as f64 / 1e6;
    eprintln!(
        "chat-bench:   kill {}: host {} (epoch {}): {}",
        k + 1,
        host.name,
        host.epoch,
        match waiting {
            0 => format!("every member receiving again after {took:.0} ms"),
            n => format!("{n} members not receiving after {took:.0} ms"),
        }
    );
    let kill = Kill {
        epoch: host.epoch,
        at_ns,
    };
    Ok((kill, waiting))
}

/// Starts a new member after `kills` kills and waits until it holds every
/// message the others had when it started (the host sends a joining
/// member the room's log), so that it can take over at the next kill.
async fn join_one(uri: &str, crowd: &mut ProcCrowd, kills: usize) -> Result<()> {
    let had = crowd
        .live()
        .map(|l| l.distinct.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let name = format!("m{:02}", crowd.started());
    let started = std::time::Instant::now();
    let live = crowd.join(uri, &name, kills).await?;
    let caught_up = wait_until(CATCH_UP_LIMIT, Duration::from_millis(5), || {
        live.distinct.load(Ordering::Relaxed) >= had
    })
    .await;
    if !caught_up {
        return Err(BenchError::Timeout(format!(
            "{name}, joining after kill {kills}, to receive the {had} messages before it"
        )));
    }
    eprintln!(
        "chat-bench:   {name} joined and caught up with {had} messages after {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Per kill, when each member running then (the killed host aside) first
/// received through a newer host (each added to `points`); the slowest
/// member's time per kill, and every member's.
fn recovery_times(
    kills: &[Kill],
    outcomes: &[Outcome],
    points: &mut Vec<(f64, f64)>,
) -> (Vec<u64>, Vec<u64>) {
    let (mut all_members, mut each) = (Vec::new(), Vec::new());
    for (k, kill) in kills.iter().enumerate() {
        let mut times: Vec<u64> = outcomes
            .iter()
            .filter(|o| o.survived(k))
            .filter_map(|o| {
                let s = o.tracker.switches.iter().find(|s| s.epoch > kill.epoch)?;
                Some(s.first_after_ns?.saturating_sub(kill.at_ns))
            })
            .collect();
        for &t in &times {
            points.push(((k + 1) as f64, t as f64 / 1e6));
        }
        each.extend_from_slice(&times);
        times.sort_unstable();
        all_members.extend(times.last());
    }
    (all_members, each)
}
