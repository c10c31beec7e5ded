//! `line` and `json` modes: each stdin line is a message or command; each
//! event is one line on stdout. EOF on stdin leaves like `$exit`.

use crate::client::{parse_line, ClientEvent, Connection, UserCommand};
use std::io::Write;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::mpsc;

/// One readable line for an event, or `None` for events line mode keeps quiet about.
pub fn format_event(event: &ClientEvent) -> Option<String> {
    let line = match event {
        ClientEvent::Message {
            seq, from, text, ..
        } => format!("[{seq}] {from}: {text}"),
        ClientEvent::Private { from, text } => format!("(private) {from}: {text}"),
        ClientEvent::PrivateSent { to, text } => format!("(private to {to}) {text}"),
        ClientEvent::Ack { .. } => return None,
        ClientEvent::Host {
            epoch,
            address,
            name,
        } => format!("* host is now {name} at {address} (epoch {epoch})"),
        ClientEvent::Activated => "* the chat is active".to_string(),
        ClientEvent::Waiting { members, min_users } => {
            format!("* waiting for members: {members} of {min_users}; messages are held until then")
        }
        ClientEvent::Joined { name } => format!("* {name} joined"),
        ClientEvent::Left { name } => format!("* {name} left"),
        ClientEvent::Members { names, host } => {
            format!("* members: {} (host: {host})", names.join(", "))
        }
        ClientEvent::Reset { by, min_users } => {
            format!("* {by} reset the chat; it activates again at {min_users} members")
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
    };
    Some(line)
}

fn print_event(event: &ClientEvent, json: bool) {
    let line = if json {
        serde_json::to_string(event).ok()
    } else {
        format_event(event)
    };
    if let Some(line) = line {
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
    mut events: mpsc::Receiver<ClientEvent>,
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
                    Err(message) => print_event(&ClientEvent::Error { message }, json),
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
