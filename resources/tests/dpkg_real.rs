//! The dpkg-status parser agrees with `dpkg-query` on this machine's real database.

// An integration test asks dpkg itself, outside the crate's seams.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;

use tend_resources::dpkg::Db;

/// dpkg's three-letter abbreviation of a `Status:` line (`install ok installed` → `ii `).
fn abbrev(status: &str) -> String {
    let mut parts = status.split(' ');
    let want = match parts.next() {
        Some("install") => 'i',
        Some("deinstall") => 'r',
        Some("purge") => 'p',
        Some("hold") => 'h',
        _ => 'u',
    };
    let error = parts.next();
    let state = match parts.next() {
        Some("installed") => 'i',
        Some("config-files") => 'c',
        Some("unpacked") => 'U',
        Some("half-configured") => 'F',
        Some("half-installed") => 'H',
        Some("triggers-awaited") => 'W',
        Some("triggers-pending") => 't',
        _ => 'n',
    };
    let flag = if error == Some("reinstreq") { 'R' } else { ' ' };
    format!("{want}{state}{flag}")
}

#[test]
fn parser_agrees_with_dpkg_query_package_for_package() {
    let out = std::process::Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${Package}:${Architecture} ${Version} ${db:Status-Abbrev}\n",
        ])
        .output()
        .expect("dpkg-query");
    assert!(out.status.success());
    let expected: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    assert!(
        expected.len() > 100,
        "this machine has a real dpkg database"
    );
    let db = Db::parse(&std::fs::read_to_string("/var/lib/dpkg/status").expect("status"));
    let mut ours = BTreeMap::new();
    for records in db.packages.values() {
        for r in records {
            ours.insert(
                format!("{}:{}", r.name, r.arch),
                format!("{} {}", r.version, abbrev(&r.status)),
            );
        }
    }
    let mismatches: Vec<String> = expected
        .iter()
        .filter(|(k, v)| ours.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: dpkg-query {v:?}, tend {:?}", ours.get(k)))
        .take(10)
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(ours.len(), expected.len());
}
