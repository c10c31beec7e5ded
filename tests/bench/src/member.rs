//! A member node run as a process of its own (the `node` subcommand): the
//! same library `chat-node` runs, with a user that reads every event and,
//! when told on stdin, publishes benchmark messages. With `--report` it
//! prints what its client sees, one line per event, so the benchmark can
//! track members it may `kill -9`. Times are wall-clock nanoseconds, which
//! every process on the machine shares.
//!
//! stdin commands: `publish <publisher> <per-second>`, `stop` (answered
//! with a `Sent` line); EOF ends the process.

use crate::payload;
use crate::{BenchError, Result};
use chat_node::client::{ClientEvent, UserCommand};
use chat_node::BoundNode;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Wall-clock nanoseconds since the Unix epoch.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One line a reporting member prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Its client is in a session with a host of a new epoch.
    Host {
        /// When.
        at_ns: u64,
        /// Epoch.
        epoch: u64,
        /// The host's name.
        name: String,
    },
    /// A benchmark message arrived.
    Message {
        /// When.
        at_ns: u64,
        /// Its publisher.
        publisher: u32,
        /// Its index.
        index: u64,
    },
    /// This member's own messages acknowledged so far (distinct ids).
    Acked(u64),
    /// Messages this member sent, after `stop`.
    Sent(u64),
    /// An error event.
    Error(String),
    /// Chat messages shown so far (with `--count-to`).
    Count {
        /// When.
        at_ns: u64,
        /// How many.
        count: u64,
    },
}

/// Every how many shown messages a counting member says so.
pub const COUNT_EVERY: u64 = 4096;

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Report::Host { at_ns, epoch, name } => write!(f, "H {at_ns} {epoch} {name}"),
            Report::Message {
                at_ns,
                publisher,
                index,
            } => write!(f, "M {at_ns} {publisher} {index}"),
            Report::Acked(n) => write!(f, "A {n}"),
            Report::Sent(n) => write!(f, "S {n}"),
            Report::Error(m) => write!(f, "E {}", m.replace('\n', " ")),
            Report::Count { at_ns, count } => write!(f, "C {at_ns} {count}"),
        }
    }
}

impl Report {
    /// Reads a line printed by a reporting member.
    pub fn parse(line: &str) -> Option<Report> {
        let mut parts = line.splitn(4, ' ');
        let kind = parts.next()?;
        let mut num = || parts.next()?.parse::<u64>().ok();
        Some(match kind {
            "H" => {
                let (at_ns, epoch) = (num()?, num()?);
                let name = line.splitn(4, ' ').nth(3)?.to_string();
                Report::Host { at_ns, epoch, name }
            }
            "M" => Report::Message {
                at_ns: num()?,
                publisher: u32::try_from(num()?).ok()?,
                index: num()?,
            },
            "A" => Report::Acked(num()?),
            "S" => Report::Sent(num()?),
            "C" => Report::Count {
                at_ns: num()?,
                count: num()?,
            },
            "E" => Report::Error(line.get(2..).unwrap_or_default().to_string()),
            _ => return None,
        })
    }

    fn from_event(event: &ClientEvent, acked: &mut HashSet<String>) -> Option<Report> {
        let at_ns = unix_ns();
        match event {
            ClientEvent::Host { epoch, name, .. } => Some(Report::Host {
                at_ns,
                epoch: *epoch,
                name: name.clone(),
            }),
            ClientEvent::Message { text, .. } => {
                let stamp = payload::parse(text.as_bytes())?;
                Some(Report::Message {
                    at_ns,
                    publisher: stamp.publisher,
                    index: stamp.index,
                })
            }
            ClientEvent::Ack { id, .. } if acked.insert(id.clone()) => {
                Some(Report::Acked(acked.len() as u64))
            }
            ClientEvent::Error { message } => Some(Report::Error(message.clone())),
            _ => None,
        }
    }
}

/// Publishes `make(publisher, n)` at `rate` per second until `stop`.
async fn publish(
    commands: mpsc::Sender<UserCommand>,
    publisher: u32,
    rate: f64,
    sent: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let n = sent.load(Ordering::Relaxed);
        if commands
            .send(UserCommand::Say(payload::make(publisher, n)))
            .await
            .is_err()
        {
            return;
        }
        sent.store(n + 1, Ordering::Relaxed);
    }
}

