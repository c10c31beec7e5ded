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
use chat_proto::pb::chat::{ChatMessage, PrivateMessage, SealedPrivate, SendMessage};
use chat_proto::pb::relay::{NameCertificate, NameGrant};
use chat_proto::sealed::{open_private, seal_private};
use chat_proto::trust::{check_fresh, hex, node_id_of, now_unix_ms, private_payload, Keypair};
use chat_tests::procs::{spawn_node, RelayProcess};
use chat_tests::python::{
    assert_chatted, chat_rounds, of_type, require_python, run_checks, PyClient,
};
use prost::Message;
use serde_json::{json, Value};

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
    let expect = (3 * ROUNDS).to_string();
    let mut py = PyClient::start(&[
        "--relay",
        &uri,
        "--name",
        "pyuser",
        "--room",
        "#lobby",
        "--expect",
        &expect,
        "--timeout",
        "120",
    ]);
    py.wait_until("a welcome", |seen| of_type(seen, "host").count() > 0)
        .await;
    alice.wait_event("activated", &[]).await;
    bob.wait_event("activated", &[]).await;

    // Each round everyone speaks, then the host moves before the next.
    chat_rounds(&mut py, &mut [&mut alice, &mut bob], ROUNDS).await;
    py.finish().await;
    assert_chatted(&py, "pyuser", &mut [&mut alice, &mut bob], ROUNDS).await;
    let registered = of_type(&py.seen, "registered").next().expect("registered");
    assert_eq!(registered["tls"], false, "plaintext: {registered}");

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
    let got = run_checks(script, &cases).await;

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

