//! Where the relay's durable state goes. The registry stays the relay's
//! working state in memory; a [`Store`] receives what must survive the
//! process, in order, before the relay answers or tells anyone:
//!
//! - the relay-wide epoch counter (no term is ever issued twice),
//! - each room's current host record (its term), written by
//!   compare-and-set on the room's stored revision,
//! - the name bindings (a name stays with its key across a takeover).
//!
//! [`MemoryStore`] keeps nothing (a lone relay: its data directory holds
//! the epoch and the names, as before); [`etcd::EtcdStore`] writes to etcd
//! under the leader's fencing (see `crate::leader`).

use chat_proto::pb::relay::HostRecord;
use std::collections::BTreeMap;

pub mod etcd;
#[cfg(any(test, feature = "test-util"))]
pub mod etcd_server;

/// Durable changes made since the last commit, merged: a room's newest
/// record replaces the one before.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// The highest epoch issued or seen so far.
    pub highest_epoch: u64,
    /// Each changed room's record (`None`: the room was forgotten).
    pub terms: BTreeMap<String, Option<HostRecord>>,
    /// Name -> node id bindings made.
    pub names: BTreeMap<String, String>,
}

impl Batch {
    /// Whether nothing but (possibly) the epoch is in it.
    pub fn has_no_records(&self) -> bool {
        self.terms.is_empty() && self.names.is_empty()
    }
}

/// What a new leader reads back: the durable state at takeover.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The highest epoch ever issued (the counter, or a stored term's).
    pub highest_epoch: u64,
    /// Name -> node id bindings.
    pub names: Vec<(String, String)>,
    /// The rooms' last host records.
    pub terms: Vec<HostRecord>,
}

/// Why a commit failed. Any failure ends the leadership: the relay then
/// cannot know what is durable, and stops answering.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare failed: another instance leads now, or wrote a room's
    /// term or the epoch counter since we read it.
    #[error("lost a compare-and-set ({0}): another relay instance leads or wrote first")]
    Conflict(&'static str),
    /// etcd could not be reached or refused the request.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// A stored value that does not parse.
    #[error("unreadable value at etcd key {0}")]
    Corrupt(String),
    /// The relay stopped leading before the commit.
    #[error("no longer the leader")]
    Fenced,
}

/// Persistence of the relay's durable state.
#[tonic::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Makes `batch` durable, or fails without telling what was kept.
    async fn commit(&self, batch: &Batch) -> Result<(), StoreError>;
}

/// Keeps nothing: the relay's state lives and dies with the process.
#[derive(Debug, Default)]
pub struct MemoryStore;

#[tonic::async_trait]
impl Store for MemoryStore {
    async fn commit(&self, _batch: &Batch) -> Result<(), StoreError> {
        Ok(())
    }
}
