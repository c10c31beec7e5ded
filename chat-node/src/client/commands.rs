//! What the user types: chat text or a `$`/`/` command.

use tokio::sync::oneshot;

/// One thing the user asked for.
#[derive(Debug)]
pub enum UserCommand {
    /// A chat message to everyone.
    Say(String),
    /// A private message, node to node.
    Private {
        /// Recipient's name.
        to: String,
        /// Text.
        text: String,
    },
    /// Wipe the history; activate again at this many members.
    Reset(u32),
    /// List members.
    Who,
    /// Show the current host.
    Host,
    /// List commands.
    Help,
    /// Join a room (name without `#`) and make it the current room.
    Join(String),
    /// Leave a room for good (`None`: the current room).
    Part(Option<String>),
    /// List the rooms this node is in (and the relay's other rooms).
    Rooms,
    /// Make a room this node is in the current room.
    Switch(String),
    /// Leave the chat; the sender (if any) is told when the goodbye is done.
    Exit(Option<oneshot::Sender<()>>),
}

/// The help text shown by `/help`.
pub const HELP: &str = "\
commands:
  TEXT                     send TEXT to everyone in the current room
  /join #ROOM              join ROOM (created if new) and make it current
  /part [#ROOM]            leave ROOM (default: the current room)
  /rooms                   list your rooms, their hosts and unread counts, and other rooms
  /room #ROOM              make ROOM (one you are in) the current room
  $private USER MSG        private message to USER, node to node (alias /msg)
  /who                     list members
  /host                    show the current host and epoch
  $reset -N                wipe the history; the chat activates again at N members (alias /reset N)
  $exit                    leave the chat (aliases /quit, /exit)
  /help                    this list";

/// Parses one input line. `Ok(None)` for a blank line; `Err` explains a
/// malformed or unknown command.
pub fn parse_line(line: &str) -> Result<Option<UserCommand>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    let Some(rest) = line.strip_prefix('$').or_else(|| line.strip_prefix('/')) else {
        return Ok(Some(UserCommand::Say(line.to_string())));
    };
    let (word, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let args = args.trim();
    let cmd = match word {
        "private" | "msg" => parse_private(args)?,
        "exit" | "quit" => UserCommand::Exit(None),
        "reset" => parse_reset(args)?,
        "who" => UserCommand::Who,
        "host" => UserCommand::Host,
        "help" => UserCommand::Help,
        "join" => UserCommand::Join(parse_room_arg(args, "/join #ROOM")?),
        "room" | "switch" => UserCommand::Switch(parse_room_arg(args, "/room #ROOM")?),
        "part" | "leave" if args.is_empty() => UserCommand::Part(None),
        "part" | "leave" => UserCommand::Part(Some(parse_room_arg(args, "/part [#ROOM]")?)),
        "rooms" => UserCommand::Rooms,
        _ => {
            return Err(format!(
                "unknown command {}; /help lists the commands",
                chat_proto::rules::Quoted::new(&line[..word.len() + 1])
            ))
        }
    };
    Ok(Some(cmd))
}

/// A room name argument (with or without `#`), or the usage.
fn parse_room_arg(args: &str, usage: &str) -> Result<String, String> {
    if args.is_empty() || args.contains(char::is_whitespace) {
        return Err(format!("usage: {usage}"));
    }
    chat_proto::rules::parse_room(args)
        .map_err(|e| format!("room {}: {e}", chat_proto::rules::Quoted::new(args)))
}

fn parse_private(args: &str) -> Result<UserCommand, String> {
    let (to, text) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
    if to.is_empty() || text.trim().is_empty() {
        return Err("usage: $private USER MESSAGE (the message must not be empty)".into());
    }
    Ok(UserCommand::Private {
        to: to.to_string(),
        text: text.trim_start().to_string(),
    })
}

fn parse_reset(args: &str) -> Result<UserCommand, String> {
    let n = args.trim_start_matches('-');
    match n.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(UserCommand::Reset(n)),
        _ => Err("usage: $reset -N with N at least 1 (for example $reset -3)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> UserCommand {
        parse_line(line).unwrap().unwrap()
    }

    #[test]
    fn text_and_commands() {
        assert!(matches!(parse("hello there"), UserCommand::Say(t) if t == "hello there"));
        assert!(parse_line("   ").unwrap().is_none());
        assert!(
            matches!(parse("$private bob hi you"), UserCommand::Private { to, text } if to == "bob" && text == "hi you")
        );
        assert!(matches!(parse("/msg bob hi"), UserCommand::Private { to, .. } if to == "bob"));
        assert!(matches!(parse("$exit"), UserCommand::Exit(None)));
        assert!(matches!(parse("/quit"), UserCommand::Exit(None)));
        assert!(matches!(parse("$reset -3"), UserCommand::Reset(3)));
        assert!(matches!(parse("/reset 2"), UserCommand::Reset(2)));
        assert!(matches!(parse("/who"), UserCommand::Who));
        assert!(matches!(parse("/host"), UserCommand::Host));
        assert!(matches!(parse("/help"), UserCommand::Help));
        assert!(matches!(parse("/join #ops"), UserCommand::Join(r) if r == "ops"));
        assert!(matches!(parse("/join ops"), UserCommand::Join(r) if r == "ops"));
        assert!(matches!(parse("/part"), UserCommand::Part(None)));
        assert!(matches!(parse("/part #ops"), UserCommand::Part(Some(r)) if r == "ops"));
        assert!(matches!(parse("/room #ops"), UserCommand::Switch(r) if r == "ops"));
        assert!(matches!(parse("/rooms"), UserCommand::Rooms));
    }

    #[test]
    fn room_commands_check_the_name() {
        assert!(parse_line("/join").unwrap_err().contains("usage"));
        assert!(parse_line("/join #a b").unwrap_err().contains("usage"));
        assert!(parse_line("/join #a:b").unwrap_err().contains("room"));
        assert!(parse_line("/room").unwrap_err().contains("usage"));
    }

    #[test]
    fn malformed_commands_explain_themselves() {
        assert!(parse_line("$private bob").unwrap_err().contains("usage"));
        assert!(parse_line("$private").unwrap_err().contains("usage"));
        assert!(parse_line("$reset -0").unwrap_err().contains("usage"));
        assert!(parse_line("$reset x").unwrap_err().contains("usage"));
        assert!(parse_line("/frobnicate now")
            .unwrap_err()
            .contains("unknown command \"/frobnicate\""));
    }
}
