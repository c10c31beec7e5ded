//! What goes from the live host to one client: the session's replies, acks
//! and broadcasts, queued in batches, and the committed log read straight
//! from the room by the response stream itself, so a delivered message
//! costs one task wake-up (the connection's) and no queue in between. A
//! slow client only falls behind in the log (resumed by sequence number);
//! it never makes the host buffer without bound.

use super::Role;
use crate::host::RoomHost;
use chat_proto::pb::chat::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::WatchStream;
use tokio_stream::Stream;
use tonic::Status;

/// A server frame holding `f`.
pub(crate) fn frame(f: server_frame::Frame) -> ServerFrame {
    ServerFrame { frame: Some(f) }
}

/// Log entries read from the room per lock.
const DELIVERY_BATCH: usize = 128;
/// Batches of replies, acks and broadcasts queued towards one client.
const QUEUED_BATCHES: usize = 4;

/// Frames for one client, queued a batch at a time: one channel operation
/// per batch instead of one per frame.
pub(super) type Batch = Vec<Result<ServerFrame, Status>>;

/// The session task's half: queues replies, acks and broadcasts.
#[derive(Clone)]
pub(super) struct Outbound(mpsc::Sender<Batch>);

impl Outbound {
    /// Queues frames, waiting for room; `Err` once the client is gone.
    pub(super) async fn send(&self, batch: Batch) -> Result<(), ()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.0.send(batch).await.map_err(|_| ())
    }

    /// Queues one frame.
    pub(super) async fn frame(&self, f: server_frame::Frame) -> Result<(), ()> {
        self.send(vec![Ok(frame(f))]).await
    }

    /// A handle that does not keep the session's stream open.
    pub(super) fn downgrade(&self) -> WeakOutbound {
        WeakOutbound(self.0.downgrade())
    }
}

/// An [`Outbound`] that does not keep the session's stream open.
#[derive(Debug, Clone)]
pub(super) struct WeakOutbound(mpsc::WeakSender<Batch>);

impl WeakOutbound {
    /// The session's queue, if the session is still open.
    pub(super) fn upgrade(&self) -> Option<Outbound> {
        self.0.upgrade().map(Outbound)
    }
}

/// A queue of batches and its receiving end, for the tests of the host's
/// parts.
#[cfg(test)]
pub(super) fn test_outbound() -> (Outbound, mpsc::Receiver<Batch>) {
    let (tx, rx) = mpsc::channel(QUEUED_BATCHES);
    (Outbound(tx), rx)
}

/// The response stream of a session: queued frames first, then the
/// committed log from the client's cursor. It ends when the session task
/// drops its [`Outbound`].
pub struct OutboundFrames {
    queued: mpsc::Receiver<Batch>,
    current: std::vec::IntoIter<Result<ServerFrame, Status>>,
    log: LogCursor,
}

/// Starts a session's log delivery, once the session is open.
pub(super) struct StartLog(oneshot::Sender<u64>);

impl StartLog {
    /// Delivers the committed log after `cursor`, following what was queued.
    pub(super) fn from(self, cursor: u64) {
        // The stream is gone only if the client is.
        let _ = self.0.send(cursor);
    }
}

/// Opens a session's outbound path: `first` goes out at once, then what is
/// queued; the log follows once [`StartLog::from`] says from where.
pub(super) fn outbound(
    host: Arc<RoomHost>,
    first: ServerFrame,
) -> (Outbound, StartLog, OutboundFrames) {
    let (tx, queued) = mpsc::channel(QUEUED_BATCHES);
    let (start_tx, start) = oneshot::channel();
    let commit = WatchStream::new(host.core().tenure.commit().subscribe());
    let frames = OutboundFrames {
        queued,
        current: vec![Ok(first)].into_iter(),
        log: LogCursor {
            host,
            start: Some(start),
            cursor: 0,
            activated_sent: false,
            head_sent: 0,
            more: false,
            commit,
        },
    };
    (Outbound(tx), StartLog(start_tx), frames)
}

impl Stream for OutboundFrames {
    type Item = Result<ServerFrame, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(f) = this.current.next() {
                return Poll::Ready(Some(f));
            }
            match this.queued.poll_recv(cx) {
                Poll::Ready(Some(batch)) => {
                    this.current = batch.into_iter();
                    continue;
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {}
            }
            if let Some(start) = this.log.start.as_mut() {
                // The log waits until the session is open.
                match Pin::new(start).poll(cx) {
                    Poll::Ready(Ok(cursor)) => {
                        this.log.start = None;
                        this.log.cursor = cursor;
                        this.log.more = true;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if this.log.more {
                let batch = this.log.next_batch();
                if !batch.is_empty() {
                    this.current = batch.into_iter();
                    continue;
                }
            }
            // Only committed entries are delivered, so the commit point
            // (which also ticks on activation) is the one thing to wait for.
            match Pin::new(&mut this.log.commit).poll_next(cx) {
                Poll::Ready(Some(_)) => this.log.more = true,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Where one client is in the log.
struct LogCursor {
    host: Arc<RoomHost>,
    /// Says where to start, once the session is open.
    start: Option<oneshot::Receiver<u64>>,
    /// Last sequence number delivered to (or already held by) the client.
    cursor: u64,
    activated_sent: bool,
    /// Sequence number of the last signed head sent.
    head_sent: u64,
    /// Committed entries may wait past the cursor.
    more: bool,
    commit: WatchStream<u64>,
}

impl LogCursor {
    /// The next committed entries the client lacks (and Activated, once);
    /// sets `more` if a full batch was read.
    fn next_batch(&mut self) -> Batch {
        let (committed, activated, members, head) = {
            let core = self.host.core();
            let commit = core.tenure.commit().get();
            match (core.tenure.role(), &core.room) {
                (Role::Dormant, _) | (_, None) => {
                    self.more = false;
                    return Vec::new();
                }
                (_, Some(room)) => (
                    room.entries_after(self.cursor, commit, DELIVERY_BATCH),
                    room.activated(),
                    room.members().count(),
                    core.signed_head
                        .clone()
                        .filter(|h| h.seq > self.head_sent && h.seq <= commit),
                ),
            }
        };
        self.more = committed.len() == DELIVERY_BATCH;
        let mut batch = Vec::with_capacity(committed.len() + 1);
        for entry in committed {
            let f = match entry.kind {
                Some(log_entry::Kind::Reset(r)) => {
                    self.cursor = r.seq;
                    self.activated_sent = false;
                    server_frame::Frame::Reset(r)
                }
                Some(log_entry::Kind::Message(m)) if activated => {
                    self.activated_once(members, &mut batch);
                    self.cursor = m.seq;
                    server_frame::Frame::Message(m)
                }
                _ => {
                    // Held until activation, which ticks the commit watch.
                    self.more = false;
                    return batch;
                }
            };
            batch.push(Ok(frame(f)));
        }
        if activated {
            self.activated_once(members, &mut batch);
        }
        // The host's signed head, once the entries it covers went out.
        if let Some(head) = head.filter(|h| h.seq <= self.cursor) {
            self.head_sent = head.seq;
            batch.push(Ok(frame(server_frame::Frame::Head(head))));
        }
        batch
    }

    /// Adds the Activated frame to `batch` the first time.
    fn activated_once(&mut self, members: usize, batch: &mut Batch) {
        if !self.activated_sent {
            self.activated_sent = true;
            let f = server_frame::Frame::Activated(Activated {
                member_count: members as u32,
            });
            batch.push(Ok(frame(f)));
        }
    }
}
