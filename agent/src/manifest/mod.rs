//! Load: read the TOML, resolve `[vars]`, render every string, build each resource through its
//! kind's constructor, and check every reference, before anything touches the host.
//!
//! Every error is a [`Diagnostic`] with file, line, column, the source line and a caret. The
//! loader keeps going after a bad resource, so one run shows every mistake in the manifest.

mod beside;
pub mod data;
pub mod diagnostic;
mod interpolate;
mod module;
pub mod raw;
pub mod template;
pub mod tree_cache;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tend_resources::host::sha256_hex;
use tend_resources::spec::{
    nearest, quote_list, BuildContext, Entry, Fields, Span, Spanned, Text, Value,
};
use tend_resources::{Resource, SpecError, KINDS};

pub use diagnostic::Diagnostic;
use template::{RenderError, Renderer, VarSource};

use crate::facts::Facts;
use crate::secrets::{SecretMode, SecretStore};

/// Top-level tables that are not kinds.
const SECTIONS: &[&str] = &["vars", "data", "prune"];

/// Keys every resource may have, handled by the engine rather than the provider.
pub const COMMON_KEYS: &[&str] = &["requires", "notify", "tags", "when", "for_each"];

/// How to load a manifest.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `--var NAME=VALUE`, overriding `[vars]`.
    pub vars: Vec<(String, String)>,
    /// The root the host's facts are read from (`--root`, `/` for the running host).
    pub root: PathBuf,
    /// The state directory: stored secrets, the stored parsed tree.
    pub state_dir: PathBuf,
    /// What `secret()` may do with the state directory.
    pub secrets: SecretMode,
}

/// A declared resource, built and validated.
#[derive(Debug, Clone)]
pub struct Decl {
    /// Unique in its manifest: the order it was built in (the instances of one `for_each` share
    /// their table's span).
    pub id: usize,
    /// `KIND.NAME`, `KIND.NAME["KEY"]` or `module.M.KIND.NAME`: unique in the manifest.
    pub address: String,
    /// The kind's name.
    pub kind: &'static str,
    /// The table's name (`NAME` of `[KIND.NAME]`).
    pub name: String,
    /// Where it is declared (a module's resources: the module call).
    pub span: Span,
    /// The resource its kind built.
    pub resource: Arc<dyn Resource>,
    /// The addresses it waits for, each where it is written.
    pub requires: Vec<(String, Span)>,
    /// The addresses it refreshes when it changes, each where it is written.
    pub notify: Vec<(String, Span)>,
    /// Its tags (`--only tag:NAME`).
    pub tags: Vec<String>,
    /// False when `when` evaluated false: the resource takes no part in the run.
    pub enabled: bool,
}

/// A manifest, loaded: its resources built, in document order.
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its text.
    pub source: String,
    /// The sha256 of its text (hex), as reports name it.
    pub sha256: String,
    /// The parsed tree to store in the state directory (an apply does, under its lock), when it
    /// was parsed rather than read from there.
    pub tree_to_store: Option<Vec<u8>>,
    /// Every resource, instances and modules' included, in document order.
    pub resources: Vec<Decl>,
    /// The secrets its templates asked for.
    pub secrets: Arc<SecretStore>,
    /// The facts its templates saw.
    pub facts: Facts,
    /// The merged `[data]` layers, when the manifest has them.
    pub data: Option<data::Data>,
    /// `[prune] kinds`: the kinds whose orphans apply removes (what `--prune` does for all).
    pub prune: Vec<String>,
}

impl Manifest {
    /// A located error in the manifest's own file.
    pub fn diagnostic(
        &self,
        span: Span,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        Diagnostic::new(self.path.clone(), &self.source, span, message, help)
    }
}

/// Why a manifest did not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Its file could not be read.
    #[error("cannot read manifest {}: {source}{}", path.display(), default_hint(path, source))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a valid manifest: every mistake found, located.
    #[error("{}", render_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
    /// The command line does not fit it (a `--var` of the wrong type).
    #[error("{0}")]
    Usage(String),
}

/// Each error once: the instances of a module's `for_each` meet the same mistake in its file.
fn dedup(diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut seen = std::collections::HashSet::new();
    diags
        .into_iter()
        .filter(|d| seen.insert((d.file.clone(), d.line, d.column, d.message.clone())))
        .collect()
}

/// `KIND.NAME`.
fn address_of(kind: &str, name: &str) -> String {
    format!("{kind}.{name}")
}

/// The most instances one `for_each` makes.
const MAX_INSTANCES: usize = 10_000;

