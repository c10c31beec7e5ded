//! The two clocks every scenario keeps: publishers paced at a fixed total
//! rate, and waits for a condition with a deadline.

use std::time::Duration;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// The send times of one of `pubs` publishers that share `rate` messages
/// per second, staggered evenly so that together they send at a steady
/// rate; a late tick is caught up at once (the rate is kept, not the
/// spacing).
#[derive(Debug)]
pub struct Pace {
    tick: Interval,
    stop: CancellationToken,
    next: u64,
}

impl Pace {
    /// Publisher `index` of `pubs`, the first tick due at `t0`, until `stop`.
    pub fn new(t0: Instant, index: usize, pubs: usize, rate: u32, stop: CancellationToken) -> Self {
        let pubs = pubs.max(1);
        let period = Duration::from_secs_f64(pubs as f64 / f64::from(rate.max(1)));
        let start = t0 + period.mul_f64(index as f64 / pubs as f64);
        let mut tick = tokio::time::interval_at(start, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        Self {
            tick,
            stop,
            next: 0,
        }
    }

    /// Waits for the next send time: the index of the message to send then,
    /// or `None` once stopped.
    pub async fn next(&mut self) -> Option<u64> {
        tokio::select! {
            _ = self.tick.tick() => {}
            _ = self.stop.cancelled() => return None,
        }
        let n = self.next;
        self.next += 1;
        Some(n)
    }
}

/// Checks `done` every `every` until it holds or `limit` has passed;
/// whether it held.
pub async fn wait_until(limit: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn publishers_share_the_rate_staggered_evenly() {
        let t0 = Instant::now();
        let stop = CancellationToken::new();
        // 2 publishers at 8 msg/s in all: each every 250 ms, 125 ms apart.
        let mut second = Pace::new(t0, 1, 2, 8, stop.clone());
        for k in 0..3 {
            assert_eq!(second.next().await, Some(k));
            let expected = Duration::from_millis(125 + 250 * k);
            assert_eq!(Instant::now() - t0, expected);
        }
        stop.cancel();
        assert_eq!(second.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_publisher_catches_up_at_once() {
        let t0 = Instant::now();
        // One publisher at 4 msg/s, busy for 800 ms: the sends due at 0,
        // 250, 500 and 750 ms all go at once.
        let mut pace = Pace::new(t0, 0, 1, 4, CancellationToken::new());
        tokio::time::sleep(Duration::from_millis(800)).await;
        for k in 0..4 {
            assert_eq!(pace.next().await, Some(k));
        }
        assert_eq!(Instant::now() - t0, Duration::from_millis(800));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_when_the_condition_holds_or_at_the_deadline() {
        let t0 = Instant::now();
        let mut checks = 0;
        let held = wait_until(Duration::from_secs(1), Duration::from_millis(10), || {
            checks += 1;
            checks == 5
        })
        .await;
        assert!(held);
        assert_eq!(Instant::now() - t0, Duration::from_millis(40));

        let t1 = Instant::now();
        let held = wait_until(Duration::from_secs(1), Duration::from_millis(300), || false).await;
        assert!(!held);
        assert_eq!(Instant::now() - t1, Duration::from_millis(1200));
    }
}
