//! The `.env` writer's edits on arbitrary files: after set / remove / append on a file that
//! parses, the result parses, every key set reads back exactly its value, every key removed is
//! gone, and every statement not edited is still there byte for byte.
//!
//! Input: `FILE \0 KEY \0 VALUE \0 KEY \0 VALUE …`; a key starting with `-` is removed instead.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tend_resources::dotenv::{apply_edits, evaluate, parse, Edits};

fn key_ok(k: &str) -> bool {
    let mut cs = k.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let file = parts.next().unwrap_or_default();
    let Ok(doc) = parse(file) else { return };
    // A file compose would reject, or with a last line compose reads as a variable with no name,
    // stays out of scope: the env_file kind refuses to edit it.
    if evaluate(&doc, &|_| None).is_err() || doc.statements.iter().any(|s| s.key.is_empty()) {
        return;
    }
    let mut edits = Edits::default();
    let rest: Vec<&str> = parts.collect();
    for pair in rest.chunks(2).take(8) {
        let key = pair[0];
        if let Some(k) = key.strip_prefix('-') {
            if key_ok(k) && !edits.remove.iter().any(|r| r == k) {
                edits.remove.push(k.to_string());
            }
        } else if key_ok(key) && pair.len() == 2 && !edits.set.iter().any(|(k, _)| k == key) {
            edits.set.push((key.to_string(), pair[1].to_string()));
        }
    }
    // A key both set and removed: the test says nothing about which wins.
    edits
        .remove
        .retain(|r| !edits.set.iter().any(|(k, _)| k == r));
    let out = apply_edits(&doc, &edits);
    let after = parse(&out).unwrap_or_else(|e| panic!("edited file does not parse: {e}\n{out:?}"));
    let values = match evaluate(&after, &|_| None) {
        Ok(v) => v,
        // An edit can change how another value expands: removing (or emptying) a key it
        // requires (`${K?…}`), or setting one that makes `${K+…}` expand text it skipped before.
        // The env_file kind refuses to write such a file. A statement tend wrote itself is
        // quoted literally and must always expand: a failure on a line holding only such
        // statements is the writer's (compose reads `A=""b=""` as two statements on one line,
        // and an error names only the line).
        Err(e) => {
            let mut on_line = after.statements.iter().filter(|s| s.line == e.line).peekable();
            let wrote = on_line.peek().is_some()
                && on_line.all(|s| edits.set.iter().any(|(k, _)| k == &s.key));
            assert!(!wrote, "a value tend wrote does not evaluate: {e}\n{out:?}");
            return;
        }
    };
    for (k, v) in &edits.set {
        // Values set by tend are literal: quoting keeps `$` and quotes as they are.
        assert_eq!(values.get(k), Some(v), "set {k}={v:?} in {out:?}");
    }
    for k in &edits.remove {
        assert!(
            !after.statements.iter().any(|s| &s.key == k),
            "removed {k} in {out:?}"
        );
    }
    for s in &doc.statements {
        let touched = edits.set.iter().any(|(k, _)| k == &s.key) || edits.remove.contains(&s.key);
        if !touched {
            let original = &doc.text[s.range.clone()];
            assert!(
                out.contains(original),
                "untouched {original:?} changed in {out:?}"
            );
        }
    }
});