/// A `requires` or `notify` naming a group names each of its members: a `for_each` resource as
/// a whole (`file.site` → `file.site["a"]`, `file.site["b"]`), a module (`module.web` → every
/// resource under `module.web.`, and its instances' under `module.web["a"].`).
fn expand_group_references(decls: &mut [Decl]) {
    // Most resources name nothing: then there is nothing to expand, and no set to build.
    if decls
        .iter()
        .all(|d| d.requires.is_empty() && d.notify.is_empty())
    {
        return;
    }
    let addresses: std::collections::HashSet<String> =
        decls.iter().map(|d| d.address.clone()).collect();
    let all: Vec<String> = decls.iter().map(|d| d.address.clone()).collect();
    let members = |t: &str| -> Vec<String> {
        all.iter()
            .filter(|a| {
                a.strip_prefix(t)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with("[\""))
            })
            .cloned()
            .collect()
    };
    let expand = |list: &mut Vec<(String, Span)>| {
        if list.iter().all(|(t, _)| addresses.contains(t)) {
            return;
        }
        let mut out = Vec::with_capacity(list.len());
        for (t, span) in list.drain(..) {
            let m = if addresses.contains(&t) {
                Vec::new()
            } else {
                members(&t)
            };
            if m.is_empty() {
                out.push((t, span));
            } else {
                out.extend(m.into_iter().map(|a| (a, span.clone())));
            }
        }
        *list = out;
    };
    for d in decls.iter_mut() {
        expand(&mut d.requires);
        expand(&mut d.notify);
    }
}

/// A manifest value as templates see it (`None` for a TOML date).
pub(crate) fn to_json(v: &Value) -> Option<serde_json::Value> {
    Some(match v {
        Value::Str(t) => serde_json::Value::String(t.value.clone()),
        Value::Int(i) | Value::Octal(i) => (*i).into(),
        Value::Bool(b) => (*b).into(),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|i| to_json(&i.value))
                .collect::<Option<Vec<_>>>()?,
        ),
        Value::Table(entries) => {
            if entries.iter().any(|e| e.key.starts_with("$__toml_private")) {
                return None;
            }
            serde_json::Value::Object(
                entries
                    .iter()
                    .map(|e| Some((e.key.clone(), to_json(&e.value.value)?)))
                    .collect::<Option<serde_json::Map<_, _>>>()?,
            )
        }
    })
}

/// A field whose string form is run by `/bin/sh -c`.
/// The fields of an `exec` a shell reads.
const SHELL_FIELDS: &[&str] = &["command", "unless", "onlyif"];

/// The first `{{ … }}` of a shell string that a shell would not read as one quoted word: one
/// not passed through `shell_quote`, or one that is but sits inside quotes of the command's own
/// (`"…{{ x | shell_quote }}…"`: within double quotes `$(…)` still runs, and the quotes
/// `shell_quote` adds are mere characters). The expression, and whether it was quoted in vain.
fn unquoted_interpolation(source: &str) -> Option<(String, bool)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut quote = Quote::None;
    let mut rest = source;
    loop {
        let start = rest.find("{{");
        // The command's own text up to the interpolation: where its quotes stand there.
        let literal = &rest[..start.unwrap_or(rest.len())];
        let mut chars = literal.chars();
        while let Some(c) = chars.next() {
            match (quote, c) {
                (Quote::None, '\\') | (Quote::Double, '\\') => {
                    chars.next();
                }
                (Quote::None, '\'') => quote = Quote::Single,
                (Quote::Single, '\'') => quote = Quote::None,
                (Quote::None, '"') => quote = Quote::Double,
                (Quote::Double, '"') => quote = Quote::None,
                _ => {}
            }
        }
        let start = start?;
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let expr = after[..end].trim();
        // secret() values are alphanumeric, literals are the manifest's own.
        let literal_value =
            expr.starts_with("secret(") || expr.starts_with('"') || expr.starts_with('\'');
        if !literal_value {
            if !expr.contains("shell_quote") {
                return Some((expr.to_string(), false));
            }
            if quote != Quote::None {
                return Some((expr.to_string(), true));
            }
        }
        rest = &after[end + 2..];
    }
}

/// A missing default manifest: say how to name another.
fn default_hint(path: &std::path::Path, e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::NotFound
        && path == std::path::Path::new(crate::cli::DEFAULT_MANIFEST)
    {
        "; name the manifest as the first argument (`tend plan PATH`) or put one there"
    } else {
        ""
    }
}

fn render_diagnostics(d: &[Diagnostic]) -> String {
    let mut s = d
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n\n");
    if d.len() > 1 {
        s.push_str(&format!("\n\n{} errors in the manifest", d.len()));
    }
    s
}

struct Ctx<'a> {
    dir: PathBuf,
    renderer: &'a Renderer,
}

impl BuildContext for Ctx<'_> {
    fn manifest_dir(&self) -> &Path {
        &self.dir
    }
    fn render(&self, source: &str, name: &str) -> Result<Text, String> {
        self.renderer
            .render(source, name)
            .map_err(|e| match e.help() {
                Some(h) if matches!(e, RenderError::Undefined { .. }) => {
                    format!("{} ({h})", e.message())
                }
                _ => e.message(),
            })
    }
}

