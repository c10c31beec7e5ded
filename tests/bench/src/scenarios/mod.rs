//! The six scenarios and their sizes.
//!
//! - A, fan-out throughput: [`fanout`]
//! - B, latency under load, and C, many clients: [`load`]
//! - D, migration pause: [`migration`] (ours only)
//! - E, crash failover: [`failover`] (ours only), in a crowd and in a
//!   two-member room
//! - F, what a room costs at the relay: [`rooms`] (ours only)
//! - G, catch-up of a late joiner: [`catchup`] (ours and bare tonic
//!   signed)

pub mod catchup;
pub mod failover;
pub mod fanout;
pub mod load;
pub mod migration;
pub mod proc_crowd;
pub mod room_members;
pub mod room_moves;
pub mod rooms;
pub mod timing;
pub mod tracker;

use crate::stats::Phase;
use crate::systems::{Deployment, Receiver, Subscription};
use crate::{BenchError, Result};
use futures_util::{StreamExt, TryStreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Sizes of A.
#[derive(Debug, Clone, Copy)]
pub struct FanoutSpec {
    /// Subscribers (for ours, member processes that check what they show).
    pub subs: usize,
    /// Time before measuring.
    pub warmup: Duration,
    /// Measured time.
    pub measure: Duration,
}

/// Sizes of B and C: publishers at a fixed total rate.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    /// Subscribers.
    pub subs: usize,
    /// Publishers.
    pub pubs: usize,
    /// Messages per second, all publishers together.
    pub rate: u32,
    /// Time before measuring (also the pause between attaching the
    /// subscribers and reading the server's memory).
    pub warmup: Duration,
    /// Measured time.
    pub measure: Duration,
    /// Ours only: subscribers that are member processes, checking what
    /// they show on their own CPU (the first `members` of `subs`).
    pub members: usize,
    /// Ours only: thin subscribers instead of full nodes in this process
    /// (besides the member processes).
    pub thin: bool,
    /// Ours only: fewer subscribers than the others, when `subs` would not
    /// join in reasonable time.
    pub ours_subs: Option<usize>,
    /// Measure idle server memory per connection.
    pub memory: bool,
}

/// Sizes of D.
#[derive(Debug, Clone, Copy)]
pub struct MigrationSpec {
    /// Clients (full nodes), publishers among them.
    pub clients: usize,
    /// Publishing clients.
    pub pubs: usize,
    /// Messages per second, all publishers together.
    pub rate: u32,
    /// Planned migration interval.
    pub interval: Duration,
    /// Migrations to see, at least.
    pub migrations: u64,
}

/// Sizes of one run of E.
#[derive(Debug, Clone, Copy)]
pub struct FailoverSpec {
    /// Member node processes, publishers among them (more than `kills`,
    /// unless `replace`).
    pub members: usize,
    /// Publishing clients.
    pub pubs: usize,
    /// Messages per second, all publishers together.
    pub rate: u32,
    /// Host kills.
    pub kills: usize,
    /// Pause after a recovery before the next kill.
    pub settle: Duration,
    /// A new member joins after each kill (but the last) and catches up,
    /// so the room has `members` again at the next kill: a two-member
    /// room survives more than one kill only this way.
    pub replace: bool,
}

/// Sizes of F.
#[derive(Debug, Clone, Copy)]
pub struct RoomsSpec {
    /// Registered members.
    pub members: usize,
    /// Rooms.
    pub rooms: usize,
    /// Members of each room.
    pub per_room: usize,
    /// ReportMigration calls in flight at once.
    pub in_flight: usize,
    /// How long hosts are moved.
    pub measure: Duration,
}

/// Sizes of G.
#[derive(Debug, Clone, Copy)]
pub struct CatchupSpec {
    /// Messages in the history.
    pub messages: u64,
    /// Their senders, each with its own key and chain.
    pub senders: u32,
    /// Longest ours may take to fill the history (then it uses what it
    /// filled).
    pub fill_limit: Duration,
    /// Longest the late joiner may take to show it.
    pub join_limit: Duration,
}

/// Sizes of every scenario.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Whether this is the quick plan.
    pub quick: bool,
    /// A.
    pub fanout: FanoutSpec,
    /// B.
    pub latency: LoadSpec,
    /// C.
    pub many: LoadSpec,
    /// D.
    pub migration: MigrationSpec,
    /// E, a crowd.
    pub failover: FailoverSpec,
    /// E, a two-member room.
    pub failover_pair: FailoverSpec,
    /// F.
    pub rooms: RoomsSpec,
    /// G.
    pub catchup: CatchupSpec,
}

