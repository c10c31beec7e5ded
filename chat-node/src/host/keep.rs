//! This node's copy of the room on its disk (the store is
//! [`crate::history`]): written as the log grows, read back and checked at
//! start.
//!
//! - **What is written.** As host, every entry it sequences, with a head
//!   it signs for them; as replica, every copy it takes, with the head its
//!   host signed; and with both, the room's settings, the term its copy
//!   follows and the newest term it knows. A write carries what the log
//!   gained since the last one (a copy that started over, or a log that
//!   diverged from what was written, is written whole again).
//! - **What an acknowledgement promises.** A replica answers a Replicate
//!   only once the copy is on its disk, and a host moves its commit point
//!   only to what its own disk holds too: an acknowledged message is on
//!   the disks of the host and of its successor (the host's alone when it
//!   commits alone), so it survives every member of the room being killed
//!   at once, and the loss of any one of those disks.
//! - **What is read back** is checked like a copy from another node before
//!   anything of it is held: each message's sender certificate and
//!   signature (by runs), each sender's chain, the log hash up to the head
//!   and the head's signature by the host of a relay-signed term of this
//!   room. It is read and checked a page at a time, and only the room's
//!   memory tail stays in memory; log hashes missing from the store (or
//!   not matching) are written back. Entries past the signed head are not
//!   vouched for and are left out. A copy that fails is dropped (with a
//!   warning) and fetched again from the host like any missing copy:
//!   never served.
//! - **Memory.** Once a write is on disk the room is told
//!   ([`Room::mark_saved`]), and entries older than its memory tail leave
//!   memory: they are read back from the store when someone needs them
//!   (`stored.rs`).

use super::room::{entry_seq, Room};
use super::RoomHost;
use crate::error::NodeError;
use crate::history::{CopyWrite, History, RoomHistory, RoomRecord, MAX_ENTRIES_PER_WRITE};
use chat_proto::chain::Digest;
use chat_proto::pb::chat::{log_entry, ChatMessage, RoomMeta, SignedHead};
use chat_proto::pb::relay::{HostTermCertificate, RoomClaim};
use chat_proto::senders::Senders;
use chat_proto::trust::PublicKey;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// How long the keeper waits after a failed write before it tries again.
const RETRY: Duration = Duration::from_secs(1);
/// Entries read back and checked at a time at start.
const RESTORE_PAGE: usize = 4096;

/// What was last written of the room.
#[derive(Debug, Default)]
struct Saved {
    room_id: String,
    /// The last entry written, and the log hash there.
    seq: u64,
    hash: Digest,
    record: RoomRecord,
}

/// A room's copy on disk, as its host side keeps it.
#[derive(Debug)]
pub(crate) struct Keeper {
    pub(super) history: RoomHistory,
    /// Held for a whole write: writes go one at a time, in log order.
    saved: tokio::sync::Mutex<Saved>,
    /// The last sequence number on disk.
    saved_tx: watch::Sender<u64>,
    /// The newest head a host signed for this replica's log, and its term.
    copy_head: Mutex<Option<(SignedHead, HostTermCertificate)>>,
    /// Something besides the log changed (a term): write it.
    dirty: Notify,
}

impl Keeper {
    pub(crate) fn new(history: RoomHistory) -> Self {
        Self {
            history,
            saved: tokio::sync::Mutex::default(),
            saved_tx: watch::channel(0).0,
            copy_head: Mutex::default(),
            dirty: Notify::new(),
        }
    }
}

/// A room's copy read back from disk that checks out.
#[derive(Debug)]
pub struct Restored {
    room: Room,
    replica_term: u64,
    latest: Option<(u64, HostTermCertificate)>,
    saved: Saved,
}

/// The copies read back at the node's start, by room: what it claims at
/// the relay when it registers, and then holds.
#[derive(Debug, Default)]
pub struct RestoredCopies(BTreeMap<String, Restored>);

