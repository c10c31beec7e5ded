//! Input rules shared by the relay, the host and the client, so every side
//! refuses the same things with the same words.

use std::borrow::Cow;
use std::fmt::Write as _;
use thiserror::Error;

/// Longest accepted name, in characters.
pub const MAX_NAME_CHARS: usize = 32;
/// Largest accepted chat or private message text, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Why a name or a message is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    /// The name is empty.
    #[error("name must not be empty")]
    EmptyName,
    /// The name is too long.
    #[error("name must be at most {MAX_NAME_CHARS} characters")]
    NameTooLong,
    /// The name holds `:` or whitespace.
    #[error("name must not contain ':' or whitespace")]
    NameBadChar,
    /// The name holds a control character or an invisible format, bidi or
    /// zero-width character, which could fake another name on screen.
    #[error("name must be printable: no control or invisible characters")]
    NameNotPrintable,
    /// The message is empty.
    #[error("message must not be empty")]
    EmptyMessage,
    /// The message is too large.
    #[error("message is {0} bytes; the limit is {MAX_MESSAGE_BYTES} bytes (4 KiB)")]
    MessageTooLarge(usize),
}

/// Checks a chat name: non-empty, at most 32 characters, no `:` or
/// whitespace, and nothing unprintable (see [`is_unprintable`]).
pub fn validate_name(name: &str) -> Result<(), RuleError> {
    if name.is_empty() {
        return Err(RuleError::EmptyName);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(RuleError::NameTooLong);
    }
    if name.chars().any(|c| c == ':' || c.is_whitespace()) {
        return Err(RuleError::NameBadChar);
    }
    if name.chars().any(is_unprintable) {
        return Err(RuleError::NameNotPrintable);
    }
    Ok(())
}

/// The form names share when they look alike: the UTS #39 confusable
/// skeleton of the name's NFKC form. `rust-a`, `rust‐a` (U+2010 hyphen),
/// `rust-а` (Cyrillic a) and `rust－a` (fullwidth hyphen-minus) share one;
/// `rust-b` and `Rust-a` do not. Two names with one skeleton are taken for
/// each other on screen, so the relay binds only one of them at a time.
pub fn name_skeleton(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let compatible: String = name.nfkc().collect();
    unicode_security::skeleton(&compatible).collect()
}

/// Whether two names could be taken for each other on screen (see
/// [`name_skeleton`]); a name is confusable with itself.
pub fn names_confusable(a: &str, b: &str) -> bool {
    a == b || name_skeleton(a) == name_skeleton(b)
}

/// The room of a request or an interface that names none.
pub const DEFAULT_ROOM: &str = "lobby";

/// The room a request names: [`DEFAULT_ROOM`] when it names none.
pub fn room_or_default(room: &str) -> &str {
    if room.is_empty() {
        DEFAULT_ROOM
    } else {
        room
    }
}

/// The room an `x-chat-room` label names, spelled as anywhere else: with
/// or without the leading `#`; [`DEFAULT_ROOM`] when empty. Not checked
/// (a room nobody is in is refused as such).
pub fn room_of_label(label: &str) -> &str {
    room_or_default(label.strip_prefix('#').unwrap_or(label))
}

/// Checks a room name: the rules of member names ([`validate_name`]).
pub fn validate_room(room: &str) -> Result<(), RuleError> {
    validate_name(room)
}

/// A room name as a user types it, with or without the leading `#` the
/// interfaces show: the name without it, if valid.
pub fn parse_room(input: &str) -> Result<String, RuleError> {
    let room = input.strip_prefix('#').unwrap_or(input);
    validate_room(room)?;
    Ok(room.to_string())
}

/// True for characters that drive a terminal or hide on screen: control
/// characters, plus the format, bidi and zero-width characters that let one
/// text look like another (soft hyphen, zero-width space/joiners, LRM/RLM,
/// bidi embeddings, overrides and isolates, word joiner, BOM, Arabic mark).
pub fn is_unprintable(c: char) -> bool {
    c.is_control() || is_invisible_format(c)
}