/// Load the manifest at `path`, its parsed tree taken from the state directory when it was
/// stored for these very bytes ([`tree_cache`]).
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Manifest, LoadError> {
    load_observed(path, opts, None)
}

/// Told of each resource as soon as it is built, while the rest of the manifest still loads: a
/// plan checks them meanwhile (`crate::engine::early`). A manifest that then fails to load is an error
/// all the same; what was told of it is thrown away.
pub trait Observer {
    /// The kinds the manifest declares, before the first resource is built.
    fn kinds(&mut self, kinds: &[&str]);
    /// One resource, built. Its place in [`Manifest::resources`] is not known yet (they are put
    /// in document order at the end): its `span.start` names it.
    fn built(&mut self, decl: &Decl);
}

/// [`load`], telling `observer` of each resource as it is built.
pub fn load_observed(
    path: &Path,
    opts: &LoadOptions,
    observer: Option<&mut dyn Observer>,
) -> Result<Manifest, LoadError> {
    let source = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_with(
        path,
        source,
        opts,
        Some(&opts.state_dir.join(tree_cache::FILE)),
        observer,
    )
}

/// Load a manifest from its text; `path` names it in errors and locates template files.
pub fn load_source(path: &Path, source: String, opts: &LoadOptions) -> Result<Manifest, LoadError> {
    load_with(path, source, opts, None, None)
}

fn load_with(
    path: &Path,
    source: String,
    opts: &LoadOptions,
    tree_file: Option<&Path>,
    observer: Option<&mut dyn Observer>,
) -> Result<Manifest, LoadError> {
    let sha256 = sha256_hex(source.as_bytes());
    let mut tree_to_store = None;
    let top = match tree_file.and_then(|f| tree_cache::read(f, &sha256)) {
        Some(tree) => Ok(tree),
        None => raw::parse(&source).inspect(|tree| {
            if tree_file.is_some() {
                tree_to_store = Some(tree_cache::encode(&sha256, tree));
            }
        }),
    };
    let (facts, missing) = Facts::gather_reporting(&opts.root);
    // Said only to a manifest that uses facts: the others do not care.
    if source.contains("facts") {
        for m in &missing {
            tracing::warn!(
                "cannot read {m}: those facts are undefined, and a template that uses them fails"
            );
        }
    }
    let secrets = Arc::new(SecretStore::new(&opts.state_dir, opts.secrets));
    let mut loader = Loader {
        path: path.to_path_buf(),
        source: &source,
        diags: Vec::new(),
        data: None,
        prune: Vec::new(),
        prefix: String::new(),
    };
    let resources = loader.load(top, opts, &facts, secrets.clone(), observer)?;
    if !loader.diags.is_empty() {
        return Err(LoadError::Invalid(dedup(loader.diags)));
    }
    let data = loader.data.take();
    let prune = std::mem::take(&mut loader.prune);
    Ok(Manifest {
        path: path.to_path_buf(),
        sha256,
        tree_to_store,
        source,
        resources,
        secrets,
        facts,
        data,
        prune,
    })
}

struct Loader<'s> {
    path: PathBuf,
    source: &'s str,
    diags: Vec<Diagnostic>,
    data: Option<data::Data>,
    /// `[prune] kinds`.
    prune: Vec<String>,
    /// `module.NAME.` inside a module (its resources' addresses), empty at the top.
    prefix: String,
}

