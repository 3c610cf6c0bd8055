//! The `nginx_site` kind: the rendered file is compared, diffed, backed up and written as a
//! `file` would be; what it adds is the check by `nginx -t` before the live file is replaced.
//! `plan` runs the check too when the host's nginx is the checker (read-only: a throwaway
//! configuration in a temporary directory), so a plan already says that apply would be refused.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::render::{Http2, Site, TlsPaths};
use super::validate::{self, Validator};
use crate::attrs::Ownership;
use crate::change::Drift;
use crate::file::File;
use crate::host::{Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, Spanned, SpecError, Value};

/// The `nginx_site` kind: its name, summary and constructor.
pub const KIND: Kind = Kind {
    name: "nginx_site",
    summary: "an nginx reverse-proxy site (80 → 301, 443 → upstream), checked by nginx -t first",
    build,
    prune: Some(crate::prune::FILES),
};

#[derive(Debug)]
/// A `nginx_site` resource, as its manifest table declared it.
pub struct NginxSite {
    site: Site,
    validator: Validator,
    path: PathBuf,
    attrs: Ownership,
    /// `http2 = "auto"`: the form chosen once per run, from the validating nginx.
    http2: tokio::sync::OnceCell<super::render::Http2>,
}

fn port(f: &mut Fields<'_>, name: &'static str, default: u16) -> Result<u16, SpecError> {
    match f.int(name)? {
        None => Ok(default),
        Some((p, span)) => u16::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| SpecError::new(span, format!("`{name}` must be a port, 1 to 65535"))),
    }
}

/// A field written into a directive as one nginx token: nothing that could end it.
fn token(f: &mut Fields<'_>, name: &'static str) -> Result<Option<String>, SpecError> {
    match f.string(name)? {
        Some((t, span)) if !crate::grammar::nginx_token(&t.value) => Err(SpecError::new(
            span,
            format!(
                "`{name}` = {:?} must be one nginx value: no space, quote, `;`, `{{`, `}}`, `#` or `$` (use `extra` for whole directives)",
                t.value
            ),
        )),
        other => Ok(other.map(|(t, _)| t.value)),
    }
}