/// The Unicode format characters refused in names and escaped for display.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Makes someone else's text safe to print on one terminal line: newline,
/// carriage return and tab become `\n`, `\r` and `\t`; every other
/// character for which [`is_unprintable`] holds becomes `\u{XXXX}`.
/// A backslash stays as it is. Borrows when nothing needs escaping.
pub fn escape_for_display(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unprintable) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// Appends `c` to `out`, escaped if it is unprintable.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if is_unprintable(c) => {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{{{:04X}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// Checks a message text: non-empty and at most 4 KiB.
pub fn validate_text(text: &str) -> Result<(), RuleError> {
    if text.trim().is_empty() {
        return Err(RuleError::EmptyMessage);
    }
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(RuleError::MessageTooLarge(text.len()));
    }
    Ok(())
}

/// Most characters of someone's input that an error message quotes.
pub const QUOTED_CHARS: usize = 64;

/// Someone's input as a refusal quotes it: its first [`QUOTED_CHARS`]
/// characters, escaped and in double quotes, and how many bytes were left
/// out. Only that much is ever copied, so a refusal of a huge field (a
/// 1 MiB room name) stays short, and a refusal never prints control
/// characters. Displays as `"alice"`, or `"aaa…aaa"… (1048512 more bytes)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quoted {
    head: String,
    omitted_bytes: usize,
}

impl Quoted {
    /// Quotes `input` (its first [`QUOTED_CHARS`] characters).
    pub fn new(input: &str) -> Self {
        let end = input
            .char_indices()
            .nth(QUOTED_CHARS)
            .map_or(input.len(), |(at, _)| at);
        Self {
            head: input[..end].to_string(),
            omitted_bytes: input.len() - end,
        }
    }

    /// The part quoted: all of the input when it was short enough.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// How many bytes of the input were left out.
    pub fn omitted_bytes(&self) -> usize {
        self.omitted_bytes
    }

    /// The same without the double quotes (unprintable characters still
    /// escaped), for input such as a node id that reads better bare.
    pub fn bare(&self) -> impl std::fmt::Display + '_ {
        struct Bare<'a>(&'a Quoted);
        impl std::fmt::Display for Bare<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&escape_for_display(&self.0.head))?;
                self.0.write_omitted(f)
            }
        }
        Bare(self)
    }

    fn write_omitted(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.omitted_bytes > 0 {
            write!(f, "… ({} more bytes)", self.omitted_bytes)?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Quoted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.head)?;
        self.write_omitted(f)
    }
}

impl From<&str> for Quoted {
    fn from(input: &str) -> Self {
        Self::new(input)
    }
}

impl From<&String> for Quoted {
    fn from(input: &String) -> Self {
        Self::new(input)
    }
}

impl From<String> for Quoted {
    fn from(input: String) -> Self {
        Self::new(&input)
    }
}

impl PartialEq<&str> for Quoted {
    fn eq(&self, other: &&str) -> bool {
        self.omitted_bytes == 0 && self.head == *other
    }
}

