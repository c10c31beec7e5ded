//! Host duties over time: planned migration (make-before-break handoff) on
//! a fixed schedule, and forgetting members that stayed away.

use super::replica::{peer_client, replicate_while_hosting, ReplicaCursor};
use super::Role;
use crate::error::NodeError;
use crate::host::RoomHost;
use chat_proto::pb::chat::chat_service_client::ChatServiceClient;
use chat_proto::pb::chat::Member;
use chat_proto::pb::relay::HostRecord;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// How often away members are looked for.
const AWAY_CHECK: Duration = Duration::from_secs(1);

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

/// Runs the host duties whenever this node is live, until cancelled:
/// replication to the successor and lease renewal (each in its own task, so
/// a slow handoff never starves the lease), planned migration on a fixed
/// schedule, and forgetting members that stayed away.
pub async fn run_host_duties(host: Arc<RoomHost>, cancel: CancellationToken) {
    let mut role_rx = host.core().tenure.watch_role();
    loop {
        let epoch = tokio::select! {
            r = role_rx.wait_for(|r| matches!(r, Role::Live { .. })) => match r {
                Ok(role) => role.hosting_epoch().unwrap_or(0),
                Err(_) => return,
            },
            _ = cancel.cancelled() => return,
        };
        let term = cancel.child_token();
        tokio::spawn(replicate_while_hosting(host.clone(), epoch, term.clone()));
        tokio::spawn(renew_lease_while_hosting(host.clone(), epoch, term.clone()));
        let period = host.node.settings.migration_interval;
        let mut migrate =
            tokio::time::interval_at((Instant::now() + first_move(period)).into(), period);
        migrate.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut away = tokio::time::interval(AWAY_CHECK);
        while host.role().hosting_epoch() == Some(epoch) {
            tokio::select! {
                _ = migrate.tick() => match host.hand_off().await {
                    Ok(to) => tracing::info!(epoch = to.epoch, to = %to.name, "handed the chat off"),
                    Err(HandoffError::NoSuccessor) => tracing::debug!("alone: the chat stays here"),
                    Err(e) => tracing::warn!(error = %e, "planned migration failed; still hosting"),
                },
                _ = away.tick() => host.forget_away_members(),
                changed = role_rx.changed() => if changed.is_err() { break },
                _ = cancel.cancelled() => break,
            }
        }
        term.cancel();
    }
}

/// When a new term's first planned move is due: the migration period,
/// give or take a quarter at random, so rooms that began together (or a
/// node's many rooms) drift apart instead of moving all at once.
fn first_move(period: Duration) -> Duration {
    period.mul_f64(rand::random_range(0.75..1.25))
}

/// Renews the host lease at the relay, naming the successor, four times per
/// lease period while this node hosts `epoch`.
async fn renew_lease_while_hosting(host: Arc<RoomHost>, epoch: u64, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(host.node.settings.lease / 4);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while host.role().hosting_epoch() == Some(epoch) {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let successor = host.core().successor.clone().unwrap_or_default();
        if let Err(status) = host.renew_lease(epoch, &successor).await {
            // A newer epoch reaches us on the relay watch; an outage is
            // ridden out (clients still chat through this host).
            tracing::debug!(%status, epoch, "lease renewal failed");
        }
    }
}

impl RoomHost {
    /// Moves the host role to the next connected member, make-before-break.
    pub async fn hand_off(&self) -> Result<HostRecord, HandoffError> {
        let (epoch, successors) = {
            let core = self.core();
            let Role::Live { epoch } = core.tenure.role() else {
                return Err(HandoffError::NotHost);
            };
            (epoch, core.successors(&self.node.identity.name))
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
        let mut peer =
            peer_client(&self.node.dialer, to).map_err(|e| successor_failed(to, e.into()))?;
        let started = Instant::now();
        // Make: ship the room while still serving, so the frozen part is short.
        let mut cursor = ReplicaCursor::default();
        self.sync_replica(&mut peer, epoch, &mut cursor)
            .await
            .map_err(|status| successor_failed(to, status))?;
        if !self.core().tenure.freeze(epoch) {
            return Err(HandoffError::NotHost);
        }
        let frozen = Instant::now();
        let record = self
            .move_while_frozen(&mut peer, epoch, &mut cursor, to)
            .await;
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                self.core().tenure.unfreeze(epoch);
                return Err(e);
            }
        };
        // Break: the relay points at the successor; tell it, then our clients.
        let reported = frozen.elapsed();
        self.tell_successor(&mut peer, epoch, &record).await;
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
        peer: &mut ChatServiceClient<Channel>,
        epoch: u64,
        cursor: &mut ReplicaCursor,
        to: &Member,
    ) -> Result<HostRecord, HandoffError> {
        self.sync_replica(peer, epoch, cursor)
            .await
            .map_err(|status| successor_failed(to, status))?;
        self.node
            .relay
            .report_migration(&self.node.identity, &self.room, epoch, &to.node_id)
            .await
            .map_err(HandoffError::Relay)
    }

    /// Tells the successor it hosts now, with the relay's signed record.
    /// A successor that does not confirm learns it from the relay.
    async fn tell_successor(
        &self,
        peer: &mut ChatServiceClient<Channel>,
        epoch: u64,
        record: &HostRecord,
    ) {
        let take_over = record
            .certificate
            .clone()
            .ok_or(NodeError::UncertifiedRecord)
            .and_then(|cert| self.signed_take_over(epoch, cert));
        let confirmed = match take_over {
            Ok(req) => peer.take_over(req).await.map(|_| ()),
            Err(error) => Err(error.into()),
        };
        if let Err(status) = confirmed {
            tracing::warn!(%status, "successor did not confirm takeover; it will learn from the relay");
        }
    }

    /// Removes members whose sessions have been gone longer than the
    /// relay's away grace.
    fn forget_away_members(&self) {
        let gone: Vec<String> = {
            let core = self.core();
            core.away_since
                .iter()
                .filter(|(_, since)| since.elapsed() > self.node.settings.away_grace)
                .map(|(name, _)| name.clone())
                .collect()
        };
        for name in gone {
            self.leave_room(&name);
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
