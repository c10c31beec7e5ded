//! The interface across rooms: each room's own transcript, unread counts,
//! the keys and commands that switch rooms, and the status bar.

use super::input::Action;
use super::room::LineKind;
use super::test_support::{in_room, message, render};
use super::TuiState;
use crate::client::{ClientEvent, RoomSummary, UserCommand};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// A state in rooms `lobby` (current) and `ops`, each with a host.
fn in_lobby_and_ops() -> TuiState {
    let mut s = TuiState::new("me");
    s.apply(&in_room("lobby", ClientEvent::CurrentRoom));
    for (room, host, epoch) in [("lobby", "carol", 4), ("ops", "dan", 7)] {
        s.apply(&in_room(
            room,
            ClientEvent::Host {
                epoch,
                address: "h:1".into(),
                name: host.into(),
            },
        ));
        s.apply(&in_room(room, ClientEvent::Activated));
    }
    s
}

fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
    KeyEvent::new(code, modifiers)
}

fn ctrl(c: char) -> KeyEvent {
    key(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn switched_to(action: Option<Action>) -> Option<String> {
    match action {
        Some(Action::Send(UserCommand::Switch(room))) => Some(room),
        _ => None,
    }
}

fn typed(s: &mut TuiState, line: &str) -> Option<Action> {
    s.input.set(line);
    s.handle_key(key(KeyCode::Enter, KeyModifiers::NONE))
}

fn status(rows: &[String]) -> &str {
    &rows[rows.len() - 2]
}

/// A room's pane lines, but for the host changes of the set-up.
fn texts(s: &TuiState, room: &str) -> Vec<String> {
    let view = s.room(room).expect("a known room");
    view.lines
        .iter()
        .map(|l| l.text.clone())
        .filter(|t| !t.starts_with("host is now") && t != "the chat is active")
        .collect()
}

#[test]
fn unread_counts_grow_in_other_rooms_and_reset_on_switching() {
    let mut s = in_lobby_and_ops();
    s.apply(&in_room("ops", message(1, "bob", "one")));
    s.apply(&in_room("ops", message(2, "bob", "two")));
    s.apply(&in_room("ops", message(3, "me", "mine is read")));
    s.apply(&in_room("lobby", message(1, "bob", "seen at once")));
    assert_eq!(s.room("ops").map(|v| v.unread), Some(2));
    assert_eq!(s.room("lobby").map(|v| v.unread), Some(0));
    let (rows, _) = render(&s, 100, 8);
    assert!(rows[1].starts_with("│#lobby      "), "{rows:?}");
    assert!(rows[2].starts_with("│#ops             2│"), "{rows:?}");
    assert!(status(&rows).contains("2 unread elsewhere"), "{rows:?}");

    assert_eq!(switched_to(s.handle_key(ctrl('n'))).as_deref(), Some("ops"));
    assert_eq!(s.current_room(), "ops", "the view switches at once");
    assert_eq!(s.room("ops").map(|v| v.unread), Some(0));
    let (rows, _) = render(&s, 100, 8);
    assert!(rows[2].starts_with("│#ops              │"), "{rows:?}");
    assert!(!status(&rows).contains("unread"), "{rows:?}");
}

#[test]
fn switching_keys_and_commands_send_switch() {
    let mut s = in_lobby_and_ops();
    s.apply(&in_room(
        "dev",
        ClientEvent::Connection {
            state: crate::client::Connection::Connected,
        },
    ));
    // Rooms in name order: dev, lobby, ops.
    let alt = |code| key(code, KeyModifiers::ALT);
    let mut went = Vec::new();
    for k in [
        ctrl('n'),
        ctrl('n'),
        ctrl('p'),
        alt(KeyCode::Down),
        alt(KeyCode::Up),
    ] {
        went.push(switched_to(s.handle_key(k)).unwrap_or_default());
    }
    assert_eq!(went, ["ops", "dev", "ops", "dev", "ops"]);
    assert_eq!(
        switched_to(s.handle_key(alt(KeyCode::Char('2')))).as_deref(),
        Some("lobby")
    );
    assert!(
        s.handle_key(alt(KeyCode::Char('9'))).is_none(),
        "no ninth room"
    );
    assert_eq!(
        switched_to(typed(&mut s, "/room #dev")).as_deref(),
        Some("dev")
    );
    assert_eq!(s.current_room(), "dev");
    assert!(typed(&mut s, "/room #dev").is_none(), "already there");
    assert_eq!(
        s.view().lines.back().map(|l| &l.kind),
        Some(&LineKind::Info)
    );
    // A room the interface does not know: the client decides.
    assert_eq!(
        switched_to(typed(&mut s, "/room #else")).as_deref(),
        Some("else")
    );
    assert_eq!(s.current_room(), "dev");
    // With the member pane open, the new room's members are asked for.
    s.show_members = true;
    assert!(matches!(s.handle_key(ctrl('n')),
        Some(Action::SendAll(cmds)) if matches!(cmds.as_slice(),
            [UserCommand::Switch(r), UserCommand::Who] if r == "lobby")));
    assert!(
        matches!(typed(&mut s, "/join #new"), Some(Action::Send(UserCommand::Join(r))) if r == "new")
    );
    assert!(matches!(
        typed(&mut s, "/part"),
        Some(Action::Send(UserCommand::Part(None)))
    ));
    assert!(matches!(
        typed(&mut s, "/rooms"),
        Some(Action::Send(UserCommand::Rooms))
    ));
}

#[test]
fn the_status_bar_shows_the_current_rooms_host() {
    let mut s = in_lobby_and_ops();
    let (rows, _) = render(&s, 120, 6);
    assert!(status(&rows).starts_with(" #lobby │"), "{rows:?}");
    assert!(status(&rows).contains("host: carol (epoch 4)"), "{rows:?}");
    s.apply(&in_room("ops", ClientEvent::CurrentRoom));
    let (rows, _) = render(&s, 120, 6);
    assert!(status(&rows).starts_with(" #ops │"), "{rows:?}");
    assert!(status(&rows).contains("host: dan (epoch 7)"), "{rows:?}");
    s.apply(&in_room(
        "lobby",
        ClientEvent::NoHost { reason: "x".into() },
    ));
    s.apply(&in_room("ops", ClientEvent::NoHost { reason: "y".into() }));
    let (rows, _) = render(&s, 120, 6);
    assert!(status(&rows).contains("no host"), "{rows:?}");
}

#[test]
fn a_message_in_one_room_never_shows_in_another() {
    let mut s = in_lobby_and_ops();
    s.apply(&in_room("ops", message(1, "bob", "only in ops")));
    s.apply(&in_room("lobby", message(1, "al", "only in lobby")));
    s.apply(&in_room(
        "ops",
        ClientEvent::Queued {
            id: "q1".into(),
            text: "pending in ops".into(),
        },
    ));
    let (rows, _) = render(&s, 100, 10);
    let screen = rows.join("\n");
    assert!(screen.contains("only in lobby"), "{screen}");
    assert!(
        !screen.contains("only in ops") && !screen.contains("pending in ops"),
        "{screen}"
    );
    s.handle_key(ctrl('n'));
    let (rows, _) = render(&s, 100, 10);
    let screen = rows.join("\n");
    assert!(
        screen.contains("only in ops") && screen.contains("pending in ops"),
        "{screen}"
    );
    assert!(!screen.contains("only in lobby"), "{screen}");
    // The ack settles the pending line of its own room.
    s.apply(&in_room(
        "ops",
        ClientEvent::Ack {
            id: "q1".into(),
            seq: 2,
        },
    ));
    assert!(s.room("ops").is_some_and(|v| v.pending.is_empty()));
}

#[test]
fn private_messages_and_errors_about_no_room_show_in_the_current_room() {
    let mut s = in_lobby_and_ops();
    let private = ClientEvent::Private {
        from: "eve".into(),
        text: "psst".into(),
    };
    s.apply(&in_room("", private));
    s.apply(&in_room(
        "nowhere",
        ClientEvent::error("cannot join #nowhere: no"),
    ));
    assert_eq!(texts(&s, "lobby"), ["psst", "cannot join #nowhere: no"]);
    assert!(s.room("nowhere").is_none(), "an error makes no room");
    assert!(texts(&s, "ops").is_empty());
}

#[test]
fn joining_leaving_and_listing_rooms() {
    let mut s = in_lobby_and_ops();
    s.apply(&in_room("dev", ClientEvent::RoomJoined));
    assert_eq!(s.current_room(), "dev");
    assert_eq!(texts(&s, "dev"), ["you are in #dev now"]);
    // Leaving the current room: the client names the next current room.
    s.apply(&in_room("dev", ClientEvent::RoomLeft));
    assert!(s.room("dev").is_none());
    s.apply(&in_room("lobby", ClientEvent::CurrentRoom));
    assert_eq!(texts(&s, "lobby"), ["you left #dev"]);
    s.apply(&in_room("ops", message(1, "bob", "hi")));
    let summary = |name: &str, host: &str| RoomSummary {
        name: name.into(),
        host: host.into(),
        epoch: 1,
        current: name == "lobby",
    };
    s.apply(&in_room(
        "lobby",
        ClientEvent::Rooms {
            rooms: vec![summary("lobby", "carol"), summary("ops", "")],
            others: vec!["far".into()],
        },
    ));
    assert_eq!(
        texts(&s, "lobby").last().map(String::as_str),
        Some("rooms: #lobby (host: carol, current), #ops (host: none yet, 1 unread); other rooms: #far")
    );
}

#[test]
fn the_first_room_heard_of_is_current_until_told_otherwise() {
    let mut s = TuiState::new("me");
    s.apply(&in_room("", ClientEvent::error("said before any room")));
    s.apply(&in_room("ops", message(1, "bob", "hi")));
    assert_eq!(s.current_room(), "ops");
    assert_eq!(texts(&s, "ops"), ["said before any room", "hi"]);
    assert_eq!(s.room("ops").map(|v| v.unread), Some(0));
    s.apply(&in_room("lobby", ClientEvent::CurrentRoom));
    assert_eq!(s.current_room(), "lobby");
}
