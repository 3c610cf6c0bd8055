//! `package`: apt packages present (optionally at a version or version glob) or absent.
//!
//! Check reads the dpkg database directly: no process, so a no-op check of many packages costs a
//! file read. Apply installs everything missing in one `apt-get install` (or removes in one
//! `apt-get remove`), after updating the package lists when they are stale, when an `apt_repo`
//! changed, or when apt does not know a package.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::apt;
use crate::change::{Change, Drift};
use crate::dpkg;
use crate::host::{Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

/// The `package` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "package",
    summary: "apt packages present (optionally at a version) or absent",
    build,
    prune: None,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Update {
    Auto,
    Always,
    Never,
}

#[derive(Debug)]
/// A `package` resource, as its manifest table declared it.
pub(crate) struct Package {
    names: Vec<String>,
    present: bool,
    versions: BTreeMap<String, String>,
    update: Update,
    cache_max_age: Duration,
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let span = f.table_span();
    let names = f.strings("names")?.ok_or_else(|| {
        SpecError::new(
            span.clone(),
            format!("{} is missing the required field `names`", f.address()),
        )
        .help("add `names = [\"curl\", \"git\"]`")
    })?;
    let mut out = Vec::new();
    for (t, span) in names {
        if !crate::grammar::debian_package(&t.value) {
            return Err(SpecError::new(
                span,
                format!("{:?} is not a Debian package name", t.value),
            ));
        }
        out.push(t.value);
    }
    if out.is_empty() {
        return Err(SpecError::new(
            f.span_of("names"),
            "`names` must list at least one package",
        ));
    }
    let present = f
        .choice("state", &["present", "absent"])?
        .unwrap_or("present")
        == "present";
    let mut versions = BTreeMap::new();
    for (name, v, span) in f.string_table("versions")?.unwrap_or_default() {
        if !out.contains(&name) {
            return Err(SpecError::new(
                span,
                format!("`versions` names {name}, which is not in `names`"),
            ));
        }
        if !crate::grammar::debian_version_glob(&v.value) {
            return Err(SpecError::new(
                span,
                format!(
                    "{:?} is not a Debian version or a glob of one (they start with a digit: \
                     \"1.2-3\", \"5:27.3.1-1~debian.12~bookworm\", \"5:27.*\")",
                    v.value
                ),
            ));
        }
        versions.insert(name, v.value);
    }
    if !present && !versions.is_empty() {
        return Err(SpecError::new(
            f.span_of("versions"),
            "an absent package has no version",
        ));
    }
    let update = match f.choice("update_cache", &["auto", "always", "never"])? {
        Some("always") => Update::Always,
        Some("never") => Update::Never,
        _ => Update::Auto,
    };
    let cache_max_age = match f.int("cache_max_age")? {
        None => Duration::from_secs(3600),
        Some((s, _)) if s >= 0 => Duration::from_secs(s.unsigned_abs()),
        Some((_, span)) => {
            return Err(SpecError::new(
                span,
                "`cache_max_age` must be a number of seconds",
            ))
        }
    };
    Ok(Arc::new(Package {
        names: out,
        present,
        versions,
        update,
        cache_max_age,
    }))
}

impl Package {
    /// The packages that need action, with the change each one makes.
    fn wanted(&self, host: &Probe) -> Result<Vec<(String, Change)>, ResourceError> {
        let db = dpkg::read(host)?;
        let mut out = Vec::new();
        for name in &self.names {
            let rec = db.find(name);
            let want = self.versions.get(name);
            let change = match (self.present, rec) {
                (true, None) => Some(Change::new(
                    name,
                    Some("not installed"),
                    Some(want.map_or("install".to_string(), |v| format!("install {v}"))),
                )),
                (true, Some(r)) if !r.is_installed() => Some(Change::new(
                    name,
                    Some(format!("{} {}", r.state(), r.version)),
                    Some(want.map_or("install".to_string(), |v| format!("install {v}"))),
                )),
                (true, Some(r)) => match want {
                    Some(v) if !dpkg::version_matches(v, &r.version) => {
                        Some(Change::new(name, Some(r.version.clone()), Some(v.clone())))
                    }
                    _ => None,
                },
                (false, Some(r)) if !matches!(r.state(), "config-files" | "not-installed") => {
                    Some(Change::new(
                        name,
                        Some(format!("{} {}", r.state(), r.version)),
                        Some("removed"),
                    ))
                }
                (false, _) => None,
            };
            if let Some(c) = change {
                out.push((name.clone(), c));
            }
        }
        Ok(out)
    }

    async fn update_lists(
        &self,
        host: &Mutate,
        names: &[String],
    ) -> Result<Vec<String>, ResourceError> {
        let mut notes = Vec::new();
        let pending = apt::pending_sources(host);
        let stale = apt::lists_age(host).is_none_or(|age| age > self.cache_max_age);
        let mut full = self.update == Update::Always || (self.update == Update::Auto && stale);
        if self.update == Update::Auto && !full && !pending.is_empty() {
            // Only the repositories that changed: fast, and no other mirror is contacted.
            for sources in &pending {
                let mut args = apt::common_options();
                args.extend([
                    "-o".into(),
                    format!("Dir::Etc::sourcelist={sources}"),
                    "-o".into(),
                    "Dir::Etc::sourceparts=-".into(),
                    "-o".into(),
                    "APT::Get::List-Cleanup=0".into(),
                    "update".into(),
                ]);
                apt::act(host, &args).await?;
            }
            notes.push(format!(
                "updated the package lists of {}",
                pending.join(", ")
            ));
            apt::clear_marker(host);
        }
        if self.update == Update::Auto && !full {
            // A package apt has never heard of: the lists are older than the repository.
            for n in names {
                let policy = apt::query(host, &["policy".to_string(), n.clone()])
                    .await
                    .unwrap_or_default();
                if policy.trim().is_empty() || policy.contains("Candidate: (none)") {
                    full = true;
                    break;
                }
            }
        }
        if full {
            let mut args = apt::common_options();
            args.push("update".into());
            apt::act(host, &args).await?;
            apt::clear_marker(host);
            notes.push("updated the package lists".into());
        }
        Ok(notes)
    }

    /// `name=version` for apt, resolving globs against what apt offers.
    async fn pin(&self, host: &Mutate, name: &str) -> Result<String, ResourceError> {
        let Some(v) = self.versions.get(name) else {
            return Ok(name.to_string());
        };
        if !v.contains('*') {
            return Ok(format!("{name}={v}"));
        }
        let madison = apt::query(host, &["madison".to_string(), name.to_string()]).await?;
        let found = madison
            .lines()
            .filter_map(|l| l.split('|').nth(1).map(str::trim))
            .find(|version| dpkg::version_matches(v, version));
        match found {
            Some(version) => Ok(format!("{name}={version}")),
            None => Err(ResourceError::Failed(format!(
                "apt offers no version of {name} matching {v}"
            ))),
        }
    }
}

#[async_trait]
impl Resource for Package {
    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        Ok(self
            .wanted(host)?
            .into_iter()
            .map(|(_, c)| c)
            .collect::<Vec<_>>()
            .into())
    }

    async fn apply(&self, host: &Mutate, _drift: &Drift) -> Result<Applied, ResourceError> {
        let todo: Vec<String> = self.wanted(host)?.into_iter().map(|(n, _)| n).collect();
        let mut applied = Applied::default();
        if todo.is_empty() {
            return Ok(applied);
        }
        let mut args = apt::common_options();
        if self.present {
            applied.notes.extend(self.update_lists(host, &todo).await?);
            args.extend([
                "--no-install-recommends".into(),
                "--allow-downgrades".into(),
                "install".into(),
            ]);
            for n in &todo {
                args.push(self.pin(host, n).await?);
            }
        } else {
            args.push("remove".into());
            args.extend(todo.iter().cloned());
        }
        apt::act(host, &args).await?;
        Ok(applied)
    }
}
