//! A chat member driven like a user: lines in, JSON events out.

use chat_node::client::{parse_line, UserCommand};
use chat_node::Node;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::mpsc;

use crate::DEADLINE;

enum Kind {
    InProcess(Option<Node>),
    Process(crate::procs::NodeProcess),
}

/// One member of the chat and every event it has seen.
pub struct Member {
    /// Chat name.
    pub name: String,
    kind: Kind,
    events: mpsc::UnboundedReceiver<Value>,
    /// Every event received so far, in order.
    pub seen: Vec<Value>,
}

impl Member {
    pub(crate) fn in_process(name: &str, mut node: Node) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        if let Some(mut rx) = node.take_events() {
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    let value = serde_json::to_value(&event).expect("events serialize");
                    if tx.send(value).is_err() {
                        break;
                    }
                }
            });
        }
        Member {
            name: name.to_string(),
            kind: Kind::InProcess(Some(node)),
            events,
            seen: Vec::new(),
        }
    }

    pub(crate) fn process(
        name: &str,
        proc: crate::procs::NodeProcess,
        events: mpsc::UnboundedReceiver<Value>,
    ) -> Self {
        Member {
            name: name.to_string(),
            kind: Kind::Process(proc),
            events,
            seen: Vec::new(),
        }
    }

    /// The node's shared state (in-process members only).
    pub fn shared(&self) -> Arc<chat_node::node::NodeShared> {
        match &self.kind {
            Kind::InProcess(Some(node)) => node.shared.clone(),
            _ => panic!("{} is not an in-process member", self.name),
        }
    }

    /// The node's side of the room "lobby" (in-process members only).
    pub fn lobby(&self) -> Arc<chat_node::host::RoomHost> {
        self.room(chat_proto::rules::DEFAULT_ROOM)
    }

    /// The node's side of `room` (in-process members in that room only).
    pub fn room(&self, room: &str) -> Arc<chat_node::host::RoomHost> {
        self.shared()
            .room(room)
            .unwrap_or_else(|| panic!("{} is not in room {room}", self.name))
    }

    /// The process id (process members only, while running).
    pub fn pid(&self) -> Option<u32> {
        match &self.kind {
            Kind::Process(p) => p.pid(),
            Kind::InProcess(_) => None,
        }
    }

    /// Types one line, as the user would.
    pub async fn say(&mut self, line: &str) {
        match &mut self.kind {
            Kind::InProcess(node) => {
                let node = node.as_ref().expect("member still running");
                match parse_line(line) {
                    Ok(Some(UserCommand::Exit(_))) => panic!("use leave() to exit"),
                    Ok(Some(cmd)) => node.commands.send(cmd).await.expect("client running"),
                    Ok(None) => {}
                    // Line mode shows parse errors as error events: do the same.
                    Err(message) => {
                        self.seen
                            .push(serde_json::json!({"type": "error", "message": message}));
                    }
                }
            }
            Kind::Process(p) => p.write_line(line).await,
        }
    }

    /// Leaves the chat cleanly (`$exit`) and waits for the node to stop.
    pub async fn leave(mut self) {
        match &mut self.kind {
            Kind::InProcess(node) => {
                if let Some(node) = node.take() {
                    node.shutdown().await;
                }
            }
            Kind::Process(p) => p.exit().await,
        }
    }

    /// Stops the member abruptly (no goodbye).
    pub async fn crash(mut self) {
        self.kill().await;
    }

    /// Stops the member abruptly (`kill -9` for a process), keeping what it saw.
    pub async fn kill(&mut self) {
        match &mut self.kind {
            Kind::InProcess(node) => {
                if let Some(mut node) = node.take() {
                    node.stop().await;
                }
            }
            Kind::Process(p) => p.kill().await,
        }
    }

    /// Stops a process member with SIGTERM (its input still open); whether
    /// it exited within `limit`.
    pub async fn terminate(&mut self, limit: std::time::Duration) -> bool {
        match &mut self.kind {
            Kind::Process(p) => p.terminate(limit).await,
            Kind::InProcess(_) => panic!("only a process member takes a signal"),
        }
    }

    /// Collects every event until the member's output ends (after a kill),
    /// bounded by the deadline.
    pub async fn finish(&mut self) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            self.seen.push(event);
        }
    }

    /// The next event, without recording it in `seen` (for runs too long
    /// to keep every event); `None` if none came within the deadline or
    /// the output ended.
    pub async fn take_event(&mut self) -> Option<Value> {
        tokio::time::timeout(DEADLINE, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Collects events already delivered, without waiting.
    pub fn drain(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.seen.push(event);
        }
    }

    /// Receives the next event before `deadline`, recording it; `Err` says
    /// why none came.
    async fn next_event(&mut self, deadline: tokio::time::Instant) -> Result<Value, &'static str> {
        match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Ok(Some(event)) => {
                self.seen.push(event.clone());
                Ok(event)
            }
            Ok(None) => Err("events ended"),
            Err(_) => Err("timed out"),
        }
    }

    fn fail(&self, why: &str, what: &str) -> ! {
        panic!(
            "{}: {why} while waiting for {what}; seen: {:#?}",
            self.name, self.seen
        )
    }

    /// Waits until an event (seen before or arriving) satisfies `pred`;
    /// returns it. Fails the test after the deadline.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        match self.wait_or_end_why(pred).await {
            Ok(event) => event,
            Err(why) => self.fail(why, what),
        }
    }

    /// Like [`Member::wait_for`], but `None` if the member's output ends first.
    pub async fn wait_or_end(&mut self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        self.wait_or_end_why(pred).await.ok()
    }

    /// Like [`Member::wait_for`], but waits at most `limit`: `None` if no
    /// such event came by then (or the member's output ended).
    pub async fn wait_within(
        &mut self,
        limit: std::time::Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        self.wait_until_deadline(limit, pred).await.ok()
    }

    async fn wait_or_end_why(
        &mut self,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, &'static str> {
        self.wait_until_deadline(DEADLINE, pred).await
    }

    async fn wait_until_deadline(
        &mut self,
        limit: std::time::Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, &'static str> {
        self.drain();
        if let Some(found) = self.seen.iter().find(|e| pred(e)) {
            return Ok(found.clone());
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let event = self.next_event(deadline).await?;
            if pred(&event) {
                return Ok(event);
            }
        }
    }

    /// Waits for an event of `kind` whose fields include every `(key, value)`.
    pub async fn wait_event(&mut self, kind: &str, fields: &[(&str, &str)]) -> Value {
        let what = format!("{kind} {fields:?}");
        self.wait_for(&what, |e| matches_event(e, kind, fields))
            .await
    }

    /// Waits until everything seen so far satisfies `cond`.
    pub async fn wait_until(&mut self, what: &str, cond: impl Fn(&[Value]) -> bool) {
        self.drain();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !cond(&self.seen) {
            if let Err(why) = self.next_event(deadline).await {
                self.fail(why, what);
            }
        }
    }

    /// Waits until `count` chat messages have been seen; returns them.
    pub async fn wait_messages(&mut self, count: usize) -> Vec<(u64, String, String)> {
        let what = format!("{count} messages");
        self.wait_until(&what, |seen| {
            seen.iter().filter(|e| e["type"] == "message").count() >= count
        })
        .await;
        self.messages()
    }

    /// Chat messages seen so far: `(seq, from, text)` in arrival order.
    pub fn messages(&mut self) -> Vec<(u64, String, String)> {
        self.drain();
        self.seen
            .iter()
            .filter(|e| e["type"] == "message")
            .map(|e| {
                (
                    e["seq"].as_u64().unwrap_or(0),
                    e["from"].as_str().unwrap_or("").to_string(),
                    e["text"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Chat messages seen so far in `room`: `(seq, from, text)` in
    /// arrival order.
    pub fn room_messages(&mut self, room: &str) -> Vec<(u64, String, String)> {
        self.drain();
        self.seen
            .iter()
            .filter(|e| e["type"] == "message" && e["room"] == room)
            .map(|e| {
                (
                    e["seq"].as_u64().unwrap_or(0),
                    e["from"].as_str().unwrap_or("").to_string(),
                    e["text"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Says `text` in `room` (making it the current room first).
    pub async fn say_in(&mut self, room: &str, text: &str) {
        self.say(&format!("/room #{room}")).await;
        self.say(text).await;
    }

    /// Texts of the chat messages seen so far.
    pub fn texts(&mut self) -> Vec<String> {
        self.messages().into_iter().map(|(_, _, t)| t).collect()
    }

    /// Whether an event like this was seen.
    pub fn has_seen(&mut self, kind: &str, fields: &[(&str, &str)]) -> bool {
        self.drain();
        self.seen.iter().any(|e| matches_event(e, kind, fields))
    }
}

/// Whether `event` is of `kind` and has every `(key, value)` (strings or numbers).
pub fn matches_event(event: &Value, kind: &str, fields: &[(&str, &str)]) -> bool {
    event["type"] == kind
        && fields.iter().all(|(k, v)| match &event[*k] {
            Value::String(s) => s == v || (v.starts_with('~') && s.contains(&v[1..])),
            Value::Number(n) => n.to_string() == *v,
            Value::Bool(b) => b.to_string() == *v,
            _ => false,
        })
}
