//! `image`: an image present under `repo:tag`, either built from a context (rebuilt only when the
//! context's content hash, kept in the image's `tend.context-hash` label, changes) or pulled.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bollard::query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder};
use futures_util::StreamExt;

use super::context;
use crate::change::{Change, Drift};
use crate::host::{Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

/// The `image` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "image",
    summary: "a Docker image present: built from a context (rebuilt when it changes) or pulled",
    build,
    prune: None,
};

const HASH_LABEL: &str = "tend.context-hash";

#[derive(Debug)]
/// A `image` resource, as its manifest table declared it.
pub(crate) struct Image {
    name: String,
    context: Option<PathBuf>,
    dockerfile: String,
    build_args: Vec<(String, String)>,
    target: Option<String>,
    pull: bool,
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let (name, span) = f.required_string("name")?;
    if !crate::grammar::image_reference(&name.value) {
        return Err(SpecError::new(
            span,
            format!(
                "`name` must be an image reference such as \"repo:tag\", not {:?}",
                name.value
            ),
        ));
    }
    let context = f.path("context")?.map(|(p, _)| p);
    let dockerfile = f
        .string("dockerfile")?
        .map(|(t, _)| t.value)
        .unwrap_or_else(|| "Dockerfile".into());
    let build_args = f.string_map("build_args")?;
    let target = f.string("target")?.map(|(t, _)| t.value);
    let pull = f.bool("pull")?.unwrap_or(false);
    if pull && context.is_some() {
        return Err(SpecError::new(
            f.span_of("pull"),
            "an image is either built (`context`) or pulled (`pull = true`), not both",
        ));
    }
    Ok(Arc::new(Image {
        name: name.value,
        context,
        dockerfile,
        build_args,
        target,
        pull,
    }))
}

impl Image {
    /// The hash of what a build would send, and the files it would send.
    fn context_hash(
        &self,
        host: &Probe,
        ctx: &std::path::Path,
    ) -> Result<(String, Vec<context::Entry>), ResourceError> {
        let real = host.resolved(ctx)?.unwrap_or_else(|| host.real(ctx));
        if !host.metadata(ctx)?.is_some_and(|m| m.is_dir()) {
            return Err(ResourceError::Missing(format!(
                "the build context {} does not exist",
                ctx.display()
            )));
        }
        let entries = context::files(&real, &self.dockerfile)?;
        if !entries.iter().any(|e| e.rel == self.dockerfile) {
            return Err(ResourceError::Missing(format!(
                "no {} in the build context {}",
                self.dockerfile,
                ctx.display()
            )));
        }
        let mut extra: Vec<(&str, &str)> = vec![
            ("dockerfile", self.dockerfile.as_str()),
            ("target", self.target.as_deref().unwrap_or("")),
        ];
        extra.extend(
            self.build_args
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        Ok((context::hash(&entries, &extra)?, entries))
    }

    async fn build_it(
        &self,
        host: &Probe,
        ctx: &std::path::Path,
    ) -> Result<Applied, ResourceError> {
        let docker = super::engine().await?;
        let old_id = docker
            .inspect_image(&self.name)
            .await
            .ok()
            .and_then(|i| i.id);
        let (hash, entries) = self.context_hash(host, ctx)?;
        let tar = context::tar(&entries)?;
        let args: HashMap<String, String> = self.build_args.iter().cloned().collect();
        let labels = HashMap::from([(HASH_LABEL.to_string(), hash)]);
        let mut opts = BuildImageOptionsBuilder::default()
            .t(&self.name)
            .dockerfile(&self.dockerfile)
            .buildargs(&args)
            .labels(&labels)
            .rm(true)
            .forcerm(true);
        if let Some(t) = &self.target {
            opts = opts.target(t);
        }
        let mut stream =
            docker.build_image(opts.build(), None, Some(bollard::body_full(tar.into())));
        let mut log = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail {
                        return Err(ResourceError::Docker(format!(
                            "building {} failed: {}\n{}",
                            self.name,
                            detail.message.unwrap_or_default(),
                            tail(&log)
                        )));
                    }
                    if let Some(s) = info.stream {
                        log.push_str(&s);
                    }
                }
                Err(e) => {
                    return Err(ResourceError::Docker(format!(
                        "building {} failed: {}\n{}",
                        self.name,
                        match e {
                            bollard::errors::Error::DockerStreamError { error } => error,
                            other => other.to_string(),
                        },
                        tail(&log)
                    )))
                }
            }
        }
        let mut notes = vec![format!("built {}:\n{}", self.name, tail(&log))];
        // The image the tag pointed at is now untagged: remove it unless a container still uses
        // it (the engine refuses then), so a rebuild on every release does not fill the disk.
        let new_id = docker
            .inspect_image(&self.name)
            .await
            .ok()
            .and_then(|i| i.id);
        if let Some(old) = old_id.filter(|o| Some(o) != new_id.as_ref()) {
            if docker
                .remove_image(
                    &old,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await
                .is_ok()
            {
                notes.push(format!(
                    "removed the previous image {}",
                    &old[..old.len().min(19)]
                ));
            }
        }
        Ok(Applied {
            notes,
            ..Applied::default()
        })
    }

    async fn pull_it(&self) -> Result<Applied, ResourceError> {
        let docker = super::engine().await?;
        let (repo, tag) = split_reference(&self.name);
        let opts = CreateImageOptionsBuilder::default()
            .from_image(repo)
            .tag(tag)
            .build();
        let mut stream = docker.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                return Err(super::api_error(
                    &format!(
                        "cannot pull {} (is the registry reachable from this host?)",
                        self.name
                    ),
                    e,
                ));
            }
        }
        Ok(Applied {
            notes: vec![format!("pulled {}", self.name)],
            ..Applied::default()
        })
    }
}

