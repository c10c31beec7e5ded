//! The side panes: the room list (left) and the member pane (right, F2).

use super::room::RoomView;
use super::state::{shown, TuiState};
use super::text::{char_width, name_span, DIM};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

/// The room list: `#name` and the unread count, the current room reversed.
pub(super) fn draw_rooms(frame: &mut Frame, state: &TuiState, area: Rect) {
    let width = usize::from(area.width.saturating_sub(2));
    let mut lines: Vec<Line> = state
        .room_list()
        .map(|(name, view)| room_row(name, view.unread, name == state.current_room(), width))
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled("none: /join #ROOM", DIM));
    }
    // Keep the current room in sight when the list is longer than the pane.
    let rows = usize::from(area.height.saturating_sub(2)).max(1);
    let at = state
        .room_list()
        .position(|(name, _)| name == state.current_room())
        .unwrap_or(0);
    let skip = u16::try_from((at + 1).saturating_sub(rows)).unwrap_or(0);
    let block = Block::bordered()
        .title(" rooms ")
        .title_bottom(Line::styled(" ^N/^P switch ", DIM));
    frame.render_widget(Paragraph::new(lines).block(block).scroll((skip, 0)), area);
}

/// One row of the room list, `width` columns wide: `#name` cut to fit and
/// the unread count at the right.
fn room_row(name: &str, unread: u32, current: bool, width: usize) -> Line<'static> {
    let count = match unread {
        0 => String::new(),
        1..=999 => format!(" {unread}"),
        _ => " 999+".to_string(),
    };
    let room = width.saturating_sub(count.len());
    let mut label = String::new();
    let mut used = 0;
    for c in format!("#{}", shown(name)).chars() {
        if used + char_width(c) > room {
            label.pop();
            label.push('…');
            break;
        }
        used += char_width(c);
        label.push(c);
    }
    let gap = " ".repeat(width.saturating_sub(used + count.len()));
    let mut style = Style::new();
    if current {
        style = style.add_modifier(Modifier::REVERSED | Modifier::BOLD);
    } else if unread > 0 {
        style = style.add_modifier(Modifier::BOLD);
    }
    let count = Span::styled(count, style.fg(Color::LightYellow));
    Line::from(vec![Span::styled(label + &gap, style), count])
}

/// The current room's members, its host starred.
pub(super) fn draw_members(frame: &mut Frame, view: &RoomView, my_name: &str, area: Rect) {
    let host = view.host.as_deref();
    let mut lines: Vec<Line> = view
        .members
        .iter()
        .map(|name| {
            let mark = if Some(name.as_str()) == host {
                "★ "
            } else {
                "  "
            };
            let mut spans = vec![Span::raw(mark), name_span(name)];
            if name == my_name {
                spans.push(Span::styled(" (you)", DIM));
            }
            Line::from(spans)
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled("none known yet", DIM));
    }
    let title = format!(" members ({}) ", view.members.len());
    let block = Block::bordered()
        .title(title)
        .title_bottom(Line::styled(" ★ host ", DIM));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
