//! Keeping a successor's replica current. The host acknowledges a message
//! (and delivers it) only once its successor holds it, so an acknowledged
//! message survives the host's crash; a successor promoted to a newer epoch
//! refuses the old host's replication, which fences it.

use crate::dial::{Dialer, NodeAddr};
use crate::error::NodeError;
use crate::host::copy_failures::Failure;
use crate::host::room::{entry_seq, Read};
use crate::host::stored::Chunk;
use crate::host::RoomHost;
use chat_proto::pb::chat::chat_service_client::ChatServiceClient;
use chat_proto::pb::chat::{Member, ReplicateBody, ReplicateResponse};
use chat_proto::pb::relay::{CopyPermit, RenewLeaseRequest};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Status;

/// Log entries per replication request (at 4 KiB each, well under the
/// 4 MiB gRPC message limit).
const REPLICATION_CHUNK: usize = super::fencing::MAX_REPLICATED_ENTRIES;
/// Bound on each call to another node's ChatService.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one Replicate: a successor that takes longer is passed over
/// (see `copy_failures`), so a frozen or overloaded member stalls the
/// host's acknowledgements for about this long, once.
pub const REPLICATE_TIMEOUT: Duration = Duration::from_secs(1);
/// How many lease periods a host waits for the relay to know a member it
/// would copy to (after a relay restart, members register again within
/// about a second) before it passes the member over.
const UNKNOWN_MEMBER_LEASES: u32 = 4;
/// How often the successor choice is revisited without log activity.
const RECHECK: Duration = Duration::from_millis(200);

/// A client for `member`'s ChatService with bounded connect and calls.
pub fn peer_client(
    dialer: &Dialer,
    member: &Member,
) -> Result<ChatServiceClient<Channel>, NodeError> {
    let to = NodeAddr {
        address: member.address.clone(),
        node_id: member.node_id.clone(),
    };
    let endpoint = dialer
        .node(&to, PEER_CALL_TIMEOUT)?
        .timeout(PEER_CALL_TIMEOUT);
    Ok(ChatServiceClient::new(endpoint.connect_lazy()))
}

/// What a lease renewal tells the relay about the successor.
#[derive(Debug, Clone)]
pub(crate) enum Naming {
    /// Keep the one named before.
    Keep,
    /// The one this host names now, read when the renewal's turn comes (a
    /// restarted relay learns it again).
    Current,
    /// This member (node id) holds the host's log.
    Successor(String),
    /// Nobody does: the host commits alone.
    Nobody,
}

/// A member being sent copies (the successor being kept current, or a
/// planned handoff's target): its client, what it holds, and the relay's
/// permit for it to hold this term's copies, asked for before the first
/// Replicate.
pub(crate) struct ReplicaPeer {
    pub(crate) member: Member,
    pub(crate) client: ChatServiceClient<Channel>,
    cursor: ReplicaCursor,
    permit: Option<CopyPermit>,
    /// Since when the relay has not known it in the room (see
    /// [`PermitError::NotYet`]).
    unknown_since: Option<Instant>,
}

impl ReplicaPeer {
    /// `member`, reached through `client`, holding `have` if known.
    pub(crate) fn new(
        member: Member,
        client: ChatServiceClient<Channel>,
        have: Option<u64>,
    ) -> Self {
        Self {
            member,
            client,
            cursor: ReplicaCursor {
                have,
                members: None,
            },
            permit: None,
            unknown_since: None,
        }
    }
}

/// What the host knows a replica holds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReplicaCursor {
    /// Its head, when known (`None`: ask first).
    pub have: Option<u64>,
    /// Version of the member list it holds, when known.
    pub members: Option<u64>,
}

