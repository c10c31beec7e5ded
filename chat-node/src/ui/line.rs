//! `line` and `json` modes: each stdin line is a message or command; each
//! event is one line on stdout. EOF on stdin leaves like `$exit`.

use crate::client::{parse_line, ClientEvent, Connection, RoomEvent, RoomSummary, UserCommand};
use chat_proto::rules::escape_for_display;
use std::borrow::Cow;
use std::io::Write;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::mpsc;

/// One readable line for an event, or `None` for events line mode keeps quiet about.
///
/// Names, addresses and texts come from other people, so they are shown
/// through [`escape_for_display`]: a message can never print as two lines or
/// send escape sequences to the terminal. Info and error messages are this
/// node's own words and are printed as they are.
pub fn format_event(event: &ClientEvent) -> Option<String> {
    let line = match event {
        ClientEvent::Message {
            seq, from, text, ..
        } => format!("[{seq}] {}: {}", esc(from), esc(text)),
        ClientEvent::Private { from, text } => {
            format!("(private) {}: {}", esc(from), esc(text))
        }
        ClientEvent::PrivateSent { to, text } => {
            format!("(private to {}) {}", esc(to), esc(text))
        }
        // Own messages' bookkeeping: the chat line itself is what shows.
        ClientEvent::Queued { .. } | ClientEvent::Ack { .. } | ClientEvent::Refused { .. } => {
            return None
        }
        ClientEvent::Host {
            epoch,
            address,
            name,
        } => format!(
            "* host is now {} at {} (epoch {epoch})",
            esc(name),
            esc(address)
        ),
        ClientEvent::NoHost { reason } => format!("* no host: {}", esc(reason)),
        ClientEvent::Activated => "* the chat is active".to_string(),
        ClientEvent::Waiting { members, min_users } => {
            format!("* waiting for members: {members} of {min_users}; messages are held until then")
        }
        ClientEvent::Joined { name } => format!("* {} joined", esc(name)),
        ClientEvent::Left { name } => format!("* {} left", esc(name)),
        ClientEvent::Members { names, host } => format_members(names, host),
        ClientEvent::Reset { by, min_users } => format!(
            "* {} reset the chat; it activates again at {min_users} members",
            esc(by)
        ),
        ClientEvent::HistoryStarts { seq } => {
            format!("* history starts at #{seq} (older messages expired)")
        }
        ClientEvent::Connection {
            state: Connection::Connected,
        } => return None,
        ClientEvent::Connection {
            state: Connection::Moving,
        } => "* the host is moving...".to_string(),
        ClientEvent::Connection {
            state: Connection::Reconnecting,
        } => "* lost the host; reconnecting...".to_string(),
        ClientEvent::Info { message } => message.clone(),
        ClientEvent::Error { message } => format!("! {message}"),
        ClientEvent::Tampering { host, what } => format!("! host {} {}", esc(host), esc(what)),
        ClientEvent::RoomJoined => "* you are in this room; it is the current room".to_string(),
        ClientEvent::RoomLeft => "* you left this room".to_string(),
        ClientEvent::CurrentRoom => "* this is now the current room".to_string(),
        ClientEvent::Rooms { rooms, others } => format_rooms(rooms, others),
    };
    Some(line)
}

/// `* rooms: #a (host: x) current, #b (host: y); other rooms: #c`.
fn format_rooms(rooms: &[RoomSummary], others: &[String]) -> String {
    let mine: Vec<String> = rooms
        .iter()
        .map(|r| {
            let current = if r.current { " current" } else { "" };
            format!("#{} (host: {}){current}", esc(&r.name), esc(&r.host))
        })
        .collect();
    let mut line = format!("* rooms: {}", mine.join(", "));
    if !others.is_empty() {
        let others: Vec<String> = others.iter().map(|n| format!("#{}", esc(n))).collect();
        line.push_str(&format!("; other rooms: {}", others.join(", ")));
    }
    line
}

/// [`format_event`] with the event's room in front (`#room `), if any.
pub fn format_room_event(event: &RoomEvent) -> Option<String> {
    let line = format_event(&event.event)?;
    Some(match event.room.as_str() {
        "" => line,
        room => format!("#{} {line}", esc(room)),
    })
}

/// `* members: a, b (host: a)`, each name escaped.
fn format_members(names: &[String], host: &str) -> String {
    let names: Vec<_> = names.iter().map(|n| esc(n)).collect();
    format!("* members: {} (host: {})", names.join(", "), esc(host))
}

/// Shorthand: someone else's text made safe for one terminal line.
fn esc(text: &str) -> Cow<'_, str> {
    escape_for_display(text)
}

/// The line printed for `event`: a JSON object in `json` mode (serde_json
/// escapes control characters, so it stays one line), otherwise
/// [`format_event`]. `None` for events line mode keeps quiet about.
pub fn render_event(event: &RoomEvent, json: bool) -> Option<String> {
    if json {
        serde_json::to_string(event).ok()
    } else {
        format_room_event(event)
    }
}

