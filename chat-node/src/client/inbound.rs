//! The host's frames, read and verified off the session's loop (see
//! [`crate::checked`]): the chat messages of each batch are checked with
//! one signature per run of a sender's consecutive messages, several
//! senders' runs in one batch verification, and passed on in order, each
//! with its verdict. Nothing is shown before it is verified.

use crate::checked::{Checked, Read};
use chat_proto::chain::Digest;
use chat_proto::pb::chat::{server_frame, ChatMessage, ServerFrame};
use chat_proto::senders::Senders;
use chat_proto::trust::{PublicKey, TrustError};
use std::sync::{Arc, Mutex};
use tonic::{Status, Streaming};

/// A frame from the host, a chat message with its verdict.
#[derive(Debug)]
pub(super) enum Arrived {
    /// A chat message: its digest if its signatures check out. (Not
    /// boxed: an allocation made here and freed on the session's thread
    /// for every message bloated a late joiner's memory thirtyfold.)
    Message(ChatMessage, Result<Digest, TrustError>),
    /// Any other frame.
    Frame(server_frame::Frame),
    /// The host closed the session.
    Closed,
    /// The stream broke.
    Broken(Status),
}

/// The checked frames of one session; dropping it ends the session.
pub(super) struct Inbound(Checked<Arrived>);

impl Inbound {
    /// Starts reading `stream` of `room`, checking messages against the
    /// relay's key with `senders`' certificate cache.
    pub(super) fn start(
        stream: Streaming<ServerFrame>,
        relay: PublicKey,
        room: String,
        senders: Arc<Mutex<Senders>>,
    ) -> Self {
        Self(Checked::start(stream, move |batch| {
            check(batch, &relay, &room, &senders)
        }))
    }

    /// The next frame, in the order the host sent them.
    pub(super) async fn next(&mut self) -> Arrived {
        self.0.next().await.unwrap_or(Arrived::Closed)
    }
}

/// Checks the messages of `batch` together and turns it (drained) into
/// what the session loop gets.
fn check(
    batch: &mut Vec<Read<ServerFrame>>,
    relay: &PublicKey,
    room: &str,
    senders: &Mutex<Senders>,
) -> Vec<Arrived> {
    let messages: Vec<&ChatMessage> = batch
        .iter()
        .filter_map(|item| match item {
            Some(Ok(ServerFrame {
                frame: Some(server_frame::Frame::Message(m)),
            })) => Some(m),
            _ => None,
        })
        .collect();
    let mut verdicts = if messages.is_empty() {
        Vec::new()
    } else {
        let mut senders = senders.lock().unwrap_or_else(|p| p.into_inner());
        senders.check_all(relay, room, &messages)
    }
    .into_iter();
    batch
        .drain(..)
        .filter_map(|item| match item {
            None => Some(Arrived::Closed),
            Some(Err(status)) => Some(Arrived::Broken(status)),
            Some(Ok(ServerFrame { frame: None })) => None,
            Some(Ok(ServerFrame {
                frame: Some(server_frame::Frame::Message(m)),
            })) => {
                let verdict = verdicts.next().unwrap_or(Err(TrustError::Malformed));
                Some(Arrived::Message(m, verdict))
            }
            Some(Ok(ServerFrame { frame: Some(f) })) => Some(Arrived::Frame(f)),
        })
        .collect()
}
