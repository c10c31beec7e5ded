//! The names the relay bound to keys, kept in its data directory so that a
//! restart does not open a window in which a stranger could take a
//! connected member's name: after a restart each name stays with its key
//! for the member grace (see `Registry::reserve_names`).
//!
//! The file (`DATA_DIR/names`) holds one `NAME NODE_ID` line per binding,
//! appended when a binding changes; the last line of a name wins, and the
//! file is rewritten compactly when the relay starts.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The bindings on disk (none without a data directory).
#[derive(Debug)]
pub(super) struct NameFile {
    path: Option<PathBuf>,
    bindings: Mutex<Bindings>,
}

/// Name -> node id, as written, and every node id bound since the file
/// was read.
#[derive(Debug, Default)]
struct Bindings {
    by_name: BTreeMap<String, String>,
    keys: HashSet<String>,
}

impl NameFile {
    /// Reads the bindings kept in `dir` (if any) and rewrites the file
    /// with one line per name.
    pub(super) fn open(dir: Option<&Path>) -> Self {
        let path = dir.map(|d| d.join("names"));
        let text = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let by_name: BTreeMap<String, String> = text
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(name, node)| (name.to_string(), node.trim().to_string()))
            .collect();
        let keys = by_name.values().cloned().collect();
        let file = Self {
            path,
            bindings: Mutex::new(Bindings { by_name, keys }),
        };
        file.compact();
        file
    }

    /// Every binding kept, as (name, node id).
    pub(super) fn bindings(&self) -> Vec<(String, String)> {
        self.lock()
            .by_name
            .iter()
            .map(|(n, id)| (n.clone(), id.clone()))
            .collect()
    }

    /// Whether `node_id` was bound to a name (since the relay started, or
    /// before and still in the file).
    pub(super) fn knows(&self, node_id: &str) -> bool {
        self.lock().keys.contains(node_id)
    }

    /// Keeps `name` bound to `node_id` (written only if it changed).
    pub(super) fn record(&self, name: &str, node_id: &str) {
        let mut bindings = self.lock();
        if bindings.by_name.get(name).map(String::as_str) == Some(node_id) {
            return;
        }
        bindings.keys.insert(node_id.to_string());
        bindings
            .by_name
            .insert(name.to_string(), node_id.to_string());
        let Some(path) = &self.path else { return };
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{name} {node_id}"));
        if let Err(e) = appended {
            tracing::warn!(path = %path.display(), error = %e, "cannot record a name binding");
        }
    }

    /// Rewrites the file with one line per name.
    fn compact(&self) {
        let Some(path) = &self.path else { return };
        let text: String = self
            .lock()
            .by_name
            .iter()
            .map(|(name, node)| format!("{name} {node}\n"))
            .collect();
        if let Err(e) = std::fs::write(path, text) {
            tracing::warn!(path = %path.display(), error = %e, "cannot rewrite the name bindings");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bindings> {
        self.bindings.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_survive_a_restart_the_last_one_of_a_name_winning() {
        let dir =
            std::env::temp_dir().join(format!("relay-names-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = NameFile::open(Some(&dir));
        assert!(file.bindings().is_empty());
        file.record("alice", "aaa");
        file.record("bob", "bbb");
        file.record("alice", "ccc");
        file.record("alice", "ccc");
        let again = NameFile::open(Some(&dir));
        assert_eq!(
            again.bindings(),
            [("alice".into(), "ccc".into()), ("bob".into(), "bbb".into())]
        );
        let text = std::fs::read_to_string(dir.join("names")).unwrap();
        assert_eq!(text.lines().count(), 2, "compacted: {text}");
        // The keys still bound are known after the restart.
        assert!(again.knows("ccc") && again.knows("bbb"));
        assert!(!again.knows("aaa") && !again.knows("ddd"));
        assert!(file.knows("aaa"), "bound while this relay ran");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
