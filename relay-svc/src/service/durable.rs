//! Write-through of the relay's durable state (`--store etcd`): every
//! change is staged under the registry's lock, in order; one committer
//! makes the staged changes durable (several at once when they pile up),
//! then tells the watch streams, then lets the calls that made them
//! answer. Nobody hears of a term that is not durable, and a relay that
//! cannot commit stops answering (it may have lost its leadership).

use super::RoomChange;
use crate::refusal::Refusal;
use crate::store::{Batch, Store, StoreError};
use chat_proto::pb::relay::HostRecord;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// Changes staged since the last commit. Bounded by the rooms: a room's
/// newer record replaces the one staged before (its watchers then get
/// the newer only, as a watcher that fell behind does), told to the
/// members of the room at either time.
#[derive(Debug, Default)]
struct Pending {
    /// How many stagings so far (each call's ticket).
    seq: u64,
    batch: Batch,
    publish: BTreeMap<String, (HostRecord, HashSet<String>)>,
}

/// The durable side of a relay that writes through to a [`Store`].
pub(super) struct Durable {
    store: Arc<dyn Store>,
    pending: Mutex<Pending>,
    wake: Notify,
    /// The last staging made durable and told.
    committed: watch::Sender<u64>,
    /// Cancelled when the relay may no longer answer (a commit failed or
    /// the leadership ended).
    pub(super) fenced: CancellationToken,
}

impl Durable {
    pub(super) fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            committed: watch::channel(0).0,
            fenced: CancellationToken::new(),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stages the changes of one update: new records (to tell), rooms
    /// gone, the highest epoch and a name binding. Returns its ticket.
    pub(super) fn stage(
        &self,
        changes: Vec<RoomChange>,
        gone: Vec<String>,
        highest_epoch: u64,
        binding: Option<(&str, &str)>,
    ) -> u64 {
        let mut pending = self.pending();
        pending.seq += 1;
        pending.batch.highest_epoch = pending.batch.highest_epoch.max(highest_epoch);
        for room in gone {
            pending.batch.terms.insert(room, None);
        }
        for change in changes {
            let room = change.record.room.clone();
            pending
                .batch
                .terms
                .insert(room.clone(), Some(change.record.clone()));
            Self::to_tell(&mut pending, change);
        }
        if let Some((name, node_id)) = binding {
            pending.batch.names.insert(name.into(), node_id.into());
        }
        let seq = pending.seq;
        drop(pending);
        self.wake.notify_one();
        seq
    }

    /// Stages a record to tell (already durable, e.g. to a joining node).
    pub(super) fn tell(&self, change: RoomChange) -> u64 {
        let mut pending = self.pending();
        pending.seq += 1;
        Self::to_tell(&mut pending, change);
        let seq = pending.seq;
        drop(pending);
        self.wake.notify_one();
        seq
    }

    fn to_tell(pending: &mut Pending, change: RoomChange) {
        let room = change.record.room.clone();
        let (record, members) = pending
            .publish
            .entry(room)
            .or_insert_with(|| (change.record.clone(), HashSet::new()));
        *record = change.record;
        members.extend(change.members);
    }

    /// The ticket of everything staged so far.
    pub(super) fn issued(&self) -> u64 {
        self.pending().seq
    }

    /// Waits until ticket `seq` is durable and told, or refuses when the
    /// relay stopped leading first.
    pub(super) async fn settled(&self, seq: u64) -> Result<(), Refusal> {
        let mut committed = self.committed.subscribe();
        tokio::select! {
            done = committed.wait_for(|&c| c >= seq) => match done {
                Ok(_) => Ok(()),
                Err(_) => Err(Refusal::Standby(None)),
            },
            _ = self.fenced.cancelled() => Err(Refusal::Standby(None)),
        }
    }

    /// The committer: makes what is staged durable, then tells it, until
    /// a commit fails (returned) or the relay is fenced.
    pub(super) async fn run(&self, tell: impl Fn(RoomChange)) -> StoreError {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.fenced.cancelled() => return StoreError::Fenced,
            }
            let (seq, batch, publish) = {
                let mut pending = self.pending();
                let batch = std::mem::take(&mut pending.batch);
                (pending.seq, batch, std::mem::take(&mut pending.publish))
            };
            if let Err(e) = self.store.commit(&batch).await {
                self.fenced.cancel();
                return e;
            }
            for (_, (record, members)) in publish {
                tell(RoomChange { record, members });
            }
            self.committed.send_replace(seq);
        }
    }
}
