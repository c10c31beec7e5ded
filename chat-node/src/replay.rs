//! Remembers which private messages were already taken, so a captured
//! message sent again is refused, even after this node restarts.
//!
//! A signed private message is accepted only within
//! [`MAX_CLOCK_SKEW_MS`] of its signed
//! time, so an id needs remembering only that long: older replays fail the
//! signature's time check instead.

use chat_proto::trust::{now_unix_ms, MAX_CLOCK_SKEW_MS};
use std::collections::{BTreeSet, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// How far from now a signed time may be; ids are remembered that long after it.
pub const REPLAY_WINDOW_MS: i64 = MAX_CLOCK_SKEW_MS;
/// Most ids remembered at once; new ids beyond it are refused, never live ones forgotten.
pub const MAX_REMEMBERED: usize = 100_000;
/// Longest accepted id, in bytes.
pub const MAX_ID_BYTES: usize = 64;

/// Ids of private messages seen within [`REPLAY_WINDOW_MS`] of their signed
/// time, in memory and optionally in an append-only file of
/// `<signed_at_unix_ms> <id>` lines.
#[derive(Debug)]
pub struct ReplayGuard {
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    ids: HashSet<String>,
    /// The same ids by signed time, oldest first, for pruning.
    by_time: BTreeSet<(i64, String)>,
    log: Option<Log>,
}

/// The append-only file and how many lines it holds.
#[derive(Debug)]
struct Log {
    path: PathBuf,
    file: File,
    lines: usize,
}

impl ReplayGuard {
    /// A guard that forgets everything when the node stops.
    pub fn in_memory() -> Self {
        Self {
            seen: Mutex::new(Seen::default()),
        }
    }

    /// A guard kept in the file at `path` (created if missing), loaded with
    /// the ids still inside the window by the system clock.
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::open_at(path, now_unix_ms())
    }

    /// [`ReplayGuard::open`] with the time given: loads the ids of `path`
    /// still inside the window at `now_unix_ms` and rewrites the file with
    /// only those. Malformed lines are skipped.
    pub fn open_at(path: &Path, now_unix_ms: i64) -> io::Result<Self> {
        let mut seen = Seen::default();
        for (at, id) in read_entries(path)? {
            let fits = seen.ids.len() < MAX_REMEMBERED;
            if fits && acceptable(&id, at, now_unix_ms) && !seen.ids.contains(&id) {
                seen.insert(at, id);
            }
        }
        seen.log = Some(Log::rewrite(path.to_path_buf(), &seen.by_time)?);
        Ok(Self {
            seen: Mutex::new(seen),
        })
    }

    /// Records `id` and returns true the first time it is seen; false for a
    /// replay, and also (recording nothing) for an id that is empty, longer
    /// than [`MAX_ID_BYTES`] or not printable ASCII without spaces, for a
    /// signed time outside the window, or when [`MAX_REMEMBERED`] live ids
    /// are already held. Call it after the signature checks out.
    pub fn first_sighting(&self, id: &str, signed_at_unix_ms: i64, now_unix_ms: i64) -> bool {
        if !acceptable(id, signed_at_unix_ms, now_unix_ms) {
            return false;
        }
        let mut seen = self.seen();
        seen.prune(now_unix_ms);
        if seen.ids.contains(id) || seen.ids.len() >= MAX_REMEMBERED {
            return false;
        }
        seen.insert(signed_at_unix_ms, id.to_string());
        seen.persist(signed_at_unix_ms, id);
        true
    }

    /// How many ids are remembered (some may have expired since the last call).
    pub fn len(&self) -> usize {
        self.seen().ids.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        // Each change keeps ids and by_time in step before anything can
        // panic, and a failed write only costs persistence: go on.
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Seen {
    fn insert(&mut self, at: i64, id: String) {
        self.ids.insert(id.clone());
        self.by_time.insert((at, id));
    }

    /// Forgets ids signed before the window that ends at `now`.
    fn prune(&mut self, now: i64) {
        let cutoff = now.saturating_sub(REPLAY_WINDOW_MS);
        while self.by_time.first().is_some_and(|(at, _)| *at < cutoff) {
            if let Some((_, id)) = self.by_time.pop_first() {
                self.ids.remove(&id);
            }
        }
    }

    /// Appends the new id to the file, compacting it once it holds more
    /// than twice the live ids. Failures are logged; memory still holds it.
    fn persist(&mut self, at: i64, id: &str) {
        let Some(log) = &mut self.log else {
            return;
        };
        if let Err(err) = log.append(at, id) {
            tracing::warn!(path = %log.path.display(), %err, "could not record a private message id");
        }
        if log.lines > 2 * self.ids.len() {
            match Log::rewrite(log.path.clone(), &self.by_time) {
                Ok(fresh) => *log = fresh,
                Err(err) => {
                    tracing::warn!(path = %log.path.display(), %err, "could not compact the replay log")
                }
            }
        }
    }
}

impl Log {
    /// Replaces the file at `path` with `entries` (through a temporary file
    /// and a rename, so a crash leaves the old or the new one) and opens it
    /// for appending.
    fn rewrite(path: PathBuf, entries: &BTreeSet<(i64, String)>) -> io::Result<Self> {
        let mut text = String::with_capacity(entries.len() * 48);
        for (at, id) in entries {
            text.push_str(&line(*at, id));
        }
        let mut tmp = path.clone().into_os_string();
        tmp.push(".compact");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(Self {
            path,
            file,
            lines: entries.len(),
        })
    }

    fn append(&mut self, at: i64, id: &str) -> io::Result<()> {
        // Counted even if the write fails: a partial line takes room too.
        self.lines += 1;
        self.file.write_all(line(at, id).as_bytes())
    }
}

fn line(at: i64, id: &str) -> String {
    format!("{at} {id}\n")
}

/// The `(signed_at, id)` pairs of the file at `path`; none if it is missing.
fn read_entries(path: &Path) -> io::Result<Vec<(i64, String)>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let text = String::from_utf8_lossy(&bytes);
    Ok(text.lines().filter_map(parse_line).collect())
}

fn parse_line(line: &str) -> Option<(i64, String)> {
    let (at, id) = line.split_once(' ')?;
    Some((at.parse().ok()?, id.to_string()))
}

/// Whether `id` can be remembered (and written as one line) and `at` lies
/// inside the window around `now`.
fn acceptable(id: &str, at: i64, now: i64) -> bool {
    let id_ok =
        !id.is_empty() && id.len() <= MAX_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic());
    id_ok && now.abs_diff(at) <= REPLAY_WINDOW_MS.unsigned_abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    /// A file path no other test uses, removed when dropped.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new() -> Self {
            let name = format!("replay-{}.log", uuid::Uuid::new_v4().simple());
            TempPath(std::env::temp_dir().join(name))
        }

        fn lines(&self) -> usize {
            std::fs::read_to_string(&self.0)
                .expect("log")
                .lines()
                .count()
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn a_replay_is_refused() {
        let guard = ReplayGuard::in_memory();
        assert!(guard.first_sighting("m1", T0, T0));
        assert!(!guard.first_sighting("m1", T0, T0 + 1000));
        assert!(guard.first_sighting("m2", T0, T0 + 1000));
        assert_eq!(guard.len(), 2);
    }

    #[test]
    fn odd_ids_and_times_are_refused_unrecorded() {
        let guard = ReplayGuard::in_memory();
        assert!(!guard.first_sighting("", T0, T0));
        assert!(!guard.first_sighting(&"x".repeat(65), T0, T0));
        assert!(!guard.first_sighting("a b", T0, T0));
        assert!(!guard.first_sighting("a\n1 b", T0, T0));
        assert!(!guard.first_sighting("é", T0, T0));
        let late = T0 + REPLAY_WINDOW_MS + 1;
        assert!(!guard.first_sighting("old", T0, late));
        assert!(!guard.first_sighting("future", late, T0));
        assert!(!guard.first_sighting("edge", i64::MIN, i64::MAX));
        assert!(guard.is_empty());
        assert!(guard.first_sighting(&"x".repeat(64), T0, T0 + REPLAY_WINDOW_MS));
    }

    #[test]
    fn ids_are_forgotten_once_their_time_is_out_of_the_window() {
        let guard = ReplayGuard::in_memory();
        assert!(guard.first_sighting("a", T0, T0));
        assert!(guard.first_sighting("b", T0 + 60_000, T0 + 60_000));
        let later = T0 + REPLAY_WINDOW_MS + 1;
        assert!(guard.first_sighting("c", later, later));
        assert_eq!(guard.len(), 2, "a is gone, b and c stay");
        assert!(!guard.first_sighting("b", T0 + 60_000, later));
    }

    #[test]
    fn when_full_new_ids_are_refused_and_live_ones_kept() {
        let guard = ReplayGuard::in_memory();
        for i in 0..MAX_REMEMBERED {
            assert!(guard.first_sighting(&i.to_string(), T0, T0));
        }
        assert!(!guard.first_sighting("one-more", T0, T0));
        assert!(!guard.first_sighting("0", T0, T0), "still remembered");
        let later = T0 + REPLAY_WINDOW_MS + 1;
        assert!(guard.first_sighting("one-more", later, later));
        assert_eq!(guard.len(), 1);
    }

    #[test]
    fn survives_reopen() {
        let path = TempPath::new();
        {
            let guard = ReplayGuard::open_at(&path.0, T0).expect("open");
            assert!(guard.first_sighting("m1", T0, T0));
            assert!(guard.first_sighting("m2", T0 + 10, T0 + 10));
        }
        let guard = ReplayGuard::open_at(&path.0, T0 + 1000).expect("reopen");
        assert!(!guard.first_sighting("m1", T0, T0 + 1000));
        assert!(!guard.first_sighting("m2", T0 + 10, T0 + 1000));
        assert!(guard.first_sighting("m3", T0, T0 + 1000));
    }

    #[test]
    fn reopen_keeps_only_live_well_formed_ids() {
        let path = TempPath::new();
        let old = T0 - REPLAY_WINDOW_MS - 1;
        let text = format!("{old} stale\n{T0} live\ngarbage\n{T0}\nx y\n{T0} live\n{T0} a b\n");
        std::fs::write(&path.0, text).expect("write");
        let guard = ReplayGuard::open_at(&path.0, T0).expect("open");
        assert_eq!(guard.len(), 1);
        assert_eq!(path.lines(), 1, "rewritten compactly on open");
        assert!(!guard.first_sighting("live", T0, T0));
        assert!(guard.first_sighting("stale", T0, T0));
    }

    #[test]
    fn the_file_is_compacted_when_mostly_expired() {
        let path = TempPath::new();
        let guard = ReplayGuard::open_at(&path.0, T0).expect("open");
        for i in 0..10 {
            assert!(guard.first_sighting(&format!("old{i}"), T0, T0));
        }
        assert_eq!(path.lines(), 10);
        let later = T0 + REPLAY_WINDOW_MS + 1;
        assert!(guard.first_sighting("new", later, later));
        assert_eq!(path.lines(), 1, "the expired ids are gone from the file");
        assert!(guard.first_sighting("new2", later, later));
        assert_eq!(path.lines(), 2);
    }

    #[test]
    fn open_fails_where_no_file_can_be() {
        let dir = std::env::temp_dir().join(format!("none-{}", uuid::Uuid::new_v4().simple()));
        assert!(ReplayGuard::open(&dir.join("replay.log")).is_err());
    }
}