impl From<RuleError> for tonic::Status {
    fn from(err: RuleError) -> Self {
        tonic::Status::invalid_argument(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(validate_name("alice"), Ok(()));
        assert_eq!(validate_name("Zoë_42"), Ok(()));
        assert_eq!(validate_name(""), Err(RuleError::EmptyName));
        assert_eq!(validate_name("a:b"), Err(RuleError::NameBadChar));
        assert_eq!(validate_name("a b"), Err(RuleError::NameBadChar));
        assert_eq!(validate_name("a\tb"), Err(RuleError::NameBadChar));
        assert_eq!(validate_name(&"x".repeat(32)), Ok(()));
        assert_eq!(validate_name(&"x".repeat(33)), Err(RuleError::NameTooLong));
    }

    #[test]
    fn unprintable_names_are_refused() {
        let bad = RuleError::NameNotPrintable;
        assert_eq!(validate_name("al\u{1b}[2Jice"), Err(bad.clone()));
        assert_eq!(validate_name("bob\u{7f}"), Err(bad.clone()));
        assert_eq!(validate_name("ali\u{200B}ce"), Err(bad.clone()));
        assert_eq!(validate_name("\u{202E}ecila"), Err(bad.clone()));
        assert_eq!(validate_name("a\u{00AD}b"), Err(bad.clone()));
        assert_eq!(validate_name("\u{FEFF}alice"), Err(bad.clone()));
        assert_eq!(validate_name("a\u{061C}"), Err(bad.clone()));
        assert_eq!(validate_name("a\u{2066}b\u{2069}"), Err(bad));
        assert_eq!(validate_name("名前"), Ok(()));
    }

    #[test]
    fn look_alike_names_share_a_skeleton() {
        let original = "rust-a";
        for look_alike in [
            "rust\u{2010}a", // hyphen
            "rust-\u{430}",  // Cyrillic small a
            "rust\u{FF0D}a", // fullwidth hyphen-minus
            "ｒｕｓｔ-ａ",   // fullwidth letters
            "rust-a\u{34F}", // a combining grapheme joiner (default ignorable)
            "rust\u{2212}a", // minus sign
        ] {
            assert!(
                names_confusable(original, look_alike),
                "{look_alike:?} should look like {original:?}"
            );
        }
        assert!(names_confusable("bob1", "bobl"));
        assert!(names_confusable("paypal", "раураl"));
        for different in ["rust-b", "Rust-a", "rust_a", "rusta", "rust-aa", "名前"] {
            assert!(!names_confusable(original, different), "{different:?}");
        }
        assert!(names_confusable("alice", "alice"));
    }

    #[test]
    fn every_listed_format_char_is_unprintable() {
        let listed = ['\u{00AD}', '\u{061C}', '\u{FEFF}']
            .into_iter()
            .chain('\u{200B}'..='\u{200F}')
            .chain('\u{202A}'..='\u{202E}')
            .chain('\u{2060}'..='\u{2064}')
            .chain('\u{2066}'..='\u{2069}');
        for c in listed {
            assert!(is_unprintable(c), "U+{:04X}", u32::from(c));
        }
        assert!(!is_unprintable('\u{2065}'));
        assert!(!is_unprintable('é'));
    }

    #[test]
    fn plain_text_is_borrowed() {
        let text = "hi \\ there, Zoë";
        assert!(matches!(escape_for_display(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn injected_line_stays_on_one_line() {
        let shown = escape_for_display("hi\n[999] alice: x");
        assert_eq!(shown, "hi\\n[999] alice: x");
        assert!(!shown.contains('\n'));
    }

    #[test]
    fn escapes_controls_and_invisibles() {
        assert_eq!(escape_for_display("a\r\tb"), "a\\r\\tb");
        assert_eq!(escape_for_display("\u{1b}[2J"), "\\u{001B}[2J");
        assert_eq!(escape_for_display("x\u{202E}y"), "x\\u{202E}y");
        assert_eq!(escape_for_display("\u{0}\u{9f}"), "\\u{0000}\\u{009F}");
        assert_eq!(escape_for_display("back\\slash\n"), "back\\slash\\n");
    }

    #[test]
    fn short_input_is_quoted_whole() {
        assert_eq!(Quoted::new("alice").to_string(), "\"alice\"");
        assert_eq!(Quoted::new("").to_string(), "\"\"");
        assert_eq!(Quoted::new("a\nb").to_string(), "\"a\\nb\"");
        assert_eq!(Quoted::new(&"é".repeat(64)).omitted_bytes(), 0);
    }

    #[test]
    fn long_input_is_cut_and_says_how_much_was_left_out() {
        let huge = "x".repeat(1 << 20);
        let quoted = Quoted::new(&huge);
        assert_eq!(quoted.head(), "x".repeat(QUOTED_CHARS));
        let shown = quoted.to_string();
        assert_eq!(
            shown,
            format!("\"{}\"… (1048512 more bytes)", "x".repeat(QUOTED_CHARS))
        );
        assert_eq!(
            quoted.bare().to_string(),
            format!("{}… (1048512 more bytes)", "x".repeat(QUOTED_CHARS))
        );
        // Cut at a character, never inside one.
        let wide = "é".repeat(100);
        let quoted = Quoted::new(&wide);
        assert_eq!(quoted.head().chars().count(), QUOTED_CHARS);
        assert_eq!(quoted.omitted_bytes(), 36 * 2);
    }

    #[test]
    fn texts() {
        assert_eq!(validate_text("hi"), Ok(()));
        assert_eq!(validate_text("  "), Err(RuleError::EmptyMessage));
        assert_eq!(validate_text(&"x".repeat(4096)), Ok(()));
        assert_eq!(
            validate_text(&"x".repeat(4097)),
            Err(RuleError::MessageTooLarge(4097))
        );
    }
}
