//! Rooms: many rooms over a few nodes, each room with its own host that
//! migrates among the room's members and fails over on its own, the host
//! roles spread over the nodes, and every room's messages kept to it.

use chat_proto::pb::relay::{ListRoomsRequest, RoomInfo};
use chat_tests::{eventually, join_rooms, member::Member, Relay};
use relay_svc::config::RelayConfig;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

const NODES: usize = 10;
const ROOMS: usize = 50;
/// Members per room: the nodes `i`, `i + 3` and `i + 7` (mod 10).
const SPREAD: [usize; 3] = [0, 3, 7];
/// Planned moves every room must go through.
const MOVES: usize = 3;

fn room_name(i: usize) -> String {
    format!("r{i:02}")
}

fn node_name(k: usize) -> String {
    format!("n{k}")
}

/// The nodes in room `i`.
fn members_of(i: usize) -> Vec<usize> {
    SPREAD.iter().map(|d| (i + d) % NODES).collect()
}

/// The rooms node `k` is in.
fn rooms_of(k: usize) -> Vec<String> {
    (0..ROOMS)
        .filter(|i| members_of(*i).contains(&k))
        .map(room_name)
        .collect()
}

/// Every room the relay has, page by page.
async fn list_rooms(relay: &Relay) -> Vec<RoomInfo> {
    let mut client = relay.client();
    let mut rooms = Vec::new();
    loop {
        let after = rooms
            .last()
            .map_or(String::new(), |r: &RoomInfo| r.name.clone());
        let page = client
            .list_rooms(ListRoomsRequest { after, limit: 20 })
            .await
            .expect("ListRooms")
            .into_inner();
        rooms.extend(page.rooms);
        if !page.more {
            return rooms;
        }
    }
}

/// How many rooms each host name hosts, by the relay's list.
fn hosted(rooms: &[RoomInfo]) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for room in rooms.iter().filter(|r| !r.host.is_empty()) {
        *count.entry(room.host.clone()).or_default() += 1;
    }
    count
}

/// The most rooms a node may host once placement settles.
fn placement_bound() -> usize {
    ROOMS.div_ceil(NODES) + 1
}

/// Sends `text` to room `i` from node `from` and waits until every live
/// member of the room has it.
async fn send_everywhere(nodes: &mut [Option<Member>], batch: &str) -> Vec<(usize, String)> {
    let mut sent = Vec::new();
    for i in 0..ROOMS {
        let from = members_of(i)
            .into_iter()
            .find(|k| nodes[*k].is_some())
            .expect("a live member");
        let text = format!("{}-{batch}-from-{}", room_name(i), node_name(from));
        if let Some(node) = nodes[from].as_mut() {
            node.say_in(&room_name(i), &text).await;
        }
        sent.push((i, text));
    }
    sent
}

/// Waits until every live member of each room saw exactly the texts sent
/// to that room, each once, in sequence order, and nothing of other rooms.
async fn check_rooms(nodes: &mut [Option<Member>], sent: &[(usize, String)]) {
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (i, text) in sent {
        expected
            .entry(room_name(*i))
            .or_default()
            .insert(text.clone());
    }
    for (k, node) in nodes.iter_mut().enumerate() {
        let Some(node) = node.as_mut() else { continue };
        for room in rooms_of(k) {
            let want = expected.get(&room).cloned().unwrap_or_default();
            node.wait_until(&format!("every message of #{room}"), |seen| {
                let texts: BTreeSet<&str> = seen
                    .iter()
                    .filter(|e| e["type"] == "message" && e["room"] == room.as_str())
                    .filter_map(|e| e["text"].as_str())
                    .collect();
                want.iter().all(|t| texts.contains(t.as_str()))
            })
            .await;
            let got = node.room_messages(&room);
            let texts: Vec<&String> = got.iter().map(|(_, _, t)| t).collect();
            let unique: BTreeSet<&String> = texts.iter().copied().collect();
            assert_eq!(
                unique.len(),
                texts.len(),
                "{}: doubled in #{room}",
                node.name
            );
            assert!(
                texts.iter().all(|t| t.starts_with(&format!("{room}-"))),
                "{}: another room's message in #{room}: {texts:?}",
                node.name
            );
            let seqs: Vec<u64> = got.iter().map(|(s, _, _)| *s).collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{}: #{room} out of order: {seqs:?}",
                node.name
            );
        }
    }
}

