//! Who hears of a room's host changes: each open watch stream has a queue,
//! listed under its node, and a change of a room goes only to the queues
//! of that room's members. A move costs the relay the room's members, not
//! every member connected.
//!
//! Changes are queued while the registry's lock is held, so every stream
//! sees a room's records in the order they were made. A queue never grows
//! past [`CHANGES_KEPT`]: a stream that falls that far behind is marked
//! lagged, its queue is emptied, and it is sent its rooms' current records
//! again (under the same lock, so nothing falls between).

use chat_proto::pb::relay::HostRecord;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::{self, error::TrySendError};

/// Host record changes kept for one watch stream that falls behind (one
/// that falls further gets the current records of its rooms again).
pub(super) const CHANGES_KEPT: usize = 4096;

/// A change as queued: one record shared by the queues it goes to.
pub(super) type Change = Arc<HostRecord>;

/// The queues of the open watch streams, by node.
#[derive(Debug, Default)]
pub(super) struct Watchers {
    by_node: HashMap<String, Vec<Queue>>,
    next_id: u64,
}

#[derive(Debug)]
struct Queue {
    id: u64,
    tx: mpsc::Sender<Change>,
    lagged: Arc<AtomicBool>,
}

/// The receiving end of one watch stream's queue.
#[derive(Debug)]
pub(super) struct Subscription {
    /// Its node.
    pub node_id: String,
    id: u64,
    /// The changes, in order.
    pub rx: mpsc::Receiver<Change>,
    lagged: Arc<AtomicBool>,
}

impl Subscription {
    /// Whether changes were dropped since the stream last caught up.
    pub(super) fn lagged(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }

    /// Empties the queue and clears the mark; the caller then sends the
    /// current records (call it under the registry's lock).
    pub(super) fn catch_up(&mut self) {
        while self.rx.try_recv().is_ok() {}
        self.lagged.store(false, Ordering::Release);
    }
}

impl Watchers {
    /// A new queue for a watch stream of `node_id`.
    pub(super) fn subscribe(&mut self, node_id: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(CHANGES_KEPT);
        let lagged = Arc::new(AtomicBool::new(false));
        self.next_id += 1;
        let id = self.next_id;
        self.by_node
            .entry(node_id.to_string())
            .or_default()
            .push(Queue {
                id,
                tx,
                lagged: lagged.clone(),
            });
        Subscription {
            node_id: node_id.to_string(),
            id,
            rx,
            lagged,
        }
    }

    /// Forgets a stream's queue (the stream ended).
    pub(super) fn unsubscribe(&mut self, sub: &Subscription) {
        if let Some(queues) = self.by_node.get_mut(&sub.node_id) {
            queues.retain(|q| q.id != sub.id);
            if queues.is_empty() {
                self.by_node.remove(&sub.node_id);
            }
        }
    }

    /// Queues `change` for every open stream of the nodes `to`.
    pub(super) fn send<'a>(&self, to: impl IntoIterator<Item = &'a str>, change: &Change) {
        for node in to {
            for queue in self.by_node.get(node).into_iter().flatten() {
                match queue.tx.try_send(change.clone()) {
                    Ok(()) | Err(TrySendError::Closed(_)) => {}
                    Err(TrySendError::Full(_)) => queue.lagged.store(true, Ordering::Release),
                }
            }
        }
    }

    /// Open streams, for the tests.
    #[cfg(test)]
    pub(super) fn streams(&self) -> usize {
        self.by_node.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u64) -> Change {
        Arc::new(HostRecord {
            epoch,
            ..Default::default()
        })
    }

    #[test]
    fn a_change_reaches_only_the_streams_of_the_nodes_named() {
        let mut watchers = Watchers::default();
        let mut ann = watchers.subscribe("ann");
        let mut ann_again = watchers.subscribe("ann");
        let mut bob = watchers.subscribe("bob");
        watchers.send(["ann"], &record(7));
        assert_eq!(ann.rx.try_recv().map(|r| r.epoch), Ok(7));
        assert_eq!(ann_again.rx.try_recv().map(|r| r.epoch), Ok(7));
        assert!(bob.rx.try_recv().is_err());
        watchers.unsubscribe(&ann);
        watchers.send(["ann", "bob"], &record(8));
        assert_eq!(ann_again.rx.try_recv().map(|r| r.epoch), Ok(8));
        assert_eq!(bob.rx.try_recv().map(|r| r.epoch), Ok(8));
        assert_eq!(watchers.streams(), 2);
    }

    #[test]
    fn a_full_queue_marks_its_stream_lagged_and_catching_up_empties_it() {
        let mut watchers = Watchers::default();
        let mut ann = watchers.subscribe("ann");
        for epoch in 0..CHANGES_KEPT as u64 {
            watchers.send(["ann"], &record(epoch));
        }
        assert!(!ann.lagged());
        watchers.send(["ann"], &record(u64::MAX));
        assert!(ann.lagged());
        ann.catch_up();
        assert!(!ann.lagged());
        assert!(ann.rx.try_recv().is_err(), "emptied");
        watchers.send(["ann"], &record(1));
        assert_eq!(ann.rx.try_recv().map(|r| r.epoch), Ok(1));
    }
}
