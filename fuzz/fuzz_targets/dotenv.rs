//! Any bytes as a `.env` file: parse and evaluate never panic, and every value read back
//! through tend's quoting is the same value (the writer's round trip). Edits of the file are the
//! `env_edit` target's concern: doing them here too made each input cost eight whole-file
//! re-parses, and this target ran at a tenth of its speed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tend_resources::dotenv::{evaluate, parse, quote};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(doc) = parse(&text) else { return };
    let Ok(values) = evaluate(&doc, &|_| None) else {
        return;
    };
    for (key, value) in values.iter().take(8) {
        if key.is_empty() {
            continue;
        }
        let line = format!("K={}\n", quote(value));
        let back = parse(&line)
            .and_then(|d| evaluate(&d, &|_| None))
            .expect("quoted value parses");
        assert_eq!(
            back.get("K"),
            Some(value),
            "round trip of {value:?} via {line:?}"
        );
    }
});
