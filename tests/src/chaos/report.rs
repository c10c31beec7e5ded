//! What a chaos run saw, and its summary.

use std::collections::BTreeMap;

/// What the run saw.
#[derive(Debug, Default)]
pub struct ChaosReport {
    /// Epoch changes by planned migration (epochs minus kills).
    pub migrations: u64,
    /// Host kills done.
    pub host_kills: usize,
    /// Relay restarts done.
    pub relay_restarts: usize,
    /// Messages typed.
    pub sent: usize,
    /// Messages acknowledged.
    pub acked: usize,
    /// Acknowledged messages missing from a survivor's log.
    pub lost: usize,
    /// Messages shown twice.
    pub dup: usize,
    /// Survivors whose log differs from the first one's, or has gaps.
    pub reordered: usize,
    /// Reports by honest members that a host served something that does
    /// not check out (none may occur: every node is honest).
    pub tampering: usize,
    /// Every host kill's failover, in kill order.
    pub failovers: Vec<Failover>,
    /// The same counts, room by room.
    pub rooms: BTreeMap<String, RoomTally>,
}

/// One host kill and how long its room took to chat again.
#[derive(Debug, Clone)]
pub struct Failover {
    /// The room whose host was killed.
    pub room: String,
    /// Its members, the killed host included.
    pub members: usize,
    /// Kill to every surviving member of the room showing a message sent
    /// after it, in ms.
    pub ms: u64,
}

/// What the run saw in one room.
#[derive(Debug, Default, Clone, Copy)]
pub struct RoomTally {
    /// Messages acknowledged.
    pub acked: usize,
    /// Acknowledged messages missing from a survivor's log.
    pub lost: usize,
    /// Messages shown twice.
    pub dup: usize,
    /// Survivors whose log differs from the first one's, or has gaps.
    pub reordered: usize,
    /// Tampering reports by its members.
    pub tampering: usize,
}

impl ChaosReport {
    /// Kills in rooms of `members` members.
    pub fn kills_in_rooms_of(&self, members: usize) -> usize {
        self.failovers
            .iter()
            .filter(|f| f.members == members)
            .count()
    }

    /// The worst failover by room size: `(members, ms)`, smallest rooms
    /// first.
    pub fn failover_max_by_size(&self) -> BTreeMap<usize, u64> {
        let mut worst = BTreeMap::new();
        for f in &self.failovers {
            let w = worst.entry(f.members).or_insert(0);
            *w = f.ms.max(*w);
        }
        worst
    }

    /// The summary line, then a line per room.
    pub fn summary(&self) -> String {
        let mut f: Vec<u64> = self.failovers.iter().map(|f| f.ms).collect();
        f.sort_unstable();
        let p50 = f.get(f.len() / 2).copied().unwrap_or(0);
        let max = f.last().copied().unwrap_or(0);
        let by_size: Vec<String> = self
            .failover_max_by_size()
            .iter()
            .map(|(members, ms)| format!("{members}:{ms}"))
            .collect();
        let rooms: Vec<String> = self
            .rooms
            .iter()
            .map(|(room, t)| {
                format!(
                    "#{room}: acked={} lost={} dup={} reordered={} tampering={}",
                    t.acked, t.lost, t.dup, t.reordered, t.tampering
                )
            })
            .collect();
        format!(
            "migrations={} host_kills={} relay_restarts={} sent={} acked={} lost={} dup={} reordered={} tampering={} failover_p50_ms={p50} failover_max_ms={max} failover_max_ms_by_size={}\n{}",
            self.migrations, self.host_kills, self.relay_restarts, self.sent, self.acked, self.lost, self.dup, self.reordered, self.tampering,
            by_size.join(","),
            rooms.join("\n")
        )
    }
}
