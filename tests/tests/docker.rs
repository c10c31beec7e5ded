//! The demo's container images across a private Docker network: a relay and
//! three bot nodes, each in its own container built `FROM scratch` around a
//! statically linked binary, as `docker-compose.yml` runs them, every
//! connection over TLS with the relay's own authority. With chat
//! traffic flowing, a restart of the relay container lets the chat go on,
//! and a rolling restart of every node keeps the full history; every node's
//! log shows each message once, in order, with the same content everywhere.
//!
//! Needs Docker: where the engine is absent the test says so in one line and
//! passes, except with `CI=true`, where that is a failure. It builds the
//! static release binaries itself (minutes on a fresh target directory).

use chat_tests::docker::{
    docker, docker_or_skip, docker_result, eventually, runs, Cluster, ClusterConfig, NODE_PORT,
    NODE_RELAY_CA, RELAY_PORT,
};

/// How often the bots post, and how often the host moves, in this test.
const BOT_INTERVAL: &str = "500ms";
const MIGRATION_INTERVAL: &str = "3s";
/// The nodes' chat names.
const NODES: [&str; 3] = ["n1", "n2", "n3"];

#[test]
fn containers_survive_relay_restart_and_rolling_node_restarts() {
    if !docker_or_skip("docker test") {
        return;
    }
    let cluster = Cluster::start(
        "restarts",
        &ClusterConfig {
            nodes: NODES.to_vec(),
            mode: "line",
            bot_interval: BOT_INTERVAL,
            migration_interval: MIGRATION_INTERVAL,
            min_users: 2,
            client_only: Vec::new(),
        },
    );
    // The image's own HEALTHCHECK runs `relay-svc health` over TLS.
    let relay = cluster.relay();
    eventually("the relay container healthy", || {
        docker_result(&["inspect", "-f", "{{.State.Health.Status}}", &relay])
            .is_ok_and(|s| s.trim() == "healthy")
    });

    // The health subcommand works in a scratch image, over TLS with the
    // relay's authority: the node's own server by its key (its certificate
    // names its node id), by address and through /etc/hosts (the own
    // hostname), and the relay by its DNS name (the container name, which
    // its certificate carries).
    let n1 = cluster.node("n1");
    assert_eq!(cluster.node_health("n1", ""), "SERVING", "n1's own health");
    let hostname = docker(&["inspect", "-f", "{{.Config.Hostname}}", &n1]);
    let hostname = hostname.trim();
    for (address, expect) in [
        (
            format!("{hostname}:{NODE_PORT}"),
            vec!["--node-key", "/data/n1.key"],
        ),
        (format!("{relay}:{RELAY_PORT}"), vec![]),
    ] {
        let check = ["exec", &n1, "/chat-node", "health", "--ca", NODE_RELAY_CA];
        let out = docker(&[&check[..], &expect, &[&address]].concat());
        assert_eq!(out.trim(), "SERVING", "health of {address} from {n1}");
    }

    // Traffic flows from every bot and the host moves.
    let before = cluster.wait_for("messages from every bot and a host move", |view| {
        view.all_nodes_saw_every_bot_after(0) && view.max_epoch() >= 2
    });

    // Restart the relay: messages go on from every bot, and the new relay
    // moves the host on again.
    let seq = before.max_seq();
    docker(&["restart", "-t", "10", &cluster.relay()]);
    let after = cluster.wait_for("the chat going on after a relay restart", |view| {
        view.all_nodes_saw_every_bot_after(seq)
    });
    let epoch = after.max_epoch();
    cluster.wait_for("the host moving after a relay restart", |view| {
        view.max_epoch() > epoch
    });

    // Restart every node, one by one: each comes back with the whole history
    // and the chat goes on.
    for name in NODES {
        let container = cluster.node(name);
        let seq = cluster.view().max_seq();
        docker(&["restart", "-t", "15", &container]);
        cluster.wait_for(&format!("{name} back with the full history"), |view| {
            // The new process shows the history again from 1: a second run.
            let shown = view.messages(name);
            let runs = runs(&shown);
            runs.len() >= 2
                && runs.last().is_some_and(|run| {
                    run.len() > seq as usize
                        && run.iter().map(|m| m.seq).take(seq as usize).eq(1..=seq)
                })
                && view.all_nodes_saw_every_bot_after(seq)
        });
    }

    // Nothing lost, nothing twice, the same everywhere: in every run of every
    // node, messages are numbered 1, 2, 3, ... and each number carries the
    // same sender and text on every node.
    let view = cluster.view();
    for name in NODES {
        let shown = view.messages(name);
        let runs = runs(&shown);
        assert_eq!(runs.len(), 2, "{name} ran twice: {runs:?}");
    }
    view.assert_one_history_per_run();
    println!(
        "docker test: {} messages, host epoch {}, through a relay restart and a rolling restart",
        view.max_seq(),
        view.max_epoch()
    );
}

#[test]
fn a_client_only_member_chats_through_five_migrations() {
    if !docker_or_skip("docker client-only test") {
        return;
    }
    // c1 runs --client-only: no port, no address, never host.
    let cluster = Cluster::start(
        "clientonly",
        &ClusterConfig {
            nodes: vec!["n1", "n2", "n3", "c1"],
            mode: "json",
            bot_interval: "300ms",
            migration_interval: "2s",
            min_users: 4,
            client_only: vec!["c1"],
        },
    );
    let moved = cluster.wait_for("five moves of the host, every bot heard", |view| {
        view.max_epoch() >= 6 && view.all_nodes_saw_every_bot_after(0)
    });
    let seq = moved.max_seq();
    let view = cluster.wait_for("every bot heard after the fifth move", |view| {
        view.all_nodes_saw_every_bot_after(seq)
    });
    // c1 followed the host through every move and never hosted.
    let terms: Vec<(u64, String)> = view
        .hosts("c1")
        .into_iter()
        .map(|(_, epoch, name)| (epoch, name))
        .collect();
    assert!(terms.len() >= 5, "c1 followed each move: {terms:?}");
    for name in cluster.nodes() {
        let hosts = view.hosts(name);
        assert!(
            hosts.iter().all(|(_, _, host)| host != "c1"),
            "{name} saw c1 host: {hosts:?}"
        );
    }
    let hosted = cluster
        .stderr(&cluster.node("c1"))
        .into_iter()
        .find(|(_, line)| line.contains("now the chat host"));
    assert!(hosted.is_none(), "c1 hosted: {hosted:?}");
    assert!(view.errors("c1").is_empty(), "{:?}", view.errors("c1"));
    let log = view.assert_one_history(cluster.nodes());
    let from_c1 = log.values().filter(|(from, _)| from == "c1").count();
    println!(
        "docker client-only test: {} messages ({from_c1} from c1), host epoch {}, c1 followed {} terms",
        log.len(),
        view.max_epoch(),
        terms.len()
    );
}
