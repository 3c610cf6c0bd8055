//! Strings in a manifest are MiniJinja templates over `vars` (also visible by their bare names),
//! `facts` and the `secret(name, len)` helper. Undefined names are errors that name the variable
//! and suggest the nearest defined one, never an empty string.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::interpolate::{self, Plain};
use minijinja::{Environment, UndefinedBehavior};
use tend_resources::spec::{nearest, Text};

use crate::secrets::SecretStore;

/// Names a template may use besides the context: the helpers and MiniJinja's own globals.
const GLOBALS: &[&str] = &[
    "secret",
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
    "self",
    "super",
];

/// Renders a manifest's strings (MiniJinja) over its variables, facts, `data` and `secret()`.
pub struct Renderer {
    env: std::sync::OnceLock<Environment<'static>>,
    /// What `secret()` reads, handed to the environment when it is set up.
    secrets: Arc<SecretStore>,
    context: serde_json::Map<String, serde_json::Value>,
    used_secret: Arc<AtomicBool>,
    /// Variables whose value came from a secret: a template that uses one is sensitive too.
    sensitive_vars: std::collections::BTreeSet<String>,
    /// `each` (`key`, `value`) while the instances of a `for_each` render: as set, and the
    /// whole context with it as the engine takes it (built once per instance, not per string).
    each: std::sync::Mutex<Option<Each>>,
    /// `context` as the template engine takes it, converted once (not per render: a `for_each`
    /// of 1,000 over a 1,000-element list would convert the list a million times).
    engine_context: std::sync::OnceLock<minijinja::Value>,
    /// Every template source rendered so far, by the key the engine caches its compiled form
    /// under: the 1,000 instances of a `for_each` share their strings' sources, compiled once.
    compiled: Arc<std::sync::Mutex<Compiled>>,
    /// Where `{% include %}` / `{% import %}` find template files: the directory of the
    /// manifest (or module) whose strings this renders, and the top manifest's directory they
    /// must stay inside.
    includes: Option<(PathBuf, PathBuf)>,
}

/// Template sources by key, and by source what is known of it.
#[derive(Default)]
struct Compiled {
    sources: std::collections::HashMap<String, String>,
    keys: std::collections::HashMap<String, Source>,
}

/// One template source: the key the engine knows it by, the names it uses (known once
/// compiled), and its form when it only pastes names ([`interpolate`]).
struct Source {
    key: String,
    names: Option<Names>,
    plain: Option<Arc<Plain>>,
}

/// One `for_each` instance's `each` (`key`, `value`), and the context its strings render in
/// (built on the first).
struct Each {
    value: minijinja::Value,
    context: Option<minijinja::Value>,
}

/// The names a compiled source uses, shared by every render of it.
type Names = Arc<Vec<String>>;

/// Instructions one template may run: nested loops over `range` would otherwise hang even
/// `tend check`. Real manifests use a few hundred.
pub const FUEL: u64 = 5_000_000;
/// Longest rendered string.
pub const MAX_RENDERED: usize = 16 << 20;

