//! Rows of the results table, verdicts against the targets, and the
//! markdown and JSON written at the end.

use crate::systems::SystemKind;
use crate::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// A scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
pub enum ScenarioId {
    /// Fan-out throughput.
    #[value(name = "A", alias = "a")]
    A,
    /// Latency under load.
    #[value(name = "B", alias = "b")]
    B,
    /// Many clients.
    #[value(name = "C", alias = "c")]
    C,
    /// Migration pause.
    #[value(name = "D", alias = "d")]
    D,
    /// Crash failover.
    #[value(name = "E", alias = "e")]
    E,
    /// What a room costs at the relay.
    #[value(name = "F", alias = "f")]
    F,
    /// A late joiner's catch-up.
    #[value(name = "G", alias = "g")]
    G,
}

impl ScenarioId {
    /// Title for tables.
    pub fn title(self) -> &'static str {
        match self {
            ScenarioId::A => "A fan-out throughput",
            ScenarioId::B => "B latency under load",
            ScenarioId::C => "C many clients",
            ScenarioId::D => "D migration pause",
            ScenarioId::E => "E crash failover",
            ScenarioId::F => "F cost of a room (relay)",
            ScenarioId::G => "G catch-up",
        }
    }
}

/// One system in one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Scenario.
    pub scenario: ScenarioId,
    /// System.
    pub system: SystemKind,
    /// Clients in the run, in words.
    pub clients: String,
    /// The result, in words.
    pub result: String,
    /// Every number measured, by name.
    pub metrics: BTreeMap<String, f64>,
    /// The target, in words.
    pub target: String,
    /// How the result compares with the target and the other systems.
    pub verdict: String,
    /// Why a row has no result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl Row {
    /// A row without verdict yet.
    pub fn new(scenario: ScenarioId, system: SystemKind, clients: String) -> Row {
        Row {
            scenario,
            system,
            clients,
            result: String::new(),
            metrics: BTreeMap::new(),
            target: String::new(),
            verdict: String::new(),
            skipped: None,
        }
    }

    /// A row for a run that did not happen or failed.
    pub fn skipped(scenario: ScenarioId, system: SystemKind, why: String) -> Row {
        let mut row = Row::new(scenario, system, String::new());
        row.result = format!("not run: {why}");
        row.skipped = Some(why);
        row
    }

    /// Records a metric.
    pub fn set(&mut self, name: &str, value: f64) {
        self.metrics.insert(name.to_string(), value);
    }

    /// A metric, if measured.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied()
    }
}

/// Data behind the plots.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Series {
    /// Latency by percentile, `(nines, ms)`, keyed `"B/ours"`.
    pub latency_curves: BTreeMap<String, Vec<(f64, f64)>>,
    /// D: `(migration number, gap ms)` for every client and migration.
    pub migration_gaps: Vec<(f64, f64)>,
    /// E: `(kill number, ms until the client received again)` for every
    /// client and kill.
    pub failover: Vec<(f64, f64)>,
    /// E in the two-member room: `(kill number, ms until the survivor
    /// received again)` for every kill.
    pub failover_pair: Vec<(f64, f64)>,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// When the run ended (Unix seconds).
    pub finished_unix: u64,
    /// `quick` or `full`.
    pub plan: String,
    /// CPU cores of the machine.
    pub cores: usize,
    /// 1-minute load average before and after the run (others share the
    /// machine).
    pub load_average: (Option<f64>, Option<f64>),
    /// What signing and checking one chat message costs on this machine.
    pub signatures: Option<crate::signatures::SignatureCost>,
    /// The table.
    pub rows: Vec<Row>,
    /// Plot data.
    pub series: Series,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn times(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.2}x"))
}

/// Fills targets and verdicts, comparing with the other systems' rows.
pub fn judge(rows: &mut [Row]) {
    let snapshot = rows.to_vec();
    for row in rows.iter_mut().filter(|r| r.skipped.is_none()) {
        let scenario = row.scenario;
        let peer = |k: SystemKind, m: &str| {
            snapshot
                .iter()
                .find(|r| r.scenario == scenario && r.system == k && r.skipped.is_none())
                .and_then(|r| r.get(m))
        };
        let (target, met, detail) = match scenario {
            ScenarioId::A => judge_fanout(row, &peer),
            ScenarioId::B | ScenarioId::C => judge_load(row, &peer),
            ScenarioId::D => judge_migration(row),
            ScenarioId::E => judge_failover(row),
            ScenarioId::F => {
                (row.target, row.verdict) = judge_rooms(row);
                continue;
            }
            ScenarioId::G => {
                (row.target, row.verdict) = judge_catchup(row, &peer);
                continue;
            }
        };
        (row.target, row.verdict) =
            target_verdict(row.system == SystemKind::Ours, target, met, detail);
    }
}

/// A metric of another system's row in the same scenario.
type Peer<'a> = dyn Fn(SystemKind, &str) -> Option<f64> + 'a;

