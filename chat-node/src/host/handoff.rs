//! The planned migration of a room, make-before-break: ship the room to the
//! member chosen while still serving, freeze, ship the rest, move the
//! relay's pointer, then tell the successor and the clients.

use super::successor::{peer_client, ReplicaPeer};
use super::Role;
use crate::error::NodeError;
use crate::host::RoomHost;
use chat_proto::pb::chat::chat_service_client::ChatServiceClient;
use chat_proto::pb::chat::Member;
use chat_proto::pb::relay::{HostRecord, HostTermCertificate};
use std::time::Instant;
use thiserror::Error;
use tonic::transport::Channel;

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

impl RoomHost {
    /// Moves the host role to the next connected member, make-before-break.
    pub async fn hand_off(&self) -> Result<HostRecord, HandoffError> {
        let (epoch, successors) = {
            let core = self.core();
            let Role::Live { epoch } = core.tenure.role() else {
                return Err(HandoffError::NotHost);
            };
            (epoch, core.successors(&self.ctx.identity.name))
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
        let client =
            peer_client(&self.ctx.dialer, to).map_err(|e| successor_failed(to, e.into()))?;
        let mut peer = ReplicaPeer::new(to.clone(), client, None);
        let started = Instant::now();
        // Make: ship the room while still serving, so the frozen part is short.
        self.sync_replica(&mut peer, epoch)
            .await
            .map_err(|status| successor_failed(to, status))?;
        if !self.core().tenure.freeze(epoch) {
            return Err(HandoffError::NotHost);
        }
        // Kept to sign the TakeOver: the relay's watch may end our term
        // before its answer to the move arrives.
        let own = self.own_term(epoch).map_err(|_| HandoffError::NotHost)?;
        let frozen = Instant::now();
        let record = self.move_while_frozen(&mut peer, epoch).await;
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                self.core().tenure.unfreeze(epoch);
                return Err(e);
            }
        };
        // Break: the relay points at the successor; tell it, then our clients.
        self.ctx.stats.count_handoff();
        let reported = frozen.elapsed();
        self.tell_successor(&mut peer.client, own, &record).await;
        self.on_host_record(record.clone()).await;
        tracing::debug!(
            presync_ms = (frozen - started).as_secs_f64() * 1e3,
            delta_and_relay_ms = reported.as_secs_f64() * 1e3,
            frozen_ms = frozen.elapsed().as_secs_f64() * 1e3,
            "handoff timings"
        );
        Ok(record)
    }

    /// With sequencing frozen: ships what came in since the first sync,
    /// then reports the move to the relay, which answers the new host record.
    async fn move_while_frozen(
        &self,
        to: &mut ReplicaPeer,
        epoch: u64,
    ) -> Result<HostRecord, HandoffError> {
        self.sync_replica(to, epoch)
            .await
            .map_err(|status| successor_failed(&to.member, status))?;
        self.ctx
            .relay
            .report_migration(&self.ctx.identity, &self.room, epoch, &to.member.node_id)
            .await
            .map_err(HandoffError::Relay)
    }

    /// Tells the successor it hosts now, with the relay's signed record.
    /// A successor that does not confirm learns it from the relay.
    async fn tell_successor(
        &self,
        peer: &mut ChatServiceClient<Channel>,
        own: HostTermCertificate,
        record: &HostRecord,
    ) {
        let take_over = record
            .certificate
            .clone()
            .ok_or(NodeError::UncertifiedRecord)
            .map(|cert| self.signed_take_over(own, cert));
        let confirmed = match take_over {
            Ok(req) => peer.take_over(req).await.map(|_| ()),
            Err(error) => Err(error.into()),
        };
        if let Err(status) = confirmed {
            tracing::warn!(%status, "successor did not confirm takeover; it will learn from the relay");
        }
    }
}

/// The successor `to` refused or failed a step of the handoff.
fn successor_failed(to: &Member, status: tonic::Status) -> HandoffError {
    HandoffError::Successor {
        name: to.name.clone(),
        status,
    }
}
