//! F, what a room costs at the relay (ours only): the relay's resident
//! memory per registered member and per room, and the host moves per
//! second it sustains across many hosted rooms.
//!
//! A relay process starts with leases, migration interval and member grace
//! of an hour, so nothing moves by itself. Its RSS is read idle, after
//! `members` members registered (each with its own key, connection and
//! watch stream, reachable at this process's health server), and after
//! `rooms` rooms of `per_room` members each were joined and got their
//! first hosts. Then [`room_moves`] moves hosts for `measure`.

use super::room_members::{Fleet, HealthServer, Member, SETUP_IN_FLIGHT};
use super::room_moves::{self, Moves, Room};
use super::RoomsSpec;
use crate::children::Server;
use crate::report::{Row, ScenarioId};
use crate::systems::SystemKind;
use crate::{procstat, within, BenchError, Result};
use chat_proto::pb::relay::{JoinRoomRequest, ListRoomsRequest, RoomClaim, RoomInfo};
use futures_util::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::time::Duration;

/// Lease, migration interval and member grace of the relay: longer than
/// the run, so no host moves but by the benchmark's reports.
const QUIET: &str = "1h";
/// How long setting up (registering, joining, first hosts) may take.
const SETUP_LIMIT: Duration = Duration::from_secs(300);
/// How often the rooms' hosts are listed while waiting for them.
const POLL: Duration = Duration::from_millis(50);
/// Rooms per ListRooms page (the relay's most).
const PAGE: u32 = 1000;

/// Runs F.
pub async fn run(spec: RoomsSpec) -> Result<Row> {
    if spec.members < spec.per_room.max(2) {
        return Err(BenchError::Setup(format!(
            "{} members cannot fill rooms of {}",
            spec.members, spec.per_room
        )));
    }
    let args = [
        "relay",
        "--migration-interval",
        QUIET,
        "--lease",
        QUIET,
        "--member-grace",
        QUIET,
    ];
    let relay = Server::spawn_self("relay", &args).await?;
    let outcome = match HealthServer::start().await {
        Ok(health) => {
            let outcome = measure(&relay, &health.addr.to_string(), spec).await;
            health.stop().await;
            outcome
        }
        Err(e) => Err(e),
    };
    relay.stop().await;
    outcome
}

/// The relay's resident memory at each step, in bytes.
#[derive(Debug, Clone, Copy)]
struct Memory {
    idle: u64,
    members: u64,
    rooms: u64,
    after_moves: u64,
}

async fn measure(relay: &Server, member_address: &str, spec: RoomsSpec) -> Result<Row> {
    let uri = format!("http://{}", relay.addr);
    let rss = || procstat::rss_bytes(relay.pid);
    let idle = rss()?;
    let fleet = within(SETUP_LIMIT, "the members to register", async {
        let fleet = Fleet::register(&uri, member_address, spec.members).await?;
        fleet.wait_reachable().await?;
        Ok(fleet)
    })
    .await?;
    let members = rss()?;
    eprintln!(
        "chat-bench:   {} members registered and reachable",
        spec.members
    );
    let rooms = within(SETUP_LIMIT, "the rooms to get hosts", async {
        create_rooms(&fleet.members, spec).await?;
        wait_hosted(&fleet.members, spec).await
    })
    .await?;
    let with_rooms = rss()?;
    eprintln!("chat-bench:   {} rooms hosted", rooms.len());
    let moves = room_moves::drive(
        fleet.members.clone(),
        rooms,
        spec.in_flight,
        spec.measure,
        relay.pid,
    )
    .await?;
    let memory = Memory {
        idle,
        members,
        rooms: with_rooms,
        after_moves: rss()?,
    };
    let watches_ended = fleet.watches_ended();
    fleet.close().await;
    if watches_ended > 0 {
        return Err(BenchError::Setup(format!(
            "{watches_ended} watch streams ended during the run"
        )));
    }
    Ok(row(&spec, &memory, &moves))
}

/// The name of room `i`.
fn room_name(i: usize) -> String {
    format!("r{i:05}")
}

/// The members of room `i`: `per_room` neighbours, so every member is in
/// about as many rooms as any other.
fn room_members(i: usize, spec: &RoomsSpec) -> Vec<usize> {
    (0..spec.per_room)
        .map(|k| (i * spec.per_room + k) % spec.members)
        .collect()
}

/// Every member of every room joins it (rooms a few at a time, the
/// members of one room one after the other).
async fn create_rooms(members: &[Member], spec: RoomsSpec) -> Result<()> {
    futures_util::stream::iter(0..spec.rooms)
        .map(|i| async move {
            for m in room_members(i, &spec) {
                join(&members[m], &room_name(i)).await?;
            }
            Ok::<_, BenchError>(())
        })
        .buffer_unordered(SETUP_IN_FLIGHT)
        .try_collect::<()>()
        .await
}