/// A scenario's target, whether `row` met it, and the comparison in words.
type Judged = (&'static str, bool, String);

fn judge_fanout(row: &Row, peer: &Peer) -> Judged {
    let m = "delivered_per_s";
    let vs_tonic = ratio(row.get(m), peer(SystemKind::Tonic, m));
    let vs_signed = ratio(row.get(m), peer(SystemKind::TonicSigned, m));
    let vs_nats = ratio(row.get(m), peer(SystemKind::Nats, m));
    let vs_redis = ratio(row.get(m), peer(SystemKind::Redis, m));
    let met = vs_signed.is_some_and(|r| r >= 1.0)
        && vs_tonic.is_some_and(|r| r >= 0.5)
        && vs_redis.is_none_or(|r| r > 1.0);
    let verdict = format!(
        "{} bare tonic, {} bare tonic signed, {} NATS, {} Redis",
        times(vs_tonic),
        times(vs_signed),
        times(vs_nats),
        times(vs_redis)
    );
    (
        ">= 1.0x bare tonic signed, >= 0.5x bare tonic, ahead of Redis",
        met,
        verdict,
    )
}

/// B against bare tonic's p99; C against the memory target.
fn judge_load(row: &Row, peer: &Peer) -> Judged {
    let vs_tonic = ratio(row.get("p99_ms"), peer(SystemKind::Tonic, "p99_ms"));
    let vs_signed = ratio(row.get("p99_ms"), peer(SystemKind::TonicSigned, "p99_ms"));
    let mut verdict = format!(
        "p99 {} bare tonic, {} bare tonic signed",
        times(vs_tonic),
        times(vs_signed)
    );
    let (subs, tonic_subs) = (row.get("subs"), peer(SystemKind::Tonic, "subs"));
    if let (Some(a), Some(b)) = (subs, tonic_subs) {
        if a != b {
            let _ = write!(verdict, " (with {a:.0} vs {b:.0} subscribers)");
        }
    }
    if row.scenario == ScenarioId::B {
        let met = vs_signed.is_some_and(|r| r <= 1.2) && vs_tonic.is_some_and(|r| r <= 2.0);
        (
            "p99 <= 1.2x bare tonic signed, <= 2x bare tonic",
            met,
            verdict,
        )
    } else {
        let kb = row.get("idle_kb_per_conn");
        if let Some(kb) = kb {
            let _ = write!(verdict, "; {kb:.1} KB/conn");
        }
        let met = kb.is_some_and(|kb| kb <= 20.0) && vs_tonic.is_some_and(|r| r <= 1.2);
        (
            "<= 20 KB server memory per idle connection, p99 <= 1.2x bare tonic",
            met,
            verdict,
        )
    }
}

fn judge_migration(row: &Row) -> Judged {
    let met = row.get("pause_p99_ms").is_some_and(|p| p < 15.0)
        && row.get("lost") == Some(0.0)
        && row.get("dup") == Some(0.0);
    let verdict = format!(
        "p99 pause {:.1} ms, lost {}, dup {}",
        row.get("pause_p99_ms").unwrap_or(f64::NAN),
        row.get("lost").unwrap_or(f64::NAN),
        row.get("dup").unwrap_or(f64::NAN)
    );
    ("p99 pause < 15 ms, lost = dup = 0", met, verdict)
}

fn judge_failover(row: &Row) -> Judged {
    let (p50, max) = (row.get("failover_p50_ms"), row.get("failover_max_ms"));
    let met = p50.is_some_and(|m| m < 400.0) && max.is_some_and(|m| m < 1000.0);
    let verdict = format!(
        "p50 {:.0} ms, max {:.0} ms",
        p50.unwrap_or(f64::NAN),
        max.unwrap_or(f64::NAN)
    );
    (
        "every member receiving again: p50 < 400 ms, max < 1 s after the kill",
        met,
        verdict,
    )
}

/// F has no target: it reports what rooms cost.
fn judge_rooms(row: &Row) -> (String, String) {
    let verdict = format!(
        "{:.2} KB/room, {:.1} KB/member, {:.0} moves/s",
        row.get("bytes_per_room").unwrap_or(f64::NAN) / 1024.0,
        row.get("bytes_per_member").unwrap_or(f64::NAN) / 1024.0,
        row.get("moves_per_s").unwrap_or(f64::NAN)
    );
    ("(none: measured)".into(), verdict)
}

/// G has no target: it sets ours' catch-up beside bare tonic signed's.
fn judge_catchup(row: &Row, peer: &Peer) -> (String, String) {
    let target = "(none: measured)".to_string();
    if row.system != SystemKind::Ours {
        return (target, "(reference)".into());
    }
    let rate = ratio(
        row.get("catchup_per_s"),
        peer(SystemKind::TonicSigned, "catchup_per_s"),
    );
    let memory = ratio(
        row.get("joiner_peak_rss_mb"),
        peer(SystemKind::TonicSigned, "joiner_peak_rss_mb"),
    );
    let verdict = format!(
        "{} bare tonic signed's rate, {} its peak memory",
        times(rate),
        times(memory)
    );
    (target, verdict)
}

fn target_verdict(ours: bool, target: &str, met: bool, detail: String) -> (String, String) {
    if !ours {
        return ("(reference)".into(), detail);
    }
    let word = if met { "MET" } else { "BEHIND" };
    (target.to_string(), format!("{word}: {detail}"))
}

/// The table, one row per system and scenario.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| Scenario | System | Clients | Result | Target | Verdict |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.scenario.title(),
            r.system.label(),
            r.clients,
            r.result,
            r.target,
            r.verdict
        );
    }
    out
}

