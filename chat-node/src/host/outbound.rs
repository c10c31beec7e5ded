//! What goes from the live host to one client: the session's replies, acks
//! and broadcasts, queued in batches, and the committed log read straight
//! from the room by the response stream itself, so a delivered message
//! costs one task wake-up (the connection's) and no queue in between. A
//! slow client only falls behind in the log (resumed by sequence number);
//! it never makes the host buffer without bound. A client behind the
//! room's memory tail is served from this node's disk, one page at a
//! time, read only when the stream asks for more (`stored.rs`).

use super::room::Read;
use super::stored::DISK_PAGE;
use super::Role;
use crate::error::NodeError;
use crate::host::RoomHost;
use chat_proto::chain::Digest;
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
            disk: None,
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
            if let Some(read) = this.log.disk.as_mut() {
                // A page of the log from disk, on its way.
                let page = match read.as_mut().poll(cx) {
                    Poll::Ready(page) => page,
                    Poll::Pending => return Poll::Pending,
                };
                this.log.disk = None;
                match page {
                    Ok(page) if !page.is_empty() => {
                        this.current = this.log.stored_batch(page).into_iter();
                        continue;
                    }
                    // Gone from the disk since (a reset): the client
                    // resumes where it was.
                    Ok(_) => {
                        let gone = NodeError::CopyUnreadable("entries no longer held".into());
                        return Poll::Ready(Some(Err(gone.into())));
                    }
                    Err(e) => return Poll::Ready(Some(Err(e.into()))),
                }
            }
            if this.log.more {
                match this.log.next_batch() {
                    Next::Frames(batch) if !batch.is_empty() => {
                        this.current = batch.into_iter();
                        continue;
                    }
                    Next::Frames(_) => {}
                    Next::Expired => {
                        let gone = NodeError::CopyUnreadable("entries expired (retention)".into());
                        return Poll::Ready(Some(Err(gone.into())));
                    }
                    Next::OnDisk { after, through } => {
                        let host = this.log.host.clone();
                        this.log.disk = Some(Box::pin(async move {
                            host.read_stored(after, through, DISK_PAGE).await
                        }));
                        continue;
                    }
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

/// A page of the log being read from disk.
type DiskRead = Pin<Box<dyn Future<Output = Result<Vec<(LogEntry, Digest)>, NodeError>> + Send>>;

/// What a session's cursor delivers next.
enum Next {
    /// These frames (none: wait for the commit point).
    Frames(Batch),
    /// Entries only the disk holds: read them first.
    OnDisk { after: u64, through: u64 },
    /// Retention dropped entries the client has not had: it resumes, and
    /// its next Welcome tells it where history starts now.
    Expired,
}

/// What the room says besides its entries, read with them.
struct RoomState {
    activated: bool,
    members: usize,
    head: Option<SignedHead>,
}

/// Where one client is in the log.
struct LogCursor {
    host: Arc<RoomHost>,
    /// Says where to start, once the session is open.
    start: Option<oneshot::Receiver<u64>>,
    /// Last sequence number delivered to (or already held by) the client.
    cursor: u64,
    /// A page being read from disk, when the client is behind the tail.
    disk: Option<DiskRead>,
    activated_sent: bool,
    /// Sequence number of the last signed head sent.
    head_sent: u64,
    /// Committed entries may wait past the cursor.
    more: bool,
    commit: WatchStream<u64>,
}

impl LogCursor {
    /// The next committed entries the client lacks (and Activated, once),
    /// or where on disk they are; sets `more` if a full batch was read.
    fn next_batch(&mut self) -> Next {
        let (committed, state) = {
            let core = self.host.core();
            let commit = core.tenure.commit().get();
            match (core.tenure.role(), &core.room) {
                (Role::Dormant, _) | (_, None) => {
                    self.more = false;
                    return Next::Frames(Vec::new());
                }
                (_, Some(room)) => {
                    let behind = room
                        .expired()
                        .is_some_and(|(seq, _)| self.cursor < seq && seq >= room.reset_seq());
                    if behind {
                        return Next::Expired;
                    }
                    let read = room.read(self.cursor, commit, DELIVERY_BATCH);
                    let committed = match read {
                        Read::Held(entries) => entries,
                        Read::OnDisk { after, through } => return Next::OnDisk { after, through },
                    };
                    let state = RoomState {
                        activated: room.activated(),
                        members: room.members().count(),
                        head: core
                            .signed_head
                            .clone()
                            .filter(|h| h.seq > self.head_sent && h.seq <= commit),
                    };
                    (committed, state)
                }
            }
        };
        self.more = committed.len() == DELIVERY_BATCH;
        Next::Frames(self.frames(committed, state))
    }

    /// The frames of a page of committed entries read from disk; more
    /// follow (from disk or memory) unless the room stopped being served.
    fn stored_batch(&mut self, page: Vec<(LogEntry, Digest)>) -> Batch {
        let state = {
            let core = self.host.core();
            let commit = core.tenure.commit().get();
            match (core.tenure.role(), &core.room) {
                (Role::Dormant, _) | (_, None) => {
                    self.more = false;
                    return Vec::new();
                }
                (_, Some(room)) => RoomState {
                    activated: room.activated(),
                    members: room.members().count(),
                    head: core
                        .signed_head
                        .clone()
                        .filter(|h| h.seq > self.head_sent && h.seq <= commit),
                },
            }
        };
        self.more = true;
        self.frames(page.into_iter().map(|(e, _)| e).collect(), state)
    }

    /// The frames of `committed` entries for the client, with Activated
    /// (once) and the host's signed head once the entries it covers went.
    fn frames(&mut self, committed: Vec<LogEntry>, state: RoomState) -> Batch {
        let RoomState {
            activated,
            members,
            head,
        } = state;
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