fn tls(f: &mut Fields<'_>) -> Result<TlsPaths, SpecError> {
    let span = f.table_span();
    let help = "write tls = { cert = \"/etc/letsencrypt/live/NAME/fullchain.pem\", key = \"/etc/letsencrypt/live/NAME/privkey.pem\", chain = \"…/chain.pem\" }";
    let Some(Spanned { value, span: tspan }) = f.take("tls") else {
        return Err(SpecError::new(
            span,
            format!("{} is missing the required field `tls`", f.address()),
        )
        .help(help));
    };
    let Value::Table(entries) = value else {
        return Err(SpecError::new(tspan, "`tls` must be a table").help(help));
    };
    let (mut cert, mut key, mut chain, mut dhparam) = (None, None, None, None);
    for e in entries {
        let v = match e.value.value {
            Value::Str(t) if t.value.starts_with('/') && crate::grammar::nginx_token(&t.value) => {
                t.value
            }
            _ => {
                return Err(SpecError::new(
                    e.value.span,
                    format!(
                        "`tls.{}` must be an absolute path as nginx sees it, with no space, quote, `;`, `{{`, `}}`, `#` or `$`",
                        e.key
                    ),
                ))
            }
        };
        match e.key.as_str() {
            "cert" => cert = Some(v),
            "key" => key = Some(v),
            "chain" => chain = Some(v),
            "dhparam" => dhparam = Some(v),
            other => {
                return Err(
                    SpecError::new(e.key_span, format!("unknown field `tls.{other}`"))
                        .help("the fields are `cert`, `key`, `chain` and `dhparam`"),
                )
            }
        }
    }
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(TlsPaths {
            cert,
            key,
            chain,
            dhparam,
        }),
        _ => Err(SpecError::new(tspan, "`tls` needs both `cert` and `key`").help(help)),
    }
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let (path, _) = f.required_path("path")?;
    let names = f.strings("server_names")?.unwrap_or_default();
    for (t, span) in &names {
        if !crate::grammar::nginx_server_name(&t.value) {
            return Err(SpecError::new(
                span.clone(),
                format!(
                    "{:?} is not a server name (a host name, `*.example.com`, `.example.com` or `_`)",
                    t.value
                ),
            ));
        }
    }
    if names.is_empty() {
        return Err(SpecError::new(
            f.table_span(),
            format!("{} needs `server_names`, at least one", f.address()),
        ));
    }
    let (upstream, span) = f.required_string("upstream")?;
    if !(upstream.value.starts_with("http://") || upstream.value.starts_with("https://"))
        || !crate::grammar::nginx_token(&upstream.value)
    {
        return Err(SpecError::new(
            span,
            format!(
                "`upstream` must be an http:// or https:// URL, not {:?}",
                upstream.value
            ),
        ));
    }
    let http_port = match f.peek("http_port") {
        Some(Value::Bool(false)) => {
            f.take("http_port");
            None
        }
        _ => Some(port(f, "http_port", 80)?),
    };
    let https_port = port(f, "https_port", 443)?;
    let tls = tls(f)?;
    let acme_webroot = token(f, "acme_webroot")?;
    let client_max_body_size = token(f, "client_max_body_size")?.unwrap_or_else(|| "100M".into());
    let proxy_read_timeout = token(f, "proxy_read_timeout")?.unwrap_or_else(|| "3600s".into());
    let http2 = match f
        .choice("http2", &["auto", "on", "listen", "off"])?
        .unwrap_or("auto")
    {
        "listen" => Http2::Listen,
        "off" => Http2::Off,
        "on" => Http2::Directive,
        _ => Http2::Auto,
    };
    let ipv6 = f.bool("ipv6")?.unwrap_or(true);
    let extra = f.string("extra")?.map(|(t, _)| t.value);
    let validator = match f.string("validate")? {
        None => Validator::Host,
        Some((t, span)) => Validator::parse(&t.value).ok_or_else(|| {
            SpecError::new(
                span,
                format!(
                    "`validate` must be \"host\", \"container:NAME\" or \"off\", not {:?}",
                    t.value
                ),
            )
        })?,
    };
    let attrs = Ownership::from_fields(f)?;
    let site = Site {
        address: f.address().to_string(),
        server_names: names.into_iter().map(|(t, _)| t.value).collect(),
        upstream: upstream.value,
        http_port,
        https_port,
        tls,
        acme_webroot,
        client_max_body_size,
        proxy_read_timeout,
        http2,
        ipv6,
        extra,
    };
    Ok(Arc::new(NginxSite {
        site,
        validator,
        path,
        attrs,
        http2: tokio::sync::OnceCell::new(),
    }))
}

#[async_trait]
impl Resource for NginxSite {
    fn paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    /// Plan also says whether the host's nginx would accept the new site: a drift apply would
    /// refuse is a failure now, not a surprise then.
    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let (site, file) = self.resolved().await?;
        let drift = file.check(host).await?;
        let content_changes = drift.touches("content") || drift.touches("state");
        if content_changes && self.validator == Validator::Host {
            validate::check(&site, &self.validator).await?;
        }
        Ok(drift)
    }

    /// Apply validates in `apply`, just before the live file is replaced.
    async fn check_for_apply(&self, host: &Mutate) -> Result<Drift, ResourceError> {
        let (_, file) = self.resolved().await?;
        file.check(host.probe()).await
    }

    async fn apply(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        let (site, file) = self.resolved().await?;
        let mut notes = Vec::new();
        if drift.touches("content") || drift.touches("state") {
            match validate::check(&site, &self.validator).await? {
                Some(note) if note.starts_with("not checked") => notes.push(note),
                Some(note) => notes.push(format!("nginx -t accepted it ({note})")),
                None if self.validator != Validator::Off => {
                    notes.push("nginx -t accepted it".into())
                }
                None => {}
            }
        }
        let mut applied = file.apply(host, drift).await?;
        applied.notes.extend(notes);
        Ok(applied)
    }
}

impl NginxSite {
    /// The site with its HTTP/2 form settled, and the file it renders to.
    async fn resolved(&self) -> Result<(Site, File), ResourceError> {
        let mut site = self.site.clone();
        if site.http2 == Http2::Auto {
            site.http2 = *self
                .http2
                .get_or_init(|| validate::http2_of(&self.validator))
                .await;
        }
        let content = site.render(&site.tls).into_bytes();
        let file = File::with_content(self.path.clone(), content, self.attrs.clone(), false);
        Ok((site, file))
    }
}
