//! What the interface knows of one room: its message pane, pending own
//! messages, members, host, activation, connection, scroll position and
//! unread count. [`TuiState`](super::TuiState) keeps one per room and sends
//! each event to the view of its room.

use super::pending::Pending;
use super::state::{clean, shown};
use crate::client::{ClientEvent, Connection};
use crate::ui::format_event;
use chat_proto::trust::now_unix_ms;
use std::collections::VecDeque;

/// Lines kept in a room's message pane; older ones are dropped.
pub const MAX_LINES: usize = 10_000;

/// What kind of line the pane shows, which decides its look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// A chat message.
    Chat {
        /// Sequence number.
        seq: u64,
        /// Sender.
        from: String,
    },
    /// A private message to this user.
    PrivateIn {
        /// Sender.
        from: String,
    },
    /// A private message this user sent.
    PrivateOut {
        /// Recipient.
        to: String,
    },
    /// Something that happened to the chat (joins, host changes...).
    System,
    /// Text the user asked for (help, host details, completions).
    Info,
    /// Something went wrong.
    Error,
}

/// One entry of the message pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaneLine {
    /// Unix milliseconds shown as the time stamp.
    pub at_ms: i64,
    /// Kind of line.
    pub kind: LineKind,
    /// Text, free of control characters except newlines.
    pub text: String,
}

/// Whether a room's chat is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomState {
    /// Not told yet.
    Unknown,
    /// Waiting until this many members are here.
    Waiting {
        /// Members needed.
        min_users: u32,
    },
    /// Messages flow.
    Active,
}

/// One room as the interface shows it.
#[derive(Debug)]
pub struct RoomView {
    /// The message pane, oldest first, at most [`MAX_LINES`].
    pub lines: VecDeque<PaneLine>,
    /// Own messages not yet acknowledged, oldest first.
    pub pending: VecDeque<Pending>,
    /// Known members, in order.
    pub members: Vec<String>,
    /// Member count as far as known (from `Waiting`, `Members`, joins and leaves).
    pub member_count: Option<u32>,
    /// Current host's name.
    pub host: Option<String>,
    /// The relay said nobody can host (until the next host).
    pub no_host: bool,
    /// Current host term.
    pub epoch: Option<u64>,
    /// Whether the chat is active.
    pub state: RoomState,
    /// Connection to the host, once known.
    pub connection: Option<Connection>,
    /// Rows scrolled up from the bottom of the message pane.
    pub scroll: usize,
    /// Chat messages from others that arrived while the room was not current.
    pub unread: u32,
    /// `/who` requests sent by the interface itself, whose answer only
    /// refreshes the member pane.
    pub(super) quiet_who: u32,
}

impl Default for RoomView {
    fn default() -> Self {
        Self::new()
    }
}

impl RoomView {
    /// A room nothing is known of yet.
    pub const fn new() -> Self {
        RoomView {
            lines: VecDeque::new(),
            pending: VecDeque::new(),
            members: Vec::new(),
            member_count: None,
            host: None,
            no_host: false,
            epoch: None,
            state: RoomState::Unknown,
            connection: None,
            scroll: 0,
            unread: 0,
            quiet_who: 0,
        }
    }

    /// Applies one client event, stamping non-message lines with the current time.
    pub fn apply(&mut self, event: &ClientEvent) {
        self.apply_at(event, now_unix_ms());
    }

    /// Applies one client event that arrived at `now_ms`.
    pub fn apply_at(&mut self, event: &ClientEvent, now_ms: i64) {
        if let ClientEvent::Message { seq, .. } = event {
            self.on_message(*seq);
        }
        if self.apply_pending(event, now_ms) {
            return;
        }
        if let Some((at_ms, kind, text)) = pane_line(event, now_ms) {
            return self.push(at_ms, kind, &text);
        }
        if self.apply_status(event) {
            if let Some(text) = format_event(event) {
                let text = text.strip_prefix("* ").unwrap_or(&text).to_string();
                self.push(now_ms, LineKind::System, &text);
            }
        }
    }

    /// Applies an event about the chat's state (host, activation,
    /// connection, members); true if it also gets a line in the pane.
    fn apply_status(&mut self, event: &ClientEvent) -> bool {
        match event {
            ClientEvent::Host { epoch, name, .. } => {
                self.no_host = false;
                self.host = Some(shown(name));
                self.epoch = Some(*epoch);
            }
            ClientEvent::NoHost { .. } => {
                self.host = None;
                self.no_host = true;
            }
            ClientEvent::Activated => self.state = RoomState::Active,
            ClientEvent::Waiting { members, min_users } => {
                let min_users = *min_users;
                self.state = RoomState::Waiting { min_users };
                self.member_count = Some(*members);
            }
            ClientEvent::Reset { min_users, .. } => {
                let min_users = *min_users;
                self.state = RoomState::Waiting { min_users };
                // Held messages went with the history.
                self.pending.retain(|p| p.held_seq.is_none());
            }
            ClientEvent::Connection { state } => self.connection = Some(*state),
            _ => return self.apply_membership(event),
        }
        true
    }

