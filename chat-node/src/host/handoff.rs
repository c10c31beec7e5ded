//! Host duties over time: planned migration (make-before-break handoff) on
//! a fixed schedule, and forgetting members that stayed away.

use super::Role;
use crate::node::NodeShared;
use chat_proto::pb::chat::chat_service_client::ChatServiceClient;
use chat_proto::pb::chat::{Member, ReplicateRequest, TakeOverRequest};
use chat_proto::pb::relay::HostRecord;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

/// Log entries per replication request (at 4 KiB each, well under the 4 MiB
/// gRPC message limit).
const REPLICATION_CHUNK: usize = 256;
/// A member without a session for this long has left.
pub const MEMBER_GRACE: Duration = Duration::from_secs(10);
/// How often away members are looked for.
const AWAY_CHECK: Duration = Duration::from_secs(1);
/// Bound on each call to a successor during a handoff.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a handoff did not happen; the host keeps the role.
#[derive(Debug, Error)]
pub enum HandoffError {
    /// This node is not the live host.
    #[error("this node is not the live host")]
    NotHost,
    /// No other member is connected.
    #[error("no other connected member to hand the chat to")]
    NoSuccessor,
    /// The successor could not be reached or refused.
    #[error("successor {name}: {status}")]
    Successor {
        /// The successor's name.
        name: String,
        /// What went wrong.
        status: tonic::Status,
    },
    /// The relay refused the move.
    #[error("relay refused the move: {0}")]
    Relay(tonic::Status),
}

/// Runs the host duties whenever this node is live, until cancelled.
pub async fn run_host_duties(shared: Arc<NodeShared>, cancel: CancellationToken) {
    let mut role_rx = shared.role_tx.subscribe();
    loop {
        let live = tokio::select! {
            r = role_rx.wait_for(|r| matches!(r, Role::Live { .. })) => r.is_ok(),
            _ = cancel.cancelled() => return,
        };
        if !live {
            return;
        }
        let period = shared.settings.migration_interval;
        let mut migrate = tokio::time::interval_at((Instant::now() + period).into(), period);
        migrate.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut away = tokio::time::interval(AWAY_CHECK);
        loop {
            tokio::select! {
                _ = migrate.tick() => match shared.hand_off().await {
                    Ok(to) => tracing::info!(epoch = to.epoch, to = %to.name, "handed the chat off"),
                    Err(HandoffError::NoSuccessor) => tracing::debug!("alone: the chat stays here"),
                    Err(e) => tracing::warn!(error = %e, "planned migration failed; still hosting"),
                },
                _ = away.tick() => shared.forget_away_members(),
                changed = role_rx.changed() => {
                    if changed.is_err() { return }
                    if !matches!(*role_rx.borrow(), Role::Live { .. } | Role::HandingOff { .. }) { break }
                }
                _ = cancel.cancelled() => return,
            }
        }
    }
}

impl NodeShared {
    /// Moves the host role to the next connected member, make-before-break.
    pub async fn hand_off(&self) -> Result<HostRecord, HandoffError> {
        let (epoch, successors) = {
            let core = self.core();
            let Role::Live { epoch } = core.role else {
                return Err(HandoffError::NotHost);
            };
            (epoch, core.successors(&self.identity.name))
        };
        let mut last = HandoffError::NoSuccessor;
        for successor in successors {
            match self.hand_off_to(epoch, &successor).await {
                Ok(record) => return Ok(record),
                Err(e) => {
                    tracing::warn!(error = %e, "handoff attempt failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn hand_off_to(&self, epoch: u64, to: &Member) -> Result<HostRecord, HandoffError> {
        let fail = |status| HandoffError::Successor {
            name: to.name.clone(),
            status,
        };
        let mut peer = peer_client(&to.address).map_err(fail)?;
        // Make: ship the room while still serving, so the frozen part is short.
        self.sync_replica(&mut peer, epoch).await.map_err(fail)?;
        if !self.set_role_if(Role::Live { epoch }, Role::HandingOff { epoch }) {
            return Err(HandoffError::NotHost);
        }
        let moved = async {
            self.sync_replica(&mut peer, epoch).await.map_err(fail)?;
            self.relay
                .report_migration(&self.identity, epoch, &to.node_id)
                .await
                .map_err(HandoffError::Relay)
        }
        .await;
        let record = match moved {
            Ok(record) => record,
            Err(e) => {
                self.set_role_if(Role::HandingOff { epoch }, Role::Live { epoch });
                return Err(e);
            }
        };
        // Break: the relay points at the successor; tell it, then our clients.
        let take_over = TakeOverRequest {
            epoch: record.epoch,
            from_node_id: self.identity.node_id.clone(),
        };
        if let Err(status) = peer.take_over(take_over).await {
            tracing::warn!(%status, "successor did not confirm takeover; it will learn from the relay");
        }
        self.on_host_record(record.clone()).await;
        Ok(record)
    }

    /// Brings the successor's replica up to this host's head.
    async fn sync_replica(
        &self,
        peer: &mut ChatServiceClient<Channel>,
        epoch: u64,
    ) -> Result<(), tonic::Status> {
        let from_node_id = self.identity.node_id.clone();
        let probe = ReplicateRequest {
            epoch,
            from_node_id: from_node_id.clone(),
            ..Default::default()
        };
        let probe = peer.replicate(probe).await?.into_inner();
        let mut have = probe.have_seq;
        let mut same_room = true;
        loop {
            let (meta, entries, head) = {
                let core = self.core();
                let room = core
                    .room
                    .as_ref()
                    .ok_or_else(|| tonic::Status::internal("host has no room"))?;
                same_room &= probe.room_id == room.room_id() && have <= room.head_seq();
                if !same_room {
                    have = 0;
                }
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
            same_room = true;
            if have >= head {
                return Ok(());
            }
        }
    }

    fn set_role_if(&self, expected: Role, next: Role) -> bool {
        let mut core = self.core();
        if core.role != expected {
            return false;
        }
        core.role = next;
        drop(core);
        self.role_tx.send_replace(next);
        true
    }

    /// Removes members whose sessions have been gone longer than the grace.
    fn forget_away_members(&self) {
        let gone: Vec<String> = {
            let core = self.core();
            core.away_since
                .iter()
                .filter(|(_, since)| since.elapsed() > MEMBER_GRACE)
                .map(|(name, _)| name.clone())
                .collect()
        };
        for name in gone {
            self.leave_room(&name);
        }
    }
}

/// A client for another node's ChatService with bounded connect and calls.
pub fn peer_client(address: &str) -> Result<ChatServiceClient<Channel>, tonic::Status> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| tonic::Status::invalid_argument(format!("bad address {address:?}: {e}")))?
        .connect_timeout(PEER_CALL_TIMEOUT)
        .timeout(PEER_CALL_TIMEOUT);
    Ok(ChatServiceClient::new(endpoint.connect_lazy()))
}
