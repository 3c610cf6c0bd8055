//! Modules: `[module.NAME] source = "modules/baseline"` loads another manifest file (a
//! directory's `manifest.toml`, or a `.toml` file) with typed inputs — its `[params]` — and
//! puts its resources in this manifest under `module.NAME.` (`module.baseline.file.motd`).
//!
//! Inside a module, `requires` and `notify` name its own resources; templates see its params
//! (by name and as `vars.NAME`), the facts and `data`, never the caller's variables; templates
//! and `source` files resolve relative to the module's directory. The call's `when`, `requires`
//! and `tags` apply to every resource of the module, and `for_each` makes one module instance
//! per element (`module.NAME["KEY"].…`). A module file lies inside the top manifest's
//! directory (a pulled policy uses only its own verified tree); modules may use modules, at
//! most 32 deep, and one that reaches itself is an error that prints the chain.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tend_resources::spec::{nearest, Entry, Span, Spanned, Value};

use super::template::{single_expression, Renderer};
use super::{raw, Ctx, Decl, Diagnostic, Loader, Observer};
use crate::secrets::SecretStore;

/// How deep modules may nest.
const MAX_DEPTH: usize = 32;

/// What every module of one load shares.
pub(super) struct Env {
    pub facts: serde_json::Value,
    pub data: Option<serde_json::Value>,
    pub secrets: Arc<SecretStore>,
    /// The files from the top manifest to this one (for cycles and messages).
    pub chain: Vec<PathBuf>,
    /// Module files read and parsed in this load: one used by 1,000 `for_each` instances (or
    /// by two modules) is read once.
    pub parsed: Arc<std::sync::Mutex<Parsed>>,
}

/// The real path of module `source` named in a file of directory `dir`, inside `top` (the top
/// manifest's directory); a directory means its `manifest.toml`. The same spelling each time it
/// is reached (cycles are found by it). Else why not, to follow the source in a message.
fn source_file(dir: &Path, top: &Path, source: &str) -> Result<PathBuf, String> {
    let rel = Path::new(source);
    if source.is_empty()
        || !rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(" must be a path inside the manifest's directory (relative, no `..`)".into());
    }
    let mut full = dir.join(rel);
    if full.is_dir() {
        full = full.join("manifest.toml");
    }
    match (std::fs::canonicalize(&full), std::fs::canonicalize(top)) {
        (Ok(f), Ok(t)) if f.starts_with(&t) => Ok(f),
        (Err(e), _) | (_, Err(e)) => Err(format!(": {e}")),
        _ => Err(" leads out of the manifest's directory".into()),
    }
}

/// Whether a module `top` calls (or one they call, down to [`MAX_DEPTH`]) may declare `kind`:
/// read ahead through the load's parse cache, so the load itself reads and parses nothing twice.
/// A source written as a template, or a file that cannot be read or parsed, counts as "may" (the
/// load says what is wrong with it). The run starts libgit2 early only when a `git` may come.
pub(super) fn modules_may_declare(
    top: &[Entry],
    dir: &Path,
    root: &Path,
    kind: &str,
    parsed: &std::sync::Mutex<Parsed>,
    depth: usize,
) -> bool {
    for e in top.iter().filter(|e| e.key == "module") {
        let Value::Table(calls) = &e.value.value else {
            return true;
        };
        for call in calls {
            let Value::Table(fields) = &call.value.value else {
                return true;
            };
            let source = fields.iter().find_map(|f| match &f.value.value {
                Value::Str(s) if f.key == "source" => Some(s.value.as_str()),
                _ => None,
            });
            let Some(source) = source.filter(|s| !s.contains("{{")) else {
                return true;
            };
            if depth >= MAX_DEPTH {
                return true;
            }
            // Only what the load itself would read: inside the top manifest's directory.
            let Ok(file) = source_file(dir, root, source) else {
                return true;
            };
            let cached = parsed.lock().ok().and_then(|p| p.get(&file).cloned());
            let loaded = match cached {
                Some(l) => l,
                None => {
                    let Ok(text) = super::beside::read(&file) else {
                        return true;
                    };
                    let entries = raw::parse(&text).map_err(|e| (e.message, e.span));
                    let l = Arc::new((text, entries));
                    if let Ok(mut p) = parsed.lock() {
                        p.insert(file.clone(), l.clone());
                    }
                    l
                }
            };
            let Ok(entries) = &loaded.1 else {
                return true;
            };
            let here = file.parent().unwrap_or(Path::new("/"));
            if entries.iter().any(|e| e.key == kind)
                || modules_may_declare(entries, here, root, kind, parsed, depth + 1)
            {
                return true;
            }
        }
    }
    false
}