const fn secs(s: f64) -> Duration {
    Duration::from_millis((s * 1000.0) as u64)
}

impl Plan {
    /// The sizes the issue asks for.
    pub const FULL: Plan = Plan {
        quick: false,
        fanout: FanoutSpec {
            subs: 10,
            warmup: secs(1.0),
            measure: secs(5.0),
        },
        latency: LoadSpec {
            subs: 100,
            pubs: 10,
            rate: 1000,
            warmup: secs(2.0),
            measure: secs(10.0),
            members: 10,
            thin: true,
            ours_subs: None,
            memory: false,
        },
        many: LoadSpec {
            subs: 1000,
            pubs: 1,
            rate: 100,
            warmup: secs(2.0),
            measure: secs(10.0),
            members: 0,
            thin: true,
            ours_subs: None,
            memory: true,
        },
        migration: MigrationSpec {
            clients: 100,
            pubs: 10,
            rate: 200,
            interval: secs(2.0),
            migrations: 20,
        },
        failover: FailoverSpec {
            members: 16,
            pubs: 2,
            rate: 200,
            kills: 10,
            settle: secs(1.5),
            replace: false,
        },
        failover_pair: FailoverSpec {
            members: 2,
            pubs: 1,
            rate: 200,
            kills: 10,
            settle: secs(1.5),
            replace: true,
        },
        rooms: RoomsSpec {
            members: 1000,
            rooms: 10_000,
            per_room: 3,
            in_flight: 32,
            measure: secs(10.0),
        },
        catchup: CatchupSpec {
            messages: 1_000_000,
            senders: 100,
            fill_limit: secs(240.0),
            join_limit: secs(600.0),
        },
    };

    /// Every scenario small, for CI.
    pub const QUICK: Plan = Plan {
        quick: true,
        fanout: FanoutSpec {
            subs: 10,
            warmup: secs(0.3),
            measure: secs(1.0),
        },
        latency: LoadSpec {
            subs: 20,
            pubs: 10,
            rate: 1000,
            warmup: secs(0.3),
            measure: secs(1.0),
            members: 5,
            thin: true,
            ours_subs: None,
            memory: false,
        },
        many: LoadSpec {
            subs: 50,
            pubs: 1,
            rate: 100,
            warmup: secs(0.3),
            measure: secs(1.0),
            members: 0,
            thin: true,
            ours_subs: None,
            memory: true,
        },
        migration: MigrationSpec {
            clients: 20,
            pubs: 4,
            rate: 200,
            interval: secs(0.5),
            migrations: 3,
        },
        failover: FailoverSpec {
            members: 6,
            pubs: 2,
            rate: 200,
            kills: 2,
            settle: secs(0.8),
            replace: false,
        },
        failover_pair: FailoverSpec {
            members: 2,
            pubs: 1,
            rate: 200,
            kills: 3,
            settle: secs(0.8),
            replace: true,
        },
        rooms: RoomsSpec {
            members: 200,
            rooms: 1000,
            per_room: 3,
            in_flight: 32,
            measure: secs(2.0),
        },
        catchup: CatchupSpec {
            messages: 20_000,
            senders: 100,
            fill_limit: secs(30.0),
            join_limit: secs(60.0),
        },
    };
}

/// Attaches `n` subscribers, a few at a time, each ready when this
/// returns: for ours, the first `members` member processes, the others
/// thin subscribers if `thin`, full nodes in this process if not.
pub async fn attach(
    dep: &Deployment,
    n: usize,
    phase: &Arc<Phase>,
    members: usize,
    thin: bool,
) -> Result<Vec<Subscription>> {
    let how = |i: usize| match () {
        _ if i < members => Receiver::Member,
        _ if thin => Receiver::Thin,
        _ => Receiver::InProcess,
    };
    futures_util::stream::iter(0..n)
        .map(|i| dep.subscribe(i, phase, how(i)))
        .buffered(16)
        .try_collect()
        .await
}

/// A publisher task's own result; its panic a setup error.
pub async fn join_publisher<T>(task: JoinHandle<T>) -> Result<T> {
    task.await
        .map_err(|e| BenchError::Setup(format!("publisher task: {e}")))
}

/// What a result says after its numbers when delivery had not completed
/// by the deadline.
pub fn incomplete_note(complete: bool) -> &'static str {
    if complete {
        ""
    } else {
        " (delivery incomplete at the deadline)"
    }
}

/// Milliseconds in a duration, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
