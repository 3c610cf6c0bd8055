//! Text that came from the host, an image or upstream (paths, facts, `.env` values, command
//! output, a git server's messages) shown on a terminal: control characters are written as
//! escapes (`\x1b`, `\r`, `\n`), so a value cannot move the cursor, colour the screen or start a
//! line of its own that looks like tend's (`Apply: 0 changed`). The JSON report keeps the raw
//! value (JSON escapes it).

use std::borrow::Cow;
use std::fmt::Write;

/// `text` for one line: every control character escaped, newlines too.
pub(crate) fn line(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// `text` that may span lines (a command's own message, a located load error): newlines kept
/// (the caller indents what follows), every other control character escaped.
pub(crate) fn lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && !(keep_newlines && c == '\n') && c != '\t';
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            _ if !unsafe_char(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(line("plain é\ttab"), "plain é\ttab");
        assert_eq!(line("a\nApply: 0 changed"), "a\\nApply: 0 changed");
        assert_eq!(line("\x1b[2K\rforged"), "\\x1b[2K\\rforged");
        assert_eq!(line("c1\u{9b}31m"), "c1\\x9b31m");
        assert_eq!(lines("one\ntwo\x1b[0m"), "one\ntwo\\x1b[0m");
    }
}
