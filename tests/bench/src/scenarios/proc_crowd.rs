//! Members of E: every member node in a process of its own (so whichever
//! one hosts can be killed with SIGKILL), reporting what its client sees
//! on stdout (see [`crate::member`]), each line feeding a [`Tracker`].
//! Members may join between kills (a two-member room keeps two members).

use super::timing::wait_until;
use super::tracker::{Live, Seen, Tracker};
use crate::children::Server;
use crate::member::{unix_ns, Report};
use crate::{BenchError, Result};
use futures_util::{StreamExt, TryStreamExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// One member process.
struct Member {
    name: String,
    server: Server,
    live: Arc<Live>,
    task: JoinHandle<Tracker>,
    /// Own messages acknowledged (distinct).
    acked: Arc<AtomicU64>,
    /// Own messages sent, once it answered `stop`.
    sent: Arc<AtomicU64>,
    sent_known: Arc<AtomicBool>,
    /// Publisher number, if it publishes.
    publisher: Option<u32>,
    /// Number of the kill that ended it.
    killed_at: Option<usize>,
    /// Kills done when it joined.
    joined_at: usize,
}

/// What a member's tracker saw, and whether (at which kill) it was killed.
pub struct Outcome {
    /// The tracker.
    pub tracker: Tracker,
    /// Number of the kill (0-based) that ended it.
    pub killed_at: Option<usize>,
    /// Kills done when it joined (0 for the first members).
    pub joined_at: usize,
}

impl Outcome {
    /// Whether it was a running member at kill number `k` (0-based) and
    /// not the one killed.
    pub fn survived(&self, k: usize) -> bool {
        self.joined_at <= k && self.killed_at.is_none_or(|at| at > k)
    }
}

/// Every member process of E.
pub struct ProcCrowd {
    members: Vec<Member>,
    /// Member index of each publisher number.
    publishers: Vec<usize>,
}

async fn spawn(uri: &str, name: &str) -> Result<Member> {
    let args = ["node", "--relay", uri, "--name", name, "--report"];
    let (server, mut lines) = Server::spawn_self_lines(&format!("node {name}"), &args).await?;
    let live = Arc::new(Live::default());
    let acked = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let sent_known = Arc::new(AtomicBool::new(false));
    let (l, a, s, k) = (
        live.clone(),
        acked.clone(),
        sent.clone(),
        sent_known.clone(),
    );
    let mut tracker = Tracker::new(name.to_string(), l);
    let task = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            match Report::parse(&line) {
                Some(Report::Host { at_ns, epoch, name }) => {
                    tracker.observe(Seen::Host { epoch, name }, at_ns)
                }
                Some(Report::Message {
                    at_ns,
                    publisher,
                    index,
                }) => tracker.observe(Seen::Message { publisher, index }, at_ns),
                Some(Report::Acked(n)) => a.store(n, Ordering::Relaxed),
                Some(Report::Sent(n)) => {
                    s.store(n, Ordering::Relaxed);
                    k.store(true, Ordering::Release);
                }
                Some(Report::Error(m)) => tracker.observe(Seen::Error(m), unix_ns()),
                Some(Report::Count { .. } | Report::Progress(_)) | None => {}
            }
        }
        tracker
    });
    Ok(Member {
        name: name.to_string(),
        server,
        live,
        task,
        acked,
        sent,
        sent_known,
        publisher: None,
        killed_at: None,
        joined_at: 0,
    })
}

impl ProcCrowd {
    /// Starts the first member (it becomes host), then the others.
    pub async fn start(uri: &str, names: &[String]) -> Result<ProcCrowd> {
        let Some((first, rest)) = names.split_first() else {
            return Err(BenchError::Setup("no members".into()));
        };
        let mut members = vec![spawn(uri, first).await?];
        let others: Vec<Member> = futures_util::stream::iter(rest)
            .map(|name| spawn(uri, name))
            .buffered(4)
            .try_collect()
            .await?;
        members.extend(others);
        Ok(ProcCrowd {
            members,
            publishers: Vec::new(),
        })
    }

