//! Where each room's host is, as this node knows it: one watch of the
//! newest host record per room (and one of why the room has no host),
//! written only by that room's host side, where [`crate::host::term`]'s
//! rule decides which term is newest, and read by the client through a
//! [`RoomView`]. The client never holds the host side itself.

use chat_proto::pb::relay::HostRecord;
use tokio::sync::watch;

/// What the client may see of one room: its name and where its host is.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct RoomView {
    room: String,
    host: watch::Receiver<Option<HostRecord>>,
    no_host: watch::Receiver<Option<String>>,
}

impl RoomView {
    /// A view of `room` through these watches.
    pub(crate) fn new(
        room: &str,
        host: watch::Receiver<Option<HostRecord>>,
        no_host: watch::Receiver<Option<String>>,
    ) -> Self {
        Self {
            room: room.to_string(),
            host,
            no_host,
        }
    }

    /// The room's name.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Watches the newest host record known of the room.
    pub fn host_watch(&self) -> watch::Receiver<Option<HostRecord>> {
        let mut rx = self.host.clone();
        rx.mark_unchanged();
        rx
    }

    /// Watches why the room has no host (`None` while it has one).
    pub fn no_host_watch(&self) -> watch::Receiver<Option<String>> {
        let mut rx = self.no_host.clone();
        rx.mark_unchanged();
        rx
    }
}
