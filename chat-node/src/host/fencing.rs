//! The fencing rule between nodes: an epoch counts only in a certificate
//! the relay signed, and a node-to-node call counts only when signed by the
//! key that certificate names. Both sides of Replicate and TakeOver live
//! here: building the signed requests, and checking them.

use super::room::{Room, RoomError};
use super::Role;
use crate::error::NodeError;
use crate::host::RoomHost;
use chat_proto::chain::Digest;
use chat_proto::pb::chat::*;
use chat_proto::pb::relay::{CopyPermit, HostTerm, HostTermCertificate};
use chat_proto::trust::{self, PublicKey};
use prost::Message;
use std::sync::atomic::{AtomicU64, Ordering};

/// A Replicate whose signatures check out.
pub(crate) struct VerifiedCopy {
    /// The sender's term.
    pub term: HostTerm,
    /// Its certificate.
    pub cert: HostTermCertificate,
    /// What it carries.
    pub body: ReplicateBody,
    /// The head the sender signed: sequence number and log hash.
    pub head: Option<(u64, Digest)>,
}

/// Most log entries one Replicate may carry.
pub const MAX_REPLICATED_ENTRIES: usize = 256;
/// Most members one Replicate may list.
pub const MAX_REPLICATED_MEMBERS: usize = 10_000;

/// A strictly increasing counter for this process's Replicate calls: the
/// wall clock in microseconds, or one more than the last if that is not
/// higher, so it keeps increasing across restarts too.
fn next_counter() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(trust::now_unix_ms())
        .unwrap_or(0)
        .saturating_mul(1000);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last.saturating_add(1));
        match LAST.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// The node a call's host term names, read before the term is verified:
/// the caller's TLS certificate is checked against it first (see
/// `NodeShared::authenticate`), the term's signature right after.
pub(crate) fn claimed_host(term: Option<&HostTermCertificate>) -> Option<String> {
    term.and_then(|cert| HostTerm::decode(cert.term.as_slice()).ok())
        .map(|term| term.node_id)
}

impl RoomHost {
    /// The certificate of the term this node hosts as `epoch`.
    pub(super) fn own_term(&self, epoch: u64) -> Result<HostTermCertificate, NodeError> {
        self.core()
            .tenure
            .hosting_cert(epoch)
            .cloned()
            .ok_or(NodeError::NoLongerHosting)
    }

    /// A Replicate for `body`, signed as the host of `epoch`.
    pub(crate) fn signed_replicate(
        &self,
        epoch: u64,
        mut body: ReplicateBody,
        permit: &CopyPermit,
    ) -> Result<ReplicateRequest, NodeError> {
        let term = self.own_term(epoch)?;
        body.counter = next_counter();
        let body = body.encode_to_vec();
        let signature = self
            .ctx
            .key
            .sign(&trust::replicate_payload(&term.term, &body));
        Ok(ReplicateRequest {
            term: Some(term),
            body,
            signature,
            permit: Some(permit.clone()),
        })
    }

    /// A TakeOver handing `new_term` over, signed as the host of
    /// `sender_term` (which this node hosted: it may have stepped down
    /// already, the relay's watch being quicker than its answer).
    pub(crate) fn signed_take_over(
        &self,
        sender_term: HostTermCertificate,
        new_term: HostTermCertificate,
    ) -> TakeOverRequest {
        let signed_at_unix_ms = trust::now_unix_ms();
        let payload =
            trust::take_over_payload(&new_term.term, &sender_term.term, signed_at_unix_ms);
        TakeOverRequest {
            signature: self.ctx.key.sign(&payload),
            new_term: Some(new_term),
            sender_term: Some(sender_term),
            signed_at_unix_ms,
        }
    }

