//! Helpers shared by the interface's unit tests.

use crate::client::ClientEvent;

/// A chat message event, sent at the Unix epoch.
pub(super) fn message(seq: u64, from: &str, text: &str) -> ClientEvent {
    ClientEvent::Message {
        seq,
        from: from.into(),
        text: text.into(),
        sent_at_unix_ms: 0,
    }
}

/// `event` about `room`.
pub(super) fn in_room(room: &str, event: ClientEvent) -> crate::client::RoomEvent {
    crate::client::RoomEvent::new(room, event)
}

impl super::TuiState {
    /// Applies `event` as one about the room `lobby` (current from the
    /// first event on, as no other room is heard of).
    pub(super) fn apply_lobby(&mut self, event: &ClientEvent) {
        self.apply(&in_room("lobby", event.clone()));
    }
}

/// Draws `state` on a `width`x`height` test terminal: the rows as text, and
/// the terminal (for colours and the cursor).
pub(super) fn render(
    state: &super::TuiState,
    width: u16,
    height: u16,
) -> (
    Vec<String>,
    ratatui::Terminal<ratatui::backend::TestBackend>,
) {
    let backend = ratatui::backend::TestBackend::new(width, height);
    let mut terminal = ratatui::Terminal::new(backend).expect("test terminal");
    terminal.draw(|f| super::draw(f, state)).expect("draw");
    let buffer = terminal.backend().buffer();
    let rows = (0..height)
        .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect())
        .collect();
    (rows, terminal)
}
