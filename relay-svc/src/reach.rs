//! Reachability: the relay checks, with a health call under a short
//! deadline, that it can reach each member's advertised address, when the
//! member registers and then every few seconds. Only members it reaches
//! are made host or successor (see [`crate::registry::Member::can_host`]),
//! so a member behind a router still chats but never stalls the room.

use crate::registry::ReachCheck;
use crate::service::Shared;
use chat_proto::health_check::{self, ServingStatus, TlsCheck};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

/// How long one check may take, connection and TLS handshake included.
pub const CHECK_DEADLINE: Duration = Duration::from_secs(1);
/// Checks under way at once, at most.
const MAX_CONCURRENT: usize = 16;
/// How often due checks are looked for (a new member is checked within
/// this of registering).
const LOOK_PERIOD: Duration = Duration::from_millis(50);

/// Checks members' addresses for as long as the relay runs.
pub async fn check_members(shared: Arc<Shared>) {
    let mut look = tokio::time::interval(LOOK_PERIOD);
    look.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Bounded by the members: each is queued or under way at most once.
    let mut queue: VecDeque<ReachCheck> = VecDeque::new();
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            _ = look.tick() => queue.extend(shared.due_checks()),
            Some(done) = running.join_next() => match done {
                Ok((check, reached)) => shared.record_check(&check, reached),
                Err(e) => tracing::error!(error = %e, "a reachability check failed to run"),
            },
        }
        while running.len() < MAX_CONCURRENT {
            let Some(check) = queue.pop_front() else {
                break;
            };
            let tls = shared.check_tls(&check.node_id);
            running.spawn(async move {
                let reached = reaches(&check.address, tls.as_ref()).await;
                (check, reached)
            });
        }
    }
}

/// Whether a health call to `address` answers SERVING within the deadline.
async fn reaches(address: &str, tls: Option<&TlsCheck>) -> bool {
    match health_check::check(address, "", CHECK_DEADLINE, tls).await {
        Ok(status) => status == ServingStatus::Serving,
        Err(error) => {
            tracing::debug!(%error, "member address not reached");
            false
        }
    }
}
