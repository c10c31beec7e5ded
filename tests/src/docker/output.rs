//! What the nodes print, read back from `docker logs --timestamps`: chat
//! messages, acks and host changes, in `json` or `line` mode, each with the
//! room it is about (`line` mode puts `#room ` in front, `json` mode has a
//! `room` field; neither for events about no room, such as private
//! messages).

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One chat message as a node shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Sequence number.
    pub seq: u64,
    /// Sender.
    pub from: String,
    /// Text.
    pub text: String,
}

/// One event a node printed, in `json` mode (every event) or `line` mode
/// (messages and host changes; acks are not printed there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A chat message.
    Message(Message),
    /// The host acknowledged a message of this node's user.
    Ack {
        /// Client-chosen id.
        id: String,
        /// Sequence number.
        seq: u64,
    },
    /// The node's client reached a host of a new term.
    Host {
        /// Epoch.
        epoch: u64,
        /// The host's name.
        name: String,
    },
    /// A member joined.
    Joined(String),
    /// A member left (or stayed away too long).
    Left(String),
    /// Something went wrong, or was lost.
    Error(String),
    /// Any other event (its type, or the line as printed).
    Other(String),
}

impl Event {
    /// Parses one line of a node's output: a JSON object in `json` mode,
    /// else the `line` mode format. The room, if any, is dropped.
    pub fn parse(line: &str) -> Event {
        Self::parse_in_room(line).1
    }

    /// Parses one line of a node's output into the room it is about (""
    /// for none) and the event.
    pub fn parse_in_room(line: &str) -> (String, Event) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => {
                let room = v["room"].as_str().unwrap_or_default().to_string();
                (room, Self::from_json(&v))
            }
            _ => {
                let (room, rest) = split_room(line);
                (room.to_string(), Self::from_line(rest))
            }
        }
    }

    fn from_json(v: &Value) -> Event {
        let s = |key: &str| v[key].as_str().unwrap_or_default().to_string();
        let n = |key: &str| v[key].as_u64().unwrap_or_default();
        match v["type"].as_str().unwrap_or_default() {
            "message" => Event::Message(Message {
                seq: n("seq"),
                from: s("from"),
                text: s("text"),
            }),
            "ack" => Event::Ack {
                id: s("id"),
                seq: n("seq"),
            },
            "host" => Event::Host {
                epoch: n("epoch"),
                name: s("name"),
            },
            "joined" => Event::Joined(s("name")),
            "left" => Event::Left(s("name")),
            "error" => Event::Error(s("message")),
            other => Event::Other(other.to_string()),
        }
    }

    fn from_line(line: &str) -> Event {
        let message = || {
            let (seq, rest) = line.strip_prefix('[')?.split_once("] ")?;
            let (from, text) = rest.split_once(": ")?;
            Some(Event::Message(Message {
                seq: seq.parse().ok()?,
                from: from.to_string(),
                text: text.to_string(),
            }))
        };
        // `* host is now NAME at ADDR (epoch N)`
        let host = || {
            let rest = line.strip_prefix("* host is now ")?;
            let (name, rest) = rest.split_once(" at ")?;
            let epoch = rest.rsplit_once("(epoch ")?.1.strip_suffix(')')?;
            Some(Event::Host {
                epoch: epoch.parse().ok()?,
                name: name.to_string(),
            })
        };
        let error = || Some(Event::Error(line.strip_prefix("! ")?.to_string()));
        let member = || {
            let rest = line.strip_prefix("* ")?;
            match rest.rsplit_once(' ')? {
                (name, "joined") => Some(Event::Joined(name.to_string())),
                (name, "left") => Some(Event::Left(name.to_string())),
                _ => None,
            }
        };
        message()
            .or_else(host)
            .or_else(error)
            .or_else(member)
            .unwrap_or_else(|| Event::Other(line.to_string()))
    }
}

/// Splits a `line`-mode line into the room named in front of it (`#room `)
/// and the rest; `("", line)` if it names none.
pub fn split_room(line: &str) -> (&str, &str) {
    match line.strip_prefix('#').and_then(|rest| rest.split_once(' ')) {
        Some((room, rest)) if !room.is_empty() => (room, rest),
        _ => ("", line),
    }
}

