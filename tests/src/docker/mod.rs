//! Containers for the tests across Docker (`tests/tests/docker.rs`,
//! `docker_faults.rs`, `docker_reach.rs`): the demo's `FROM scratch`
//! images built from statically linked binaries (`images.rs`), a relay and
//! bot nodes each in its own container on a network of the test's own,
//! over TLS (`cluster.rs`), the `docker` CLI, the nodes' output read back
//! from `docker logs --timestamps` (`output.rs`) and the checks of it
//! across faults (`history.rs`).
//!
//! Every name (networks, containers, volume, image tags) carries the
//! test's name, the process id and a per-process counter, so tests running
//! at once, in one test binary or in several, never collide. A [`Cluster`]
//! removes its containers, networks and volume when dropped, also when the
//! test fails; the images are built once per process and removed when the
//! last cluster using them is gone.

mod cluster;
mod history;
mod images;
mod output;

pub use cluster::*;
pub use history::*;
pub use images::Images;
pub use output::*;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any awaited condition may take.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// The largest image the issue allows.
pub const MAX_IMAGE_BYTES: u64 = 20_000_000;
/// Port every node listens on inside its container.
pub const NODE_PORT: u16 = 7000;
/// Port the relay listens on inside its container.
pub const RELAY_PORT: u16 = 5000;

/// Whether a Docker test can run. Without a Docker engine it prints one
/// line saying so and returns false (the test then passes), except with
/// `CI=true`, where missing Docker fails the test.
pub fn docker_or_skip(test: &str) -> bool {
    match docker_available() {
        Ok(()) => true,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but Docker is not available: {why}"
            );
            println!("{test} skipped: Docker is not available ({why})");
            false
        }
    }
}

/// Whether the Docker engine answers; why not otherwise.
pub fn docker_available() -> Result<(), String> {
    docker_result(&["info", "--format", "{{.ServerVersion}}"]).map(|_| ())
}

/// Runs `docker` with `args`; its stdout, or its stderr as the error.
pub fn docker_result(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Runs `docker` with `args`, failing the test if it fails.
pub fn docker(args: &[&str]) -> String {
    docker_result(args).unwrap_or_else(|e| panic!("docker {}: {e}", args.join(" ")))
}

/// Runs `docker` with `args` whatever its exit code; its trimmed stdout
/// (e.g. the status a `health` subcommand prints, `NOT_SERVING` included).
pub fn docker_stdout(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker: {e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs a command to success; its stdout.
pub fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `done` until it holds, failing the test after [`DEADLINE`].
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A name no other test, run or process uses: `chat-{test}-{pid}-{n}`
/// (lower case, safe for container, network and DNS names).
pub fn unique_name(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // The time tells apart runs whose process ids repeat, in case a killed
    // run left something behind.
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    format!(
        "chat-{}-{}-{n}-{micros:x}",
        test.to_lowercase(),
        std::process::id()
    )
}
