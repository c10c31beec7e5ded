//! What keys, the mouse and pasted text do to the interface state.

use super::room::LineKind;
use super::state::TuiState;
use crate::client::{parse_line, UserCommand};
use chat_proto::trust::now_unix_ms;
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind};

/// Rows one mouse wheel step scrolls.
const WHEEL_ROWS: usize = 3;

/// What the event loop should do after a terminal event.
#[derive(Debug)]
pub enum Action {
    /// Hand this command to the client.
    Send(UserCommand),
    /// Hand these commands to the client, in order.
    SendAll(Vec<UserCommand>),
    /// Leave the interface.
    Quit,
    /// Repaint the whole screen (Ctrl-L).
    Repaint,
}

impl TuiState {
    /// Handles one terminal event (key, mouse, paste, resize).
    pub fn handle_event(&mut self, event: Event) -> Option<Action> {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.handle_key(key),
            Event::Mouse(m) => {
                match m.kind {
                    MouseEventKind::ScrollUp => self.scroll_up(WHEEL_ROWS),
                    MouseEventKind::ScrollDown => self.scroll_down(WHEEL_ROWS),
                    _ => {}
                }
                None
            }
            Event::Paste(text) => {
                text.chars()
                    .for_each(|c| self.input.insert(if c.is_control() { ' ' } else { c }));
                None
            }
            _ => None, // resize and focus: the loop redraws anyway
        }
    }

    /// Handles one key press.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        // AltGr arrives as Ctrl+Alt on some systems: it types a character.
        let alt_gr = ctrl && alt;
        if let Some(action) = self.room_key(key.code, ctrl && !alt_gr, alt && !alt_gr) {
            return action;
        }
        let input = &mut self.input;
        match key.code {
            KeyCode::Char(c) if ctrl && !alt_gr => match c.to_ascii_lowercase() {
                'c' => return Some(Action::Quit),
                'd' if input.chars().is_empty() => return Some(Action::Quit),
                'd' => input.delete(),
                'u' => input.kill_to_start(),
                'k' => input.kill_to_end(),
                'w' => input.delete_word(),
                'a' => input.home(),
                'e' => input.end(),
                'l' => return Some(Action::Repaint),
                _ => {}
            },
            KeyCode::Char(_) if alt && !alt_gr => {}
            KeyCode::Char(c) => input.insert(c),
            KeyCode::Backspace => input.backspace(),
            KeyCode::Delete => input.delete(),
            KeyCode::Left => input.left(),
            KeyCode::Right => input.right(),
            KeyCode::Home => input.home(),
            KeyCode::End => input.end(),
            KeyCode::Up => input.history_prev(),
            KeyCode::Down => input.history_next(),
            KeyCode::PageUp => self.scroll_up(self.page_rows.get().saturating_sub(1).max(1)),
            KeyCode::PageDown => self.scroll_down(self.page_rows.get().saturating_sub(1).max(1)),
            KeyCode::Esc => self.view_mut().scroll = 0,
            KeyCode::Tab => self.complete(),
            KeyCode::F(2) => return self.toggle_members(),
            KeyCode::Enter => return self.submit(),
            _ => {}
        }
        None
    }

    /// The keys that change rooms: Ctrl-N / Alt-Down the next room, Ctrl-P /
    /// Alt-Up the previous one, Alt-1 to Alt-9 the room at that place in
    /// the room list. `Some` if the key is one of them.
    fn room_key(&mut self, code: KeyCode, ctrl: bool, alt: bool) -> Option<Option<Action>> {
        let action = match code {
            KeyCode::Char('n' | 'N') if ctrl => self.next_room(true),
            KeyCode::Char('p' | 'P') if ctrl => self.next_room(false),
            KeyCode::Down if alt => self.next_room(true),
            KeyCode::Up if alt => self.next_room(false),
            KeyCode::Char(c @ '1'..='9') if alt => {
                let place = c as usize - '1' as usize;
                let room = self
                    .room_list()
                    .nth(place)
                    .map(|(name, _)| name.to_string());
                room.and_then(|room| self.switch_to(&room))
            }
            _ => return None,
        };
        Some(action)
    }

    /// Switches to the next (or previous) room of the list, round it.
    fn next_room(&mut self, forward: bool) -> Option<Action> {
        let names: Vec<String> = self.room_list().map(|(n, _)| n.to_string()).collect();
        let count = names.len();
        let at = names.iter().position(|n| n == self.current_room());
        let next = match (at, forward) {
            (_, _) if count == 0 => return None,
            (None, true) => 0,
            (None, false) => count - 1,
            (Some(i), true) => (i + 1) % count,
            (Some(i), false) => (i + count - 1) % count,
        };
        self.switch_to(&names[next])
    }

    /// Shows `room` at once and tells the client to make it current (it
    /// answers `CurrentRoom`, or an error for a room this node is not
    /// in). With the member pane open, also asks for the room's members.
    pub fn switch_to(&mut self, room: &str) -> Option<Action> {
        let switch = UserCommand::Switch(room.to_string());
        if room == self.current_room() {
            return None;
        }
        if self.room(room).is_none() {
            return Some(Action::Send(switch));
        }
        self.make_current(room);
        if !self.show_members {
            return Some(Action::Send(switch));
        }
        self.view_mut().quiet_who += 1;
        Some(Action::SendAll(vec![switch, UserCommand::Who]))
    }

    /// Tab: completes a command, a member of the current room or `#room`.
    fn complete(&mut self) {
        let mut pool = self.view().members.clone();
        pool.extend(self.room_list().map(|(name, _)| format!("#{name}")));
        if let Some(found) = self.input.complete(&pool) {
            self.view_mut()
                .push(now_unix_ms(), LineKind::Info, &found.join("  "));
        }
    }

    /// Shows or hides the member pane; showing it asks the client for a
    /// fresh member list, which only refreshes the pane.
    pub fn toggle_members(&mut self) -> Option<Action> {
        self.show_members = !self.show_members;
        if !self.show_members {
            return None;
        }
        self.view_mut().quiet_who += 1;
        Some(Action::Send(UserCommand::Who))
    }

    fn scroll_up(&mut self, rows: usize) {
        let shown = self.shown_scroll.get();
        self.view_mut().scroll = shown.saturating_add(rows);
    }

    fn scroll_down(&mut self, rows: usize) {
        let shown = self.shown_scroll.get();
        let view = self.view_mut();
        view.scroll = shown.min(view.scroll).saturating_sub(rows);
    }

    fn submit(&mut self) -> Option<Action> {
        let line = self.input.take();
        self.view_mut().scroll = 0;
        match parse_line(&line) {
            Ok(None) => None,
            Ok(Some(UserCommand::Exit(_))) => Some(Action::Quit),
            Ok(Some(UserCommand::Switch(room))) if room == self.current_room() => {
                let line = format!("#{room} is the current room");
                self.view_mut().push(now_unix_ms(), LineKind::Info, &line);
                None
            }
            Ok(Some(UserCommand::Switch(room))) => self.switch_to(&room),
            Ok(Some(cmd)) => Some(Action::Send(cmd)),
            Err(message) => {
                self.push_error(&message);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn typed(state: &mut TuiState, text: &str) {
        text.chars().for_each(|c| {
            state.handle_key(key(KeyCode::Char(c)));
        });
    }

    #[test]
    fn editing_keys() {
        let mut s = TuiState::new("me");
        typed(&mut s, "helo");
        s.handle_key(key(KeyCode::Left));
        typed(&mut s, "l");
        s.handle_key(key(KeyCode::Home));
        s.handle_key(key(KeyCode::Delete));
        typed(&mut s, "H");
        s.handle_key(key(KeyCode::End));
        typed(&mut s, " you");
        s.handle_key(key(KeyCode::Backspace));
        assert_eq!(s.input.text(), "Hello yo");
        s.handle_key(KeyEvent::new(KeyCode::Char('w'), KeyModifiers::CONTROL));
        assert_eq!(s.input.text(), "Hello ");
        s.handle_key(key(KeyCode::Left));
        s.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        assert_eq!((s.input.text().as_str(), s.input.cursor()), (" ", 0));
    }

    #[test]
    fn enter_sends_and_history_recalls() {
        let mut s = TuiState::new("me");
        typed(&mut s, "first");
        assert!(
            matches!(s.handle_key(key(KeyCode::Enter)), Some(Action::Send(UserCommand::Say(t))) if t == "first")
        );
        typed(&mut s, "/who");
        assert!(matches!(
            s.handle_key(key(KeyCode::Enter)),
            Some(Action::Send(UserCommand::Who))
        ));
        typed(&mut s, "draft");
        s.handle_key(key(KeyCode::Up));
        assert_eq!(s.input.text(), "/who");
        s.handle_key(key(KeyCode::Up));
        s.handle_key(key(KeyCode::Up));
        assert_eq!(s.input.text(), "first");
        s.handle_key(key(KeyCode::Down));
        s.handle_key(key(KeyCode::Down));
        assert_eq!(s.input.text(), "draft");
    }

    #[test]
    fn quitting_and_errors() {
        let mut s = TuiState::new("me");
        let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
        assert!(matches!(s.handle_key(ctrl('c')), Some(Action::Quit)));
        assert!(matches!(s.handle_key(ctrl('d')), Some(Action::Quit)));
        typed(&mut s, "x");
        assert!(
            s.handle_key(ctrl('d')).is_none(),
            "Ctrl-D quits only on an empty line"
        );
        s.input.set("$exit");
        assert!(matches!(
            s.handle_key(key(KeyCode::Enter)),
            Some(Action::Quit)
        ));
        s.input.set("/frob");
        assert!(s.handle_key(key(KeyCode::Enter)).is_none());
        assert_eq!(
            s.view().lines.back().map(|l| &l.kind),
            Some(&LineKind::Error)
        );
    }
}