/// Writes `results.json` and `results.md` into `dir`.
pub fn write(dir: &Path, results: &Results, notes: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(results)? + "\n",
    )?;
    let load = |l: Option<f64>| l.map_or("?".into(), |l| format!("{l:.2}"));
    let signatures = results.signatures.map_or(String::new(), |c| {
        format!(
            "Signatures: Ed25519 sign {:.1} us and verify {:.1} us per chat message on one core \
             (the sender signs; the host and every receiver verify).\n\n",
            c.sign_us, c.verify_us
        )
    });
    let md = format!(
        "# Benchmark results ({} plan)\n\n{} cores; 1-minute load average {} before, {} after \
         (the machine is shared: numbers are noisy).\n\n{signatures}{}\n{}",
        results.plan,
        results.cores,
        load(results.load_average.0),
        load(results.load_average.1),
        markdown(&results.rows),
        notes
    );
    std::fs::write(dir.join("results.md"), md)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: ScenarioId, system: SystemKind, metrics: &[(&str, f64)]) -> Row {
        let mut row = Row::new(scenario, system, String::new());
        for &(name, value) in metrics {
            row.set(name, value);
        }
        row
    }

    #[test]
    fn ours_is_judged_against_the_peers_and_the_peers_are_references() {
        let m = "delivered_per_s";
        let mut rows = vec![
            row(ScenarioId::A, SystemKind::Ours, &[(m, 900.0)]),
            row(ScenarioId::A, SystemKind::Tonic, &[(m, 1000.0)]),
            row(ScenarioId::A, SystemKind::TonicSigned, &[(m, 600.0)]),
            row(ScenarioId::A, SystemKind::Nats, &[(m, 750.0)]),
            row(
                ScenarioId::B,
                SystemKind::Ours,
                &[("p99_ms", 3.0), ("subs", 20.0)],
            ),
            row(
                ScenarioId::B,
                SystemKind::Tonic,
                &[("p99_ms", 2.0), ("subs", 10.0)],
            ),
            row(
                ScenarioId::D,
                SystemKind::Ours,
                &[("pause_p99_ms", 12.5), ("lost", 0.0), ("dup", 0.0)],
            ),
            row(
                ScenarioId::E,
                SystemKind::Ours,
                &[("failover_p50_ms", 800.0), ("failover_max_ms", 1200.0)],
            ),
            row(
                ScenarioId::F,
                SystemKind::Ours,
                &[
                    ("bytes_per_room", 2048.0),
                    ("bytes_per_member", 51200.0),
                    ("moves_per_s", 1500.0),
                ],
            ),
            Row::skipped(ScenarioId::A, SystemKind::Redis, "not here".into()),
        ];
        judge(&mut rows);
        let verdicts: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.target.as_str(), r.verdict.as_str()))
            .collect();
        assert_eq!(
            verdicts,
            [
                (
                    ">= 1.0x bare tonic signed, >= 0.5x bare tonic, ahead of Redis",
                    "MET: 0.90x bare tonic, 1.50x bare tonic signed, 1.20x NATS, n/a Redis"
                ),
                (
                    "(reference)",
                    "1.00x bare tonic, 1.67x bare tonic signed, 1.33x NATS, n/a Redis"
                ),
                (
                    "(reference)",
                    "0.60x bare tonic, 1.00x bare tonic signed, 0.80x NATS, n/a Redis"
                ),
                (
                    "(reference)",
                    "0.75x bare tonic, 1.25x bare tonic signed, 1.00x NATS, n/a Redis"
                ),
                (
                    "p99 <= 1.2x bare tonic signed, <= 2x bare tonic",
                    "BEHIND: p99 1.50x bare tonic, n/a bare tonic signed (with 20 vs 10 subscribers)"
                ),
                ("(reference)", "p99 1.00x bare tonic, n/a bare tonic signed"),
                (
                    "p99 pause < 15 ms, lost = dup = 0",
                    "MET: p99 pause 12.5 ms, lost 0, dup 0"
                ),
                (
                    "every member receiving again: p50 < 400 ms, max < 1 s after the kill",
                    "BEHIND: p50 800 ms, max 1200 ms"
                ),
                (
                    "(none: measured)",
                    "2.00 KB/room, 50.0 KB/member, 1500 moves/s"
                ),
                ("", ""),
            ]
        );
    }
}