impl Loader<'_> {
    fn error(&mut self, span: Span, message: impl Into<String>, help: Option<String>) {
        self.diags.push(Diagnostic::new(
            self.path.clone(),
            self.source,
            span,
            message,
            help,
        ));
    }

    fn fail(&mut self) -> LoadError {
        LoadError::Invalid(dedup(std::mem::take(&mut self.diags)))
    }

    fn load(
        &mut self,
        top: Result<Vec<Entry>, raw::ParseError>,
        opts: &LoadOptions,
        facts: &Facts,
        secrets: Arc<SecretStore>,
        mut observer: Option<&mut dyn Observer>,
    ) -> Result<Vec<Decl>, LoadError> {
        let top = match top {
            Ok(entries) => entries,
            Err(e) => {
                self.error(e.span, format!("invalid TOML: {}", e.message), None);
                return Err(self.fail());
            }
        };

        let mut renderer = Renderer::new(secrets.clone());
        let here = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        renderer.set_includes(here.clone(), here.clone());
        renderer.set("facts", facts.template_value());
        self.prune = self.prune_kinds(&top);
        // [data]: its layers may use facts, never vars or data (set before either exists).
        match self.data(&top, &renderer) {
            Ok(Some(d)) => {
                for rel in &d.skipped {
                    tracing::info!("data layer {rel} does not exist: skipped");
                }
                // A secret key's name taints every string that uses it (its diff is hidden).
                for k in &d.secret {
                    if let Some(last) = k.rsplit('.').next() {
                        renderer.mark_sensitive(last);
                    }
                }
                renderer.set("data", d.merged.clone());
                self.data = Some(d);
            }
            Ok(None) => {}
            Err(()) => return Err(self.fail()),
        }

        // [vars], then --var overrides.
        let mut var_spans: BTreeMap<String, Span> = BTreeMap::new();
        let mut raw_vars: BTreeMap<String, VarSource> = BTreeMap::new();
        for e in top.iter().filter(|e| e.key == "vars") {
            let Value::Table(vars) = &e.value.value else {
                self.error(
                    e.value.span.clone(),
                    "[vars] must be a table of variables",
                    Some("write `[vars]` followed by `name = \"value\"` lines".into()),
                );
                continue;
            };
            for v in vars {
                if ["vars", "facts", "secret", "data", "each"].contains(&v.key.as_str()) {
                    self.error(
                        v.key_span.clone(),
                        format!("`{}` is a reserved name and cannot be a variable", v.key),
                        None,
                    );
                    continue;
                }
                let src = match &v.value.value {
                    Value::Str(t) => VarSource::Template(t.value.clone()),
                    // Lists and tables are taken as written (their strings are not templates).
                    other => match to_json(other) {
                        Some(j) => VarSource::Literal(j),
                        None => {
                            self.error(
                                v.value.span.clone(),
                                format!("variable `{}` holds a date, which no field takes", v.key),
                                None,
                            );
                            continue;
                        }
                    },
                };
                var_spans.insert(v.key.clone(), v.value.span.clone());
                raw_vars.insert(v.key.clone(), src);
            }
        }
        for (k, v) in &opts.vars {
            if !raw_vars.contains_key(k) {
                let mut msg = format!("--var {k}: the manifest has no variable `{k}` in [vars]");
                if let Some(n) = nearest(k, raw_vars.keys().map(String::as_str)) {
                    msg.push_str(&format!("; did you mean `{n}`?"));
                }
                return Err(LoadError::Usage(msg));
            }
            // The override takes the declared variable's type: `--var debug=false` on a boolean
            // is false, not the (truthy) string "false".
            let typed = match raw_vars.get(k) {
                Some(VarSource::Literal(serde_json::Value::Bool(_))) => match v.as_str() {
                    "true" => serde_json::Value::Bool(true),
                    "false" => serde_json::Value::Bool(false),
                    _ => {
                        return Err(LoadError::Usage(format!(
                            "--var {k}={v}: `{k}` is a boolean in [vars]; give true or false"
                        )))
                    }
                },
                Some(VarSource::Literal(serde_json::Value::Number(n))) => {
                    let parsed = if n.is_f64() {
                        v.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
                    } else {
                        v.parse::<i64>().ok().map(serde_json::Number::from)
                    };
                    match parsed {
                        Some(n) => serde_json::Value::Number(n),
                        None => {
                            return Err(LoadError::Usage(format!(
                                "--var {k}={v}: `{k}` is a number in [vars]; give {}",
                                if n.is_f64() {
                                    "a number such as 1.5"
                                } else {
                                    "an integer"
                                }
                            )))
                        }
                    }
                }
                // A list or a table takes JSON: `--var 'pkgs=["nginx","curl"]'`.
                Some(VarSource::Literal(j)) if j.is_array() || j.is_object() => {
                    match serde_json::from_str::<serde_json::Value>(v) {
                        Ok(parsed)
                            if parsed.is_array() == j.is_array()
                                && (parsed.is_array() || parsed.is_object()) =>
                        {
                            parsed
                        }
                        _ => {
                            return Err(LoadError::Usage(format!(
                                "--var {k}: `{k}` is a {} in [vars]; give it as JSON, e.g. {}",
                                if j.is_array() { "list" } else { "table" },
                                if j.is_array() {
                                    "'[\"a\", \"b\"]'"
                                } else {
                                    "'{\"a\": 1}'"
                                }
                            )))
                        }
                    }
                }
                _ => serde_json::Value::String(v.clone()),
            };
            raw_vars.insert(k.clone(), VarSource::Literal(typed));
        }
        if let Err((name, e)) = template::resolve_vars(&mut renderer, &raw_vars) {
            let span = var_spans.get(&name).cloned().unwrap_or(0..0);
            self.error(
                span,
                format!("in variable `{name}`: {}", e.message()),
                e.help(),
            );
            return Err(self.fail());
        }
        if !self.diags.is_empty() {
            return Err(self.fail());
        }

        let ctx = Ctx {
            dir: self
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            renderer: &renderer,
        };
        // One declaration per table under a kind: sized up front, as the reports are.
        let declared = top
            .iter()
            .filter(|e| !SECTIONS.contains(&e.key.as_str()))
            .map(|e| match &e.value.value {
                Value::Table(t) => t.len(),
                _ => 0,
            })
            .sum();
        let mut decls = Vec::with_capacity(declared);
        let mut built = 0;
        let env = module::Env {
            facts: facts.template_value(),
            data: self.data.as_ref().map(|d| d.merged.clone()),
            secrets: secrets.clone(),
            chain: vec![self.path.clone()],
            parsed: Default::default(),
        };
        if let Some(o) = observer.as_deref_mut() {
            let mut kinds: Vec<&str> = top
                .iter()
                .filter(|e| !SECTIONS.contains(&e.key.as_str()))
                .map(|e| e.key.as_str())
                .collect();
            // libgit2 starts before the run's threads, so a `git` inside a module counts too.
            if kinds.contains(&"module")
                && module::modules_may_declare(&top, &here, &here, "git", &env.parsed, 0)
            {
                kinds.push("git");
            }
            o.kinds(&kinds);
        }
        self.build_all(
            &top,
            &renderer,
            &ctx,
            &env,
            &mut decls,
            &mut built,
            &mut observer,
        );
        if !self.diags.is_empty() {
            return Err(self.fail());
        }
        // Document order: `[package.a]`, `[apt_repo.b]`, `[package.c]` stay in that order although
        // TOML groups the tables by kind.
        // Stable: the instances of one `for_each` share their table's place and keep their order.
        decls.sort_by_key(|d| d.span.start);
        expand_group_references(&mut decls);
        self.check_references(&decls);
        Ok(decls)
    }

    /// Build every resource (and module call) of a file's top-level tables into `decls`.
    #[allow(clippy::too_many_arguments)]
    fn build_all(
        &mut self,
        top: &[Entry],
        renderer: &Renderer,
        ctx: &Ctx<'_>,
        env: &module::Env,
        decls: &mut Vec<Decl>,
        built: &mut usize,
        observer: &mut Option<&mut dyn Observer>,
    ) {
        for kind_entry in top.iter().filter(|e| !SECTIONS.contains(&e.key.as_str())) {
            if kind_entry.key == "module" {
                self.module_calls(kind_entry, renderer, env, decls, built, observer);
                continue;
            }
            let Some(kind) = tend_resources::kind(&kind_entry.key) else {
                let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
                let help = match nearest(&kind_entry.key, names.iter().copied()) {
                    Some(n) => format!("did you mean `{n}`? The kinds are {}", quote_list(&names)),
                    None => format!("the kinds are {}", quote_list(&names)),
                };
                self.error(
                    kind_entry.key_span.clone(),
                    format!("unknown resource kind `{}`", kind_entry.key),
                    Some(help),
                );
                continue;
            };
            let Value::Table(items) = &kind_entry.value.value else {
                self.error(
                    kind_entry.value.span.clone(),
                    format!(
                        "`{}` must hold named resources: [{}.NAME]",
                        kind.name, kind.name
                    ),
                    None,
                );
                continue;
            };
            for item in items {
                let instances =
                    match self.for_each(&address_of(kind.name, &item.key), item, renderer) {
                        Some(i) => i,
                        None => continue,
                    };
                for instance in instances {
                    renderer.set_each(instance.as_ref().map(|(k, v)| (k.as_str(), v)));
                    let key = instance.as_ref().map(|(k, _)| k.as_str());
                    if let Some(mut d) = self.resource(kind, item, key, renderer, ctx) {
                        d.id = *built;
                        *built += 1;
                        if let Some(o) = observer.as_deref_mut() {
                            o.built(&d);
                        }
                        decls.push(d);
                    }
                }
                renderer.set_each(None);
            }
        }
    }

    /// `[prune] kinds = [...]`: each a kind whose orphans tend can remove.
    fn prune_kinds(&mut self, top: &[Entry]) -> Vec<String> {
        let Some(e) = top.iter().find(|e| e.key == "prune") else {
            return Vec::new();
        };
        let help = Some(format!(
            "[prune]\nkinds = [{}]",
            crate::orphans::prunable()
                .iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let Value::Table(fields) = &e.value.value else {
            self.error(e.value.span.clone(), "[prune] must be a table", help);
            return Vec::new();
        };
        let mut kinds = Vec::new();
        for f in fields {
            let items = match (&f.value.value, f.key.as_str()) {
                (Value::Array(items), "kinds") => items,
                (_, "kinds") => {
                    self.error(
                        f.value.span.clone(),
                        "[prune] kinds must be a list of kinds",
                        help.clone(),
                    );
                    continue;
                }
                (_, other) => {
                    self.error(
                        f.key_span.clone(),
                        format!("[prune] has no field `{other}`"),
                        Some("[prune] takes `kinds`".into()),
                    );
                    continue;
                }
            };
            for item in items {
                match &item.value {
                    Value::Str(k) if crate::orphans::prunable().contains(&k.value.as_str()) => {
                        kinds.push(k.value.clone());
                    }
                    Value::Str(k) => self.error(
                        item.span.clone(),
                        format!(
                            "tend does not remove an orphaned {:?}: only what it created of {}",
                            k.value,
                            crate::orphans::prunable().join(", ")
                        ),
                        Some(
                            "a package, a checkout or a volume is listed as an orphan, never removed"
                                .into(),
                        ),
                    ),
                    _ => self.error(
                        item.span.clone(),
                        "[prune] kinds must be a list of kinds",
                        help.clone(),
                    ),
                }
            }
        }
        kinds
    }

    /// The `[data]` table's layers read and merged (`None` without one; `Err` after errors).
    fn data(&mut self, top: &[Entry], renderer: &Renderer) -> Result<Option<data::Data>, ()> {
        let Some(e) = top.iter().find(|e| e.key == "data") else {
            return Ok(None);
        };
        let Value::Table(fields) = &e.value.value else {
            self.error(
                e.value.span.clone(),
                "[data] must be a table",
                Some("[data]\nlayers = [\"hosts/{{ facts.fqdn }}.toml\", \"common.toml\"]".into()),
            );
            return Err(());
        };
        let mut layers = Vec::new();
        let mut secret = Vec::new();
        for f in fields {
            let list = match (&f.value.value, f.key.as_str()) {
                (Value::Array(items), "layers" | "secret") => items,
                (_, "layers" | "secret") => {
                    self.error(
                        f.value.span.clone(),
                        format!("[data] {} must be a list of strings", f.key),
                        None,
                    );
                    return Err(());
                }
                _ => {
                    self.error(
                        f.key_span.clone(),
                        format!("[data] has no field `{}`", f.key),
                        Some("[data] takes `layers` and `secret`".into()),
                    );
                    return Err(());
                }
            };
            for item in list {
                let Value::Str(t) = &item.value else {
                    self.error(
                        item.span.clone(),
                        format!("[data] {} must be a list of strings", f.key),
                        None,
                    );
                    return Err(());
                };
                if f.key == "secret" {
                    secret.push(t.value.clone());
                    continue;
                }
                match renderer.render(&t.value, "data.layers") {
                    Ok(r) => layers.push((r.value, item.span.clone())),
                    Err(e) => {
                        self.error(
                            item.span.clone(),
                            format!("in data layer {:?}: {}", t.value, e.message()),
                            Some(match e.help() {
                                Some(h) => format!("{h}; a layer may use facts only"),
                                None => "a layer may use facts only (not vars or data)".into(),
                            }),
                        );
                        return Err(());
                    }
                }
            }
        }
        match data::load(&self.path, self.source, &layers, secret) {
            Ok(d) => Ok(Some(d)),
            Err(diags) => {
                self.diags.extend(diags);
                Err(())
            }
        }
    }

    /// The instances `item`'s `for_each` makes — (key, value) each, in order —, or the one
    /// instance of a table without it (`[None]`); `None` after an error.
    #[allow(clippy::type_complexity)]
    /// The instances of `item`'s `for_each`: `[None]` when it has none, else each instance's
    /// key and `each.value` (as templates take it). `None` after an error.
    fn for_each(
        &mut self,
        address: &str,
        item: &Entry,
        renderer: &Renderer,
    ) -> Option<Vec<Option<(String, minijinja::Value)>>> {
        let Value::Table(fields) = &item.value.value else {
            return Some(vec![None]);
        };
        let Some(f) = fields.iter().find(|f| f.key == "for_each") else {
            return Some(vec![None]);
        };
        let value = match &f.value.value {
            Value::Str(t) => match template::single_expression(&t.value) {
                Some(expr) => match renderer.evaluate_value(expr) {
                    Ok(v) => v,
                    Err(e) => {
                        self.error(
                            f.value.span.clone(),
                            format!("in for_each of {address}: {}", e.message()),
                            e.help(),
                        );
                        return None;
                    }
                },
                None => minijinja::Value::UNDEFINED,
            },
            other => minijinja::Value::from_serialize(to_json(other)),
        };
        use minijinja::value::ValueKind;
        let is_list = value.kind() == ValueKind::Seq;
        let items = match value.try_iter() {
            Ok(items) if is_list || value.kind() == ValueKind::Map => items,
            _ => {
                self.error(
                    f.value.span.clone(),
                    format!("for_each of {address} must be a list or a table"),
                    Some(
                        "a literal list or table, or one expression that yields one: for_each = \"{{ vars.sites }}\""
                            .into(),
                    ),
                );
                return None;
            }
        };
        let mut pairs: Vec<(String, minijinja::Value)> =
            Vec::with_capacity(value.len().unwrap_or(0));
        for i in items {
            // A list: each element is its instance's key and value. A table: each key.
            if !is_list {
                let item = value.get_item(&i).unwrap_or_default();
                pairs.push((
                    i.as_str().map_or_else(|| i.to_string(), str::to_string),
                    item,
                ));
                continue;
            }
            let key = match i.kind() {
                ValueKind::String => i.as_str().unwrap_or_default().to_string(),
                ValueKind::Number => i.to_string(),
                _ => {
                    let shown = serde_json::to_string(&i).unwrap_or_else(|_| i.to_string());
                    self.error(
                        f.value.span.clone(),
                        format!(
                            "for_each of {address}: a list gives instance keys, strings or numbers; found {shown}"
                        ),
                        Some("for a list of tables, key them: a table of tables, `for_each = { a = { … }, b = { … } }`".into()),
                    );
                    return None;
                }
            };
            pairs.push((key, i));
        }
        if !is_list {
            // Instances in key order, however the table was made.
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
        }
        if pairs.len() > MAX_INSTANCES {
            self.error(
                f.value.span.clone(),
                format!(
                    "for_each of {address} makes {} instances, more than the {MAX_INSTANCES} tend takes",
                    pairs.len()
                ),
                None,
            );
            return None;
        }
        let mut seen = std::collections::HashSet::with_capacity(pairs.len());
        for (k, _) in &pairs {
            let ok = !k.is_empty()
                && k.len() <= 200
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:/@+-".contains(&b));
            if !ok {
                self.error(
                    f.value.span.clone(),
                    format!("for_each of {address}: the key {k:?} cannot be part of an address"),
                    Some("keys hold letters, digits and `. _ : / @ + -` (at most 200)".into()),
                );
                return None;
            }
            if !seen.insert(k.as_str()) {
                self.error(
                    f.value.span.clone(),
                    format!("for_each of {address}: the key {k:?} comes twice"),
                    None,
                );
                return None;
            }
        }
        Some(pairs.into_iter().map(Some).collect())
    }

    fn resource(
        &mut self,
        kind: &'static tend_resources::Kind,
        item: &Entry,
        instance: Option<&str>,
        renderer: &Renderer,
        ctx: &Ctx<'_>,
    ) -> Option<Decl> {
        let address = match instance {
            Some(k) => format!("{}{}.{}[\"{k}\"]", self.prefix, kind.name, item.key),
            None => format!("{}{}.{}", self.prefix, kind.name, item.key),
        };
        if item.key.is_empty()
            || !item
                .key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.error(
                item.key_span.clone(),
                format!(
                    "resource name {:?} may only hold letters, digits, `_` and `-`",
                    item.key
                ),
                None,
            );
            return None;
        }
        let Value::Table(fields) = &item.value.value else {
            self.error(
                item.value.span.clone(),
                format!("{address} must be a table: [{address}]"),
                None,
            );
            return None;
        };
        let table_span = item.key_span.clone();
        let mut rendered = Vec::with_capacity(fields.len());
        let mut ok = true;
        for f in fields.iter().filter(|f| f.key != "for_each") {
            let shell = kind.name == "exec" && SHELL_FIELDS.contains(&f.key.as_str());
            match self.render_value(
                &f.value,
                renderer,
                &|| format!("{address}.{}", f.key),
                shell,
            ) {
                Ok(v) => rendered.push(Entry {
                    key: f.key.clone(),
                    key_span: f.key_span.clone(),
                    value: v,
                }),
                Err(()) => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let mut fields = Fields::new(address.clone(), table_span.clone(), rendered, ctx);
        let common = (|| -> Result<_, SpecError> {
            let requires = fields.strings("requires")?.unwrap_or_default();
            let notify = fields.strings("notify")?.unwrap_or_default();
            let tags = fields.strings("tags")?.unwrap_or_default();
            let when = fields.take("when");
            Ok((requires, notify, tags, when))
        })();
        let (requires, notify, tags, when) = match common {
            Ok(c) => c,
            Err(e) => {
                self.error(e.span, e.message, e.help);
                return None;
            }
        };
        let enabled = match when {
            None => true,
            Some(Spanned {
                value: Value::Bool(b),
                ..
            }) => b,
            Some(Spanned {
                span,
                value: Value::Str(t),
            }) => match renderer.truthy(&t.value) {
                Ok(b) => b,
                // A `when` is an expression (rendered first, as every string): the template
                // syntax help would send the reader the wrong way.
                Err(RenderError::Syntax(detail)) => {
                    self.error(
                        span,
                        format!("in `when` of {address}: bad expression: {detail}"),
                        Some(
                            "`when` is one MiniJinja expression, such as \
                             when = \"facts.os.id == 'debian'\""
                                .into(),
                        ),
                    );
                    return None;
                }
                Err(e) => {
                    self.error(
                        span,
                        format!("in `when` of {address}: {}", e.message()),
                        e.help(),
                    );
                    return None;
                }
            },
            Some(other) => {
                self.error(
                    other.span,
                    format!(
                        "`when` must be an expression string or a boolean, found {}",
                        other.value.type_name()
                    ),
                    None,
                );
                return None;
            }
        };
        let built = (kind.build)(&mut fields).and_then(|r| fields.finish().map(|()| r));
        match built {
            Ok(resource) => Some(Decl {
                id: 0,
                address,
                kind: kind.name,
                name: item.key.clone(),
                span: table_span,
                resource,
                // Inside a module, references name its own resources.
                requires: requires
                    .into_iter()
                    .map(|(t, s)| (format!("{}{}", self.prefix, t.value), s))
                    .collect(),
                notify: notify
                    .into_iter()
                    .map(|(t, s)| (format!("{}{}", self.prefix, t.value), s))
                    .collect(),
                tags: tags.into_iter().map(|(t, _)| t.value).collect(),
                enabled,
            }),
            Err(e) => {
                self.error(e.span, e.message, e.help);
                None
            }
        }
    }

    /// `name` makes the field's name (`exec.x.command`) for messages: built only when one is
    /// said, not for each of the strings a large manifest or a `for_each` renders. `shell`: the
    /// string is read by a shell (an `exec` command or guard).
    fn render_value(
        &mut self,
        v: &Spanned,
        renderer: &Renderer,
        name: &dyn Fn() -> String,
        shell: bool,
    ) -> Result<Spanned, ()> {
        let value = match &v.value {
            Value::Str(t) if !template::is_template(&t.value) => Value::Str(t.clone()),
            Value::Str(t) => {
                match shell
                    .then(|| unquoted_interpolation(&t.value))
                    .flatten()
                {
                    Some((expr, false)) => tracing::warn!(
                        "{}: `{{{{ {expr} }}}}` is pasted into a shell command unquoted, and a \
                         fact or variable could hold `$(…)`: write `{{{{ {expr} | shell_quote }}}}`, \
                         or give the command as a list",
                        name()
                    ),
                    Some((expr, true)) => tracing::warn!(
                        "{}: `{{{{ {expr} }}}}` sits inside quotes of the command's own, where \
                         the quotes shell_quote adds are mere characters (and `$(…)` still runs \
                         within double quotes): remove the quotes around it",
                        name()
                    ),
                    None => {}
                }
                match renderer.render_named(&t.value, name) {
                    Ok(t) => Value::Str(t),
                    Err(e) => {
                        self.error(
                            v.span.clone(),
                            format!("in {}: {}", name(), e.message()),
                            e.help(),
                        );
                        return Err(());
                    }
                }
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.render_value(i, renderer, name, shell)?);
                }
                Value::Array(out)
            }
            Value::Table(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for e in entries {
                    let value = self.render_value(
                        &e.value,
                        renderer,
                        &|| format!("{}.{}", name(), e.key),
                        false,
                    )?;
                    out.push(Entry {
                        key: e.key.clone(),
                        key_span: e.key_span.clone(),
                        value,
                    });
                }
                Value::Table(out)
            }
            other => other.clone(),
        };
        Ok(Spanned {
            span: v.span.clone(),
            value,
        })
    }

    fn check_references(&mut self, decls: &[Decl]) {
        let index: BTreeMap<&str, &Decl> = decls.iter().map(|d| (d.address.as_str(), d)).collect();
        for d in decls {
            for (target, span) in d.requires.iter().chain(&d.notify) {
                let is_notify = d.notify.iter().any(|(t, s)| t == target && s == span);
                let field = if is_notify { "notify" } else { "requires" };
                match index.get(target.as_str()) {
                    None => {
                        let help = nearest(target, index.keys().copied())
                            .map(|n| format!("did you mean `{n}`?"))
                            .or_else(|| {
                                Some(
                                    "addresses are KIND.NAME, as in the table header [KIND.NAME]"
                                        .into(),
                                )
                            });
                        self.error(
                            span.clone(),
                            format!(
                                "{} {field} `{target}`, which is not in this manifest",
                                d.address
                            ),
                            help,
                        );
                    }
                    Some(t) if t.address == d.address => {
                        self.error(
                            span.clone(),
                            format!("{} cannot {field} itself", d.address),
                            None,
                        );
                    }
                    Some(t) if is_notify && !t.resource.refreshable() => {
                        self.error(
                            span.clone(),
                            format!("{} notifies `{target}`, but a {} has nothing to do when notified", d.address, t.kind),
                            Some("notify a resource with a refresh action (such as an exec with refresh_only = true), or use `requires` for ordering".into()),
                        );
                    }
                    Some(_) => {}
                }
            }
        }
    }
}
