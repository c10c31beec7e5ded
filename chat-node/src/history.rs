//! This node's copy of every room it is in, on disk: an embedded,
//! crash-safe store (redb) in the data directory, one file per user
//! (`NAME.history`, beside `NAME.key`).
//!
//! The store knows nothing of chains or signatures: it keeps, per room,
//! the encoded log entries by sequence number, the log hash its writer
//! gave with each (opaque bytes here), and one record (the room's
//! settings, the term its copy follows, the newest term known and the
//! signed head its entries reach). What is read back is checked by the
//! room's host side before anything of it is held or served
//! (`host/keep.rs`, `host/stored.rs`). Reads are blocking: callers on the
//! async runtime run them with `spawn_blocking`, a page at a time.
//!
//! Writes go to one writer thread through a bounded queue; it applies
//! every write waiting in one transaction and commits it durably (fsync)
//! before it answers any of them, so a caller that was answered has its
//! entries on disk, whatever happens to the process next.

use chat_proto::pb::chat::{log_entry, LogEntry, SignedHead};
use chat_proto::pb::relay::HostTermCertificate;
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// Log entries by (room, sequence number).
const ENTRIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("entries");
/// The log hash after each entry, by (room, sequence number).
const HASHES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("hashes");
/// One [`RoomRecord`] per room.
const ROOMS: TableDefinition<&str, &[u8]> = TableDefinition::new("rooms");

/// Writes waiting for the writer at most: a caller waits for room in the
/// queue rather than the queue growing.
const QUEUE: usize = 64;
/// Writes the writer puts in one transaction at most.
const WRITES_PER_COMMIT: usize = 64;
/// The store's page cache at most (redb's default is 1 GiB, which reading
/// a long history back would fill): bounded like the rooms' memory tails.
const CACHE_BYTES: usize = 16 << 20;
/// Entries one write may carry at most (callers split larger ones).
pub const MAX_ENTRIES_PER_WRITE: usize = 512;

/// Why the store could not be opened, read or written.
#[derive(Debug, Error)]
pub enum HistoryError {
    /// The store cannot be opened or created where it should be.
    #[error(
        "cannot open the history store {}: {reason}; check that the data directory \
         is writable (--data-dir)",
        path.display()
    )]
    Unwritable {
        /// The store's file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file is there but is not a readable store.
    #[error(
        "the history store {} is damaged ({reason}); move it aside to start with an \
         empty history (each room's copy is then fetched again from its host)",
        path.display()
    )]
    Corrupt {
        /// The store's file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A read or a write failed.
    #[error("the history store: {0}")]
    Io(String),
    /// The writer has stopped (the node is stopping).
    #[error("the history store is closed")]
    Closed,
}

/// What the store keeps of a room besides its entries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RoomRecord {
    /// The room's incarnation (a copy of another is not this one).
    #[prost(string, tag = "1")]
    pub room_id: String,
    /// Members needed to activate.
    #[prost(uint32, tag = "2")]
    pub min_users: u32,
    /// Whether the chat was active.
    #[prost(bool, tag = "3")]
    pub activated: bool,
    /// The host term whose log the copy follows.
    #[prost(uint64, tag = "4")]
    pub replica_term: u64,
    /// The newest host term of the room known.
    #[prost(message, optional, tag = "5")]
    pub latest_term: Option<HostTermCertificate>,
    /// The head the entries reach, signed by the host of `head_term`.
    #[prost(message, optional, tag = "6")]
    pub head: Option<SignedHead>,
    /// The term whose host signed `head`.
    #[prost(message, optional, tag = "7")]
    pub head_term: Option<HostTermCertificate>,
    /// Retention: the last entry dropped (0: none); the store holds no
    /// entry up to it. The copy goes on from `expired_hash`, its log hash.
    #[prost(uint64, tag = "8")]
    pub expired_seq: u64,
    /// The log hash after entry `expired_seq` (the checkpoint).
    #[prost(bytes = "vec", tag = "9")]
    pub expired_hash: Vec<u8>,
}

/// A room's copy as read from disk (not yet checked).
#[derive(Debug, Default)]
pub struct StoredCopy {
    /// Its record.
    pub record: RoomRecord,
    /// Its entries in sequence order.
    pub entries: Vec<LogEntry>,
}

/// An entry read back, with the log hash stored with it (if any).
pub type StoredEntry = (LogEntry, Option<[u8; 32]>);

/// One write of a room's copy.
#[derive(Debug, Default)]
pub struct CopyWrite {
    /// Drop every entry held before writing these (another incarnation,
    /// or a log that diverged from what was written).
    pub start_over: bool,
    /// Entries to add (at most [`MAX_ENTRIES_PER_WRITE`]); a reset among
    /// them drops every entry before it.
    pub entries: Vec<LogEntry>,
    /// The log hash after each of `entries`, in order (may be shorter:
    /// the entries beyond have none stored).
    pub hashes: Vec<[u8; 32]>,
    /// The room's record from now on; every entry up to its
    /// `expired_seq` is dropped.
    pub record: RoomRecord,
}

