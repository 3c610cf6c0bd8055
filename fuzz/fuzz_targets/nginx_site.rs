//! The nginx site renderer with any field values the manifest accepts (the same grammar checks
//! as `nginx_site`'s build): the rendered file has exactly the directives, blocks and comments of
//! a site rendered with plain values — a value can never end a directive, open a block or start
//! a comment.
//!
//! Input: fields separated by `\0`: server names (`,`-separated), upstream, cert, key, chain,
//! dhparam, acme webroot, body size, read timeout.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tend_resources::grammar::{nginx_server_name, nginx_token};
use tend_resources::nginx::render::{Http2, Site, TlsPaths};

/// Per line: how many of each character that shapes nginx's syntax it holds.
fn skeleton(text: &str) -> Vec<[usize; 4]> {
    text.lines()
        .map(|l| {
            let n = |c: char| l.matches(c).count();
            [n(';'), n('{'), n('}'), n('#')]
        })
        .collect()
}

fn site(names: Vec<String>, f: &[String], http2: Http2) -> Site {
    Site {
        address: "nginx_site.fuzz".into(),
        server_names: names,
        upstream: f[0].clone(),
        http_port: Some(80),
        https_port: 443,
        tls: TlsPaths {
            cert: f[1].clone(),
            key: f[2].clone(),
            chain: Some(f[3].clone()),
            dhparam: Some(f[4].clone()),
        },
        acme_webroot: Some(f[5].clone()),
        client_max_body_size: f[6].clone(),
        proxy_read_timeout: f[7].clone(),
        http2,
        ipv6: true,
        extra: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parts: Vec<&str> = text.split('\0').collect();
    if parts.len() < 9 {
        return;
    }
    let names: Vec<String> = parts[0].split(',').take(8).map(str::to_string).collect();
    if !names.iter().all(|n| nginx_server_name(n)) {
        return;
    }
    let fields: Vec<String> = parts[1..9].iter().map(|s| s.to_string()).collect();
    let upstream_ok = (fields[0].starts_with("http://") || fields[0].starts_with("https://"))
        && nginx_token(&fields[0]);
    let paths_ok = fields[1..5]
        .iter()
        .all(|p| p.starts_with('/') && nginx_token(p));
    if !upstream_ok || !paths_ok || !fields[5..].iter().all(|t| nginx_token(t)) {
        return;
    }
    for http2 in [Http2::Directive, Http2::Listen, Http2::Off, Http2::Auto] {
        let fuzzed = site(names.clone(), &fields, http2);
        let plain_names = vec!["a.example".to_string(); names.len()];
        let plain: Vec<String> = ["http://u", "/c", "/k", "/ch", "/dh", "/w", "1M", "1s"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let baseline = site(plain_names, &plain, http2);
        let tls = fuzzed.tls.clone();
        let a = fuzzed.render(&tls);
        let b = baseline.render(&baseline.tls);
        assert_eq!(
            skeleton(&a),
            skeleton(&b),
            "a value changed the site's structure:\n{a}"
        );
    }
});
