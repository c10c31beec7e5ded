//! `relay.v1.RelayService` over the registry: the state the handlers
//! share, and how changes of the rooms' host records reach the members'
//! watch streams.

use crate::admin::AdminGate;
use crate::config::RelayConfig;
use crate::refusal::Refusal;
use crate::registry::{ReachCheck, Registry};
use chat_proto::health_check::TlsCheck;
use chat_proto::pb::relay::{HostRecord, MemberRecord, NameGrant};
use chat_proto::tls::{self, Authority};
use chat_proto::trust::{Keypair, PublicKey};
use prost::Message;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

pub use rpc::{Relay, WatchStream};

mod durable;
mod fanout;
mod names;
mod rpc;
mod verify;
mod watch;

/// A room's new host record and who was in the room then, staged until
/// it is durable (`--store etcd`), then queued for those members' watch
/// streams.
#[derive(Debug)]
struct RoomChange {
    record: HostRecord,
    members: HashSet<String>,
}

/// State shared by the handlers. The mutex is never held across an `.await`.
pub struct Shared {
    registry: Mutex<Registry>,
    relay_key: PublicKey,
    admin: AdminGate,
    epochs: EpochFile,
    /// The names bound to keys, kept across restarts.
    names: names::NameFile,
    /// How many new identities each source may register.
    newcomers: crate::newcomers::NewcomerLimit,
    /// The watch streams' queues, to which each change of a room's host
    /// record goes (taken only with `registry` held, after it).
    watchers: Mutex<fanout::Watchers>,
    config: RelayConfig,
    closing: CancellationToken,
    /// Issues the nodes' TLS certificates (none when serving plaintext).
    authority: Option<Authority>,
    /// With a durable store: the write-through (none: memory, the
    /// changes are told at once).
    durable: Option<durable::Durable>,
}

impl Shared {
    /// Empty registry under `config`, signing with `key`; `authority`
    /// issues TLS certificates to the nodes (`None`: plaintext).
    pub fn new(config: RelayConfig, key: Keypair, authority: Option<Authority>) -> Arc<Self> {
        let epochs = EpochFile::open(config.data_dir.as_deref());
        let names = names::NameFile::open(config.data_dir.as_deref());
        Self::build(config, key, authority, epochs, names, None)
    }

    /// A registry restored from `snapshot` (the durable state at a
    /// takeover) that writes every durable change through to `store`
    /// before answering; [`Shared::commit_changes`] must run beside it.
    pub fn with_store(
        config: RelayConfig,
        key: Keypair,
        authority: Option<Authority>,
        snapshot: crate::store::Snapshot,
        store: Arc<dyn crate::store::Store>,
    ) -> Arc<Self> {
        let epochs = EpochFile::open(None);
        epochs.record(snapshot.highest_epoch);
        let names = names::NameFile::open(None);
        for (name, node_id) in &snapshot.names {
            names.record(name, node_id);
        }
        let durable = Some(durable::Durable::new(store));
        Self::build(config, key, authority, epochs, names, durable)
    }

    fn build(
        config: RelayConfig,
        key: Keypair,
        authority: Option<Authority>,
        epochs: EpochFile,
        names: names::NameFile,
        durable: Option<durable::Durable>,
    ) -> Arc<Self> {
        let relay_key = key.verifying();
        let mut registry = Registry::new(config.lease, key)
            .with_grant_ttl(config.certificate_ttl)
            .with_term_limit(config.term_limit())
            .with_room_limits(
                usize::try_from(config.max_rooms).unwrap_or(usize::MAX),
                usize::try_from(config.max_rooms_per_member).unwrap_or(usize::MAX),
            );
        registry.restore_epoch(epochs.last(), Instant::now());
        registry.reserve_names(names.bindings(), Instant::now() + config.member_grace);
        Arc::new(Self {
            registry: Mutex::new(registry),
            epochs,
            names,
            newcomers: crate::newcomers::NewcomerLimit::new(config.new_identities_per_minute),
            relay_key,
            admin: AdminGate::new(config.admin_secret.clone()),
            watchers: Mutex::default(),
            config,
            closing: CancellationToken::new(),
            authority,
            durable,
        })
    }

