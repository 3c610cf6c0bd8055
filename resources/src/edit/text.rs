//! Edits of one line or one marked block in a file's bytes, keeping every other byte as it was:
//! line endings (LF or CRLF, per line), a missing final newline, bytes that are not UTF-8.
//!
//! Pure functions: the `line` and `block` kinds, their plan predictions and the fuzz target all
//! call these, so what plan shows is what apply writes.

use regex::bytes::Regex;

/// The lines of `bytes`, each with its terminator (`\n`, or none for a last line without one).
pub fn split(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            out.push(&bytes[start..=i]);
            start = i + 1;
        }
    }
    if start < bytes.len() {
        out.push(&bytes[start..]);
    }
    out
}

/// A line without its terminator (`\n` or `\r\n`): what patterns and markers are matched on.
pub fn body(line: &[u8]) -> &[u8] {
    match line.strip_suffix(b"\n") {
        Some(l) => l.strip_suffix(b"\r").unwrap_or(l),
        // A last line with no ending: a `\r` there is no line ending, it is content.
        None => line,
    }
}

/// The terminator a new line gets: the file's first line ending (CRLF files stay CRLF), LF for a
/// file with none.
pub fn newline(bytes: &[u8]) -> &'static [u8] {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(i) if i > 0 && bytes[i - 1] == b'\r' => b"\r\n",
        _ => b"\n",
    }
}

/// Where a line or block that is not in the file yet goes.
#[derive(Debug, Clone)]
pub enum Anchor {
    /// At the end of the file.
    End,
    /// After the last line matching the pattern (at the end when none does).
    After(Regex),
    /// Before the first line matching the pattern (at the end when none does).
    Before(Regex),
}

/// Which of the lines matching `match` a present `line` replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occurrence {
    /// Every one: whichever the program reading the file honours (sshd takes the first, most
    /// others the last), it reads the value asked for.
    All,
    /// The first one only.
    First,
    /// The last one only (Ansible's `lineinfile`).
    Last,
}

/// One line kept present (replacing the lines `matcher` finds, else inserted at `anchor`) or
/// absent (every line `matcher` finds, or equal to `line`).
#[derive(Debug, Clone)]
pub struct LineEdit {
    /// The line, without terminator.
    pub line: Vec<u8>,
    /// The lines it replaces (present) or removes (absent).
    pub matcher: Option<Regex>,
    /// Where it goes when nothing matches.
    pub anchor: Anchor,
    /// Which matching lines a present line replaces.
    pub occurrence: Occurrence,
    /// Present or absent.
    pub present: bool,
}

/// The bytes after `edit` (equal to `old` when it is already so).
pub fn edit_line(old: &[u8], edit: &LineEdit) -> Vec<u8> {
    let lines = split(old);
    if !edit.present {
        let keep = |l: &&[u8]| match &edit.matcher {
            Some(re) => !re.is_match(body(l)),
            None => body(l) != edit.line.as_slice(),
        };
        return remove_lines(old, &lines, keep);
    }
    let matching: Vec<usize> = match &edit.matcher {
        Some(re) => (0..lines.len())
            .filter(|&i| re.is_match(body(lines[i])))
            .collect(),
        None => Vec::new(),
    };
    if !matching.is_empty() {
        // First or last is chosen among the matching lines and the line itself: once it is in
        // place, it stays the one chosen, so a second run changes nothing.
        let either = |i: &usize| matching.contains(i) || body(lines[*i]) == edit.line.as_slice();
        let chosen: Vec<usize> = match edit.occurrence {
            Occurrence::All => matching,
            Occurrence::First => (0..lines.len()).find(either).into_iter().collect(),
            Occurrence::Last => (0..lines.len()).rev().find(either).into_iter().collect(),
        };
        let mut out = Vec::with_capacity(old.len() + edit.line.len());
        for (i, l) in lines.iter().enumerate() {
            if chosen.contains(&i) {
                out.extend_from_slice(&edit.line);
                let term = &l[body(l).len()..];
                // An empty line needs its ending, or it is no line at all.
                out.extend_from_slice(if term.is_empty() && edit.line.is_empty() {
                    newline(old)
                } else {
                    term
                });
            } else {
                out.extend_from_slice(l);
            }
        }
        return out;
    }
    if lines.iter().any(|l| body(l) == edit.line.as_slice()) {
        return old.to_vec();
    }
    insert(old, &lines, &[edit.line.as_slice()], &edit.anchor)
}

/// A marked block: its first and last line and the lines between.
#[derive(Debug, Clone)]
pub struct BlockEdit {
    /// The opening marker line (`# BEGIN tend NAME`).
    pub begin: Vec<u8>,
    /// The closing marker line (`# END tend NAME`).
    pub end: Vec<u8>,
    /// The lines inside, without terminators.
    pub content: Vec<Vec<u8>>,
    /// Where a block not in the file yet goes.
    pub anchor: Anchor,
    /// Present or absent.
    pub present: bool,
}

