//! The room's log read back from this node's disk, for readers behind the
//! room's memory tail (see [`super::room::MEMORY_TAIL`]): a late joiner, a
//! client resuming far behind, a successor far behind. A page at a time,
//! off the async runtime (`spawn_blocking`), each entry checked against
//! the log hash stored with it, chained from the one before: a page that
//! does not chain is refused, never served. Receivers check the rest as
//! they check any history (signatures, sender chains, the signed heads).

use super::fencing::MAX_REPLICATED_ENTRIES;
use super::room::{entry_epoch, entry_seq};
use super::successor::ReplicaCursor;
use super::RoomHost;
use crate::error::NodeError;
use crate::history::RoomHistory;
use chat_proto::chain::{self, Digest};
use chat_proto::pb::chat::chat_service_client::ChatServiceClient;
use chat_proto::pb::chat::{log_entry, LogEntry, ReplicateBody};
use chat_proto::pb::relay::CopyPermit;
use tonic::transport::Channel;
use tonic::Status;

/// Entries read from the store per page for a session.
pub(crate) const DISK_PAGE: usize = 512;

/// The next Replicate for a replica.
pub(crate) enum Chunk {
    /// This body, the host's head, and the member list's version.
    Ready(Box<ReplicateBody>, u64, u64),
    /// Its entries are on disk only: after `after`, through `through`.
    OnDisk { after: u64, through: u64 },
}

impl RoomHost {
    /// Up to `max` entries after `after` through `through`, read from this
    /// node's store and checked, each with its log hash.
    pub(crate) async fn read_stored(
        &self,
        after: u64,
        through: u64,
        max: usize,
    ) -> Result<Vec<(LogEntry, Digest)>, NodeError> {
        let Some(keeper) = &self.keeper else {
            return Err(NodeError::CopyUnreadable("this node keeps no copy".into()));
        };
        let (history, room) = (keeper.history.clone(), self.room.clone());
        tokio::task::spawn_blocking(move || read_checked(&history, &room, after, through, max))
            .await
            .map_err(|e| NodeError::CopyUnreadable(e.to_string()))?
    }

    /// The epoch and log hash of the entry at `seq` as this node's store
    /// holds it (since the last reset), for when memory no longer does: it
    /// may leave memory at any moment once it is on disk, so callers look
    /// in memory first and fall back on this. `None` if not on disk.
    pub(crate) async fn stored_at(&self, seq: u64) -> Option<(u64, Digest)> {
        let on_disk = {
            let core = self.core();
            let room = core.room.as_ref()?;
            seq > 0 && seq >= room.reset_seq()
        } && self.keeper.is_some()
            && seq <= self.saved_through();
        if !on_disk {
            return None;
        }
        let read = self.read_stored(seq - 1, seq, 1).await.ok()?;
        let (entry, hash) = read.into_iter().find(|(e, _)| entry_seq(e) == seq)?;
        Some((entry_epoch(&entry), hash))
    }
}

impl RoomHost {
    /// The Replicate body after `have` whose entries (after `after`
    /// through `through`) only the disk holds: as
    /// [`RoomHost::next_chunk`], a chunk read from the store.
    pub(super) async fn stored_chunk(
        &self,
        epoch: u64,
        have: u64,
        cursor: &ReplicaCursor,
        after: u64,
        through: u64,
    ) -> Result<(ReplicateBody, u64, u64), Status> {
        let page = self
            .read_stored(after, through, MAX_REPLICATED_ENTRIES)
            .await?;
        let Some(head) = page.last().map(|(last, hash)| (entry_seq(last), *hash)) else {
            return Err(NodeError::CopyUnreadable("entries no longer held".into()).into());
        };
        let core = self.core();
        if core.tenure.role().hosting_epoch() != Some(epoch) {
            return Err(NodeError::NoLongerHosting.into());
        }
        let room = core.room.as_ref().ok_or(NodeError::NoRoom)?;
        let members = room.members_version();
        let body = ReplicateBody {
            counter: 0,
            // base_seq 0 makes the receiver start over: it needs the list.
            meta: Some(room.meta(have == 0 || cursor.members != Some(members))),
            entries: page.into_iter().map(|(entry, _)| entry).collect(),
            base_seq: have,
            head: Some(self.ctx.key.sign_head(&self.room, epoch, head.0, &head.1)),
        };
        Ok((body, room.head_seq(), members))
    }

    /// Asks `peer` what its replica holds; returns the sequence number up
    /// to which its log is ours (0: resend it all).
    pub(super) async fn probe_replica(
        &self,
        peer: &mut ChatServiceClient<Channel>,
        epoch: u64,
        permit: &CopyPermit,
    ) -> Result<u64, Status> {
        let probe = self
            .send_replicate(peer, epoch, ReplicateBody::default(), permit)
            .await?;
        // Where only the disk still holds the replica's head.
        let stored = self.stored_at(probe.have_seq).await;
        let core = self.core();
        let room = core.room.as_ref().ok_or(NodeError::NoRoom)?;
        let held = room
            .epoch_at(probe.have_seq)
            .zip(room.hash_at(probe.have_seq));
        // Its log is ours up to `have_seq` only if it hashes the same
        // there; otherwise resend it all.
        let same = probe.room_id == room.room_id()
            && held.or(stored).is_some_and(|(epoch, hash)| {
                epoch == probe.have_epoch && hash.as_slice() == probe.have_hash.as_slice()
            });
        Ok(if same { probe.have_seq } else { 0 })
    }
}

/// Reads entries after `after` through `through` (at most `max`) and
/// checks that each extends the log hash before it to the one stored with
/// it, starting from the hash stored at `after` (or a reset).
fn read_checked(
    history: &RoomHistory,
    room: &str,
    after: u64,
    through: u64,
    max: usize,
) -> Result<Vec<(LogEntry, Digest)>, NodeError> {
    let bad = |why: String| NodeError::CopyUnreadable(why);
    // The entry at `after` too, for the log hash the page starts from.
    let rows = history
        .read(after.max(1), through, max.saturating_add(1))
        .map_err(|e| bad(e.to_string()))?;
    let mut previous = (after == 0).then_some((0, chain::GENESIS));
    let mut out = Vec::with_capacity(rows.len());
    for (entry, stored) in rows {
        let seq = entry_seq(&entry);
        if seq == after && after > 0 {
            previous = stored.map(|hash| (seq, hash));
            continue;
        }
        let reset = matches!(entry.kind, Some(log_entry::Kind::Reset(_)));
        let hash = match previous {
            _ if reset => chain::extend(room, &chain::GENESIS, &entry),
            Some((at, hash)) if seq == at + 1 => chain::extend(room, &hash, &entry),
            _ => None,
        };
        let hash = hash.ok_or_else(|| bad(format!("entry {seq} on disk does not follow")))?;
        if stored != Some(hash) {
            return Err(bad(format!(
                "entry {seq} on disk does not match its log hash"
            )));
        }
        previous = Some((seq, hash));
        out.push((entry, hash));
    }
    Ok(out)
}
