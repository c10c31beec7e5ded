//! What the full-screen interface shows, kept apart from drawing so the view
//! can be tested: a view per room (see [`RoomView`]), which room is current,
//! and the input line.
//!
//! Each event goes to the view of its room. Events about no room (private
//! messages, errors of the interface) and errors about rooms this node is
//! not in (a failed `/join`) go to the current room's view. A chat message
//! from someone else in a room that is not current counts as unread there.

use super::editor::InputLine;
use super::room::{LineKind, RoomView};
use crate::client::{ClientEvent, RoomEvent, RoomSummary};
use chat_proto::rules::escape_for_display;
use chat_proto::trust::now_unix_ms;
use std::cell::Cell;
use std::collections::BTreeMap;

/// The whole state of the interface.
#[derive(Debug)]
pub struct TuiState {
    /// Each room's view, by name. The view of `""` holds what was said
    /// while in no room; it is never listed, and moves into the next room
    /// that becomes current.
    rooms: BTreeMap<String, RoomView>,
    /// The room shown and typed into (`""`: in no room).
    current: String,
    /// The line being typed.
    pub input: InputLine,
    /// This user's name, as shown.
    pub my_name: String,
    /// Whether the member pane is shown.
    pub show_members: bool,
    /// Scroll offset the last draw actually used (clamped to the content).
    pub(super) shown_scroll: Cell<usize>,
    /// Height of the message pane at the last draw.
    pub(super) page_rows: Cell<usize>,
}

impl TuiState {
    /// An empty interface state for the user `my_name`, in no room yet.
    pub fn new(my_name: &str) -> Self {
        TuiState {
            rooms: BTreeMap::from([(String::new(), RoomView::default())]),
            current: String::new(),
            input: InputLine::default(),
            my_name: shown(my_name),
            show_members: false,
            shown_scroll: Cell::new(0),
            page_rows: Cell::new(10),
        }
    }

    /// The current room's name (`""` while in no room).
    pub fn current_room(&self) -> &str {
        &self.current
    }

    /// The current room's view.
    pub fn view(&self) -> &RoomView {
        static NOTHING_YET: RoomView = RoomView::new();
        self.rooms.get(&self.current).unwrap_or(&NOTHING_YET)
    }

    /// The current room's view, to change.
    pub fn view_mut(&mut self) -> &mut RoomView {
        self.rooms.entry(self.current.clone()).or_default()
    }

    /// A room's view, if the interface knows the room.
    pub fn room(&self, name: &str) -> Option<&RoomView> {
        self.rooms.get(name).filter(|_| !name.is_empty())
    }

