//! Clients of D and E: full member nodes through the real client library,
//! some of them publishing at a fixed rate, each with a tracker that
//! records every message id (for lost and duplicated messages) and every
//! switch to a new host epoch with its timing.

use super::timing::{wait_until, Pace};
use crate::payload::{self, now_ns};
use crate::systems::ours;
use crate::Result;
use chat_node::client::{ClientEvent, UserCommand};
use chat_node::Node;
use futures_util::{StreamExt, TryStreamExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One switch of a client to a new host epoch.
#[derive(Debug, Clone)]
pub struct Switch {
    /// The new epoch.
    pub epoch: u64,
    /// The new host's user.
    pub host: String,
    /// When the last message before the switch arrived (none at join).
    pub last_before_ns: Option<u64>,
    /// When the client learned of the new host (its Welcome).
    pub host_event_ns: u64,
    /// When the first message after the switch arrived.
    pub first_after_ns: Option<u64>,
}

/// What a client saw, as far as the trackers care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A session with a host of this epoch began.
    Host {
        /// Epoch.
        epoch: u64,
        /// The host's user.
        name: String,
    },
    /// A benchmark message.
    Message {
        /// Publisher.
        publisher: u32,
        /// Index.
        index: u64,
    },
    /// A chat message that is not a benchmark payload.
    OtherMessage,
    /// An error event.
    Error(String),
}

/// What other tasks may read while a client runs.
#[derive(Debug, Default)]
pub struct Live {
    /// Distinct benchmark messages received.
    pub distinct: AtomicU64,
    /// Epoch of the host the last message came through.
    pub receiving_epoch: AtomicU64,
    /// The member was killed on purpose.
    pub gone: AtomicBool,
}

/// One client's record.
#[derive(Debug)]
pub struct Tracker {
    /// Member name.
    pub name: String,
    /// Times each (publisher, index) was received.
    counts: Vec<Vec<u8>>,
    /// Every host switch, the first being the join.
    pub switches: Vec<Switch>,
    /// Error events.
    pub errors: Vec<String>,
    epoch: u64,
    last_msg_ns: Option<u64>,
    live: Arc<Live>,
}

impl Tracker {
    /// A tracker for member `name`.
    pub fn new(name: String, live: Arc<Live>) -> Self {
        Tracker {
            name,
            counts: Vec::new(),
            switches: Vec::new(),
            errors: Vec::new(),
            epoch: 0,
            last_msg_ns: None,
            live,
        }
    }

    fn on_event(&mut self, event: ClientEvent) {
        let seen = match event {
            ClientEvent::Host { epoch, name, .. } => Seen::Host { epoch, name },
            ClientEvent::Message { text, .. } => match payload::parse(text.as_bytes()) {
                Some(stamp) => Seen::Message {
                    publisher: stamp.publisher,
                    index: stamp.index,
                },
                None => Seen::OtherMessage,
            },
            ClientEvent::Error { message } => Seen::Error(message),
            _ => return,
        };
        self.observe(seen, now_ns());
    }

    /// Records one thing the client saw at `at_ns` (any clock, as long as
    /// the caller compares like with like).
    pub fn observe(&mut self, seen: Seen, at_ns: u64) {
        let is_message = matches!(seen, Seen::Message { .. } | Seen::OtherMessage);
        match seen {
            Seen::Host { epoch, name } if epoch > self.epoch => {
                self.epoch = epoch;
                self.switches.push(Switch {
                    epoch,
                    host: name,
                    last_before_ns: self.last_msg_ns,
                    host_event_ns: at_ns,
                    first_after_ns: None,
                });
            }
            Seen::Message { publisher, index } => {
                self.count(publisher as usize, index as usize);
            }
            Seen::Error(message) => self.errors.push(message),
            _ => {}
        }
        if is_message {
            if let Some(s) = self.switches.last_mut() {
                if s.first_after_ns.is_none() {
                    s.first_after_ns = Some(at_ns);
                    self.live.receiving_epoch.store(s.epoch, Ordering::Release);
                }
            }
            self.last_msg_ns = Some(at_ns);
        }
    }

