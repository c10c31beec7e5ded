//! The chaos run: real `relay-svc` and `chat-node` processes, every node in
//! every room, with concurrent senders in each room, planned migrations at a
//! short interval, repeated `kill -9` of a room's host (restarted under the
//! same name) and `kill -9` plus restart of the relay. It then checks every
//! surviving member's log of each room.

use crate::member::Member;
use crate::procs::{spawn_node, RelayProcess};
use chat_proto::pb::relay::relay_service_client::RelayServiceClient;
use chat_proto::pb::relay::CurrentHostRequest;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
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
    /// Rooms, each with its own host.
    pub rooms: usize,
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
        }
    }
}

/// What the run saw.
#[derive(Debug, Default)]
pub struct ChaosReport {
    /// Epoch changes by planned migration (epochs minus kills).
    pub migrations: u64,
    /// Host kills done.
    pub host_kills: usize,
    /// Relay restarts done.
    pub relay_restarts: usize,
    /// Messages typed.
    pub sent: usize,
    /// Messages acknowledged.
    pub acked: usize,
    /// Acknowledged messages missing from a survivor's log.
    pub lost: usize,
    /// Messages shown twice.
    pub dup: usize,
    /// Survivors whose log differs from the first one's, or has gaps.
    pub reordered: usize,
    /// Kill-to-everyone-chatting-again times, in ms.
    pub failover_ms: Vec<u64>,
    /// The same counts, room by room.
    pub rooms: BTreeMap<String, RoomTally>,
}

/// What the run saw in one room.
#[derive(Debug, Default, Clone, Copy)]
pub struct RoomTally {
    /// Messages acknowledged.
    pub acked: usize,
    /// Acknowledged messages missing from a survivor's log.
    pub lost: usize,
    /// Messages shown twice.
    pub dup: usize,
    /// Survivors whose log differs from the first one's, or has gaps.
    pub reordered: usize,
}

