//! `nginx -t` on a candidate site before it goes live: inside a throwaway full configuration that
//! includes only the candidate, run by the host's nginx or inside a running container (through
//! the Docker API: the files are uploaded, checked, removed). When the certificate files the site
//! names do not exist yet (a first boot, before certbot ran), the check uses a temporary
//! self-signed pair in their place, so the first boot is not blocked; the line numbers stay those
//! of the rendered file, and nginx's message is quoted with the offending line.

use super::render::{Http2, Site, TlsPaths};
use crate::cert::keys;
use crate::resource::ResourceError;

#[derive(Debug, Clone, PartialEq, Eq)]
/// Where `nginx -t` checks a candidate site before it replaces the live one.
pub enum Validator {
    /// The host's nginx.
    Host,
    /// The nginx inside this running container.
    Container(String),
    /// Not checked.
    Off,
}

impl Validator {
    /// `host`, `container:NAME` or `off`.
    pub fn parse(s: &str) -> Option<Validator> {
        match s {
            "host" => Some(Validator::Host),
            "off" => Some(Validator::Off),
            _ => s
                .strip_prefix("container:")
                .filter(|n| !n.is_empty())
                .map(|n| Validator::Container(n.to_string())),
        }
    }
}

/// The files of one check: `nginx.conf`, `site.conf` and maybe a temporary pair, under `dir` as
/// the checking nginx sees it.
struct Candidate {
    files: Vec<(&'static str, Vec<u8>)>,
    /// Said in the report: which certificate files were stood in for.
    stand_in: Option<String>,
}

fn candidate(site: &Site, dir: &str, missing: &[String]) -> Result<Candidate, ResourceError> {
    let mut tls = site.tls.clone();
    let mut files = Vec::new();
    let mut stand_in = None;
    let core_missing = missing.iter().any(|m| *m == tls.cert || *m == tls.key);
    let chain_missing = tls.chain.as_ref().is_some_and(|c| missing.contains(c));
    if core_missing || chain_missing {
        let key = keys::generate(keys::KeyType::EcdsaP256)?;
        let cert = keys::self_signed(&site.server_names, &key, 1)?;
        files.push(("tmp-cert.pem", cert.into_bytes()));
        files.push(("tmp-key.pem", key.serialize_pem().into_bytes()));
        let cert_path = format!("{dir}/tmp-cert.pem");
        stand_in = Some(format!(
            "{} not there yet: checked with a temporary self-signed pair",
            missing.join(", ")
        ));
        tls.cert = cert_path.clone();
        tls.key = format!("{dir}/tmp-key.pem");
        if tls.chain.is_some() {
            tls.chain = Some(cert_path);
        }
    }
    if tls.dhparam.as_ref().is_some_and(|d| missing.contains(d)) {
        // Making DH parameters takes minutes; ECDHE suites do not need them.
        tls.dhparam = None;
    }
    files.push((
        "site.conf",
        redirect_paths(&site.render(&tls), dir).into_bytes(),
    ));
    // Every path nginx writes while it tests a configuration is inside the candidate's
    // directory: `nginx -t` creates log files and temp directories it is given.
    files.push((
        "nginx.conf",
        format!(
            "error_log {dir}/error.log;\npid {dir}/nginx.pid;\nevents {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {dir}/body;\n    proxy_temp_path {dir}/proxy;\n    fastcgi_temp_path {dir}/fastcgi;\n    uwsgi_temp_path {dir}/uwsgi;\n    scgi_temp_path {dir}/scgi;\n    include {dir}/site.conf;\n}}\n"
        )
        .into_bytes(),
    ));
    Ok(Candidate { files, stand_in })
}

/// Directives whose first argument is a file or directory nginx creates when it tests the
/// configuration.
const WRITTEN_PATHS: &[&str] = &[
    "access_log",
    "error_log",
    "client_body_temp_path",
    "proxy_temp_path",
    "fastcgi_temp_path",
    "uwsgi_temp_path",
    "scgi_temp_path",
    "proxy_cache_path",
    "fastcgi_cache_path",
    "uwsgi_cache_path",
    "scgi_cache_path",
];

/// The site text with the first argument of every [`WRITTEN_PATHS`] directive moved into `dir`
/// (`off` and `syslog:` targets kept): what `nginx -t` then creates stays in the candidate's
/// directory. Only the argument changes, so line numbers in nginx's messages stay right.
fn redirect_paths(text: &str, dir: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut n = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let at_boundary =
            i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n' | b';' | b'{' | b'}');
        let hit = at_boundary
            .then(|| {
                WRITTEN_PATHS.iter().find(|d| {
                    text[i..].starts_with(**d) && text[i + d.len()..].starts_with([' ', '\t'])
                })
            })
            .flatten();
        let Some(d) = hit else {
            let c = text[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
            continue;
        };
        out.push_str(d);
        i += d.len();
        while i < text.len() && matches!(bytes[i], b' ' | b'\t') {
            out.push(bytes[i] as char);
            i += 1;
        }
        let end = text[i..]
            .find(|c: char| c.is_whitespace() || c == ';')
            .map_or(text.len(), |e| i + e);
        let arg = &text[i..end];
        if arg == "off" || arg.starts_with("syslog:") || arg.is_empty() {
            out.push_str(arg);
        } else {
            n += 1;
            out.push_str(&format!("{dir}/written-{n}"));
        }
        i = end;
    }
    out
}

/// The certificate files the site names, as nginx will look for them.
fn tls_files(tls: &TlsPaths) -> Vec<String> {
    let mut v = vec![tls.cert.clone(), tls.key.clone()];
    v.extend(tls.chain.clone());
    v.extend(tls.dhparam.clone());
    v
}

/// Check the site; `Ok(note)` when nginx accepts it (the note says what was stood in for).
pub async fn check(site: &Site, how: &Validator) -> Result<Option<String>, ResourceError> {
    match how {
        Validator::Off => Ok(None),
        Validator::Host => on_host(site).await,
        Validator::Container(name) => in_container(site, name).await,
    }
}

/// The HTTP/2 form the validating nginx understands, from its `nginx -v` (a read-only query,
/// fine in plan): the host's, or the container's when it runs. When it cannot be asked (no nginx
/// on the host, the container not up yet, `validate = "off"`), the `listen … http2` form, which
/// every nginx with HTTP/2 accepts.
pub async fn http2_of(how: &Validator) -> Http2 {
    let said = match how {
        Validator::Off => None,
        Validator::Host => match nginx_binary() {
            None => None,
            Some(nginx) => {
                let mut c = tokio::process::Command::new(nginx);
                c.arg("-v");
                crate::process::capture(c, std::time::Duration::from_secs(10))
                    .await
                    .ok()
                    .map(|out| String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
        Validator::Container(name) => {
            let argv = vec!["nginx".to_string(), "-v".to_string()];
            crate::docker::exec_in(name, &argv)
                .await
                .ok()
                .map(|(_, said)| said)
        }
    };
    said.as_deref()
        .and_then(super::render::http2_for)
        .unwrap_or(Http2::Listen)
}

/// nginx on this machine's PATH (a tool, not a managed file).
#[allow(clippy::disallowed_methods)]
fn nginx_binary() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

// `validate = "host"` tests the site against the live machine's nginx and the certificate files
// it will load, where nginx itself will read them.
#[allow(clippy::disallowed_methods)]
async fn on_host(site: &Site) -> Result<Option<String>, ResourceError> {
    let Some(nginx) = nginx_binary() else {
        return Err(ResourceError::Failed(
            "validate = \"host\", but nginx is not installed on this host: install it, check inside the container (validate = \"container:NAME\"), or set validate = \"off\"".into(),
        ));
    };
    let missing: Vec<String> = tls_files(&site.tls)
        .into_iter()
        .filter(|p| std::fs::metadata(p).map(|m| m.len() == 0).unwrap_or(true))
        .collect();
    let tmp = tempfile::Builder::new()
        .prefix("tend-nginx-check.")
        .tempdir()
        .map_err(|e| ResourceError::Failed(format!("cannot make a temporary directory: {e}")))?;
    let dir = tmp.path().to_string_lossy().into_owned();
    let c = candidate(site, &dir, &missing)?;
    for (name, bytes) in &c.files {
        let p = tmp.path().join(name);
        // The candidate's own private temporary directory, not the host.
        #[allow(clippy::disallowed_methods)]
        std::fs::write(&p, bytes).map_err(|e| crate::HostError::new("write", &p, e))?;
    }
    let mut cmd = tokio::process::Command::new(&nginx);
    cmd.args(["-t", "-q", "-p"])
        .arg(format!("{dir}/"))
        .arg("-c")
        .arg(format!("{dir}/nginx.conf"));
    // Its own process group and a time limit, like every command tend runs.
    let out = crate::process::capture(cmd, std::time::Duration::from_secs(60))
        .await
        .map_err(|e| {
            ResourceError::Command(match e {
                crate::process::RunError::Timeout => {
                    format!("{} -t did not finish within 60 s", nginx.display())
                }
                crate::process::RunError::Interrupted => {
                    format!("{} -t was ended: tend was asked to stop", nginx.display())
                }
                crate::process::RunError::Spawn(e) | crate::process::RunError::Wait(e) => {
                    format!("cannot run {}: {e}", nginx.display())
                }
            })
        })?;
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    verdict(out.status.success(), &said, &dir, site, c.stand_in)
}

async fn in_container(site: &Site, name: &str) -> Result<Option<String>, ResourceError> {
    use crate::docker;
    let engine = docker::engine().await?;
    // On a first boot the container does not exist yet (its stack comes up after the site
    // file); a stopped or crash-looping one cannot run a command. Neither can check: the file
    // is written unchecked, said so in the report, and nginx checks it when the container starts.
    match engine.inspect_container(name, None).await {
        Ok(c) if c.state.as_ref().and_then(|s| s.running) == Some(true) => {}
        Ok(_) => {
            return Ok(Some(format!(
                "not checked: {name} is not running; its nginx checks the file when it starts"
            )))
        }
        Err(e) if docker::is_not_found(&e) => {
            return Ok(Some(format!(
                "not checked: no container {name} yet (first boot); its nginx checks the file when it starts"
            )))
        }
        Err(e) => return Err(docker::api_error(&format!("cannot inspect {name}"), e)),
    }
    // Which certificate files exist in the container, in one exec.
    let files = tls_files(&site.tls);
    let mut argv: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        "for f; do test -s \"$f\" || echo \"$f\"; done".into(),
        "sh".into(),
    ];
    argv.extend(files);
    let (_, said) = docker::exec_in(name, &argv).await?;
    let missing: Vec<String> = said.lines().map(str::to_string).collect();
    let dir_name = format!("tend-nginx-check.{:016x}", rand::random::<u64>());
    let dir = format!("/tmp/{dir_name}");
    let c = candidate(site, &dir, &missing)?;
    let mut tar = tar::Builder::new(Vec::new());
    for (file, bytes) in &c.files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, format!("{dir_name}/{file}"), bytes.as_slice())
            .map_err(|e| ResourceError::Failed(format!("cannot pack the candidate: {e}")))?;
    }
    let tar = tar
        .into_inner()
        .map_err(|e| ResourceError::Failed(format!("cannot pack the candidate: {e}")))?;
    let opts = bollard::query_parameters::UploadToContainerOptionsBuilder::default()
        .path("/tmp")
        .build();
    engine
        .upload_to_container(name, Some(opts), bollard::body_full(tar.into()))
        .await
        .map_err(|e| docker::api_error(&format!("cannot copy the candidate into {name}"), e))?;
    let argv: Vec<String> = [
        "nginx",
        "-t",
        "-q",
        "-p",
        &format!("{dir}/"),
        "-c",
        &format!("{dir}/nginx.conf"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let result = docker::exec_in(name, &argv).await;
    let _ = docker::exec_in(name, &["rm".into(), "-rf".into(), dir.clone()]).await;
    let (status, said) = result?;
    verdict(status == Some(0), &said, &dir, site, c.stand_in)
}

/// nginx's answer, with `DIR/site.conf:N` turned into the line of the rendered file.
fn verdict(
    ok: bool,
    said: &str,
    dir: &str,
    site: &Site,
    stand_in: Option<String>,
) -> Result<Option<String>, ResourceError> {
    if ok {
        return Ok(stand_in);
    }
    let rendered = site.render(&site.tls);
    let lines: Vec<&str> = rendered.lines().collect();
    let marker = format!("{dir}/site.conf:");
    let mut out = Vec::new();
    for l in said.lines().filter(|l| !l.trim().is_empty()) {
        // "2026/11/23 04:27:51 [emerg] 12166#12166: unknown directive "bogus" in DIR/site.conf:8"
        let msg = match l.find("] ") {
            Some(i) => l[i + 2..].split_once(": ").map_or(&l[i + 2..], |(_, m)| m),
            None => l,
        };
        if msg.contains("test failed") {
            continue;
        }
        match msg.find(&marker) {
            Some(i) => {
                let n: usize = msg[i + marker.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .unwrap_or(0);
                let text = msg[..i].trim_end().trim_end_matches(" in").to_string();
                let line = lines.get(n.saturating_sub(1)).map_or("", |l| l.trim());
                out.push(format!("{text}, line {n} of the rendered site: {line}"));
            }
            None => out.push(msg.replace(dir, "(check)")),
        }
    }
    Err(ResourceError::Invalid(format!(
        "nginx -t rejected the rendered site; the live file was not touched:\n{}",
        out.join("\n")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_nginx_would_create_move_into_the_candidate_directory() {
        let text = "server {\n    access_log /var/log/x.log combined;\n    error_log  /var/log/e.log;access_log off;\n    proxy_cache_path /var/cache/c levels=1:2 keys_zone=z:1m;\n}\n";
        let out = redirect_paths(text, "/tmp/c");
        assert_eq!(
            out,
            "server {\n    access_log /tmp/c/written-1 combined;\n    error_log  /tmp/c/written-2;access_log off;\n    proxy_cache_path /tmp/c/written-3 levels=1:2 keys_zone=z:1m;\n}\n"
        );
        assert_eq!(out.lines().count(), text.lines().count());
    }

    #[test]
    fn validators_parse() {
        assert_eq!(Validator::parse("host"), Some(Validator::Host));
        assert_eq!(
            Validator::parse("container:nginx-certbot-nginx-1"),
            Some(Validator::Container("nginx-certbot-nginx-1".into()))
        );
        assert_eq!(Validator::parse("container:"), None);
        assert_eq!(Validator::parse("yes"), None);
    }
}
