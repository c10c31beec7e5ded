//! Jittered exponential backoff for reconnect loops.

use rand::Rng;
use std::time::Duration;

/// Waits that double from `initial` up to `max`, each with up to 50 % jitter
/// so that clients of a dead host do not reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `initial`, never waiting longer than `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The next wait, then doubles it.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::rng().random_range(0.5..=1.0);
        base.mul_f64(jitter)
    }

    /// Sleeps for the next wait.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn waits_double_up_to_the_cap_with_at_most_half_taken_off() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        let mut backoff = Backoff::new(initial, max);
        for base in [100, 200, 400, 800, 1000, 1000, 1000] {
            let base = Duration::from_millis(base);
            let delay = backoff.next_delay();
            assert!(
                delay >= base / 2 && delay <= base,
                "{delay:?} outside {base:?} less up to half"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= initial);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_for_the_next_delay() {
        let mut backoff = Backoff::new(Duration::from_secs(4), Duration::from_secs(60));
        for base in [4, 8, 16] {
            let base = Duration::from_secs(base);
            let t0 = Instant::now();
            backoff.wait().await;
            let waited = t0.elapsed();
            assert!(waited >= base / 2 && waited <= base, "{waited:?}");
        }
    }
}
