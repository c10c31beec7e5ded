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
    let find = |rows: &[Row], s: ScenarioId, k: SystemKind, m: &str| {
        rows.iter()
            .find(|r| r.scenario == s && r.system == k && r.skipped.is_none())
            .and_then(|r| r.get(m))
    };
    let snapshot = rows.to_vec();
    for row in rows.iter_mut().filter(|r| r.skipped.is_none()) {
        let peer = |k, m| find(&snapshot, row.scenario, k, m);
        let mine = |m: &str| row.get(m);
        let ours = row.system == SystemKind::Ours;
        let (target, verdict) = match row.scenario {
            ScenarioId::A => {
                let m = "delivered_per_s";
                let vs_tonic = ratio(mine(m), peer(SystemKind::Tonic, m));
                let vs_nats = ratio(mine(m), peer(SystemKind::Nats, m));
                let vs_redis = ratio(mine(m), peer(SystemKind::Redis, m));
                let met = vs_tonic.is_some_and(|r| r >= 0.8)
                    && vs_nats.is_none_or(|r| r > 1.0)
                    && vs_redis.is_none_or(|r| r > 1.0);
                let verdict = format!(
                    "{} bare tonic, {} NATS, {} Redis",
                    times(vs_tonic),
                    times(vs_nats),
                    times(vs_redis)
                );
                target_verdict(
                    ours,
                    ">= 0.8x bare tonic, ahead of NATS and Redis",
                    met,
                    verdict,
                )
            }
            ScenarioId::B | ScenarioId::C => {
                let vs_tonic = ratio(mine("p99_ms"), peer(SystemKind::Tonic, "p99_ms"));
                let mut verdict = format!("p99 {} bare tonic", times(vs_tonic));
                let (subs, tonic_subs) = (mine("subs"), peer(SystemKind::Tonic, "subs"));
                if let (Some(a), Some(b)) = (subs, tonic_subs) {
                    if a != b {
                        let _ = write!(verdict, " (with {a:.0} vs {b:.0} subscribers)");
                    }
                }
                if row.scenario == ScenarioId::B {
                    let met = vs_tonic.is_some_and(|r| r <= 1.2);
                    target_verdict(ours, "p99 <= 1.2x bare tonic", met, verdict)
                } else {
                    let kb = mine("idle_kb_per_conn");
                    if let Some(kb) = kb {
                        let _ = write!(verdict, "; {kb:.1} KB/conn");
                    }
                    let met = kb.is_some_and(|kb| kb < 40.0);
                    target_verdict(ours, "< 40 KB server memory per connection", met, verdict)
                }
            }
            ScenarioId::D => {
                let met = mine("pause_p99_ms").is_some_and(|p| p < 50.0)
                    && mine("lost") == Some(0.0)
                    && mine("dup") == Some(0.0);
                let verdict = format!(
                    "p99 pause {:.1} ms, lost {}, dup {}",
                    mine("pause_p99_ms").unwrap_or(f64::NAN),
                    mine("lost").unwrap_or(f64::NAN),
                    mine("dup").unwrap_or(f64::NAN)
                );
                target_verdict(ours, "p99 pause < 50 ms, lost = dup = 0", met, verdict)
            }
            ScenarioId::E => {
                let max = mine("failover_max_ms");
                let met = max.is_some_and(|m| m < 1000.0);
                let verdict = format!("max {:.0} ms", max.unwrap_or(f64::NAN));
                target_verdict(
                    ours,
                    "every member receiving again < 1 s after the kill",
                    met,
                    verdict,
                )
            }
        };
        row.target = target;
        row.verdict = verdict;
    }
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
