//! Helpers shared by the interface's unit tests.

use crate::client::ClientEvent;

/// A chat message event, sent at the Unix epoch.
pub(super) fn message(seq: u64, from: &str, text: &str) -> ClientEvent {
    ClientEvent::Message {
        seq,
        from: from.into(),
        text: text.into(),
        sent_at_unix_ms: 0,
    }
}