    /// The rooms this node is in, by name, with their views.
    pub fn room_list(&self) -> impl Iterator<Item = (&str, &RoomView)> {
        self.rooms
            .iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, view)| (name.as_str(), view))
    }

    /// Applies one client event, stamping non-message lines with the current time.
    pub fn apply(&mut self, event: &RoomEvent) {
        self.apply_at(event, now_unix_ms());
    }

    /// Applies one client event that arrived at `now_ms`.
    pub fn apply_at(&mut self, event: &RoomEvent, now_ms: i64) {
        let room = event.room.as_str();
        match &event.event {
            ClientEvent::CurrentRoom => self.make_current(room),
            ClientEvent::RoomJoined => {
                self.make_current(room);
                let line = format!("you are in #{} now", shown(room));
                self.view_mut().push(now_ms, LineKind::System, &line);
            }
            ClientEvent::RoomLeft => self.left(room, now_ms),
            ClientEvent::Rooms { rooms, others } => self.listed(rooms, others, now_ms),
            other => self.route(room, other, now_ms),
        }
    }

    /// Applies an event to its room's view (see the module's words on
    /// where events about no room go), counting unread messages.
    fn route(&mut self, room: &str, event: &ClientEvent, now_ms: i64) {
        let about_no_room = room.is_empty()
            || (!self.rooms.contains_key(room)
                && matches!(event, ClientEvent::Error { .. } | ClientEvent::Info { .. }));
        if self.current.is_empty() && !about_no_room {
            // Until the client says which room is current, the first
            // room heard of is.
            self.make_current(room);
        }
        let target = if about_no_room { &self.current } else { room };
        let unread = target != self.current
            && matches!(event, ClientEvent::Message { from, .. } if shown(from) != self.my_name);
        let view = self.rooms.entry(target.to_string()).or_default();
        if unread {
            view.unread = view.unread.saturating_add(1);
        }
        view.apply_at(event, now_ms);
    }

    /// Shows `room` from now on: its unread messages count as read.
    pub(super) fn make_current(&mut self, room: &str) {
        if room == self.current {
            return;
        }
        let previous = std::mem::replace(&mut self.current, room.to_string());
        let orphans = if previous.is_empty() {
            self.rooms.remove("")
        } else {
            None
        };
        let view = self.rooms.entry(room.to_string()).or_default();
        if let Some(orphans) = orphans {
            view.adopt_lines(orphans);
        }
        view.unread = 0;
        self.shown_scroll.set(view.scroll);
    }

    /// This node left `room`: its view goes; if it was current, the next
    /// `CurrentRoom` (if any room is left) says which room is.
    fn left(&mut self, room: &str, now_ms: i64) {
        self.rooms.remove(room);
        if room == self.current {
            self.current.clear();
        }
        let line = format!("you left #{}", shown(room));
        self.view_mut().push(now_ms, LineKind::System, &line);
    }

    /// Shows the answer to `/rooms`, with the unread counts only the
    /// interface knows; rooms not heard of yet get a view.
    fn listed(&mut self, rooms: &[RoomSummary], others: &[String], now_ms: i64) {
        for summary in rooms.iter().filter(|r| !r.name.is_empty()) {
            let view = self.rooms.entry(summary.name.clone()).or_default();
            if view.host.is_none() && !summary.host.is_empty() {
                view.host = Some(shown(&summary.host));
                view.epoch = Some(summary.epoch);
            }
        }
        let line = self.rooms_line(rooms, others);
        self.view_mut().push(now_ms, LineKind::Info, &line);
    }

    /// `rooms: #a (host: x, current), #b (host: y, 2 unread); other rooms: #c`.
    fn rooms_line(&self, rooms: &[RoomSummary], others: &[String]) -> String {
        let mine: Vec<String> = rooms
            .iter()
            .map(|r| {
                let host = if r.host.is_empty() {
                    "none yet"
                } else {
                    &r.host
                };
                let mut text = format!("#{} (host: {}", shown(&r.name), shown(host));
                if r.name == self.current {
                    text.push_str(", current");
                }
                match self.rooms.get(&r.name).map_or(0, |v| v.unread) {
                    0 => {}
                    n => text.push_str(&format!(", {n} unread")),
                }
                text + ")"
            })
            .collect();
        let mut line = format!("rooms: {}", mine.join(", "));
        if !others.is_empty() {
            let others: Vec<String> = others.iter().map(|n| format!("#{}", shown(n))).collect();
            line.push_str(&format!("; other rooms: {}", others.join(", ")));
        }
        line
    }

    /// Shows an error in the current room's pane.
    pub fn push_error(&mut self, message: &str) {
        self.view_mut()
            .push(now_unix_ms(), LineKind::Error, message);
    }
}

/// Someone else's name or text as the pane shows it: on one line, with
/// control and invisible characters escaped, so it can neither fake another
/// line nor drive the terminal (see [`escape_for_display`]).
pub fn shown(text: &str) -> String {
    escape_for_display(text).into_owned()
}

/// This node's own words (help, errors) made safe for the terminal: tabs
/// become spaces, other control characters become `�`; newlines stay.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => '\n',
            '\t' => ' ',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}
