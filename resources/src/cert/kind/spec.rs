//! The manifest's fields of a `cert`: where the files are, which names, who renews it.

use super::*;

pub(super) fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let names = f.string_list("names")?;
    if names.is_empty() {
        return Err(SpecError::new(
            f.table_span(),
            format!("{} needs `names`, at least one", f.address()),
        ));
    }
    let volume = f.string("volume")?.map(|(t, _)| t.value);
    // In a volume, paths are relative to its root; on the host, absolute.
    let path = |f: &mut Fields<'_>, name: &'static str| -> Result<Option<PathBuf>, SpecError> {
        if volume.is_some() {
            return Ok(f
                .string(name)?
                .map(|(t, _)| PathBuf::from(t.value.trim_start_matches('/'))));
        }
        Ok(f.path(name)?.map(|(p, _)| p))
    };
    let Some(cert) = path(f, "cert")? else {
        return Err(SpecError::new(
            f.table_span(),
            format!("{} is missing the required field `cert`", f.address()),
        )
        .help(
            "add `cert = \"/etc/ssl/NAME/fullchain.pem\"` (the certificate, or leaf and chain)",
        ));
    };
    let key = path(f, "key")?;
    let chain = path(f, "chain")?;
    let renew_before_days = match f.int("renew_before_days")? {
        None => 30,
        Some((d, _)) if d >= 0 => d,
        Some((_, span)) => {
            return Err(SpecError::new(
                span,
                "`renew_before_days` must not be negative",
            ))
        }
    };
    let key_type = f
        .choice("key_type", KeyType::NAMES)?
        .and_then(KeyType::parse)
        .unwrap_or(KeyType::EcdsaP256);
    let provider_span = f.span_of("provider");
    let provider = match f
        .choice("provider", &["audit", "self_signed", "acme"])?
        .unwrap_or("audit")
    {
        "self_signed" => Provider::SelfSigned {
            days: match f.int("days")? {
                None => 365,
                Some((d, _)) if (1..=3650).contains(&d) => d as u32,
                Some((_, span)) => return Err(SpecError::new(span, "`days` must be 1 to 3650")),
            },
        },
        "acme" => Provider::Acme(acme_spec(f)?),
        _ => Provider::Audit,
    };
    let location = match volume {
        Some(_) if !matches!(provider, Provider::Audit) => {
            return Err(SpecError::new(
                provider_span,
                "a certificate in a Docker volume is audited only: the container that owns the volume renews it",
            )
            .help("remove `volume`, or set provider = \"audit\""))
        }
        Some(v) => Location::Volume(v),
        None => Location::Host,
    };
    if key.is_none() && !matches!(provider, Provider::Audit) {
        return Err(SpecError::new(
            f.table_span(),
            format!(
                "{} issues a certificate and needs `key`, where its private key goes",
                f.address()
            ),
        ));
    }
    let attrs = Ownership::from_fields(f)?;
    Ok(Arc::new(Cert {
        address: f.address().to_string(),
        names,
        cert,
        key,
        chain,
        location,
        renew_before_days,
        key_type,
        provider,
        attrs,
    }))
}

pub(super) fn acme_spec(f: &mut Fields<'_>) -> Result<AcmeSpec, SpecError> {
    let directory = match f.string("directory")? {
        None => acme::LETSENCRYPT.to_string(),
        Some((t, _)) => match t.value.as_str() {
            "letsencrypt" => acme::LETSENCRYPT.to_string(),
            "letsencrypt-staging" => acme::LETSENCRYPT_STAGING.to_string(),
            url if url.starts_with("https://") => url.to_string(),
            _ => {
                return Err(SpecError::new(
                    f.span_of("directory"),
                    format!("`directory` must be an https:// URL, \"letsencrypt\" or \"letsencrypt-staging\", not {:?}", t.value),
                ))
            }
        },
    };
    let email = f.string("email")?.map(|(t, _)| t.value);
    let help = "write challenge = { webroot = \"/var/www/letsencrypt\" } or challenge = { standalone = 80 }";
    let span = f.span_of("challenge");
    let challenge = match f.take("challenge").map(|s| s.value) {
        Some(Value::Table(entries)) if entries.len() == 1 => {
            let e = &entries[0];
            match (e.key.as_str(), &e.value.value) {
                ("webroot", Value::Str(t)) if t.value.starts_with('/') => {
                    Challenge::Webroot(PathBuf::from(&t.value))
                }
                ("standalone", Value::Int(p) | Value::Octal(p)) if (1..=65535).contains(p) => {
                    Challenge::Standalone(*p as u16)
                }
                _ => {
                    return Err(SpecError::new(
                        e.key_span.clone(),
                        "`challenge` takes `webroot` (an absolute path) or `standalone` (a port)",
                    )
                    .help(help))
                }
            }
        }
        None => {
            return Err(SpecError::new(
                f.table_span(),
                format!("{} uses ACME and needs `challenge`", f.address()),
            )
            .help(help))
        }
        Some(_) => {
            return Err(SpecError::new(span, "`challenge` must be a table with one key").help(help))
        }
    };
    let ca_bundle = f.path("ca_bundle")?.map(|(p, _)| p);
    let eab = match f.string_table("eab")? {
        None => None,
        Some(entries) => {
            let get = |k: &str| {
                entries
                    .iter()
                    .find(|(n, _, _)| n == k)
                    .map(|(_, v, _)| v.value.clone())
            };
            match (get("kid"), get("hmac_key")) {
                (Some(kid), Some(key)) => Some((kid, key)),
                _ => {
                    return Err(SpecError::new(
                        f.span_of("eab"),
                        "`eab` needs `kid` and `hmac_key`",
                    ))
                }
            }
        }
    };
    Ok(AcmeSpec {
        directory,
        email,
        challenge,
        ca_bundle,
        eab,
    })
}
