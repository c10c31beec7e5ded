//! How many new identities one source may register: keys the relay never
//! bound, per source address, at most `--new-identities-per-minute`. A
//! node registering again under a key the relay knows (after a relay
//! restart, a reconnect, a certificate renewal) is not counted.
//!
//! Each source has a token bucket of one minute's worth (so a whole
//! minute's registrations may come at once), kept as the instant at which
//! it is full again (the generic cell rate algorithm): exact, and one
//! instant per source. A source is an IPv4 address, or the /64 prefix of
//! an IPv6 address (one machine usually holds a whole /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The window the limit counts in.
const WINDOW: Duration = Duration::from_secs(60);
/// Most sources followed at once. A source whose bucket is full again is
/// forgotten (it is as new); when every followed source registered within
/// the last minute, newcomers from other sources wait.
pub const MAX_SOURCES: usize = 65_536;

/// Where a registration comes from, as the limit counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An IPv4 address (also an IPv4-mapped IPv6 one).
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
    /// No address known (every such call shares one bucket).
    Unknown,
}

impl Source {
    /// The source of a call from `ip`.
    pub fn of(ip: Option<IpAddr>) -> Self {
        match ip {
            Some(IpAddr::V4(v4)) => Source::V4(v4.octets()),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let mut prefix = [0; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    Source::V6(prefix)
                }
            },
            None => Source::Unknown,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::V4(octets) => write!(f, "{}", std::net::Ipv4Addr::from(*octets)),
            Source::V6(prefix) => {
                let mut octets = [0; 16];
                octets[..8].copy_from_slice(prefix);
                write!(f, "{}/64", std::net::Ipv6Addr::from(octets))
            }
            Source::Unknown => f.write_str("an unknown address"),
        }
    }
}

/// Why a new identity was refused: when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait(pub Duration);

impl Wait {
    /// The wait in whole seconds, rounded up (at least 1).
    pub fn seconds(self) -> u64 {
        let whole = self.0.as_secs();
        if self.0.subsec_nanos() > 0 || whole == 0 {
            whole + 1
        } else {
            whole
        }
    }
}

/// The per-source limit on new identities. Shared by all callers.
#[derive(Debug)]
pub struct NewcomerLimit {
    /// The time one registration takes back (a minute over the limit);
    /// `None`: no limit.
    interval: Option<Duration>,
    /// Source -> when its bucket is full again.
    full_at: Mutex<HashMap<Source, Instant>>,
}

