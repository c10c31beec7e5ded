//! A member nobody can reach into, across containers over TLS: `iso` lives
//! on a home network of its own that nothing outside can connect into, as
//! behind a home router, and listens and advertises only there; it is also
//! on the cluster's network, so it can dial out to the relay and the hosts.
//! Three ordinary bot nodes (`n1`..`n3`) chat with it.
//!
//! `iso` registers first, alone: a relay that does not check reachability
//! makes it host at once and the room stalls on it. When the others have
//! joined, the test proves the setup: from inside its own container `iso`'s
//! address answers a health check, from the relay's and from `n1`'s it
//! does not (while `n1`'s answers the relay). Then, with the host moving
//! every 2 s, through several planned migrations, a `docker kill` of the
//! host and more migrations:
//!
//! - nobody is ever told `iso` hosts (no node's client reaches a host term
//!   naming it; the relay logs no move or promotion to it; `iso` never
//!   becomes host), and no host tries it as successor or handoff target;
//! - the chat keeps moving: the migrations happen, acknowledgements never
//!   pause for long (the longest pause is printed, and bounded loosely);
//! - `iso` sends and receives everything: every message anyone saw
//!   acknowledged, `iso`'s included, is in every survivor's one gapless,
//!   repeat-free history.
//!
//! Needs Docker: where the engine is absent the test says so in one line
//! and passes, except with `CI=true`, where that is a failure.

use chat_tests::docker::{
    chatting_under_new_host, check_history, docker, docker_or_skip, millis_between, wait_for_acked,
    Cluster, ClusterConfig, View, NODE_PORT,
};
use std::time::{Duration, SystemTime};

/// The ordinary nodes, reachable by everyone.
const NODES: [&str; 3] = ["n1", "n2", "n3"];
/// The member on a network nothing can connect into.
const ISO: &str = "iso";
/// How often each bot posts.
const BOT_INTERVAL: &str = "300ms";
/// How often the host moves.
const MIGRATION_INTERVAL: &str = "2s";
/// Planned migrations before the host kill, and after it.
const MIGRATIONS_BEFORE_KILL: u64 = 5;
const MIGRATIONS_AFTER_KILL: u64 = 3;
/// The longest the chat may go without any acknowledgement, the host kill
/// included: loose, for a loaded machine (the measured pause is printed).
/// A room that waits on an unreachable host or successor pauses for its
/// lease and member grace, or for good.
const STALL_BOUND: Duration = Duration::from_secs(10);
/// How long after the relay found `iso` unreachable a host may still log a
/// failed call to it: the host learns it at its next lease renewal (within
/// a quarter lease), and a call started just before fails within the
/// node's 2 s peer call timeout.
const IN_FLIGHT: Duration = Duration::from_secs(3);

#[test]
fn a_member_nobody_can_reach_chats_but_never_hosts() {
    if !docker_or_skip("docker reachability test") {
        return;
    }
    let mut cluster = Cluster::start_relay(
        "reach",
        &ClusterConfig {
            nodes: Vec::new(),
            mode: "json",
            bot_interval: BOT_INTERVAL,
            migration_interval: MIGRATION_INTERVAL,
            min_users: 2,
            client_only: Vec::new(),
        },
    );
    // Alone at first: the first member registered is the first host,
    // unless the relay finds it cannot reach it.
    let address = cluster.start_unreachable_node(ISO);
    for name in NODES {
        cluster.launch_node(name);
        cluster.wait_for(&format!("{name} reaching a host"), |view| {
            never_host(view);
            !view.hosts(name).is_empty()
        });
    }
    confirm_unreachable(&cluster, &address);
    let everyone: Vec<&str> = NODES.into_iter().chain([ISO]).collect();

    // Planned migrations, every bot's messages seen everywhere.
    let first = cluster.wait_for("every bot chatting", |view| {
        never_host(view);
        view.all_nodes_saw_every_bot_after(0) && view.acks(ISO).len() >= 3
    });
    let target = first.max_epoch() + MIGRATIONS_BEFORE_KILL;
    let before = cluster.wait_for("migrations with every bot chatting", |view| {
        never_host(view);
        view.max_epoch() >= target && view.saw_bots_after(&everyone, &everyone, first.max_seq())
    });

    // Kill the host: its successor takes over, never the isolated member.
    let (epoch, host) = before.current_host().expect("a host");
    let survivors: Vec<&str> = everyone.iter().copied().filter(|n| *n != host).collect();
    let seq = before.max_seq();
    let killed_at = SystemTime::now();
    docker(&["kill", &cluster.node(&host)]);
    let after = cluster.wait_for("the survivors chatting under a new host", |view| {
        never_host(view);
        chatting_under_new_host(view, &survivors, epoch, &host)
            && view.saw_bots_after(&survivors, &survivors, seq)
    });
    let (new_epoch, new_host) = after.current_host().expect("a host");
    println!("killed host {host} (epoch {epoch}); {new_host} took over (epoch {new_epoch})");

    // More migrations among the survivors.
    let target = new_epoch + MIGRATIONS_AFTER_KILL;
    let seq = after.max_seq();
    let acked = cluster.wait_for("more migrations with every survivor chatting", |view| {
        never_host(view);
        view.max_epoch() >= target && view.saw_bots_after(&survivors, &survivors, seq)
    });
    let last = wait_for_acked(&cluster, &acked, &survivors);
    never_host(&last);
    never_tried(&cluster);
    let pause = longest_pause(&acked);
    println!(
        "longest pause between acknowledgements: {} ms, from {} ms after the host kill",
        pause.map_or(-1, |(from, to)| millis_between(from, to)),
        pause.map_or(0, |(from, _)| millis_between(killed_at, from)),
    );
    let bound = STALL_BOUND.as_millis() as i64;
    assert!(
        pause.is_some_and(|(from, to)| millis_between(from, to) < bound),
        "the chat paused {pause:?}, over {bound} ms"
    );
    let checked = check_history(&acked, &last, &survivors);
    println!(
        "docker reach: {} messages, {} acks checked on {survivors:?} through {} host terms: \
         {ISO} never hosted, nothing lost, nothing twice",
        checked.messages,
        checked.acks,
        last.max_epoch()
    );
}

