//! What keys, the mouse and pasted text do to the interface state.

use super::state::{LineKind, TuiState};
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
        // AltGr arrives as Ctrl+Alt on some systems: it types a character.
        let alt_gr = ctrl && key.modifiers.contains(KeyModifiers::ALT);
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
            KeyCode::Char(_) if key.modifiers.contains(KeyModifiers::ALT) && !alt_gr => {}
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
            KeyCode::Esc => self.scroll = 0,
            KeyCode::Tab => {
                if let Some(found) = input.complete(&self.members) {
                    self.push(now_unix_ms(), LineKind::Info, &found.join("  "));
                }
            }
            KeyCode::F(2) => return self.toggle_members(),
            KeyCode::Enter => return self.submit(),
            _ => {}
        }
        None
    }

    /// Shows or hides the member pane; showing it asks the client for a
    /// fresh member list, which only refreshes the pane.
    pub fn toggle_members(&mut self) -> Option<Action> {
        self.show_members = !self.show_members;
        if !self.show_members {
            return None;
        }
        self.quiet_who += 1;
        Some(Action::Send(UserCommand::Who))
    }

    fn scroll_up(&mut self, rows: usize) {
        self.scroll = self.shown_scroll.get().saturating_add(rows);
    }

    fn scroll_down(&mut self, rows: usize) {
        self.scroll = self
            .shown_scroll
            .get()
            .min(self.scroll)
            .saturating_sub(rows);
    }

    fn submit(&mut self) -> Option<Action> {
        let line = self.input.take();
        self.scroll = 0;
        match parse_line(&line) {
            Ok(None) => None,
            Ok(Some(UserCommand::Exit(_))) => Some(Action::Quit),
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
        assert_eq!(s.lines.back().map(|l| &l.kind), Some(&LineKind::Error));
    }
}
