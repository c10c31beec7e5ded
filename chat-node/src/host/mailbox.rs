//! Sealed private messages on their way through the live host: from the
//! sender's session to the newest session of the recipient, through a
//! bounded queue per session. Whatever the host cannot pass on is refused
//! to its sender, never dropped: a full queue (the recipient is not taking
//! them this fast) at once, and what is still queued when the recipient's
//! session ends, then.

use super::outbound::{frame, Outbound, WeakOutbound};
use chat_proto::pb::chat::{server_frame, Rejected, SealedPrivate};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// Sealed private messages queued towards one session, at most.
pub(crate) const MAILBOX_CAPACITY: usize = 64;
/// How long the refusals of what a closing session left queued may take to
/// reach their senders' queues.
const REFUSALS_TIMEOUT: Duration = Duration::from_secs(2);

/// A sealed private message on its way, and where to refuse it.
#[derive(Debug)]
pub(super) struct Letter {
    pub(super) sealed: SealedPrivate,
    /// The recipient's name, for the refusal.
    pub(super) to: String,
    /// The sender's session (weak: a letter does not keep it open).
    pub(super) sender: WeakOutbound,
}

/// Why a letter was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NotQueued {
    /// The recipient has no session here.
    NoSession,
    /// The recipient's queue is full.
    Full,
}

/// The queues of the sessions open with this host, by node id: the
/// newest session of a node receives.
#[derive(Debug, Default)]
pub(crate) struct Mailboxes {
    open: Mutex<HashMap<String, (u64, mpsc::Sender<Letter>)>>,
    opened: AtomicU64,
}

/// The receiving end of one session's queue.
pub(super) struct Mailbox {
    node_id: String,
    number: u64,
    pub(super) letters: mpsc::Receiver<Letter>,
}

impl Mailboxes {
    /// Opens the queue of a new session of `node_id` (an older session of
    /// the same node receives nothing more).
    pub(super) fn open(&self, node_id: &str) -> Mailbox {
        let number = self.opened.fetch_add(1, Ordering::Relaxed);
        let (tx, letters) = mpsc::channel(MAILBOX_CAPACITY);
        self.lock().insert(node_id.to_string(), (number, tx));
        Mailbox {
            node_id: node_id.to_string(),
            number,
            letters,
        }
    }

    /// Queues `letter` for the newest session of `to_node_id`.
    pub(super) fn post(&self, to_node_id: &str, letter: Letter) -> Result<(), NotQueued> {
        let open = self.lock();
        let (_, tx) = open.get(to_node_id).ok_or(NotQueued::NoSession)?;
        tx.try_send(letter).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => NotQueued::Full,
            mpsc::error::TrySendError::Closed(_) => NotQueued::NoSession,
        })
    }

    /// Closes `mailbox` (its session ended) and refuses to their senders
    /// the letters still in it.
    pub(super) fn close(&self, mut mailbox: Mailbox) {
        {
            let mut open = self.lock();
            if open
                .get(&mailbox.node_id)
                .is_some_and(|(n, _)| *n == mailbox.number)
            {
                open.remove(&mailbox.node_id);
            }
        }
        mailbox.letters.close();
        let mut left = Vec::new();
        while let Ok(letter) = mailbox.letters.try_recv() {
            left.push(letter);
        }
        if !left.is_empty() {
            tokio::spawn(refuse_all(left));
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (u64, mpsc::Sender<Letter>)>> {
        // One insert or removal at a time: valid after any panic.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The refusal a sender gets for a sealed private message to `to` (empty:
/// not a member). It has no id and no retry delay, so the sender's client
/// shows it as it is.
pub(super) fn refusal(to: &str, why: &str) -> server_frame::Frame {
    let reason = match to {
        "" => format!("private message not passed on: {why}"),
        to => format!("private message to {to} not passed on: {why}"),
    };
    // No id, no retry delay (nor anything else a chat message's refusal
    // may carry).
    server_frame::Frame::Rejected(Rejected {
        reason,
        ..Rejected::default()
    })
}

/// Tells the senders of `letters` that their recipient's session ended
/// before they were passed on (bounded in time: a sender that reads
/// nothing does not hold this up).
async fn refuse_all(letters: Vec<Letter>) {
    let refusals = async {
        for letter in letters {
            let Some(sender) = letter.sender.upgrade() else {
                tracing::warn!(to = %letter.to, "a sealed private message was not passed on and its sender is gone");
                continue;
            };
            let why = "the recipient's session ended first; send it again";
            let _ = send_refusal(&sender, &letter.to, why).await;
        }
    };
    if tokio::time::timeout(REFUSALS_TIMEOUT, refusals)
        .await
        .is_err()
    {
        tracing::warn!("refusals of sealed private messages not passed on timed out");
    }
}

async fn send_refusal(sender: &Outbound, to: &str, why: &str) -> Result<(), ()> {
    sender.send(vec![Ok(frame(refusal(to, why)))]).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::outbound::test_outbound;

    fn letter(sender: &Outbound, n: usize) -> Letter {
        Letter {
            sealed: SealedPrivate {
                to_node_id: "dave-id".into(),
                sealed: vec![n as u8; 8],
            },
            to: "dave".into(),
            sender: sender.downgrade(),
        }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_closed_one_refuses_what_it_held() {
        let boxes = Mailboxes::default();
        let (alice, mut alice_frames) = test_outbound();
        assert_eq!(
            boxes.post("dave-id", letter(&alice, 0)),
            Err(NotQueued::NoSession)
        );
        let mut dave = boxes.open("dave-id");
        for n in 0..MAILBOX_CAPACITY {
            boxes.post("dave-id", letter(&alice, n)).unwrap();
        }
        assert_eq!(
            boxes.post("dave-id", letter(&alice, 99)),
            Err(NotQueued::Full)
        );
        // dave reads two; his session ends with the rest queued.
        for n in 0..2 {
            let got = dave.letters.recv().await.unwrap();
            assert_eq!(got.sealed.sealed, vec![n as u8; 8]);
        }
        boxes.close(dave);
        let mut refused = 0;
        while refused < MAILBOX_CAPACITY - 2 {
            let batch = tokio::time::timeout(Duration::from_secs(10), alice_frames.recv())
                .await
                .expect("a refusal in time")
                .expect("alice's queue is open");
            for f in batch {
                let f = f.unwrap().frame.unwrap();
                let server_frame::Frame::Rejected(r) = f else {
                    panic!("{f:?}")
                };
                assert!(r
                    .reason
                    .starts_with("private message to dave not passed on"));
                assert_eq!((r.id.as_str(), r.retry_after_ms), ("", 0));
                refused += 1;
            }
        }
        assert_eq!(
            boxes.post("dave-id", letter(&alice, 0)),
            Err(NotQueued::NoSession)
        );
    }

    #[tokio::test]
    async fn the_newest_session_of_a_node_receives() {
        let boxes = Mailboxes::default();
        let (alice, _frames) = test_outbound();
        let old = boxes.open("dave-id");
        let mut new = boxes.open("dave-id");
        boxes.post("dave-id", letter(&alice, 1)).unwrap();
        assert_eq!(new.letters.recv().await.unwrap().sealed.sealed, vec![1; 8]);
        // The old session closing leaves the new one's queue open.
        boxes.close(old);
        boxes.post("dave-id", letter(&alice, 2)).unwrap();
        assert_eq!(new.letters.recv().await.unwrap().sealed.sealed, vec![2; 8]);
    }
}
