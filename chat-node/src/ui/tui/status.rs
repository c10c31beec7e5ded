//! The status bar: the current room, whether it is active, its host, the
//! connection to it, who you are, unread messages in other rooms, and hints.

use super::room::{RoomState, RoomView};
use super::state::{shown, TuiState};
use crate::client::Connection;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// Draws the status bar.
pub(super) fn draw_status(frame: &mut Frame, state: &TuiState, area: Rect) {
    let bar = Style::new().bg(Color::DarkGray).fg(Color::White);
    let mut left = room_status(state);
    left.push(Span::raw(format!(" │ you: {}", state.my_name)));
    let elsewhere: u32 = state
        .room_list()
        .filter(|(name, _)| *name != state.current_room())
        .map(|(_, view)| view.unread)
        .fold(0, u32::saturating_add);
    if elsewhere > 0 {
        let text = format!(" │ {elsewhere} unread elsewhere");
        left.push(Span::styled(text, Style::new().fg(Color::LightYellow)));
    }
    let left = Line::from(left);
    let hints = Line::from(" F2 members · ^N/^P rooms · /help ");
    let fits = left.width() + hints.width() <= usize::from(area.width);
    frame.render_widget(Paragraph::new(left).style(bar), area);
    if fits {
        frame.render_widget(Paragraph::new(hints).alignment(Alignment::Right), area);
    }
}

/// The current room's part of the status bar: its name, whether it is
/// active, its host and the connection to it.
fn room_status(state: &TuiState) -> Vec<Span<'static>> {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    if state.current_room().is_empty() {
        return vec![Span::styled(" in no room: /join #ROOM", bold)];
    }
    let view = state.view();
    let name = Span::styled(format!(" #{}", shown(state.current_room())), bold);
    vec![
        name,
        Span::raw(" │"),
        activity(view),
        Span::raw(host_status(view)),
        connection_status(view.connection),
    ]
}

/// ` ● active`, ` ◌ waiting…` or ` joining…`.
fn activity(view: &RoomView) -> Span<'static> {
    match view.state {
        RoomState::Unknown => Span::raw(" joining…"),
        RoomState::Active => Span::styled(" ● active", Style::new().fg(Color::LightGreen)),
        RoomState::Waiting { min_users } => {
            let text = match view.member_count {
                Some(n) if n < min_users => {
                    format!(" ◌ waiting for {} more ({n}/{min_users})", min_users - n)
                }
                Some(_) => " ◌ waiting (activating…)".to_string(),
                None => format!(" ◌ waiting (activates at {min_users} members)"),
            };
            Span::styled(text, Style::new().fg(Color::LightYellow))
        }
    }
}

/// ` │ host: NAME (epoch E)`, or why there is none.
fn host_status(view: &RoomView) -> String {
    match (&view.host, view.epoch) {
        (Some(name), Some(epoch)) => format!(" │ host: {name} (epoch {epoch})"),
        (Some(name), None) => format!(" │ host: {name}"),
        (None, _) if view.no_host => " │ no host: nobody can host (see the log)".to_string(),
        (None, _) => " │ host: none yet".to_string(),
    }
}

fn connection_status(connection: Option<Connection>) -> Span<'static> {
    match connection {
        None => Span::raw(" │ connecting…"),
        Some(Connection::Connected) => {
            Span::styled(" │ connected", Style::new().fg(Color::LightGreen))
        }
        Some(Connection::Moving) => {
            Span::styled(" │ moving to new host", Style::new().fg(Color::LightYellow))
        }
        Some(Connection::Reconnecting) => {
            Span::styled(" │ reconnecting", Style::new().fg(Color::LightRed))
        }
    }
}
