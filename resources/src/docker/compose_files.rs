//! What a compose project is made of on disk, read without running compose: which files compose
//! would load, the project name it would use, the `env_file`s the services reference, and the
//! `.env` keys. From these comes the fingerprint that lets a no-op check skip compose entirely.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use yaml_rust2::{Yaml, YamlLoader};

use crate::dotenv;
use crate::host::Probe;
use crate::resource::ResourceError;

/// Compose's own search order when no `-f` is given (v2 reads `compose.yaml` first; v1 only the
/// `docker-compose.*` names), each with the override file compose loads beside it.
const DEFAULT_FILES: &[(&str, &[&str])] = &[
    (
        "compose.yaml",
        &["compose.override.yaml", "compose.override.yml"],
    ),
    (
        "compose.yml",
        &["compose.override.yml", "compose.override.yaml"],
    ),
    (
        "docker-compose.yaml",
        &[
            "docker-compose.override.yaml",
            "docker-compose.override.yml",
        ],
    ),
    (
        "docker-compose.yml",
        &[
            "docker-compose.override.yml",
            "docker-compose.override.yaml",
        ],
    ),
];

/// One compose project as read from disk.
#[derive(Debug)]
pub(super) struct Project {
    /// Host paths of the compose files, in the order compose merges them.
    pub files: Vec<PathBuf>,
    pub name: String,
    /// sha256 of everything compose reads: the files, `.env`, every referenced `env_file`.
    pub inputs: BTreeMap<String, String>,
    /// The keys of the env files compose interpolates from (`.env`, or the manifest's
    /// `env_files`) and their values as written (to fingerprint, never to show).
    pub env: BTreeMap<String, String>,
    /// Those env files (host paths), in the order compose reads them.
    pub env_files: Vec<PathBuf>,
    /// Services others wait for with `condition: service_completed_successfully` (Dify's
    /// `init_permissions`): run once, and exited with 0 is their converged state.
    pub one_shots: BTreeSet<String>,
    /// Each service's `depends_on` (either syntax): compose recreates a running service whose
    /// dependency it recreates, so plan must name it too.
    pub depends_on: BTreeMap<String, BTreeSet<String>>,
}

