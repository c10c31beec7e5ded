//! Reset grants: which member may reset which room. The admin secret is
//! checked by the service between [`Registry::reset_grant`] (who asks,
//! and for which room) and [`Registry::issue_reset`] (the signature).

use super::{room_name, Registry, RegistryError};
use chat_proto::pb::relay::{ResetCertificate, ResetGrant};
use chat_proto::trust;

impl Registry {
    /// The grant for a reset of `room` (empty: "lobby") to `min_users`
    /// asked by `node_id` with its session `token` at `now_ms`: it names
    /// the member's registered name and a fresh nonce. The member must be
    /// in the room. Not signed yet.
    pub fn reset_grant(
        &self,
        node_id: &str,
        token: &str,
        room: &str,
        min_users: u32,
        now_ms: i64,
    ) -> Result<ResetGrant, RegistryError> {
        let room = room_name(room)?;
        let member = self.authenticate(node_id, token)?;
        if !member.rooms.contains(&room) {
            return Err(RegistryError::NotInRoom {
                node: node_id.to_string(),
                room,
            });
        }
        Ok(ResetGrant {
            room,
            min_users,
            by: member.record.name.clone(),
            by_node_id: member.record.node_id.clone(),
            issued_at_unix_ms: now_ms,
            nonce: trust::reset_nonce(),
        })
    }

    /// Signs `grant` with the relay's key.
    pub fn issue_reset(&self, grant: &ResetGrant) -> ResetCertificate {
        self.key.issue_reset(grant)
    }
}
