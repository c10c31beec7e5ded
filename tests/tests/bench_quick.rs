//! The benchmark's quick run (every scenario at a small size), so the
//! benchmark keeps working: it must complete, and the migration scenario
//! must lose and duplicate nothing. Timings are reported, never asserted.
//! Without nats-server or redis-server the run skips those peers with a
//! line saying so, unless CI=true (then it fails).

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// Builds `chat-bench` (debug) and returns its path.
fn chat_bench() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "chat-bench"])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building chat-bench failed");
    // target/debug/deps/<test> -> target/debug/chat-bench
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join("chat-bench")
}

fn metric(row: &Value, name: &str) -> f64 {
    row["metrics"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("no metric {name} in {row}"))
}

#[test]
fn quick_benchmark_completes_and_migrations_lose_nothing() {
    let out = std::env::temp_dir().join(format!("chat-bench-quick-{}", std::process::id()));
    let run = Command::new(chat_bench())
        .arg("--quick")
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run chat-bench --quick");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("{stdout}\n{stderr}");
    assert!(run.status.success(), "chat-bench --quick failed:\n{stderr}");

    let text = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    let results: Value = serde_json::from_str(&text).expect("results.json is JSON");
    let rows = results["rows"].as_array().expect("rows");
    for scenario in ["A", "B", "C", "D", "E", "F", "G"] {
        assert!(
            rows.iter().any(|r| r["scenario"] == scenario
                && r["system"] == "ours"
                && r.get("skipped").is_none()),
            "scenario {scenario} has no result for ours"
        );
    }
    for scenario in ["A", "B", "G"] {
        assert!(
            rows.iter()
                .any(|r| r["scenario"] == scenario && r["system"] == "tonic-signed"),
            "scenario {scenario} has no row for bare tonic signed"
        );
    }
    let g = rows
        .iter()
        .find(|r| r["scenario"] == "G" && r["system"] == "ours")
        .expect("row G");
    assert!(metric(g, "messages") > 0.0, "no history in G: {g}");
    let d = rows
        .iter()
        .find(|r| r["scenario"] == "D" && r["system"] == "ours")
        .expect("row D");
    assert!(metric(d, "migrations") >= 3.0, "too few migrations: {d}");
    assert_eq!(
        metric(d, "lost"),
        0.0,
        "messages lost across migrations: {d}"
    );
    assert_eq!(
        metric(d, "dup"),
        0.0,
        "messages duplicated across migrations: {d}"
    );
    let f = rows
        .iter()
        .find(|r| r["scenario"] == "F" && r["system"] == "ours")
        .expect("row F");
    assert!(metric(f, "moves") > 0.0, "no host moved in F: {f}");
    assert_eq!(metric(f, "moves_failed"), 0.0, "moves failed in F: {f}");
    let _ = std::fs::remove_dir_all(&out);
}
