//! A single-line editor with history and Tab completion.

/// Commands that Tab completes at the start of the line.
pub const COMMANDS: &[&str] = &[
    "/who", "/host", "/help", "/msg", "/quit", "/reset", "/join", "/part", "/rooms", "/room",
    "$private", "$exit", "$reset",
];

/// Input lines remembered for Up/Down.
const MAX_HISTORY: usize = 500;

/// A single-line editor with history.
#[derive(Debug, Default, Clone)]
pub struct InputLine {
    chars: Vec<char>,
    cursor: usize,
    history: Vec<String>,
    /// Position while browsing the history, and the line typed before.
    browsing: Option<(usize, String)>,
}

impl InputLine {
    /// The text typed so far.
    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }

    /// The characters typed so far.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// Cursor position, in characters.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Replaces the text and puts the cursor at its end.
    pub fn set(&mut self, text: &str) {
        self.chars = text.chars().collect();
        self.cursor = self.chars.len();
    }

    /// Inserts a character at the cursor.
    pub fn insert(&mut self, c: char) {
        self.chars.insert(self.cursor, c);
        self.cursor += 1;
    }

    /// Deletes the character before the cursor.
    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.chars.remove(self.cursor);
        }
    }

    /// Deletes the character under the cursor.
    pub fn delete(&mut self) {
        if self.cursor < self.chars.len() {
            self.chars.remove(self.cursor);
        }
    }

    /// Moves the cursor one character left.
    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    /// Moves the cursor one character right.
    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.chars.len());
    }

    /// Moves the cursor to the start.
    pub fn home(&mut self) {
        self.cursor = 0;
    }

    /// Moves the cursor to the end.
    pub fn end(&mut self) {
        self.cursor = self.chars.len();
    }

    /// Deletes everything before the cursor (Ctrl-U).
    pub fn kill_to_start(&mut self) {
        self.chars.drain(..self.cursor);
        self.cursor = 0;
    }

    /// Deletes everything from the cursor on (Ctrl-K).
    pub fn kill_to_end(&mut self) {
        self.chars.truncate(self.cursor);
    }

    /// Deletes the word before the cursor (Ctrl-W).
    pub fn delete_word(&mut self) {
        let mut start = self.cursor;
        while start > 0 && self.chars[start - 1].is_whitespace() {
            start -= 1;
        }
        while start > 0 && !self.chars[start - 1].is_whitespace() {
            start -= 1;
        }
        self.chars.drain(start..self.cursor);
        self.cursor = start;
    }

    /// Shows the previous history entry (Up).
    pub fn history_prev(&mut self) {
        let index = match &self.browsing {
            Some((i, _)) => i.saturating_sub(1),
            None if self.history.is_empty() => return,
            None => {
                self.browsing = Some((self.history.len(), self.text()));
                self.history.len() - 1
            }
        };
        if let (Some(b), Some(entry)) = (self.browsing.as_mut(), self.history.get(index)) {
            b.0 = index;
            let entry = entry.clone();
            self.set(&entry);
        }
    }

    /// Shows the next history entry, or the line typed before browsing (Down).
    pub fn history_next(&mut self) {
        let Some((index, draft)) = self.browsing.take() else {
            return;
        };
        match self.history.get(index + 1).cloned() {
            Some(entry) => {
                self.browsing = Some((index + 1, draft));
                self.set(&entry);
            }
            None => self.set(&draft),
        }
    }

    /// Takes the line for submission, remembering it in the history.
    pub fn take(&mut self) -> String {
        let line = self.text();
        self.chars.clear();
        self.cursor = 0;
        self.browsing = None;
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            if self.history.len() >= MAX_HISTORY {
                self.history.remove(0);
            }
            self.history.push(line.clone());
        }
        line
    }

    /// Completes the word before the cursor: a command at the start of the
    /// line, else a member name or `#room` from `members`. A single match is completed with a space
    /// after it; several are completed to their common prefix, or returned
    /// when that adds nothing.
    pub fn complete(&mut self, members: &[String]) -> Option<Vec<String>> {
        let mut start = self.cursor;
        while start > 0 && !self.chars[start - 1].is_whitespace() {
            start -= 1;
        }
        let word: String = self.chars[start..self.cursor].iter().collect();
        let command = start == 0 && (word.starts_with('/') || word.starts_with('$'));
        if word.is_empty() {
            return None;
        }
        let pool: Vec<&str> = if command {
            COMMANDS.to_vec()
        } else {
            members.iter().map(String::as_str).collect()
        };
        let mut found: Vec<String> = pool
            .into_iter()
            .filter(|c| c.starts_with(&word))
            .map(str::to_string)
            .collect();
        found.dedup();
        let replacement = match found.as_slice() {
            [] => return None,
            [only] => format!("{only} "),
            [first, rest @ ..] => {
                let common = rest
                    .iter()
                    .fold(first.clone(), |acc, c| common_prefix(&acc, c));
                if common.chars().count() <= word.chars().count() {
                    return Some(found);
                }
                common
            }
        };
        let mut tail = self.chars.split_off(self.cursor);
        if replacement.ends_with(' ') && tail.first() == Some(&' ') {
            tail.remove(0);
        }
        self.chars.truncate(start);
        self.chars.extend(replacement.chars());
        self.cursor = self.chars.len();
        self.chars.extend(tail);
        None
    }
}

fn common_prefix(a: &str, b: &str) -> String {
    a.chars()
        .zip(b.chars())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion() {
        let members = vec!["alice".to_string(), "albert".to_string(), "bob".to_string()];
        let mut line = InputLine::default();
        line.set("/wh");
        assert!(line.complete(&members).is_none());
        assert_eq!(line.text(), "/who ");
        line.set("/msg b");
        line.complete(&members);
        assert_eq!(line.text(), "/msg bob ");
        line.set("hi a");
        line.complete(&members);
        assert_eq!(
            line.text(),
            "hi al",
            "several matches complete to their common prefix"
        );
        assert_eq!(
            line.complete(&members),
            Some(vec!["alice".to_string(), "albert".to_string()])
        );
        line.set("/h");
        assert_eq!(line.complete(&members).map(|f| f.len()), Some(2));
    }
}
