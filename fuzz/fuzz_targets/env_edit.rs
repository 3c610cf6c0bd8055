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
        // Removing (or emptying) a key another value requires (`${K?…}`) leaves a file compose
        // rejects: the env_file kind refuses to write it. Any other failure is the writer's.
        Err(e)
            if edits.remove.iter().chain(edits.set.iter().map(|(k, _)| k)).any(|k| {
                e.message
                    .starts_with(&format!("required variable {k} is missing a value"))
            }) =>
        {
            return
        }
        Err(e) => panic!("edited file does not evaluate: {e}\n{out:?}"),
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
