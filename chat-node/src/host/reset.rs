//! Which resets the live host accepts. A reset wipes the room's history,
//! so the host logs one only with the relay's certificate for it (see
//! `relay.v1.ResetGrant`): for this room, asked by the session's member,
//! for the threshold asked, issued lately, later than the room's last
//! reset, and with a nonce the host has not accepted before. Every member
//! checks the certificate again when the host serves the reset.

use super::room::Room;
use super::{Role, RoomHost};
use chat_proto::pb::chat::ResetRoom;
use chat_proto::pb::relay::ResetGrant;
use chat_proto::trust::{self, PublicKey, TrustError};
use std::collections::VecDeque;

/// Nonces of accepted resets remembered per room, at most.
const NONCES_KEPT: usize = 256;

/// The nonces of the resets this host accepted lately in the room, with
/// when each was issued, oldest first. One whose time no longer passes
/// the freshness check is forgotten: its certificate is refused anyway.
#[derive(Debug, Default)]
pub(super) struct SeenResets {
    nonces: VecDeque<(Vec<u8>, i64)>,
}

impl SeenResets {
    /// Whether a reset with this nonce was accepted before.
    fn seen(&self, nonce: &[u8]) -> bool {
        self.nonces.iter().any(|(n, _)| n == nonce)
    }

    /// Remembers the nonce of a reset accepted at `now_ms`; forgets those
    /// too old to pass the freshness check, and the oldest beyond
    /// [`NONCES_KEPT`].
    fn accepted(&mut self, grant: &ResetGrant, now_ms: i64) {
        self.nonces
            .retain(|(_, issued)| trust::check_fresh(*issued, now_ms).is_ok());
        while self.nonces.len() >= NONCES_KEPT {
            self.nonces.pop_front();
        }
        self.nonces
            .push_back((grant.nonce.clone(), grant.issued_at_unix_ms));
    }
}

/// Checks the certificate of a reset asked on the session of member `by`
/// (node `by_node_id`) in `room`, at `now_ms`: signed by the `relay` for
/// this room, member and threshold, and issued within the allowed clock
/// skew. Returns the grant.
fn check_grant(
    relay: &PublicKey,
    room: &str,
    by: &str,
    by_node_id: &str,
    r: &ResetRoom,
    now_ms: i64,
) -> Result<ResetGrant, TrustError> {
    let grant = trust::verify_room_reset(relay, r.certificate.as_ref(), room, r.min_users, by)?;
    if grant.by_node_id != by_node_id {
        return Err(TrustError::Mismatch("member's node"));
    }
    trust::check_fresh(grant.issued_at_unix_ms, now_ms)?;
    Ok(grant)
}

/// Checks that a grant was not used before: its nonce is not one of the
/// `seen`, and it was issued after the room's `last` reset (if any).
fn check_unused(
    grant: &ResetGrant,
    last: Option<i64>,
    seen: &SeenResets,
) -> Result<(), TrustError> {
    if seen.seen(&grant.nonce) {
        return Err(TrustError::Replayed("this reset was accepted before"));
    }
    if last.is_some_and(|last| grant.issued_at_unix_ms <= last) {
        return Err(TrustError::Replayed("not newer than the room's last reset"));
    }
    Ok(())
}

/// When the room's last reset was issued, if the log holds it with a
/// certificate that verifies under the `relay` key.
fn last_reset_issued(room: &Room, relay: &PublicKey) -> Option<i64> {
    let reset = room.last_reset()?;
    let grant = relay.verify_reset(reset.certificate.as_ref()?).ok()?;
    Some(grant.issued_at_unix_ms)
}