impl NewcomerLimit {
    /// At most `per_minute` new identities per source and minute (0: no
    /// limit).
    pub fn new(per_minute: u32) -> Self {
        Self {
            interval: (per_minute > 0).then(|| WINDOW / per_minute),
            full_at: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one new identity from `source` at `now`, or says how long
    /// to wait.
    pub fn take(&self, source: Source, now: Instant) -> Result<(), Wait> {
        let Some(interval) = self.interval else {
            return Ok(());
        };
        let mut sources = self.sources();
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&source) {
            sources.retain(|_, full_at| *full_at > now);
            if sources.len() >= MAX_SOURCES {
                // Every source followed registered within the minute.
                return Err(Wait(interval));
            }
        }
        let full_at = sources.get(&source).map_or(now, |&t| t.max(now));
        let next = full_at + interval;
        let ahead = next - now;
        if ahead > WINDOW {
            return Err(Wait(ahead - WINDOW));
        }
        sources.insert(source, next);
        Ok(())
    }

    /// Gives back what [`NewcomerLimit::take`] counted for a registration
    /// that was refused for another reason.
    pub fn give_back(&self, source: Source, now: Instant) {
        let Some(interval) = self.interval else {
            return;
        };
        let mut sources = self.sources();
        if let Some(full_at) = sources.get_mut(&source) {
            *full_at = full_at.checked_sub(interval).unwrap_or(now).max(now);
        }
    }

    fn sources(&self) -> MutexGuard<'_, HashMap<Source, Instant>> {
        // One insert or update at a time: valid after any panic.
        self.full_at.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: Source = Source::V4([203, 0, 113, 7]);
    const OTHER: Source = Source::V4([198, 51, 100, 1]);

    #[test]
    fn a_minute_of_newcomers_at_once_then_one_per_interval() {
        let limit = NewcomerLimit::new(60);
        let t0 = Instant::now();
        for _ in 0..60 {
            limit.take(HOME, t0).unwrap();
        }
        let wait = limit.take(HOME, t0).unwrap_err();
        assert_eq!(wait, Wait(Duration::from_secs(1)));
        assert_eq!(wait.seconds(), 1);
        // Another source has its own minute.
        limit.take(OTHER, t0).unwrap();
        // One more a second later, and only one.
        let t1 = t0 + Duration::from_secs(1);
        limit.take(HOME, t1).unwrap();
        assert!(limit.take(HOME, t1).is_err());
        // A minute later the bucket is full again.
        let t2 = t1 + WINDOW;
        for _ in 0..60 {
            limit.take(HOME, t2).unwrap();
        }
        assert!(limit.take(HOME, t2).is_err());
    }

    #[test]
    fn the_wait_says_when_the_next_one_fits() {
        let limit = NewcomerLimit::new(2);
        let t0 = Instant::now();
        limit.take(HOME, t0).unwrap();
        limit.take(HOME, t0).unwrap();
        let wait = limit.take(HOME, t0).unwrap_err();
        assert_eq!(wait.0, Duration::from_secs(30));
        assert_eq!(wait.seconds(), 30);
        let later = t0 + Duration::from_millis(29_500);
        assert_eq!(limit.take(HOME, later).unwrap_err().seconds(), 1);
        limit.take(HOME, t0 + Duration::from_secs(30)).unwrap();
    }

    #[test]
    fn a_refused_registration_gives_its_place_back() {
        let limit = NewcomerLimit::new(1);
        let t0 = Instant::now();
        limit.take(HOME, t0).unwrap();
        assert!(limit.take(HOME, t0).is_err());
        limit.give_back(HOME, t0);
        limit.take(HOME, t0).unwrap();
        // Giving back never banks more than a full bucket.
        limit.give_back(HOME, t0);
        limit.give_back(HOME, t0);
        limit.take(HOME, t0).unwrap();
        assert!(limit.take(HOME, t0).is_err());
    }

    #[test]
    fn zero_is_no_limit() {
        let limit = NewcomerLimit::new(0);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            limit.take(HOME, t0).unwrap();
        }
        assert!(limit.sources().is_empty());
    }

    #[test]
    fn sources_are_addresses_and_ipv6_slash_64s() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(Source::of(ip("203.0.113.7")), HOME);
        assert_eq!(Source::of(ip("::ffff:203.0.113.7")), HOME);
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(Source::of(None), Source::Unknown);
        assert_eq!(HOME.to_string(), "203.0.113.7");
        let v6 = Source::of(ip("2001:db8:1:2::1")).to_string();
        assert_eq!(v6, "2001:db8:1:2::/64");
    }

    #[test]
    fn the_table_of_sources_stays_bounded() {
        let limit = NewcomerLimit::new(60);
        let t0 = Instant::now();
        let source = |i: usize| Source::V4((i as u32).to_be_bytes());
        for i in 0..MAX_SOURCES {
            limit.take(source(i), t0).unwrap();
        }
        // Every source followed registered just now: a new one waits.
        let wait = limit.take(source(MAX_SOURCES), t0).unwrap_err();
        assert_eq!(wait.0, Duration::from_secs(1));
        // A second later their buckets are full again: forgotten.
        let t1 = t0 + Duration::from_secs(1);
        limit.take(source(MAX_SOURCES), t1).unwrap();
        assert_eq!(limit.sources().len(), 1);
    }
}
