//! A build context: the files under a directory that `.dockerignore` lets through, with a
//! content hash (kept in an image label, so an unchanged context is never rebuilt) and the tar
//! the engine's build endpoint takes.
//!
//! `.dockerignore` follows docker's rules: one pattern a line, `#` comments, a leading `!`
//! re-includes, the last matching pattern decides, `*` and `?` stay within a path segment, `**`
//! spans any number of them, and a pattern that matches a directory excludes what it holds.
//! `Dockerfile` and `.dockerignore` are always sent, as docker sends them.

// The context is walked from the directory Probe resolved in the root, every entry by lstat
// (a link is hashed as a link, never followed), as the engine's build endpoint will read it.
#![allow(clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::resource::ResourceError;

#[derive(Debug)]
struct Pattern {
    segments: Vec<String>,
    negated: bool,
}

fn patterns(text: &str) -> Vec<Pattern> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (negated, body) = match l.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, l),
            };
            let segments = body
                .trim_start_matches('/')
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .map(str::to_string)
                .collect();
            Pattern { segments, negated }
        })
        .filter(|p| !p.segments.is_empty())
        .collect()
}

/// Whether a glob segment (`*`, `?`, `[abc]`, literals) matches a path segment.
fn segment_matches(glob: &[char], name: &[char]) -> bool {
    match (glob.first(), name.first()) {
        (None, None) => true,
        (Some('*'), _) => {
            segment_matches(&glob[1..], name)
                || (!name.is_empty() && segment_matches(glob, &name[1..]))
        }
        (Some('?'), Some(_)) => segment_matches(&glob[1..], &name[1..]),
        (Some('['), Some(c)) => match glob.iter().position(|&g| g == ']') {
            Some(end) if end > 1 => {
                let class = &glob[1..end];
                let (negate, class) = match class.first() {
                    Some('^') | Some('!') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= *c && *c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == *c;
                        i += 1;
                    }
                }
                hit != negate && segment_matches(&glob[end + 1..], &name[1..])
            }
            _ => glob[0] == *c && segment_matches(&glob[1..], &name[1..]),
        },
        (Some('\\'), Some(c)) if glob.len() > 1 => {
            glob[1] == *c && segment_matches(&glob[2..], &name[1..])
        }
        (Some(g), Some(c)) => g == c && segment_matches(&glob[1..], &name[1..]),
        _ => false,
    }
}

fn path_matches(glob: &[String], path: &[&str]) -> bool {
    match glob.first() {
        None => path.is_empty(),
        Some(g) if g == "**" => {
            path_matches(&glob[1..], path) || (!path.is_empty() && path_matches(glob, &path[1..]))
        }
        Some(g) => {
            let Some(first) = path.first() else {
                return false;
            };
            let g: Vec<char> = g.chars().collect();
            let n: Vec<char> = first.chars().collect();
            segment_matches(&g, &n) && path_matches(&glob[1..], &path[1..])
        }
    }
}

/// Whether `.dockerignore` excludes `rel` (a path relative to the context, `/`-separated).
fn excluded(patterns: &[Pattern], rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    let mut out = false;
    for p in patterns {
        // The pattern matches the path or one of its parent directories.
        let hit = (1..=parts.len()).any(|n| path_matches(&p.segments, &parts[..n]));
        if hit {
            out = !p.negated;
        }
    }
    out
}

/// One file of the context.
#[derive(Debug)]
pub(super) struct Entry {
    pub rel: String,
    pub real: PathBuf,
    pub mode: u32,
    /// The target of a symbolic link.
    pub link: Option<PathBuf>,
}

/// The files docker would send, sorted by path.
pub(super) fn files(dir: &Path, dockerfile: &str) -> Result<Vec<Entry>, ResourceError> {
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(t) => patterns(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(crate::HostError::new("read", dir.join(".dockerignore"), e).into()),
    };
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|e| crate::HostError::new("list", &d, e))?;
        for item in rd {
            let item = item.map_err(|e| crate::HostError::new("list", &d, e))?;
            let real = item.path();
            let rel = real
                .strip_prefix(dir)
                .unwrap_or(&real)
                .to_string_lossy()
                .into_owned();
            let always = rel == dockerfile || rel == ".dockerignore";
            let meta = std::fs::symlink_metadata(&real)
                .map_err(|e| crate::HostError::new("stat", &real, e))?;
            if meta.is_dir() {
                // A directory is walked even when excluded: a later `!` may re-include inside it.
                stack.push(real);
                continue;
            }
            if !always && excluded(&ignore, &rel) {
                continue;
            }
            let link = if meta.file_type().is_symlink() {
                Some(
                    std::fs::read_link(&real)
                        .map_err(|e| crate::HostError::new("read", &real, e))?,
                )
            } else if meta.is_file() {
                None
            } else {
                continue; // sockets, fifos: docker skips them too
            };
            out.push(Entry {
                rel,
                real,
                mode: meta.permissions().mode() & 0o7777,
                link,
            });
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// sha256 over every entry's path, mode and content (or link target).
pub(super) fn hash(entries: &[Entry], extra: &[(&str, &str)]) -> Result<String, ResourceError> {
    let mut h = Sha256::new();
    for (k, v) in extra {
        h.update(format!("{k}={v}\0").as_bytes());
    }
    for e in entries {
        h.update(format!("{}\0{:o}\0", e.rel, e.mode).as_bytes());
        match &e.link {
            Some(target) => h.update(target.to_string_lossy().as_bytes()),
            None => {
                let bytes = std::fs::read(&e.real)
                    .map_err(|x| crate::HostError::new("read", &e.real, x))?;
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
        }
        h.update([0]);
    }
    Ok(crate::host::hex(&h.finalize()))
}

/// The context as a tar archive (times zeroed: the content hash is the identity).
pub(super) fn tar(entries: &[Entry]) -> Result<Vec<u8>, ResourceError> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(e.mode);
        header.set_mtime(0);
        let io = |x: std::io::Error| crate::HostError::new("archive", &e.real, x);
        match &e.link {
            Some(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                b.append_link(&mut header, &e.rel, target).map_err(io)?;
            }
            None => {
                let bytes = std::fs::read(&e.real).map_err(io)?;
                header.set_size(bytes.len() as u64);
                header.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut header, &e.rel, bytes.as_slice())
                    .map_err(io)?;
            }
        }
    }
    b.into_inner()
        .map_err(|e| ResourceError::Failed(format!("cannot make the build context: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(ignore: &str, rel: &str) -> bool {
        excluded(&patterns(ignore), rel)
    }

    #[test]
    fn dockerignore_rules() {
        assert!(ex("*.log", "a.log"));
        assert!(!ex("*.log", "dir/a.log"), "* stays within a segment");
        assert!(ex("**/*.log", "dir/sub/a.log"));
        assert!(
            ex("node_modules", "node_modules/x/y.js"),
            "a directory excludes its contents"
        );
        assert!(ex("/build", "build/out"));
        assert!(!ex("*.md\n!README.md", "README.md"), "! re-includes");
        assert!(
            ex("!README.md\n*.md", "README.md"),
            "the last match decides"
        );
        assert!(ex("file?.txt", "file1.txt"));
        assert!(ex("[a-c].txt", "b.txt"));
        assert!(!ex("[a-c].txt", "d.txt"));
        assert!(!ex("# comment\n", "# comment"));
    }
}