impl RestoredCopies {
    /// Reads and checks the copies of `rooms` in `history` against the
    /// relay's key (pinned on an earlier run).
    pub(crate) fn load(history: &Arc<History>, relay_key: &PublicKey, rooms: &[String]) -> Self {
        let copies = rooms
            .iter()
            .filter_map(|room| {
                Some((
                    room.clone(),
                    read_copy(&history.room(room), relay_key, room)?,
                ))
            })
            .collect();
        Self(copies)
    }

    /// What this node holds of `room`, to show the relay.
    pub(crate) fn claim(&self, room: &str) -> RoomClaim {
        let Some(copy) = self.0.get(room) else {
            return RoomClaim {
                room: room.to_string(),
                ..Default::default()
            };
        };
        RoomClaim {
            room: room.to_string(),
            latest_term: copy.latest.as_ref().map(|(_, cert)| cert.clone()),
            hosting: false,
            replica_head: copy.room.head_seq(),
            replica_term: copy.replica_term,
        }
    }

    /// Takes the copy of `room` out, to hold it.
    pub(crate) fn take(&mut self, room: &str) -> Option<Restored> {
        self.0.remove(room)
    }
}

/// Reads `room`'s copy and checks it; `None` (with a warning) when there is
/// none or it does not check out.
fn read_copy(history: &RoomHistory, relay_key: &PublicKey, room: &str) -> Option<Restored> {
    let record = match history.record() {
        Ok(record) => record?,
        Err(error) => {
            tracing::warn!(%room, %error,
                "cannot read this node's copy of the room; it is fetched again from the host");
            return None;
        }
    };
    match restore(history, relay_key, room, record) {
        Ok(restored) => Some(restored),
        Err(why) => {
            tracing::warn!(%room, %why,
                "this node's copy of the room on disk does not check out: dropped, \
                 it is fetched again from the host");
            None
        }
    }
}

impl RoomHost {
    /// Holds `restored`, this node's copy of the room read back at its
    /// start, or (`None`) reads and checks it now (a room joined later).
    pub(crate) fn restore_copy(&self, restored: Option<Restored>) {
        let Some(keeper) = &self.keeper else { return };
        let restored =
            restored.or_else(|| read_copy(&keeper.history, &self.ctx.relay_key, &self.room));
        let Some(restored) = restored else { return };
        let head = restored.room.head_seq();
        {
            let mut core = self.core();
            if let Some((epoch, cert)) = restored.latest {
                core.tenure.restore(epoch, cert);
            }
            core.replica_term = restored.replica_term;
            core.room = Some(restored.room);
        }
        if let Ok(mut saved) = keeper.saved.try_lock() {
            *saved = restored.saved;
        }
        keeper.saved_tx.send_replace(head);
        tracing::info!(room = %self.room, head, "restored this node's copy of the room from disk");
    }

    /// The last sequence number this node's disk holds of the room
    /// (everything, when it keeps no copy on disk): the host acknowledges
    /// nothing beyond it.
    pub(crate) fn saved_through(&self) -> u64 {
        self.keeper
            .as_ref()
            .map_or(u64::MAX, |k| *k.saved_tx.borrow())
    }

    /// Notes the head the host signed for the copy just taken from it (its
    /// term `cert`), to write with the entries it covers.
    pub(crate) fn note_copy_head(&self, head: Option<SignedHead>, cert: HostTermCertificate) {
        let (Some(keeper), Some(head)) = (&self.keeper, head) else {
            return;
        };
        *keeper.copy_head.lock().unwrap_or_else(|p| p.into_inner()) = Some((head, cert));
    }

    /// Something to keep besides the log changed (a term): write it soon.
    pub(crate) fn copy_changed(&self) {
        if let Some(keeper) = &self.keeper {
            keeper.dirty.notify_one();
        }
    }

