//! A client in another language: `examples/python/chat_client.py` (grpcio,
//! stubs generated from the repository's protos at run time) chats with
//! two real `chat-node` processes through a real `relay-svc` whose host
//! moves every 2 s. Each side sees the other's messages; the Python client
//! shows only messages it verified (name certificate, signature, chain) and
//! keeps chatting across host moves; and its checks refuse what the Rust
//! checks refuse (messages the Rust code signed, then altered). Needs python3 with grpcio,
//! grpcio-tools and cryptography (`.ci/run` installs them): the test fails,
//! never skips, without them.

use chat_proto::chain::{log_step, Signed, GENESIS};
use chat_proto::pb::chat::{ChatMessage, SendMessage};
use chat_proto::pb::relay::{NameCertificate, NameGrant};
use chat_proto::trust::{hex, node_id_of, now_unix_ms, Keypair};
use chat_tests::procs::{spawn_node, RelayProcess};
use chat_tests::DEADLINE;
use prost::Message;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/python/chat_client.py"
);
const INSTALL: &str = "python3 -m pip install grpcio grpcio-tools cryptography";

/// Fails the test, saying how to install them, unless python3 and the
/// client's packages are there.
async fn require_python() {
    let out = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools, cryptography"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("python3 is needed for this test ({e}); then: {INSTALL}"));
    assert!(
        out.status.success(),
        "python3 lacks grpcio, grpcio-tools or cryptography ({}); install them: {INSTALL}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// The Python client, its JSON events and the lines it is given.
struct PyClient {
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl PyClient {
    fn start(relay: &str, name: &str, expect: usize) -> PyClient {
        let expect = expect.to_string();
        let mut child = Command::new("python3")
            .arg(SCRIPT)
            .args(["--relay", relay, "--name", name, "--room", "#lobby"])
            .args(["--stdin", "--expect", &expect, "--timeout", "120"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn python3");
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

    async fn say(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{text}\n").as_bytes())
            .await
            .expect("write to the client");
        stdin.flush().await.expect("flush");
    }

    /// Waits until what the client printed satisfies `cond`.
    async fn wait_until(&mut self, what: &str, cond: impl Fn(&[Value]) -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !cond(&self.seen) {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.seen.push(event),
                Ok(None) => panic!(
                    "the client ended while waiting for {what}: {:#?}",
                    self.seen
                ),
                Err(_) => panic!("timed out waiting for {what}: {:#?}", self.seen),
            }
        }
    }

    /// The epochs of the hosts that welcomed the client, in order.
    fn host_epochs(seen: &[Value]) -> Vec<u64> {
        of_type(seen, "host")
            .map(|e| e["epoch"].as_u64().unwrap_or(0))
            .collect()
    }

    /// Ends its input and waits for it to exit by itself.
    async fn finish(&mut self) {
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

fn of_type<'a>(seen: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    seen.iter().filter(move |e| e["type"] == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_chats_and_verifies_through_host_moves() {
    require_python().await;
    let relay = RelayProcess::start(&["--min-users", "3", "--migration-interval", "2s"]).await;
    let uri = relay.uri();
    let mut alice = spawn_node(&uri, "alice", &[]).await;
    alice.wait_event("host", &[]).await;
    let mut bob = spawn_node(&uri, "bob", &[]).await;
    bob.wait_event("host", &[]).await;

    const ROUNDS: usize = 3;
    let mut py = PyClient::start(&relay.addr, "pyuser", 3 * ROUNDS);
    py.wait_until("a welcome", |seen| of_type(seen, "host").count() > 0)
        .await;
    alice.wait_event("activated", &[]).await;
    bob.wait_event("activated", &[]).await;

    // Each round everyone speaks, then the host moves before the next.
    for round in 0..ROUNDS {
        py.say(&format!("py {round}")).await;
        alice.say(&format!("alice {round}")).await;
        bob.say(&format!("bob {round}")).await;
        let hosts = PyClient::host_epochs(&py.seen).len();
        py.wait_until("the host to move", |seen| {
            PyClient::host_epochs(seen).len() > hosts
        })
        .await;
    }
    py.finish().await;

    // The Rust members saw the Python member's messages, in order.
    let expected =
        |who: &str| -> Vec<String> { (0..ROUNDS).map(|r| format!("{who} {r}")).collect() };
    for m in [&mut alice, &mut bob] {
        m.wait_messages(3 * ROUNDS).await;
        let from_py: Vec<String> = m
            .messages()
            .into_iter()
            .filter(|(_, from, _)| from == "pyuser")
            .map(|(_, _, text)| text)
            .collect();
        assert_eq!(from_py, expected("py"), "{} sees the Python member", m.name);
        assert!(!m.has_seen("tampering", &[]), "{}: {:#?}", m.name, m.seen);
    }

    // The Python member saw everyone's, each verified, once and in order.
    let seen = &py.seen;
    let failures: Vec<&Value> = of_type(seen, "verification_failed").collect();
    assert!(failures.is_empty(), "verification failures: {failures:#?}");
    for who in ["alice", "bob", "py"] {
        let name = if who == "py" { "pyuser" } else { who };
        let texts: Vec<String> = of_type(seen, "message")
            .filter(|e| e["from"] == name)
            .map(|e| e["text"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(texts, expected(who), "the Python client shows {name}'s");
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
    assert!(epochs.len() > ROUNDS, "host moves followed: {epochs:?}");
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
    assert_eq!(acked.len(), ROUNDS, "each message acknowledged: {seen:#?}");

    alice.leave().await;
    bob.leave().await;
    drop(relay);
}

/// What the Python client's checks say of one message of `room`.
fn case(name: &str, room: &str, m: &ChatMessage) -> Value {
    json!({"name": name, "room": room, "message": hex(&m.encode_to_vec())})
}

/// The Python client's layouts and checks agree with the Rust ones byte
/// for byte: it accepts messages the Rust code signed, computes the same
/// digests and log hashes, and refuses every forgery and alteration.
#[tokio::test]
async fn the_python_checks_refuse_what_the_rust_checks_refuse() {
    require_python().await;
    let relay = Keypair::generate();
    let alice = Keypair::generate();
    let grant = |name: &str, key: &Keypair, expires: i64| NameGrant {
        name: name.into(),
        node_id: node_id_of(&key.public_key()),
        public_key: key.public_key(),
        issued_at_unix_ms: now_unix_ms(),
        expires_at_unix_ms: expires,
    };
    let later = now_unix_ms() + 3_600_000;
    let cert = relay.issue_name(&grant("alice", &alice, later));
    let served = |msg: &SendMessage, cert: &NameCertificate| ChatMessage {
        seq: 1,
        id: msg.id.clone(),
        from: "alice".into(),
        text: msg.text.clone(),
        sent_at_unix_ms: msg.sent_at_unix_ms,
        epoch: 7,
        signature: msg.signature.clone(),
        sender: Some(cert.clone()),
        chain_seq: msg.chain_seq,
        chain_prev: msg.chain_prev.clone(),
    };
    let mut first = SendMessage {
        id: "m1".into(),
        text: "héllo".into(),
        chain_seq: 1,
        ..Default::default()
    };
    let digest = alice.sign_message("ops", "alice", &mut first);
    let mut second = SendMessage {
        id: "m2".into(),
        text: "again".into(),
        chain_seq: 2,
        chain_prev: digest.to_vec(),
        ..Default::default()
    };
    alice.sign_message("ops", "alice", &mut second);
    let genuine = served(&first, &cert);

    let mut altered = genuine.clone();
    altered.text = "hello".into();
    let mut impostor = genuine.clone();
    impostor.from = "bob".into();
    let forged = served(
        &first,
        &Keypair::generate().issue_name(&grant("alice", &alice, later)),
    );
    let expired = served(&first, &relay.issue_name(&grant("alice", &alice, 1)));
    let mallory = Keypair::generate();
    let mut by_another_key = first.clone();
    mallory.sign_message("ops", "alice", &mut by_another_key);
    let cases = json!({
        "relay_key": hex(&relay.public_key()),
        "cases": [
            case("genuine", "ops", &genuine),
            case("genuine_next", "ops", &served(&second, &cert)),
            case("altered", "ops", &altered),
            case("other_room", "lobby", &genuine),
            case("impostor", "ops", &impostor),
            case("forged_certificate", "ops", &forged),
            case("expired_certificate", "ops", &expired),
            case("another_key", "ops", &served(&by_another_key, &cert)),
        ],
    });
    let script = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
import chat_client as c
c.load_protos(str(c.REPO_PROTOS))
data = json.load(sys.stdin)
relay = c.Relay(bytes.fromhex(data["relay_key"]))
out, msgs = {}, {}
for case in data["cases"]:
    m = c.chat_pb.ChatMessage.FromString(bytes.fromhex(case["message"]))
    msgs[case["name"]] = m
    try:
        c.check_message(relay, case["room"], m)
        out[case["name"]] = "ok"
    except ValueError as e:
        out[case["name"]] = str(e)
first, second = msgs["genuine"], msgs["genuine_next"]
digest = c.message_digest("ops", first)
out["digest"] = digest.hex()
out["log_hash"] = c.log_step(c.GENESIS, 1, 7, digest).hex()
out["chain"] = c.judge((1, digest, first.sent_at_unix_ms), second)
out["fork"] = c.judge((1, bytes(32), first.sent_at_unix_ms), second)
print(json.dumps(out))
"#;
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/python");
    let mut child = Command::new("python3")
        .args(["-c", script, examples])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python3");
    let mut stdin = child.stdin.take().expect("stdin piped");
    stdin
        .write_all(cases.to_string().as_bytes())
        .await
        .expect("write the cases");
    drop(stdin);
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("python3 finishes")
        .expect("run python3");
    assert!(out.status.success(), "the Python checks failed to run");
    let got: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");

    assert_eq!(got["genuine"], "ok", "{got:#}");
    assert_eq!(got["genuine_next"], "ok", "{got:#}");
    for (refused, because) in [
        ("altered", "bad signature"),
        ("other_room", "bad signature"),
        ("impostor", "the certificate names 'alice'"),
        ("forged_certificate", "not signed by the relay"),
        ("expired_certificate", "expired"),
        ("another_key", "bad signature"),
    ] {
        let why = got[refused].as_str().unwrap_or("");
        assert!(
            why.contains(because),
            "the Python client's verdict on the {refused} message: {why:?}, not {because:?}"
        );
    }
    let digest = Signed::served("ops", &genuine).digest();
    assert_eq!(got["digest"], hex(&digest), "the same message digest");
    let log_hash = log_step(&GENESIS, 1, 7, &digest);
    assert_eq!(got["log_hash"], hex(&log_hash), "the same log hash");
    assert_eq!(got["chain"], "follows", "{got:#}");
    assert_eq!(got["fork"], "fork", "{got:#}");
}