impl RoomHost {
    /// Wipes the live room for the member `by` (node `by_node_id`) of the
    /// session that asked, if the reset's certificate passes; says why not.
    pub(super) fn reset_room(
        &self,
        by: &str,
        by_node_id: &str,
        r: ResetRoom,
    ) -> Result<(), String> {
        let now_ms = trust::now_unix_ms();
        let relay = &self.ctx.relay_key;
        let refused = |e: TrustError| format!("reset refused: {e}");
        let grant = check_grant(relay, &self.room, by, by_node_id, &r, now_ms).map_err(refused)?;
        let reset = {
            let mut core = self.core();
            let core = &mut *core;
            let (Role::Live { epoch }, Some(room)) = (core.tenure.role(), core.room.as_mut())
            else {
                return Err("the host is moving; try again".into());
            };
            let last = last_reset_issued(room, relay);
            check_unused(&grant, last, &core.resets).map_err(refused)?;
            let reset = room
                .reset(by, grant.min_users, epoch, r.certificate)
                .map_err(|e| e.to_string())?;
            core.resets.accepted(&grant, now_ms);
            reset
        };
        tracing::info!(
            by,
            min_users = reset.min_users,
            seq = reset.seq,
            "chat reset"
        );
        self.log_tx.send_modify(|n| *n += 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_proto::trust::Keypair;

    const NOW: i64 = 1_000_000_000;

    fn grant(issued_at_unix_ms: i64) -> ResetGrant {
        ResetGrant {
            room: "ops".into(),
            min_users: 2,
            by: "alice".into(),
            by_node_id: "a1".into(),
            issued_at_unix_ms,
            nonce: trust::reset_nonce(),
        }
    }

    fn ask(relay: &Keypair, grant: &ResetGrant) -> ResetRoom {
        ResetRoom {
            min_users: grant.min_users,
            certificate: Some(relay.issue_reset(grant)),
        }
    }

    #[test]
    fn only_a_fresh_certificate_for_this_room_member_and_threshold_passes() {
        let relay = Keypair::generate();
        let key = relay.verifying();
        let good = grant(NOW);
        let check = |r: &ResetRoom, room: &str, by: &str, node: &str, now: i64| {
            check_grant(&key, room, by, node, r, now)
        };
        let r = ask(&relay, &good);
        assert_eq!(check(&r, "ops", "alice", "a1", NOW), Ok(good.clone()));
        // Another room, member, node of the member, or threshold.
        assert!(check(&r, "lobby", "alice", "a1", NOW).is_err());
        assert!(check(&r, "ops", "bob", "a1", NOW).is_err());
        let node = Err(TrustError::Mismatch("member's node"));
        assert_eq!(check(&r, "ops", "alice", "b1", NOW), node);
        let other_threshold = ResetRoom {
            min_users: 5,
            ..r.clone()
        };
        assert!(check(&other_threshold, "ops", "alice", "a1", NOW).is_err());
        // Without a certificate, or one the relay did not sign.
        let bare = ResetRoom {
            min_users: 2,
            certificate: None,
        };
        assert!(check(&bare, "ops", "alice", "a1", NOW).is_err());
        let forged = ask(&Keypair::generate(), &good);
        let bad = Err(TrustError::BadSignature);
        assert_eq!(check(&forged, "ops", "alice", "a1", NOW), bad);
        // Issued more than five minutes from now, either way.
        let skew = trust::MAX_CLOCK_SKEW_MS;
        assert!(check(&r, "ops", "alice", "a1", NOW + skew).is_ok());
        let stale = Err(TrustError::Stale);
        assert_eq!(check(&r, "ops", "alice", "a1", NOW + skew + 1), stale);
        assert_eq!(check(&r, "ops", "alice", "a1", NOW - skew - 1), stale);
    }

    #[test]
    fn a_grant_is_used_once_and_must_follow_the_last_reset() {
        let mut seen = SeenResets::default();
        let first = grant(NOW);
        assert_eq!(check_unused(&first, None, &seen), Ok(()));
        seen.accepted(&first, NOW);
        assert!(matches!(
            check_unused(&first, None, &seen),
            Err(TrustError::Replayed(_))
        ));
        // Issued no later than the room's last reset: a replay too.
        let second = grant(NOW + 1);
        assert!(check_unused(&second, Some(NOW + 1), &seen).is_err());
        assert_eq!(check_unused(&second, Some(NOW), &seen), Ok(()));
    }

    #[test]
    fn the_nonces_kept_are_bounded() {
        let mut seen = SeenResets::default();
        let grants: Vec<ResetGrant> = (0..NONCES_KEPT as i64 + 10)
            .map(|i| grant(NOW + i))
            .collect();
        for g in &grants {
            seen.accepted(g, NOW);
        }
        assert_eq!(seen.nonces.len(), NONCES_KEPT);
        assert!(!seen.seen(&grants[0].nonce), "the oldest went first");
        assert!(seen.seen(&grants[grants.len() - 1].nonce));
        // Once too old to pass the freshness check, a nonce is forgotten.
        let later = NOW + grants.len() as i64 + trust::MAX_CLOCK_SKEW_MS + 1;
        seen.accepted(&grant(later), later);
        assert_eq!(seen.nonces.len(), 1);
    }

    #[test]
    fn the_last_reset_counts_only_with_a_certificate_that_verifies() {
        let relay = Keypair::generate();
        let key = relay.verifying();
        let mut room = Room::new("ops", "r".into(), 1);
        assert_eq!(last_reset_issued(&room, &key), None);
        let real = grant(NOW);
        let cert = Some(relay.issue_reset(&real));
        room.reset("alice", 2, 1, cert).expect("a reset");
        room.append("alice", "m1", "after", NOW, 1)
            .expect("a message");
        assert_eq!(last_reset_issued(&room, &key), Some(NOW));
        let forged = Some(Keypair::generate().issue_reset(&grant(NOW + 1000)));
        room.reset("alice", 2, 1, forged).expect("a reset");
        assert_eq!(last_reset_issued(&room, &key), None);
    }
}
