//! Input rules shared by the relay, the host and the client, so every side
//! refuses the same things with the same words.

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
    /// The message is empty.
    #[error("message must not be empty")]
    EmptyMessage,
    /// The message is too large.
    #[error("message is {0} bytes; the limit is {MAX_MESSAGE_BYTES} bytes (4 KiB)")]
    MessageTooLarge(usize),
}

/// Checks a chat name: non-empty, at most 32 characters, no `:` or whitespace.
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
    Ok(())
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
