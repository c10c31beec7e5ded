//! Ids of private messages seen within the signed-time window (stub until merged).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Remembers ids seen within the window.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayGuard {
    /// In memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Kept in `path`.
    pub fn open(_path: &Path) -> std::io::Result<Self> {
        Ok(Self::default())
    }

    /// False for a replay.
    pub fn first_sighting(&self, id: &str, signed_at_unix_ms: i64, _now_unix_ms: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(id.to_string(), signed_at_unix_ms).is_none()
    }
}