enum Change {
    Write(Box<CopyWrite>),
    Forget,
}

struct Job {
    room: String,
    change: Change,
    done: oneshot::Sender<Result<(), String>>,
}

/// The node's store: reads at start, writes through the writer thread.
#[derive(Debug)]
pub struct History {
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("room", &self.room).finish()
    }
}

/// Where the store of user `name` is kept in `dir`.
pub fn store_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.history"))
}

impl History {
    /// Opens (or creates) the store of user `name` in `dir` and starts its
    /// writer. A file that is not a readable store, or a directory where
    /// the store cannot be written, is an error that says so.
    pub fn open(dir: &Path, name: &str) -> Result<Arc<History>, HistoryError> {
        let path = store_path(dir, name);
        let unwritable = |reason: String| HistoryError::Unwritable {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| unwritable(e.to_string()))?;
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| open_error(&path, e))?;
        // Make sure both tables exist, and that the file takes a write.
        let txn = db.begin_write().map_err(|e| unwritable(e.to_string()))?;
        let corrupt = |e: redb::TableError| HistoryError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        };
        txn.open_table(ENTRIES).map_err(corrupt)?;
        txn.open_table(HASHES).map_err(corrupt)?;
        txn.open_table(ROOMS).map_err(corrupt)?;
        txn.commit().map_err(|e| unwritable(e.to_string()))?;
        let db = Arc::new(db);
        let (jobs, queue) = mpsc::channel(QUEUE);
        let writer = db.clone();
        std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || write_loop(&writer, queue))
            .map_err(|e| unwritable(e.to_string()))?;
        Ok(Arc::new(History { db, jobs }))
    }

    /// The handle of one room's copy.
    pub fn room(self: &Arc<Self>, room: &str) -> RoomHistory {
        RoomHistory {
            store: self.clone(),
            room: room.to_string(),
        }
    }
}

/// Why `Database::create` failed, in the store's words.
fn open_error(path: &Path, e: redb::DatabaseError) -> HistoryError {
    let reason = e.to_string();
    let corrupt = match &e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => true,
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            io.kind() == std::io::ErrorKind::InvalidData
        }
        redb::DatabaseError::UpgradeRequired(_) => true,
        _ => false,
    };
    if corrupt {
        HistoryError::Corrupt {
            path: path.to_path_buf(),
            reason,
        }
    } else {
        HistoryError::Unwritable {
            path: path.to_path_buf(),
            reason,
        }
    }
}

/// One room's copy in the store: the only handle the room's host side has.
#[derive(Debug, Clone)]
pub struct RoomHistory {
    store: Arc<History>,
    room: String,
}

impl RoomHistory {
    /// The room's copy as kept, `None` if there is none. Entries that do
    /// not decode are an error (the caller drops the copy).
    pub fn load(&self) -> Result<Option<StoredCopy>, HistoryError> {
        let io = |e: &dyn std::fmt::Display| HistoryError::Io(e.to_string());
        let txn = self.store.db.begin_read().map_err(|e| io(&e))?;
        let rooms = txn.open_table(ROOMS).map_err(|e| io(&e))?;
        let Some(record) = rooms.get(self.room.as_str()).map_err(|e| io(&e))? else {
            return Ok(None);
        };
        let record = RoomRecord::decode(record.value()).map_err(|e| io(&e))?;
        let entries = txn.open_table(ENTRIES).map_err(|e| io(&e))?;
        let range = (self.room.as_str(), 0)..=(self.room.as_str(), u64::MAX);
        let mut copy = StoredCopy {
            record,
            entries: Vec::new(),
        };
        for item in entries.range(range).map_err(|e| io(&e))? {
            let (_, value) = item.map_err(|e| io(&e))?;
            copy.entries
                .push(LogEntry::decode(value.value()).map_err(|e| io(&e))?);
        }
        Ok(Some(copy))
    }

    /// The room's record, `None` if the store has no copy of the room.
    pub fn record(&self) -> Result<Option<RoomRecord>, HistoryError> {
        let io = |e: &dyn std::fmt::Display| HistoryError::Io(e.to_string());
        let txn = self.store.db.begin_read().map_err(|e| io(&e))?;
        let rooms = txn.open_table(ROOMS).map_err(|e| io(&e))?;
        let Some(record) = rooms.get(self.room.as_str()).map_err(|e| io(&e))? else {
            return Ok(None);
        };
        RoomRecord::decode(record.value())
            .map(Some)
            .map_err(|e| io(&e))
    }

