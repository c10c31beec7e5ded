//! The 100-byte benchmark payload: who sent it, its index, and when it was
//! sent (nanoseconds since a base instant shared by every client in this
//! process), padded to size. ASCII, so it is also valid chat text.

use std::sync::OnceLock;
use std::time::Instant;

/// Size of every payload, in bytes.
pub const PAYLOAD_BYTES: usize = 100;

static BASE: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since this process's base instant.
pub fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What a payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Publisher number.
    pub publisher: u32,
    /// Index of the message among that publisher's messages.
    pub index: u64,
    /// Send time, from [`now_ns`].
    pub sent_ns: u64,
}

/// A payload from `publisher`, message `index`, stamped now.
pub fn make(publisher: u32, index: u64) -> String {
    let mut text = format!(
        "p{:04}i{:010}t{:016} ",
        publisher % 10_000,
        index % 10_000_000_000,
        now_ns()
    );
    text.extend(std::iter::repeat_n('x', PAYLOAD_BYTES - text.len()));
    text
}

fn field(bytes: &[u8], range: std::ops::Range<usize>) -> Option<u64> {
    std::str::from_utf8(bytes.get(range)?).ok()?.parse().ok()
}

/// Reads a payload made by [`make`].
pub fn parse(bytes: &[u8]) -> Option<Stamp> {
    if bytes.first() != Some(&b'p') || bytes.get(5) != Some(&b'i') || bytes.get(16) != Some(&b't') {
        return None;
    }
    Some(Stamp {
        publisher: field(bytes, 1..5)? as u32,
        index: field(bytes, 6..16)?,
        sent_ns: field(bytes, 17..33)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_100_bytes_and_read_back() {
        let before = now_ns();
        let p = make(7, 123_456);
        assert_eq!(p.len(), PAYLOAD_BYTES);
        let stamp = parse(p.as_bytes()).expect("parses");
        assert_eq!((stamp.publisher, stamp.index), (7, 123_456));
        assert!(stamp.sent_ns >= before && stamp.sent_ns <= now_ns());
        assert_eq!(parse(b"hello"), None);
    }
}
