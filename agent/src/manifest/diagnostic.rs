//! Errors located in a manifest, drawn the way cargo and rustc draw them:
//!
//! ```text
//! error: unknown field `contnet` in file.motd
//!  --> manifest.toml:3:1
//!   |
//! 3 | contnet = "hi"
//!   | ^^^^^^^
//!   = help: did you mean `content`?
//! ```

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// One error in a manifest: what is wrong, where, and what would be right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong.
    pub message: String,
    /// The file it is in (the manifest, a module, a data layer).
    pub file: PathBuf,
    /// Its line, from 1.
    pub line: usize,
    /// Its column, from 1, in characters.
    pub column: usize,
    /// The line as written, shown above the caret.
    pub source_line: String,
    /// Caret width in characters (at least one).
    pub width: usize,
    /// What would be right, when tend can say.
    pub help: Option<String>,
    /// Where it was reached from (`imported from manifest.toml:12 (module.web)`).
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// Locate `span` (byte range) in `source`.
    pub fn new(
        file: PathBuf,
        source: &str,
        span: Range<usize>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        let start = floor_char_boundary(source, span.start.min(source.len()));
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let end = floor_char_boundary(source, span.end.clamp(start, line_end));
        let width = source[start..end].chars().count().max(1);
        Diagnostic {
            message: message.into(),
            file,
            line,
            column,
            source_line: source[line_start..line_end]
                .trim_end_matches('\r')
                .to_string(),
            width,
            help,
            notes: Vec::new(),
        }
    }
}

/// The most characters of a source line an error shows, and how many before the caret.
const WINDOW: usize = 120;
const LEAD: usize = 40;

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gutter = " ".repeat(self.line.to_string().len());
        writeln!(f, "error: {}", self.message)?;
        writeln!(
            f,
            "{gutter}--> {}:{}:{}",
            self.file.display(),
            self.line,
            self.column
        )?;
        writeln!(f, "{gutter} |")?;
        // A long line is shown as a window around the caret: a megabyte-long value must not
        // become a megabyte-long error.
        let chars: Vec<char> = self.source_line.chars().collect();
        // The column may lie past the line shown (carriage returns trimmed off its end).
        let at = (self.column - 1).min(chars.len());
        let first = if chars.len() > WINDOW && at > LEAD {
            at - LEAD
        } else {
            0
        };
        let last = (first + WINDOW).min(chars.len());
        let before = if first > 0 { "…" } else { "" };
        let after = if last < chars.len() { "…" } else { "" };
        let shown: String = chars[first..last].iter().collect();
        writeln!(f, "{} | {before}{shown}{after}", self.line)?;
        let pad: String = before
            .chars()
            .chain(chars[first..at.min(last)].iter().copied())
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let width = self.width.min(last.saturating_sub(at)).max(1);
        write!(f, "{gutter} | {pad}{}", "^".repeat(width))?;
        if let Some(help) = &self.help {
            write!(f, "\n{gutter} = help: {help}")?;
        }
        // A long chain keeps its two ends: where the mistake was reached from first and last.
        let n = self.notes.len();
        for (i, note) in self.notes.iter().enumerate() {
            if n > 8 && (4..n - 4).contains(&i) {
                if i == 4 {
                    write!(f, "\n{gutter} = note: … {} more imports …", n - 8)?;
                }
                continue;
            }
            write!(f, "\n{gutter} = note: {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_points_at_the_span() {
        let src = "[file.a]\npath = \"/x\"\ncontnet = \"hi\"\n";
        let start = src.find("contnet").expect("present");
        let d = Diagnostic::new(
            "m.toml".into(),
            src,
            start..start + 7,
            "unknown field",
            Some("did you mean `content`?".into()),
        );
        assert_eq!((d.line, d.column, d.width), (3, 1, 7));
        assert_eq!(
            d.to_string(),
            "error: unknown field\n --> m.toml:3:1\n  |\n3 | contnet = \"hi\"\n  | ^^^^^^^\n  = help: did you mean `content`?"
        );
    }

    #[test]
    fn a_long_line_is_shown_as_a_window_around_the_caret() {
        let src = format!("big = \"{}\" # end", "x".repeat(100_000));
        let at = src.find('#').expect("present");
        let d = Diagnostic::new("m.toml".into(), &src, at..at + 1, "here", None);
        let text = d.to_string();
        assert!(text.len() < 400, "{} bytes", text.len());
        let lines: Vec<&str> = text.lines().collect();
        let shown = lines[3];
        let caret = lines[4];
        assert!(
            shown.starts_with("1 | …x") && shown.ends_with("\" # end"),
            "{shown}"
        );
        // The caret sits under the `#` it names.
        let col = caret.find('^').expect("caret");
        assert_eq!(shown.chars().nth(caret[..col].chars().count()), Some('#'));
    }

    #[test]
    fn a_caret_past_a_trimmed_line_end_does_not_panic() {
        // A quote, then carriage returns the shown line drops: the column lies past its end.
        let src = format!("'{}%{}", "\r".repeat(300), "\r".repeat(200));
        let d = Diagnostic::new("m".into(), &src, 400..401, "x", None);
        let text = d.to_string();
        assert!(text.contains('^'), "{text}");
    }

    #[test]
    fn spans_past_the_end_do_not_panic() {
        let d = Diagnostic::new("m".into(), "ab", 10..20, "x", None);
        assert_eq!(d.line, 1);
        let d = Diagnostic::new("m".into(), "", 0..0, "x", None);
        assert_eq!((d.line, d.column), (1, 1));
        let d = Diagnostic::new("m".into(), "é\né", 1..3, "x", None);
        assert_eq!(d.line, 1);
    }
}
