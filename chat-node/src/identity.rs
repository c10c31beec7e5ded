//! What a node keeps about who it is and whom it trusts: its key per chat
//! name (and its TLS key beside it), the relay key it pinned on first
//! contact, and its last name certificate. On disk in the node's data directory, or in memory for
//! in-process nodes that need no persistence.

use chat_proto::pb::relay::NameCertificate;
use chat_proto::tls::{TlsError, TlsKey};
use chat_proto::trust::{hex, Keypair, PublicKey};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use thiserror::Error;

/// Why the node's identity could not be set up.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// A file of the data directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The relay presents another key than the one pinned.
    #[error(
        "the relay at {uri} presents key {got}, but key {pinned} was pinned for it in {}; \
         if the relay's key was changed on purpose, run once with --accept-relay-key \
         (or delete that line)",
        file.display()
    )]
    RelayKeyChanged {
        /// The relay.
        uri: String,
        /// Pinned key (hex).
        pinned: String,
        /// Presented key (hex).
        got: String,
        /// The pin file.
        file: PathBuf,
    },
    /// The node's TLS key could not be read, made or kept.
    #[error("the node's TLS key: {0}")]
    TlsKey(#[from] TlsError),
    /// The relay sent no valid key.
    #[error("the relay sent no valid public key")]
    BadRelayKey,
    /// Another node runs as this user on this data directory (both would
    /// run under one key).
    #[error(
        "{name:?} already runs on the data directory {} ({holder}); \
         stop it, or give this node its own --data-dir",
        dir.display()
    )]
    NameInUse {
        /// The user.
        name: String,
        /// The data directory.
        dir: PathBuf,
        /// Who holds it, as it wrote in the lock file.
        holder: String,
    },
}

/// The extension of a TLS key's file, beside the identity key's.
const TLS_KEY_EXTENSION: &str = "tls-key";

/// Where a node keeps its identity.
#[derive(Debug)]
pub struct NodeStore {
    dir: Option<PathBuf>,
    key_file: Option<PathBuf>,
    accept_relay_key: bool,
    /// Keys by name (in-memory stores only).
    keys: Mutex<HashMap<String, [u8; 32]>>,
    /// TLS keys by name (in-memory stores only).
    tls_keys: Mutex<HashMap<String, TlsKey>>,
    /// Pinned relay keys by URI (in-memory stores only).
    pins: Mutex<HashMap<String, String>>,
    /// Lock names (see [`NodeStore::lock_name`]).
    exclusive: bool,
    /// The lock files held, by name.
    locks: Mutex<HashMap<String, std::fs::File>>,
}

impl NodeStore {
    /// Keeps nothing on disk: a new key per name per process.
    pub fn in_memory() -> Self {
        Self::new(None, None, false)
    }

    /// Keeps keys, pins and certificates in `dir`; `key_file` overrides the
    /// key's path; `accept_relay_key` re-pins a relay key that changed.
    pub fn new(dir: Option<PathBuf>, key_file: Option<PathBuf>, accept_relay_key: bool) -> Self {
        Self {
            dir,
            key_file,
            accept_relay_key,
            keys: Mutex::default(),
            tls_keys: Mutex::default(),
            pins: Mutex::default(),
            exclusive: false,
            locks: Mutex::default(),
        }
    }

