//! The manifest's fields of a `container`: image, command, env, ports, volumes, restart, labels,
//! and what a notification does.

use super::*;

/// `[ip:]host:container[/proto]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Port {
    pub(super) ip: String,
    pub(super) host: String,
    pub(super) container: String,
}

impl Port {
    pub(super) fn parse(s: &str) -> Option<Port> {
        let (spec, proto) = match s.rsplit_once('/') {
            Some((a, p)) => (a, p),
            None => (s, "tcp"),
        };
        let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        let (container, host, ip) = match parts.as_slice() {
            [c, h] => (*c, *h, ""),
            [c, h, ip] => (*c, *h, *ip),
            _ => return None,
        };
        let numeric = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
        if !numeric(container) || !numeric(host) || !matches!(proto, "tcp" | "udp" | "sctp") {
            return None;
        }
        Some(Port {
            ip: ip.to_string(),
            host: host.to_string(),
            container: format!("{container}/{proto}"),
        })
    }

    pub(super) fn show(&self) -> String {
        match self.ip.as_str() {
            "" => format!("{}:{}", self.host, self.container),
            ip => format!("{ip}:{}:{}", self.host, self.container),
        }
    }
}

pub(super) fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let (name, span) = f.required_string("name")?;
    if !crate::grammar::docker_object(&name.value) {
        return Err(SpecError::new(
            span,
            format!(
                "{:?} is not a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)",
                name.value
            ),
        ));
    }
    let present = f
        .choice("state", &["running", "absent"])?
        .unwrap_or("running")
        == "running";
    let image = match f.string("image")? {
        Some((t, span)) if !crate::grammar::image_reference(&t.value) => {
            return Err(SpecError::new(
                span,
                format!(
                    "{:?} is not an image reference such as \"repo:tag\"",
                    t.value
                ),
            ))
        }
        Some((t, _)) => t.value,
        None if !present => String::new(),
        None => {
            return Err(SpecError::new(
                f.table_span(),
                format!("{} is missing the required field `image`", f.address()),
            )
            .help("add `image = \"repo:tag\"`"))
        }
    };
    let command = argv(f, "command")?;
    let env = f
        .text_table("env")?
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v, _)| (k, v.value, v.sensitive))
        .collect();
    let env_file = f.path("env_file")?.map(|(p, _)| p);
    let mut ports = Vec::new();
    for (t, span) in f.strings("ports")?.unwrap_or_default() {
        ports.push(Port::parse(&t.value).ok_or_else(|| {
            SpecError::new(
                span,
                format!("`ports` entries look like \"8080:80\", \"127.0.0.1:8080:80\" or \"53:53/udp\", not {:?}", t.value),
            )
        })?);
    }
    ports.sort();
    let mut volumes = Vec::new();
    for (t, span) in f.strings("volumes")?.unwrap_or_default() {
        if t.value.split(':').count() < 2 {
            return Err(SpecError::new(
                span,
                format!("`volumes` entries look like \"NAME:/path\" or \"/host/path:/path[:ro]\", not {:?}", t.value),
            ));
        }
        volumes.push(t.value);
    }
    let network_mode = f.string("network_mode")?.map(|(t, _)| t.value);
    let restart = f.choice("restart", RESTARTS)?;
    let labels = f.string_map("labels")?;
    let on_refresh = on_refresh(f)?;
    Ok(Arc::new(Container {
        name: name.value,
        image,
        command,
        env,
        env_file,
        ports,
        volumes,
        network_mode,
        restart,
        labels,
        present,
        on_refresh,
    }))
}

/// A list of strings, or a string run by `/bin/sh -c`.
fn argv(f: &mut Fields<'_>, name: &'static str) -> Result<Option<Vec<String>>, SpecError> {
    if let Some(Value::Str(_)) = f.peek(name) {
        return Ok(f
            .string(name)?
            .map(|(t, _)| vec!["/bin/sh".into(), "-c".into(), t.value]));
    }
    Ok(f.strings(name)?
        .map(|v| v.into_iter().map(|(t, _)| t.value).collect()))
}

/// `on_refresh = "restart"` (the default) or `on_refresh = { exec = [...] }`.
fn on_refresh(f: &mut Fields<'_>) -> Result<Option<Vec<String>>, SpecError> {
    let help = "write `on_refresh = \"restart\"` or `on_refresh = { exec = [\"nginx\", \"-s\", \"reload\"] }`";
    match f.take("on_refresh") {
        None => Ok(None),
        Some(Spanned {
            value: Value::Str(t),
            span,
        }) => match t.value.as_str() {
            "restart" => Ok(None),
            other => Err(SpecError::new(
                span,
                format!("`on_refresh` must be \"restart\" or a table with `exec`, not {other:?}"),
            )
            .help(help)),
        },
        Some(Spanned {
            value: Value::Table(entries),
            span,
        }) => {
            let mut cmd = None;
            for e in entries {
                match (e.key.as_str(), e.value.value) {
                    ("exec", Value::Array(items)) => {
                        let mut argv = Vec::new();
                        for i in items {
                            match i.value {
                                Value::Str(t) => argv.push(t.value),
                                _ => {
                                    return Err(SpecError::new(
                                        i.span,
                                        "`on_refresh.exec` must be a list of strings",
                                    ))
                                }
                            }
                        }
                        if argv.is_empty() {
                            return Err(SpecError::new(
                                span,
                                "`on_refresh.exec` must not be empty",
                            ));
                        }
                        cmd = Some(argv);
                    }
                    (key, _) => {
                        return Err(SpecError::new(
                            e.key_span,
                            format!("`on_refresh` takes only `exec`, not `{key}`"),
                        )
                        .help(help))
                    }
                }
            }
            Ok(cmd)
        }
        Some(other) => Err(SpecError::new(
            other.span,
            format!(
                "`on_refresh` must be \"restart\" or a table, found {}",
                other.value.type_name()
            ),
        )
        .help(help)),
    }
}