/// Waits until every room went through `moves` more host terms than it
/// had in `since` (planned moves: each new epoch is a new term).
async fn wait_for_moves(relay: &Relay, since: &BTreeMap<String, u64>, moves: usize) {
    let mut terms: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        for room in list_rooms(relay).await {
            if room.epoch > since.get(&room.name).copied().unwrap_or(0) {
                terms.entry(room.name).or_default().insert(room.epoch);
            }
        }
        let behind: Vec<&String> = since
            .keys()
            .filter(|r| terms.get(*r).map_or(0, BTreeSet::len) < moves)
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rooms that did not move {moves} times: {behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn epochs(rooms: &[RoomInfo]) -> BTreeMap<String, u64> {
    rooms.iter().map(|r| (r.name.clone(), r.epoch)).collect()
}

/// Starts node `k` in its rooms, its key kept in `dir`.
async fn start_node(relay: &Relay, k: usize, dir: &std::path::Path) -> Member {
    let node = join_rooms(&relay.uri(), &node_name(k), &rooms_of(k), dir).await;
    node.expect("a node joins its rooms")
}

/// Kills the node hosting the most rooms in `left`, waits until each of
/// those rooms has another host, and starts the node again. Returns the
/// rooms whose host was killed.
async fn kill_a_host(
    relay: &Relay,
    nodes: &mut [Option<Member>],
    dirs: &[std::path::PathBuf],
    left: &BTreeSet<String>,
) -> Vec<String> {
    let before = list_rooms(relay).await;
    let mut count: HashMap<String, usize> = HashMap::new();
    for room in before.iter().filter(|r| left.contains(&r.name)) {
        *count.entry(room.host.clone()).or_default() += 1;
    }
    let (victim, _) = count
        .into_iter()
        .filter(|(host, _)| !host.is_empty())
        .max_by_key(|(_, n)| *n)
        .expect("a room left has a host");
    let k: usize = victim[1..].parse().expect("node name");
    if let Some(mut node) = nodes[k].take() {
        node.kill().await;
    }
    let orphaned: Vec<String> = before
        .iter()
        .filter(|r| r.host == victim)
        .map(|r| r.name.clone())
        .collect();
    eventually("every room of the killed host has a new host", || {
        let orphaned = &orphaned;
        let victim = &victim;
        async move {
            let now = list_rooms(relay).await;
            orphaned.iter().all(|name| {
                now.iter()
                    .any(|r| &r.name == name && !r.host.is_empty() && &r.host != victim)
            })
        }
    })
    .await;
    nodes[k] = Some(start_node(relay, k, &dirs[k]).await);
    orphaned
}

/// No node hosts more than its share plus one, once placement settled.
async fn assert_placement(relay: &Relay) {
    let bound = placement_bound();
    eventually("placement settles", || async move {
        let rooms = list_rooms(relay).await;
        hosted(&rooms).values().all(|n| *n <= bound)
    })
    .await;
    for _ in 0..20 {
        let rooms = list_rooms(relay).await;
        let count = hosted(&rooms);
        assert!(
            count.values().all(|n| *n <= bound),
            "a node hosts more than {bound} rooms: {count:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_rooms_over_ten_nodes_migrate_fail_over_and_stay_apart() {
    let mut config = RelayConfig::for_tests(SPREAD.len() as u32, Duration::from_secs(2));
    config.lease = Duration::from_secs(1);
    // Killed nodes come back under their names at once (same keys).
    let relay = Relay::start_with("127.0.0.1:0".parse().expect("addr"), config).await;
    let dirs: Vec<_> = (0..NODES)
        .map(|k| chat_tests::temp_dir(&node_name(k)))
        .collect();
    let mut nodes: Vec<Option<Member>> = Vec::new();
    for (k, dir) in dirs.iter().enumerate() {
        nodes.push(Some(start_node(&relay, k, dir).await));
    }
    // Every room activates, at each of its members.
    for (k, node) in nodes.iter_mut().enumerate() {
        let node = node.as_mut().expect("running");
        for room in rooms_of(k) {
            node.wait_event("activated", &[("room", &room)]).await;
        }
    }
    let rooms = list_rooms(&relay).await;
    assert_eq!(rooms.len(), ROOMS, "one room per name");
    assert!(rooms.iter().all(|r| r.members.len() == SPREAD.len()));

    let mut sent = send_everywhere(&mut nodes, "before").await;
    check_rooms(&mut nodes, &sent).await;
    wait_for_moves(&relay, &epochs(&rooms), MOVES).await;
    sent.extend(send_everywhere(&mut nodes, "moved").await);
    check_rooms(&mut nodes, &sent).await;
    assert_placement(&relay).await;

    // Every room's host is killed once (a node at a time, the one hosting
    // the most rooms not yet through it), and comes back.
    let mut left: BTreeSet<String> = (0..ROOMS).map(room_name).collect();
    let mut round = 0;
    while !left.is_empty() {
        round += 1;
        for room in kill_a_host(&relay, &mut nodes, &dirs, &left).await {
            left.remove(&room);
        }
        sent.extend(send_everywhere(&mut nodes, &format!("kill{round}")).await);
    }
    check_rooms(&mut nodes, &sent).await;
    assert_placement(&relay).await;
    for node in nodes.into_iter().flatten() {
        node.leave().await;
    }
}