/// Quote for a POSIX shell: safe words as they are, anything else in single quotes.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl Renderer {
    /// A renderer with nothing defined yet, taking `secret()` from `secrets`.
    pub fn new(secrets: Arc<SecretStore>) -> Renderer {
        Renderer {
            env: std::sync::OnceLock::new(),
            secrets,
            context: serde_json::Map::new(),
            used_secret: Arc::new(AtomicBool::new(false)),
            sensitive_vars: Default::default(),
            each: std::sync::Mutex::new(None),
            engine_context: std::sync::OnceLock::new(),
            compiled: Default::default(),
            includes: None,
        }
    }

    /// Strings that use `name` (a secret data key's last part) are sensitive.
    pub fn mark_sensitive(&mut self, name: &str) {
        self.sensitive_vars.insert(name.to_string());
    }

    /// Set (or clear) `each` for the strings of one `for_each` instance: its key and value.
    pub fn set_each(&self, each: Option<(&str, &minijinja::Value)>) {
        if let Ok(mut e) = self.each.lock() {
            *e = each.map(|(key, value)| Each {
                value: minijinja::context! { key => key, value => value.clone() },
                context: None,
            });
        }
    }

    /// What templates see: the variables, facts and helpers, and `each` in an instance.
    fn context_value(&self) -> minijinja::Value {
        let base = || {
            self.engine_context
                .get_or_init(|| minijinja::Value::from_serialize(&self.context))
                .clone()
        };
        let Ok(mut each) = self.each.lock() else {
            return base();
        };
        match each.as_mut() {
            Some(e) => e
                .context
                .get_or_insert_with(|| {
                    minijinja::context! {
                        each => e.value.clone(),
                        ..base()
                    }
                })
                .clone(),
            None => base(),
        }
    }

    /// The value of one expression as templates hold it (a `for_each`'s list is iterated as it
    /// is, not converted).
    pub fn evaluate_value(&self, expr: &str) -> Result<minijinja::Value, RenderError> {
        self.eval(expr)
    }

    /// The value of one expression (`data.sites`, `vars.admins`), typed: a list stays a list.
    pub fn evaluate(&self, expr: &str) -> Result<serde_json::Value, RenderError> {
        let v = self.eval(expr)?;
        serde_json::to_value(&v).map_err(|e| RenderError::Failed(e.to_string()))
    }

    /// One expression, every name it uses defined, evaluated.
    fn eval(&self, expr: &str) -> Result<minijinja::Value, RenderError> {
        if closes_a_template(expr) {
            return Err(RenderError::Syntax("`}}` outside a string".into()));
        }
        let e = self
            .env()
            .compile_expression(expr)
            .map_err(|e| RenderError::Syntax(describe(&e)))?;
        self.all_defined(&e.undeclared_variables(true))?;
        e.eval(self.context_value())
            .map_err(|e| RenderError::Failed(describe(&e)))
    }

    /// The template engine, set up on the first template: a manifest of plain strings (most
    /// of a large one) never pays for it.
    fn env(&self) -> &Environment<'static> {
        self.env.get_or_init(|| {
            let mut env = Environment::new();
            env.set_undefined_behavior(UndefinedBehavior::Strict);
            env.set_keep_trailing_newline(true);
            env.set_fuel(Some(FUEL));
            // The engine compiles each source once and keeps it (`render`); its keys are ours
            // (a control character no manifest string can name in `{% include %}`).
            let compiled = self.compiled.clone();
            let includes = self.includes.clone();
            env.set_loader(move |key| {
                if key.starts_with('\u{1}') {
                    return Ok(compiled
                        .lock()
                        .ok()
                        .and_then(|c| c.sources.get(key).cloned()));
                }
                // `{% include "snippets/x.j2" %}`: a file beside the including manifest.
                match &includes {
                    Some((dir, top)) => include_file(dir, top, key).map(Some).map_err(|why| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::TemplateNotFound,
                            format!("template {key:?}: {why}"),
                        )
                    }),
                    None => Ok(None),
                }
            });
            // Facts and vars pasted into an `exec` shell string must be quoted:
            // `{{ x | shell_quote }}`.
            env.add_filter("shell_quote", |v: String| shell_quote(&v));
            let flag = self.used_secret.clone();
            let secrets = self.secrets.clone();
            env.add_function("secret", move |name: String, len: Option<usize>| {
                flag.store(true, Ordering::SeqCst);
                secrets
                    .get(&name, len.unwrap_or(32))
                    .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e))
            });
            env
        })
    }

    /// Let `{% include %}` and `{% import %}` read template files from `dir` (relative paths,
    /// never leaving `top`). Before the first render.
    pub fn set_includes(&mut self, dir: PathBuf, top: PathBuf) {
        self.includes = Some((dir, top));
    }

    /// Make `name` visible to templates.
    pub fn set(&mut self, name: &str, value: serde_json::Value) {
        self.context.insert(name.to_string(), value);
        self.engine_context = std::sync::OnceLock::new();
        if let Ok(Some(each)) = self.each.get_mut().map(Option::as_mut) {
            each.context = None;
        }
    }

    /// Whether `name` is defined.
    pub fn has(&self, name: &str) -> bool {
        self.context.contains_key(name)
    }

    /// `Err` naming the first (in sorted order) of `names` that is not defined, with the
    /// nearest defined name as a suggestion.
    fn all_defined<'n>(
        &self,
        names: impl IntoIterator<Item = &'n String>,
    ) -> Result<(), RenderError> {
        match names.into_iter().filter(|path| !self.defined(path)).min() {
            Some(name) => Err(RenderError::Undefined {
                suggestion: self.suggest(name),
                name: name.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The top-level names a template refers to (for ordering variables).
    pub fn references(&self, source: &str) -> Result<Vec<String>, String> {
        let tmpl = self
            .env()
            .template_from_str(source)
            .map_err(|e| describe(&e))?;
        Ok(tmpl.undeclared_variables(true).into_iter().collect())
    }

    fn defined(&self, path: &str) -> bool {
        let mut parts = path.split('.');
        let Some(first) = parts.next() else {
            return true;
        };
        if GLOBALS.contains(&first) {
            return true;
        }
        if first == "each" {
            if let Some(each) = self.each.lock().ok().as_deref().and_then(Option::as_ref) {
                let mut value = each.value.clone();
                for p in parts {
                    match value.get_attr(p) {
                        Ok(v) if !v.is_undefined() => value = v,
                        _ => return false,
                    }
                }
                return true;
            }
        }
        let Some(mut value) = self.context.get(first) else {
            return false;
        };
        for p in parts {
            match value.get(p) {
                Some(v) => value = v,
                None => return false,
            }
        }
        true
    }

    /// A suggestion for an undefined dotted name.
    pub fn suggest(&self, path: &str) -> Option<String> {
        let (parent, last) = match path.rsplit_once('.') {
            Some((p, l)) => (Some(p), l),
            None => (None, path),
        };
        let candidates: Vec<String> = match parent {
            None => self.context.keys().cloned().collect(),
            Some(p) => {
                let mut v = self.context.get(p.split('.').next()?)?;
                for part in p.split('.').skip(1) {
                    v = v.get(part)?;
                }
                v.as_object()?.keys().cloned().collect()
            }
        };
        let near = nearest(last, candidates.iter().map(String::as_str))?;
        Some(match parent {
            Some(p) => format!("{p}.{near}"),
            None => near.to_string(),
        })
    }

    /// Render one string. Strings without template syntax are returned as they are.
    pub fn render(&self, source: &str, name: &str) -> Result<Text, RenderError> {
        self.render_named(source, &|| name.to_string())
    }

    /// [`Renderer::render`], the field's name made only when a mistake is said under it.
    pub fn render_named(
        &self,
        source: &str,
        name: &dyn Fn() -> String,
    ) -> Result<Text, RenderError> {
        if !is_template(source) {
            return Ok(Text {
                value: source.to_string(),
                sensitive: false,
            });
        }
        let value = match self.render_compiled(source) {
            Some(Ok(v)) => v,
            // Any mistake is said by a fresh compile under the field's name, as the operator
            // reads it (the cached one is known by an internal key).
            Some(Err(())) | None => {
                let name = name();
                let tmpl = self
                    .env()
                    .template_from_named_str(&name, source)
                    .map_err(|e| RenderError::Syntax(describe(&e)))?;
                self.all_defined(&tmpl.undeclared_variables(true))?;
                self.used_secret.store(false, Ordering::SeqCst);
                tmpl.render(self.context_value())
                    .map_err(|e| RenderError::Failed(describe(&e)))?
            }
        };
        if value.len() > MAX_RENDERED {
            return Err(RenderError::Failed(format!(
                "renders to {} bytes, more than the {MAX_RENDERED} tend accepts",
                value.len()
            )));
        }
        // Sensitivity is a taint: a string built from a secret, directly or through a variable
        // that holds one, is sensitive.
        let tainted = !self.sensitive_vars.is_empty() && {
            // Lexically, on purpose: the static analysis loses names behind slices and filters
            // (`vars.db[:4]`), and a false "sensitive" only hides a diff. `vars` as a whole may
            // reach any of them.
            let words: std::collections::BTreeSet<&str> = source
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .collect();
            words.contains("vars")
                || self
                    .sensitive_vars
                    .iter()
                    .any(|v| words.contains(v.as_str()))
        };
        Ok(Text {
            value,
            sensitive: tainted || self.used_secret.load(Ordering::SeqCst),
        })
    }

    /// `source` rendered through the engine's cache of compiled templates: `None` when it does
    /// not compile, `Some(Err(()))` when it names something undefined or fails to render (the
    /// caller says why).
    fn render_compiled(&self, source: &str) -> Option<Result<String, ()>> {
        let (key, known, plain) = {
            let mut c = self.compiled.lock().ok()?;
            match c.keys.get(source) {
                Some(s) => (s.key.clone(), s.names.clone(), s.plain.clone()),
                None => {
                    let key = format!("\u{1}{}", c.keys.len());
                    let plain = interpolate::parse(source).map(Arc::new);
                    c.sources.insert(key.clone(), source.to_string());
                    c.keys.insert(
                        source.to_string(),
                        Source {
                            key: key.clone(),
                            names: None,
                            plain: plain.clone(),
                        },
                    );
                    (key, None, plain)
                }
            }
        };
        if let Some(text) = plain.and_then(|p| p.render(&self.context_value())) {
            self.used_secret.store(false, Ordering::SeqCst);
            return Some(Ok(text));
        }
        let tmpl = self.env().get_template(&key).ok()?;
        let names = match known {
            Some(n) => n,
            None => {
                let n: Names = Arc::new(tmpl.undeclared_variables(true).into_iter().collect());
                if let Ok(mut c) = self.compiled.lock() {
                    if let Some(entry) = c.keys.get_mut(source) {
                        entry.names = Some(n.clone());
                    }
                }
                n
            }
        };
        if self.all_defined(names.iter()).is_err() {
            return Some(Err(()));
        }
        self.used_secret.store(false, Ordering::SeqCst);
        Some(tmpl.render(self.context_value()).map_err(|_| ()))
    }

    /// Evaluate a `when` expression.
    pub fn truthy(&self, expr: &str) -> Result<bool, RenderError> {
        Ok(self.eval(expr)?.is_true())
    }
}

/// Whether `expr` holds a `}}` that MiniJinja would read as the end of `{{ … }}`. MiniJinja
/// (2.24) reads a standalone expression as the inside of `{{ … }}`, and one that ends it early
/// and goes on (`app }}/a`) panics its lexer ("empty lexer stack") instead of failing: found by
/// the `manifest` fuzz target. The scan follows MiniJinja's lexer: strings run to the same
/// quote, a backslash escaping one byte; `(`, `[`, `{` open and `)`, `]`, `}` close, the count
/// free to go below zero; `}}` ends the expression only at a count of zero (so a dict in a dict,
/// `{'a': {'b': 1}}`, does not). A `when` reaches this rendered, like every string: its own
/// `{{ … }}` (`when = "{{ debug }}"`) are gone by then.
fn closes_a_template(expr: &str) -> bool {
    let b = expr.as_bytes();
    let mut depth: isize = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'}' if depth == 0 && b.get(i + 1) == Some(&b'}') => return true,
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Why a string did not render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// It is not a valid template.
    Syntax(String),
    /// It uses a name nothing defines.
    Undefined {
        /// The name.
        name: String,
        /// The nearest defined name.
        suggestion: Option<String>,
    },
    /// Rendering it failed (a filter's error, too much output).
    Failed(String),
    /// Variables that need each other.
    Cycle(String),
}

impl RenderError {
    /// What went wrong, for the error line.
    pub fn message(&self) -> String {
        match self {
            RenderError::Syntax(m) => format!("bad template: {m}"),
            RenderError::Undefined { name, .. } => format!("undefined variable `{name}`"),
            RenderError::Failed(m) => format!("template failed: {m}"),
            RenderError::Cycle(c) => format!("variables refer to each other in a cycle: {c}"),
        }
    }
    /// What would fix it, when tend can say.
    pub fn help(&self) -> Option<String> {
        match self {
            RenderError::Undefined {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean `{s}`?")),
            RenderError::Undefined { name, .. } => {
                Some(format!("define it in [vars] or pass --var {name}=VALUE"))
            }
            RenderError::Syntax(_) => {
                Some("templates use MiniJinja syntax: {{ name }}, {% if … %}".into())
            }
            RenderError::Failed(_) => None,
            RenderError::Cycle(_) => {
                Some("a variable cannot depend on itself, directly or through others".into())
            }
        }
    }
}

/// minijinja's message without the template name and line noise.
fn describe(e: &minijinja::Error) -> String {
    let mut s = e
        .detail()
        .map_or_else(|| e.kind().to_string(), |d| format!("{}: {d}", e.kind()));
    if let Some(line) = e.line() {
        if line > 1 {
            s.push_str(&format!(" (template line {line})"));
        }
    }
    s
}

/// Variables in dependency order, each rendered with the ones it refers to.
pub fn resolve_vars(
    renderer: &mut Renderer,
    raw: &BTreeMap<String, VarSource>,
) -> Result<BTreeMap<String, serde_json::Value>, (String, RenderError)> {
    let mut done = BTreeMap::new();
    let mut stack = Vec::new();
    for name in raw.keys() {
        resolve_one(renderer, raw, name, &mut done, &mut stack)?;
    }
    Ok(done)
}

/// A variable's raw value: a template, a literal from `--var`, or a non-string TOML value.
#[derive(Debug, Clone)]
pub enum VarSource {
    /// A string to render.
    Template(String),
    /// A value taken as it is.
    Literal(serde_json::Value),
}

fn resolve_one(
    renderer: &mut Renderer,
    raw: &BTreeMap<String, VarSource>,
    name: &str,
    done: &mut BTreeMap<String, serde_json::Value>,
    stack: &mut Vec<String>,
) -> Result<(), (String, RenderError)> {
    if done.contains_key(name) {
        return Ok(());
    }
    if let Some(pos) = stack.iter().position(|n| n == name) {
        let mut cycle: Vec<String> = stack[pos..].to_vec();
        cycle.push(name.to_string());
        return Err((stack[pos].clone(), RenderError::Cycle(cycle.join(" → "))));
    }
    let value = match &raw[name] {
        VarSource::Literal(v) => v.clone(),
        VarSource::Template(src) => {
            stack.push(name.to_string());
            let refs = renderer
                .references(src)
                .map_err(|e| (name.to_string(), RenderError::Syntax(e)))?;
            for r in refs {
                let head = r.split('.').next().unwrap_or(&r);
                let dep = if head == "vars" {
                    r.split('.').nth(1).unwrap_or("")
                } else {
                    head
                };
                if raw.contains_key(dep) {
                    resolve_one(renderer, raw, dep, done, stack)?;
                }
            }
            stack.pop();
            // One `{{ expression }}` that yields a list or a table passes it on as one.
            let typed = single_expression(src)
                .and_then(|e| renderer.evaluate(e).ok())
                .filter(|v| v.is_array() || v.is_object());
            match typed {
                Some(v) => {
                    let words: std::collections::BTreeSet<&str> = src
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .collect();
                    if words.contains("secret")
                        || renderer
                            .sensitive_vars
                            .iter()
                            .any(|s| words.contains(s.as_str()))
                    {
                        renderer.sensitive_vars.insert(name.to_string());
                    }
                    v
                }
                None => {
                    let text = renderer
                        .render(src, &format!("vars.{name}"))
                        .map_err(|e| (name.to_string(), e))?;
                    if text.sensitive {
                        renderer.sensitive_vars.insert(name.to_string());
                    }
                    serde_json::Value::String(text.value)
                }
            }
        }
    };
    // A budget, cheap as the manifest is trusted: a variable is a word or a paragraph, and
    // each one is copied into `vars` as the others resolve.
    let size = json_size(&value);
    if size > MAX_VAR_BYTES {
        return Err((
            name.to_string(),
            RenderError::Failed(format!(
                "the value is {size} bytes; a variable holds at most {} MiB (put large content in a template file)",
                MAX_VAR_BYTES >> 20
            )),
        ));
    }
    let total: usize = done.values().map(json_size).sum::<usize>() + size;
    if total > MAX_VARS_BYTES {
        return Err((
            name.to_string(),
            RenderError::Failed(format!(
                "the variables hold more than {} MiB together",
                MAX_VARS_BYTES >> 20
            )),
        ));
    }
    renderer.set(name, value.clone());
    done.insert(name.to_string(), value);
    let vars: serde_json::Map<String, serde_json::Value> = done.clone().into_iter().collect();
    renderer.set("vars", serde_json::Value::Object(vars));
    Ok(())
}

/// What a value weighs against the variables' budget: a string's bytes, a list's or table's
/// serialized length.
fn json_size(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::String(s) => s.len(),
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            serde_json::to_string(v).map_or(0, |s| s.len())
        }
        _ => 0,
    }
}

/// The largest value of one variable, and of all of them together.
const MAX_VAR_BYTES: usize = 1 << 20;
const MAX_VARS_BYTES: usize = 16 << 20;

/// A template file `name` relative to `dir`, inside `top` (no `..`, no absolute path, no symlink
/// out: a pulled policy uses its own verified tree), a regular UTF-8 file of at most 16 MiB.
fn include_file(dir: &Path, top: &Path, name: &str) -> Result<String, String> {
    match super::beside::resolve(dir, top, name) {
        Ok(real) => super::beside::read(&real),
        Err(super::beside::Refused::Missing) => Err("does not exist".into()),
        Err(super::beside::Refused::Bad(why)) => Err(why),
    }
}

/// The expression of a string that is exactly one `{{ expression }}` (spaces around allowed):
/// such a string keeps the expression's type where a list or a table is wanted.
pub fn single_expression(source: &str) -> Option<&str> {
    let inner = source
        .trim()
        .strip_prefix("{{")?
        .strip_suffix("}}")?
        .trim_matches(['-', ' ', '\t']);
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%") && !inner.is_empty())
        .then_some(inner)
}

/// Whether `source` holds template syntax (`{{`, `{%` or `{#`): one scan for `{`.
pub fn is_template(source: &str) -> bool {
    let b = source.as_bytes();
    b.iter()
        .enumerate()
        .any(|(i, &c)| c == b'{' && matches!(b.get(i + 1), Some(b'{' | b'%' | b'#')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::SecretMode;

    #[test]
    fn nested_loops_run_out_of_fuel_instead_of_hanging() {
        let r = renderer();
        let err = r
            .render(
                "{% for a in range(10000) %}{% for b in range(10000) %}x{% endfor %}{% endfor %}",
                "t",
            )
            .expect_err("out of fuel");
        assert!(format!("{err:?}").contains("fuel"), "{err:?}");
    }

    #[test]
    fn a_secret_passed_through_a_variable_stays_sensitive() {
        let mut r = renderer();
        let mut raw = BTreeMap::new();
        raw.insert(
            "db".to_string(),
            VarSource::Template("{{ secret('db', 16) }}".into()),
        );
        raw.insert(
            "url".to_string(),
            VarSource::Template("pg://u:{{ db }}@h".into()),
        );
        resolve_vars(&mut r, &raw).expect("vars");
        assert!(
            r.render("{{ url | upper }}", "t")
                .expect("render")
                .sensitive
        );
        let refs = r.references("{{ vars.db[:4] }}").expect("refs");
        assert!(
            r.render("{{ vars.db[:4] }}", "t")
                .expect("render")
                .sensitive,
            "{refs:?}"
        );
        assert!(
            !r.render("plain {{ 1 + 1 }}", "t")
                .expect("render")
                .sensitive
        );
    }

    #[test]
    fn shell_quote_quotes_what_a_shell_would_read() {
        assert_eq!(shell_quote("web-1.example"), "web-1.example");
        assert_eq!(shell_quote("evil$(touch PWNED)"), "'evil$(touch PWNED)'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    fn renderer() -> Renderer {
        let store = Arc::new(SecretStore::new(
            std::path::Path::new("/nonexistent"),
            SecretMode::Ephemeral,
        ));
        let mut r = Renderer::new(store);
        r.set("facts", serde_json::json!({"os": {"id": "debian"}}));
        r
    }

    #[test]
    fn vars_refer_to_vars_in_any_order() {
        let mut r = renderer();
        let raw = BTreeMap::from([
            (
                "domain".to_string(),
                VarSource::Template("dify{{ server_id }}.hostkey.in".into()),
            ),
            ("server_id".to_string(), VarSource::Literal("42".into())),
            (
                "url".to_string(),
                VarSource::Template("https://{{ vars.domain }}/".into()),
            ),
        ]);
        let vars = resolve_vars(&mut r, &raw).expect("resolves");
        assert_eq!(vars["url"], "https://dify42.hostkey.in/");
    }

    #[test]
    fn var_cycle_is_named() {
        let mut r = renderer();
        let raw = BTreeMap::from([
            ("a".to_string(), VarSource::Template("{{ b }}".into())),
            ("b".to_string(), VarSource::Template("{{ a }}".into())),
        ]);
        let (_, err) = resolve_vars(&mut r, &raw).expect_err("cycle");
        assert_eq!(
            err.message(),
            "variables refer to each other in a cycle: a → b → a"
        );
    }

    #[test]
    fn undefined_names_suggest_the_nearest() {
        let r = renderer();
        let err = r.render("{{ facts.os.idd }}", "x").expect_err("undefined");
        assert_eq!(
            err,
            RenderError::Undefined {
                name: "facts.os.idd".into(),
                suggestion: Some("facts.os.id".into())
            }
        );
    }

    #[test]
    fn secrets_mark_the_text_sensitive() {
        let r = renderer();
        let t = r.render("pw={{ secret('db', 16) }}", "x").expect("renders");
        assert!(t.sensitive);
        assert_eq!(t.value.len(), 3 + 16);
        assert!(
            !r.render("{{ facts.os.id }}", "x")
                .expect("renders")
                .sensitive
        );
    }

    #[test]
    fn when_expressions() {
        let r = renderer();
        assert!(r.truthy("facts.os.id == 'debian'").expect("eval"));
        assert!(!r.truthy("facts.os.id == 'ubuntu'").expect("eval"));
    }

    #[test]
    fn a_when_that_closes_a_template_is_a_syntax_error_not_a_panic() {
        let r = renderer();
        // Syntax errors all; the first three panicked inside MiniJinja's lexer before the check.
        for expr in ["facts.os.id }}/a", "(a) -}} b", "a }}}", "x }}", "x) }} (y"] {
            assert!(
                matches!(r.truthy(expr), Err(RenderError::Syntax(_))),
                "{expr}"
            );
        }
        // Braces inside strings are text, whichever quote and escapes; inside brackets they
        // close brackets (`{{ x }}` is then MiniJinja's own syntax error, not a panic).
        assert!(r.truthy("'}}' == '}' ~ '}'").expect("eval"));
        assert!(r.truthy(r#""a\"}}" != 'x'"#).expect("eval"));
        assert!(r.truthy("{'a': {'b': 1}}.a.b == 1").expect("eval"));
        assert!(!closes_a_template("{{ facts.arch }}"));
        assert!(matches!(
            r.truthy("{{ facts.arch }}"),
            Err(RenderError::Syntax(_))
        ));
        assert!(!closes_a_template("x } }"));
        assert!(closes_a_template("x }}"));
    }
}
