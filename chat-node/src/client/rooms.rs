//! The client across rooms: one room client per room this node is in, the
//! current room (where what the user types goes), and the commands that
//! join, leave, list and switch rooms.

use super::events::{ClientEvent, RoomEvent, RoomSummary};
use super::reconnect::run_room;
use super::{NodeLinks, UserCommand};
use crate::directory::RoomView;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A future the room calls return.
pub type RoomCall<'a, T> = Pin<Box<dyn Future<Output = Result<T, tonic::Status>> + Send + 'a>>;

/// What the client asks of its node about rooms (the node does it).
pub trait RoomControl: Send + Sync {
    /// The first room the node joined at its start, if it is still in it.
    fn first_room(&self) -> Option<String>;
    /// Every room the node is in.
    fn rooms(&self) -> Vec<RoomView>;
    /// Joins `room` (at the relay, and its host duties).
    fn join_room<'a>(&'a self, room: &'a str) -> RoomCall<'a, RoomView>;
    /// Leaves `room` for good (handing it on first if this node hosts it).
    fn part_room<'a>(&'a self, room: &'a str) -> RoomCall<'a, ()>;
}

/// Commands buffered towards one room's client.
const ROOM_COMMANDS: usize = 64;
/// How long a room's client may take to say goodbye to its host.
const GOODBYE_WAIT: Duration = Duration::from_secs(3);
/// Other rooms `/rooms` asks the relay for, at most.
const OTHER_ROOMS: u32 = 100;

/// A room's client task and its command queue.
struct RoomClient {
    commands: mpsc::Sender<UserCommand>,
    task: JoinHandle<()>,
}

/// Every room's client, and which room is current.
struct Rooms {
    node: NodeLinks,
    events: mpsc::Sender<RoomEvent>,
    cancel: CancellationToken,
    clients: BTreeMap<String, RoomClient>,
    /// Where chat messages and room commands go (empty: in no room).
    current: String,
}

/// Runs the client of every room this node is in until the user exits or
/// the node stops. The first room is current at the start.
pub async fn run(
    node: NodeLinks,
    mut commands: mpsc::Receiver<UserCommand>,
    events: mpsc::Sender<RoomEvent>,
    cancel: CancellationToken,
) {
    let mut rooms = Rooms {
        node: node.clone(),
        events,
        cancel: cancel.clone(),
        clients: BTreeMap::new(),
        current: String::new(),
    };
    if let Some(first) = node.rooms.first_room() {
        rooms.current = first;
        // Said before any room's client starts, so interfaces know which
        // room is current before the first event of any room arrives.
        rooms.emit(&rooms.current, ClientEvent::CurrentRoom).await;
    }
    for room in node.rooms.rooms() {
        rooms.start(room);
    }
    loop {
        let cmd = tokio::select! {
            cmd = commands.recv() => cmd,
            _ = cancel.cancelled() => return,
        };
        let Some(cmd) = cmd else {
            rooms.say_goodbye().await;
            return;
        };
        if !rooms.command(cmd).await {
            return;
        }
    }
}

impl Rooms {
    async fn emit(&self, room: &str, event: ClientEvent) {
        // The UI is gone only when the node is shutting down.
        let _ = self.events.send(RoomEvent::new(room, event)).await;
    }

    /// Starts the client of `room`.
    fn start(&mut self, room: RoomView) {
        let (tx, rx) = mpsc::channel(ROOM_COMMANDS);
        let task = tokio::spawn(run_room(
            self.node.clone(),
            room.clone(),
            rx,
            self.events.clone(),
            self.cancel.child_token(),
        ));
        let client = RoomClient { commands: tx, task };
        self.clients.insert(room.room().to_string(), client);
    }

    /// Handles one command; false once the user exits.
    async fn command(&mut self, cmd: UserCommand) -> bool {
        match cmd {
            UserCommand::Exit(done) => {
                self.say_goodbye().await;
                if let Some(done) = done {
                    let _ = done.send(());
                }
                return false;
            }
            UserCommand::Join(room) => self.join(room).await,
            UserCommand::Part(room) => {
                let room = room.unwrap_or_else(|| self.current.clone());
                self.part(room).await
            }
            UserCommand::Switch(room) => self.switch(room).await,
            UserCommand::Rooms => self.list().await,
            other => self.pass_to_current(other).await,
        }
        true
    }