    /// Writes what the room gained since the last write, and waits until it
    /// is on disk. Nothing to do without a store.
    pub(crate) async fn save_copy(&self) -> Result<(), NodeError> {
        let Some(keeper) = &self.keeper else {
            return Ok(());
        };
        let mut saved = keeper.saved.lock().await;
        loop {
            let Some((write, next, more)) = self.next_write(keeper, &saved) else {
                return Ok(());
            };
            keeper
                .history
                .write(write)
                .await
                .map_err(|e| NodeError::CopyNotKept(e.to_string()))?;
            let (seq, hash) = (next.seq, next.hash);
            *saved = next;
            keeper.saved_tx.send_replace(seq);
            // On disk now: older entries may leave memory.
            if let Some(room) = self.core().room.as_mut() {
                room.mark_saved(seq, hash);
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// As [`RoomHost::save_copy`], for callers that go on either way (the
    /// host's commit point then waits for the next write).
    pub(crate) async fn save_copy_or_warn(&self) {
        if let Err(error) = self.save_copy().await {
            tracing::error!(room = %self.room, %error, "this node's copy of the room is not on disk");
        }
    }

    /// The next write after `saved`, what will then be on disk, and
    /// whether more remains; `None` when the disk holds it all.
    fn next_write(&self, keeper: &Keeper, saved: &Saved) -> Option<(CopyWrite, Saved, bool)> {
        let core = self.core();
        let room = core.room.as_ref()?;
        let start_over =
            saved.room_id != room.room_id() || room.hash_at(saved.seq) != Some(saved.hash);
        let from = if start_over { 0 } else { saved.seq };
        // Entries not yet on disk are all in memory (see `Room::mark_saved`).
        let entries = room.entries_after(from, room.head_seq(), MAX_ENTRIES_PER_WRITE);
        let hashes = entries
            .iter()
            .map_while(|e| room.hash_at(entry_seq(e)))
            .collect();
        let through = entries.last().map_or(from, entry_seq);
        let hash = room.hash_at(through)?;
        // The head written must reach the entries written (a replica's
        // entries may have been written by another write before the head
        // its host signed for them was noted).
        let head_written = !start_over
            && saved.record.head.as_ref().map(|h| h.seq) == Some(through)
            && saved.record.head_term.is_some();
        let (head, head_term) = if head_written {
            (saved.record.head.clone(), saved.record.head_term.clone())
        } else if let (Some(epoch), Some(cert)) = (
            core.tenure.role().hosting_epoch(),
            core.tenure.hosted_cert(),
        ) {
            let head = self.ctx.key.sign_head(&self.room, epoch, through, &hash);
            (Some(head), Some(cert.clone()))
        } else {
            let noted = keeper
                .copy_head
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .filter(|(h, _)| h.seq == through && h.hash.as_slice() == hash.as_slice());
            match noted {
                Some((head, cert)) => (Some(head), Some(cert)),
                // Not vouched for by a head: left out when read back.
                None if start_over => (None, None),
                None => (saved.record.head.clone(), saved.record.head_term.clone()),
            }
        };
        let record = RoomRecord {
            room_id: room.room_id().to_string(),
            min_users: room.min_users(),
            activated: room.activated(),
            replica_term: core.replica_term,
            latest_term: core.tenure.latest_cert().cloned(),
            head,
            head_term,
            expired_seq: room.expired().map_or(0, |(seq, _)| seq),
            expired_hash: room.expired().map(|(_, h)| h.to_vec()).unwrap_or_default(),
        };
        if !start_over && entries.is_empty() && record == saved.record {
            return None;
        }
        let more = through < room.head_seq();
        let next = Saved {
            room_id: room.room_id().to_string(),
            seq: through,
            hash,
            record: record.clone(),
        };
        let write = CopyWrite {
            start_over,
            entries,
            hashes,
            record,
        };
        Some((write, next, more))
    }
}

/// Keeps the room's copy on disk for as long as the node is in the room:
/// writes whenever the log or a term changes (a replica's copies are also
/// written by the Replicate that brings them, before it is answered).
pub(crate) async fn keep_copy(host: Arc<RoomHost>, cancel: CancellationToken) {
    let Some(keeper) = &host.keeper else { return };
    let mut log_rx = host.log_tx.subscribe();
    loop {
        if let Err(error) = host.save_copy().await {
            tracing::error!(room = %host.room, %error, "this node's copy of the room is not on disk");
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = cancel.cancelled() => return,
            }
        }
        tokio::select! {
            _ = log_rx.changed() => {}
            _ = keeper.dirty.notified() => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// Checks a copy read from disk (see the module's description) a page at
/// a time and builds the room it holds.
fn restore(
    history: &RoomHistory,
    relay_key: &PublicKey,
    name: &str,
    record: RoomRecord,
) -> Result<Restored, String> {
    let verify_term = |cert: &HostTermCertificate| relay_key.verify_host_term(cert);
    if record.room_id.is_empty() {
        return Err("no room id".into());
    }
    let latest = record.latest_term.as_ref().and_then(|cert| {
        let term = verify_term(cert).ok()?;
        (term.room == name).then(|| (term.epoch, cert.clone()))
    });
    let head = match (&record.head, &record.head_term) {
        (Some(head), Some(cert)) => {
            let term = verify_term(cert).map_err(|e| e.to_string())?;
            if term.room != name {
                return Err(format!("a head signed for room {:?}", term.room));
            }
            let key = PublicKey::from_bytes(&term.public_key).map_err(|e| e.to_string())?;
            let hash = key
                .verify_head(name, head)
                .map_err(|e| format!("the head: {e}"))?;
            Some((head.seq, hash))
        }
        _ => None,
    };
    // Entries past the signed head are not vouched for.
    let through = head.map_or(0, |(seq, _)| seq);
    let mut room = Room::new(name, record.room_id.clone(), record.min_users);
    let meta = RoomMeta {
        room_id: record.room_id.clone(),
        min_users: record.min_users,
        activated: record.activated,
        same_members: true,
        ..Default::default()
    };
    // Retention dropped the entries through the checkpoint: the log goes
    // on from its hash (vouched for by the head the rest hashes to).
    if record.expired_seq > 0 {
        let hash = Digest::try_from(record.expired_hash.as_slice())
            .map_err(|_| "a checkpoint without its log hash")?;
        room.expire_through(record.expired_seq, hash);
    }
    let mut senders = Senders::default();
    while room.head_seq() < through {
        let page = history
            .read(room.head_seq() + 1, through, RESTORE_PAGE)
            .map_err(|e| e.to_string())?;
        if page.is_empty() {
            break;
        }
        let (entries, stored): (Vec<_>, Vec<_>) = page.into_iter().unzip();
        room.check_entries(&entries).map_err(|e| e.to_string())?;
        let messages: Vec<&ChatMessage> = entries
            .iter()
            .filter_map(|e| match &e.kind {
                Some(log_entry::Kind::Message(m)) => Some(m),
                _ => None,
            })
            .collect();
        let verdicts = senders.check_all(relay_key, name, &messages);
        for (m, verdict) in messages.iter().zip(verdicts) {
            verdict.map_err(|e| format!("entry {} from {:?}: {e}", m.seq, m.from))?;
        }
        let seqs: Vec<u64> = entries.iter().map(entry_seq).collect();
        room.apply_replica(meta.clone(), entries)
            .map_err(|e| e.to_string())?;
        // The log hashes the store lacks (or holds wrong) are written back.
        let mut repair = Vec::new();
        for (seq, stored) in seqs.iter().zip(stored) {
            let hash = room.hash_at(*seq).ok_or("an entry not held")?;
            if stored != Some(hash) {
                repair.push((*seq, hash));
            }
        }
        if !repair.is_empty() {
            history.put_hashes(&repair).map_err(|e| e.to_string())?;
        }
        room.mark_saved(room.head_seq(), room.head_hash());
    }
    if room.head_seq() != through {
        return Err(format!(
            "entries up to {} only, the head is at {through}",
            room.head_seq()
        ));
    }
    if let Some((at, hash)) = head {
        if room.head_hash() != hash {
            return Err(format!("the log does not hash to the head signed at {at}"));
        }
    }
    let saved = Saved {
        room_id: record.room_id.clone(),
        seq: through,
        hash: room.head_hash(),
        record: record.clone(),
    };
    Ok(Restored {
        room,
        replica_term: record.replica_term,
        latest,
        saved,
    })
}

#[cfg(test)]
mod tests;
