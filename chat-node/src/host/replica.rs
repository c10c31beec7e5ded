//! Keeping a successor's replica current. The host acknowledges a message
//! (and delivers it) only once its successor holds it, so an acknowledged
//! message survives the host's crash; a successor promoted to a newer epoch
//! refuses the old host's replication, which fences it.

use crate::node::NodeShared;
use chat_proto::pb::chat::chat_service_client::ChatServiceClient;
use chat_proto::pb::chat::{Member, ReplicateRequest};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

/// Log entries per replication request (at 4 KiB each, well under the
/// 4 MiB gRPC message limit).
const REPLICATION_CHUNK: usize = 256;
/// Bound on each call to another node's ChatService.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the successor choice is revisited without log activity.
const RECHECK: Duration = Duration::from_millis(200);

/// A client for another node's ChatService with bounded connect and calls.
pub fn peer_client(address: &str) -> Result<ChatServiceClient<Channel>, Status> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| Status::invalid_argument(format!("bad address {address:?}: {e}")))?
        .connect_timeout(PEER_CALL_TIMEOUT)
        .timeout(PEER_CALL_TIMEOUT);
    Ok(ChatServiceClient::new(endpoint.connect_lazy()))
}

/// The successor being kept current.
struct Successor {
    member: Member,
    client: ChatServiceClient<Channel>,
    /// Its head, when known.
    have: Option<u64>,
}

/// Keeps a successor current and publishes the commit point (the highest
/// sequence number the successor holds, or the head when alone) while this
/// node hosts `epoch`.
pub async fn replicate_while_hosting(
    shared: Arc<NodeShared>,
    epoch: u64,
    cancel: CancellationToken,
) {
    let mut log_rx = shared.log_tx.subscribe();
    let mut successor: Option<Successor> = None;
    while shared.role().hosting_epoch() == Some(epoch) {
        let chosen = shared.choose_successor(successor.take());
        successor = match chosen {
            None => {
                shared.set_successor(None);
                let head = shared.core().room.as_ref().map_or(0, |r| r.head_seq());
                shared
                    .commit_tx
                    .send_if_modified(|c| std::mem::replace(c, head) != head);
                None
            }
            Some(mut s) => match shared.sync_replica(&mut s.client, epoch, s.have).await {
                Ok(have) => {
                    s.have = Some(have);
                    shared.set_successor(Some(&s.member));
                    shared
                        .commit_tx
                        .send_if_modified(|c| std::mem::replace(c, have) != have);
                    Some(s)
                }
                Err(status) if s.have.is_some() => {
                    // Maybe only our idea of its head was wrong: probe again.
                    tracing::debug!(successor = %s.member.name, %status, "replication failed; probing");
                    s.have = None;
                    Some(s)
                }
                Err(status) => {
                    tracing::warn!(successor = %s.member.name, %status, "replication failed; choosing another successor");
                    shared.mark_unreachable(&s.member.name);
                    continue;
                }
            },
        };
        tokio::select! {
            _ = log_rx.changed() => {}
            _ = tokio::time::sleep(RECHECK) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

impl NodeShared {
    /// Keeps the current successor if it is still the first choice, else
    /// picks the next connected member after this one.
    fn choose_successor(&self, current: Option<Successor>) -> Option<Successor> {
        let first = {
            let core = self.core();
            core.successors(&self.identity.name).into_iter().next()
        }?;
        match current {
            Some(s) if s.member == first => Some(s),
            _ => peer_client(&first.address).ok().map(|client| Successor {
                member: first,
                client,
                have: None,
            }),
        }
    }

    fn set_successor(&self, member: Option<&Member>) {
        self.core().successor = member.map(|m| m.node_id.clone());
    }

    /// A member that cannot take the replica is skipped for a while.
    fn mark_unreachable(&self, name: &str) {
        self.core()
            .unreachable
            .insert(name.to_string(), std::time::Instant::now());
    }

    /// Brings `peer`'s replica up to this host's head; returns its new head.
    /// `have` skips the probe when the peer's head is already known.
    pub(crate) async fn sync_replica(
        &self,
        peer: &mut ChatServiceClient<Channel>,
        epoch: u64,
        have: Option<u64>,
    ) -> Result<u64, Status> {
        let from_node_id = self.identity.node_id.clone();
        let mut have = match have {
            Some(have) => have,
            None => {
                let probe = ReplicateRequest {
                    epoch,
                    from_node_id: from_node_id.clone(),
                    ..Default::default()
                };
                let probe = peer.replicate(probe).await?.into_inner();
                let core = self.core();
                let room = core
                    .room
                    .as_ref()
                    .ok_or_else(|| Status::internal("host has no room"))?;
                let same = probe.room_id == room.room_id() && probe.have_seq <= room.head_seq();
                if same {
                    probe.have_seq
                } else {
                    0
                }
            }
        };
        loop {
            let (meta, entries, head) = {
                let core = self.core();
                if core.role.hosting_epoch() != Some(epoch) {
                    return Err(Status::failed_precondition("no longer hosting"));
                }
                let room = core
                    .room
                    .as_ref()
                    .ok_or_else(|| Status::internal("host has no room"))?;
                (
                    room.meta(),
                    room.entries_after(have, REPLICATION_CHUNK),
                    room.head_seq(),
                )
            };
            let req = ReplicateRequest {
                epoch,
                from_node_id: from_node_id.clone(),
                meta: Some(meta),
                entries,
            };
            have = peer.replicate(req).await?.into_inner().have_seq;
            if have >= head {
                return Ok(have);
            }
        }
    }
}
