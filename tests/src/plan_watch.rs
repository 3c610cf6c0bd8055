//! Every `tend plan` the suite runs is watched: under `strace -f`, each successful write-side
//! system call (a file opened for writing or created, a mkdir, rename, unlink, rmdir, link,
//! symlink, chmod, chown, truncate) of the plan and of every process it starts must land in the
//! plan's own temporary directory (`TMPDIR`), `/dev`, or a `--report`/`--metrics` file the test
//! asked for. Anything else fails the test that ran the plan: "plan cannot write" is proven on
//! every test, not argued.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An environment entry naming one more path the plan's children may write: a test's own
/// instrument (a logging stand-in for a tool on PATH). tend never reads it.
pub const ALLOW: &str = "TEND_PLAN_WATCH_ALLOW";

/// Syscalls that change the filesystem.
pub const TRACED: &str = "trace=open,openat,openat2,creat,mkdir,mkdirat,rename,renameat,renameat2,\
unlink,unlinkat,rmdir,link,linkat,symlink,symlinkat,chmod,fchmod,fchmodat,chown,fchown,lchown,\
fchownat,truncate,ftruncate";

/// Run `tend ARGS` (a plan) under strace; returns its output and the writes it made outside what
/// a plan may touch.
pub fn run(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> (std::process::Output, Vec<String>) {
    let scratch = tempfile::Builder::new()
        .prefix("tend-plan-watch-")
        .tempdir()
        .expect("tempdir");
    let tmp = scratch.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    let trace = scratch.path().join("trace");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-y", "-s", "4096", "-e", TRACED, "-o"])
        .arg(&trace)
        .arg("--")
        .arg(bin)
        .args(args)
        .env("NO_COLOR", "1")
        .env("TMPDIR", &tmp)
        .env_remove("RUST_LOG");
    let mut extra = Vec::new();
    for (k, v) in env {
        if *k == ALLOW {
            extra.push(PathBuf::from(v));
        } else {
            cmd.env(k, v);
        }
    }
    let out = cmd.output().expect("run strace (Debian package strace)");
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let mut allowed: Vec<PathBuf> = vec![tmp.clone(), "/dev".into(), "/proc".into()];
    allowed.extend(extra);
    for (i, a) in args.iter().enumerate() {
        if matches!(*a, "--report" | "--metrics") {
            if let Some(p) = args.get(i + 1) {
                let p = std::path::absolute(p).unwrap_or_else(|_| PathBuf::from(p));
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                if let (Some(dir), Some(name)) = (p.parent(), name) {
                    allowed.push(dir.join(format!(".tend-tmp.{name}")));
                }
                allowed.push(p);
            }
        }
    }
    let violations = writes(&text)
        .into_iter()
        .filter(|(_, path)| !allowed.iter().any(|a| Path::new(path).starts_with(a)))
        .map(|(line, _)| line)
        .collect();
    (out, violations)
}

/// The write-side calls of a trace (of a plan run elsewhere: in a container) outside `allowed`.
pub fn violations(trace: &str, allowed: &[PathBuf]) -> Vec<String> {
    writes(trace)
        .into_iter()
        .filter(|(_, path)| !allowed.iter().any(|a| Path::new(path).starts_with(a)))
        .map(|(line, _)| line)
        .collect()
}

/// Successful write-side calls of a trace: (the line, the absolute path written).
fn writes(trace: &str) -> Vec<(String, String)> {
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for raw in trace.lines() {
        let (pid, rest) = raw.split_once(' ').unwrap_or(("", raw));
        // strace pads the pid column.
        let rest = rest.trim_start();
        let line = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.to_string(), head.to_string());
            continue;
        } else if let Some(tail) = rest.strip_prefix("<... ") {
            // `<... openat resumed>, O_RDONLY) = 3</x>`
            let Some((_, after)) = tail.split_once(" resumed>") else {
                continue;
            };
            match pending.remove(pid) {
                Some(head) => format!("{head}{after}"),
                None => continue,
            }
        } else {
            rest.to_string()
        };
        let Some((call, ret)) = line.rsplit_once(") = ") else {
            continue;
        };
        if ret.starts_with('-') || ret.starts_with('?') {
            continue;
        }
        let Some((name, args)) = call.split_once('(') else {
            continue;
        };
        let path = match name {
            "open" | "openat" | "openat2" | "creat" => {
                let writing = name == "creat"
                    || ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"]
                        .iter()
                        .any(|f| args.contains(f));
                if !writing {
                    continue;
                }
                // With -y the returned fd carries the path opened: `= 3</abs/path>`.
                fd_path(ret).or_else(|| at_path(name, args))
            }
            "fchmod" | "fchown" | "ftruncate" => fd_path(args),
            "mkdir" | "mkdirat" | "rename" | "renameat" | "renameat2" | "unlink" | "unlinkat"
            | "rmdir" | "link" | "linkat" | "symlink" | "symlinkat" | "chmod" | "fchmodat"
            | "chown" | "lchown" | "fchownat" | "truncate" => at_path(name, args),
            _ => None,
        };
        if let Some(p) = path {
            out.push((raw.to_string(), p));
        }
    }
    out
}

/// The path in `N</path>` at the start of `s`.
fn fd_path(s: &str) -> Option<String> {
    let start = s.find('<')?;
    let end = s[start..].find('>')?;
    Some(s[start + 1..start + end].to_string())
}

/// The path a path-taking call acts on: its first quoted argument, made absolute with the
/// directory fd before it (`AT_FDCWD</cwd>` or `3</dir>`) when relative. For `symlink*` and
/// `link*`, the new name (the second).
fn at_path(name: &str, args: &str) -> Option<String> {
    let quoted: Vec<&str> = args.split('"').skip(1).step_by(2).collect();
    let wanted =
        if name.starts_with("symlink") || name.starts_with("link") || name.starts_with("rename") {
            quoted.get(1).or(quoted.first())
        } else {
            quoted.first()
        }?;
    if wanted.starts_with('/') {
        return Some((*wanted).to_string());
    }
    // The directory fd that precedes the wanted string.
    let before = &args[..args.find(&format!("\"{wanted}\""))?];
    let dir = before.rfind('<').and_then(|i| {
        let end = before[i..].find('>')?;
        Some(before[i + 1..i + end].to_string())
    })?;
    Some(format!("{dir}/{wanted}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_side_calls_are_found_with_their_paths() {
        let trace = "\
100  openat(AT_FDCWD</w>, \"/etc/motd\", O_RDONLY|O_CLOEXEC) = 3</etc/motd>
100  openat(AT_FDCWD</w>, \"x.txt\", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 4</w/x.txt>
100 openat(3</srv>, \"new\", O_RDONLY|O_CREAT|O_EXCL, 0600 <unfinished ...>
101 mkdirat(AT_FDCWD</w>, \"d\", 0755) = 0
100 <... openat resumed>) = 5</srv/new>
101 unlinkat(3</srv>, \"gone\", 0) = -1 ENOENT (No such file or directory)
101 renameat(3</srv>, \".tmp\", 3</srv>, \"f\") = 0
101 fchmod(6</srv/f>, 0644) = 0
";
        let got: Vec<String> = writes(trace).into_iter().map(|(_, p)| p).collect();
        assert_eq!(got, ["/w/x.txt", "/w/d", "/srv/new", "/srv/f", "/srv/f"]);
    }
}
