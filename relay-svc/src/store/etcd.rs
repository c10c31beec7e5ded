//! The relay's durable state in etcd, and the leadership that fences it.
//!
//! Keys, under the prefix (`--etcd-prefix`, `/chat-relay` by default):
//!
//! - `PREFIX/leader`: the leading instance's address, attached to its
//!   lease; created only if absent (a transaction), so one instance leads.
//! - `PREFIX/epoch`: the relay-wide epoch counter (decimal).
//! - `PREFIX/rooms/ROOM`: the room's current host record (protobuf
//!   `relay.v1.HostRecord`, relay-signed term included).
//! - `PREFIX/names/NAME`: the node id the name is bound to.
//!
//! Every commit is one transaction (a few when it is large) that compares
//! the leader key's creation revision with ours (fencing: an instance
//! that lost its lease writes nothing) and each written room's and the
//! counter's modification revision with the one we last read or wrote
//! (compare-and-set: of two writers exactly one wins).

use super::{Batch, Snapshot, StoreError};
use chat_proto::pb::relay::HostRecord;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use prost::Message;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Bound on each request to etcd.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Operations per transaction, at most (etcd refuses more than 128).
const MAX_TXN_OPS: usize = 100;

/// Connects to the etcd cluster at `endpoints` (`http://HOST:PORT`).
pub async fn connect(endpoints: &[String]) -> Result<Client, StoreError> {
    let options = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(1), REQUEST_TIMEOUT);
    Ok(Client::connect(endpoints, Some(options)).await?)
}

/// The keys of one relay's prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys under `prefix` (a trailing `/` is ignored).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }
    /// The leader key.
    pub fn leader(&self) -> String {
        format!("{}/leader", self.prefix)
    }
    fn epoch(&self) -> String {
        format!("{}/epoch", self.prefix)
    }
    fn rooms(&self) -> String {
        format!("{}/rooms/", self.prefix)
    }
    fn room(&self, room: &str) -> String {
        format!("{}{room}", self.rooms())
    }
    fn names(&self) -> String {
        format!("{}/names/", self.prefix)
    }
    fn name(&self, name: &str) -> String {
        format!("{}{name}", self.names())
    }
}

/// A lease-backed leadership won in etcd.
#[derive(Debug, Clone, Copy)]
pub struct Leadership {
    /// The lease the leader key is attached to.
    pub lease: i64,
    /// The leader key's creation revision: every write compares it.
    pub revision: i64,
    /// The lease's time to live.
    pub ttl: Duration,
    /// When the grant was asked for: the lease cannot have ended before
    /// this plus its time to live.
    pub granted_at: Instant,
}

/// The outcome of one campaign.
#[derive(Debug)]
pub enum Campaign {
    /// We lead.
    Won(Leadership),
    /// Another instance leads, at this address.
    Lost(String),
}

/// Tries once to become the leader under `keys`, as `me` (our address),
/// with a lease of `ttl` (whole seconds, at least 2).
pub async fn campaign(
    client: &Client,
    keys: &Keys,
    me: &str,
    ttl: Duration,
) -> Result<Campaign, StoreError> {
    let mut client = client.clone();
    let leader = keys.leader();
    if let Some(kv) = client.get(leader.as_str(), None).await?.kvs().first() {
        return Ok(Campaign::Lost(String::from_utf8_lossy(kv.value()).into()));
    }
    let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(2);
    let granted_at = Instant::now();
    let lease = client.lease_grant(seconds, None).await?;
    let put = PutOptions::new().with_lease(lease.id());
    let txn = Txn::new()
        .when([Compare::create_revision(
            leader.as_str(),
            CompareOp::Equal,
            0,
        )])
        .and_then([TxnOp::put(leader.as_str(), me, Some(put))])
        .or_else([TxnOp::get(leader.as_str(), None)]);
    let resp = client.txn(txn).await?;
    if resp.succeeded() {
        let revision = resp.header().map_or(0, |h| h.revision());
        return Ok(Campaign::Won(Leadership {
            lease: lease.id(),
            revision,
            ttl: Duration::from_secs(u64::try_from(lease.ttl()).unwrap_or(0)),
            granted_at,
        }));
    }
    // Somebody won in between: give our lease back (it would expire anyway).
    let _ = client.lease_revoke(lease.id()).await;
    let holder = resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
        _ => None,
    });
    Ok(Campaign::Lost(holder.unwrap_or_default()))
}