    /// Checks a Replicate: a relay-signed term of this room not older than
    /// ours, signed by that term's host, with the relay's permit for this
    /// node to hold that term's copies, with a counter we have not seen in
    /// that term, within the size limits, every message in it signed by its
    /// sender, with the head its host signed. Returns the term, its
    /// certificate, the body and the head.
    pub(crate) fn verify_replicate(
        &self,
        req: ReplicateRequest,
    ) -> Result<VerifiedCopy, NodeError> {
        let cert = req.term.ok_or(NodeError::ReplicateWithoutTerm)?;
        let term = self.ctx.verify_term(&cert)?;
        if term.room != self.room {
            return Err(NodeError::WrongRoom {
                term: term.room.chars().take(64).collect(),
                here: self.room.clone(),
            });
        }
        let payload = trust::replicate_payload(&cert.term, &req.body);
        let key = PublicKey::from_bytes(&term.public_key).map_err(NodeError::ReplicateNotSigned)?;
        key.verify(&payload, &req.signature)
            .map_err(NodeError::ReplicateNotSigned)?;
        let known = self.core().tenure.known_epoch();
        self.refuse_stale(term.epoch, known)?;
        self.check_permit(req.permit.as_ref(), &term)?;
        let body = ReplicateBody::decode(req.body.as_slice())?;
        let members = body.meta.as_ref().map_or(0, |m| m.members.len());
        if body.entries.len() > MAX_REPLICATED_ENTRIES || members > MAX_REPLICATED_MEMBERS {
            return Err(NodeError::ReplicateTooLarge {
                entries: MAX_REPLICATED_ENTRIES,
                members: MAX_REPLICATED_MEMBERS,
            });
        }
        let head = match &body.head {
            Some(h) => Some((
                h.seq,
                key.verify_head(&self.room, h)
                    .map_err(NodeError::ReplicateNotSigned)?,
            )),
            None => None,
        };
        // One signature per run of a sender's messages (see chat_proto::runs).
        let messages: Vec<&ChatMessage> = body
            .entries
            .iter()
            .filter_map(|entry| match &entry.kind {
                Some(log_entry::Kind::Message(m)) => Some(m),
                _ => None,
            })
            .collect();
        let verdicts = self
            .copy_senders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check_all(&self.ctx.relay_key, &self.room, &messages);
        for (m, verdict) in messages.iter().zip(verdicts) {
            verdict.map_err(|e| {
                RoomError::BadCopy(format!("entry {} from {:?}: {e}", m.seq, m.from))
            })?;
        }
        Ok(VerifiedCopy {
            term,
            cert,
            body,
            head,
        })
    }

    /// Checks the relay's permit for this node to hold copies of `term`
    /// (see `relay.v1.CopyGrant`): a host cannot push copies into members
    /// the relay would not name successor.
    fn check_permit(&self, permit: Option<&CopyPermit>, term: &HostTerm) -> Result<(), NodeError> {
        let permit = permit.ok_or(NodeError::NoCopyPermit("none given"))?;
        let grant = self
            .ctx
            .relay_key
            .verify_copy_permit(permit)
            .map_err(|_| NodeError::NoCopyPermit("not signed by the relay"))?;
        if grant.node_id != self.ctx.identity.node_id {
            return Err(NodeError::NoCopyPermit("it names another node"));
        }
        if grant.room != term.room || grant.epoch != term.epoch {
            return Err(NodeError::NoCopyPermit("it is for another room or term"));
        }
        Ok(())
    }

