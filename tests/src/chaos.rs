//! The chaos run: real `relay-svc` and `chat-node` processes, every node in
//! every big room and some pairs of them in two-member rooms, with
//! concurrent senders in each room, planned migrations at a short interval,
//! repeated `kill -9` of a room's host (restarted under the same name, in
//! the same rooms) and `kill -9` plus restart of the relay. It then checks
//! every surviving member's log of each room against the other members'.

mod logs;
mod report;

pub use report::{ChaosReport, Failover, RoomTally};

use crate::member::Member;
use crate::procs::{spawn_node, RelayProcess};
use chat_proto::pb::relay::relay_service_client::RelayServiceClient;
use chat_proto::pb::relay::CurrentHostRequest;
use logs::{duplicate_texts, MemberLog};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What to throw at the chat.
#[derive(Debug, Clone)]
pub struct ChaosPlan {
    /// Seed of every random choice.
    pub seed: u64,
    /// Member nodes.
    pub nodes: usize,
    /// Planned migrations to reach (at least).
    pub migrations: u64,
    /// `kill -9` of the current host.
    pub host_kills: usize,
    /// `kill -9` and restart of the relay.
    pub relay_restarts: usize,
    /// Planned migration interval.
    pub interval: Duration,
    /// Rooms of every node (`room{i}`), each with its own host.
    pub rooms: usize,
    /// Two-member rooms: `pair{j}` holds nodes `n{2j}` and `n{2j+1}`
    /// (modulo the nodes).
    pub pairs: usize,
}

impl ChaosPlan {
    /// The plan from `CHAOS_*` environment variables, or the short CI run.
    pub fn from_env() -> Self {
        let var = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        ChaosPlan {
            seed: var("CHAOS_SEED", 42),
            nodes: var("CHAOS_NODES", 5) as usize,
            migrations: var("CHAOS_MIGRATIONS", 40),
            host_kills: var("CHAOS_HOST_KILLS", 3) as usize,
            relay_restarts: var("CHAOS_RELAY_RESTARTS", 1) as usize,
            interval: Duration::from_millis(var("CHAOS_INTERVAL_MS", 150)),
            rooms: var("CHAOS_ROOMS", 3).max(1) as usize,
            pairs: var("CHAOS_PAIRS", 2) as usize,
        }
    }

    /// Every room and its members: the big rooms, then the pairs.
    fn layout(&self) -> Vec<Room> {
        let every: Vec<String> = (0..self.nodes).map(node_name).collect();
        let big = (0..self.rooms).map(|i| Room {
            name: format!("room{i}"),
            members: every.clone(),
        });
        let nodes = self.nodes.max(1);
        let pairs = (0..self.pairs).map(|j| {
            let mut members = vec![node_name(2 * j % nodes), node_name((2 * j + 1) % nodes)];
            members.dedup();
            Room {
                name: format!("pair{j}"),
                members,
            }
        });
        big.chain(pairs).collect()
    }
}

/// The name of node `i`.
fn node_name(i: usize) -> String {
    format!("n{i}")
}

/// A room of the run and its members' names.
#[derive(Debug, Clone)]
struct Room {
    name: String,
    members: Vec<String>,
}

impl Room {
    fn has(&self, node: &str) -> bool {
        self.members.iter().any(|m| m == node)
    }
}

struct Node {
    name: String,
    incarnation: usize,
    member: Member,
    sent: usize,
}

/// The acknowledgements one incarnation of a node received in a room: id
/// to seq.
type Acks = HashMap<String, u64>;

fn acks_of(member: &mut Member, room: &str) -> Acks {
    member.drain();
    member
        .seen
        .iter()
        .filter(|e| e["type"] == "ack" && e["room"] == room)
        .filter_map(|e| Some((e["id"].as_str()?.to_string(), e["seq"].as_u64()?)))
        .collect()
}