/// Why a block edit cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockError {
    /// An opening marker with no closing marker after it (1-based line): editing would guess
    /// where the block ends.
    Unclosed(usize),
}

/// Where the block is: the index of its opening and closing marker lines.
fn find_block(lines: &[&[u8]], edit: &BlockEdit) -> Result<Option<(usize, usize)>, BlockError> {
    let Some(b) = lines.iter().position(|l| body(l) == edit.begin.as_slice()) else {
        return Ok(None);
    };
    match lines[b + 1..]
        .iter()
        .position(|l| body(l) == edit.end.as_slice())
    {
        Some(e) => Ok(Some((b, b + 1 + e))),
        None => Err(BlockError::Unclosed(b + 1)),
    }
}

/// The bytes after `edit` (equal to `old` when it is already so).
pub fn edit_block(old: &[u8], edit: &BlockEdit) -> Result<Vec<u8>, BlockError> {
    if !edit.present {
        // Every block with these markers goes (a copy pasted twice included); one left open
        // after them is refused like any other.
        let mut now = old.to_vec();
        loop {
            let lines = split(&now);
            let Some((b, e)) = find_block(&lines, edit)? else {
                return Ok(now);
            };
            let mut i = 0;
            now = remove_lines(&now, &lines, |_| {
                i += 1;
                !(b + 1..=e + 1).contains(&i)
            });
        }
    }
    let lines = split(old);
    let found = find_block(&lines, edit)?;
    let mut block: Vec<&[u8]> = vec![edit.begin.as_slice()];
    block.extend(edit.content.iter().map(Vec::as_slice));
    block.push(edit.end.as_slice());
    let Some((b, e)) = found else {
        return Ok(insert(old, &lines, &block, &edit.anchor));
    };
    let nl = newline(old);
    let mut out = Vec::with_capacity(old.len());
    for l in &lines[..b] {
        out.extend_from_slice(l);
    }
    for (k, l) in block.iter().enumerate() {
        out.extend_from_slice(l);
        // The old block's own line endings where it had them; the closing marker keeps its
        // (a file that ended without a newline right after the block still does).
        let old_line = lines.get(b + k).filter(|_| b + k < e);
        let term: &[u8] = if k == block.len() - 1 {
            &lines[e][body(lines[e]).len()..]
        } else {
            old_line.map_or(nl, |o| &o[body(o).len()..])
        };
        out.extend_from_slice(if term.is_empty() && k != block.len() - 1 {
            nl
        } else {
            term
        });
    }
    for l in &lines[e + 1..] {
        out.extend_from_slice(l);
    }
    Ok(out)
}