    /// Passes a command to the current room's client.
    async fn pass_to_current(&mut self, cmd: UserCommand) {
        let Some(client) = self.clients.get(&self.current) else {
            let why = "you are in no room; /join #ROOM joins one";
            return self.emit("", ClientEvent::error(why)).await;
        };
        if client.commands.send(cmd).await.is_err() {
            let why = "this room's client stopped; /part and /join it again";
            self.emit(&self.current, ClientEvent::error(why)).await;
        }
    }

    /// Joins `room` (at the relay first) and makes it current.
    async fn join(&mut self, room: String) {
        if !self.clients.contains_key(&room) {
            match self.node.rooms.join_room(&room).await {
                Ok(view) => self.start(view),
                Err(status) => {
                    let why = format!("cannot join #{room}: {}", status.message());
                    return self.emit(&room, ClientEvent::error(why)).await;
                }
            }
        }
        self.current = room.clone();
        self.emit(&room, ClientEvent::RoomJoined).await;
    }

    /// Leaves `room` for good: its client says goodbye to the host, a
    /// hosting node hands the room on, then the relay forgets us there.
    async fn part(&mut self, room: String) {
        let Some(client) = self.clients.remove(&room) else {
            let why = format!("you are not in #{room}");
            return self.emit(&room, ClientEvent::error(why)).await;
        };
        goodbye(client).await;
        if let Err(status) = self.node.rooms.part_room(&room).await {
            tracing::info!(%room, %status, "leaving the room at the relay failed");
        }
        self.emit(&room, ClientEvent::RoomLeft).await;
        if self.current == room {
            self.current = self.clients.keys().next().cloned().unwrap_or_default();
            if !self.current.is_empty() {
                self.emit(&self.current, ClientEvent::CurrentRoom).await;
            }
        }
    }

    /// Makes `room` current, if this node is in it.
    async fn switch(&mut self, room: String) {
        if !self.clients.contains_key(&room) {
            let why = format!("you are not in #{room}; /join #{room} joins it");
            return self.emit(&room, ClientEvent::error(why)).await;
        }
        self.current = room;
        self.emit(&self.current, ClientEvent::CurrentRoom).await;
    }

    /// Lists this node's rooms, and others the relay has.
    async fn list(&self) {
        let rooms: Vec<RoomSummary> = self
            .node
            .rooms
            .rooms()
            .iter()
            .map(|r| {
                let host = r.host_watch().borrow().clone().unwrap_or_default();
                RoomSummary {
                    name: r.room().to_string(),
                    host: host.name,
                    epoch: host.epoch,
                    current: r.room() == self.current,
                }
            })
            .collect();
        let others = match self.node.ctx.relay.list_rooms("", OTHER_ROOMS).await {
            Ok(page) => page
                .rooms
                .into_iter()
                .map(|r| r.name)
                .filter(|name| !self.clients.contains_key(name))
                .collect(),
            Err(status) => {
                tracing::debug!(%status, "the relay did not list its rooms");
                Vec::new()
            }
        };
        self.emit(&self.current, ClientEvent::Rooms { rooms, others })
            .await;
    }

    /// Every room's client says goodbye to its host.
    async fn say_goodbye(&mut self) {
        let mut goodbyes = tokio::task::JoinSet::new();
        for client in std::mem::take(&mut self.clients).into_values() {
            goodbyes.spawn(goodbye(client));
        }
        while goodbyes.join_next().await.is_some() {}
    }
}

/// Tells a room's client to leave its room and waits (a bounded time) for
/// it to have said goodbye to the host.
async fn goodbye(client: RoomClient) {
    let (done_tx, done_rx) = oneshot::channel();
    if client
        .commands
        .send(UserCommand::Exit(Some(done_tx)))
        .await
        .is_ok()
    {
        let _ = tokio::time::timeout(GOODBYE_WAIT, done_rx).await;
    }
    let abort = client.task.abort_handle();
    if tokio::time::timeout(GOODBYE_WAIT, client.task)
        .await
        .is_err()
    {
        abort.abort();
    }
}