    /// Makes [`NodeStore::lock_name`] lock for real: a node process owns
    /// its names in the data directory (in-process test nodes do not lock).
    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }

    /// Locks the user `name` in the data directory for as long as this
    /// store lives, so no second node runs under the same key (the same
    /// node id: the relay would take it for this node). Nodes of other
    /// names may share the directory. The lock file says which process
    /// holds it; the lock goes with the process, however it ends.
    pub fn lock_name(&self, name: &str) -> Result<(), IdentityError> {
        let Some(dir) = self.dir.as_ref().filter(|_| self.exclusive) else {
            return Ok(());
        };
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.contains_key(name) {
            return Ok(());
        }
        let path = dir.join(format!("{name}.lock"));
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(IdentityError::NameInUse {
                    name: name.to_string(),
                    dir: dir.clone(),
                    holder: holder.trim().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let holder = format!("process {}", std::process::id());
        file.set_len(0).map_err(io)?;
        std::io::Write::write_all(&mut file, holder.as_bytes()).map_err(io)?;
        locks.insert(name.to_string(), file);
        Ok(())
    }

    /// The data directory, if on disk.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Where the key of the user `name` is kept: `--key-file`, else
    /// `<dir>/<name>.key`; `None`: in memory.
    fn key_path(&self, name: &str) -> Option<PathBuf> {
        self.key_file
            .clone()
            .or_else(|| Some(self.dir.as_ref()?.join(format!("{name}.key"))))
    }

    /// The key of the user `name`: `--key-file`, else `<dir>/<name>.key`
    /// (created on first use), else one kept in memory.
    pub fn key_for(&self, name: &str) -> Result<Keypair, IdentityError> {
        match self.key_path(name) {
            Some(path) => Keypair::load_or_create(&path).map_err(|source| IdentityError::Io {
                path: path.clone(),
                source,
            }),
            None => {
                let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
                let secret = *keys
                    .entry(name.to_string())
                    .or_insert_with(rand::random::<[u8; 32]>);
                Ok(Keypair::from_secret(secret))
            }
        }
    }

    /// The TLS key (ECDSA P-256, for TLS only) of the user `name`: next to
    /// its identity key ([`Self::key_for`]), named like it with the
    /// extension `.tls-key` (`<dir>/<name>.tls-key`), created on first use;
    /// else one kept in memory for as long as this store lives. The relay
    /// binds it to the identity key at each registration.
    pub fn tls_key_for(&self, name: &str) -> Result<TlsKey, IdentityError> {
        match self.key_path(name) {
            Some(key_path) => {
                let mut path = key_path.with_extension(TLS_KEY_EXTENSION);
                if path == key_path {
                    path = PathBuf::from(format!("{}.{TLS_KEY_EXTENSION}", key_path.display()));
                }
                Ok(TlsKey::load_or_create(&path)?)
            }
            None => {
                let mut keys = self.tls_keys.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(key) = keys.get(name) {
                    return Ok(key.clone());
                }
                let key = TlsKey::generate()?;
                keys.insert(name.to_string(), key.clone());
                Ok(key)
            }
        }
    }

    /// Pins the relay's key on first contact; afterwards refuses another
    /// key unless told to accept it.
    pub fn pin_relay(&self, uri: &str, key: &[u8]) -> Result<PublicKey, IdentityError> {
        let parsed = PublicKey::from_bytes(key).map_err(|_| IdentityError::BadRelayKey)?;
        let got = hex(key);
        match &self.dir {
            None => self.pin_in_memory(uri, got)?,
            Some(dir) => self.pin_in_file(dir, uri, got)?,
        }
        Ok(parsed)
    }

    /// [`Self::pin_relay`] for a store without a directory (tests).
    fn pin_in_memory(&self, uri: &str, got: String) -> Result<(), IdentityError> {
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        let pinned = pins.entry(uri.to_string()).or_insert_with(|| got.clone());
        match *pinned == got || self.accept_relay_key {
            true => Ok(()),
            false => Err(IdentityError::RelayKeyChanged {
                uri: uri.into(),
                pinned: pinned.clone(),
                got,
                file: PathBuf::from("(memory)"),
            }),
        }
    }

    /// [`Self::pin_relay`] in `DIR/known_relays`, one `URI KEY` per line.
    fn pin_in_file(&self, dir: &Path, uri: &str, got: String) -> Result<(), IdentityError> {
        let file = dir.join("known_relays");
        let io = |source| IdentityError::Io {
            path: file.clone(),
            source,
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        match pinned_in(&text, uri) {
            Some(pinned) if pinned == got => Ok(()),
            Some(pinned) if !self.accept_relay_key => Err(IdentityError::RelayKeyChanged {
                uri: uri.into(),
                pinned,
                got,
                file,
            }),
            _ => {
                let mut lines: Vec<String> = text
                    .lines()
                    .filter(|l| l.split_once(' ').is_none_or(|(u, _)| u != uri))
                    .map(str::to_string)
                    .collect();
                lines.push(format!("{uri} {got}"));
                std::fs::create_dir_all(dir).map_err(io)?;
                std::fs::write(&file, lines.join("\n") + "\n").map_err(io)?;
                tracing::info!(%uri, key = %got, "pinned the relay's key");
                Ok(())
            }
        }
    }

    /// The relay key pinned for `uri` on an earlier run, if any (read
    /// before registering, to check what was kept under it).
    pub fn pinned_relay(&self, uri: &str) -> Option<PublicKey> {
        let pinned = match &self.dir {
            None => self
                .pins
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(uri)
                .cloned()?,
            Some(dir) => pinned_in(
                &std::fs::read_to_string(dir.join("known_relays")).ok()?,
                uri,
            )?,
        };
        PublicKey::from_bytes(&chat_proto::trust::unhex(&pinned)?).ok()
    }

    /// The name certificate saved for `name`, if any.
    pub fn name_certificate(&self, name: &str) -> Option<NameCertificate> {
        let path = self.dir.as_ref()?.join(format!("{name}.cert"));
        NameCertificate::decode(std::fs::read(path).ok()?.as_slice()).ok()
    }

    /// Saves `name`'s certificate, to reclaim the name after a relay restart.
    pub fn save_name_certificate(&self, name: &str, cert: &NameCertificate) {
        let Some(dir) = &self.dir else { return };
        let path = dir.join(format!("{name}.cert"));
        if let Err(e) = std::fs::write(&path, cert.encode_to_vec()) {
            tracing::warn!(path = %path.display(), error = %e, "cannot save the name certificate");
        }
    }
}

/// The key `known_relays` (text, one `URI KEY` per line) pins for `uri`.
fn pinned_in(text: &str, uri: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (u, k) = line.split_once(' ')?;
        (u == uri).then(|| k.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_key_is_pinned_on_first_contact() {
        let dir = std::env::temp_dir().join(format!("store-{}", rand::random::<u64>()));
        let first = Keypair::generate().public_key();
        let other = Keypair::generate().public_key();
        let store = NodeStore::new(Some(dir.clone()), None, false);
        assert!(store.pin_relay("http://r:1", &first).is_ok());
        assert!(store.pin_relay("http://r:1", &first).is_ok());
        assert!(store.pin_relay("http://r:2", &other).is_ok());
        let err = store.pin_relay("http://r:1", &other).unwrap_err();
        assert!(err.to_string().contains("--accept-relay-key"), "{err}");
        let accepting = NodeStore::new(Some(dir.clone()), None, true);
        assert!(accepting.pin_relay("http://r:1", &other).is_ok());
        assert!(store.pin_relay("http://r:1", &other).is_ok(), "re-pinned");
        assert!(store.pin_relay("http://r:2", &other).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_tls_key_is_kept_beside_the_identity_key() {
        let dir = std::env::temp_dir().join(format!("store-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = NodeStore::new(Some(dir.clone()), None, false);
        let _identity = store.key_for("alice").unwrap();
        let tls = store.tls_key_for("alice").unwrap();
        let on_disk = std::fs::read_to_string(dir.join("alice.tls-key")).unwrap();
        assert_eq!(on_disk, tls.pem());
        let reopened = NodeStore::new(Some(dir.clone()), None, false);
        let again = reopened.tls_key_for("alice").unwrap();
        assert_eq!(again.public_key_raw(), tls.public_key_raw());
        // With --key-file, beside that file.
        let key_file = dir.join("id");
        let store = NodeStore::new(Some(dir.clone()), Some(key_file.clone()), false);
        let _identity = store.key_for("alice").unwrap();
        let beside = store.tls_key_for("alice").unwrap();
        assert!(dir.join("id.tls-key").exists());
        assert_ne!(beside.public_key_raw(), tls.public_key_raw());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_name_keeps_its_key() {
        let store = NodeStore::in_memory();
        let a = store.key_for("alice").unwrap().public_key();
        assert_eq!(store.key_for("alice").unwrap().public_key(), a);
        assert_ne!(store.key_for("bob").unwrap().public_key(), a);
        let tls = store
            .tls_key_for("alice")
            .unwrap()
            .public_key_raw()
            .unwrap();
        let again = store
            .tls_key_for("alice")
            .unwrap()
            .public_key_raw()
            .unwrap();
        assert_eq!(again, tls);
        let bob = store.tls_key_for("bob").unwrap().public_key_raw().unwrap();
        assert_ne!(bob, tls);
        let memory = NodeStore::in_memory();
        assert!(memory
            .pin_relay("u", &Keypair::generate().public_key())
            .is_ok());
        assert!(memory
            .pin_relay("u", &Keypair::generate().public_key())
            .is_err());
    }
}

/// Who this node is, as registered at the relay.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Chat name.
    pub name: String,
    /// Relay-issued node id.
    pub node_id: String,
    /// Relay-issued secret.
    pub session_token: String,
    /// Address others reach this node at, `host:port`; empty for a
    /// client-only node, which nobody can reach.
    pub address: String,
}

impl Identity {
    /// Whether this node serves nothing (registered as a pure client).
    pub fn client_only(&self) -> bool {
        self.address.is_empty()
    }
}