/// Read the project in `dir` (a host path). `files` are the manifest's, relative to `dir` or
/// absolute; `project` is the manifest's name for it; `env_files` its `--env-file`s (relative
/// to `dir` or absolute), `.env` when there are none.
pub(super) fn read(
    host: &Probe,
    dir: &Path,
    files: &[PathBuf],
    project: Option<&str>,
    env_files: &[PathBuf],
) -> Result<Project, ResourceError> {
    let Some(meta) = host.metadata(dir)? else {
        return Err(ResourceError::Missing(format!(
            "the compose directory {} does not exist",
            dir.display()
        )));
    };
    if !meta.is_dir() {
        return Err(ResourceError::Refused(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let mut inputs = BTreeMap::new();
    let mut env = BTreeMap::new();
    let given = !env_files.is_empty();
    let env_paths: Vec<PathBuf> = if given {
        env_files.iter().map(|f| dir.join(f)).collect()
    } else {
        vec![dir.join(".env")]
    };
    for env_path in &env_paths {
        let Some(bytes) = host.read(env_path)? else {
            // compose fails on a missing --env-file; a missing .env is fine.
            if given {
                return Err(ResourceError::Missing(format!(
                    "the env file {} does not exist",
                    env_path.display()
                )));
            }
            continue;
        };
        inputs.insert(env_path.display().to_string(), sha256(&bytes));
        let text = String::from_utf8_lossy(&bytes);
        // Values as written: enough to tell which keys changed, without evaluating anything.
        // A later file overrides an earlier one, as compose reads them.
        if let Ok(doc) = dotenv::parse::parse(&text) {
            for s in &doc.statements {
                env.insert(s.key.clone(), doc.text[s.value_range.clone()].to_string());
            }
        }
    }
    // Compose honours COMPOSE_FILE from `.env` when no -f is given; tend always passes -f, so
    // it reads the variable the way compose would have.
    let from_env: Vec<PathBuf> = env
        .get("COMPOSE_FILE")
        .map(|v| unquote(v))
        .filter(|v| !v.is_empty())
        .map(|v| {
            let sep = env
                .get("COMPOSE_PATH_SEPARATOR")
                .map(|s| unquote(s))
                .unwrap_or_else(|| ":".into());
            v.split(sep.as_str()).map(PathBuf::from).collect()
        })
        .unwrap_or_default();
    let files: Vec<PathBuf> = match (files.is_empty(), from_env.is_empty()) {
        (false, _) => files.iter().map(|f| dir.join(f)).collect(),
        (true, false) => from_env.iter().map(|f| dir.join(f)).collect(),
        (true, true) => default_files(host, dir)?,
    };
    let mut name = None;
    let mut env_files = Vec::new();
    let mut one_shots = BTreeSet::new();
    let mut depends_on: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(bytes) = host.read(f)? else {
            return Err(ResourceError::Missing(format!(
                "the compose file {} does not exist",
                f.display()
            )));
        };
        inputs.insert(f.display().to_string(), sha256(&bytes));
        let text = String::from_utf8_lossy(&bytes);
        let docs = YamlLoader::load_from_str(&text).map_err(|e| {
            ResourceError::Invalid(format!("{} is not valid YAML: {e}", f.display()))
        })?;
        let Some(doc) = docs.first() else { continue };
        if let Some(n) = doc["name"].as_str() {
            // A later file overrides the name, as compose merges.
            name = Some(n.to_string());
        }
        let base = f.parent().unwrap_or(dir);
        if let Some(services) = doc["services"].as_hash() {
            for (service_name, service) in services {
                env_files.extend(referenced_env_files(&service["env_file"], base));
                if let Some(sname) = service_name.as_str() {
                    let deps = depends_on.entry(sname.to_string()).or_default();
                    match &service["depends_on"] {
                        Yaml::Array(list) => {
                            deps.extend(list.iter().filter_map(|d| d.as_str().map(str::to_string)))
                        }
                        Yaml::Hash(map) => {
                            deps.extend(map.keys().filter_map(|d| d.as_str().map(str::to_string)))
                        }
                        _ => {}
                    }
                }
                if let Some(deps) = service["depends_on"].as_hash() {
                    for (name, how) in deps {
                        if how["condition"].as_str() == Some("service_completed_successfully") {
                            if let Some(n) = name.as_str() {
                                one_shots.insert(n.to_string());
                            }
                        }
                    }
                }
            }
        }
    }
    for f in env_files {
        let digest = match host.read(&f)? {
            Some(bytes) => sha256(&bytes),
            None => "missing".to_string(),
        };
        inputs.insert(f.display().to_string(), digest);
    }
    // Compose v2's precedence: -p, COMPOSE_PROJECT_NAME, the top-level `name`, the directory.
    let from_env = env
        .get("COMPOSE_PROJECT_NAME")
        .map(|v| unquote(v))
        .filter(|v| !v.is_empty());
    let name = match (project, from_env, name) {
        (Some(p), _, _) => p.to_string(),
        (None, Some(n), _) | (None, None, Some(n)) => n,
        (None, None, None) => {
            normalize_name(&dir.file_name().unwrap_or_default().to_string_lossy())
        }
    };
    Ok(Project {
        one_shots,
        depends_on,
        files,
        name,
        inputs,
        env,
        env_files: env_paths,
    })
}

fn default_files(host: &Probe, dir: &Path) -> Result<Vec<PathBuf>, ResourceError> {
    for (main, overrides) in DEFAULT_FILES {
        let path = dir.join(main);
        if host.metadata(&path)?.is_some() {
            let mut files = vec![path];
            for o in *overrides {
                let o = dir.join(o);
                if host.metadata(&o)?.is_some() {
                    files.push(o);
                    break;
                }
            }
            return Ok(files);
        }
    }
    Err(ResourceError::Missing(format!(
        "no compose file in {} (looked for compose.yaml, compose.yml, docker-compose.yaml, docker-compose.yml)",
        dir.display()
    )))
}

/// `env_file: a.env`, `env_file: [a.env, b.env]` or `env_file: [{path: a.env}]`.
fn referenced_env_files(value: &Yaml, base: &Path) -> Vec<PathBuf> {
    let one = |v: &Yaml| -> Option<PathBuf> {
        let p = v.as_str().or_else(|| v["path"].as_str())?;
        Some(base.join(p))
    };
    match value {
        Yaml::Array(items) => items.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

/// Compose's rule for a project name from a directory: lower case, only `a-z 0-9 _ -`.
pub(super) fn normalize_name(dir_name: &str) -> String {
    dir_name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect::<String>()
        .trim_start_matches(['_', '-'])
        .to_string()
}

/// A `.env` value as written, without its quotes (enough for names and paths).
fn unquote(v: &str) -> String {
    let t = v.trim();
    for q in ['"', '\''] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            return t[1..t.len() - 1].to_string();
        }
    }
    t.to_string()
}

pub(super) fn sha256(bytes: &[u8]) -> String {
    crate::host::sha256_hex(bytes)
}

/// One digest of many named parts, independent of how they were split.
pub(super) fn digest_of<'a>(parts: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut h = Sha256::new();
    for (k, v) in parts {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_le_bytes());
        h.update(v.as_bytes());
    }
    crate::host::hex(&h.finalize())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests prepare their sandboxes directly
mod tests {
    use super::*;

    #[test]
    fn project_names_follow_compose() {
        assert_eq!(normalize_name("Dify Docker"), "difydocker");
        assert_eq!(normalize_name("my_app-2"), "my_app-2");
        assert_eq!(normalize_name("_x"), "x");
    }

    #[test]
    fn project_name_and_files_as_compose_v2_picks_them() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let host = Probe::new(tmp.path(), tmp.path().join("state"));
        let dir = Path::new("/My Stack");
        let write = |name: &str, text: &str| {
            std::fs::create_dir_all(host.real(dir)).expect("mkdir");
            std::fs::write(host.real(&dir.join(name)), text).expect("write");
        };
        write("docker-compose.yml", "services: {}\n");
        let read = |project| read(&host, dir, &[], project, &[]).expect("reads");
        assert_eq!(
            read(None).name,
            "mystack",
            "the directory's name, normalised"
        );
        write("docker-compose.yml", "name: from-file\nservices: {}\n");
        assert_eq!(read(None).name, "from-file");
        write(".env", "COMPOSE_PROJECT_NAME=\"from-env\"\n");
        assert_eq!(read(None).name, "from-env", ".env beats the file's name");
        assert_eq!(
            read(Some("manifest")).name,
            "manifest",
            "-p beats everything"
        );
        write("docker-compose.override.yml", "services: {}\n");
        let files = read(None).files;
        assert_eq!(
            files,
            [
                dir.join("docker-compose.yml"),
                dir.join("docker-compose.override.yml")
            ]
        );
        write("a.yml", "services: {}\n");
        write("b.yml", "services:\n  x:\n    env_file: x.env\n    depends_on:\n      init:\n        condition: service_completed_successfully\n      db:\n        condition: service_healthy\n");
        write(".env", "COMPOSE_FILE=a.yml:b.yml\n");
        let p = read(None);
        assert_eq!(p.files, [dir.join("a.yml"), dir.join("b.yml")]);
        assert_eq!(
            p.inputs.get("/My Stack/x.env").map(String::as_str),
            Some("missing")
        );
    }

    #[test]
    fn env_files_in_every_spelling() {
        let doc = &YamlLoader::load_from_str(
            "services:\n  a:\n    env_file: a.env\n  b:\n    env_file: [b.env, /abs/c.env]\n  c:\n    env_file:\n      - path: d.env\n        required: false\n",
        )
        .expect("yaml")[0];
        let base = Path::new("/srv/p");
        let mut all = Vec::new();
        for s in doc["services"].as_hash().expect("services").values() {
            all.extend(referenced_env_files(&s["env_file"], base));
        }
        let all: Vec<_> = all.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            all,
            ["/srv/p/a.env", "/srv/p/b.env", "/abs/c.env", "/srv/p/d.env"]
        );
    }
}