    /// Makes the staged changes durable and tells them, for as long as the
    /// relay leads; returns why it stopped (the relay is then fenced).
    pub async fn commit_changes(&self) -> crate::store::StoreError {
        match &self.durable {
            Some(durable) => {
                durable
                    .run(|change| {
                        let members = change.members.iter().map(String::as_str);
                        self.watchers().send(members, &Arc::new(change.record));
                    })
                    .await
            }
            None => std::future::pending().await,
        }
    }

    /// Stops answering at once (the leadership ended): calls waiting for
    /// their changes to be durable are refused, watch streams end.
    pub fn fence(&self) {
        if let Some(durable) = &self.durable {
            durable.fenced.cancel();
        }
        self.closing.cancel();
    }

    /// Waits until every change made so far is durable and told (at once
    /// without a durable store); refused when the relay stopped leading.
    pub(crate) async fn settled(&self) -> Result<(), Refusal> {
        match &self.durable {
            Some(durable) => durable.settled(durable.issued()).await,
            None => Ok(()),
        }
    }

    /// Keeps `name` bound to `node_id` (across restarts and takeovers).
    fn bind_name(&self, name: &str, node_id: &str) {
        self.names.record(name, node_id);
        if let Some(durable) = &self.durable {
            let epoch = self.epochs.last();
            durable.stage(Vec::new(), Vec::new(), epoch, Some((name, node_id)));
        }
    }

    /// The TLS certificate for a registrant's checked request and the
    /// authority's certificate, both DER; empty when serving plaintext
    /// (and no certificate without a request). The certificate expires
    /// with the member's name certificate.
    fn node_tls(
        &self,
        record: &MemberRecord,
        request: Option<tls::NodeRequest>,
    ) -> Result<(Vec<u8>, Vec<u8>), Refusal> {
        let Some(authority) = &self.authority else {
            return Ok(Default::default());
        };
        let certificate = match request {
            None => Vec::new(),
            Some(request) => {
                let expires = record
                    .certificate
                    .as_ref()
                    .and_then(|c| NameGrant::decode(c.grant.as_slice()).ok())
                    .map(|g| g.expires_at_unix_ms)
                    .ok_or_else(|| Refusal::Issuing("no name certificate to match".into()))?;
                authority
                    .issue_node(&request, &record.name, &record.node_id, expires)
                    .map_err(|e| Refusal::Issuing(e.to_string()))?
            }
        };
        Ok((certificate, authority.certificate_der().to_vec()))
    }

    /// Whether the relay knows the key of `node_id`: a member now, or
    /// bound to a name before (kept across restarts).
    fn knows_key(&self, node_id: &str) -> bool {
        self.registry().has_member(node_id) || self.names.knows(node_id)
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the registry half
        // updated (every method validates before mutating), so go on.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn watchers(&self) -> MutexGuard<'_, fanout::Watchers> {
        // Adding, removing or feeding a queue cannot be left half done.
        self.watchers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the registry and queues the host records that changed
    /// for the watch streams of each room's members. They are queued under
    /// the lock, so every watcher sees a room's records in the order they
    /// were made.
    fn update<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut registry = self.registry();
        let out = f(&mut registry);
        let (records, gone) = registry.take_changes_and_gone();
        match &self.durable {
            None if !records.is_empty() => {
                let watchers = self.watchers();
                for record in records {
                    let change = Arc::new(record);
                    watchers.send(registry.room_member_ids(&change.room), &change);
                }
            }
            None => {}
            Some(durable) => {
                let changes = records
                    .into_iter()
                    .map(|record| {
                        let members = registry.room_member_ids(&record.room);
                        let members = members.map(str::to_string).collect();
                        RoomChange { record, members }
                    })
                    .collect();
                durable.stage(changes, gone, registry.highest_epoch(), None);
            }
        }
        self.epochs.record(registry.highest_epoch());
        out
    }