/// Private messages agree both ways: the Python client opens and accepts
/// one the Rust code signed and sealed to it, refuses every alteration the
/// Rust checks refuse, and signs and seals one that the Rust code opens
/// and accepts.
#[tokio::test]
async fn python_private_messages_agree_with_the_rust_ones() {
    require_python().await;
    let relay = Keypair::generate();
    let later = now_unix_ms() + 3_600_000;
    let certify = |name: &str, key: &Keypair| {
        relay.issue_name(&NameGrant {
            name: name.into(),
            node_id: node_id_of(&key.public_key()),
            public_key: key.public_key(),
            issued_at_unix_ms: now_unix_ms(),
            expires_at_unix_ms: later,
        })
    };
    let (alice, bob, carol) = (
        Keypair::generate(),
        Keypair::generate(),
        Keypair::generate(),
    );
    const PY_SEED: [u8; 32] = [9; 32];
    let py = Keypair::from_secret(PY_SEED);
    let py_node = node_id_of(&py.public_key());
    // Signed at `sent_at` (sign_private signs at the present).
    let to_py = |text: &str, sent_at: i64| {
        let mut m = PrivateMessage {
            id: format!("p-{text}"),
            from: "alice".into(),
            from_node_id: node_id_of(&alice.public_key()),
            to: "pyuser".into(),
            to_node_id: py_node.clone(),
            text: text.into(),
            sent_at_unix_ms: sent_at,
            sender: Some(certify("alice", &alice)),
            ..Default::default()
        };
        m.signature = alice.sign(&private_payload(&m));
        m
    };
    let now = now_unix_ms();
    let sealed_case = |name: &str, sealed: &SealedPrivate| json!({"name": name, "sealed": hex(&sealed.encode_to_vec())});
    let seal = |m: &PrivateMessage| seal_private(&py.verifying(), m).expect("seal");
    let mut to_bob = to_py("for bob", now);
    to_bob.to = "bob".into();
    to_bob.signature = alice.sign(&private_payload(&to_bob));
    let mut altered = to_py("altered", now);
    altered.text = "altered!".into();
    let mut impostor = to_py("impostor", now);
    impostor.sender = Some(certify("bob", &bob));
    let mut forged = to_py("forged", now);
    forged.sender = Some(Keypair::generate().issue_name(&NameGrant {
        name: "alice".into(),
        node_id: node_id_of(&alice.public_key()),
        public_key: alice.public_key(),
        issued_at_unix_ms: now,
        expires_at_unix_ms: later,
    }));
    let to_carol = seal_private(&carol.verifying(), &to_py("carol's box", now)).expect("seal");
    let mut broken = seal(&to_py("broken", now));
    broken.sealed[40] ^= 1;
    let mut other_node = seal(&to_py("other node", now));
    other_node.to_node_id = node_id_of(&carol.public_key());
    let cases = json!({
        "relay_key": hex(&relay.public_key()),
        "seed": hex(&PY_SEED),
        "node_id": py_node,
        "certificate": hex(&certify("pyuser", &py).encode_to_vec()),
        "alice_key": hex(&alice.public_key()),
        "alice_node": node_id_of(&alice.public_key()),
        "cases": [
            sealed_case("genuine", &seal(&to_py("genuine", now))),
            sealed_case("to_another", &seal(&to_bob)),
            sealed_case("altered", &seal(&altered)),
            sealed_case("stale", &seal(&to_py("stale", now - 600_000))),
            sealed_case("impostor", &seal(&impostor)),
            sealed_case("forged_certificate", &seal(&forged)),
            sealed_case("sealed_to_another_key", &to_carol),
            sealed_case("broken_box", &broken),
            sealed_case("for_another_node", &other_node),
        ],
    });
    let script = r#"
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
relay = c.Relay(bytes.fromhex(data["relay_key"]))
seed, node_id = bytes.fromhex(data["seed"]), data["node_id"]
out = {}
for case in data["cases"]:
    sealed = c.chat_pb.SealedPrivate.FromString(bytes.fromhex(case["sealed"]))
    try:
        m = c.open_sealed(seed, node_id, sealed)
        c.check_private(relay, "pyuser", node_id, m, c.now_ms())
        out[case["name"]] = "ok: " + m.text
    except ValueError as e:
        out[case["name"]] = str(e)
m = c.chat_pb.PrivateMessage(id="from-py", **{"from": "pyuser"}, from_node_id=node_id,
    to="alice", to_node_id=data["alice_node"], text="hi from python",
    sent_at_unix_ms=c.now_ms(),
    sender=c.relay_pb.NameCertificate.FromString(bytes.fromhex(data["certificate"])))
c.sign_private(Ed25519PrivateKey.from_private_bytes(seed), m)
out["to_alice"] = c.seal_private(bytes.fromhex(data["alice_key"]), m).SerializeToString().hex()
print(json.dumps(out))
"#;
    let got = run_checks(script, &cases).await;

    assert_eq!(got["genuine"], "ok: genuine", "{got:#}");
    for (refused, because) in [
        ("to_another", "not to this member"),
        ("altered", "bad signature"),
        ("stale", "5 minutes"),
        ("impostor", "the certificate is of 'bob'"),
        ("forged_certificate", "not signed by the relay"),
        ("sealed_to_another_key", "does not open"),
        ("broken_box", "does not open"),
        ("for_another_node", "sealed for another node"),
    ] {
        let why = got[refused].as_str().unwrap_or("");
        assert!(
            why.contains(because),
            "the Python client's verdict on the {refused} private message: {why:?}, not {because:?}"
        );
    }

    // What Python sealed to alice opens with alice's key alone, and checks
    // out as chat-node checks a private message.
    let bytes = unhex(got["to_alice"].as_str().unwrap_or(""));
    let sealed = SealedPrivate::decode(bytes.as_slice()).expect("a SealedPrivate");
    assert_eq!(sealed.to_node_id, node_id_of(&alice.public_key()));
    assert!(
        open_private(&carol, &sealed).is_err(),
        "only alice opens it"
    );
    let m = open_private(&alice, &sealed).expect("alice opens what Python sealed");
    assert_eq!(
        (m.from.as_str(), m.text.as_str()),
        ("pyuser", "hi from python")
    );
    assert_eq!(
        (m.to.as_str(), m.from_node_id.as_str()),
        ("alice", py_node.as_str())
    );
    let grant = relay
        .verifying()
        .verify_name(m.sender.as_ref().expect("its certificate"), now_unix_ms())
        .expect("the relay's certificate of pyuser");
    assert_eq!(grant.node_id, m.from_node_id);
    py.verifying()
        .verify(&private_payload(&m), &m.signature)
        .expect("signed by pyuser's key");
    check_fresh(m.sent_at_unix_ms, now_unix_ms()).expect("fresh");
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}