/// Follows stdin commands until EOF.
async fn control(commands: mpsc::Sender<UserCommand>) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let sent = Arc::new(AtomicU64::new(0));
    let mut stop = CancellationToken::new();
    let mut publishing = None;
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["publish", p, rate] => {
                let (Ok(p), Ok(rate)) = (p.parse(), rate.parse()) else {
                    continue;
                };
                stop = CancellationToken::new();
                let task = publish(commands.clone(), p, rate, sent.clone(), stop.clone());
                publishing = Some(tokio::spawn(task));
            }
            ["stop"] => {
                stop.cancel();
                if let Some(task) = publishing.take() {
                    let _ = task.await;
                }
                println!("{}", Report::Sent(sent.load(Ordering::Relaxed)));
            }
            _ => {}
        }
    }
}

fn log_event(name: &str, event: &ClientEvent) {
    let t = unix_ns() / 1_000_000;
    let (s, ms) = (t / 1000 % 86_400, t % 1000);
    eprintln!(
        "{:02}:{:02}:{:02}.{ms:03} [{name}] {event:?}",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
}

/// Counts shown messages, saying so every [`COUNT_EVERY`] and at `to`.
pub struct Counter {
    /// Shown so far.
    pub count: u64,
    to: u64,
}

impl Counter {
    /// A counter that says so at `to` too.
    pub fn new(to: u64) -> Self {
        Self { count: 0, to }
    }

    /// Adds `n` shown messages; the line to print, if any.
    pub fn add(&mut self, n: u64) -> Option<Report> {
        let before = self.count;
        self.count += n;
        let crossed = self.count / COUNT_EVERY > before / COUNT_EVERY;
        let reached = before < self.to && self.count >= self.to;
        (crossed || reached).then(|| Report::Count {
            at_ns: unix_ns(),
            count: self.count,
        })
    }
}

/// Runs the member until stdin closes. Prints `READY <addr>` once its chat
/// is active, then (with `report`) one [`Report`] per line, or (with
/// `count_to`) only [`Report::Count`] lines.
pub async fn run(relay_uri: &str, name: &str, report: bool, count_to: Option<u64>) -> Result<()> {
    let bound = BoundNode::bind(relay_uri, "127.0.0.1:0".parse().expect("addr"), None).await?;
    let mut node = bound.join(name).await?;
    let mut events = node
        .take_events()
        .ok_or_else(|| BenchError::Setup("no event stream".into()))?;
    // With RUST_LOG set, say what the client sees (but messages and acks).
    let verbose = std::env::var_os("RUST_LOG").is_some();
    let address = node.shared.ctx.identity.address.clone();
    let drain = async {
        let mut ready = false;
        let mut acked = HashSet::new();
        let mut counter = count_to.map(Counter::new);
        while let Some(chat_node::client::RoomEvent { event, .. }) = events.recv().await {
            if verbose && !matches!(event, ClientEvent::Message { .. } | ClientEvent::Ack { .. }) {
                log_event(name, &event);
            }
            if !ready && matches!(event, ClientEvent::Activated) {
                ready = true;
                println!("READY {address}");
                // Lines before READY are not read: say the count again.
                if let Some(c) = &counter {
                    let count = c.count;
                    println!(
                        "{}",
                        Report::Count {
                            at_ns: unix_ns(),
                            count
                        }
                    );
                }
            }
            if let (Some(c), ClientEvent::Message { .. }) = (&mut counter, &event) {
                if let Some(line) = c.add(1) {
                    println!("{line}");
                }
            } else if report {
                if let Some(line) = Report::from_event(&event, &mut acked) {
                    println!("{line}");
                }
            }
        }
    };
    tokio::select! {
        _ = drain => {}
        _ = control(node.commands.clone()) => {}
    }
    node.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_read_back() {
        for r in [
            Report::Host {
                at_ns: 1,
                epoch: 2,
                name: "m03".into(),
            },
            Report::Message {
                at_ns: 5,
                publisher: 1,
                index: 9,
            },
            Report::Acked(4),
            Report::Sent(7),
            Report::Error("oops: it broke".into()),
            Report::Count {
                at_ns: 3,
                count: 8192,
            },
        ] {
            assert_eq!(Report::parse(&r.to_string()), Some(r));
        }
        assert_eq!(Report::parse("READY 127.0.0.1:1"), None);
    }
}