    fn count(&mut self, publisher: usize, index: usize) {
        if self.counts.len() <= publisher {
            self.counts.resize(publisher + 1, Vec::new());
        }
        let seen = &mut self.counts[publisher];
        if seen.len() <= index {
            seen.resize(index + 1, 0);
        }
        seen[index] = seen[index].saturating_add(1);
        if seen[index] == 1 {
            self.live.distinct.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Messages never received among the first `expected[p]` of each
    /// publisher `p`, and messages received more than once (any index).
    pub fn lost_and_dup(&self, expected: &[u64]) -> (u64, u64) {
        let lost = expected
            .iter()
            .enumerate()
            .map(|(p, &n)| {
                let seen = self.counts.get(p).map_or(&[][..], Vec::as_slice);
                (0..n as usize)
                    .filter(|&i| seen.get(i).copied().unwrap_or(0) == 0)
                    .count() as u64
            })
            .sum();
        let dup = self
            .counts
            .iter()
            .flatten()
            .map(|&c| u64::from(c.saturating_sub(1)))
            .sum();
        (lost, dup)
    }
}

/// Clients of D and E.
pub struct Crowd {
    /// In-process member nodes, by name.
    pub nodes: Vec<(String, Node)>,
    /// What each client's tracker shows while running.
    pub live: Vec<Arc<Live>>,
    tasks: Vec<JoinHandle<Tracker>>,
    cancel: CancellationToken,
    publishing: CancellationToken,
    publishers: Vec<JoinHandle<()>>,
    /// Messages sent per publisher.
    pub sent: Arc<Vec<AtomicU64>>,
}

impl Crowd {
    /// Joins members `names` (a few at a time), each tracked.
    pub async fn join(uri: &str, names: Vec<String>) -> Result<Crowd> {
        let joined: Vec<_> = futures_util::stream::iter(names)
            .map(|name| async move {
                let (node, events) = ours::join(uri, &name).await?;
                Ok::<_, crate::BenchError>((name, node, events))
            })
            .buffered(8)
            .try_collect()
            .await?;
        let cancel = CancellationToken::new();
        let mut crowd = Crowd {
            nodes: Vec::new(),
            live: Vec::new(),
            tasks: Vec::new(),
            cancel: cancel.clone(),
            publishing: CancellationToken::new(),
            publishers: Vec::new(),
            sent: Arc::new(Vec::new()),
        };
        for (name, node, mut events) in joined {
            let live = Arc::new(Live::default());
            let mut tracker = Tracker::new(name.clone(), live.clone());
            let cancel = cancel.clone();
            crowd.tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        event = events.recv() => match event.map(|e| e.event) {
                            Some(event) => tracker.on_event(event),
                            None => break,
                        },
                        _ = cancel.cancelled() => break,
                    }
                }
                tracker
            }));
            crowd.live.push(live);
            crowd.nodes.push((name, node));
        }
        Ok(crowd)
    }

    /// The first `pubs` clients start publishing, `rate` messages per
    /// second in all.
    pub fn start_publishing(&mut self, pubs: usize, rate: u32) {
        let pubs = pubs.min(self.nodes.len());
        self.sent = Arc::new((0..pubs).map(|_| AtomicU64::new(0)).collect());
        let t0 = tokio::time::Instant::now();
        for (i, (_, node)) in self.nodes.iter().take(pubs).enumerate() {
            let commands = node.commands.clone();
            let sent = self.sent.clone();
            let mut pace = Pace::new(t0, i, pubs, rate, self.publishing.clone());
            self.publishers.push(tokio::spawn(async move {
                while let Some(n) = pace.next().await {
                    let text = payload::make(i as u32, n);
                    if commands.send(UserCommand::Say(text)).await.is_err() {
                        return;
                    }
                    sent[i].fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }

    /// Stops the publishers.
    pub async fn stop_publishing(&mut self) {
        self.publishing.cancel();
        for task in self.publishers.drain(..) {
            let _ = task.await;
        }
    }

    /// Messages sent, per publisher.
    pub fn sent_counts(&self) -> Vec<u64> {
        self.sent
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect()
    }

    /// Waits (at most `limit`) until every client has every message sent;
    /// false on timeout.
    pub async fn wait_delivered(&self, limit: Duration) -> bool {
        let total: u64 = self.sent_counts().iter().sum();
        wait_until(limit, Duration::from_millis(20), || {
            self.live
                .iter()
                .all(|l| l.distinct.load(Ordering::Relaxed) >= total)
        })
        .await
    }

    /// Stops every client; returns their trackers.
    pub async fn finish(mut self) -> Vec<Tracker> {
        self.stop_publishing().await;
        self.cancel.cancel();
        let trackers = futures_util::future::join_all(self.tasks).await;
        ours::stop_nodes(self.nodes.into_iter().map(|(_, n)| n).collect()).await;
        trackers.into_iter().filter_map(|t| t.ok()).collect()
    }
}

/// Lost and duplicated messages of every tracker in `trackers` together,
/// against the messages each publisher sent (`expected`).
pub fn total_lost_and_dup<'a>(
    trackers: impl IntoIterator<Item = &'a Tracker>,
    expected: &[u64],
) -> (u64, u64) {
    trackers
        .into_iter()
        .map(|t| t.lost_and_dup(expected))
        .fold((0, 0), |(lost, dup), (l, d)| (lost + l, dup + d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lost_and_duplicated_messages() {
        let mut t = Tracker::new("u".into(), Arc::new(Live::default()));
        t.count(0, 0);
        t.count(0, 2);
        t.count(0, 2);
        t.count(1, 0);
        assert_eq!(t.lost_and_dup(&[3, 1]), (1, 1));
        assert_eq!(t.live.distinct.load(Ordering::Relaxed), 3);
    }
}