/// One member joins one room, holding nothing of it yet.
async fn join(member: &Member, room: &str) -> Result<()> {
    let request = JoinRoomRequest {
        node_id: member.node_id.clone(),
        session_token: member.token.clone(),
        claim: Some(RoomClaim {
            room: room.to_string(),
            ..Default::default()
        }),
    };
    member.client.clone().join_room(request).await?;
    Ok(())
}

/// Waits until every room has its first host (the relay chooses it at
/// its next lease check); the rooms with their hosts.
async fn wait_hosted(members: &[Member], spec: RoomsSpec) -> Result<Vec<Room>> {
    let by_name: HashMap<&str, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    loop {
        let listed = list_rooms(&members[0]).await?;
        let hosted: HashMap<&str, &RoomInfo> = listed
            .iter()
            .filter(|r| !r.host.is_empty())
            .map(|r| (r.name.as_str(), r))
            .collect();
        let rooms: Option<Vec<Room>> = (0..spec.rooms)
            .map(|i| {
                let name = room_name(i);
                let info = hosted.get(name.as_str())?;
                Some(Room {
                    host: *by_name.get(info.host.as_str())?,
                    epoch: info.epoch,
                    members: room_members(i, &spec),
                    name,
                })
            })
            .collect();
        if let Some(rooms) = rooms {
            return Ok(rooms);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Every room the relay knows, page by page.
async fn list_rooms(member: &Member) -> Result<Vec<RoomInfo>> {
    let mut client = member.client.clone();
    let mut rooms: Vec<RoomInfo> = Vec::new();
    loop {
        let after = rooms.last().map(|r| r.name.clone()).unwrap_or_default();
        let page = client
            .list_rooms(ListRoomsRequest { after, limit: PAGE })
            .await?
            .into_inner();
        rooms.extend(page.rooms);
        if !page.more {
            return Ok(rooms);
        }
    }
}

/// F's row.
fn row(spec: &RoomsSpec, memory: &Memory, moves: &Moves) -> Row {
    let mut row = Row::new(
        ScenarioId::F,
        SystemKind::Ours,
        format!(
            "{} members, {} rooms of {}; {} moves in flight",
            spec.members, spec.rooms, spec.per_room, spec.in_flight
        ),
    );
    let per = |from: u64, to: u64, n: usize| to.saturating_sub(from) as f64 / n.max(1) as f64;
    let per_member = per(memory.idle, memory.members, spec.members);
    let per_room = per(memory.members, memory.rooms, spec.rooms);
    row.set("members", spec.members as f64);
    row.set("rooms", spec.rooms as f64);
    row.set("relay_rss_idle_mb", mb(memory.idle));
    row.set("relay_rss_members_mb", mb(memory.members));
    row.set("relay_rss_rooms_mb", mb(memory.rooms));
    row.set("relay_rss_after_moves_mb", mb(memory.after_moves));
    row.set("bytes_per_member", per_member);
    row.set("bytes_per_room", per_room);
    row.set("moves", moves.done as f64);
    row.set("moves_per_s", moves.per_second());
    row.set("move_p50_ms", moves.latency.p50_ms);
    row.set("move_p99_ms", moves.latency.p99_ms);
    row.set("move_max_ms", moves.latency.max_ms);
    row.set("moves_refused", moves.refused as f64);
    row.set("moves_failed", moves.failed as f64);
    let cpu_per_move = moves.relay_cpu_us / moves.done.max(1) as f64;
    row.set("relay_cpu_us_per_move", cpu_per_move);
    row.result = format!(
        "relay memory {:.1} KB per member, {:.2} KB per room; {:.0} host moves/s \
         (ReportMigration p50 {:.2} ms, p99 {:.2} ms; relay CPU {:.0} us/move); \
         {} refused, {} failed",
        per_member / 1024.0,
        per_room / 1024.0,
        moves.per_second(),
        moves.latency.p50_ms,
        moves.latency.p99_ms,
        cpu_per_move,
        moves.refused,
        moves.failed
    );
    row
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::Plan;

    #[test]
    fn every_room_has_distinct_members_and_members_share_the_rooms_evenly() {
        for spec in [Plan::QUICK.rooms, Plan::FULL.rooms] {
            let mut rooms_of = vec![0usize; spec.members];
            for i in 0..spec.rooms {
                let mut members = room_members(i, &spec);
                members.iter().for_each(|&m| rooms_of[m] += 1);
                members.sort_unstable();
                members.dedup();
                assert_eq!(members.len(), spec.per_room, "room {i}");
            }
            let even = spec.rooms * spec.per_room / spec.members;
            assert!(rooms_of.iter().all(|&n| n.abs_diff(even) <= 1));
        }
    }
}
