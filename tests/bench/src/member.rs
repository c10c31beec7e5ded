//! A member node run as a process of its own (the `node` subcommand): the
//! same library `chat-node` runs, with a user that reads every event and,
//! when told on stdin, publishes benchmark messages. With `--report` it
//! prints what its client sees, one line per event, so the benchmark can
//! track members it may `kill -9`. Times are wall-clock nanoseconds, which
//! every process on the machine shares.
//!
//! With `--probe-base <ns>` it is a subscriber of scenarios A and B that
//! verifies what it shows in its own process: it keeps, for every chat
//! message shown, when it arrived and its latency in the benchmark's clock
//! (the benchmark's base instant is `<ns>` Unix nanoseconds), says how many
//! it has shown every [`PROGRESS_EVERY`], and when told the measured
//! window, prints what arrived in it.
//!
//! stdin commands: `publish <publisher> <per-second>`, `stop` (answered
//! with a `Sent` line), `window <start-ns> <end-ns>` (answered with a
//! [`Window`] line); EOF ends the process.

use crate::payload;
use crate::{BenchError, Result};
use chat_node::client::{ClientEvent, UserCommand};
use chat_node::BoundNode;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Chat messages shown so far (with `--probe-base`).
    Progress(u64),
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
/// Every how many shown messages a probing member says so (and every
/// [`PROGRESS_PERIOD`] when the count changed).
pub const PROGRESS_EVERY: u64 = 256;
/// How often a probing member says how many it has shown, if that changed.
const PROGRESS_PERIOD: Duration = Duration::from_millis(5);

/// What a probing member keeps of the messages it showed.
#[derive(Debug, Default)]
struct Samples {
    /// Base instant of the benchmark's clock, Unix nanoseconds.
    base_unix_ns: u64,
    shown: u64,
    /// `(arrival, latency)`, nanoseconds in the benchmark's clock.
    taken: Vec<(u64, u64)>,
    malformed: Vec<u64>,
}

impl Samples {
    fn shown(&mut self, text: &str) -> Option<u64> {
        let now = unix_ns().saturating_sub(self.base_unix_ns);
        match payload::parse(text.as_bytes()) {
            Some(stamp) => self.taken.push((now, now.saturating_sub(stamp.sent_ns))),
            None => self.malformed.push(now),
        }
        self.shown += 1;
        self.shown
            .is_multiple_of(PROGRESS_EVERY)
            .then_some(self.shown)
    }

    fn window(&self, start: u64, end: u64) -> Window {
        let inside = |t: u64| t >= start && t < end;
        Window {
            shown: self.shown,
            malformed: self.malformed.iter().filter(|t| inside(**t)).count() as u64,
            latencies_ns: self
                .taken
                .iter()
                .filter(|(t, _)| inside(*t))
                .map(|(_, l)| *l)
                .collect(),
        }
    }
}

/// What a probing member showed in the measured window (the line
/// `W <shown> <malformed> <latency-ns>...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Messages shown in all.
    pub shown: u64,
    /// Malformed payloads in the window.
    pub malformed: u64,
    /// Latency of each message shown in the window.
    pub latencies_ns: Vec<u64>,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "W {} {}", self.shown, self.malformed)?;
        for l in &self.latencies_ns {
            write!(f, " {l}")?;
        }
        Ok(())
    }
}

impl Window {
    /// Reads a line printed by a probing member.
    pub fn parse(line: &str) -> Option<Window> {
        let mut words = line.strip_prefix("W ")?.split(' ');
        let mut num = || words.next()?.parse::<u64>().ok();
        let (shown, malformed) = (num()?, num()?);
        let latencies_ns = std::iter::from_fn(num).collect();
        Some(Window {
            shown,
            malformed,
            latencies_ns,
        })
    }
}

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
            Report::Progress(n) => write!(f, "P {n}"),
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
            "P" => Report::Progress(num()?),
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
async fn control(commands: mpsc::Sender<UserCommand>, samples: Option<Arc<Mutex<Samples>>>) {
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
            ["window", start, end] => {
                let (Ok(start), Ok(end), Some(samples)) = (start.parse(), end.parse(), &samples)
                else {
                    continue;
                };
                let window = lock(samples).window(start, end);
                println!("{window}");
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

/// Says every [`PROGRESS_PERIOD`] how many messages were shown, if that
/// changed; never ends.
async fn progress(samples: Option<Arc<Mutex<Samples>>>) {
    let Some(samples) = samples else {
        return std::future::pending().await;
    };
    let mut said = 0;
    let mut tick = tokio::time::interval(PROGRESS_PERIOD);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let shown = lock(&samples).shown;
        if shown != said {
            said = shown;
            println!("{}", Report::Progress(shown));
        }
    }
}

fn lock(samples: &Mutex<Samples>) -> std::sync::MutexGuard<'_, Samples> {
    samples.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the member prints besides READY.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    /// One [`Report`] per event.
    pub report: bool,
    /// Only [`Report::Count`] lines, and one at this count.
    pub count_to: Option<u64>,
    /// A probe: [`Report::Progress`] lines, [`Window`] lines when asked;
    /// the benchmark's base instant in Unix nanoseconds.
    pub probe_base: Option<u64>,
}

/// Runs the member until stdin closes. Prints `READY <addr>` once its chat
/// is active, then (with `report`) one [`Report`] per line, or (with
/// `count_to`) only [`Report::Count`] lines.
pub async fn run(relay_uri: &str, name: &str, output: Output) -> Result<()> {
    let Output {
        report,
        count_to,
        probe_base,
    } = output;
    let samples = probe_base.map(|base_unix_ns| {
        Arc::new(Mutex::new(Samples {
            base_unix_ns,
            ..Default::default()
        }))
    });
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
            if let (Some(samples), ClientEvent::Message { text, .. }) = (&samples, &event) {
                if let Some(n) = lock(samples).shown(text) {
                    println!("{}", Report::Progress(n));
                }
            } else if let (Some(c), ClientEvent::Message { .. }) = (&mut counter, &event) {
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
        _ = control(node.commands.clone(), samples.clone()) => {}
        _ = progress(samples.clone()) => {}
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
            Report::Progress(512),
        ] {
            assert_eq!(Report::parse(&r.to_string()), Some(r));
        }
        assert_eq!(Report::parse("READY 127.0.0.1:1"), None);
        let w = Window {
            shown: 9,
            malformed: 1,
            latencies_ns: vec![5, 7],
        };
        assert_eq!(Window::parse(&w.to_string()), Some(w));
        let empty = Window {
            shown: 0,
            malformed: 0,
            latencies_ns: vec![],
        };
        assert_eq!(Window::parse(&empty.to_string()), Some(empty));
    }
}