    /// Starts one more member, `name`, after `kills` kills; what its
    /// tracker shows.
    pub async fn join(&mut self, uri: &str, name: &str, kills: usize) -> Result<Arc<Live>> {
        let mut member = spawn(uri, name).await?;
        member.joined_at = kills;
        let live = member.live.clone();
        self.members.push(member);
        Ok(live)
    }

    /// Members started so far, killed ones included.
    pub fn started(&self) -> usize {
        self.members.len()
    }

    /// What each running member's tracker shows.
    pub fn live(&self) -> impl Iterator<Item = &Arc<Live>> {
        self.members
            .iter()
            .filter(|m| m.killed_at.is_none())
            .map(|m| &m.live)
    }

    /// Makes the last running member that does not publish yet publish
    /// `rate` messages per second.
    pub async fn add_publisher(&mut self, rate: f64) -> Result<()> {
        let i = (0..self.members.len())
            .rev()
            .find(|&i| self.members[i].killed_at.is_none() && self.members[i].publisher.is_none())
            .ok_or_else(|| BenchError::Setup("no member left to publish".into()))?;
        let p = self.publishers.len() as u32;
        self.members[i]
            .server
            .send_line(&format!("publish {p} {rate}"))
            .await?;
        self.members[i].publisher = Some(p);
        self.publishers.push(i);
        Ok(())
    }

    /// Publishers still running.
    pub fn publishing(&self) -> usize {
        self.publishers
            .iter()
            .filter(|&&i| self.members[i].killed_at.is_none())
            .count()
    }

    /// `kill -9` of member `name` as kill number `kill`; whether it published.
    pub fn kill(&mut self, name: &str, kill: usize) -> Result<bool> {
        let m = self
            .members
            .iter_mut()
            .find(|m| m.name == name && m.killed_at.is_none())
            .ok_or_else(|| BenchError::Setup(format!("no running member {name}")))?;
        m.server.kill9()?;
        m.killed_at = Some(kill);
        m.live.gone.store(true, Ordering::Relaxed);
        Ok(m.publisher.is_some())
    }

    /// Stops every running publisher and waits until each says how many it
    /// sent.
    pub async fn stop_publishing(&mut self) -> Result<()> {
        for &i in &self.publishers {
            if self.members[i].killed_at.is_none() {
                self.members[i].server.send_line("stop").await?;
            }
        }
        let stopped = wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
            self.publishers.iter().all(|&i| {
                let m = &self.members[i];
                m.killed_at.is_some() || m.sent_known.load(Ordering::Acquire)
            })
        })
        .await;
        if stopped {
            Ok(())
        } else {
            Err(BenchError::Timeout("publishers to stop".into()))
        }
    }

    /// Messages every survivor must have, per publisher: all it sent if it
    /// runs, the acknowledged ones (a prefix: one session sequences in
    /// order) if it was killed.
    pub fn expected(&self) -> Vec<u64> {
        self.publishers
            .iter()
            .map(|&i| {
                let m = &self.members[i];
                match m.killed_at {
                    None => m.sent.load(Ordering::Relaxed),
                    Some(_) => m.acked.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Waits (at most `limit`) until every running member has at least as
    /// many distinct messages as expected; false on timeout.
    pub async fn wait_delivered(&self, limit: Duration) -> bool {
        let total: u64 = self.expected().iter().sum();
        wait_until(limit, Duration::from_millis(20), || {
            self.live()
                .all(|l| l.distinct.load(Ordering::Relaxed) >= total)
        })
        .await
    }

    /// Process ids of running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter(|m| m.killed_at.is_none())
            .map(|m| m.server.pid)
            .collect()
    }

    /// Stops every member; returns what each saw.
    pub async fn finish(self) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for m in self.members {
            m.server.stop().await;
            if let Ok(tracker) = m.task.await {
                outcomes.push(Outcome {
                    tracker,
                    killed_at: m.killed_at,
                    joined_at: m.joined_at,
                });
            }
        }
        outcomes
    }
}
