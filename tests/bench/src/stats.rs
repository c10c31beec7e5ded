//! What subscribers record, and the summaries drawn from it.

use crate::payload::{self, now_ns};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// Phase of a run, shared by every subscriber: only what arrives while
/// measuring counts. The window's bounds are kept too (in [`now_ns`]
/// time), for subscribers in other processes, which are told them after.
#[derive(Debug, Default)]
pub struct Phase {
    state: AtomicU8,
    start_ns: AtomicU64,
    end_ns: AtomicU64,
}

impl Phase {
    // 0, the default, is the warm-up.
    const MEASURE: u8 = 1;
    const DONE: u8 = 2;

    /// Starts the measured window.
    pub fn measure(&self) {
        self.start_ns.store(now_ns(), Ordering::Release);
        self.state.store(Self::MEASURE, Ordering::Release);
    }
    /// Ends the measured window.
    pub fn finish(&self) {
        self.end_ns.store(now_ns(), Ordering::Release);
        self.state.store(Self::DONE, Ordering::Release);
    }
    /// Whether the window is open.
    pub fn measuring(&self) -> bool {
        self.state.load(Ordering::Acquire) == Self::MEASURE
    }
    /// Whether the window has closed.
    pub fn done(&self) -> bool {
        self.state.load(Ordering::Acquire) == Self::DONE
    }
    /// The window's bounds in [`now_ns`] time (`(0, 0)` before it opened,
    /// an open end while it is open).
    pub fn window_ns(&self) -> (u64, u64) {
        match self.state.load(Ordering::Acquire) {
            Self::MEASURE => (self.start_ns.load(Ordering::Acquire), u64::MAX),
            Self::DONE => (
                self.start_ns.load(Ordering::Acquire),
                self.end_ns.load(Ordering::Acquire),
            ),
            _ => (0, 0),
        }
    }
}

/// Deliveries so far, readable by a publisher that must not run too far
/// ahead of its slowest subscriber.
#[derive(Debug, Default)]
pub struct Progress {
    received: AtomicU64,
    /// Woken every [`Progress::NOTIFY_EVERY`] deliveries.
    pub notify: Notify,
}

impl Progress {
    const NOTIFY_EVERY: u64 = 256;

    /// Deliveries counted so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
    /// Sets the count (deliveries counted elsewhere) and wakes a waiter.
    pub fn set(&self, n: u64) {
        self.received.fetch_max(n, Ordering::Relaxed);
        self.notify.notify_one();
    }
    fn bump(&self) {
        let n = self.received.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(Self::NOTIFY_EVERY) {
            self.notify.notify_one();
        }
    }
}

/// One subscriber's record.
#[derive(Debug)]
pub struct Probe {
    phase: Arc<Phase>,
    /// Shared progress, for flow control.
    pub progress: Arc<Progress>,
    /// Deliveries inside the measured window.
    pub counted: u64,
    /// Send-to-receive latencies (ns) of those deliveries.
    pub latencies_ns: Vec<u64>,
    /// Payloads that did not parse.
    pub malformed: u64,
    /// Times the subscriber lost its session and opened a new one.
    pub reconnects: u64,
}

impl Probe {
    /// A probe for one subscriber.
    pub fn new(phase: Arc<Phase>) -> Self {
        Probe {
            phase,
            progress: Arc::new(Progress::default()),
            counted: 0,
            latencies_ns: Vec::new(),
            malformed: 0,
            reconnects: 0,
        }
    }

    /// Records one delivered payload.
    pub fn on_payload(&mut self, bytes: &[u8]) {
        let now = now_ns();
        self.progress.bump();
        if !self.phase.measuring() {
            return;
        }
        match payload::parse(bytes) {
            Some(stamp) => {
                self.counted += 1;
                self.latencies_ns.push(now.saturating_sub(stamp.sent_ns));
            }
            None => self.malformed += 1,
        }
    }
}

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// The value at quantile `q` (0..=1) of sorted samples (nearest rank).
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sorts `samples_ns` and summarises them.
pub fn percentiles(samples_ns: &mut [u64]) -> Percentiles {
    samples_ns.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    let sum: u128 = samples_ns.iter().map(|&s| u128::from(s)).sum();
    Percentiles {
        count: samples_ns.len(),
        p50_ms: ms(quantile(samples_ns, 0.50)),
        p99_ms: ms(quantile(samples_ns, 0.99)),
        p999_ms: ms(quantile(samples_ns, 0.999)),
        max_ms: ms(samples_ns.last().copied().unwrap_or(0)),
        mean_ms: if samples_ns.is_empty() {
            0.0
        } else {
            sum as f64 / samples_ns.len() as f64 / 1e6
        },
    }
}

/// Points of a latency-by-percentile curve for plotting: `(nines, ms)`,
/// where nines = -log10(1 - q), so 1 is p90, 2 is p99, 3 is p99.9.
pub fn percentile_curve(sorted: &[u64]) -> Vec<(f64, f64)> {
    if sorted.is_empty() {
        return Vec::new();
    }
    // Whole nines only, so axis labels land on p90, p99, p99.9.
    let max_nines = (sorted.len() as f64).log10().floor().clamp(1.0, 4.0);
    (0..=200)
        .map(|i| {
            let nines = max_nines * f64::from(i) / 200.0;
            let q = 1.0 - 10f64.powf(-nines);
            (nines, quantile(sorted, q) as f64 / 1e6)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut s: Vec<u64> = (1..=1000).map(|i| i * 1_000_000).collect();
        let p = percentiles(&mut s);
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50_ms, 500.0);
        assert_eq!(p.p99_ms, 990.0);
        assert_eq!(p.p999_ms, 999.0);
        assert_eq!(p.max_ms, 1000.0);
        assert_eq!(percentiles(&mut []).count, 0);
        let curve = percentile_curve(&s);
        assert!(curve.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn probes_count_only_inside_the_window() {
        let phase = Arc::new(Phase::default());
        let mut probe = Probe::new(phase.clone());
        let p = crate::payload::make(1, 1);
        probe.on_payload(p.as_bytes());
        phase.measure();
        probe.on_payload(p.as_bytes());
        probe.on_payload(b"junk");
        phase.finish();
        probe.on_payload(p.as_bytes());
        assert_eq!((probe.counted, probe.malformed), (1, 1));
        assert_eq!(probe.progress.received(), 4);
    }
}
