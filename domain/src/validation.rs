//! Field-level validation shared by the aggregates.

use serde::{Deserialize, Serialize};

/// One invalid field of a command, named the way the API caller wrote it
/// (e.g. `config.API_TOKEN` or `runtime.image`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Path of the offending field.
    pub field: String,
    /// What is wrong with it, in words a person can act on.
    pub message: String,
}

impl FieldError {
    /// An error for `field` saying `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Collects field errors while a command is checked.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    /// Records that `field` is invalid.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// `Ok` when nothing was recorded, the list otherwise.
    pub fn into_result(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// Longest name accepted for catalog entries and servers.
pub const MAX_NAME_LEN: usize = 64;
/// Longest free-text description.
pub const MAX_DESCRIPTION_LEN: usize = 2000;
/// Longest single config or secret value.
pub const MAX_VALUE_LEN: usize = 8192;

/// Checks a human-chosen name: 1–64 characters, starting with a letter or digit,
/// then letters, digits, `.`, `_` or `-`. Names end up in container names and
/// command lines, so nothing else is let through.
pub fn check_name(v: &mut Violations, field: &str, name: &str) {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        v.add(field, format!("must be 1 to {MAX_NAME_LEN} characters"));
        return;
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !first_ok || !rest_ok {
        v.add(
            field,
            "must start with a letter or digit and contain only letters, digits, '.', '_' or '-'",
        );
    }
}

/// Checks that free text is not too long and holds no control characters but
/// newlines and tabs.
pub fn check_text(v: &mut Violations, field: &str, text: &str, max: usize) {
    if text.len() > max {
        v.add(field, format!("must be at most {max} bytes"));
    } else if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        v.add(field, "must not contain control characters");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_ok(name: &str) -> bool {
        let mut v = Violations::default();
        check_name(&mut v, "name", name);
        v.into_result().is_ok()
    }

    #[test]
    fn names_are_restricted_to_a_safe_alphabet() {
        assert!(name_ok("github"));
        assert!(name_ok("my-server_2.prod"));
        assert!(!name_ok(""));
        assert!(!name_ok("-leading-dash"));
        assert!(!name_ok("has space"));
        assert!(!name_ok("semi;colon"));
        assert!(!name_ok(&"a".repeat(65)));
    }
}
