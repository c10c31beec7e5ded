//! End-to-end checks of the resets a host serves. Control frames are not
//! signed by the host, so a reset counts only with the relay's certificate
//! for it (see `relay.v1.ResetGrant`): for this room, by the member and to
//! the threshold the frame names, and newer than the last reset applied,
//! so a host can neither forge a reset nor replay an old one.

use super::{Client, ClientEvent};
use chat_proto::pb::chat::RoomReset;
use chat_proto::pb::relay::ResetCertificate;
use chat_proto::trust::{self, PublicKey, TrustError};

/// The resets this client applied: when the last one was issued.
#[derive(Debug, Default)]
pub(super) struct Resets {
    last_issued_at: Option<i64>,
}

impl Resets {
    /// Checks `r`, served in `room`, against the relay's key, and takes it
    /// as the last reset applied if it passes.
    pub(super) fn apply(
        &mut self,
        relay: &PublicKey,
        room: &str,
        r: &RoomReset,
    ) -> Result<(), TrustError> {
        let grant =
            trust::verify_room_reset(relay, r.certificate.as_ref(), room, r.min_users, &r.by)?;
        if self
            .last_issued_at
            .is_some_and(|last| grant.issued_at_unix_ms <= last)
        {
            return Err(TrustError::Replayed("not newer than the last reset"));
        }
        self.last_issued_at = Some(grant.issued_at_unix_ms);
        Ok(())
    }
}

impl Client {
    /// Asks the relay, with the user's admin secret, for the certificate
    /// of a reset of this room to `min_users` by us; says why not.
    pub(super) async fn reset_certificate(
        &self,
        min_users: u32,
    ) -> Result<ResetCertificate, String> {
        let ctx = &self.node.ctx;
        let secret = self.node.admin_secret.as_deref().unwrap_or_default();
        ctx.relay
            .authorize_reset(&ctx.identity, self.room.room(), min_users, secret)
            .await
            .map_err(|status| format!("reset refused: {}", status.message()))
    }

    /// Shows a reset once, if its certificate checks out; otherwise
    /// reports the host that served it at `address`. Either way the log
    /// the host served goes on from it.
    pub(super) async fn on_reset(&mut self, r: RoomReset, address: &str) {
        if r.seq <= self.view.last_seq {
            return; // already seen
        }
        self.log_check.reset(&r);
        self.view.last_seq = r.seq;
        let relay = &self.node.ctx.relay_key;
        if let Err(e) = self.resets.apply(relay, self.room.room(), &r) {
            let what = format!(
                "served reset {} claiming to be by {:?}, which was refused ({e}); not applied",
                r.seq, r.by
            );
            return self.report(address, what).await;
        }
        self.view.activated = false;
        let (by, min_users) = (r.by, r.min_users);
        self.emit(ClientEvent::Reset { by, min_users }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_proto::pb::relay::ResetGrant;
    use chat_proto::trust::Keypair;

    fn reset(relay: &Keypair, seq: u64, by: &str, issued_at_unix_ms: i64) -> RoomReset {
        let grant = ResetGrant {
            room: "ops".into(),
            min_users: 2,
            by: by.into(),
            by_node_id: "n1".into(),
            issued_at_unix_ms,
            nonce: trust::reset_nonce(),
        };
        RoomReset {
            seq,
            min_users: 2,
            by: by.into(),
            epoch: 1,
            certificate: Some(relay.issue_reset(&grant)),
        }
    }

    #[test]
    fn only_a_certified_newer_reset_applies() {
        let relay = Keypair::generate();
        let key = relay.verifying();
        let mut resets = Resets::default();
        let first = reset(&relay, 5, "alice", 1000);
        assert_eq!(resets.apply(&key, "ops", &first), Ok(()));
        // The same again, or an older one, is a replay.
        let replayed = Err(TrustError::Replayed("not newer than the last reset"));
        assert_eq!(resets.apply(&key, "ops", &first), replayed);
        let older = reset(&relay, 9, "alice", 999);
        assert_eq!(resets.apply(&key, "ops", &older), replayed);
        // A newer one, but altered or forged by the host, or for elsewhere.
        let mut renamed = reset(&relay, 9, "alice", 2000);
        renamed.by = "bob".into();
        assert!(resets.apply(&key, "ops", &renamed).is_err());
        let mut rethreshold = reset(&relay, 9, "alice", 2000);
        rethreshold.min_users = 1;
        assert!(resets.apply(&key, "ops", &rethreshold).is_err());
        let forged = reset(&Keypair::generate(), 9, "bob", 2000);
        assert!(resets.apply(&key, "ops", &forged).is_err());
        let bare = RoomReset {
            certificate: None,
            ..reset(&relay, 9, "bob", 2000)
        };
        assert!(resets.apply(&key, "ops", &bare).is_err());
        assert!(resets
            .apply(&key, "lobby", &reset(&relay, 9, "bob", 2000))
            .is_err());
        // Refusals changed nothing: a genuine newer reset still applies.
        assert_eq!(
            resets.apply(&key, "ops", &reset(&relay, 9, "bob", 1001)),
            Ok(())
        );
    }
}
