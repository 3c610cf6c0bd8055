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
    pub message: String,
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub source_line: String,
    /// Caret width in characters (at least one).
    pub width: usize,
    pub help: Option<String>,
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
        }
    }
}

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
        writeln!(f, "{} | {}", self.line, self.source_line)?;
        let pad: String = self
            .source_line
            .chars()
            .take(self.column - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "{gutter} | {pad}{}", "^".repeat(self.width))?;
        if let Some(help) = &self.help {
            write!(f, "\n{gutter} = help: {help}")?;
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
    fn spans_past_the_end_do_not_panic() {
        let d = Diagnostic::new("m".into(), "ab", 10..20, "x", None);
        assert_eq!(d.line, 1);
        let d = Diagnostic::new("m".into(), "", 0..0, "x", None);
        assert_eq!((d.line, d.column), (1, 1));
        let d = Diagnostic::new("m".into(), "é\né", 1..3, "x", None);
        assert_eq!(d.line, 1);
    }
}