/// A module file's text and its parse, by its real path.
pub(super) type Parsed =
    std::collections::HashMap<PathBuf, Arc<(String, Result<Vec<Entry>, (String, Span)>)>>;

/// One declared input of a module.
struct Param {
    name: String,
    ty: &'static str,
    default: Option<serde_json::Value>,
    secret: bool,
    /// What the module's author says it is for: shown beside a mistake in it.
    doc: Option<String>,
}

/// "a string", "an int".
fn a(ty: &str) -> String {
    if ty.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {ty}")
    } else {
        format!("a {ty}")
    }
}

const TYPES: &[&str] = &["string", "bool", "int", "list", "table"];

fn type_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::String(_) => "string",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        serde_json::Value::Number(_) => "float",
        serde_json::Value::Array(_) => "list",
        serde_json::Value::Object(_) => "table",
        serde_json::Value::Null => "nothing",
    }
}

impl Loader<'_> {
    /// Each `[module.NAME]` of `entry` loaded, its resources added to `decls`.
    pub(super) fn module_calls(
        &mut self,
        entry: &Entry,
        renderer: &Renderer,
        env: &Env,
        decls: &mut Vec<Decl>,
        built: &mut usize,
        observer: &mut Option<&mut dyn Observer>,
    ) {
        let Value::Table(calls) = &entry.value.value else {
            self.error(
                entry.value.span.clone(),
                "`module` must hold named modules: [module.NAME]",
                None,
            );
            return;
        };
        for call in calls {
            let address = format!("module.{}", call.key);
            if call.key.is_empty()
                || !call
                    .key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                self.error(
                    call.key_span.clone(),
                    format!(
                        "module name {:?} may only hold letters, digits, `_` and `-`",
                        call.key
                    ),
                    None,
                );
                continue;
            }
            let Some(instances) = self.for_each(&address, call, renderer) else {
                continue;
            };
            for instance in instances {
                renderer.set_each(instance.as_ref().map(|(k, v)| (k.as_str(), v)));
                let suffix = instance
                    .as_ref()
                    .map(|(k, _)| format!("[\"{k}\"]"))
                    .unwrap_or_default();
                self.module_call(call, &suffix, renderer, env, decls, built, observer);
            }
            renderer.set_each(None);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn module_call(
        &mut self,
        call: &Entry,
        suffix: &str,
        renderer: &Renderer,
        env: &Env,
        decls: &mut Vec<Decl>,
        built: &mut usize,
        observer: &mut Option<&mut dyn Observer>,
    ) {
        let name = format!("module.{}{suffix}", call.key);
        let Value::Table(fields) = &call.value.value else {
            self.error(
                call.value.span.clone(),
                format!("{name} must be a table: [module.{}]", call.key),
                None,
            );
            return;
        };
        let mut source = None;
        let mut inputs: Vec<&Entry> = Vec::new();
        let mut requires = Vec::new();
        let mut tags = Vec::new();
        let mut enabled = true;
        for f in fields {
            match f.key.as_str() {
                "source" => match &f.value.value {
                    Value::Str(t) => source = Some((t.value.clone(), f.value.span.clone())),
                    _ => {
                        self.error(f.value.span.clone(), "source must be a string", None);
                        return;
                    }
                },
                "vars" => match &f.value.value {
                    Value::Table(t) => inputs.extend(t.iter()),
                    _ => {
                        self.error(
                            f.value.span.clone(),
                            "vars must be a table of the module's inputs",
                            Some("vars = { domain = \"example.com\" }".into()),
                        );
                        return;
                    }
                },
                "requires" | "tags" => {
                    let Value::Array(items) = &f.value.value else {
                        self.error(
                            f.value.span.clone(),
                            format!("{} must be a list", f.key),
                            None,
                        );
                        return;
                    };
                    for i in items {
                        match &i.value {
                            Value::Str(t) => {
                                let v = renderer
                                    .render(&t.value, &name)
                                    .map(|t| t.value)
                                    .unwrap_or_else(|_| t.value.clone());
                                if f.key == "requires" {
                                    requires.push((format!("{}{v}", self.prefix), i.span.clone()));
                                } else {
                                    tags.push(v);
                                }
                            }
                            _ => {
                                self.error(
                                    i.span.clone(),
                                    format!("{} holds strings", f.key),
                                    None,
                                );
                                return;
                            }
                        }
                    }
                }
                "when" => {
                    enabled = match &f.value.value {
                        Value::Bool(b) => *b,
                        Value::Str(t) => {
                            let expr = renderer.render(&t.value, &name).map(|t| t.value);
                            match expr
                                .map_err(|e| e.message())
                                .and_then(|e| renderer.truthy(&e).map_err(|e| e.message()))
                            {
                                Ok(b) => b,
                                Err(m) => {
                                    self.error(
                                        f.value.span.clone(),
                                        format!("in `when` of {name}: {m}"),
                                        None,
                                    );
                                    return;
                                }
                            }
                        }
                        other => {
                            self.error(
                                f.value.span.clone(),
                                format!(
                                    "`when` must be an expression string or a boolean, found {}",
                                    other.type_name()
                                ),
                                None,
                            );
                            return;
                        }
                    }
                }
                "for_each" => {}
                other => {
                    let known = ["source", "vars", "requires", "tags", "when", "for_each"];
                    self.error(
                        f.key_span.clone(),
                        format!("unknown field `{other}` in {name}"),
                        Some(match nearest(other, known.iter().copied()) {
                            Some(n) => format!("did you mean `{n}`?"),
                            None => {
                                "a module call takes source, vars, requires, tags, when, for_each"
                                    .into()
                            }
                        }),
                    );
                    return;
                }
            }
        }
        let Some((source, source_span)) = source else {
            self.error(
                call.key_span.clone(),
                format!("{name} is missing the required field `source`"),
                Some(
                    "source = \"modules/NAME\" (a directory with manifest.toml, or a .toml file)"
                        .into(),
                ),
            );
            return;
        };
        let Some(file) = self.module_file(&source, &source_span, env) else {
            return;
        };
        if env.chain.len() > MAX_DEPTH {
            self.error(
                source_span,
                format!("modules nest more than {MAX_DEPTH} deep"),
                None,
            );
            return;
        }
        if env.chain.contains(&file) {
            let mut names: Vec<String> =
                env.chain.iter().map(|p| p.display().to_string()).collect();
            names.push(file.display().to_string());
            self.error(
                source_span,
                format!("{name} includes itself: {}", names.join(" → ")),
                None,
            );
            return;
        }
        let cached = env.parsed.lock().ok().and_then(|p| p.get(&file).cloned());
        let loaded = match cached {
            Some(l) => l,
            None => {
                let text = match super::beside::read(&file) {
                    Ok(t) => t,
                    Err(why) => {
                        self.error(source_span, format!("module {source:?}: {why}"), None);
                        return;
                    }
                };
                let entries = raw::parse(&text).map_err(|e| (e.message, e.span));
                let l = Arc::new((text, entries));
                if let Ok(mut p) = env.parsed.lock() {
                    p.insert(file.clone(), l.clone());
                }
                l
            }
        };
        let text = loaded.0.as_str();
        let line = self.source[..call.key_span.start.min(self.source.len())]
            .matches('\n')
            .count()
            + 1;
        let note = format!("imported from {}:{line} ({name})", self.path.display());
        let entries = match &loaded.1 {
            Ok(e) => e.clone(),
            Err((message, span)) => {
                let mut d = Diagnostic::new(
                    file.clone(),
                    text,
                    span.clone(),
                    format!("invalid TOML: {message}"),
                    None,
                );
                d.notes.push(note);
                self.diags.push(d);
                return;
            }
        };
        let mut child = Loader {
            path: file.clone(),
            source: text,
            diags: Vec::new(),
            data: None,
            prune: Vec::new(),
            prefix: format!("{}{name}.", self.prefix),
        };
        // The module's params, checked against the call's inputs.
        let params = child.params(&entries);
        let mut mrenderer = Renderer::new(env.secrets.clone());
        let top = match env.chain.first().and_then(|p| p.parent()) {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        mrenderer.set_includes(
            file.parent().map(Path::to_path_buf).unwrap_or_default(),
            top,
        );
        mrenderer.set("facts", env.facts.clone());
        if let Some(d) = &env.data {
            mrenderer.set("data", d.clone());
        }
        let mut vars = serde_json::Map::new();
        let mut ok = child.diags.is_empty();
        for input in &inputs {
            if !params.iter().any(|p| p.name == input.key) {
                let help = match nearest(&input.key, params.iter().map(|p| p.name.as_str())) {
                    Some(n) => format!("did you mean `{n}`?"),
                    None if params.is_empty() => "the module declares no [params]".into(),
                    None => format!(
                        "its inputs are {}",
                        params
                            .iter()
                            .map(|p| format!("`{}`", p.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                self.error(
                    input.key_span.clone(),
                    format!("{name} has no input `{}`", input.key),
                    Some(help),
                );
                ok = false;
            }
        }
        for p in &params {
            let given = inputs.iter().find(|i| i.key == p.name);
            let (value, span, sensitive) = match given {
                Some(i) => match self.input_value(&i.value, renderer, &name) {
                    Some((v, s)) => (v, i.value.span.clone(), s),
                    None => {
                        ok = false;
                        continue;
                    }
                },
                None => match &p.default {
                    Some(d) => (d.clone(), call.key_span.clone(), false),
                    None => {
                        self.error(
                            call.key_span.clone(),
                            format!(
                                "{name} is missing its required input `{}` ({})",
                                p.name, p.ty
                            ),
                            Some(format!("vars = {{ {} = … }}", p.name)),
                        );
                        ok = false;
                        continue;
                    }
                },
            };
            let got = type_of(&value);
            if got != p.ty {
                self.error(
                    span,
                    format!(
                        "{name}: input `{}` must be {}, found {}",
                        p.name,
                        a(p.ty),
                        a(got)
                    ),
                    p.doc.as_ref().map(|d| format!("`{}`: {d}", p.name)),
                );
                ok = false;
                continue;
            }
            if p.secret || sensitive {
                mrenderer.mark_sensitive(&p.name);
            }
            mrenderer.set(&p.name, value.clone());
            vars.insert(p.name.clone(), value);
        }
        if !ok {
            for mut d in std::mem::take(&mut child.diags) {
                d.notes.push(note.clone());
                self.diags.push(d);
            }
            return;
        }
        mrenderer.set("vars", serde_json::Value::Object(vars));
        let ctx = Ctx {
            dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
            renderer: &mrenderer,
        };
        let mut chain = env.chain.clone();
        chain.push(file.clone());
        let child_env = Env {
            facts: env.facts.clone(),
            data: env.data.clone(),
            secrets: env.secrets.clone(),
            chain,
            parsed: env.parsed.clone(),
        };
        for e in entries
            .iter()
            .filter(|e| matches!(e.key.as_str(), "vars" | "data" | "prune"))
        {
            child.error(
                e.key_span.clone(),
                format!("a module has no [{}]", e.key),
                Some(if e.key == "prune" {
                    "what is pruned is the top manifest's to say".into()
                } else {
                    "a module takes its inputs as [params]; values it computes go in templates"
                        .into()
                }),
            );
        }
        let body: Vec<Entry> = entries.into_iter().filter(|e| e.key != "params").collect();
        let mut mdecls = Vec::new();
        child.build_all(
            &body,
            &mrenderer,
            &ctx,
            &child_env,
            &mut mdecls,
            built,
            observer,
        );
        super::expand_group_references(&mut mdecls);
        child.check_local_references(&mdecls);
        for mut d in std::mem::take(&mut child.diags) {
            d.notes.push(note.clone());
            self.diags.push(d);
        }
        // The module's document order, then the call's place, `when`, `requires` and `tags`
        // for each of its resources.
        mdecls.sort_by_key(|d| d.span.start);
        for mut d in mdecls {
            d.span = call.key_span.clone();
            d.enabled &= enabled;
            d.requires.extend(
                requires
                    .iter()
                    .cloned()
                    .map(|(t, _)| (t, call.key_span.clone())),
            );
            d.tags.extend(tags.iter().cloned());
            decls.push(d);
        }
    }

    /// The module's file: `source` relative to this file's directory, inside the top manifest's
    /// directory; a directory means its `manifest.toml`.
    fn module_file(&mut self, source: &str, span: &Span, env: &Env) -> Option<PathBuf> {
        let here = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let top = match env.chain.first().and_then(|p| p.parent()) {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match source_file(&here, &top, source) {
            Ok(file) => Some(file),
            Err(why) => {
                self.error(span.clone(), format!("module source {source:?}{why}"), None);
                None
            }
        }
    }

    /// An input's value, rendered in the caller's context: one `{{ expression }}` keeps its type.
    fn input_value(
        &mut self,
        v: &Spanned,
        renderer: &Renderer,
        name: &str,
    ) -> Option<(serde_json::Value, bool)> {
        match &v.value {
            Value::Str(t) => {
                if let Some(expr) = single_expression(&t.value) {
                    if let Ok(val) = renderer.evaluate(expr) {
                        if !val.is_string() {
                            let sensitive = renderer
                                .render(&t.value, name)
                                .map(|r| r.sensitive)
                                .unwrap_or(false);
                            return Some((val, sensitive));
                        }
                    }
                }
                match renderer.render(&t.value, name) {
                    Ok(r) => Some((serde_json::Value::String(r.value), r.sensitive)),
                    Err(e) => {
                        self.error(
                            v.span.clone(),
                            format!("in {name}: {}", e.message()),
                            e.help(),
                        );
                        None
                    }
                }
            }
            other => match super::to_json(other) {
                Some(j) => Some((j, false)),
                None => {
                    self.error(v.span.clone(), "a date is no module input", None);
                    None
                }
            },
        }
    }

    /// The `[params]` of a module file (errors located in it).
    fn params(&mut self, entries: &[Entry]) -> Vec<Param> {
        let mut out = Vec::new();
        let Some(e) = entries.iter().find(|e| e.key == "params") else {
            return out;
        };
        let Value::Table(ps) = &e.value.value else {
            self.error(e.value.span.clone(), "[params] must be a table", None);
            return out;
        };
        for p in ps {
            let Value::Table(fields) = &p.value.value else {
                self.error(
                    p.value.span.clone(),
                    format!("param `{}` must be a table", p.key),
                    Some(format!(
                        "{} = {{ type = \"string\", default = \"…\" }}",
                        p.key
                    )),
                );
                continue;
            };
            let mut param = Param {
                name: p.key.clone(),
                ty: "string",
                default: None,
                secret: false,
                doc: None,
            };
            for f in fields {
                match (f.key.as_str(), &f.value.value) {
                    ("type", Value::Str(t)) => match TYPES.iter().find(|x| **x == t.value) {
                        Some(x) => param.ty = x,
                        None => self.error(
                            f.value.span.clone(),
                            format!("param `{}`: unknown type {:?}", p.key, t.value),
                            Some(format!("types are {}", TYPES.join(", "))),
                        ),
                    },
                    ("default", v) => param.default = super::to_json(v),
                    ("secret", Value::Bool(b)) => param.secret = *b,
                    ("doc", Value::Str(d)) => param.doc = Some(d.value.clone()),
                    (k, _) => self.error(
                        f.key_span.clone(),
                        format!("param `{}`: unknown or mistyped field `{k}`", p.key),
                        Some("a param takes type, default, secret and doc".into()),
                    ),
                }
            }
            if let Some(d) = &param.default {
                if type_of(d) != param.ty {
                    self.error(
                        p.value.span.clone(),
                        format!(
                            "param `{}`: its default is {}, its type {}",
                            p.key,
                            a(type_of(d)),
                            param.ty
                        ),
                        None,
                    );
                }
            }
            out.push(param);
        }
        out
    }

    /// Inside a module, `requires` and `notify` name its own resources.
    fn check_local_references(&mut self, decls: &[Decl]) {
        if decls
            .iter()
            .all(|d| d.requires.is_empty() && d.notify.is_empty())
        {
            return;
        }
        let here: std::collections::HashSet<&str> =
            decls.iter().map(|d| d.address.as_str()).collect();
        for d in decls {
            for (t, span) in d.requires.iter().chain(&d.notify) {
                if !here.contains(t.as_str()) {
                    let shown = t.strip_prefix(&self.prefix).unwrap_or(t);
                    let local: Vec<&str> = decls
                        .iter()
                        .map(|d| d.address.strip_prefix(&self.prefix).unwrap_or(&d.address))
                        .collect();
                    self.error(
                        span.clone(),
                        format!(
                            "{} names `{shown}`, which is not in this module",
                            d.address.strip_prefix(&self.prefix).unwrap_or(&d.address)
                        ),
                        nearest(shown, local.iter().copied())
                            .map(|n| format!("did you mean `{n}`?"))
                            .or_else(|| {
                                Some(
                                    "inside a module, requires and notify name its own resources"
                                        .into(),
                                )
                            }),
                    );
                }
            }
        }
    }
}
