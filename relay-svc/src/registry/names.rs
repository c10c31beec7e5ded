//! Who holds a name: one key at a time, and no other key a name that
//! looks like it (the same confusable skeleton); after a relay restart a
//! name stays reserved for the key that held it, and an earlier name
//! certificate takes a name back.

use super::{Registration, Registry, RegistryError};
use chat_proto::rules;
use std::time::Instant;

/// Why `name` is refused while another key holds `held`: the same name,
/// or one that looks like it.
fn name_refusal(name: &str, held: &str) -> RegistryError {
    if name == held {
        RegistryError::NameTaken(name.to_string())
    } else {
        RegistryError::NameConfusable {
            name: name.to_string(),
            held: held.to_string(),
        }
    }
}

/// A name bound to a key before a relay restart, kept for it a while.
#[derive(Debug, Clone)]
pub(super) struct Reserved {
    node_id: String,
    until: Instant,
    skeleton: String,
}

impl Registry {
    /// After a restart: keeps each name of `bindings` (name, node id) for
    /// its node until `until`, so that only its own key can register it
    /// in the meantime.
    pub fn reserve_names(
        &mut self,
        bindings: impl IntoIterator<Item = (String, String)>,
        until: Instant,
    ) {
        for (name, node_id) in bindings {
            let skeleton = rules::name_skeleton(&name);
            let reserved = Reserved {
                node_id,
                until,
                skeleton,
            };
            self.reserved_names.insert(name, reserved);
        }
    }

    /// Refuses `name` (and its look-alikes) to any node but the one it was
    /// bound to before a restart, until that node registers or the
    /// reservation ends.
    pub(super) fn check_reserved(
        &mut self,
        name: &str,
        node_id: &str,
        now: Instant,
    ) -> Result<(), RegistryError> {
        if self.reserved_names.is_empty() {
            return Ok(());
        }
        self.reserved_names.retain(|_, r| now < r.until);
        let skeleton = rules::name_skeleton(name);
        let held = self
            .reserved_names
            .iter()
            .find(|(_, r)| r.node_id != node_id && r.skeleton == skeleton);
        if let Some((holder, _)) = held {
            return Err(name_refusal(name, holder));
        }
        self.reserved_names.remove(name);
        Ok(())
    }

    /// Decides who holds `reg.name`: the same key keeps it (a restarted
    /// node reclaims it at once); another key gets it, or a name that
    /// looks like it (the same confusable skeleton), only with an earlier
    /// claim (a name certificate from before a relay restart), which
    /// evicts the holder. Returns since when the registrant holds it.
    pub(super) fn settle_name(
        &mut self,
        reg: &Registration,
        node_id: &str,
        unix_ms: i64,
    ) -> Result<i64, RegistryError> {
        let claim = reg.name_claimed_at.unwrap_or(unix_ms);
        let skeleton = rules::name_skeleton(&reg.name);
        let own_since = self
            .members
            .get(node_id)
            .filter(|m| m.record.name == reg.name)
            .map(|m| m.claimed_at);
        let rivals: Vec<(String, String, i64)> = self
            .members
            .values()
            .filter(|m| m.record.node_id != node_id && m.skeleton == skeleton)
            .map(|m| {
                (
                    m.record.node_id.clone(),
                    m.record.name.clone(),
                    m.claimed_at,
                )
            })
            .collect();
        if let Some((_, held, _)) = rivals.iter().find(|(_, _, since)| claim >= *since) {
            return Err(name_refusal(&reg.name, held));
        }
        for (id, held, _) in rivals {
            tracing::warn!(name = %reg.name, %held, evicted = %id,
                           "an earlier name certificate takes the name back");
            self.remove_member(&id);
        }
        Ok(own_since.map_or(claim, |since| claim.min(since)))
    }
}
