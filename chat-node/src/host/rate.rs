//! A token bucket for each member's send rate: `burst` messages at once,
//! then `per_second` on average.
//!
//! Tokens are counted in integer units of a billionth of a token, so that
//! one nanosecond adds exactly `per_second` units: no rounding drift however
//! the calls are spaced.

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

    #[test]
    fn a_zero_burst_still_lets_one_through() {
        let t0 = start();
        let mut bucket = TokenBucket::new(1, 0, t0);
        assert_eq!(bucket.try_take(t0), Ok(()));
        assert!(bucket.try_take(t0).is_err());
    }
}
