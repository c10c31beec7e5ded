//! The chaos run: real `relay-svc` and `chat-node` processes with concurrent
//! senders, planned migrations at a short interval, repeated `kill -9` of the
//! host (restarted under the same name) and `kill -9` plus restart of the
//! relay. It then checks every surviving member's log.

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
}

impl ChaosReport {
    /// The one summary line.
    pub fn summary(&self) -> String {
        let mut f = self.failover_ms.clone();
        f.sort_unstable();
        let p50 = f.get(f.len() / 2).copied().unwrap_or(0);
        let max = f.last().copied().unwrap_or(0);
        format!(
            "migrations={} host_kills={} relay_restarts={} sent={} acked={} lost={} dup={} reordered={} failover_p50_ms={p50} failover_max_ms={max}",
            self.migrations, self.host_kills, self.relay_restarts, self.sent, self.acked, self.lost, self.dup, self.reordered
        )
    }
}

struct Node {
    name: String,
    incarnation: usize,
    member: Member,
    sent: usize,
}

/// The acknowledgements one incarnation of a node received: id to seq.
type Acks = HashMap<String, u64>;

fn acks_of(member: &mut Member) -> Acks {
    member.drain();
    member
        .seen
        .iter()
        .filter(|e| e["type"] == "ack")
        .filter_map(|e| Some((e["id"].as_str()?.to_string(), e["seq"].as_u64()?)))
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
    /// (sender name, acks) of every incarnation, finished or live.
    acked: Vec<(String, Acks)>,
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
        let member = spawn_node(&run.relay.uri(), &name, &[]).await;
        run.nodes.push(Node {
            name,
            incarnation: 0,
            member,
            sent: 0,
        });
    }
    for n in run.nodes.iter_mut() {
        n.member.wait_event("activated", &[]).await;
    }
    run.drive().await;
    run.settle_and_check().await;
    run.report
}

impl Run {
    async fn host_epoch(&self) -> Option<(u64, String)> {
        let mut rc = self.rc.clone();
        let host = rc
            .current_host(CurrentHostRequest::default())
            .await
            .ok()?
            .into_inner();
        Some((host.epoch, host.name))
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
            if let Some((epoch, _)) = self.host_epoch().await {
                last_epoch = last_epoch.max(epoch);
            }
            self.report.migrations = last_epoch.saturating_sub(1 + self.report.host_kills as u64);
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
        let node = &mut self.nodes[i];
        let text = format!("{}.{}#{}", node.name, node.incarnation, node.sent);
        node.sent += 1;
        self.report.sent += 1;
        node.member.say(&text).await;
    }

    async fn kill_host(&mut self) {
        let Some((epoch, name)) = self.host_epoch().await else {
            return;
        };
        let Some(idx) = self.nodes.iter().position(|n| n.name == name) else {
            return;
        };
        let mut dead = self.nodes.remove(idx);
        let killed_at = Instant::now();
        dead.member.kill().await;
        dead.member.finish().await;
        self.acked
            .push((dead.name.clone(), acks_of(&mut dead.member)));
        self.report.host_kills += 1;
        // Failover time: until every survivor shows a message sent after the kill.
        let probe = format!("probe-after-kill-{}", self.report.host_kills);
        if let Some(first) = self.nodes.first_mut() {
            first.member.say(&probe).await;
            self.report.sent += 1;
        }
        for n in self.nodes.iter_mut() {
            n.member.wait_event("message", &[("text", &probe)]).await;
        }
        self.report
            .failover_ms
            .push(killed_at.elapsed().as_millis() as u64);
        tracing_line(&format!(
            "killed host {name} at epoch {epoch}; chat back after {:?}",
            killed_at.elapsed()
        ));
        self.restart_node(dead.name, dead.incarnation + 1).await;
    }

    async fn restart_node(&mut self, name: String, incarnation: usize) {
        // The relay frees the name once the dead node's watch stream is gone.
        let deadline = Instant::now() + crate::DEADLINE;
        loop {
            let mut member = spawn_node(&self.relay.uri(), &name, &[]).await;
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
    /// compares the logs.
    async fn settle_and_check(&mut self) {
        // A final marker from every survivor flushes what is in flight.
        for n in self.nodes.iter_mut() {
            let marker = format!("final-{}", n.name);
            n.member.say(&marker).await;
            self.report.sent += 1;
        }
        let markers: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("final-{}", n.name))
            .collect();
        for n in self.nodes.iter_mut() {
            n.member
                .wait_until("every final marker", |seen| {
                    markers.iter().all(|m| {
                        seen.iter()
                            .any(|e| e["type"] == "message" && e["text"] == *m)
                    })
                })
                .await;
        }
        for n in self.nodes.iter_mut() {
            self.acked.push((n.name.clone(), acks_of(&mut n.member)));
        }
        self.report.acked = self.acked.iter().map(|(_, a)| a.len()).sum();
        let logs: Vec<MemberLog> = self
            .nodes
            .iter_mut()
            .map(|n| MemberLog::of(&mut n.member))
            .collect();
        let reference = logs.first().map(|l| l.log.clone()).unwrap_or_default();
        for MemberLog {
            name,
            log,
            dup_seqs,
            gaps,
        } in &logs
        {
            self.report.dup += dup_seqs + duplicate_texts(log);
            if log != &reference || *gaps > 0 {
                self.report.reordered += 1;
                let first = log.iter().zip(reference.iter()).find(|(a, b)| a != b);
                tracing_line(&format!(
                    "{name}: log differs from the first survivor's (gaps {gaps}, len {} vs {}): first difference {first:?}",
                    log.len(),
                    reference.len()
                ));
            }
            for (sender, acks) in &self.acked {
                for seq in acks.values() {
                    if log.get(seq).is_none_or(|(from, _)| from != sender) {
                        self.report.lost += 1;
                    }
                }
            }
        }
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
    fn of(member: &mut Member) -> Self {
        member.drain();
        for e in member.seen.iter().filter(|e| e["type"] == "error") {
            tracing_line(&format!("{}: error event {e}", member.name));
        }
        let mut log = Log::new();
        let mut dup_seqs = 0;
        for e in member.seen.iter().filter(|e| e["type"] == "message") {
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
