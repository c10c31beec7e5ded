//! Bot mode (`--bot-interval`): the node posts `bot NAME message #K` by
//! itself every interval, in each of its rooms in turn, and prints one line
//! per event, as `line` mode does (or one JSON object, as `json` mode does).
//! It reads no input, so it runs unattended, e.g. in a container whose
//! stdin is closed.

use crate::client::{ClientEvent, RoomEvent, UserCommand};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

/// The text of the bot's `count`-th message.
pub fn bot_message(name: &str, count: u64) -> String {
    format!("bot {name} message #{count}")
}

/// Posts a message every `interval` (in each of `rooms` in turn; with one
/// room or none, in the current room) and prints every event on stdout, in
/// `line` format or as JSON, until the node stops (its events end). The
/// caller then shuts the node down.
pub async fn run_bot(
    name: &str,
    rooms: &[String],
    interval: Duration,
    json: bool,
    commands: mpsc::Sender<UserCommand>,
    mut events: mpsc::Receiver<RoomEvent>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut count = 0u64;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                count += 1;
                if rooms.len() > 1 {
                    let room = &rooms[(count as usize - 1) % rooms.len()];
                    // The switch may be dropped when the client is busy: then
                    // the message goes to the room before. Fine for a bot.
                    let _ = commands.try_send(UserCommand::Switch(room.clone()));
                }
                // Never wait on a busy client: a bot that blocked here would
                // stop draining events, and the client waits on those.
                match commands.try_send(UserCommand::Say(bot_message(name, count))) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        count -= 1;
                        tracing::warn!("the client is busy; the bot skips a message");
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
            event = events.recv() => match event {
                // The bot's own switches between its rooms are not news.
                Some(RoomEvent { event: ClientEvent::CurrentRoom, .. }) if rooms.len() > 1 => {}
                Some(event) => super::line::print_event(&event, json),
                None => break,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn posts_every_interval_and_stops_when_the_node_does() {
        let (commands, mut commands_rx) = mpsc::channel(8);
        let (events_tx, events) = mpsc::channel(8);
        let bot = tokio::spawn(async move {
            run_bot("b1", &[], Duration::from_secs(2), false, commands, events).await
        });
        for k in 1..=3 {
            match commands_rx.recv().await {
                Some(UserCommand::Say(text)) => assert_eq!(text, bot_message("b1", k)),
                other => panic!("expected a message, got {other:?}"),
            }
        }
        drop(events_tx);
        bot.await.expect("bot task");
    }

    #[tokio::test(start_paused = true)]
    async fn posts_in_each_room_in_turn() {
        let (commands, mut commands_rx) = mpsc::channel(8);
        let (events_tx, events) = mpsc::channel(8);
        let rooms = ["lobby".to_string(), "ops".to_string()];
        let bot = tokio::spawn(async move {
            run_bot(
                "b3",
                &rooms,
                Duration::from_secs(1),
                false,
                commands,
                events,
            )
            .await
        });
        for (k, room) in [(1, "lobby"), (2, "ops"), (3, "lobby")] {
            match commands_rx.recv().await {
                Some(UserCommand::Switch(r)) => assert_eq!(r, room),
                other => panic!("expected a switch to {room}, got {other:?}"),
            }
            match commands_rx.recv().await {
                Some(UserCommand::Say(text)) => assert_eq!(text, bot_message("b3", k)),
                other => panic!("expected a message, got {other:?}"),
            }
        }
        drop(events_tx);
        bot.await.expect("bot task");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_command_queue_skips_a_message_without_blocking() {
        let (commands, mut commands_rx) = mpsc::channel(1);
        let (events_tx, events) = mpsc::channel(1);
        let bot = tokio::spawn(async move {
            run_bot("b2", &[], Duration::from_secs(1), false, commands, events).await
        });
        // Nobody reads commands for a while: the bot must still take events.
        tokio::time::sleep(Duration::from_secs(5)).await;
        for _ in 0..5 {
            tokio::time::timeout(
                Duration::from_secs(1),
                events_tx.send(RoomEvent::new(
                    "lobby",
                    crate::client::ClientEvent::Activated,
                )),
            )
            .await
            .expect("the bot still reads events")
            .expect("the bot is running");
        }
        for k in 1..=2 {
            match commands_rx.recv().await {
                Some(UserCommand::Say(text)) => assert_eq!(text, bot_message("b2", k)),
                other => panic!("expected a message, got {other:?}"),
            }
        }
        drop(events_tx);
        bot.await.expect("bot task");
    }
}