    /// As [`Shared::update`], for a call that gives `node_id` a room's
    /// record (it joined the room): its watch streams get the record too,
    /// in order with the room's changes, so a watch opened before the join
    /// learns the room's host without another call.
    fn update_telling<E>(
        &self,
        node_id: &str,
        f: impl FnOnce(&mut Registry) -> Result<Option<HostRecord>, E>,
    ) -> Result<Option<HostRecord>, E> {
        self.update(|registry| {
            let record = f(registry)?;
            if let Some(record) = &record {
                match &self.durable {
                    None => self.watchers().send([node_id], &Arc::new(record.clone())),
                    Some(durable) => {
                        let members = HashSet::from([node_id.to_string()]);
                        let record = record.clone();
                        durable.tell(RoomChange { record, members });
                    }
                }
            }
            Ok(record)
        })
    }

    /// Opens a watch stream's queue for `node_id` and returns it with the
    /// current records of the node's rooms, taken together (under the
    /// lock) so that no change falls between; `check` runs first, under
    /// the same lock.
    fn watch_from_now<E>(
        &self,
        node_id: &str,
        check: impl FnOnce(&mut Registry) -> Result<(), E>,
    ) -> Result<(fanout::Subscription, Vec<HostRecord>), E> {
        self.update(|registry| {
            check(registry)?;
            let sub = self.watchers().subscribe(node_id);
            Ok((sub, registry.records_of(node_id)))
        })
    }

    /// After a watch stream fell behind: empties its queue and returns its
    /// rooms' current records, under the lock, so that no change falls
    /// between.
    fn catch_up(&self, sub: &mut fanout::Subscription) -> Vec<HostRecord> {
        let registry = self.registry();
        sub.catch_up();
        registry.records_of(&sub.node_id)
    }

    /// A watch stream ended: its queue is dropped, and the node counts as
    /// watching once less.
    fn watch_ended(&self, sub: &fanout::Subscription) {
        self.update(|registry| {
            self.watchers().unsubscribe(sub);
            registry.watch_ended(&sub.node_id, Instant::now());
        });
    }

    /// Ends every watch stream (the relay is stopping).
    pub fn close_watches(&self) {
        self.closing.cancel();
    }

    /// Promotes a successor in every room whose host's lease ran out,
    /// and gives new rooms their first host.
    pub fn check_lease(&self) {
        // Each promotion is logged by the registry, with why.
        for host in self.update(|r| r.check_lease(Instant::now())) {
            if !host.no_host_reason.is_empty() {
                tracing::warn!(room = %host.room, reason = %host.no_host_reason, "the room has no host");
            }
        }
    }

    /// The member addresses due for a reachability check (marked under way).
    pub fn due_checks(&self) -> Vec<ReachCheck> {
        self.registry().due_checks(Instant::now())
    }

    /// Takes a reachability check's result (which may make a host).
    pub fn record_check(&self, check: &ReachCheck, reached: bool) {
        self.update(|r| r.record_check(check, reached, Instant::now()));
    }

    /// How to check a member's address: over TLS with the relay's
    /// authority, expecting the member's certificate, when serving TLS.
    pub fn check_tls(&self, node_id: &str) -> Option<TlsCheck> {
        self.authority.as_ref().map(|authority| TlsCheck {
            ca_pem: authority.certificate_pem(),
            server_name: Some(tls::node_domain(node_id)),
        })
    }

    /// Forgets members silent for longer than the grace period.
    pub fn reap(&self) {
        let grace = self.config.member_grace;
        let gone = self.update(|r| r.reap(Instant::now(), grace));
        for name in gone {
            tracing::info!(%name, "member forgotten after its watch stream closed");
        }
    }
}

/// The highest epoch issued, kept in the data directory so that a
/// restarted relay never issues an epoch twice.
struct EpochFile {
    path: Option<std::path::PathBuf>,
    written: std::sync::atomic::AtomicU64,
}

impl EpochFile {
    fn open(dir: Option<&std::path::Path>) -> Self {
        let path = dir.map(|d| d.join("epoch"));
        let last = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        Self {
            path,
            written: last.into(),
        }
    }

    fn last(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes `epoch` if it is higher than the last written.
    fn record(&self, epoch: u64) {
        let previous = self
            .written
            .fetch_max(epoch, std::sync::atomic::Ordering::Relaxed);
        let Some(path) = &self.path else { return };
        if epoch > previous {
            if let Err(e) = std::fs::write(path, epoch.to_string()) {
                tracing::warn!(path = %path.display(), error = %e, "cannot record the epoch");
            }
        }
    }
}

#[cfg(test)]
mod tests;
