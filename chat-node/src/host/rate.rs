//! A token bucket for each member's send rate: `burst` messages at once,
//! then `per_second` on average. One bucket per member (by node id),
//! shared by all of its sessions in the room ([`MemberRates`]), so opening
//! more sessions buys no more messages.
//!
//! Tokens are counted in integer units of a billionth of a token, so that
//! one nanosecond adds exactly `per_second` units: no rounding drift however
//! the calls are spaced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// Units in one token: one nanosecond refills `per_second` units.
const UNIT: u128 = 1_000_000_000;

/// Limits how often one member may send.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens added per second; 0 means no limit.
    per_second: u32,
    /// Most units held (burst tokens).
    capacity: u128,
    /// Units held at `updated`.
    units: u128,
    /// When `units` was last brought up to date.
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens (at least 1) refilled at `per_second`
    /// tokens a second from `now`. `per_second == 0` lets everything through.
    pub fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        let capacity = u128::from(burst.max(1)) * UNIT;
        Self {
            per_second,
            capacity,
            units: capacity,
            updated: now,
        }
    }

    /// Takes one token at `now`, or says how long until one is available.
    /// An `now` earlier than a previous call counts as no time passing.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        if self.per_second == 0 {
            return Ok(());
        }
        self.refill(now);
        match self.units.checked_sub(UNIT) {
            Some(left) => {
                self.units = left;
                Ok(())
            }
            None => Err(self.wait_for(UNIT - self.units)),
        }
    }

    /// The units the bucket holds at `now`, without taking any: at
    /// capacity, forgetting it loses nothing (a new one starts full).
    fn units_at(&self, now: Instant) -> u128 {
        let mut later = self.clone();
        later.refill(now);
        later.units
    }

    /// Adds the units earned since the last update, up to the capacity.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_nanos();
        let earned = elapsed.saturating_mul(u128::from(self.per_second));
        self.units = self.units.saturating_add(earned).min(self.capacity);
        self.updated = self.updated.max(now);
    }

    /// How long until `missing` units have been earned, rounded up to the
    /// nanosecond so that waiting that long is always enough.
    fn wait_for(&self, missing: u128) -> Duration {
        let nanos = missing.div_ceil(u128::from(self.per_second));
        // At most UNIT nanoseconds (one second), so it fits.
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Buckets of members with no session kept (until full), at most.
const IDLE_BUCKETS_KEPT: usize = 4096;

/// One member's bucket and how many sessions it has open.
#[derive(Debug)]
struct Bucket {
    bucket: TokenBucket,
    sessions: usize,
}

/// The send rate of every member of a room, by node id, shared by all
/// of a member's sessions. A member's bucket is kept while it has a
/// session, and after its last session closes only until it is full
/// again (so closing and opening a session refills nothing early), and
/// never for more than [`IDLE_BUCKETS_KEPT`] members without a session:
/// the map is bounded by the sessions open.
#[derive(Debug)]
pub struct MemberRates {
    per_second: u32,
    burst: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl MemberRates {
    /// Rates of `per_second` messages a second (0: no limit) after a
    /// burst of `burst`, for each member.
    pub fn new(per_second: u32, burst: u32) -> Arc<Self> {
        Arc::new(Self {
            per_second,
            burst,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    fn buckets(&self) -> MutexGuard<'_, HashMap<String, Bucket>> {
        // Each change is a single insert, update or removal.
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session of member `node_id` opened at `now`: its handle on the
    /// member's bucket (a full one if the member had none), which counts
    /// the session until dropped.
    pub fn session(self: &Arc<Self>, node_id: &str, now: Instant) -> SessionRate {
        let mut buckets = self.buckets();
        forget_idle(&mut buckets, now);
        buckets
            .entry(node_id.to_string())
            .or_insert_with(|| Bucket {
                bucket: TokenBucket::new(self.per_second, self.burst, now),
                sessions: 0,
            })
            .sessions += 1;
        SessionRate {
            rates: self.clone(),
            node_id: node_id.to_string(),
        }
    }

    /// Members with a bucket (tests).
    #[cfg(test)]
    fn members(&self) -> usize {
        self.buckets().len()
    }
}

/// Drops the buckets of members without a session that are full at
/// `now`, then, beyond [`IDLE_BUCKETS_KEPT`] idle ones, the fullest.
fn forget_idle(buckets: &mut HashMap<String, Bucket>, now: Instant) {
    buckets.retain(|_, b| b.sessions > 0 || b.bucket.units_at(now) < b.bucket.capacity);
    let idle = buckets.values().filter(|b| b.sessions == 0).count();
    let excess = idle.saturating_sub(IDLE_BUCKETS_KEPT);
    if excess == 0 {
        return;
    }
    let mut fullest: Vec<(u128, String)> = buckets
        .iter()
        .filter(|(_, b)| b.sessions == 0)
        .map(|(id, b)| (b.bucket.units_at(now), id.clone()))
        .collect();
    fullest.sort_unstable_by_key(|(units, _)| std::cmp::Reverse(*units));
    for (_, id) in fullest.into_iter().take(excess) {
        buckets.remove(&id);
    }
}

/// One session's share of its member's bucket; dropping it ends the
/// session's count.
#[derive(Debug)]
pub struct SessionRate {
    rates: Arc<MemberRates>,
    node_id: String,
}

impl SessionRate {
    /// Takes one token of the member's at `now`, or says how long until
    /// one is available.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.rates.buckets();
        match buckets.get_mut(&self.node_id) {
            Some(b) => b.bucket.try_take(now),
            // Never: a bucket stays while a session counts on it.
            None => Ok(()),
        }
    }
}

impl Drop for SessionRate {
    fn drop(&mut self) {
        let mut buckets = self.rates.buckets();
        if let Some(b) = buckets.get_mut(&self.node_id) {
            b.sessions = b.sessions.saturating_sub(1);
        }
        forget_idle(&mut buckets, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> Instant {
        Instant::from_std(std::time::Instant::now())
    }

    #[test]
    fn zero_per_second_is_unlimited() {
        let t0 = start();
        let mut bucket = TokenBucket::new(0, 0, t0);
        for _ in 0..10_000 {
            assert_eq!(bucket.try_take(t0), Ok(()));
        }
    }

    #[test]
    fn a_burst_then_the_steady_rate() {
        let t0 = start();
        let mut bucket = TokenBucket::new(2, 3, t0);
        for _ in 0..3 {
            assert_eq!(bucket.try_take(t0), Ok(()));
        }
        assert_eq!(bucket.try_take(t0), Err(Duration::from_millis(500)));
        let t1 = t0 + Duration::from_millis(499);
        assert_eq!(bucket.try_take(t1), Err(Duration::from_millis(1)));
        assert_eq!(bucket.try_take(t0 + Duration::from_millis(500)), Ok(()));
        assert!(bucket.try_take(t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn the_bucket_never_holds_more_than_the_burst() {
        let t0 = start();
        let mut bucket = TokenBucket::new(10, 2, t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(bucket.try_take(later), Ok(()));
        assert_eq!(bucket.try_take(later), Ok(()));
        assert_eq!(bucket.try_take(later), Err(Duration::from_millis(100)));
    }

    #[test]
    fn waiting_the_answer_is_exactly_enough_without_drift() {
        let t0 = start();
        // 3 a second: 333_333_333.3 ns per token, which a float or a whole
        // nanosecond interval would round. (Burst 2, so a wait rounded up to
        // the nanosecond never overflows a full bucket and loses the excess.)
        let mut bucket = TokenBucket::new(3, 2, t0);
        let mut now = t0;
        let mut taken = 0;
        while now <= t0 + Duration::from_secs(30) {
            match bucket.try_take(now) {
                Ok(()) => taken += 1,
                Err(wait) => {
                    assert!(wait > Duration::ZERO);
                    let just_short = now + wait - Duration::from_nanos(1);
                    assert!(bucket.clone().try_take(just_short).is_err());
                    now += wait;
                }
            }
        }
        // Two at t0, then exactly 3 a second: the 90th lands on 30 s itself.
        assert_eq!(taken, 2 + 3 * 30);
    }

    #[test]
    fn an_earlier_instant_adds_nothing() {
        let t0 = start();
        let later = t0 + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(1, 1, later);
        assert_eq!(bucket.try_take(later), Ok(()));
        assert_eq!(bucket.try_take(t0), Err(Duration::from_secs(1)));
        assert_eq!(bucket.try_take(later + Duration::from_secs(1)), Ok(()));
    }

    // Paused time: a dropped session's handle reads the same clock.
    #[tokio::test(start_paused = true)]
    async fn a_members_sessions_share_one_bucket() {
        let t0 = Instant::now();
        let rates = MemberRates::new(1, 3);
        let first = rates.session("m1", t0);
        let second = rates.session("m1", t0);
        let other = rates.session("m2", t0);
        let taken = [&first, &second, &first, &second]
            .iter()
            .filter(|s| s.try_take(t0).is_ok())
            .count();
        assert_eq!(taken, 3, "the burst, whichever session asks");
        assert_eq!(second.try_take(t0), Err(Duration::from_secs(1)));
        // A third session brings no fresh burst.
        let third = rates.session("m1", t0);
        assert!(third.try_take(t0).is_err());
        assert_eq!(first.try_take(t0 + Duration::from_secs(1)), Ok(()));
        // Another member has a bucket of its own.
        assert_eq!(other.try_take(t0), Ok(()));
    }

    // Paused time: a dropped session's handle reads the same clock.
    #[tokio::test(start_paused = true)]
    async fn a_members_bucket_outlives_its_sessions_until_it_is_full() {
        let t0 = Instant::now();
        let rates = MemberRates::new(1, 2);
        let session = rates.session("m1", t0);
        assert_eq!(session.try_take(t0), Ok(()));
        assert_eq!(session.try_take(t0), Ok(()));
        drop(session);
        // Reconnecting at once finds the bucket as it was left: empty.
        let again = rates.session("m1", t0);
        assert!(again.try_take(t0).is_err());
        drop(again);
        assert_eq!(rates.members(), 1, "not full yet");
        // Full again by t0 + 2 s: forgotten at the next change.
        let other = rates.session("m2", t0 + Duration::from_secs(2));
        assert_eq!(rates.members(), 1, "only m2 has a bucket");
        drop(other);
        assert_eq!(rates.members(), 0, "a full bucket of nobody's is dropped");
    }

    // Paused time: a dropped session's handle reads the same clock.
    #[tokio::test(start_paused = true)]
    async fn buckets_of_members_without_sessions_are_bounded() {
        let t0 = Instant::now();
        let rates = MemberRates::new(1, 1);
        for i in 0..IDLE_BUCKETS_KEPT + 10 {
            let session = rates.session(&format!("m{i}"), t0);
            assert_eq!(session.try_take(t0), Ok(()));
        }
        assert_eq!(rates.members(), IDLE_BUCKETS_KEPT);
        let unlimited = MemberRates::new(0, 1);
        for i in 0..10 {
            let _ = unlimited.session(&format!("m{i}"), t0);
        }
        assert_eq!(unlimited.members(), 0, "nothing to remember");
    }

    #[test]
    fn a_zero_burst_still_lets_one_through() {
        let t0 = start();
        let mut bucket = TokenBucket::new(1, 0, t0);
        assert_eq!(bucket.try_take(t0), Ok(()));
        assert!(bucket.try_take(t0).is_err());
    }
}