/// The acknowledgements `member` (node `name`) received in each of its
/// rooms.
fn acks_by_room(rooms: &[Room], name: &str, member: &mut Member) -> Vec<(String, String, Acks)> {
    rooms
        .iter()
        .filter(|r| r.has(name))
        .map(|r| {
            let acks = acks_of(member, &r.name);
            (r.name.clone(), name.to_string(), acks)
        })
        .collect()
}

struct Run {
    plan: ChaosPlan,
    rng: StdRng,
    relay: RelayProcess,
    relay_args: Vec<String>,
    /// Reconnects by itself across relay restarts.
    rc: RelayServiceClient<tonic::transport::Channel>,
    nodes: Vec<Node>,
    /// Every room, big rooms first, and its members.
    rooms: Vec<Room>,
    /// (room, sender name, acks) of every incarnation, finished or live.
    acked: Vec<(String, String, Acks)>,
    report: ChaosReport,
}

/// Runs the plan; returns the report (the caller asserts on it).
pub async fn run(plan: ChaosPlan) -> ChaosReport {
    let interval = format!("{}ms", plan.interval.as_millis());
    let relay_args: Vec<String> = [
        "--min-users",
        "1",
        "--migration-interval",
        &interval,
        "--member-grace",
        "300ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let args: Vec<&str> = relay_args.iter().map(String::as_str).collect();
    let relay = RelayProcess::start(&args).await;
    let rc = RelayServiceClient::new(
        tonic::transport::Endpoint::from_shared(relay.uri())
            .expect("relay uri")
            .connect_lazy(),
    );
    let mut run = Run {
        rooms: plan.layout(),
        rc,
        rng: StdRng::seed_from_u64(plan.seed),
        relay,
        relay_args,
        nodes: Vec::new(),
        acked: Vec::new(),
        report: ChaosReport::default(),
        plan,
    };
    for i in 0..run.plan.nodes {
        let name = node_name(i);
        let member = spawn_node(&run.relay.uri(), &name, &run.args(&name)).await;
        run.nodes.push(Node {
            name,
            incarnation: 0,
            member,
            sent: 0,
        });
    }
    for n in run.nodes.iter_mut() {
        for room in run.rooms.iter().filter(|r| r.has(&n.name)) {
            n.member
                .wait_event("activated", &[("room", &room.name)])
                .await;
        }
    }
    run.drive().await;
    run.settle_and_check().await;
    run.report
}

impl Run {
    /// The `--room` arguments of node `name`: the rooms it is in.
    fn args(&self, name: &str) -> Vec<&str> {
        self.rooms
            .iter()
            .filter(|r| r.has(name))
            .flat_map(|r| ["--room", r.name.as_str()])
            .collect()
    }

    async fn host_epoch(&self, room: &str) -> Option<(u64, String)> {
        let mut rc = self.rc.clone();
        let host = rc
            .current_host(CurrentHostRequest {
                room: room.to_string(),
            })
            .await
            .ok()?
            .into_inner();
        Some((host.epoch, host.name))
    }

    /// The highest epoch any room's host holds (epochs come from one
    /// counter: every host term of every room took one).
    async fn highest_epoch(&self) -> u64 {
        let mut highest = 0;
        for room in &self.rooms {
            if let Some((epoch, _)) = self.host_epoch(&room.name).await {
                highest = highest.max(epoch);
            }
        }
        highest
    }

    /// Sends traffic and interleaves kills and relay restarts until the plan
    /// is met.
    async fn drive(&mut self) {
        let kills = self.plan.host_kills;
        let restarts = self.plan.relay_restarts;
        let mut next_fault = Instant::now() + Duration::from_secs(2);
        let mut last_epoch = 0;
        loop {
            self.send_some().await;
            last_epoch = last_epoch.max(self.highest_epoch().await);
            // Every room's first term and every kill's failover took an
            // epoch too (relay restarts usually none: hosts re-assert).
            let others = (self.rooms.len() + self.report.host_kills) as u64;
            self.report.migrations = last_epoch.saturating_sub(others);
            let faults_done =
                self.report.host_kills >= kills && self.report.relay_restarts >= restarts;
            if faults_done && self.report.migrations >= self.plan.migrations {
                return;
            }
            if !faults_done && Instant::now() >= next_fault {
                let kill_host = self.report.relay_restarts >= restarts
                    || (self.report.host_kills < kills && self.rng.random_bool(0.75));
                if kill_host {
                    self.kill_host().await;
                } else {
                    self.restart_relay().await;
                }
                next_fault =
                    Instant::now() + Duration::from_millis(self.rng.random_range(500..1500));
            }
            tokio::time::sleep(Duration::from_millis(self.rng.random_range(5..25))).await;
        }
    }

    /// One message from a random node in one of its rooms.
    async fn send_some(&mut self) {
        let i = self.rng.random_range(0..self.nodes.len());
        let node = &mut self.nodes[i];
        let mine: Vec<&Room> = self.rooms.iter().filter(|r| r.has(&node.name)).collect();
        let room = mine[self.rng.random_range(0..mine.len())].name.clone();
        let text = format!("{room}:{}.{}#{}", node.name, node.incarnation, node.sent);
        node.sent += 1;
        self.report.sent += 1;
        node.member.say_in(&room, &text).await;
    }

    /// The room whose host the next kill hits: kills alternate between
    /// the pairs and the big rooms (pairs first), the room within each
    /// kind at random.
    fn room_to_kill_in(&mut self) -> Room {
        let (big, pairs) = self.rooms.split_at(self.plan.rooms);
        let kind = if pairs.is_empty() || self.report.host_kills % 2 == 1 {
            big
        } else {
            pairs
        };
        kind[self.rng.random_range(0..kind.len())].clone()
    }

    async fn kill_host(&mut self) {
        let room = self.room_to_kill_in();
        let Some((epoch, name)) = self.host_epoch(&room.name).await else {
            return;
        };
        let Some(idx) = self.nodes.iter().position(|n| n.name == name) else {
            return;
        };
        let mut dead = self.nodes.remove(idx);
        let killed_at = Instant::now();
        dead.member.kill().await;
        dead.member.finish().await;
        let acks = acks_by_room(&self.rooms, &dead.name, &mut dead.member);
        self.acked.extend(acks);
        self.report.host_kills += 1;
        // Failover time: until every surviving member of the room whose
        // host died shows a message one of them sent there after the kill.
        let probe = format!("probe-after-kill-{}", self.report.host_kills);
        let mut survivors: Vec<&mut Node> = self
            .nodes
            .iter_mut()
            .filter(|n| room.has(&n.name))
            .collect();
        if let Some(first) = survivors.first_mut() {
            first.member.say_in(&room.name, &probe).await;
            self.report.sent += 1;
            for n in survivors.iter_mut() {
                n.member
                    .wait_event("message", &[("text", &probe), ("room", &room.name)])
                    .await;
            }
            self.report.failovers.push(Failover {
                room: room.name.clone(),
                members: room.members.len(),
                ms: killed_at.elapsed().as_millis() as u64,
            });
        }
        tracing_line(&format!(
            "killed host {name} of #{} ({} members) at epoch {epoch}; chat back after {:?}",
            room.name,
            room.members.len(),
            killed_at.elapsed()
        ));
        self.restart_node(dead.name, dead.incarnation + 1).await;
    }

    async fn restart_node(&mut self, name: String, incarnation: usize) {
        // The relay frees the name once the dead node's watch stream is gone.
        let deadline = Instant::now() + crate::DEADLINE;
        loop {
            let mut member = spawn_node(&self.relay.uri(), &name, &self.args(&name)).await;
            if member.wait_or_end(|e| e["type"] == "host").await.is_some() {
                self.nodes.push(Node {
                    name,
                    incarnation,
                    member,
                    sent: 0,
                });
                return;
            }
            assert!(Instant::now() < deadline, "{name} could not come back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn restart_relay(&mut self) {
        self.relay.kill().await;
        tokio::time::sleep(Duration::from_millis(self.rng.random_range(100..500))).await;
        let args: Vec<&str> = self.relay_args.iter().map(String::as_str).collect();
        self.relay = RelayProcess::start_at(&self.relay.addr.clone(), &args).await;
        self.report.relay_restarts += 1;
        tracing_line(&format!(
            "restarted the relay ({})",
            self.report.relay_restarts
        ));
    }

    /// Waits until every survivor holds every acknowledged message of its
    /// rooms, then compares the logs, room by room.
    async fn settle_and_check(&mut self) {
        // A final marker from every survivor in each of its rooms flushes
        // what is in flight.
        let mut markers = Vec::new();
        for n in self.nodes.iter_mut() {
            for room in self.rooms.iter().filter(|r| r.has(&n.name)) {
                let marker = format!("final-{}-{}", room.name, n.name);
                n.member.say_in(&room.name, &marker).await;
                self.report.sent += 1;
                markers.push((room.clone(), marker));
            }
        }
        for n in self.nodes.iter_mut() {
            let mine: Vec<&(Room, String)> =
                markers.iter().filter(|(r, _)| r.has(&n.name)).collect();
            n.member
                .wait_until("every final marker of its rooms", |seen| {
                    mine.iter().all(|(room, m)| {
                        seen.iter().any(|e| {
                            e["type"] == "message"
                                && e["text"] == *m
                                && e["room"] == room.name.as_str()
                        })
                    })
                })
                .await;
        }
        for n in self.nodes.iter_mut() {
            let acks = acks_by_room(&self.rooms, &n.name, &mut n.member);
            self.acked.extend(acks);
        }
        for room in self.rooms.clone() {
            let tally = self.check_room(&room);
            self.report.acked += tally.acked;
            self.report.lost += tally.lost;
            self.report.dup += tally.dup;
            self.report.reordered += tally.reordered;
            self.report.tampering += tally.tampering;
            self.report.rooms.insert(room.name, tally);
        }
    }

    /// Compares the logs of `room` of its surviving members with each
    /// other and with every acknowledgement received in it.
    fn check_room(&mut self, room: &Room) -> RoomTally {
        let logs: Vec<MemberLog> = self
            .nodes
            .iter_mut()
            .filter(|n| room.has(&n.name))
            .map(|n| MemberLog::of(&mut n.member, &room.name))
            .collect();
        let room = room.name.as_str();
        let mut tally = RoomTally {
            acked: self
                .acked
                .iter()
                .filter(|(r, _, _)| r == room)
                .map(|(_, _, a)| a.len())
                .sum(),
            ..RoomTally::default()
        };
        let reference = logs.first().map(|l| l.log.clone()).unwrap_or_default();
        for MemberLog {
            name,
            log,
            dup_seqs,
            gaps,
            tampering,
        } in &logs
        {
            tally.tampering += tampering;
            tally.dup += dup_seqs + duplicate_texts(log);
            if log != &reference || *gaps > 0 {
                tally.reordered += 1;
                let first = log.iter().zip(reference.iter()).find(|(a, b)| a != b);
                tracing_line(&format!(
                    "{name}: #{room} log differs from the first surviving member's (gaps {gaps}, len {} vs {}): first difference {first:?}",
                    log.len(),
                    reference.len()
                ));
            }
            for (_, sender, acks) in self.acked.iter().filter(|(r, _, _)| r == room) {
                for seq in acks.values() {
                    if log.get(seq).is_none_or(|(from, _)| from != sender) {
                        tally.lost += 1;
                    }
                }
            }
        }
        tally
    }
}

fn tracing_line(line: &str) {
    eprintln!("chaos: {line}");
}
