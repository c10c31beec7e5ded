//! Why a node refuses a call, and the gRPC status each reason becomes:
//! the one place where the node's own refusals turn into a
//! [`tonic::Status`]. Refusals that name a newer host carry it, and the
//! status gets it as metadata, so a client redirects and a fenced host
//! learns it was fenced.

use crate::dial::DialError;
use chat_proto::pb::relay::HostRecord;
use chat_proto::rules::{Quoted, RuleError};
use chat_proto::trust::TrustError;
use thiserror::Error;
use tonic::{Code, Status};

/// Longest accepted client message id.
pub const MAX_ID_CHARS: usize = 64;

/// Why a room refused a request; nothing changed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RoomError {
    /// A naming or size rule.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// Another member holds the name.
    #[error("name {0:?} is taken by another member")]
    NameTaken(String),
    /// The message id is empty or too long.
    #[error("message id must be 1 to {MAX_ID_CHARS} characters")]
    BadId,
    /// The threshold must be at least one.
    #[error("the number of users to activate must be at least 1")]
    BadThreshold,
    /// The message runs ahead of its sender's chain in this log: earlier
    /// ones must come first (a client re-sends them; this one waits).
    #[error("your message #{expected} must come first")]
    OutOfTurn {
        /// The sender's counter expected next.
        expected: u64,
    },
    /// The message does not follow its sender's previous one here: it
    /// repeats a position, forks, or is not a valid link.
    #[error("this message does not follow your previous one ({0})")]
    BadChain(&'static str),
    /// A copy that fails verification: a message whose signature or
    /// sender chain does not check out, or a log that does not reach the
    /// head its host signed. Nothing of it is held.
    #[error("a copy that fails verification: {0}")]
    BadCopy(String),
    /// A replica delta does not follow what the replica holds.
    #[error("replication gap: have {have}, got entry {got}")]
    Gap {
        /// Last sequence held.
        have: u64,
        /// First sequence offered.
        got: u64,
    },
}

/// Why this node refused a call; nothing changed.
#[derive(Debug, Error)]
pub enum NodeError {
    /// A chat call reached a node that is not the live host.
    #[error("this node is not the chat host")]
    NotHost {
        /// The newest host known, for the caller to follow.
        host: Option<Box<HostRecord>>,
    },
    /// A call for a room this node is not in (the room as named, its start).
    #[error("this node is not in room {0}")]
    NotInRoom(Quoted),
    /// The term the work was for is no longer hosted here.
    #[error("no longer hosting")]
    NoLongerHosting,
    /// A Replicate whose term is for another room than the one it reached.
    #[error("a copy of room {term:?} sent to room {here:?}")]
    WrongRoom {
        /// The term's room (at most its first 64 characters).
        term: String,
        /// This room.
        here: String,
    },
    /// A Replicate reached the live host.
    #[error("this node is the live host")]
    LiveHost,
    /// A TakeOver of a term this node does not host after all.
    #[error("cannot take over epoch {epoch}: this node knows epoch {known}")]
    CannotTakeOver {
        /// The epoch offered.
        epoch: u64,
        /// The newest epoch this node knows.
        known: u64,
    },
    /// The host has no room (a fault of ours, not the caller's).
    #[error("host has no room")]
    NoRoom,
    /// The relay's answer to a migration report carried no certificate.
    #[error("the relay's record has no certificate")]
    UncertifiedRecord,
    /// The relay authorized a reset but sent no certificate for it.
    #[error("the relay's answer has no reset certificate")]
    NoResetCertificate,