/// Keeps `leadership`'s lease alive (one keep-alive request a third of
/// the time to live) and returns when it may have ended: a keep-alive
/// answered with no time left, or none answered before the lease could
/// run out by our own clock. etcd may keep a lease longer than its time
/// to live, never shorter: stopping at our deadline is safe.
pub async fn keep_leading(client: &Client, leadership: Leadership) -> StoreError {
    let mut client = client.clone();
    let mut valid_until = leadership.granted_at + leadership.ttl;
    let period = leadership.ttl / 3;
    let mut keeper = None;
    loop {
        let sent = Instant::now();
        let renewed = tokio::time::timeout_at(valid_until, async {
            if keeper.is_none() {
                keeper = Some(client.lease_keep_alive(leadership.lease).await?);
            }
            let Some((keeper, stream)) = keeper.as_mut() else {
                return Ok(None);
            };
            keeper.keep_alive().await?;
            stream.message().await
        })
        .await;
        match renewed {
            Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                let ttl = Duration::from_secs(u64::try_from(resp.ttl()).unwrap_or(0));
                valid_until = sent + ttl;
            }
            Ok(Ok(Some(_))) => return StoreError::Conflict("the leader lease expired"),
            Ok(Ok(None)) | Ok(Err(_)) => {
                // The stream broke (an etcd member went away): open
                // another while the lease may still be ours.
                keeper = None;
                tokio::time::sleep(Duration::from_millis(100).min(period)).await;
                continue;
            }
            Err(_) => return StoreError::Fenced,
        }
        tokio::time::sleep_until((sent + period).min(valid_until)).await;
    }
}

/// Gives the leadership up at once (a clean stop): a standby need not
/// wait for the lease to run out.
pub async fn resign(client: &Client, leadership: Leadership) {
    let _ = client.clone().lease_revoke(leadership.lease).await;
}

/// The revisions last read or written, for the compares.
#[derive(Debug, Default)]
struct Revisions {
    epoch: u64,
    epoch_revision: i64,
    rooms: HashMap<String, i64>,
}

/// The relay's durable state in etcd, written under a leadership.
pub struct EtcdStore {
    client: Client,
    keys: Keys,
    /// The leader key's creation revision (fencing).
    leader_revision: i64,
    revisions: Mutex<Revisions>,
}

impl EtcdStore {
    /// The store of the relay under `keys`, writing while the leader key
    /// was created at `leader_revision`.
    pub fn new(client: Client, keys: Keys, leader_revision: i64) -> Self {
        Self {
            client,
            keys,
            leader_revision,
            revisions: Mutex::new(Revisions::default()),
        }
    }

