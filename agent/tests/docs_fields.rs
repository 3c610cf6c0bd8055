//! docs/manifest.md's field tables held against what each kind accepts: a field documented but
//! not accepted, or accepted but not documented, fails. A kind's constructor is its only schema;
//! what it accepts is read back from the loader itself — the list it gives with an unknown
//! field that resembles none ("the fields are …") — and a documented field it did not list on
//! that path is tried on its own, where only "unknown field" means it is not accepted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use tend::manifest::{load_source, LoadOptions, COMMON_KEYS};
use tend::secrets::SecretMode;

/// Valid tables per kind: the fewest fields each needs to build (more than one where a choice,
/// such as a provider, opens other fields).
const MINIMAL: &[(&str, &str)] = &[
    ("file", "path = \"/x\"\ncontent = \"x\""),
    ("directory", "path = \"/x\""),
    ("line", "path = \"/x\"\nline = \"a = b\""),
    ("block", "path = \"/x\"\ncontent = \"x\""),
    ("symlink", "path = \"/x\"\ntarget = \"/y\""),
    ("sysctl", "key = \"vm.swappiness\"\nvalue = \"10\""),
    ("user", "name = \"app\""),
    ("group", "name = \"app\""),
    ("authorized_keys", "user = \"root\"\nkeys = []\nexclusive = true"),
    ("env_file", "path = \"/x/.env\""),
    ("exec", "command = \"true\""),
    (
        "git",
        "path = \"/srv/x\"\nurl = \"https://example.org/x.git\"\nref = \"main\"",
    ),
    (
        "apt_repo",
        "uris = \"https://deb.example.org/debian\"\nsuites = \"stable\"\ncomponents = \"main\"\nkey = { path = \"/x.asc\" }\nfingerprint = \"0123456789ABCDEF0123456789ABCDEF01234567\"",
    ),
    ("package", "names = [\"curl\"]"),
    ("compose", "dir = \"/srv/app\""),
    ("container", "name = \"app\"\nimage = \"busybox:1\""),
    ("image", "name = \"app:1\"\ncontext = \"/srv/app\""),
    ("volume", "name = \"data\""),
    ("network", "name = \"net\""),
    (
        "nginx_site",
        "path = \"/etc/nginx/sites-enabled/a.conf\"\nserver_names = [\"a.example\"]\nupstream = \"http://127.0.0.1:3000\"\ntls = { cert = \"/c.pem\", key = \"/k.pem\" }",
    ),
    (
        "cert",
        "names = [\"a.example\"]\ncert = \"/etc/ssl/a.pem\"\nkey = \"/etc/ssl/a.key\"\nprovider = \"self_signed\"",
    ),
    // Another provider takes other fields: each kind's accepted fields are those of all its
    // tables here.
    (
        "cert",
        "names = [\"a.example\"]\ncert = \"/etc/ssl/a.pem\"\nkey = \"/etc/ssl/a.key\"\nprovider = \"acme\"\nchallenge = { webroot = \"/var/www\" }",
    ),
    ("service", "unit = \"app.service\""),
];

/// Each kind's fields as docs/manifest.md's tables name them (`### \`KIND\`` sections; one
/// table may serve two kinds).
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/manifest.md"))
            .expect("docs/manifest.md");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Vec<String> = Vec::new();
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            current = h
                .split(" and ")
                .filter_map(|p| p.trim().strip_prefix('`')?.strip_suffix('`'))
                .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                .map(str::to_string)
                .collect();
            continue;
        }
        if line.starts_with("## ") {
            current.clear();
            continue;
        }
        if current.is_empty() || !line.starts_with("| `") {
            continue;
        }
        let first = line.trim_start_matches('|').split('|').next().unwrap_or("");
        let names: Vec<String> = first
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        for k in &current {
            out.entry(k.clone())
                .or_default()
                .extend(names.iter().cloned());
        }
    }
    out
}

