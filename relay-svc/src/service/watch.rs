//! A member's watch stream: the current host record of every room it is
//! in, then every change of a room it is in at that moment. The node
//! counts as alive for as long as the stream is open.

use super::{RoomChange, Shared};
use chat_proto::pb::relay::HostRecord;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

/// Records queued for one watcher at most (a slow one makes the relay
/// wait, then, once it falls behind the broadcast, gets its rooms'
/// current records again).
pub(super) const WATCH_QUEUE: usize = 64;

type Outbox = mpsc::Sender<Result<HostRecord, Status>>;

/// Sends `first`, then the changes of `node_id`'s rooms from `changes`,
/// until the watcher goes away or the relay stops.
pub(super) async fn forward_host_changes(
    shared: Arc<Shared>,
    node_id: String,
    mut changes: broadcast::Receiver<Arc<RoomChange>>,
    first: Vec<HostRecord>,
    tx: Outbox,
) {
    let mut batch = first;
    'stream: loop {
        for record in batch.drain(..) {
            if !send(&shared, &tx, record).await {
                break 'stream;
            }
        }
        let next = tokio::select! {
            next = changes.recv() => next,
            _ = tx.closed() => break,
            _ = shared.closing.cancelled() => break,
        };
        match next {
            Ok(change) if change.members.contains(&node_id) => {
                batch.push(change.record.clone());
            }
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(node = %node_id, missed, "a watcher fell behind; resending its rooms");
                (changes, batch) = shared.watch_from_now(&node_id);
            }
            Err(RecvError::Closed) => break,
        }
    }
    shared.update(|r| r.watch_ended(&node_id, Instant::now()));
}

/// Sends one record; false when the watcher is gone or the relay stops.
async fn send(shared: &Shared, tx: &Outbox, record: HostRecord) -> bool {
    tokio::select! {
        sent = tx.send(Ok(record)) => sent.is_ok(),
        _ = shared.closing.cancelled() => false,
    }
}