/// An event and when `docker logs` saw it printed.
#[derive(Debug, Clone)]
pub struct Logged {
    /// The docker daemon's timestamp of the line.
    pub at: SystemTime,
    /// The room the event is about ("" for none).
    pub room: String,
    /// The event.
    pub event: Event,
}

impl Logged {
    /// Parses a line of `docker logs --timestamps`.
    pub fn parse(line: &str) -> Option<Logged> {
        let (at, text) = line.split_once(' ')?;
        let (room, event) = Event::parse_in_room(text);
        Some(Logged {
            at: parse_timestamp(at)?,
            room,
            event,
        })
    }
}

/// Parses the RFC 3339 UTC timestamp `docker logs --timestamps` prints
/// (`2026-11-25T10:28:31.929202324Z`).
pub fn parse_timestamp(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (date.next()??, date.next()??, date.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (hh, mm, ss) = (hms.next()??, hms.next()??, hms.next()??);
    let digits: String = frac.chars().take(9).collect();
    let nanos: u32 = format!("{digits:0<9}").parse().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Signed milliseconds from `from` to `to`.
pub fn millis_between(from: SystemTime, to: SystemTime) -> i64 {
    match to.duration_since(from) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Splits a node's messages into its runs: a restarted node shows the
/// history again from sequence number 1.
pub fn runs(messages: &[Message]) -> Vec<&[Message]> {
    let starts: Vec<usize> = (0..messages.len())
        .filter(|&i| i == 0 || messages[i].seq <= messages[i - 1].seq)
        .collect();
    starts
        .iter()
        .zip(starts.iter().skip(1).chain([&messages.len()]))
        .map(|(&a, &b)| &messages[a..b])
        .collect()
}

/// What every node has printed so far.
pub struct View {
    /// Each node's events, by chat name.
    pub nodes: BTreeMap<String, Vec<Logged>>,
}

impl View {
    /// The events about `room` only, of every node.
    pub fn in_room(&self, room: &str) -> View {
        let nodes = self
            .nodes
            .iter()
            .map(|(node, events)| {
                let events = events.iter().filter(|e| e.room == room).cloned();
                (node.clone(), events.collect())
            })
            .collect();
        View { nodes }
    }

    /// A node's events.
    pub fn events(&self, node: &str) -> &[Logged] {
        self.nodes.get(node).map_or(&[], Vec::as_slice)
    }

    /// What `pick` takes from each of a node's events, in the order printed.
    fn pick<T>(&self, node: &str, pick: impl FnMut(&Logged) -> Option<T>) -> Vec<T> {
        self.events(node).iter().filter_map(pick).collect()
    }

    /// The chat messages a node showed, in the order shown.
    pub fn messages(&self, node: &str) -> Vec<Message> {
        self.pick(node, |e| match &e.event {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        })
    }

    /// The acks a node printed: when, id, sequence number.
    pub fn acks(&self, node: &str) -> Vec<(SystemTime, String, u64)> {
        self.pick(node, |e| match &e.event {
            Event::Ack { id, seq } => Some((e.at, id.clone(), *seq)),
            _ => None,
        })
    }

    /// When a node printed that `member` joined (`true`) or left (`false`).
    pub fn membership(&self, node: &str, member: &str) -> Vec<(SystemTime, bool)> {
        self.pick(node, |e| match &e.event {
            Event::Joined(name) if name == member => Some((e.at, true)),
            Event::Left(name) if name == member => Some((e.at, false)),
            _ => None,
        })
    }

    /// The error events a node printed.
    pub fn errors(&self, node: &str) -> Vec<String> {
        self.pick(node, |e| match &e.event {
            Event::Error(m) => Some(m.clone()),
            _ => None,
        })
    }

    /// The host terms a node's client reached: when, epoch, host name.
    pub fn hosts(&self, node: &str) -> Vec<(SystemTime, u64, String)> {
        self.pick(node, |e| match &e.event {
            Event::Host { epoch, name } => Some((e.at, *epoch, name.clone())),
            _ => None,
        })
    }

    /// Highest sequence number a node has shown.
    pub fn max_seq_of(&self, node: &str) -> u64 {
        self.messages(node).iter().map(|m| m.seq).max().unwrap_or(0)
    }

    /// Highest sequence number any node has shown.
    pub fn max_seq(&self) -> u64 {
        self.nodes
            .keys()
            .map(|n| self.max_seq_of(n))
            .max()
            .unwrap_or(0)
    }

    /// Highest host epoch any node has reached.
    pub fn max_epoch(&self) -> u64 {
        self.nodes
            .keys()
            .flat_map(|n| self.hosts(n))
            .map(|(_, epoch, _)| epoch)
            .max()
            .unwrap_or(0)
    }

    /// The newest host term any node reached: epoch and host name.
    pub fn current_host(&self) -> Option<(u64, String)> {
        self.nodes
            .keys()
            .flat_map(|n| self.hosts(n))
            .map(|(_, epoch, name)| (epoch, name))
            .max()
    }

    /// Whether each of `viewers` has shown a message of each of `bots`
    /// numbered above `seq`.
    pub fn saw_bots_after(&self, viewers: &[&str], bots: &[&str], seq: u64) -> bool {
        viewers.iter().all(|viewer| {
            let got = self.messages(viewer);
            bots.iter()
                .all(|bot| got.iter().any(|m| m.seq > seq && m.from == *bot))
        })
    }

    /// Checks that `nodes`, none of them restarted, show one history:
    /// messages numbered 1, 2, 3, ... (nothing lost, nothing twice), each
    /// number with the same sender and text on every node; returns that
    /// history by number.
    pub fn assert_one_history(&self, nodes: &[&str]) -> History {
        let mut history = History::new();
        for node in nodes {
            add_to_history(node, &self.messages(node), &mut history);
        }
        history
    }

    /// The same for every node, each run of a restarted node (which shows
    /// the history again from 1) checked on its own.
    pub fn assert_one_history_per_run(&self) -> History {
        let mut history = History::new();
        for node in self.nodes.keys() {
            let shown = self.messages(node);
            for run in runs(&shown) {
                add_to_history(node, run, &mut history);
            }
        }
        history
    }

    /// Whether every node has shown a message of every node numbered above `seq`.
    pub fn all_nodes_saw_every_bot_after(&self, seq: u64) -> bool {
        let names: Vec<&str> = self.nodes.keys().map(String::as_str).collect();
        self.saw_bots_after(&names, &names, seq)
    }
}

/// Chat messages by sequence number: sender and text.
pub type History = BTreeMap<u64, (String, String)>;

/// Checks that `shown` (what `node` showed) is numbered 1, 2, 3, ... and
/// agrees with `history`, which it extends.
fn add_to_history(node: &str, shown: &[Message], history: &mut History) {
    for (i, m) in shown.iter().enumerate() {
        assert_eq!(
            m.seq,
            i as u64 + 1,
            "{node}: gap or repeat in the history at {m:?}"
        );
        let entry = history
            .entry(m.seq)
            .or_insert_with(|| (m.from.clone(), m.text.clone()));
        assert_eq!(
            entry,
            &(m.from.clone(), m.text.clone()),
            "{node}: message {} differs between nodes",
            m.seq
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_mode_events_with_and_without_a_room() {
        let parsed = Event::parse_in_room("#ops [3] bob: hi there");
        let hi = Event::Message(Message {
            seq: 3,
            from: "bob".into(),
            text: "hi there".into(),
        });
        assert_eq!(parsed, ("ops".to_string(), hi.clone()));
        assert_eq!(Event::parse("[3] bob: hi there"), hi);
        assert_eq!(
            Event::parse_in_room("#lobby * host is now al at h:1 (epoch 4)"),
            (
                "lobby".to_string(),
                Event::Host {
                    epoch: 4,
                    name: "al".into()
                }
            )
        );
        assert_eq!(
            Event::parse("#lobby ! it broke"),
            Event::Error("it broke".into())
        );
        assert_eq!(Event::parse("#ops * cy joined"), Event::Joined("cy".into()));
        assert_eq!(
            Event::parse_in_room("(private) bob: psst"),
            (String::new(), Event::Other("(private) bob: psst".into()))
        );
    }

    #[test]
    fn json_events_carry_their_room() {
        let line = r#"{"room":"ops","type":"ack","id":"x","seq":2}"#;
        let ack = Event::Ack {
            id: "x".into(),
            seq: 2,
        };
        assert_eq!(Event::parse_in_room(line), ("ops".to_string(), ack));
        let logged = Logged::parse(&format!("2026-11-25T10:28:31.9Z {line}")).expect("parses");
        assert_eq!(logged.room, "ops");
    }
}
