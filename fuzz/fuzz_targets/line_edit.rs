//! The `line` and `block` editors on arbitrary bytes: applying an edit twice equals applying it
//! once, and every line the edit does not name is still there, in order, byte for byte (its
//! ending aside when it became or stopped being the file's last line).
//!
//! Input: `FILE \0 PATTERN \0 LINE \0 FLAGS`; FLAGS' first byte picks present or absent, the
//! occurrence, the anchor (the end, after or before PATTERN) and `line` or `block`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regex::bytes::{Regex, RegexBuilder};
use tend_resources::edit::text::{
    body, edit_block, edit_line, split, Anchor, BlockEdit, LineEdit, Occurrence,
};

fn bodies<'a>(lines: &[&'a [u8]], skip: impl Fn(&[u8]) -> bool) -> Vec<&'a [u8]> {
    lines.iter().map(|l| body(l)).filter(|b| !skip(b)).collect()
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == 0);
    let (Some(file), Some(pattern), Some(line), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let flags = flags.first().copied().unwrap_or(0);
    if line.contains(&b'\n') || line.contains(&b'\r') {
        return;
    }
    let Ok(pattern) = std::str::from_utf8(pattern) else {
        return;
    };
    let Ok(re) = RegexBuilder::new(pattern).size_limit(1 << 16).build() else {
        return;
    };
    let anchor = match (flags >> 3) & 3 {
        1 => Anchor::After(re.clone()),
        2 => Anchor::Before(re.clone()),
        _ => Anchor::End,
    };
    let present = flags & 1 == 1;
    if flags & 0x40 == 0 {
        let matcher: Option<Regex> = (flags & 0x20 != 0).then(|| re.clone());
        let edit = LineEdit {
            line: line.to_vec(),
            matcher: matcher.clone(),
            anchor,
            occurrence: match (flags >> 1) & 3 {
                1 => Occurrence::First,
                2 => Occurrence::Last,
                _ => Occurrence::All,
            },
            present,
        };
        let once = edit_line(file, &edit);
        let twice = edit_line(&once, &edit);
        assert_eq!(once, twice, "a second run changed the file");
        let named = |b: &[u8]| b == line || matcher.as_ref().is_some_and(|m| m.is_match(b));
        assert_eq!(
            bodies(&split(file), named),
            bodies(&split(&once), named),
            "a line the edit does not name changed"
        );
    } else {
        let begin = b"# BEGIN tend fuzz".to_vec();
        let end = b"# END tend fuzz".to_vec();
        let content: Vec<Vec<u8>> = line
            .split(|b| *b == b'|')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        if content.iter().any(|l| *l == begin || *l == end) {
            return;
        }
        let edit = BlockEdit {
            begin: begin.clone(),
            end: end.clone(),
            content,
            anchor,
            present,
        };
        let Ok(once) = edit_block(file, &edit) else {
            return;
        };
        let twice = edit_block(&once, &edit).expect("the edited file has a closed block");
        assert_eq!(once, twice, "a second run changed the file");
        // Outside the blocks: the same lines.
        let outside = |bytes: &[u8]| -> Vec<Vec<u8>> {
            let mut out = Vec::new();
            let mut inside = false;
            for l in split(bytes) {
                let b = body(l);
                if !inside && b == begin.as_slice() {
                    inside = true;
                } else if inside && b == end.as_slice() {
                    inside = false;
                } else if !inside {
                    out.push(b.to_vec());
                }
            }
            out
        };
        assert_eq!(outside(file), outside(&once), "a line outside the blocks changed");
    }
});