/// Prints [`render_event`] on stdout, if there is a line to print.
pub(crate) fn print_event(event: &RoomEvent, json: bool) {
    if let Some(line) = render_event(event, json) {
        let mut out = std::io::stdout().lock();
        // A closed stdout leaves nothing to tell; the chat goes on.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Pumps `input` lines into commands and events onto stdout until the user
/// exits (command or EOF). The caller then shuts the node down.
pub async fn run_lines(
    input: impl AsyncBufRead + Unpin,
    commands: mpsc::Sender<UserCommand>,
    mut events: mpsc::Receiver<RoomEvent>,
    json: bool,
) {
    let mut lines = input.lines();
    let mut input_open = true;
    loop {
        tokio::select! {
            line = lines.next_line(), if input_open => match line {
                Ok(Some(line)) => match parse_line(&line) {
                    Ok(Some(UserCommand::Exit(_))) => break,
                    Ok(Some(cmd)) => if commands.send(cmd).await.is_err() { break },
                    Ok(None) => {}
                    Err(message) => print_event(&RoomEvent::global(ClientEvent::Error { message }), json),
                },
                Ok(None) | Err(_) => input_open = false,
            },
            event = events.recv() => match event {
                Some(event) => print_event(&event, json),
                None => break,
            },
        }
        if !input_open {
            break;
        }
    }
    // Show what is already here before leaving.
    while let Ok(event) = events.try_recv() {
        print_event(&event, json);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(from: &str, text: &str) -> ClientEvent {
        ClientEvent::Message {
            seq: 7,
            from: from.to_string(),
            text: text.to_string(),
            sent_at_unix_ms: 0,
        }
    }

    #[test]
    fn an_injected_newline_prints_one_line() {
        let line = render_event(
            &RoomEvent::global(message("bob", "hi\n[999] alice: fake").clone()),
            false,
        )
        .expect("a message prints");
        assert_eq!(line, "[7] bob: hi\\n[999] alice: fake");
        assert_eq!(line.lines().count(), 1);
    }

    #[test]
    fn escape_sequences_never_reach_the_terminal() {
        let events = [
            message("bob", "\u{1b}[2Jclear"),
            ClientEvent::Private {
                from: "bob".into(),
                text: "\u{1b}]0;title\u{7}".into(),
            },
            ClientEvent::Members {
                names: vec!["a\u{202E}b".into()],
                host: "h\rx".into(),
            },
            ClientEvent::Host {
                epoch: 1,
                address: "x\n* fake".into(),
                name: "h".into(),
            },
        ];
        for event in &events {
            let line = render_event(&RoomEvent::global(event.clone()), false).expect("prints");
            assert!(
                !line.chars().any(chat_proto::rules::is_unprintable),
                "{line:?}"
            );
        }
    }

    #[test]
    fn a_json_line_stays_one_line_without_raw_escapes() {
        let line = render_event(
            &RoomEvent::global(message("bob", "a\nb\u{1b}[2J").clone()),
            true,
        )
        .expect("json");
        assert_eq!(line.lines().count(), 1);
        assert!(!line.contains('\u{1b}') && !line.contains('\n'), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).expect("valid json");
        assert_eq!(back["text"], "a\nb\u{1b}[2J");
    }

    #[test]
    fn queued_messages_carry_their_id_in_json_only() {
        let queued = ClientEvent::Queued {
            id: "4f2a".into(),
            text: "hi".into(),
        };
        let line = render_event(&RoomEvent::global(queued.clone()), true).expect("json");
        let back: serde_json::Value = serde_json::from_str(&line).expect("valid json");
        assert_eq!(back["type"], "queued");
        assert_eq!((&back["id"], &back["text"]), (&"4f2a".into(), &"hi".into()));
        let refused = ClientEvent::Refused { id: "4f2a".into() };
        let line = render_event(&RoomEvent::global(refused.clone()), true).expect("json");
        assert_eq!(line, r#"{"type":"refused","id":"4f2a"}"#);
        assert_eq!(
            render_event(&RoomEvent::global(queued.clone()), false),
            None
        );
        assert_eq!(
            render_event(&RoomEvent::global(refused.clone()), false),
            None
        );
    }

    #[test]
    fn every_room_event_names_its_room() {
        let event = RoomEvent::new("ops", message("bob", "hi"));
        assert_eq!(
            render_event(&event, false).as_deref(),
            Some("#ops [7] bob: hi")
        );
        let json = render_event(&event, true).expect("json");
        let back: serde_json::Value = serde_json::from_str(&json).expect("valid json");
        assert_eq!(
            (&back["room"], &back["type"]),
            (&"ops".into(), &"message".into())
        );
        // A private message is about no room: no room field.
        let private = RoomEvent::global(ClientEvent::Private {
            from: "bob".into(),
            text: "psst".into(),
        });
        let json = render_event(&private, true).expect("json");
        assert!(!json.contains("\"room\""), "{json}");
    }

    #[test]
    fn plain_events_are_unchanged() {
        let line = render_event(
            &RoomEvent::global(message("Zoë", "hello \\o/").clone()),
            false,
        );
        assert_eq!(line.as_deref(), Some("[7] Zoë: hello \\o/"));
    }
}
