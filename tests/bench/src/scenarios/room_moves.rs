//! F's host moves: with every room hosted, workers move rooms' hosts by
//! `ReportMigration` as fast as the relay answers, a bounded number of
//! calls in flight. Each call comes from the room's current host at its
//! epoch (over that member's own connection) and names the other member
//! of the room hosting fewest rooms, as a real host picks (the relay
//! refuses a target above its fair share while a lighter one is in the
//! room); the answer gives the room's new epoch and host.

use super::room_members::Member;
use crate::procstat;
use crate::stats::{percentiles, Percentiles};
use crate::{BenchError, Result};
use chat_proto::pb::relay::{CurrentHostRequest, HostRecord, ReportMigrationRequest};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tonic::Code;

/// One room as the workers know it.
#[derive(Debug, Clone)]
pub struct Room {
    /// Its name.
    pub name: String,
    /// Its members (indices into the fleet).
    pub members: Vec<usize>,
    /// Its host (an index into the fleet).
    pub host: usize,
    /// Its host's epoch.
    pub epoch: u64,
}

/// What the moves came to.
#[derive(Debug, Default)]
pub struct Moves {
    /// Moves the relay made.
    pub done: u64,
    /// Moves refused with FAILED_PRECONDITION (placement, or a stale view).
    pub refused: u64,
    /// Calls that failed otherwise.
    pub failed: u64,
    /// From the first call until the last answer.
    pub elapsed: Duration,
    /// Latency of the moves made.
    pub latency: Percentiles,
    /// The relay's CPU time over the moves, in microseconds.
    pub relay_cpu_us: f64,
}

impl Moves {
    /// Moves made per second.
    pub fn per_second(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What the workers share.
struct Shared {
    members: Arc<Vec<Member>>,
    /// Fleet index by node id.
    index: HashMap<String, usize>,
    /// Rooms each member hosts, as the answers say.
    hosted: Vec<AtomicU32>,
}

/// One worker's count.
#[derive(Default)]
struct Tally {
    done: u64,
    refused: u64,
    failed: u64,
    latencies_ns: Vec<u64>,
}

/// Moves hosts of `rooms` for `measure` with `in_flight` calls at once
/// (each worker its own share of the rooms, so no room is moved twice at
/// once); the relay runs as `relay_pid`.
pub async fn drive(
    members: Arc<Vec<Member>>,
    rooms: Vec<Room>,
    in_flight: usize,
    measure: Duration,
    relay_pid: u32,
) -> Result<Moves> {
    let hosted: Vec<AtomicU32> = members.iter().map(|_| AtomicU32::new(0)).collect();
    for room in &rooms {
        hosted[room.host].fetch_add(1, Ordering::Relaxed);
    }
    let index = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.node_id.clone(), i))
        .collect();
    let shared = Arc::new(Shared {
        members,
        index,
        hosted,
    });
    let in_flight = in_flight.max(1);
    let mut shares: Vec<Vec<Room>> = vec![Vec::new(); in_flight];
    for (i, room) in rooms.into_iter().enumerate() {
        shares[i % in_flight].push(room);
    }
    let cpu_before = procstat::cpu_ticks(relay_pid)?;
    let started = Instant::now();
    let until = started + measure;
    let workers: Vec<_> = shares
        .into_iter()
        .map(|share| tokio::spawn(worker(shared.clone(), share, until)))
        .collect();
    let mut moves = Moves::default();
    let mut latencies = Vec::new();
    for worker in workers {
        let tally = worker
            .await
            .map_err(|e| BenchError::Setup(format!("move worker: {e}")))?;
        moves.done += tally.done;
        moves.refused += tally.refused;
        moves.failed += tally.failed;
        latencies.extend(tally.latencies_ns);
    }
    moves.elapsed = started.elapsed();
    let ticks = procstat::cpu_ticks(relay_pid)?.saturating_sub(cpu_before);
    moves.relay_cpu_us = ticks as f64 * 1e6 / procstat::ticks_per_second() as f64;
    moves.latency = percentiles(&mut latencies);
    Ok(moves)
}

/// Moves the hosts of `rooms`, one after the other and round again, until
/// `until`.
async fn worker(shared: Arc<Shared>, mut rooms: Vec<Room>, until: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut turn = (0..rooms.len()).cycle();
    while Instant::now() < until {
        let Some(room) = turn.next().and_then(|i| rooms.get_mut(i)) else {
            break;
        };
        let Some(to) = lightest_other(room, &shared.hosted) else {
            continue;
        };
        let started = Instant::now();
        match shared.report(room, to).await {
            Ok(record) => {
                tally.latencies_ns.push(started.elapsed().as_nanos() as u64);
                tally.done += 1;
                shared.learn(room, &record);
            }
            Err(status) if status.code() == Code::FailedPrecondition => {
                tally.refused += 1;
                // A stale view would be refused for ever: read it again.
                if let Ok(record) = shared.current(room).await {
                    shared.learn(room, &record);
                }
            }
            Err(_) => tally.failed += 1,
        }
    }
    tally
}

/// The member of `room` other than its host that hosts fewest rooms.
fn lightest_other(room: &Room, hosted: &[AtomicU32]) -> Option<usize> {
    room.members
        .iter()
        .copied()
        .filter(|&m| m != room.host)
        .min_by_key(|&m| hosted[m].load(Ordering::Relaxed))
}

impl Shared {
    /// The room's host reports moving the room to member `to`.
    async fn report(&self, room: &Room, to: usize) -> Result<HostRecord, tonic::Status> {
        let host = &self.members[room.host];
        let request = ReportMigrationRequest {
            from_epoch: room.epoch,
            to_node_id: self.members[to].node_id.clone(),
            node_id: host.node_id.clone(),
            session_token: host.token.clone(),
            room: room.name.clone(),
        };
        let answer = host.client.clone().report_migration(request).await?;
        Ok(answer.into_inner())
    }

    /// The room's current host record, asked over its host's connection.
    async fn current(&self, room: &Room) -> Result<HostRecord, tonic::Status> {
        let request = CurrentHostRequest {
            room: room.name.clone(),
        };
        let host = &self.members[room.host];
        Ok(host
            .client
            .clone()
            .current_host(request)
            .await?
            .into_inner())
    }

    /// Takes `record` as the room's host, moving the counts.
    fn learn(&self, room: &mut Room, record: &HostRecord) {
        let Some(&host) = self.index.get(&record.node_id) else {
            return;
        };
        if record.epoch < room.epoch {
            return;
        }
        if host != room.host {
            self.hosted[room.host].fetch_sub(1, Ordering::Relaxed);
            self.hosted[host].fetch_add(1, Ordering::Relaxed);
        }
        room.host = host;
        room.epoch = record.epoch;
    }
}