/// The setup is what it claims: `iso`'s address answers from inside its
/// own container, not from the relay's nor from another node's, while the
/// same check reaches that other node from the relay.
fn confirm_unreachable(cluster: &Cluster, address: &str) {
    let own = cluster.probe_node(&cluster.node(ISO), ISO, address);
    assert_eq!(
        own.as_deref(),
        Ok("SERVING"),
        "{ISO} from itself at {address}"
    );
    let n1 = cluster.node("n1");
    let open = format!("{n1}:{NODE_PORT}");
    let reachable = cluster.probe_node(&cluster.relay(), "n1", &open);
    assert_eq!(reachable.as_deref(), Ok("SERVING"), "n1 from the relay");
    for from in [cluster.relay(), n1] {
        let probed = cluster.probe_node(&from, ISO, address);
        assert!(
            probed.is_err(),
            "{from} reached {ISO} at {address}: {probed:?}"
        );
        println!("{from} cannot reach {ISO} at {address}: {probed:?}");
    }
}

/// Fails the test if any node's client reached a host term naming `iso`.
fn never_host(view: &View) {
    for node in view.nodes.keys() {
        if let Some((_, epoch, _)) = view.hosts(node).into_iter().find(|(.., h)| h == ISO) {
            panic!("{node} was told {ISO} hosts (epoch {epoch}), but nobody can reach it");
        }
    }
}

/// Fails the test if the logs show `iso` made host or tried as one: the
/// relay moving the host to it or making it host, `iso` hosting, or, once
/// the relay found it unreachable (and [`IN_FLIGHT`] later), a host
/// replicating or handing off to it. Before, a host may try a member not
/// checked yet: the relay would not promote it, and it cannot be reached
/// to hold a copy anyway.
fn never_tried(cluster: &Cluster) {
    let relay = cluster.stderr(&cluster.relay());
    let to_iso = format!("to={ISO}");
    let relay_named = relay
        .iter()
        .find(|(_, line)| line.split_whitespace().any(|field| field == to_iso));
    assert!(
        relay_named.is_none(),
        "the relay named {ISO} host: {relay_named:?}"
    );
    let name = format!("name={ISO}");
    let judged = relay
        .iter()
        .find(|(_, line)| {
            line.contains("member reachability changed")
                && line.contains(&name)
                && line.contains("reachable=false")
        })
        .map(|(at, _)| *at)
        .unwrap_or_else(|| panic!("the relay never logged {ISO} unreachable"));
    let iso = cluster.stderr(&cluster.node(ISO));
    let hosted = iso
        .iter()
        .find(|(_, line)| line.contains("this node is now the chat host"));
    assert!(hosted.is_none(), "{ISO} hosted: {hosted:?}");
    let successor = format!("successor={ISO}");
    let handoff = format!("successor {ISO}:");
    for node in NODES {
        let tried = cluster
            .stderr(&cluster.node(node))
            .into_iter()
            .find(|(at, line)| {
                *at > judged + IN_FLIGHT
                    && ((line.contains("replication failed") && line.contains(&successor))
                        || (line.contains("handoff attempt failed") && line.contains(&handoff)))
            });
        assert!(
            tried.is_none(),
            "{node} tried {ISO} as its successor after the relay found it unreachable: {tried:?}"
        );
    }
}

/// The longest time between two acknowledgements in a row, any node's,
/// from the first to the last: when it began and ended.
fn longest_pause(view: &View) -> Option<(SystemTime, SystemTime)> {
    let mut times: Vec<SystemTime> = view
        .nodes
        .keys()
        .flat_map(|n| view.acks(n))
        .map(|(at, ..)| at)
        .collect();
    times.sort_unstable();
    times
        .windows(2)
        .map(|w| (w[0], w[1]))
        .max_by_key(|(from, to)| to.duration_since(*from).unwrap_or_default())
}