    /// Applies a verified Replicate to this node's replica.
    pub(crate) fn apply_replicate(
        &self,
        term: &HostTerm,
        body: ReplicateBody,
        head: Option<(u64, Digest)>,
    ) -> Result<ReplicateResponse, NodeError> {
        let mut core = self.core();
        // A newer term may have arrived since the Replicate was verified.
        self.refuse_stale(term.epoch, core.tenure.known_epoch())?;
        if core.tenure.role() != Role::Dormant {
            return Err(NodeError::LiveHost);
        }
        if !core.tenure.accept_counter(term.epoch, body.counter) {
            self.ctx.stats.count_replay_refused();
            return Err(NodeError::ReplayedReplicate);
        }
        if let Some(meta) = body.meta {
            // Another room, or the host found our log diverged: start over.
            let start_over = body.base_seq == 0
                || core
                    .room
                    .as_ref()
                    .is_none_or(|r| r.room_id() != meta.room_id);
            if start_over && meta.same_members {
                return Err(NodeError::NoReplica);
            }
            let mut fresh =
                start_over.then(|| Room::new(&self.room, meta.room_id.clone(), meta.min_users));
            let room = match (fresh.as_mut(), core.room.as_mut()) {
                (Some(room), _) | (None, Some(room)) => room,
                (None, None) => return Err(NodeError::NoReplica),
            };
            // Retention: the host dropped the entries through its
            // checkpoint (the body is signed by the term's host); so does
            // this copy, and one behind it goes on from the checkpoint.
            let checkpoint = checkpoint_of(&meta);
            if let Some((seq, hash)) = checkpoint {
                room.expire_through(seq, hash);
            }
            let base = match checkpoint {
                Some((seq, _)) if body.base_seq < seq => seq,
                _ => body.base_seq,
            };
            if room.head_seq() != base {
                return Err(RoomError::Gap {
                    have: room.head_seq(),
                    got: base.saturating_add(1),
                }
                .into());
            }
            // Nothing is held that does not check out: the senders' chains
            // and the log hash up to the head the host signed (signatures
            // were checked before the lock).
            room.check_copy(&body.entries, head)?;
            if let Some(fresh) = fresh {
                core.room = Some(fresh);
            }
            if let Some(room) = core.room.as_mut() {
                room.apply_replica(meta, body.entries)?;
            }
            // The replica now follows this term's log.
            core.replica_term = term.epoch;
        }
        Ok(core
            .room
            .as_ref()
            .map_or_else(ReplicateResponse::default, |r| ReplicateResponse {
                room_id: r.room_id().to_string(),
                have_seq: r.head_seq(),
                have_epoch: r.last_epoch(),
                have_hash: r.head_hash().to_vec(),
            }))
    }

    /// Checks a TakeOver: `new_term` is relay-signed and names this node;
    /// the sender's term is the one before it, and the sender signed the
    /// request with that term's key. Returns the new term, its certificate
    /// and the sender's node id.
    pub(crate) fn verify_take_over(
        &self,
        req: TakeOverRequest,
    ) -> Result<(HostTerm, HostTermCertificate, String), NodeError> {
        let new_cert = req.new_term.ok_or(NodeError::TakeOverWithoutTerms)?;
        let sender_cert = req.sender_term.ok_or(NodeError::TakeOverWithoutTerms)?;
        let new_term = self.ctx.verify_term(&new_cert)?;
        let sender_term = self.ctx.verify_term(&sender_cert)?;
        if new_term.node_id != self.ctx.identity.node_id {
            return Err(NodeError::TakeOverForAnotherNode);
        }
        // The relay names the term each term follows (epochs come from one
        // counter for all rooms, so they are not consecutive in a room).
        if new_term.room != sender_term.room || new_term.previous_epoch != sender_term.epoch {
            return Err(NodeError::TakeOverNotFromPreviousTerm);
        }
        let payload =
            trust::take_over_payload(&new_cert.term, &sender_cert.term, req.signed_at_unix_ms);
        PublicKey::from_bytes(&sender_term.public_key)
            .and_then(|key| key.verify(&payload, &req.signature))
            .and_then(|()| trust::check_fresh(req.signed_at_unix_ms, trust::now_unix_ms()))
            .map_err(NodeError::TakeOverNotSigned)?;
        Ok((new_term, new_cert, sender_term.node_id))
    }
}

/// The checkpoint a replication's metadata names (see
/// [`Room::expire_through`]), if any.
fn checkpoint_of(meta: &chat_proto::pb::chat::RoomMeta) -> Option<(u64, Digest)> {
    let hash = Digest::try_from(meta.expired_hash.as_slice()).ok()?;
    (meta.expired_seq > 0).then_some((meta.expired_seq, hash))
}