impl ChaosReport {
    /// The one summary line.
    pub fn summary(&self) -> String {
        let mut f = self.failover_ms.clone();
        f.sort_unstable();
        let p50 = f.get(f.len() / 2).copied().unwrap_or(0);
        let max = f.last().copied().unwrap_or(0);
        let rooms: Vec<String> = self
            .rooms
            .iter()
            .map(|(room, t)| {
                format!(
                    "#{room}: acked={} lost={} dup={} reordered={}",
                    t.acked, t.lost, t.dup, t.reordered
                )
            })
            .collect();
        format!(
            "migrations={} host_kills={} relay_restarts={} sent={} acked={} lost={} dup={} reordered={} failover_p50_ms={p50} failover_max_ms={max}\n{}",
            self.migrations, self.host_kills, self.relay_restarts, self.sent, self.acked, self.lost, self.dup, self.reordered,
            rooms.join("\n")
        )
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

/// The acknowledgements `member` (node `name`) received, room by room.
fn acks_by_room(rooms: usize, name: &str, member: &mut Member) -> Vec<(String, String, Acks)> {
    (0..rooms)
        .map(room_name)
        .map(|room| {
            let acks = acks_of(member, &room);
            (room, name.to_string(), acks)
        })
        .collect()
}

/// The name of room `i`.
fn room_name(i: usize) -> String {
    format!("room{i}")
}

struct Run {
    plan: ChaosPlan,
    rng: StdRng,
    relay: RelayProcess,
    relay_args: Vec<String>,
    /// Reconnects by itself across relay restarts.
    rc: RelayServiceClient<tonic::transport::Channel>,
    nodes: Vec<Node>,
    /// The `--room` arguments of every node.
    room_args: Vec<String>,
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
    let room_args = (0..plan.rooms)
        .flat_map(|i| ["--room".to_string(), room_name(i)])
        .collect();
    let mut run = Run {
        room_args,
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
        let name = format!("n{i}");
        let member = spawn_node(&run.relay.uri(), &name, &run.args()).await;
        run.nodes.push(Node {
            name,
            incarnation: 0,
            member,
            sent: 0,
        });
    }
    for n in run.nodes.iter_mut() {
        for i in 0..run.plan.rooms {
            n.member
                .wait_event("activated", &[("room", &room_name(i))])
                .await;
        }
    }
    run.drive().await;
    run.settle_and_check().await;
    run.report
}

impl Run {
    fn args(&self) -> Vec<&str> {
        self.room_args.iter().map(String::as_str).collect()
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
        for i in 0..self.plan.rooms {
            if let Some((epoch, _)) = self.host_epoch(&room_name(i)).await {
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
            let others = (self.plan.rooms + self.report.host_kills) as u64;
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

    async fn send_some(&mut self) {
        let i = self.rng.random_range(0..self.nodes.len());
        let room = room_name(self.rng.random_range(0..self.plan.rooms));
        let node = &mut self.nodes[i];
        let text = format!("{room}:{}.{}#{}", node.name, node.incarnation, node.sent);
        node.sent += 1;
        self.report.sent += 1;
        node.member.say_in(&room, &text).await;
    }

    async fn kill_host(&mut self) {
        let room = room_name(self.rng.random_range(0..self.plan.rooms));
        let Some((epoch, name)) = self.host_epoch(&room).await else {
            return;
        };
        let Some(idx) = self.nodes.iter().position(|n| n.name == name) else {
            return;
        };
        let mut dead = self.nodes.remove(idx);
        let killed_at = Instant::now();
        dead.member.kill().await;
        dead.member.finish().await;
        let acks = acks_by_room(self.plan.rooms, &dead.name, &mut dead.member);
        self.acked.extend(acks);
        self.report.host_kills += 1;
        // Failover time: until every survivor shows a message sent after
        // the kill in the room whose host died.
        let probe = format!("probe-after-kill-{}", self.report.host_kills);
        if let Some(first) = self.nodes.first_mut() {
            first.member.say_in(&room, &probe).await;
            self.report.sent += 1;
        }
        for n in self.nodes.iter_mut() {
            n.member
                .wait_event("message", &[("text", &probe), ("room", &room)])
                .await;
        }
        self.report
            .failover_ms
            .push(killed_at.elapsed().as_millis() as u64);
        tracing_line(&format!(
            "killed host {name} of #{room} at epoch {epoch}; chat back after {:?}",
            killed_at.elapsed()
        ));
        self.restart_node(dead.name, dead.incarnation + 1).await;
    }

    async fn restart_node(&mut self, name: String, incarnation: usize) {
        // The relay frees the name once the dead node's watch stream is gone.
        let deadline = Instant::now() + crate::DEADLINE;
        loop {
            let mut member = spawn_node(&self.relay.uri(), &name, &self.args()).await;
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

    /// Waits until every survivor holds every acknowledged message, then
    /// compares the logs, room by room.
    async fn settle_and_check(&mut self) {
        let rooms: Vec<String> = (0..self.plan.rooms).map(room_name).collect();
        // A final marker from every survivor in every room flushes what is
        // in flight.
        let mut markers = Vec::new();
        for n in self.nodes.iter_mut() {
            for room in &rooms {
                let marker = format!("final-{room}-{}", n.name);
                n.member.say_in(room, &marker).await;
                self.report.sent += 1;
                markers.push((room.clone(), marker));
            }
        }
        for n in self.nodes.iter_mut() {
            n.member
                .wait_until("every final marker", |seen| {
                    markers.iter().all(|(room, m)| {
                        seen.iter().any(|e| {
                            e["type"] == "message" && e["text"] == *m && e["room"] == *room
                        })
                    })
                })
                .await;
        }
        for n in self.nodes.iter_mut() {
            let acks = acks_by_room(self.plan.rooms, &n.name, &mut n.member);
            self.acked.extend(acks);
        }
        for room in &rooms {
            let tally = self.check_room(room);
            self.report.acked += tally.acked;
            self.report.lost += tally.lost;
            self.report.dup += tally.dup;
            self.report.reordered += tally.reordered;
            self.report.rooms.insert(room.clone(), tally);
        }
    }

    /// Compares the survivors' logs of `room` with each other and with
    /// every acknowledgement received in it.
    fn check_room(&mut self, room: &str) -> RoomTally {
        let mut tally = RoomTally {
            acked: self
                .acked
                .iter()
                .filter(|(r, _, _)| r == room)
                .map(|(_, _, a)| a.len())
                .sum(),
            ..RoomTally::default()
        };
        let logs: Vec<MemberLog> = self
            .nodes
            .iter_mut()
            .map(|n| MemberLog::of(&mut n.member, room))
            .collect();
        let reference = logs.first().map(|l| l.log.clone()).unwrap_or_default();
        for MemberLog {
            name,
            log,
            dup_seqs,
            gaps,
        } in &logs
        {
            tally.dup += dup_seqs + duplicate_texts(log);
            if log != &reference || *gaps > 0 {
                tally.reordered += 1;
                let first = log.iter().zip(reference.iter()).find(|(a, b)| a != b);
                tracing_line(&format!(
                    "{name}: #{room} log differs from the first survivor's (gaps {gaps}, len {} vs {}): first difference {first:?}",
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

/// Seq to (from, text).
type Log = BTreeMap<u64, (String, String)>;

/// What one survivor showed.
struct MemberLog {
    name: String,
    log: Log,
    /// Sequence numbers shown more than once.
    dup_seqs: usize,
    /// Sequence numbers missing below the head.
    gaps: usize,
}

impl MemberLog {
    fn of(member: &mut Member, room: &str) -> Self {
        member.drain();
        for e in member
            .seen
            .iter()
            .filter(|e| e["type"] == "error" && e["room"] == room)
        {
            tracing_line(&format!("{}: error event {e}", member.name));
        }
        let mut log = Log::new();
        let mut dup_seqs = 0;
        let in_room = |e: &&Value| e["type"] == "message" && e["room"] == room;
        for e in member.seen.iter().filter(in_room) {
            let seq = e["seq"].as_u64().unwrap_or(0);
            if log
                .insert(seq, (str_of(e, "from"), str_of(e, "text")))
                .is_some()
            {
                dup_seqs += 1;
            }
        }
        let head = log.keys().next_back().copied().unwrap_or(0);
        let gaps = (1..=head).filter(|s| !log.contains_key(s)).count();
        MemberLog {
            name: member.name.clone(),
            log,
            dup_seqs,
            gaps,
        }
    }
}

fn duplicate_texts(log: &Log) -> usize {
    let mut seen = HashMap::new();
    for (_, text) in log.values() {
        *seen.entry(text).or_insert(0usize) += 1;
    }
    seen.values().map(|n| n - 1).sum()
}

fn str_of(e: &Value, k: &str) -> String {
    e[k].as_str().unwrap_or("").to_string()
}

fn tracing_line(line: &str) {
    eprintln!("chaos: {line}");
}
