//! One room's host duties over time, while this node hosts it: keeping
//! the successor current and the lease renewed (each in its own task), the
//! planned migration on the room's own schedule, and forgetting members
//! that stayed away.

use super::handoff::HandoffError;
use super::successor::{replicate_while_hosting, Naming};
use super::{Role, RoomHost};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// How often away members are looked for.
const AWAY_CHECK: Duration = Duration::from_secs(1);

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
        let period = host.ctx.settings.migration_interval;
        let mut migrate =
            tokio::time::interval_at((Instant::now() + first_move(period)).into(), period);
        migrate.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut away = tokio::time::interval(AWAY_CHECK);
        while host.role().hosting_epoch() == Some(epoch) {
            tokio::select! {
                _ = migrate.tick() => match host.hand_off().await {
                    Ok(to) => tracing::info!(epoch = to.epoch, to = %to.name, "handed the chat off"),
                    Err(HandoffError::NoSuccessor) => tracing::debug!("alone: the chat stays here"),
                    Err(e) => {
                        tracing::warn!(error = %e, "planned migration failed; still hosting");
                        // Try again soon: the relay takes the room from a
                        // host that keeps it past twice the interval.
                        migrate.reset_after(period / 4);
                    }
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
    let mut tick = tokio::time::interval(host.ctx.settings.lease / 4);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while host.role().hosting_epoch() == Some(epoch) {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        host.expire_by_age();
        if let Err(status) = host.renew_lease(epoch, Naming::Current).await {
            // A newer epoch reaches us on the relay watch; an outage is
            // ridden out (clients still chat through this host).
            tracing::debug!(%status, epoch, "lease renewal failed");
        }
    }
}

impl RoomHost {
    /// Drops the entries older than the relay's `--history-max-age` (new
    /// messages apply it as they are sequenced; a quiet room here). The
    /// disk follows at once, the copies with the next replication.
    fn expire_by_age(&self) {
        let retention = self.retention();
        if retention.max_age_ms.is_none() {
            return;
        }
        let now = chat_proto::trust::now_unix_ms();
        let cut = self
            .core()
            .room
            .as_mut()
            .and_then(|room| room.retain(retention, now));
        if cut.is_some() {
            self.copy_changed();
        }
    }

    /// Removes members whose sessions have been gone longer than the
    /// relay's away grace.
    fn forget_away_members(&self) {
        let grace = self.ctx.settings.away_grace;
        let gone = self
            .core()
            .attendance
            .away_longer_than(grace, Instant::now());
        for name in gone {
            self.leave_room(&name);
        }
    }
}