    fn revisions(&self) -> std::sync::MutexGuard<'_, Revisions> {
        self.revisions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the durable state back (at takeover) and remembers the
    /// revisions the next writes compare with.
    pub async fn load(&self) -> Result<Snapshot, StoreError> {
        let mut client = self.client.clone();
        let mut snapshot = Snapshot::default();
        let mut revisions = Revisions::default();
        let epoch = client.get(self.keys.epoch(), None).await?;
        if let Some(kv) = epoch.kvs().first() {
            let text = String::from_utf8_lossy(kv.value());
            revisions.epoch = text
                .trim()
                .parse()
                .map_err(|_| StoreError::Corrupt(self.keys.epoch()))?;
            revisions.epoch_revision = kv.mod_revision();
        }
        let prefix = Some(GetOptions::new().with_prefix());
        let rooms = client.get(self.keys.rooms(), prefix.clone()).await?;
        for kv in rooms.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let record =
                HostRecord::decode(kv.value()).map_err(|_| StoreError::Corrupt(key.clone()))?;
            let room = key.trim_start_matches(&self.keys.rooms()).to_string();
            revisions.rooms.insert(room, kv.mod_revision());
            snapshot.terms.push(record);
        }
        let names = client.get(self.keys.names(), prefix).await?;
        for kv in names.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let name = key.trim_start_matches(&self.keys.names()).to_string();
            snapshot
                .names
                .push((name, String::from_utf8_lossy(kv.value()).into_owned()));
        }
        let highest_term = snapshot.terms.iter().map(|t| t.epoch).max().unwrap_or(0);
        snapshot.highest_epoch = revisions.epoch.max(highest_term);
        *self.revisions() = revisions;
        Ok(snapshot)
    }

    /// One transaction of `ops` under `compares` and the fencing compare;
    /// the revision it was committed at.
    async fn commit_txn(
        &self,
        mut compares: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<i64, StoreError> {
        compares.push(Compare::create_revision(
            self.keys.leader(),
            CompareOp::Equal,
            self.leader_revision,
        ));
        let txn = Txn::new().when(compares).and_then(ops);
        let resp = self.client.clone().txn(txn).await?;
        if !resp.succeeded() {
            return Err(StoreError::Conflict("the leader key or a stored revision"));
        }
        Ok(resp.header().map_or(0, |h| h.revision()))
    }
}

/// One write of a commit: its compare (if any) and its operation.
struct Write {
    compare: Option<Compare>,
    op: TxnOp,
    /// The room it writes (to note its new revision), if any.
    room: Option<(String, bool)>,
}

#[tonic::async_trait]
impl super::Store for EtcdStore {
    async fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let (epoch_write, writes) = {
            let revisions = self.revisions();
            let epoch_write = (batch.highest_epoch > revisions.epoch).then(|| Write {
                compare: Some(Compare::mod_revision(
                    self.keys.epoch(),
                    CompareOp::Equal,
                    revisions.epoch_revision,
                )),
                op: TxnOp::put(self.keys.epoch(), batch.highest_epoch.to_string(), None),
                room: None,
            });
            let rooms = batch.terms.iter().map(|(room, record)| {
                let key = self.keys.room(room);
                let seen = revisions.rooms.get(room).copied().unwrap_or(0);
                Write {
                    compare: Some(Compare::mod_revision(key.as_str(), CompareOp::Equal, seen)),
                    op: match record {
                        Some(record) => TxnOp::put(key, record.encode_to_vec(), None),
                        None => TxnOp::delete(key, None),
                    },
                    room: Some((room.clone(), record.is_some())),
                }
            });
            let names = batch.names.iter().map(|(name, node_id)| Write {
                compare: None,
                op: TxnOp::put(self.keys.name(name), node_id.as_str(), None),
                room: None,
            });
            (epoch_write, rooms.chain(names).collect::<Vec<_>>())
        };
        let wrote_epoch = epoch_write.is_some();
        let mut writes = epoch_write.into_iter().chain(writes).peekable();
        let mut first_revision = None;
        while writes.peek().is_some() {
            let chunk: Vec<Write> = writes.by_ref().take(MAX_TXN_OPS).collect();
            let compares = chunk.iter().filter_map(|w| w.compare.clone()).collect();
            let rooms: Vec<(String, bool)> = chunk.iter().filter_map(|w| w.room.clone()).collect();
            let ops = chunk.into_iter().map(|w| w.op).collect();
            let revision = self.commit_txn(compares, ops).await?;
            first_revision.get_or_insert(revision);
            let mut revisions = self.revisions();
            for (room, kept) in rooms {
                match kept {
                    true => revisions.rooms.insert(room, revision),
                    false => revisions.rooms.remove(&room),
                };
            }
        }
        if let (true, Some(revision)) = (wrote_epoch, first_revision) {
            // The counter was written by the first transaction.
            let mut revisions = self.revisions();
            revisions.epoch = batch.highest_epoch;
            revisions.epoch_revision = revision;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