    /// A call made under an epoch older than one this node knows.
    #[error("stale epoch {epoch}: this node knows epoch {known}")]
    StaleEpoch {
        /// The caller's epoch.
        epoch: u64,
        /// The newest epoch this node knows.
        known: u64,
        /// The newest host known, so the caller learns it was fenced.
        host: Option<Box<HostRecord>>,
    },
    /// A host term certificate the relay did not sign.
    #[error("host term certificate: {0}")]
    TermCertificate(TrustError),
    /// A Replicate without its term.
    #[error("Replicate carries no host term")]
    ReplicateWithoutTerm,
    /// A Replicate not signed by the host its term names.
    #[error("Replicate not signed by the host of its term: {0}")]
    ReplicateNotSigned(TrustError),
    /// A Replicate without the relay's permit for this node to hold the
    /// term's copies, or with one for another node, room or term.
    #[error("no copy permit from the relay for this node in this term: {0}")]
    NoCopyPermit(&'static str),
    /// The relay gave no copy permit for a member (see `relay.v1.CopyGrant`).
    #[error("the relay gives no copy permit for {0}")]
    CopyNotPermitted(String),
    /// A TakeOver without the new term or the sender's.
    #[error("TakeOver needs both host terms")]
    TakeOverWithoutTerms,
    /// A TakeOver whose new term names another node.
    #[error("the new term names another node")]
    TakeOverForAnotherNode,
    /// A TakeOver whose sender did not host the term before the new one.
    #[error("the sender's term is not the one before the new term")]
    TakeOverNotFromPreviousTerm,
    /// A TakeOver not signed by the previous host, or signed too long ago.
    #[error("TakeOver not signed by the previous host: {0}")]
    TakeOverNotSigned(TrustError),

    /// A Replicate body that does not decode.
    #[error("Replicate body: {0}")]
    ReplicateBody(#[from] prost::DecodeError),
    /// A Replicate over the size limits.
    #[error("a Replicate carries at most {entries} entries and {members} members")]
    ReplicateTooLarge {
        /// Most entries.
        entries: usize,
        /// Most members.
        members: usize,
    },
    /// A replica that did not answer a Replicate in time.
    #[error("the replica did not answer within {0:?}")]
    ReplicaSilent(std::time::Duration),
    /// A Replicate whose counter was seen before in its term.
    #[error("a replayed Replicate")]
    ReplayedReplicate,
    /// A delta for a room this node holds no replica of.
    #[error("no replica of this room here: send the member list")]
    NoReplica,
    /// The room refused the change.
    #[error(transparent)]
    Room(#[from] RoomError),
    /// This node could not put its copy of the room on its disk: it holds
    /// no copy it could vouch for after a crash.
    #[error("this node cannot keep its copy of the room: {0}")]
    CopyNotKept(String),

    /// Entries older than the room's memory tail could not be read back
    /// from this node's disk, or did not check out there.
    #[error("this node cannot read its copy of the room: {0}")]
    CopyUnreadable(String),

    /// A session that did not say Hello in time.
    #[error("no Hello within {} s", .0.as_secs())]
    HelloTimeout(std::time::Duration),
    /// A session that began with another frame than Hello.
    #[error("the first frame of a session must be Hello")]
    NoHello,
    /// A Hello that does not answer the challenge for a relay-granted name.
    #[error("Hello: {0}")]
    BadHello(TrustError),
    /// A client that fell too far behind the host's broadcasts.
    #[error("client too slow; resume from your last sequence number")]
    TooSlow,

    /// A private message for another node.
    #[error("this node is {me:?} ({my_node_id}), not {to} ({to_node_id})")]
    NotRecipient {
        /// This node's name.
        me: String,
        /// This node's id.
        my_node_id: String,
        /// The recipient named (its start).
        to: Quoted,
        /// The recipient's node id named (its start).
        to_node_id: Quoted,
    },
    /// A private message whose sender's node id is not the relay's.
    #[error("sender is not {0}")]
    WrongSender(Quoted),
    /// A private message not signed by its sender's key, or not fresh.
    #[error("not from {from}: {error}")]
    NotFromSender {
        /// The sender named (its start).
        from: Quoted,
        /// Why the signature was refused.
        error: TrustError,
    },
    /// A private message delivered before.
    #[error("this private message was delivered before")]
    ReplayedPrivate,
    /// A sealed private message without its sender's name certificate.
    #[error("it carries no name certificate of its sender")]
    NoSenderCertificate,
    /// The node is stopping.
    #[error("the recipient is shutting down")]
    ShuttingDown,
    /// A sealed private message addressed to another node.
    #[error("the sealed private message is for another node")]
    SealedForAnother,
    /// A sealed private message that does not open with this node's key.
    #[error("sealed private message: {0}")]
    BadSealed(String),
    /// The node is in as many rooms as it may be.
    #[error("a node may be in at most {0} rooms")]
    TooManyRooms(usize),

    /// The relay's answer to a registration carried no valid name
    /// certificate for this name and key (a fault of the relay's).
    #[error("the relay's name certificate: {0}")]
    NameCertificate(String),
    /// The relay ended the watch stream.
    #[error("the relay closed the watch stream")]
    WatchClosed,
    /// This node's own TLS material could not be made or renewed.
    #[error("this node's TLS certificate: {0}")]
    OwnCertificate(String),

    /// Another node cannot be dialled the way this node was told to
    /// (plaintext off loopback, an unknown node over TLS).
    #[error(transparent)]
    Dial(#[from] DialError),
}

impl NodeError {
    /// The gRPC code of this refusal.
    pub fn code(&self) -> Code {
        use NodeError::*;
        match self {
            NotHost { .. }
            | ShuttingDown
            | NotInRoom(_)
            | WatchClosed
            | CopyNotKept(_)
            | CopyUnreadable(_) => Code::Unavailable,
            SealedForAnother => Code::NotFound,
            BadSealed(_) => Code::InvalidArgument,
            TooManyRooms(_) => Code::ResourceExhausted,
            NameCertificate(_) | OwnCertificate(_) => Code::Internal,
            NoLongerHosting | LiveHost | CannotTakeOver { .. } | StaleEpoch { .. } | NoReplica => {
                Code::FailedPrecondition
            }
            NoRoom | UncertifiedRecord | NoResetCertificate => Code::Internal,
            TermCertificate(_)
            | ReplicateWithoutTerm
            | ReplicateNotSigned(_)
            | NoCopyPermit(_)
            | CopyNotPermitted(_)
            | TakeOverWithoutTerms
            | TakeOverForAnotherNode
            | TakeOverNotFromPreviousTerm
            | TakeOverNotSigned(_)
            | WrongSender(_)
            | NoSenderCertificate
            | NotFromSender { .. } => Code::PermissionDenied,
            ReplicateBody(_)
            | ReplicateTooLarge { .. }
            | WrongRoom { .. }
            | NoHello
            | Dial(DialError::BadAddress { .. }) => Code::InvalidArgument,
            ReplayedReplicate | ReplayedPrivate => Code::AlreadyExists,
            HelloTimeout(_) | ReplicaSilent(_) => Code::DeadlineExceeded,
            BadHello(_) | Dial(DialError::Unauthenticated { .. }) => Code::Unauthenticated,
            TooSlow => Code::ResourceExhausted,
            NotRecipient { .. } => Code::NotFound,
            Room(RoomError::NameTaken(_)) => Code::AlreadyExists,
            Room(RoomError::Gap { .. }) => Code::FailedPrecondition,
            Room(_) => Code::InvalidArgument,
            Dial(_) => Code::FailedPrecondition,
        }
    }

    /// The host record this refusal points the caller to, if any.
    fn host(&self) -> Option<&HostRecord> {
        match self {
            NodeError::NotHost { host } | NodeError::StaleEpoch { host, .. } => host.as_deref(),
            _ => None,
        }
    }
}

impl From<NodeError> for Status {
    fn from(err: NodeError) -> Self {
        let mut status = Status::new(err.code(), err.to_string());
        if let Some(host) = err.host() {
            chat_proto::add_host_metadata(&mut status, host);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(epoch: u64) -> Option<Box<HostRecord>> {
        Some(Box::new(HostRecord {
            epoch,
            node_id: "n2".into(),
            address: "127.0.0.1:2".into(),
            name: "bob".into(),
            ..Default::default()
        }))
    }

    #[test]
    fn refusals_that_name_a_host_carry_it_as_metadata() {
        let stale = NodeError::StaleEpoch {
            epoch: 3,
            known: 4,
            host: host(4),
        };
        let status = Status::from(stale);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "stale epoch 3: this node knows epoch 4");
        let named = chat_proto::host_from_metadata(&status).expect("host metadata");
        assert_eq!((named.epoch, named.node_id.as_str()), (4, "n2"));

        let status = Status::from(NodeError::NotHost { host: None });
        assert_eq!(status.code(), Code::Unavailable);
        assert!(chat_proto::host_from_metadata(&status).is_none());
    }

    #[test]
    fn refusals_quote_only_the_start_of_what_a_caller_sent() {
        let huge = "y".repeat(1 << 20);
        let refusals = [
            NodeError::NotInRoom(huge.as_str().into()),
            NodeError::WrongSender(huge.as_str().into()),
            NodeError::NotRecipient {
                me: "bob".into(),
                my_node_id: "n2".into(),
                to: huge.as_str().into(),
                to_node_id: huge.as_str().into(),
            },
            NodeError::NotFromSender {
                from: huge.as_str().into(),
                error: TrustError::BadSignature,
            },
        ];
        for refusal in refusals {
            let status = Status::from(refusal);
            assert!(status.message().len() < 400, "{}", status.message().len());
            assert!(status.message().contains("more bytes)"), "{status}");
        }
    }

    #[test]
    fn room_refusals_keep_their_codes() {
        let code = |e: RoomError| Status::from(NodeError::from(e)).code();
        assert_eq!(code(RoomError::NameTaken("a".into())), Code::AlreadyExists);
        assert_eq!(
            code(RoomError::Gap { have: 1, got: 3 }),
            Code::FailedPrecondition
        );
        assert_eq!(code(RoomError::BadId), Code::InvalidArgument);
    }
}