/// `repo:tag` → (`repo`, `tag`); a registry port is not a tag; no tag means `latest`.
fn split_reference(name: &str) -> (&str, &str) {
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], &name[last_slash + i + 1..]),
        None => (name, "latest"),
    }
}

/// The last lines of a build log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[async_trait]
impl Resource for Image {
    fn reads(&self) -> Vec<PathBuf> {
        self.context.iter().cloned().collect()
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let docker = super::engine().await?;
        let found = match docker.inspect_image(&self.name).await {
            Ok(i) => Some(i),
            Err(e) if super::is_not_found(&e) => None,
            Err(e) => {
                return Err(super::api_error(
                    &format!("cannot inspect image {}", self.name),
                    e,
                ))
            }
        };
        let mut drift = Drift::none();
        match (&self.context, found) {
            (Some(_), None) => drift.push(
                Change::created("image", "built")
                    .described(format!("build {}", self.name)),
            ),
            (Some(ctx), Some(img)) => {
                let (hash, _) = self.context_hash(host, ctx)?;
                let have = img
                    .config
                    .and_then(|c| c.labels)
                    .and_then(|l| l.get(HASH_LABEL).cloned());
                if have.as_deref() != Some(hash.as_str()) {
                    let short = |h: &str| h.chars().take(12).collect::<String>();
                    drift.push(
                        Change::new(
                            "context",
                            Some(have.as_deref().map_or("(not built by tend)".into(), short)),
                            Some(short(&hash)),
                        )
                        .described(format!(
                            "rebuild {}: the context changed ({} → {})",
                            self.name,
                            have.as_deref().map_or("not built by tend".into(), short),
                            short(&hash)
                        )),
                    );
                }
            }
            (None, None) if self.pull => drift.push(
                Change::created("image", "pulled")
                    .described(format!("pull {}", self.name)),
            ),
            (None, None) => {
                return Err(ResourceError::Failed(format!(
                    "image {} is not present, and tend has no way to get it: set `context` to build it or `pull = true`",
                    self.name
                )))
            }
            (None, Some(_)) => {}
        }
        Ok(drift)
    }

    async fn apply(&self, host: &Mutate, _drift: &Drift) -> Result<Applied, ResourceError> {
        match &self.context {
            Some(ctx) => self.build_it(host, ctx).await,
            None => self.pull_it().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_tag_not_the_port() {
        assert_eq!(
            split_reference("langgenius/dify-api:1.12.1"),
            ("langgenius/dify-api", "1.12.1")
        );
        assert_eq!(
            split_reference("registry:5000/x"),
            ("registry:5000/x", "latest")
        );
        assert_eq!(
            split_reference("registry:5000/x:2"),
            ("registry:5000/x", "2")
        );
        assert_eq!(split_reference("nginx"), ("nginx", "latest"));
    }
}
