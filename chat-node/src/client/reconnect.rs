//! The reconnect loop of one room's client: find the room's host, keep a
//! session with it, and when it ends follow the host where it went (a
//! redirect) or wait with backoff (a lost host), until the user leaves.

use super::{
    chain, node_of, Client, ClientEvent, Connection, NodeLinks, RoomEvent, SessionEnd, UserCommand,
    View, SEALED_OUTBOX,
};
use crate::backoff::Backoff;
use crate::dial::NodeAddr;
use crate::directory::RoomView;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Runs the client of `room` until the user exits or leaves the room, or
/// the node stops.
pub(super) async fn run_room(
    node: NodeLinks,
    room: RoomView,
    mut commands: mpsc::Receiver<UserCommand>,
    events: mpsc::Sender<RoomEvent>,
    cancel: CancellationToken,
) {
    let (outbox_tx, mut outbox) = mpsc::channel(SEALED_OUTBOX);
    let own_chain = chain::OwnChain::load(node.chain_dir.as_deref(), room.room());
    let mut client = Client {
        node,
        room,
        events,
        view: View::default(),
        backoff: Backoff::new(Duration::from_millis(20), Duration::from_secs(1)),
        senders: Default::default(),
        own_chain,
        log_check: Default::default(),
        host_key: None,
        resets: Default::default(),
        retry_at: None,
        refused: HashSet::new(),
        outbox: outbox_tx,
    };
    let mut next: Option<NodeAddr> = None;
    loop {
        let host = match next.take() {
            Some(host) => host,
            None => match client.wait_for_host(&mut commands, &cancel).await {
                Some(host) => host,
                None => return,
            },
        };
        match client
            .session(&host, &mut commands, &mut outbox, &cancel)
            .await
        {
            SessionEnd::Exit => return,
            SessionEnd::Redirect(host) => {
                client.connection(Connection::Moving).await;
                next = Some(host);
            }
            SessionEnd::Lost(why) => {
                tracing::info!(%why, "lost the host; reconnecting");
                client.connection(Connection::Reconnecting).await;
                let delay = client.backoff.next_delay();
                if !client
                    .offline(&host.address, delay, &mut commands, &cancel)
                    .await
                {
                    return;
                }
            }
        }
    }
}

impl Client {
    /// Waits until a host is known, handling commands meanwhile. `None`
    /// when the user exits.
    async fn wait_for_host(
        &mut self,
        commands: &mut mpsc::Receiver<UserCommand>,
        cancel: &CancellationToken,
    ) -> Option<NodeAddr> {
        let mut host_rx = self.room.host_watch();
        let mut no_host_rx = self.room.no_host_watch();
        loop {
            if let Some(host) = host_rx.borrow_and_update().as_ref() {
                return Some(node_of(host));
            }
            let reason = no_host_rx.borrow_and_update().clone();
            self.announce_no_host(reason).await;
            tokio::select! {
                changed = host_rx.changed() => changed.ok()?,
                changed = no_host_rx.changed() => changed.ok()?,
                cmd = commands.recv() => if !self.offline_command(cmd?).await { return None },
                _ = cancel.cancelled() => return None,
            }
        }
    }

    /// Spends `delay` without a host after `tried` failed, handling
    /// commands; false on exit. Returns at once if the relay already names
    /// another host, and as soon as it names a new one.
    async fn offline(
        &mut self,
        tried: &str,
        delay: Duration,
        commands: &mut mpsc::Receiver<UserCommand>,
        cancel: &CancellationToken,
    ) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        // A new host (failover, relay restart) ends the wait early.
        let mut host_rx = self.room.host_watch();
        // The record may have changed while the failed connect was under way
        // (the failover it reports is why the old host was unreachable).
        let moved = host_rx
            .borrow_and_update()
            .as_ref()
            .is_some_and(|h| h.address != tried);
        if moved {
            return true;
        }
        let mut no_host_rx = self.room.no_host_watch();
        loop {
            let reason = no_host_rx.borrow_and_update().clone();
            self.announce_no_host(reason).await;
            tokio::select! {
                _ = &mut sleep => return true,
                changed = host_rx.changed() => return changed.is_ok(),
                changed = no_host_rx.changed() => if changed.is_err() { return false },
                cmd = commands.recv() => match cmd {
                    Some(cmd) => if !self.offline_command(cmd).await { return false },
                    None => return false,
                },
                _ = cancel.cancelled() => return false,
            }
        }
    }

    /// Tells the user why the chat has no host, once per reason.
    async fn announce_no_host(&mut self, reason: Option<String>) {
        let Some(reason) = reason else { return };
        if self.view.no_host.as_ref() != Some(&reason) {
            self.view.no_host = Some(reason.clone());
            self.emit(ClientEvent::NoHost { reason }).await;
        }
    }
}
