//! Why the registry refuses a request (the gRPC status each reason
//! becomes is decided in `crate::refusal`).

use chat_proto::rules::{Quoted, RuleError};
use thiserror::Error;

/// Why the registry refused a request.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RegistryError {
    /// The name breaks a naming rule.
    #[error(transparent)]
    InvalidName(#[from] RuleError),
    /// The node gave no usable address to reach it.
    #[error("address must be host:port, printable, at most 255 bytes")]
    InvalidAddress,
    /// A room name breaks the naming rules.
    #[error("room {room}: {why}")]
    InvalidRoom {
        /// The room as given (its start).
        room: Quoted,
        /// The rule it breaks.
        why: RuleError,
    },
    /// A claim list names the same room twice.
    #[error("room {0:?} is claimed twice")]
    DuplicateRoom(String),
    /// A member would be in more rooms than the relay allows.
    #[error("a member may be in at most {0} rooms on this relay; leave one first")]
    TooManyRooms(usize),
    /// The relay holds as many rooms as it may: no room is created.
    #[error(
        "the relay holds as many rooms as it may ({0}); join an existing room, or try again \
         when rooms have emptied"
    )]
    RelayFull(usize),
    /// A claim shows the term of another room.
    #[error("the host term claimed for room {room:?} is a term of room {term_room:?}")]
    TermOfOtherRoom {
        /// The room claimed.
        room: String,
        /// The room the term is for.
        term_room: String,
    },
    /// Another connected member holds the name.
    #[error("name {0:?} is taken by a connected member")]
    NameTaken(String),
    /// Another connected member holds a name that looks the same on
    /// screen (the same confusable skeleton).
    #[error(
        "name {name:?}{} looks like {held:?}, the name of a connected member; choose another name",
        spelled(name)
    )]
    NameConfusable {
        /// The name asked for.
        name: String,
        /// The name it looks like.
        held: String,
    },
    /// No such node or member (the id as given, its start).
    #[error("unknown node {0}")]
    UnknownNode(Quoted),
    /// No member is in this room.
    #[error("no room {0:?}: nobody is in it")]
    UnknownRoom(String),
    /// The node is not a member of the room.
    #[error("node {node:?} is not in room {room:?}")]
    NotInRoom {
        /// The node.
        node: String,
        /// The room.
        room: String,
    },
    /// The caller's token does not match its node.
    #[error("session token does not match node {0}")]
    BadToken(Quoted),
    /// The caller is not the room's current host.
    #[error("node {0} is not the current host of the room")]
    NotHost(Quoted),
    /// Compare-and-set on the room's epoch failed.
    #[error("stale epoch {given}: the room's current epoch is {current}")]
    StaleEpoch {
        /// Epoch in the request.
        given: u64,
        /// The room's current epoch.
        current: u64,
    },
    /// The relay ended the caller's term, or is ending it: its lease
    /// ran out, it ran past the term limit while another member could
    /// take the room, or the relay cannot reach its host. The host must
    /// stop serving; the room moves on (or waits for a host).
    #[error("the relay ended host term {epoch}: {why}")]
    TermEnded {
        /// The term's epoch.
        epoch: u64,
        /// Why.
        why: &'static str,
    },
    /// The room has no host yet.
    #[error("no host yet: the relay is still checking that it can reach the room's members, or waits for its host to come back")]
    NoHost,
    /// No member can host right now (the reason says why).
    #[error("no host: {0}")]
    NoHostable(String),
    /// The member may not host: the relay cannot reach it, or it is a
    /// client only.
    #[error("member {name:?} cannot host: {why}")]
    CannotHost {
        /// The member's name.
        name: String,
        /// Why.
        why: &'static str,
    },
    /// The migration target hosts more than its share of rooms while
    /// another member of the room hosts fewer.
    #[error("member {name:?} hosts {hosted} rooms already (fair share {fair}); hand the room to a member hosting fewer")]
    Overloaded {
        /// The target's name.
        name: String,
        /// Rooms it hosts now.
        hosted: u32,
        /// Rooms per live member that can host, rounded up.
        fair: u32,
    },
}

/// ` (spelled rust\u{2010}a)` for a name with characters beyond ASCII,
/// which may look like others; nothing for an ASCII name.
fn spelled(name: &str) -> String {
    if name.is_ascii() {
        return String::new();
    }
    let mut spelled = String::with_capacity(name.len() * 2);
    for c in name.chars() {
        if c.is_ascii() {
            spelled.push(c);
        } else {
            spelled.extend(c.escape_unicode());
        }
    }
    format!(" (spelled {spelled})")
}