    /// Up to `max` entries from sequence number `from` through `through`,
    /// in order, each with the log hash stored with it (if any). Blocking.
    pub fn read(
        &self,
        from: u64,
        through: u64,
        max: usize,
    ) -> Result<Vec<StoredEntry>, HistoryError> {
        let io = |e: &dyn std::fmt::Display| HistoryError::Io(e.to_string());
        if from > through || max == 0 {
            return Ok(Vec::new());
        }
        let txn = self.store.db.begin_read().map_err(|e| io(&e))?;
        let entries = txn.open_table(ENTRIES).map_err(|e| io(&e))?;
        let hashes = txn.open_table(HASHES).map_err(|e| io(&e))?;
        let room = self.room.as_str();
        let mut out = Vec::new();
        for item in entries
            .range((room, from)..=(room, through))
            .map_err(|e| io(&e))?
            .take(max)
        {
            let (key, value) = item.map_err(|e| io(&e))?;
            let entry = LogEntry::decode(value.value()).map_err(|e| io(&e))?;
            let hash = hashes
                .get((room, key.value().1))
                .map_err(|e| io(&e))?
                .and_then(|h| <[u8; 32]>::try_from(h.value()).ok());
            out.push((entry, hash));
        }
        Ok(out)
    }

    /// Stores the log hashes of entries already held (a store written
    /// before hashes were kept, or whose hashes did not check out), by
    /// sequence number. Blocking; one durable transaction.
    pub fn put_hashes(&self, hashes: &[(u64, [u8; 32])]) -> Result<(), HistoryError> {
        let io = |e: &dyn std::fmt::Display| HistoryError::Io(e.to_string());
        let txn = self.store.db.begin_write().map_err(|e| io(&e))?;
        {
            let mut table = txn.open_table(HASHES).map_err(|e| io(&e))?;
            for (seq, hash) in hashes {
                table
                    .insert((self.room.as_str(), *seq), hash.as_slice())
                    .map_err(|e| io(&e))?;
            }
        }
        txn.commit().map_err(|e| io(&e))
    }

    /// Writes `write` and waits until it is on disk.
    pub async fn write(&self, write: CopyWrite) -> Result<(), HistoryError> {
        self.submit(Change::Write(Box::new(write))).await
    }

    /// Drops the room's copy (the node left the room for good).
    pub async fn forget(&self) -> Result<(), HistoryError> {
        self.submit(Change::Forget).await
    }

    async fn submit(&self, change: Change) -> Result<(), HistoryError> {
        let (done, answer) = oneshot::channel();
        let job = Job {
            room: self.room.clone(),
            change,
            done,
        };
        self.store
            .jobs
            .send(job)
            .await
            .map_err(|_| HistoryError::Closed)?;
        answer
            .await
            .map_err(|_| HistoryError::Closed)?
            .map_err(HistoryError::Io)
    }
}

/// The writer: takes every write waiting (up to [`WRITES_PER_COMMIT`]),
/// applies them in one transaction, commits it durably, then answers them
/// all. Ends when every handle is gone.
fn write_loop(db: &Database, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < WRITES_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let result = apply(db, &batch).map_err(|e| {
            tracing::error!(error = %e, "could not write the history store");
            e
        });
        for job in batch {
            let _ = job.done.send(result.clone());
        }
    }
}

type Table<'t> = redb::Table<'t, (&'static str, u64), &'static [u8]>;

/// Drops `room`'s rows of `table` before sequence number `before`.
fn drop_rows(table: &mut Table, room: &str, before: u64) -> Result<(), String> {
    table
        .retain_in((room, 0)..(room, before), |_, _| false)
        .map_err(|e| e.to_string())
}

/// Applies `batch` in one durable transaction.
fn apply(db: &Database, batch: &[Job]) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut entries = txn.open_table(ENTRIES).map_err(|e| e.to_string())?;
        let mut hashes = txn.open_table(HASHES).map_err(|e| e.to_string())?;
        let mut rooms = txn.open_table(ROOMS).map_err(|e| e.to_string())?;
        for job in batch {
            let room = job.room.as_str();
            let drop_before = |entries: &mut Table, hashes: &mut Table, before: u64| {
                drop_rows(entries, room, before)?;
                drop_rows(hashes, room, before)
            };
            match &job.change {
                Change::Forget => {
                    drop_before(&mut entries, &mut hashes, u64::MAX)?;
                    rooms.remove(room).map_err(|e| e.to_string())?;
                }
                Change::Write(write) => {
                    if write.start_over {
                        drop_before(&mut entries, &mut hashes, u64::MAX)?;
                    }
                    for (i, entry) in write.entries.iter().enumerate() {
                        let (seq, reset) = match &entry.kind {
                            Some(log_entry::Kind::Message(m)) => (m.seq, false),
                            Some(log_entry::Kind::Reset(r)) => (r.seq, true),
                            None => continue,
                        };
                        if reset {
                            drop_before(&mut entries, &mut hashes, seq)?;
                        }
                        let bytes = entry.encode_to_vec();
                        entries
                            .insert((room, seq), bytes.as_slice())
                            .map_err(|e| e.to_string())?;
                        match write.hashes.get(i) {
                            Some(hash) => hashes.insert((room, seq), hash.as_slice()),
                            None => hashes.remove((room, seq)),
                        }
                        .map_err(|e| e.to_string())?;
                    }
                    if write.record.expired_seq > 0 {
                        let before = write.record.expired_seq.saturating_add(1);
                        drop_before(&mut entries, &mut hashes, before)?;
                    }
                    let record = write.record.encode_to_vec();
                    rooms
                        .insert(room, record.as_slice())
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
