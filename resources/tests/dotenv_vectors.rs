//! The 60 `.env` test vectors (compose-go's behaviour, `tests/fixtures/dotenv/cases.toml`) and
//! the real Dify 1.12.1 `.env.example`.

// Fixtures of the test itself, read as files.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use tend_resources::dotenv::{apply_edits, evaluate, parse, Edits};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel)
}

#[derive(serde::Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    input: String,
    #[serde(default)]
    env: BTreeMap<String, String>,
    expected: Option<BTreeMap<String, String>>,
    #[serde(default)]
    error: bool,
}

#[test]
fn all_sixty_vectors_pass() {
    let text = std::fs::read_to_string(fixture("dotenv/cases.toml")).expect("cases.toml");
    let cases: Cases = toml::from_str(&text).expect("cases parse");
    assert_eq!(cases.case.len(), 60);
    let mut failures = Vec::new();
    for c in &cases.case {
        let env = |k: &str| c.env.get(k).cloned();
        let got = parse(&c.input).and_then(|doc| evaluate(&doc, &env));
        match (&got, c.error, &c.expected) {
            (Err(_), true, _) => {}
            (Ok(map), false, Some(want)) if map == want => {}
            _ => failures.push(format!(
                "{}: got {got:?}, expected {:?}{}",
                c.name,
                c.expected,
                if c.error { " (an error)" } else { "" }
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 60 vectors fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn dify_env_example_reads_as_compose_reads_it() {
    let text = std::fs::read_to_string(fixture("dify/env.example")).expect("env.example");
    let doc = parse(&text).expect("parses");
    assert_eq!(doc.statements.len(), 680);
    let values = evaluate(&doc, &|_| None).expect("evaluates");
    assert_eq!(values["COMPOSE_PROFILES"], "weaviate,postgresql");
    assert_eq!(
        values["OPENSEARCH_INITIAL_ADMIN_PASSWORD"],
        "Qazwsxedc!@#123"
    );
    assert_eq!(values["LOG_DATEFORMAT"], "%Y-%m-%d %H:%M:%S");
    assert_eq!(
        values["ENDPOINT_URL_TEMPLATE"],
        "http://localhost/e/{hook_id}"
    );
}

#[test]
fn setting_the_three_proxy_keys_changes_exactly_three_lines() {
    let text = std::fs::read_to_string(fixture("dify/env.example")).expect("env.example");
    let doc = parse(&text).expect("parses");
    let edits = Edits {
        set: vec![
            ("EXPOSE_NGINX_PORT".into(), "127.0.0.1:3000".into()),
            ("EXPOSE_NGINX_SSL_PORT".into(), "127.0.0.1:42743".into()),
            ("NGINX_HTTPS_ENABLED".into(), "false".into()),
        ],
        ..Edits::default()
    };
    let out = apply_edits(&doc, &edits);
    let before: Vec<&str> = text.lines().collect();
    let after: Vec<&str> = out.lines().collect();
    assert_eq!(before.len(), after.len());
    let changed: Vec<(&str, &str)> = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| (*a, *b))
        .collect();
    // NGINX_HTTPS_ENABLED is already false in 1.12.1: only two lines differ, and nothing else.
    assert_eq!(
        changed,
        [
            ("EXPOSE_NGINX_PORT=80", "EXPOSE_NGINX_PORT=127.0.0.1:3000"),
            (
                "EXPOSE_NGINX_SSL_PORT=443",
                "EXPOSE_NGINX_SSL_PORT=127.0.0.1:42743"
            )
        ]
    );
    let values = evaluate(&parse(&out).expect("parses"), &|_| None).expect("evaluates");
    assert_eq!(values["EXPOSE_NGINX_PORT"], "127.0.0.1:3000");

    // Set to values that all differ: exactly those three lines change.
    let edits = Edits {
        set: vec![
            ("EXPOSE_NGINX_PORT".into(), "127.0.0.1:3000".into()),
            ("EXPOSE_NGINX_SSL_PORT".into(), "127.0.0.1:42743".into()),
            ("NGINX_HTTPS_ENABLED".into(), "true".into()),
        ],
        ..Edits::default()
    };
    let out = apply_edits(&doc, &edits);
    let changed = text
        .lines()
        .zip(out.lines())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(changed, 3);
    assert_eq!(
        out.len() as isize - text.len() as isize,
        "127.0.0.1:3000".len() as isize - 2 + "127.0.0.1:42743".len() as isize - 3 + 4 - 5
    );
}