fn remove_lines<'a>(
    old: &[u8],
    lines: &[&'a [u8]],
    mut keep: impl FnMut(&&'a [u8]) -> bool,
) -> Vec<u8> {
    let kept: Vec<&[u8]> = lines.iter().copied().filter(|l| keep(l)).collect();
    if kept.len() == lines.len() {
        return old.to_vec();
    }
    let mut out: Vec<u8> = kept.concat();
    // The last line went and took the file's missing final newline with it: the new last line
    // ends as the old one did (without one).
    let old_ended = old.last().is_none_or(|b| *b == b'\n');
    // (An empty line keeps its ending: without it, it would be no line at all.)
    if !old_ended
        && kept
            .last()
            .is_some_and(|l| l.ends_with(b"\n") && !body(l).is_empty())
    {
        let cut = kept.last().map_or(0, |l| l.len() - body(l).len());
        out.truncate(out.len() - cut);
    }
    out
}

/// `new` lines inserted at `anchor`, each ending as the file's lines do. A file that ended
/// without a newline still does when they go at its end (unless the last is empty: without its
/// ending it would be no line at all).
fn insert(old: &[u8], lines: &[&[u8]], new: &[&[u8]], anchor: &Anchor) -> Vec<u8> {
    let nl = newline(old);
    let at = match anchor {
        Anchor::End => lines.len(),
        Anchor::After(re) => lines
            .iter()
            .rposition(|l| re.is_match(body(l)))
            .map_or(lines.len(), |i| i + 1),
        Anchor::Before(re) => lines
            .iter()
            .position(|l| re.is_match(body(l)))
            .unwrap_or(lines.len()),
    };
    let mut out = Vec::with_capacity(old.len() + new.iter().map(|l| l.len() + 2).sum::<usize>());
    for l in &lines[..at] {
        out.extend_from_slice(l);
    }
    let unterminated_end = at == lines.len() && !old.is_empty() && !old.ends_with(b"\n");
    if unterminated_end {
        // A `\r` ending the old last line is content: `\n` alone would turn it into a CRLF.
        out.extend_from_slice(if old.ends_with(b"\r") { b"\r\n" } else { nl });
    }
    for (k, l) in new.iter().enumerate() {
        out.extend_from_slice(l);
        if !(unterminated_end && k == new.len() - 1 && !l.is_empty()) {
            out.extend_from_slice(nl);
        }
    }
    for l in &lines[at..] {
        out.extend_from_slice(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(l: &str, m: Option<&str>, anchor: Anchor, present: bool) -> LineEdit {
        LineEdit {
            line: l.as_bytes().to_vec(),
            matcher: m.map(|m| Regex::new(m).expect("regex")),
            anchor,
            occurrence: Occurrence::All,
            present,
        }
    }

    fn block(content: &[&str], anchor: Anchor, present: bool) -> BlockEdit {
        BlockEdit {
            begin: b"# BEGIN tend x".to_vec(),
            end: b"# END tend x".to_vec(),
            content: content.iter().map(|l| l.as_bytes().to_vec()).collect(),
            anchor,
            present,
        }
    }

    #[test]
    fn a_matching_line_is_replaced_in_place_keeping_its_ending() {
        let e = line(
            "PermitRootLogin no",
            Some("^#?PermitRootLogin"),
            Anchor::End,
            true,
        );
        assert_eq!(
            edit_line(b"a\r\n#PermitRootLogin yes\r\nb", &e),
            b"a\r\nPermitRootLogin no\r\nb"
        );
    }

    #[test]
    fn every_matching_line_is_replaced_unless_told_first_or_last() {
        let mut e = line("X 1", Some("^X "), Anchor::End, true);
        assert_eq!(edit_line(b"X 2\nY\nX 3\n", &e), b"X 1\nY\nX 1\n");
        e.occurrence = Occurrence::First;
        assert_eq!(edit_line(b"X 2\nY\nX 3\n", &e), b"X 1\nY\nX 3\n");
        e.occurrence = Occurrence::Last;
        assert_eq!(edit_line(b"X 2\nY\nX 3\n", &e), b"X 2\nY\nX 1\n");
        // Chosen among the matches and the line itself: a second run changes nothing.
        let mut e = line("Y", Some("^X"), Anchor::End, true);
        e.occurrence = Occurrence::First;
        assert_eq!(edit_line(b"X 2\nX 3\n", &e), b"Y\nX 3\n");
        assert_eq!(edit_line(b"Y\nX 3\n", &e), b"Y\nX 3\n");
    }

    #[test]
    fn a_new_line_goes_at_the_anchor_or_the_end_and_keeps_a_missing_final_newline() {
        let re = |s: &str| Regex::new(s).expect("regex");
        assert_eq!(
            edit_line(b"a\nb", &line("L", None, Anchor::End, true)),
            b"a\nb\nL"
        );
        assert_eq!(
            edit_line(b"a\nb\n", &line("L", None, Anchor::After(re("^a")), true)),
            b"a\nL\nb\n"
        );
        assert_eq!(
            edit_line(b"a\nb\n", &line("L", None, Anchor::Before(re("^b")), true)),
            b"a\nL\nb\n"
        );
        assert_eq!(edit_line(b"", &line("L", None, Anchor::End, true)), b"L\n");
        assert_eq!(
            edit_line(b"a\r\n", &line("L", None, Anchor::End, true)),
            b"a\r\nL\r\n"
        );
    }

    #[test]
    fn a_line_already_there_is_no_change_even_if_the_pattern_no_longer_matches_it() {
        let e = line(
            "PermitRootLogin no",
            Some("^#PermitRootLogin"),
            Anchor::End,
            true,
        );
        assert_eq!(
            edit_line(b"PermitRootLogin no\n", &e),
            b"PermitRootLogin no\n"
        );
    }

    #[test]
    fn absent_removes_every_matching_line_and_keeps_a_missing_final_newline() {
        assert_eq!(
            edit_line(b"a\nX\nb\nX", &line("X", None, Anchor::End, false)),
            b"a\nb"
        );
        assert_eq!(
            edit_line(b"a\nx=1\nx=2\n", &line("", Some("^x="), Anchor::End, false)),
            b"a\n"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_survive_an_edit() {
        let e = line("L", None, Anchor::End, true);
        assert_eq!(edit_line(b"\xff\xfe\n", &e), b"\xff\xfe\nL\n");
    }

    #[test]
    fn a_block_is_inserted_replaced_and_removed_in_place() {
        let b1 = block(&["one", "two"], Anchor::End, true);
        let once = edit_block(b"head\r\ntail", &b1).expect("edit");
        assert_eq!(
            once,
            b"head\r\ntail\r\n# BEGIN tend x\r\none\r\ntwo\r\n# END tend x"
        );
        assert_eq!(edit_block(&once, &b1).expect("edit"), once);
        let b2 = block(&["three"], Anchor::End, true);
        assert_eq!(
            edit_block(&once, &b2).expect("edit"),
            b"head\r\ntail\r\n# BEGIN tend x\r\nthree\r\n# END tend x"
        );
        let gone = edit_block(&once, &block(&[], Anchor::End, false)).expect("edit");
        assert_eq!(gone, b"head\r\ntail");
    }

    #[test]
    fn an_unclosed_block_is_refused() {
        assert_eq!(
            edit_block(b"a\n# BEGIN tend x\nb\n", &block(&["c"], Anchor::End, true)),
            Err(BlockError::Unclosed(2))
        );
    }
}
