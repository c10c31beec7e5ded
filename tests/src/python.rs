//! The Python example client (`examples/python/chat_client.py`) as a
//! test drives it: started with its arguments, fed lines on its standard
//! input, its JSON events collected. Tests that use it fail, never skip,
//! without python3 and the client's packages.

use crate::{Member, DEADLINE};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// The client script.
pub const CHAT_CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/python/chat_client.py"
);
/// The directory of the example scripts (and of `chat_protocol.py`).
pub const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/python");
/// How to get what the client needs (`.ci/run` does it).
pub const INSTALL: &str = "python3 -m pip install grpcio grpcio-tools cryptography pynacl";

/// Fails the test, saying how to install them, unless python3 and the
/// client's packages are there.
pub async fn require_python() {
    let out = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools, cryptography, nacl"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("python3 is needed for this test ({e}); then: {INSTALL}"));
    assert!(
        out.status.success(),
        "python3 lacks grpcio, grpcio-tools, cryptography or pynacl ({}); install them: {INSTALL}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Events of `kind` among `seen`.
pub fn of_type<'a>(seen: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    seen.iter().filter(move |e| e["type"] == kind)
}

/// The Python client, its JSON events and the lines it is given.
pub struct PyClient {
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::UnboundedReceiver<Value>,
    /// Every event it printed so far, in order.
    pub seen: Vec<Value>,
}

impl PyClient {
    /// Starts the client with `args` (after the script), reading lines to
    /// send from its standard input (`--stdin`).
    pub fn start(args: &[&str]) -> PyClient {
        let mut child = spawn_python(
            [CHAT_CLIENT]
                .into_iter()
                .chain(args.iter().copied())
                .chain(["--stdin"]),
        );
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("the client printed a non-JSON line {line:?}: {e}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        PyClient {
            child,
            stdin,
            events,
            seen: Vec::new(),
        }
    }

    /// Gives it one input line (a message, or `$private USER TEXT`).
    pub async fn say(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{text}\n").as_bytes())
            .await
            .expect("write to the client");
        stdin.flush().await.expect("flush");
    }

    /// Waits until what the client printed satisfies `cond`; fails the
    /// test after the deadline.
    pub async fn wait_until(&mut self, what: &str, cond: impl Fn(&[Value]) -> bool) {
        if !self.wait_within(DEADLINE, &cond).await {
            panic!("timed out waiting for {what}: {:#?}", self.seen);
        }
    }

    /// Waits at most `limit` until what the client printed satisfies
    /// `cond`; whether it does.
    pub async fn wait_within(&mut self, limit: Duration, cond: impl Fn(&[Value]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !cond(&self.seen) {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.seen.push(event),
                Ok(None) => panic!("the client ended: {:#?}", self.seen),
                Err(_) => return false,
            }
        }
        true
    }

    /// The epochs of the hosts that welcomed the client, in order.
    pub fn host_epochs(seen: &[Value]) -> Vec<u64> {
        of_type(seen, "host")
            .map(|e| e["epoch"].as_u64().unwrap_or(0))
            .collect()
    }

    /// Ends its input and waits for it to exit by itself, successfully.
    pub async fn finish(&mut self) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("the client exits once it has shown every message")
            .expect("wait for the client");
        while let Some(event) = self.events.recv().await {
            self.seen.push(event);
        }
        assert!(
            status.success(),
            "client exit status {status}: {:#?}",
            self.seen
        );
    }
}

/// Runs the Python `script` with `chat_protocol` importable (its protos
/// loaded as `c`), `input` as JSON on its standard input; returns the one
/// JSON value it prints.
pub async fn run_checks(script: &str, input: &Value) -> Value {
    let script = format!(
        "import json, sys\nsys.path.insert(0, sys.argv[1])\nimport chat_protocol as c\n\
         c.load_protos(str(c.REPO_PROTOS))\ndata = json.load(sys.stdin)\n{script}"
    );
    let mut child = spawn_python(["-c", &script, EXAMPLES]);
    let mut stdin = child.stdin.take().expect("stdin piped");
    stdin
        .write_all(input.to_string().as_bytes())
        .await
        .expect("write the cases");
    drop(stdin);
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("python3 finishes")
        .expect("run python3");
    assert!(out.status.success(), "the Python checks failed to run");
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

/// Each round the Python client and every one of `speakers` say
/// `"WHO ROUND"` (`py` for the Python client), then the test waits for a
/// new host to welcome the Python client before the next round.
pub async fn chat_rounds(py: &mut PyClient, speakers: &mut [&mut Member], rounds: usize) {
    for round in 0..rounds {
        py.say(&format!("py {round}")).await;
        for m in speakers.iter_mut() {
            let line = format!("{} {round}", m.name);
            m.say(&line).await;
        }
        let hosts = PyClient::host_epochs(&py.seen).len();
        py.wait_until("the host to move", |seen| {
            PyClient::host_epochs(seen).len() > hosts
        })
        .await;
    }
}

/// After [`chat_rounds`] and [`PyClient::finish`] of `py` (member
/// `py_name`): every speaker saw the Python member's messages in order and
/// reported no tampering; the Python client showed everyone's messages,
/// each verified, once and in log order, reported no failed verification,
/// followed the host's moves and had its messages acknowledged by hosts of
/// different terms.
pub async fn assert_chatted(
    py: &PyClient,
    py_name: &str,
    speakers: &mut [&mut Member],
    rounds: usize,
) {
    let expected =
        |who: &str| -> Vec<String> { (0..rounds).map(|r| format!("{who} {r}")).collect() };
    let everyone = speakers.len() + 1;
    for m in speakers.iter_mut() {
        m.wait_messages(everyone * rounds).await;
        let from_py: Vec<String> = m
            .messages()
            .into_iter()
            .filter(|(_, from, _)| from == py_name)
            .map(|(_, _, text)| text)
            .collect();
        assert_eq!(from_py, expected("py"), "{} sees the Python member", m.name);
        assert!(!m.has_seen("tampering", &[]), "{}: {:#?}", m.name, m.seen);
    }

    let seen = &py.seen;
    let failures: Vec<&Value> = of_type(seen, "verification_failed").collect();
    assert!(failures.is_empty(), "verification failures: {failures:#?}");
    let names = speakers.iter().map(|m| (m.name.as_str(), m.name.as_str()));
    for (name, prefix) in names.chain([(py_name, "py")]) {
        let texts: Vec<String> = of_type(seen, "message")
            .filter(|e| e["from"] == name)
            .map(|e| e["text"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(texts, expected(prefix), "the Python client shows {name}'s");
    }
    assert!(
        of_type(seen, "message").all(|e| e["verified"] == true),
        "{seen:#?}"
    );
    let seqs: Vec<u64> = of_type(seen, "message")
        .map(|e| e["seq"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "shown in log order: {seqs:?}"
    );

    // It kept chatting across host moves: its messages were acknowledged
    // by hosts of different terms, and it followed at least one move.
    let epochs = PyClient::host_epochs(seen);
    assert!(epochs.len() > rounds, "host moves followed: {epochs:?}");
    let ack_epochs: BTreeSet<u64> = of_type(seen, "ack")
        .map(|e| e["epoch"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        ack_epochs.len() >= 2,
        "acks by one host term only: {ack_epochs:?}"
    );
    let acked: BTreeSet<&str> = of_type(seen, "ack")
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(acked.len(), rounds, "each message acknowledged: {seen:#?}");
}

/// python3 with `args`, its standard input and output piped to the test,
/// killed when dropped.
fn spawn_python<'a>(args: impl IntoIterator<Item = &'a str>) -> Child {
    Command::new("python3")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python3")
}