/// What loading `[KIND.x]` with `body` says is wrong (empty when it loads).
fn errors(kind: &str, body: &str) -> String {
    let opts = LoadOptions {
        vars: Vec::new(),
        root: PathBuf::from("/nonexistent-docs-root"),
        state_dir: PathBuf::from("/nonexistent-docs-root/state"),
        secrets: SecretMode::Ephemeral,
    };
    let source = format!("[{kind}.x]\n{body}\n");
    match load_source(Path::new("docs.toml"), source, &opts) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_kinds_fields_are_documented_and_every_documented_field_is_accepted() {
    let docs = documented();
    let mut problems = Vec::new();
    for kind in tend_resources::KINDS {
        let minimal: Vec<&str> = MINIMAL
            .iter()
            .filter(|(k, _)| *k == kind.name)
            .map(|(_, t)| *t)
            .collect();
        if minimal.is_empty() {
            problems.push(format!("{}: no minimal table in this test", kind.name));
            continue;
        }
        let Some(documented) = docs.get(kind.name) else {
            problems.push(format!("{}: no section in docs/manifest.md", kind.name));
            continue;
        };
        // Accepted on each minimal table's path, as the loader lists them.
        let mut accepted = BTreeSet::new();
        for m in &minimal {
            let e = errors(kind.name, m);
            if !e.is_empty() {
                problems.push(format!("{}: a minimal table does not load: {e}", kind.name));
                continue;
            }
            let said = errors(kind.name, &format!("{m}\nzzqqxxvv = 1"));
            let list = said
                .split("the fields are ")
                .nth(1)
                .unwrap_or_else(|| panic!("{}: no field list in {said}", kind.name));
            accepted.extend(
                list.lines()
                    .next()
                    .unwrap_or("")
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string),
            );
        }
        for f in accepted.difference(documented) {
            if !COMMON_KEYS.contains(&f.as_str()) {
                problems.push(format!(
                    "{}: `{f}` is accepted but not documented",
                    kind.name
                ));
            }
        }
        for f in documented.difference(&accepted) {
            // Off every minimal table's path (another state, say): tried alone on each.
            let unknown = minimal.iter().all(|m| {
                errors(kind.name, &format!("{m}\n{f} = \"\""))
                    .contains(&format!("unknown field `{f}`"))
            });
            if unknown {
                problems.push(format!(
                    "{}: `{f}` is documented but not accepted",
                    kind.name
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The `manifest` fuzzer starts from a valid table of every kind: `fuzz/seeds/manifest/
/// min-KIND.toml`, one file per kind (the fuzzer reads 512 bytes of an input), made from the
/// tables above — a kind added here is one more seed. After adding a kind:
/// `TEND_WRITE_SEEDS=1 cargo test -p tend --test docs_fields` writes them.
#[test]
fn the_fuzzer_has_a_seed_for_every_kind() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/manifest");
    let mut want: BTreeMap<String, String> = BTreeMap::new();
    for (n, (kind, body)) in MINIMAL.iter().enumerate() {
        let seed = want.entry(format!("min-{kind}.toml")).or_insert_with(|| {
            "# Made by agent/tests/docs_fields.rs from its tables: do not edit.\n".to_string()
        });
        seed.push_str(&format!("\n[{kind}.s{n}]\n{body}\n"));
    }
    let write = std::env::var_os("TEND_WRITE_SEEDS").is_some();
    for (name, seed) in &want {
        // What the fuzzer mutates starts valid.
        load_source(
            Path::new(name),
            seed.clone(),
            &LoadOptions {
                vars: Vec::new(),
                root: PathBuf::from("/nonexistent-tend-seed"),
                state_dir: PathBuf::from("/nonexistent-tend-seed/state"),
                secrets: SecretMode::Ephemeral,
            },
        )
        .map_err(|e| e.to_string())
        .unwrap_or_else(|e| panic!("{name} is not a valid manifest: {e}"));
        assert!(seed.len() <= 512, "{name} is longer than the fuzzer reads");
        if write {
            std::fs::write(dir.join(name), seed).expect("write the seed");
        }
    }
    let stored: BTreeMap<String, String> = std::fs::read_dir(&dir)
        .expect("the seeds")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("min-"))
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(&n)).unwrap_or_default();
            (n, text)
        })
        .collect();
    assert_eq!(
        stored, want,
        "fuzz/seeds/manifest/min-*.toml are not made from this test's tables: TEND_WRITE_SEEDS=1 cargo test -p tend --test docs_fields"
    );
}
