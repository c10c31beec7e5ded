//! What the client tells the user. In `--mode json` each event is one JSON
//! object with a `type` field.

use serde::Serialize;

/// How the client is connected to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Connection {
    /// In a session with the host.
    Connected,
    /// Told by the host to move: reconnecting to the next one.
    Moving,
    /// Lost the host: retrying with backoff.
    Reconnecting,
}

/// One event for the user interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    /// A chat message, in sequence order.
    Message {
        /// Sequence number given by the host.
        seq: u64,
        /// Sender's name.
        from: String,
        /// Text.
        text: String,
        /// When its sender signed it (the sender's clock).
        sent_at_unix_ms: i64,
    },
    /// A private message to this user, verified to come from `from`.
    Private {
        /// Sender's name.
        from: String,
        /// Text.
        text: String,
    },
    /// A private message this user sent was delivered.
    PrivateSent {
        /// Recipient's name.
        to: String,
        /// Text.
        text: String,
    },
    /// The client took a message of this user and will send it, again
    /// after a reconnect, until the host acknowledges (`Ack`) or refuses
    /// (`Refused`) it under this id. A message the client refuses at once
    /// (empty, too long, too many waiting) gets an `Error` instead.
    Queued {
        /// Client-chosen id, the same in the `Ack` or `Refused` that ends it.
        id: String,
        /// Text, as sent.
        text: String,
    },
    /// The host acknowledged a message of this user.
    Ack {
        /// Client-chosen id.
        id: String,
        /// Sequence number.
        seq: u64,
    },
    /// The host refused a queued message for good: it will not be sent
    /// again. The `Error` event just before says why.
    Refused {
        /// Client-chosen id, as in `Queued`.
        id: String,
    },
    /// The chat has no host and none can be chosen yet: the relay says
    /// why (for example, it reaches no member that could host).
    NoHost {
        /// The relay's words.
        reason: String,
    },
    /// A new host term began.
    Host {
        /// Epoch.
        epoch: u64,
        /// The host's address.
        address: String,
        /// The host's user.
        name: String,
    },
    /// The chat became active; held messages follow.
    Activated,
    /// The chat waits for more members before it activates.
    Waiting {
        /// Members so far.
        members: u32,
        /// Members needed.
        min_users: u32,
    },
    /// A member joined.
    Joined {
        /// Name.
        name: String,
    },
    /// A member left.
    Left {
        /// Name.
        name: String,
    },
    /// The member list (on `/who` or on change).
    Members {
        /// Names, in order.
        names: Vec<String>,
        /// Who hosts the chat.
        host: String,
    },
    /// Someone wiped the history.
    Reset {
        /// Who.
        by: String,
        /// New activation threshold.
        min_users: u32,
    },
    /// The host keeps the room's history from entry `seq` on: the older
    /// entries expired (the relay's retention) before this client saw
    /// them. The log is verified from the host's signed checkpoint there.
    HistoryStarts {
        /// The first entry kept.
        seq: u64,
    },
    /// The connection to the host changed.
    Connection {
        /// New state.
        state: Connection,
    },
    /// Text for the user (help, host details).
    Info {
        /// Text.
        message: String,
    },
    /// This node is now in the room (the event's room) and it is the
    /// current room.
    RoomJoined,
    /// This node left the room (the event's room) for good.
    RoomLeft,
    /// The current room is now the event's room.
    CurrentRoom,
    /// The rooms this node is in (on `/rooms`), and how many rooms the
    /// relay has in all.
    Rooms {
        /// This node's rooms, by name.
        rooms: Vec<RoomSummary>,
        /// Other rooms at the relay (names, at most a page).
        others: Vec<String>,
    },
    /// The host served something that does not check out (a message out
    /// of its sender's order, again, or missing; a log that differs from
    /// what another host showed; a forged control frame): refused, or shown
    /// with this warning. `host` names the host that served it.
    Tampering {
        /// The host's name (and address).
        host: String,
        /// What it did.
        what: String,
    },
    /// Something the user asked for failed, or the client lost something.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// An event and the room it is about (empty for what concerns no room:
/// private messages, errors of commands outside rooms). In `--mode json`
/// the room is a `room` field beside `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomEvent {
    /// The room's name (without `#`), or empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub room: String,
    /// The event.
    #[serde(flatten)]
    pub event: ClientEvent,
}

impl RoomEvent {
    /// `event` about `room`.
    pub fn new(room: impl Into<String>, event: ClientEvent) -> Self {
        Self {
            room: room.into(),
            event,
        }
    }

    /// `event` about no room.
    pub fn global(event: ClientEvent) -> Self {
        Self::new(String::new(), event)
    }
}

/// One room this node is in, as `/rooms` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomSummary {
    /// The room's name (without `#`).
    pub name: String,
    /// Its host's name (empty while unknown).
    pub host: String,
    /// The host's epoch.
    pub epoch: u64,
    /// This is the current room.
    pub current: bool,
}

impl ClientEvent {
    /// An error event.
    pub fn error(message: impl Into<String>) -> Self {
        ClientEvent::Error {
            message: message.into(),
        }
    }
}

impl From<crate::peer::Inbound> for RoomEvent {
    fn from(inbound: crate::peer::Inbound) -> Self {
        match inbound {
            crate::peer::Inbound::Private { from, text } => {
                RoomEvent::global(ClientEvent::Private { from, text })
            }
            crate::peer::Inbound::Refused(why) => RoomEvent::global(ClientEvent::error(why)),
        }
    }
}
