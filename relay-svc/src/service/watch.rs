//! A member's watch stream: the current host record of every room it is
//! in, then every change of a room it is in at that moment (queued for it
//! by [`super::fanout`]). The node counts as alive for as long as the
//! stream is open.

use super::fanout::Subscription;
use super::Shared;
use chat_proto::pb::relay::HostRecord;
use std::sync::Arc;
use tokio::sync::mpsc;
use tonic::Status;

/// Records queued for one watcher at most (a slow one makes the relay
/// wait, then, once it falls behind its queue of changes, gets its rooms'
/// current records again).
pub(super) const WATCH_QUEUE: usize = 64;

type Outbox = mpsc::Sender<Result<HostRecord, Status>>;

/// Sends `first`, then the changes of the subscriber's rooms, until the
/// watcher goes away or the relay stops.
pub(super) async fn forward_host_changes(
    shared: Arc<Shared>,
    mut sub: Subscription,
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
        if sub.lagged() {
            tracing::debug!(node = %sub.node_id, "a watcher fell behind; resending its rooms");
            batch = shared.catch_up(&mut sub);
            continue;
        }
        let next = tokio::select! {
            next = sub.rx.recv() => next,
            _ = tx.closed() => break,
            _ = shared.closing.cancelled() => break,
        };
        match next {
            Some(change) => batch.push(HostRecord::clone(&change)),
            None => break,
        }
    }
    shared.watch_ended(&sub);
}

/// Sends one record; false when the watcher is gone or the relay stops.
async fn send(shared: &Shared, tx: &Outbox, record: HostRecord) -> bool {
    tokio::select! {
        sent = tx.send(Ok(record)) => sent.is_ok(),
        _ = shared.closing.cancelled() => false,
    }
}
