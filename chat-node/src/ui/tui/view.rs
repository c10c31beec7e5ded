//! Drawing the interface state: room list, message pane, member pane,
//! status bar and input line. Nothing here changes the state except the
//! scroll position the draw clamps to, which it notes for the next scroll.

use super::panes::{draw_members, draw_rooms};
use super::state::TuiState;
use super::status::draw_status;
use super::text::{char_width, line_spans, pending_spans, wrap, STAMP};
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// Width of the member pane, borders included.
const MEMBER_PANE: u16 = 24;
/// Width of the room list, borders included.
const ROOM_PANE: u16 = 20;
/// Columns the message pane keeps at least before the room list is shown.
const MIN_MESSAGES: u16 = 40;

/// Draws the whole interface.
pub fn draw(frame: &mut Frame, state: &TuiState) {
    let [body, status, input] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let body = if body.width >= ROOM_PANE + MIN_MESSAGES {
        let [rooms, rest] =
            Layout::horizontal([Constraint::Length(ROOM_PANE), Constraint::Min(16)]).areas(body);
        draw_rooms(frame, state, rooms);
        rest
    } else {
        body
    };
    let messages = if state.show_members && body.width >= MEMBER_PANE + 16 {
        let [messages, members] =
            Layout::horizontal([Constraint::Min(16), Constraint::Length(MEMBER_PANE)]).areas(body);
        draw_members(frame, state.view(), &state.my_name, members);
        messages
    } else {
        body
    };
    draw_messages(frame, state, messages);
    draw_status(frame, state, status);
    draw_input(frame, state, input);
}

fn draw_messages(frame: &mut Frame, state: &TuiState, area: Rect) {
    let view = state.view();
    let (width, height) = (usize::from(area.width), usize::from(area.height));
    state.page_rows.set(height.max(1));
    // Wrap from the newest line back, only as far as the view needs.
    let want = view.scroll.saturating_add(height);
    let me = state.my_name.as_str();
    let newest_first = view
        .pending
        .iter()
        .rev()
        .map(|p| pending_spans(p, me))
        .chain(view.lines.iter().rev().map(line_spans));
    let mut rows: Vec<Line<'static>> = Vec::new(); // bottom row first
    for spans in newest_first {
        rows.extend(wrap(spans, width, STAMP).into_iter().rev());
        if rows.len() >= want {
            break;
        }
    }
    let scroll = view.scroll.min(rows.len().saturating_sub(height));
    state.shown_scroll.set(scroll);
    let end = (scroll + height).min(rows.len());
    let visible: Vec<Line<'static>> = rows.drain(scroll..end).rev().collect();
    frame.render_widget(Paragraph::new(visible), area);
    if scroll > 0 && area.height > 0 {
        let note = format!(" ↓ {scroll} more · Esc ");
        let bottom = Rect {
            y: area.y + area.height - 1,
            height: 1,
            ..area
        };
        let style = Style::new().add_modifier(Modifier::REVERSED);
        frame.render_widget(
            Paragraph::new(Span::styled(note, style)).alignment(Alignment::Right),
            bottom,
        );
    }
}

