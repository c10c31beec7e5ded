//! A client in another language: stock Python grpcio (BoringSSL, which
//! accepts no Ed25519 certificate) completes a TLS handshake with a node
//! and with the relay, trusting only the relay's `ca.pem`, and reads their
//! health (`examples/python/health_check.py`). Needs `python3` with
//! `grpcio` and `grpcio-health-checking` (`.ci/run` installs them); fails,
//! rather than skips, without them.

use chat_proto::tls;
use chat_tests::phases::start_tls_chat;
use chat_tests::{temp_dir, Relay};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

const INSTALL: &str =
    "python3 -m pip install --quiet --disable-pip-version-check grpcio grpcio-health-checking \
     (.ci/run does it)";

/// The example script, in the repository's `examples/python/`.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join("python")
        .join("health_check.py")
}

/// Runs `python3 -c CODE` or the script with `args`; returns whether it
/// succeeded, and what it printed (stdout, then stderr).
async fn python(args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new("python3")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("python3 {args:?} did not finish within 60 s"))
    .unwrap_or_else(|e| panic!("python3 is needed for this test ({e}); then {INSTALL}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// Health of the server at `address` as the Python client reads it,
/// expecting the certificate to name `server_name`.
async fn python_health(address: &str, ca: &Path, server_name: &str) -> String {
    let script = script();
    let (ok, out, err) = python(&[
        &script.to_string_lossy(),
        address,
        &ca.to_string_lossy(),
        server_name,
    ])
    .await;
    assert!(
        ok,
        "grpcio could not read the health of {address} as {server_name}: {out} {err}"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_completes_tls_with_a_node_and_the_relay() {
    let (ok, out, err) = python(&[
        "-c",
        "import grpc; from grpc_health.v1 import health_pb2_grpc; print(grpc.__version__)",
    ])
    .await;
    assert!(
        ok,
        "python3 with grpcio and grpcio-health-checking is needed: {INSTALL}\n{out}\n{err}"
    );
    eprintln!("grpcio {out}");

    let dir = temp_dir("python-client");
    let relay = Relay::start_tls(&dir, 1, Duration::from_secs(3600)).await;
    let members = start_tls_chat(&relay, &["alice"]).await;
    // The only trust the client has: the relay's authority, as a file.
    let ca = dir.join(tls::AUTHORITY_CERT_FILE);
    assert!(ca.exists(), "the relay keeps {}", ca.display());

    let (address, node_id) = {
        let shared = members[0].shared();
        (
            shared.ctx.identity.address.clone(),
            shared.ctx.identity.node_id.clone(),
        )
    };
    let node = python_health(&address, &ca, &tls::node_domain(&node_id)).await;
    assert_eq!(node, "SERVING", "the node's health");

    let relay_health = python_health(&relay.addr.to_string(), &ca, "localhost").await;
    assert_eq!(relay_health, "SERVING", "the relay's health");
}
