//! A member's send rate: a token bucket (placeholder until merged).

use std::time::Duration;
use tokio::time::Instant;

/// Tokens refill at `per_second` up to `burst`; each message takes one.
#[derive(Debug)]
pub struct TokenBucket {
    per_second: u32,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket; `per_second` 0 means no limit.
    pub fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        Self {
            per_second,
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            at: now,
        }
    }

    /// Takes a token, or says how long until one is there.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        if self.per_second == 0 {
            return Ok(());
        }
        let rate = f64::from(self.per_second);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
    }
}
