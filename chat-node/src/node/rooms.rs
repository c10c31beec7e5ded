//! The rooms a node is in: one [`RoomHost`] each, joined and left at the
//! relay, with its host duties; host records from the relay go to the
//! room they name.

use super::NodeShared;
use crate::error::NodeError;
use crate::host::keep::{keep_copy, Restored};
use crate::host::{duties, RoomHost};
use chat_proto::pb::relay::{HostRecord, RoomClaim};
use chat_proto::rules;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A room this node is in, and what stops its host duties.
pub(super) struct RoomEntry {
    host: Arc<RoomHost>,
    duties: CancellationToken,
}

/// Most rooms one node may be in.
pub const MAX_ROOMS: usize = 1000;

impl NodeShared {
    pub(super) fn room_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RoomEntry>> {
        // Inserts and removals are single steps: nothing half-done to see.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The room `name` ("lobby" when empty), if this node is in it.
    pub fn room(&self, name: &str) -> Option<Arc<RoomHost>> {
        let name = rules::room_or_default(name);
        self.room_map().get(name).map(|e| e.host.clone())
    }

    /// The rooms this node is in, by name.
    pub fn rooms(&self) -> Vec<Arc<RoomHost>> {
        self.room_map().values().map(|e| e.host.clone()).collect()
    }

    /// What this node holds of each of its rooms, for the relay.
    pub(crate) fn claims(&self) -> Vec<RoomClaim> {
        self.rooms().iter().map(|r| r.claim()).collect()
    }

    /// Adds `name` to the node's rooms (dormant), holding this node's copy
    /// of it (`copy` as read back at start, else read now), and starts its
    /// host duties; the room already there if it is.
    pub(crate) fn add_room(self: &Arc<Self>, name: &str, copy: Option<Restored>) -> Arc<RoomHost> {
        let mut rooms = self.room_map();
        if let Some(entry) = rooms.get(name) {
            return entry.host.clone();
        }
        let history = self.history.as_ref().map(|h| h.room(name));
        let host = RoomHost::new(name, self.ctx.clone(), history);
        host.restore_copy(copy);
        let duties = self.cancel.child_token();
        tokio::spawn(duties::run_host_duties(host.clone(), duties.clone()));
        tokio::spawn(keep_copy(host.clone(), duties.clone()));
        rooms.insert(
            name.to_string(),
            RoomEntry {
                host: host.clone(),
                duties,
            },
        );
        host
    }

    /// Removes `name` from the node's rooms and stops its host duties.
    pub(crate) fn remove_room(&self, name: &str) -> Option<Arc<RoomHost>> {
        let entry = self.room_map().remove(name)?;
        entry.duties.cancel();
        Some(entry.host)
    }

    /// The first room the node joined at its start, if it is still in it.
    pub fn first_room(&self) -> Option<String> {
        let rooms = self.room_map();
        rooms
            .contains_key(&self.first_room)
            .then(|| self.first_room.clone())
            .or_else(|| rooms.keys().next().cloned())
    }

    /// Joins `room` at the relay (showing what we hold of it, nothing for
    /// a new room) and starts its host duties.
    pub async fn join_room(self: &Arc<Self>, room: &str) -> Result<Arc<RoomHost>, tonic::Status> {
        if let Some(host) = self.room(room) {
            return Ok(host);
        }
        if self.room_map().len() >= MAX_ROOMS {
            return Err(NodeError::TooManyRooms(MAX_ROOMS).into());
        }
        // In the map first, so the relay's watch finds the room at once.
        let host = self.add_room(room, None);
        match self
            .ctx
            .relay
            .join_room(&self.ctx.identity, host.claim())
            .await
        {
            Ok(record) => {
                if let Some(record) = record {
                    host.on_host_record(record).await;
                }
                Ok(host)
            }
            Err(status) => {
                self.remove_room(room);
                Err(status)
            }
        }
    }

    /// Leaves `room` for good: hands it on first if this node hosts it,
    /// then leaves it at the relay and stops its host duties.
    pub async fn part_room(&self, room: &str) -> Result<(), tonic::Status> {
        let Some(host) = self.room(room) else {
            return Err(NodeError::NotInRoom(room.into()).into());
        };
        if host.role().hosting_epoch().is_some() {
            if let Err(e) = host.hand_off().await {
                tracing::info!(%room, error = %e, "no handoff before leaving the room");
            }
        }
        let left = self.ctx.relay.leave_room(&self.ctx.identity, room).await;
        self.remove_room(room);
        // Left for good: its copy goes too.
        if let Some(history) = &self.history {
            if let Err(error) = history.room(room).forget().await {
                tracing::warn!(%room, %error, "could not drop this node's copy of the room");
            }
        }
        if host.role().hosting_epoch().is_some() {
            let _ = host.host_events.send(crate::host::HostEvent::Closing);
        }
        self.ctx.set_hosting(room, false).await;
        left
    }

    /// Applies a host record from the relay to the room it names.
    pub async fn on_host_record(&self, record: HostRecord) {
        match self.room(&record.room) {
            Some(room) => room.on_host_record(record).await,
            None => tracing::debug!(room = %record.room, "a record of a room we are not in"),
        }
    }
}

impl crate::host::service::RoomLookup for NodeShared {
    fn room(&self, name: &str) -> Option<Arc<RoomHost>> {
        NodeShared::room(self, name)
    }
}

/// The node's rooms as its client may use them.
pub(crate) struct NodeRooms(pub(crate) Arc<NodeShared>);

impl crate::client::RoomControl for NodeRooms {
    fn first_room(&self) -> Option<String> {
        self.0.first_room()
    }

    fn rooms(&self) -> Vec<crate::directory::RoomView> {
        self.0.rooms().iter().map(|r| r.view()).collect()
    }

    fn join_room<'a>(
        &'a self,
        room: &'a str,
    ) -> crate::client::RoomCall<'a, crate::directory::RoomView> {
        Box::pin(async move { self.0.join_room(room).await.map(|host| host.view()) })
    }

    fn part_room<'a>(&'a self, room: &'a str) -> crate::client::RoomCall<'a, ()> {
        Box::pin(self.0.part_room(room))
    }
}
