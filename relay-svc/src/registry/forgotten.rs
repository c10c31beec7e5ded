//! Rooms the relay forgot (their last member left or was forgotten), with
//! the newest epoch each reached: a room of the same name created again
//! (its members coming back after they all stopped for longer than the
//! member grace) waits for the copy that follows that epoch, as a vacancy
//! after a relay restart does, instead of going to whichever member
//! registers first, which may hold nothing.

use std::collections::{HashMap, VecDeque};

/// Forgotten rooms remembered at most (the oldest go first).
const REMEMBERED: usize = 10_000;

#[derive(Debug, Default)]
pub(super) struct Forgotten {
    epochs: HashMap<String, u64>,
    order: VecDeque<String>,
}

impl Forgotten {
    /// Remembers that `room` was forgotten at `epoch` (0: it never had a
    /// host, nothing to wait for).
    pub(super) fn remember(&mut self, room: &str, epoch: u64) {
        if epoch == 0 {
            return;
        }
        if self.epochs.insert(room.to_string(), epoch).is_none() {
            self.order.push_back(room.to_string());
        }
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.epochs.remove(&old);
            }
        }
    }

    /// The newest epoch of `room` before the relay forgot it, if it did
    /// (forgetting it here: the room exists again).
    pub(super) fn take(&mut self, room: &str) -> Option<u64> {
        let epoch = self.epochs.remove(room)?;
        self.order.retain(|r| r != room);
        Some(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_is_remembered_once_and_only_the_newest_are_kept() {
        let mut f = Forgotten::default();
        f.remember("never-hosted", 0);
        assert_eq!(f.take("never-hosted"), None);
        f.remember("red", 3);
        f.remember("red", 5);
        assert_eq!(f.take("red"), Some(5));
        assert_eq!(f.take("red"), None);
        for k in 0..REMEMBERED + 1 {
            f.remember(&format!("r{k}"), 1);
        }
        assert_eq!(f.take("r0"), None, "the oldest went first");
        assert_eq!(f.take("r1"), Some(1));
    }
}