    /// Applies joins, leaves and member lists; true if the event also gets
    /// a line in the pane (a member list the interface asked for does not).
    fn apply_membership(&mut self, event: &ClientEvent) -> bool {
        match event {
            ClientEvent::Joined { name } => {
                let name = shown(name);
                if !self.members.contains(&name) {
                    self.members.push(name);
                    self.member_count = self.member_count.map(|n| n.saturating_add(1));
                }
            }
            ClientEvent::Left { name } => {
                let name = shown(name);
                self.members.retain(|m| *m != name);
                self.member_count = self.member_count.map(|n| n.saturating_sub(1));
            }
            ClientEvent::Members { names, host } => {
                self.members = names.iter().map(|n| shown(n)).collect();
                self.member_count = u32::try_from(names.len()).ok();
                if !host.is_empty() {
                    self.host = Some(shown(host));
                }
                if self.quiet_who > 0 {
                    self.quiet_who -= 1;
                    return false;
                }
            }
            _ => {}
        }
        true
    }

    /// Adds a line to the pane, dropping the oldest beyond [`MAX_LINES`].
    pub fn push(&mut self, at_ms: i64, kind: LineKind, text: &str) {
        if self.lines.len() >= MAX_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(PaneLine {
            at_ms,
            kind,
            text: clean(text),
        });
        if self.scroll > 0 {
            // Keep the view where the user scrolled it (one row per line, roughly).
            self.scroll += 1;
        }
    }

    /// Moves `other`'s lines (said while in no room) to the end of this pane.
    pub(super) fn adopt_lines(&mut self, other: RoomView) {
        for line in other.lines {
            self.push(line.at_ms, line.kind, &line.text);
        }
    }
}

/// The pane line an event shows as it is (messages, private messages, the
/// client's info and errors): when, what kind, and the text.
fn pane_line(event: &ClientEvent, now_ms: i64) -> Option<(i64, LineKind, String)> {
    let line = match event {
        ClientEvent::Message {
            seq,
            from,
            text,
            sent_at_unix_ms,
        } => {
            let kind = LineKind::Chat {
                seq: *seq,
                from: shown(from),
            };
            (*sent_at_unix_ms, kind, shown(text))
        }
        ClientEvent::Private { from, text } => (
            now_ms,
            LineKind::PrivateIn { from: shown(from) },
            shown(text),
        ),
        ClientEvent::PrivateSent { to, text } => {
            (now_ms, LineKind::PrivateOut { to: shown(to) }, shown(text))
        }
        ClientEvent::Info { message } => (now_ms, LineKind::Info, message.clone()),
        ClientEvent::HistoryStarts { seq } => (
            now_ms,
            LineKind::Info,
            format!("history starts at #{seq} (older messages expired)"),
        ),
        ClientEvent::Error { message } => (now_ms, LineKind::Error, message.clone()),
        ClientEvent::Tampering { host, what } => (
            now_ms,
            LineKind::Error,
            shown(&format!("host {host} {what}")),
        ),
        _ => return None,
    };
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::tui::test_support::message;

    #[test]
    fn members_joins_and_quiet_who() {
        let mut s = RoomView::default();
        s.apply(&ClientEvent::Waiting {
            members: 1,
            min_users: 3,
        });
        s.apply(&ClientEvent::Joined { name: "bob".into() });
        assert_eq!(s.member_count, Some(2));
        s.quiet_who = 1;
        let lines = s.lines.len();
        s.apply(&ClientEvent::Members {
            names: vec!["al".into(), "bob".into()],
            host: "al".into(),
        });
        assert_eq!(s.lines.len(), lines, "an interface /who is not printed");
        s.apply(&ClientEvent::Members {
            names: vec!["al".into()],
            host: "al".into(),
        });
        assert_eq!(s.lines.len(), lines + 1, "a user /who is printed");
        s.apply(&ClientEvent::Left { name: "al".into() });
        assert!(s.members.is_empty());
        assert_eq!(s.host.as_deref(), Some("al"));
    }

    #[test]
    fn lines_are_bounded_and_escaped() {
        let mut s = RoomView::default();
        for i in 0..MAX_LINES + 5 {
            s.apply(&message(i as u64, "a", "x\u{1b}[2J\ty"));
        }
        assert_eq!(s.lines.len(), MAX_LINES);
        assert_eq!(s.lines[0].text, "x\\u{001B}[2J\\ty");
    }

    #[test]
    fn other_peoples_text_never_spans_two_lines() {
        let mut s = RoomView::default();
        s.apply(&message(1, "bob\u{202E}", "hi\n[999] alice: fake"));
        s.apply(&ClientEvent::Private {
            from: "eve\r".into(),
            text: "a\nb".into(),
        });
        s.apply(&ClientEvent::Joined {
            name: "x\ny".into(),
        });
        for line in &s.lines {
            assert!(!line.text.contains('\n'), "{line:?}");
        }
        assert_eq!(s.lines[0].text, "hi\\n[999] alice: fake");
        assert_eq!(
            s.lines[0].kind,
            LineKind::Chat {
                seq: 1,
                from: "bob\\u{202E}".into()
            }
        );
        assert_eq!(s.members, ["x\\ny"]);
    }

    #[test]
    fn own_help_keeps_its_lines() {
        let mut s = RoomView::default();
        s.apply(&ClientEvent::Info {
            message: "one\ntwo".into(),
        });
        assert_eq!(s.lines[0].text, "one\ntwo");
    }
}