/// Keeps a successor current and publishes the commit point (the highest
/// sequence number the successor holds, or the head when alone) while this
/// node hosts `epoch`.
pub async fn replicate_while_hosting(host: Arc<RoomHost>, epoch: u64, cancel: CancellationToken) {
    let mut log_rx = host.log_tx.subscribe();
    let mut successor: Option<ReplicaPeer> = None;
    while host.role().hosting_epoch() == Some(epoch) {
        // Whom the relay refuses as successor (unreachable, gone) is known
        // from the term's first confirmed renewal on; nothing commits
        // before it anyway.
        if !host.core().tenure.lease_holds(Instant::now()) {
            tokio::select! {
                _ = tokio::time::sleep(RECHECK / 4) => continue,
                _ = cancel.cancelled() => return,
            }
        }
        successor = match host.choose_successor(successor.take()) {
            // Nobody can hold a copy now (alone, or every other member is
            // client-only, gone, or failed a copy): never wait for them.
            None => {
                host.commit_alone(epoch).await;
                None
            }
            Some(mut s) => match host.replicate_to(&mut s, epoch).await {
                Replicated::Keep => Some(s),
                Replicated::ChooseAnother => continue,
                Replicated::SteppedDown => return,
            },
        };
        tokio::select! {
            _ = log_rx.changed() => {}
            _ = tokio::time::sleep(RECHECK) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// Why a member has no copy permit.
#[derive(Debug)]
enum PermitError {
    /// The relay answered without one: it would not name the member
    /// successor now (it lists it as unhostable).
    Refused(Status),
    /// The relay answered without one for a member it does not list as
    /// unhostable: it does not know it in the room (yet), or the room had
    /// its share of permits.
    NotYet(Status),
    /// The relay could not be asked (down, restarting, or it ended the
    /// term).
    Relay(Status),
}

impl From<PermitError> for Status {
    fn from(e: PermitError) -> Status {
        match e {
            PermitError::Refused(status)
            | PermitError::NotYet(status)
            | PermitError::Relay(status) => status,
        }
    }
}

/// What became of the successor after one round of replication.
enum Replicated {
    /// Still the successor (its replica current, or to be probed again).
    Keep,
    /// It could not take the replica: choose another at once.
    ChooseAnother,
    /// A newer host fenced this one, which no longer hosts the epoch.
    SteppedDown,
}

/// The newer host record a successor answered with, if it fenced `epoch`.
fn fenced_by(status: &Status, epoch: u64) -> Option<chat_proto::pb::relay::HostRecord> {
    let newer = chat_proto::host_from_metadata(status)?;
    (status.code() == tonic::Code::FailedPrecondition && newer.epoch > epoch).then_some(newer)
}

impl RoomHost {
    /// Commits the head when nobody could hold a copy (alone, or with
    /// members that cannot host), once the relay knows there is no successor.
    async fn commit_alone(&self, epoch: u64) {
        // Acknowledged only once on this node's disk (see `keep`).
        self.save_copy_or_warn().await;
        if self.name_successor(epoch, None).await {
            let head = self.core().room.as_ref().map_or(0, |r| r.head_seq());
            self.advance_commit(epoch, head);
        }
    }

    /// Brings the successor's replica up to the head and moves the commit
    /// point to what it holds, once the relay names it successor.
    async fn replicate_to(&self, s: &mut ReplicaPeer, epoch: u64) -> Replicated {
        if s.permit.is_none() {
            match self.copy_permit(epoch, &s.member).await {
                Ok(permit) => s.permit = Some(permit),
                Err(PermitError::Relay(status)) => {
                    tracing::debug!(%status, "could not ask the relay for a copy permit");
                    return Replicated::Keep;
                }
                // The relay would not name it now. A member in session
                // here may be so only for a moment (it just joined and the
                // relay has not reached it yet, or the relay restarted and
                // does not know it again yet): wait a while, since
                // committing alone would lose what this host acknowledged
                // if it died before the member was named. A member with no
                // session here (gone, dead) is passed over at once.
                Err(PermitError::Refused(status) | PermitError::NotYet(status)) => {
                    let present = self.core().attendance.connected(&s.member.name);
                    let since = *s.unknown_since.get_or_insert_with(Instant::now);
                    let patience = self.ctx.settings.lease * UNKNOWN_MEMBER_LEASES;
                    if present && since.elapsed() < patience {
                        tracing::debug!(successor = %s.member.name, %status, "waiting for the relay to accept the successor");
                        return Replicated::Keep;
                    }
                    tracing::info!(successor = %s.member.name, %status, "choosing another successor");
                    self.copy_failed(&s.member, Failure::Refused);
                    return Replicated::ChooseAnother;
                }
            }
        }
        // This node's own copy goes to its disk meanwhile (see `keep`).
        let sync = self.sync_replica(s, epoch);
        let ((), synced) = tokio::join!(self.save_copy_or_warn(), sync);
        match synced {
            Ok(have) => {
                self.core().succession.copy_taken(&s.member.name);
                if self.name_successor(epoch, Some(&s.member)).await {
                    self.advance_commit(epoch, have);
                }
                Replicated::Keep
            }
            Err(status) => self.replication_failed(s, status, epoch).await,
        }
    }

    /// After the successor refused or failed a Replicate: step down if a
    /// newer host fenced us, else probe it again or choose another.
    async fn replication_failed(
        &self,
        s: &mut ReplicaPeer,
        status: Status,
        epoch: u64,
    ) -> Replicated {
        if let Some(newer) = fenced_by(&status, epoch) {
            // A newer host exists: this one must stop at once
            // (if the relay signed its term).
            tracing::warn!(epoch = newer.epoch, host = %newer.name, "fenced by a newer epoch; stepping down");
            self.on_host_record(newer).await;
            if self.role().hosting_epoch() != Some(epoch) {
                return Replicated::SteppedDown;
            }
        }
        // Silent (frozen, overloaded, gone) or refusing from the start: it
        // cannot hold what the host acknowledges now.
        let how = match status.code() {
            tonic::Code::Unavailable => Some(Failure::Gone),
            tonic::Code::DeadlineExceeded => Some(Failure::Refused),
            _ if s.cursor.have.is_none() => Some(Failure::Refused),
            // Maybe only our idea of its head was wrong: probe again.
            _ => None,
        };
        if let Some(how) = how {
            tracing::warn!(successor = %s.member.name, %status, "replication failed; choosing another successor");
            self.copy_failed(&s.member, how);
            return Replicated::ChooseAnother;
        }
        tracing::debug!(successor = %s.member.name, %status, "replication failed; probing");
        s.cursor = ReplicaCursor::default();
        Replicated::Keep
    }

    /// Keeps the current successor while it may still hold copies, else
    /// picks the first member that can ([`super::HostCore::copy_holders`]).
    /// `None`: nobody can hold a copy now.
    fn choose_successor(&self, current: Option<ReplicaPeer>) -> Option<ReplicaPeer> {
        let mut core = self.core();
        let me = &self.ctx.identity.name;
        let now = Instant::now();
        let still_holder = |m: &Member| {
            core.room.as_ref().and_then(|r| r.member(&m.name)) == Some(m)
                && core.succession.may_hold_copy(m, me, now)
        };
        if let Some(s) = current.filter(|s| still_holder(&s.member)) {
            return Some(s);
        }
        // After a planned handoff the previous host holds everything and the
        // relay already names it: keep it until it fails.
        let seeded = core.succession.take_seed().and_then(|(id, have)| {
            let member = core
                .room
                .as_ref()?
                .members()
                .find(|m| m.node_id == id)?
                .clone();
            Some((member, Some(have)))
        });
        let candidates: Vec<(Member, Option<u64>)> = seeded
            .into_iter()
            .chain(core.copy_holders(me).into_iter().map(|m| (m, None)))
            .collect();
        drop(core);
        candidates.into_iter().find_map(|(member, have)| {
            let Ok(client) = peer_client(&self.ctx.dialer, &member) else {
                self.copy_failed(&member, Failure::Refused);
                return None;
            };
            Some(ReplicaPeer::new(member, client, have))
        })
    }

    /// Makes sure the relay knows `member` as successor before its copy
    /// counts: the relay promotes the named successor if this host dies, so
    /// only what that node holds may be acknowledged. False if the relay
    /// could not be told (the commit point then waits).
    async fn name_successor(&self, epoch: u64, member: Option<&Member>) -> bool {
        let node_id = member.map(|m| m.node_id.clone());
        if self.core().succession.named() == node_id.as_deref() {
            return true;
        }
        let naming = match &node_id {
            Some(id) => Naming::Successor(id.clone()),
            None => Naming::Nobody,
        };
        match self.renew_lease(epoch, naming).await {
            // Named in the renewal's turn (see `renew_lease_asking`).
            Ok(()) if self.core().succession.named() == node_id.as_deref() => true,
            Ok(()) => {
                // The relay kept the successor named before: this one
                // would not be promoted, so its copy does not count.
                if let Some(m) = member {
                    tracing::info!(successor = %m.name, "the relay refuses this successor; choosing another");
                    self.copy_failed(m, Failure::Refused);
                }
                false
            }
            Err(status) => {
                tracing::warn!(%status, "could not name the successor at the relay");
                false
            }
        }
    }

    /// Renews our lease for `epoch` at the relay, naming `successor` (empty
    /// keeps the one named before). On success the lease holds, by our own
    /// clock, until one lease period after the request was sent: the relay
    /// counts from when it arrived, and waits a margin more before it
    /// promotes anyone.
    pub(crate) async fn renew_lease(&self, epoch: u64, naming: Naming) -> Result<(), Status> {
        self.renew_lease_asking(epoch, naming, String::new())
            .await
            .map(|_| ())
    }

    /// The relay's permit for `member` to hold copies of `epoch`'s log,
    /// asked with a lease renewal.
    async fn copy_permit(&self, epoch: u64, member: &Member) -> Result<CopyPermit, PermitError> {
        let permit = self
            .renew_lease_asking(epoch, Naming::Keep, member.node_id.clone())
            .await
            .map_err(PermitError::Relay)?;
        permit.ok_or_else(|| {
            let status = NodeError::CopyNotPermitted(member.name.clone()).into();
            // The same renewal said whom the relay would not name.
            match self.core().succession.refused(&member.node_id) {
                true => PermitError::Refused(status),
                false => PermitError::NotYet(status),
            }
        })
    }

    /// [`RoomHost::renew_lease`], asking a copy permit for `copy_to` (empty:
    /// none); returns the permit if the relay gave one.
    ///
    /// One renewal at a time per room, and the host's idea of its named
    /// successor changes only within a renewal's turn: a periodic renewal
    /// that read the successor named before cannot reach the relay after
    /// the one naming the next (the relay would then promote a member the
    /// host no longer copies to).
    async fn renew_lease_asking(
        &self,
        epoch: u64,
        naming: Naming,
        copy_to_node_id: String,
    ) -> Result<Option<CopyPermit>, Status> {
        let _turn = self.renew_turn.lock().await;
        let naming = match naming {
            Naming::Current => self
                .core()
                .succession
                .named()
                .map_or(Naming::Keep, |id| Naming::Successor(id.to_string())),
            other => other,
        };
        let sent = Instant::now();
        let lease = self.ctx.settings.lease;
        let (successor_node_id, no_successor) = match &naming {
            Naming::Keep | Naming::Current => (String::new(), false),
            Naming::Successor(id) => (id.clone(), false),
            Naming::Nobody => (String::new(), true),
        };
        let request = RenewLeaseRequest {
            room: self.room.clone(),
            epoch,
            successor_node_id,
            no_successor,
            activated: self.core().room.as_ref().is_some_and(|r| r.activated()),
            copy_to_node_id,
            ..Default::default()
        };
        let answer = self
            .ctx
            .relay
            .renew_lease(&self.ctx.identity, request, lease)
            .await;
        let answer = match answer {
            Err(status) if status.code() == tonic::Code::Aborted => {
                self.term_ended(epoch, status.message()).await;
                return Err(status);
            }
            other => other?,
        };
        let mut core = self.core();
        core.tenure.confirm_lease(epoch, sent + lease);
        core.succession
            .relay_said(answer.unhostable_node_ids, answer.rooms_hosted);
        match naming {
            // The relay records a successor it does not refuse.
            Naming::Successor(id) if !core.succession.refused(&id) => {
                core.succession.name(Some(id))
            }
            Naming::Nobody => core.succession.name(None),
            _ => {}
        }
        Ok(answer.copy_permit)
    }

    /// Moves the commit point of `epoch` up to `seq`, if the lease holds
    /// (see [`super::term::Tenure::advance_commit`]), with the log head
    /// there signed for the sessions: one signature per commit, however
    /// many entries and sessions it covers.
    fn advance_commit(&self, epoch: u64, seq: u64) {
        // Nothing is acknowledged before it is on this node's disk too.
        let seq = seq.min(self.saved_through());
        let hash = {
            let core = self.core();
            if core.tenure.commit().get() >= seq {
                return;
            }
            core.room.as_ref().and_then(|r| r.hash_at(seq))
        };
        let head = hash.map(|h| self.ctx.key.sign_head(&self.room, epoch, seq, &h));
        let mut core = self.core();
        if core.tenure.advance_commit(epoch, seq, Instant::now()) && head.is_some() {
            core.signed_head = head;
        }
    }

    /// A member that cannot take the replica is passed over for a while,
    /// and after repeated failures for the rest of the term.
    fn copy_failed(&self, member: &Member, how: Failure) {
        self.core()
            .succession
            .copy_failed(member, how, Instant::now());
    }

    /// Sends one Replicate to `peer`, signed as the host of `epoch`, within
    /// [`REPLICATE_TIMEOUT`]. Only under the room's replicate turn (see
    /// [`RoomHost::sync_replica`]).
    pub(super) async fn send_replicate(
        &self,
        peer: &mut ChatServiceClient<Channel>,
        epoch: u64,
        body: ReplicateBody,
        permit: &CopyPermit,
    ) -> Result<ReplicateResponse, Status> {
        let req = self.signed_replicate(epoch, body, permit)?;
        match tokio::time::timeout(REPLICATE_TIMEOUT, peer.replicate(req)).await {
            Ok(answer) => Ok(answer?.into_inner()),
            Err(_) => Err(NodeError::ReplicaSilent(REPLICATE_TIMEOUT).into()),
        }
    }

    /// Brings `peer`'s replica up to this host's head; returns its new head.
    /// A known head in `cursor` skips the probe; the member list is sent
    /// only when the replica's copy is not known to be current. On error
    /// the caller should forget the cursor.
    ///
    /// One sync at a time per room: the replicator and a handoff never
    /// interleave their Replicates, so counters arrive in the order they
    /// were taken and a probe's answer still holds for the chunks after it.
    pub(crate) async fn sync_replica(
        &self,
        to: &mut ReplicaPeer,
        epoch: u64,
    ) -> Result<u64, Status> {
        let permit = match to.permit.take() {
            Some(permit) => permit,
            None => self.copy_permit(epoch, &to.member).await?,
        };
        let permit = &*to.permit.insert(permit);
        let (peer, cursor) = (&mut to.client, &mut to.cursor);
        let _turn = self.replicate_turn.lock().await;
        let mut have = match cursor.have {
            Some(have) => have,
            None => {
                cursor.members = None;
                self.probe_replica(peer, epoch, permit).await?
            }
        };
        loop {
            let (body, head, members) = match self.next_chunk(epoch, have, cursor)? {
                Chunk::Ready(body, head, members) => (*body, head, members),
                Chunk::OnDisk { after, through } => {
                    self.stored_chunk(epoch, have, cursor, after, through)
                        .await?
                }
            };
            have = self
                .send_replicate(peer, epoch, body, permit)
                .await?
                .have_seq;
            *cursor = ReplicaCursor {
                have: Some(have),
                members: Some(members),
            };
            if have >= head {
                return Ok(have);
            }
        }
    }

    /// The next Replicate body after `have` (with the member list when the
    /// replica's copy is not known current), our head, and the member
    /// list's version, or where on disk its entries are; an error once
    /// this node no longer hosts `epoch`.
    fn next_chunk(&self, epoch: u64, have: u64, cursor: &ReplicaCursor) -> Result<Chunk, Status> {
        let core = self.core();
        if core.tenure.role().hosting_epoch() != Some(epoch) {
            return Err(NodeError::NoLongerHosting.into());
        }
        let room = core.room.as_ref().ok_or(NodeError::NoRoom)?;
        let members = room.members_version();
        let entries = match room.read(have, u64::MAX, REPLICATION_CHUNK) {
            Read::Held(entries) => entries,
            Read::OnDisk { after, through } => return Ok(Chunk::OnDisk { after, through }),
        };
        // The receiver checks the entries reach the head we sign.
        let head = entries.last().and_then(|last| {
            let seq = entry_seq(last);
            let hash = room.hash_at(seq)?;
            Some(self.ctx.key.sign_head(&self.room, epoch, seq, &hash))
        });
        let body = ReplicateBody {
            counter: 0,
            // base_seq 0 makes the receiver start over: it needs the list.
            meta: Some(room.meta(have == 0 || cursor.members != Some(members))),
            entries,
            base_seq: have,
            head,
        };
        Ok(Chunk::Ready(Box::new(body), room.head_seq(), members))
    }
}