fn draw_input(frame: &mut Frame, state: &TuiState, area: Rect) {
    const PROMPT: &str = "> ";
    let chars = state.input.chars();
    let cursor = state.input.cursor().min(chars.len());
    let room = usize::from(area.width).saturating_sub(PROMPT.len() + 1);
    // Scroll the line sideways so the cursor stays visible.
    let mut start = 0;
    let mut before: usize = chars[..cursor].iter().map(|c| char_width(*c)).sum();
    while before > room && start < cursor {
        before -= char_width(chars[start]);
        start += 1;
    }
    let text: String = chars[start..].iter().collect();
    let line = Line::from(vec![
        Span::styled(PROMPT, Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(text),
    ]);
    frame.render_widget(Paragraph::new(line), area);
    let x = area
        .x
        .saturating_add(u16::try_from(PROMPT.len() + before).unwrap_or(u16::MAX));
    frame.set_cursor_position((x.min(area.right().saturating_sub(1)), area.y));
}

#[cfg(test)]
mod tests {
    use super::super::text::sender_colour;
    use super::*;
    use crate::client::{ClientEvent, Connection};
    use crate::ui::tui::test_support::render;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::style::Color;

    fn message(seq: u64, from: &str, text: &str) -> ClientEvent {
        ClientEvent::Message {
            seq,
            from: from.into(),
            text: text.into(),
            sent_at_unix_ms: 3_723_000,
        }
    }

    fn type_line(state: &mut TuiState, text: &str) -> Option<super::super::input::Action> {
        for c in text.chars() {
            state.handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        state.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE))
    }

    #[test]
    fn messages_show_time_sender_and_colour() {
        let mut s = TuiState::new("me");
        s.apply_lobby(&message(1, "alice", "hello there"));
        s.apply_lobby(&ClientEvent::Private {
            from: "bob".into(),
            text: "psst".into(),
        });
        s.apply_lobby(&ClientEvent::Error {
            message: "it broke".into(),
        });
        let (rows, terminal) = render(&s, 60, 8);
        // The room list takes the first 20 columns.
        let pane = |row: &String| row.chars().skip(20).collect::<String>();
        assert_eq!(pane(&rows[0]).trim_end(), "01:02:03 alice: hello there");
        assert!(rows[1].contains("[private] bob: psst"), "{rows:?}");
        assert!(rows[2].contains("! it broke"), "{rows:?}");
        let buffer = terminal.backend().buffer();
        assert_eq!(buffer[(29, 0)].fg, sender_colour("alice"));
        assert_eq!(buffer[(32, 2)].fg, Color::Red);
        assert_eq!(sender_colour("alice"), sender_colour("alice"));
    }

    #[test]
    fn status_bar_shows_room_host_and_connection() {
        let mut s = TuiState::new("me");
        s.apply_lobby(&ClientEvent::Host {
            epoch: 4,
            address: "h:1".into(),
            name: "carol".into(),
        });
        s.apply_lobby(&ClientEvent::Waiting {
            members: 1,
            min_users: 3,
        });
        s.apply_lobby(&ClientEvent::Connection {
            state: Connection::Connected,
        });
        let (rows, _) = render(&s, 100, 5);
        assert!(rows[3].contains("waiting for 2 more (1/3)"), "{}", rows[3]);
        assert!(rows[3].contains("host: carol (epoch 4)"));
        assert!(rows[3].contains("connected"));
        s.apply_lobby(&ClientEvent::Activated);
        s.apply_lobby(&ClientEvent::Connection {
            state: Connection::Moving,
        });
        let (rows, _) = render(&s, 100, 5);
        assert!(
            rows[3].contains("active") && !rows[3].contains("waiting"),
            "{}",
            rows[3]
        );
        assert!(rows[3].contains("moving to new host"));
        s.apply_lobby(&ClientEvent::Reset {
            by: "dan".into(),
            min_users: 5,
        });
        let (rows, _) = render(&s, 100, 5);
        assert!(rows[3].contains("waiting"), "{}", rows[3]);
    }

    #[test]
    fn pending_message_shows_until_acknowledged() {
        let mut s = TuiState::new("alice");
        s.apply_lobby(&ClientEvent::Activated);
        assert!(matches!(type_line(&mut s, "on my way"),
            Some(super::super::input::Action::Send(crate::client::UserCommand::Say(t))) if t == "on my way"));
        s.apply_lobby(&ClientEvent::Queued {
            id: "x".into(),
            text: "on my way".into(),
        });
        let (rows, _) = render(&s, 70, 6);
        assert!(
            rows.iter()
                .any(|r| r.contains("alice: on my way (sending…)")),
            "{rows:?}"
        );
        assert!(rows[4].contains("you: alice"), "{rows:?}");
        s.apply_lobby(&ClientEvent::Ack {
            id: "x".into(),
            seq: 9,
        });
        let (rows, _) = render(&s, 70, 6);
        assert!(!rows.iter().any(|r| r.contains("on my way")), "{rows:?}");
    }

    #[test]
    fn a_held_message_says_so_until_it_arrives() {
        let mut s = TuiState::new("alice");
        s.apply_lobby(&ClientEvent::Waiting {
            members: 1,
            min_users: 2,
        });
        s.apply_lobby(&ClientEvent::Queued {
            id: "x".into(),
            text: "early".into(),
        });
        s.apply_lobby(&ClientEvent::Ack {
            id: "x".into(),
            seq: 1,
        });
        let (rows, _) = render(&s, 90, 6);
        assert!(
            rows.iter()
                .any(|r| r.contains("alice: early (held until the chat is active)")),
            "{rows:?}"
        );
        s.apply_lobby(&ClientEvent::Activated);
        s.apply_lobby(&message(1, "alice", "early"));
        let (rows, _) = render(&s, 70, 6);
        assert!(!rows.iter().any(|r| r.contains("(held until")), "{rows:?}");
        assert!(rows.iter().any(|r| r.contains("alice: early")), "{rows:?}");
    }

    #[test]
    fn member_pane_toggles_and_marks_the_host() {
        let mut s = TuiState::new("me");
        assert!(matches!(
            s.toggle_members(),
            Some(super::super::input::Action::Send(
                crate::client::UserCommand::Who
            ))
        ));
        s.apply_lobby(&ClientEvent::Members {
            names: vec!["alice".into(), "bob".into()],
            host: "bob".into(),
        });
        s.apply_lobby(&ClientEvent::Joined { name: "cy".into() });
        let (rows, _) = render(&s, 60, 8);
        assert!(rows[0].contains("members (3)"), "{rows:?}");
        assert!(
            rows[1].contains("  alice") && rows[2].contains("★ bob") && rows[3].contains("  cy"),
            "{rows:?}"
        );
        assert!(
            !rows.iter().any(|r| r.contains("* members:")),
            "the pane's own /who is not printed"
        );
        s.toggle_members();
        let (rows, _) = render(&s, 60, 8);
        assert!(!rows.iter().any(|r| r.contains("members (")), "{rows:?}");
    }

    #[test]
    fn input_stays_at_the_bottom() {
        let mut s = TuiState::new("me");
        for i in 0..50 {
            s.apply_lobby(&message(i, "al", &format!("line {i}")));
        }
        s.input.set("draft text");
        let (rows, mut terminal) = render(&s, 40, 6);
        assert_eq!(rows[5].trim_end(), "> draft text");
        assert!(rows[3].contains("line 49"), "{rows:?}");
        let cursor = terminal.get_cursor_position().expect("cursor");
        assert_eq!((cursor.x, cursor.y), (12, 5));
        s.handle_key(KeyEvent::new(KeyCode::PageUp, KeyModifiers::NONE));
        let (rows, _) = render(&s, 40, 6);
        assert!(rows[3].contains("↓ 3 more"), "{rows:?}");
        assert!(
            rows[0].contains("line 43") && rows[2].contains("line 45"),
            "{rows:?}"
        );
        assert_eq!(rows[5].trim_end(), "> draft text");
    }

    #[test]
    fn tab_completion_is_drawn() {
        let mut s = TuiState::new("me");
        s.apply_lobby(&ClientEvent::Members {
            names: vec!["zoe".into()],
            host: "zoe".into(),
        });
        for c in "/wh".chars() {
            s.handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        s.handle_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
        assert_eq!(render(&s, 30, 4).0[3].trim_end(), "> /who");
        s.input.set("hi z");
        s.handle_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
        assert_eq!(s.input.text(), "hi zoe ");
    }
}
