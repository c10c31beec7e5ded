//! How each pane line looks: time stamp, sender colour, wrapping.

use super::pending::Pending;
use super::room::{LineKind, PaneLine};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

/// Columns of the time stamp with its space; wrapped rows are indented so.
pub(super) const STAMP: usize = 9;

/// Colours senders are told apart by (not red or magenta: errors and
/// private messages use those).
const PALETTE: [Color; 9] = [
    Color::Cyan,
    Color::Green,
    Color::Yellow,
    Color::Blue,
    Color::LightCyan,
    Color::LightGreen,
    Color::LightYellow,
    Color::LightBlue,
    Color::LightMagenta,
];

pub(super) const DIM: Style = Style::new().fg(Color::DarkGray);
pub(super) const PRIVATE: Style = Style::new().fg(Color::Magenta);

/// A stable colour for a sender's name.
pub fn sender_colour(name: &str) -> Color {
    // FNV-1a: the same on every run and every platform.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    PALETTE[(hash % PALETTE.len() as u64) as usize]
}

/// `HH:MM:SS` (UTC) of a Unix time in milliseconds.
pub fn hhmmss(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

pub(super) fn name_span(name: &str) -> Span<'static> {
    Span::styled(
        name.to_string(),
        Style::new()
            .fg(sender_colour(name))
            .add_modifier(Modifier::BOLD),
    )
}

pub(super) fn line_spans(line: &PaneLine) -> Vec<Span<'static>> {
    let mut spans = vec![Span::styled(format!("{} ", hhmmss(line.at_ms)), DIM)];
    let text = line.text.clone();
    match &line.kind {
        LineKind::Chat { from, .. } => {
            spans.extend([name_span(from), Span::raw(": "), Span::raw(text)]);
        }
        LineKind::PrivateIn { from } => spans.extend([
            Span::styled("[private] ", PRIVATE.add_modifier(Modifier::BOLD)),
            name_span(from),
            Span::raw(": "),
            Span::styled(text, PRIVATE),
        ]),
        LineKind::PrivateOut { to } => spans.extend([
            Span::styled(
                format!("[private → {to}] "),
                PRIVATE.add_modifier(Modifier::BOLD),
            ),
            Span::styled(text, PRIVATE),
        ]),
        LineKind::System => spans.push(Span::styled(format!("* {text}"), DIM)),
        LineKind::Info => spans.push(Span::raw(text)),
        LineKind::Error => spans.push(Span::styled(
            format!("! {text}"),
            Style::new().fg(Color::Red),
        )),
    }
    spans
}

pub(super) fn pending_spans(pending: &Pending, me: &str) -> Vec<Span<'static>> {
    let style = DIM.add_modifier(Modifier::ITALIC);
    let note = match pending.held_seq {
        None => " (sending…)",
        Some(_) => " (held until the chat is active)",
    };
    let text = format!("{me}: {}{note}", pending.text);
    vec![
        Span::styled(format!("{} ", hhmmss(pending.at_ms)), DIM),
        Span::styled(text, style),
    ]
}

pub(super) fn char_width(c: char) -> usize {
    let mut buf = [0u8; 4];
    Span::raw(&*c.encode_utf8(&mut buf)).width()
}

/// Breaks spans into rows of at most `width` columns, at newlines and where
/// a row is full (after its last space if the word fits on the next row);
/// rows after the first start with `indent` spaces.
pub fn wrap(spans: Vec<Span<'static>>, width: usize, indent: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let indent = if width > indent + 10 { indent } else { 0 };
    let mut rows = Vec::new();
    let mut row: Vec<(char, Style)> = Vec::new();
    let mut col = 0;
    for span in &spans {
        for c in span.content.chars() {
            if c == '\n' {
                rows.push(finish_row(&mut row));
                col = start_row(&mut row, indent);
                continue;
            }
            let w = char_width(c);
            if col + w > width && col > indent {
                // The word so far moves down unless the indent is the only
                // space (or the word would not fit there either).
                let space = row.iter().rposition(|(ch, _)| *ch == ' ');
                let mut carry = match space {
                    Some(at) if at >= indent => row.split_off(at + 1),
                    _ => Vec::new(),
                };
                let carried: usize = carry.iter().map(|(ch, _)| char_width(*ch)).sum();
                if indent + carried + w > width {
                    row.append(&mut carry); // a hard break instead
                }
                rows.push(finish_row(&mut row));
                col = start_row(&mut row, indent);
                col += carry.iter().map(|(ch, _)| char_width(*ch)).sum::<usize>();
                row.append(&mut carry);
            }
            row.push((c, span.style));
            col += w;
        }
    }
    rows.push(finish_row(&mut row));
    rows
}

fn start_row(row: &mut Vec<(char, Style)>, indent: usize) -> usize {
    row.extend(std::iter::repeat_n((' ', Style::new()), indent));
    indent
}

/// Turns a row of styled characters into a line, one span per style run.
fn finish_row(row: &mut Vec<(char, Style)>) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut run = String::new();
    let mut run_style = Style::new();
    for (c, style) in row.drain(..) {
        if style != run_style && !run.is_empty() {
            spans.push(Span::styled(std::mem::take(&mut run), run_style));
        }
        run_style = style;
        run.push(c);
    }
    spans.push(Span::styled(run, run_style));
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_wrap_with_indent() {
        let rows = wrap(vec![Span::raw("12345678 abcdefghijklmnop\nxy")], 20, STAMP);
        let text: Vec<String> = rows.iter().map(|l| l.to_string()).collect();
        assert_eq!(
            text,
            ["12345678 abcdefghijk", "         lmnop", "         xy"]
        );
        let rows = wrap(vec![Span::raw("12345678 hello big world")], 20, STAMP);
        let text: Vec<String> = rows.iter().map(|l| l.to_string()).collect();
        assert_eq!(text, ["12345678 hello big ", "         world"]);
        assert_eq!(hhmmss(-1000), "23:59:59");
    }
}
