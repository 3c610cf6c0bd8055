//! Every `tend plan` the suite runs is watched: under `strace -f`, of the plan and of every
//! process it starts,
//!
//! - each successful write-side system call (a file opened for writing or created, a mkdir,
//!   rename — both its ends —, unlink, rmdir, link, symlink, chmod, chown, truncate) must land in
//!   the plan's own temporary directory (`TMPDIR`), `/dev`, its own processes' `/proc/PID`, or a
//!   `--report`/`--metrics` file the test asked for (`/proc/sys` is a write like any other);
//! - every HTTP request written to a socket (the Docker API) must be a `GET` or `HEAD`;
//! - every D-Bus method call written to a socket (systemd) must be one that reads
//!   ([`DBUS_READS`]);
//! - every program started must be one that only reads, used as one that only reads
//!   ([`read_only_exec`]), or one the test names in [`ALLOW_EXEC`] (a guard it declared).
//!
//! Anything else fails the test that ran the plan: "plan cannot change the host" is proven on
//! every test, not argued. (TLS traffic — an ACME server — is not readable here; plan talks to
//! none.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An environment entry naming one more path the plan's children may write: a test's own
/// instrument (a logging stand-in for a tool on PATH). tend never reads it.
pub const ALLOW: &str = "TEND_PLAN_WATCH_ALLOW";

/// An environment entry naming programs (comma separated basenames) the plan may start besides
/// the read-only ones: what a test's own guards or `validate` commands run. tend never reads it.
pub const ALLOW_EXEC: &str = "TEND_PLAN_WATCH_ALLOW_EXEC";

/// Syscalls that change the filesystem, send on a socket, or start a program.
pub const TRACED: &str = "trace=open,openat,openat2,creat,mkdir,mkdirat,rename,renameat,renameat2,\
unlink,unlinkat,rmdir,link,linkat,symlink,symlinkat,chmod,fchmod,fchmodat,chown,fchown,lchown,\
fchownat,truncate,ftruncate,write,writev,sendto,sendmsg,execve";

/// D-Bus methods a plan may call: the connection's own and those that read.
pub const DBUS_READS: &[&str] = &[
    "Hello",
    "AddMatch",
    "RemoveMatch",
    "GetNameOwner",
    "Introspect",
    "Get",
    "GetAll",
    "GetUnit",
    "LoadUnit",
    "ListUnits",
    "ListUnitsFiltered",
    "ListUnitsByNames",
    "ListUnitsByPatterns",
    "ListUnitFiles",
    "ListUnitFilesByPatterns",
    "GetUnitFileState",
    "GetUnitFileLinks",
    "GetDefaultTarget",
    "GetUnitProcesses",
];

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
    let mut exec_ok = Vec::new();
    for (k, v) in env {
        if *k == ALLOW_EXEC {
            exec_ok.extend(v.split(',').map(str::to_string));
        }
    }
    cmd.env_remove(ALLOW_EXEC);
    let out = cmd.output().expect("run strace (Debian package strace)");
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let mut allowed: Vec<PathBuf> = vec![tmp.clone(), "/dev".into()];
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
    let violations = violations_allowing(&text, &allowed, &exec_ok);
    (out, violations)
}

/// The side effects of a trace (of a plan run elsewhere: in a container) outside `allowed`.
pub fn violations(trace: &str, allowed: &[PathBuf]) -> Vec<String> {
    violations_allowing(trace, allowed, &[])
}

fn violations_allowing(trace: &str, allowed: &[PathBuf], exec_ok: &[String]) -> Vec<String> {
    // The plan's own processes may write their own /proc entries (a thread's name).
    let own: Vec<PathBuf> = trace
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()))
        .map(|p| PathBuf::from(format!("/proc/{p}")))
        .collect();
    let mut out: Vec<String> = writes(trace)
        .into_iter()
        .filter(|(_, path)| {
            !allowed
                .iter()
                .chain(own.iter())
                .any(|a| Path::new(path).starts_with(a))
        })
        .map(|(line, _)| line)
        .collect();
    out.extend(socket_writes(trace));
    out.extend(
        execs(trace)
            .into_iter()
            .filter(|(argv, _)| {
                !read_only_exec(argv)
                    && !argv
                        .first()
                        .is_some_and(|p| exec_ok.iter().any(|ok| basename(p) == ok))
            })
            .map(|(_, line)| line),
    );
    out
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Whether `argv` (the program as started, then its arguments) only reads the host: a tool
/// that never writes, or one that can, used with a verb that reads.
pub fn read_only_exec(argv: &[String]) -> bool {
    let Some(program) = argv.first() else {
        return true;
    };
    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    let first_verb = |skip_opts: bool| {
        args.iter()
            .copied()
            .find(|a| !(skip_opts && a.starts_with('-')))
    };
    match basename(program) {
        // tend itself, shells that run what a test declared (each program they start is
        // checked in turn), and tools that only read.
        "tend" | "sh" | "bash" | "dash" | "dpkg-query" | "apt-cache" | "apt-config" | "getent"
        | "id" | "true" | "false" | "test" | "[" | "cat" | "grep" | "head" | "env" | "uname"
        | "ls" | "stat" | "readlink" | "sleep" | "echo" | "printf" | "sed" | "awk" | "sort"
        | "wc" | "cmp" | "diff" | "find" | "python3" | "sshd" => {
            basename(program) != "sshd" || args.contains(&"-t") || args.contains(&"-T")
        }
        "dpkg" => {
            args.iter().all(|a| {
                matches!(
                    *a,
                    "--print-architecture" | "--print-foreign-architectures" | "--version" | "-l"
                ) || a.starts_with("--compare-versions")
            }) || args.first() == Some(&"--compare-versions")
        }
        "systemctl" => {
            matches!(
                first_verb(true),
                Some(
                    "show"
                        | "is-active"
                        | "is-enabled"
                        | "is-failed"
                        | "is-system-running"
                        | "cat"
                        | "status"
                        | "list-units"
                        | "list-unit-files"
                        | "list-timers"
                        | "show-environment"
                        | "get-default"
                )
            ) || args == ["--version"]
        }
        "systemd-analyze" => matches!(first_verb(true), Some("verify" | "calendar" | "timespan")),
        "nginx" => args.contains(&"-t") || args.contains(&"-T") || args == ["-v"] || args == ["-V"],
        "ssh-keygen" => args
            .iter()
            .any(|a| matches!(*a, "-l" | "-y" | "-Y" | "-lf")),
        "gpg" => args
            .iter()
            .any(|a| matches!(*a, "--show-keys" | "--list-packets" | "--verify")),
        "openssl" => matches!(
            first_verb(false),
            Some("x509" | "verify" | "version" | "pkey")
        ),
        "git" => matches!(
            first_verb(true),
            Some("rev-parse" | "verify-commit" | "verify-tag" | "cat-file" | "ls-remote" | "log")
        ),
        // The Docker CLI and its compose plugin (started by it as
        // `docker-compose compose …`), with a verb that reads.
        "docker" | "docker-compose" => {
            let mut verb = args.iter().copied().find(|a| !a.starts_with('-'));
            if verb == Some("compose") {
                // `--project-directory DIR`, `-f FILE`, `-p NAME` take values.
                let mut it = args.iter().copied().skip_while(|a| *a != "compose").skip(1);
                verb = loop {
                    match it.next() {
                        Some(
                            "-f"
                            | "--file"
                            | "-p"
                            | "--project-name"
                            | "--project-directory"
                            | "--env-file"
                            | "--profile"
                            | "--ansi"
                            | "--progress",
                        ) => {
                            it.next();
                        }
                        Some(a) if a.starts_with('-') => {}
                        other => break other,
                    }
                };
            }
            matches!(
                verb,
                Some(
                    "config"
                        | "ps"
                        | "ls"
                        | "images"
                        | "version"
                        | "info"
                        | "inspect"
                        | "image"
                        | "logs"
                        | "docker-cli-plugin-metadata"
                )
            ) || verb.is_none()
        }
        _ => false,
    }
}

/// Programs started (successful `execve`s): (argv with the program's path first, the line).
fn execs(trace: &str) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    for raw in trace.lines() {
        let Some(at) = raw.find("execve(\"") else {
            continue;
        };
        if !raw.trim_end().ends_with(") = 0") {
            continue;
        }
        let rest = &raw[at + "execve(".len()..];
        let strings = quoted(rest);
        let Some(path) = strings.first() else {
            continue;
        };
        // The array's strings follow the path (the environment is not printed).
        let mut argv = vec![String::from_utf8_lossy(path).into_owned()];
        argv.extend(
            strings[1..]
                .iter()
                .skip(1)
                .map(|a| String::from_utf8_lossy(a).into_owned()),
        );
        out.push((argv, raw.to_string()));
    }
    out
}

/// What was sent on a socket that changes something: an HTTP request other than `GET`/`HEAD`,
/// a D-Bus method call other than [`DBUS_READS`].
fn socket_writes(trace: &str) -> Vec<String> {
    let mut out = Vec::new();
    for raw in trace.lines() {
        let rest = raw.split_once(' ').map_or(raw, |(_, r)| r).trim_start();
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        if !matches!(name, "write" | "writev" | "sendto" | "sendmsg") {
            continue;
        }
        let fd_end = args.find(',').unwrap_or(args.len());
        if !args[..fd_end].contains("socket:[") {
            continue;
        }
        let bytes: Vec<u8> = quoted(&args[fd_end..]).concat();
        for m in ["POST /", "PUT /", "DELETE /", "PATCH /"] {
            if bytes.starts_with(m.as_bytes()) {
                out.push(raw.to_string());
            }
        }
        if let Some(member) = dbus_members(&bytes)
            .into_iter()
            .find(|m| !DBUS_READS.contains(&m.as_str()))
        {
            out.push(format!("D-Bus {member}: {raw}"));
        }
    }
    out
}

/// The members of the D-Bus method calls in `bytes` (messages back to back).
fn dbus_members(mut bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while bytes.len() >= 16 && matches!(bytes[0], b'l' | b'B') {
        let le = bytes[0] == b'l';
        let u32_at = |b: &[u8], i: usize| -> usize {
            let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
            (if le {
                u32::from_le_bytes(w)
            } else {
                u32::from_be_bytes(w)
            }) as usize
        };
        let body = u32_at(bytes, 4);
        let fields = u32_at(bytes, 12);
        let header_end = 16 + fields;
        let total = header_end.div_ceil(8) * 8 + body;
        if bytes.len() < header_end {
            break;
        }
        if bytes[1] == 1 {
            // Header fields: code, signature, aligned value; the member is code 3.
            let mut i = 16;
            while i + 4 <= header_end {
                let code = bytes[i];
                let sig_len = bytes[i + 1] as usize;
                let sig = &bytes[i + 2..(i + 2 + sig_len).min(bytes.len())];
                let mut v = (i + 3 + sig_len).div_ceil(4) * 4;
                match sig {
                    b"s" | b"o" => {
                        if v + 4 > bytes.len() {
                            break;
                        }
                        let n = u32_at(bytes, v);
                        let s = &bytes[v + 4..(v + 4 + n).min(bytes.len())];
                        if code == 3 {
                            out.push(String::from_utf8_lossy(s).into_owned());
                        }
                        v += 4 + n + 1;
                    }
                    b"g" => {
                        let n = *bytes.get(v).unwrap_or(&0) as usize;
                        v += 1 + n + 1;
                    }
                    b"u" => v += 4,
                    _ => break,
                }
                i = v.div_ceil(8) * 8;
            }
        }
        if total == 0 || total > bytes.len() {
            break;
        }
        bytes = &bytes[total..];
    }
    out
}

/// The strings quoted in strace's output `s`, unescaped.
fn quoted(s: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            i += 1;
            continue;
        }
        i += 1;
        let mut cur = Vec::new();
        while i < b.len() && b[i] != b'"' {
            if b[i] == b'\\' && i + 1 < b.len() {
                i += 1;
                match b[i] {
                    b'n' => cur.push(b'\n'),
                    b't' => cur.push(b'\t'),
                    b'r' => cur.push(b'\r'),
                    b'v' => cur.push(0x0b),
                    b'f' => cur.push(0x0c),
                    b'a' => cur.push(0x07),
                    b'b' => cur.push(0x08),
                    b'x' => {
                        let hex = s.get(i + 1..i + 3).unwrap_or("0");
                        cur.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                        i += 2;
                    }
                    b'0'..=b'7' => {
                        let mut n = 0u32;
                        let mut k = 0;
                        while k < 3 && i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                            n = n * 8 + u32::from(b[i] - b'0');
                            i += 1;
                            k += 1;
                        }
                        cur.push(n as u8);
                        continue;
                    }
                    c => cur.push(c),
                }
                i += 1;
            } else {
                cur.push(b[i]);
                i += 1;
            }
        }
        i += 1;
        out.push(cur);
    }
    out
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
        // A rename takes a name away as well as making one.
        if name.starts_with("rename") {
            if let Some(p) = first_path(args) {
                out.push((raw.to_string(), p));
            }
        }
    }
    out
}

/// The first quoted path of a call's arguments, made absolute with the directory fd before it.
fn first_path(args: &str) -> Option<String> {
    absolute(args, args.split('"').nth(1)?)
}

/// `wanted` (a quoted argument of `args`) made absolute with the directory fd that precedes it
/// (`AT_FDCWD</cwd>` or `3</dir>`) when relative.
fn absolute(args: &str, wanted: &str) -> Option<String> {
    if wanted.starts_with('/') {
        return Some(wanted.to_string());
    }
    let before = &args[..args.find(&format!("\"{wanted}\""))?];
    let dir = before.rfind('<').and_then(|i| {
        let end = before[i..].find('>')?;
        Some(before[i + 1..i + end].to_string())
    })?;
    Some(format!("{dir}/{wanted}"))
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
    absolute(args, wanted)
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
        assert_eq!(
            got,
            [
                "/w/x.txt",
                "/w/d",
                "/srv/new",
                "/srv/f",
                "/srv/.tmp",
                "/srv/f"
            ]
        );
    }

    /// Run `script` with /usr/bin/python3 under the watcher; its violations.
    fn watched_python(script: &str) -> Vec<String> {
        let (out, v) = run(Path::new("/usr/bin/python3"), &["-c", script], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        v
    }

    /// Each class the watcher claims to see, caught in a real trace of a real process — and
    /// its read-only twin let through.
    #[test]
    fn the_watcher_sees_docker_api_writes_dbus_calls_and_programs_that_change_things() {
        let http = |method: &str| {
            format!(
                "import socket\ns=socket.socket(socket.AF_UNIX)\ns.connect('/var/run/docker.sock')\n\
                 s.sendall(b'{method} /v1.41/tend-watch-probe HTTP/1.1\\r\\nHost: d\\r\\n\
                 Content-Length: 0\\r\\nConnection: close\\r\\n\\r\\n')\ns.recv(64)\n"
            )
        };
        let post = watched_python(&http("POST"));
        assert_eq!(post.len(), 1, "{post:?}");
        assert!(post[0].contains("POST /v1.41/tend-watch-probe"), "{post:?}");
        assert_eq!(watched_python(&http("GET")), Vec::<String>::new());

        // A D-Bus method call written to a socket: systemd's StartUnit, then a property read.
        let dbus = |member: &str| {
            format!(
                r#"import socket, struct
def s(v): b=v.encode(); return struct.pack('<I', len(b)) + b + b'\0'
def pad(b, n): return b + b'\0' * (-len(b) % n)
f = b''
for code, sig, val in ((1, b'o', '/org/freedesktop/systemd1'), (2, b's', 'org.freedesktop.systemd1.Manager'), (3, b's', '{member}'), (6, b's', 'org.freedesktop.systemd1')):
    f = pad(f, 8) + bytes([code, 1]) + sig + b'\0' + s(val)
m = b'l\1\0\1' + struct.pack('<III', 0, 7, len(f)) + f
a, b = socket.socketpair()
a.sendall(pad(m, 8))
"#
            )
        };
        let start = watched_python(&dbus("StartUnit"));
        assert_eq!(start.len(), 1, "{start:?}");
        assert!(start[0].starts_with("D-Bus StartUnit"), "{start:?}");
        assert_eq!(watched_python(&dbus("GetUnit")), Vec::<String>::new());

        // A program that changes things, started by a shell; and one that reads.
        let (_, v) = run(Path::new("/bin/sh"), &["-c", "cp /dev/null /dev/null"], &[]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("execve(\"/usr/bin/cp\""), "{v:?}");
        let (_, v) = run(
            Path::new("/bin/sh"),
            &["-c", "dpkg-query -W dpkg >/dev/null"],
            &[],
        );
        assert_eq!(v, Vec::<String>::new());
        // What a test declares its guards run is let through.
        let (_, v) = run(
            Path::new("/bin/sh"),
            &["-c", "cp /dev/null /dev/null"],
            &[(ALLOW_EXEC, "cp")],
        );
        assert_eq!(v, Vec::<String>::new());
    }

    #[test]
    fn proc_sys_is_a_write_and_a_rename_counts_at_both_ends() {
        let trace = "\
100 openat(AT_FDCWD</>, \"/proc/sys/vm/swappiness\", O_WRONLY|O_TRUNC) = 3</proc/sys/vm/swappiness>
100 openat(AT_FDCWD</>, \"/proc/self/task/100/comm\", O_RDWR) = 4</proc/100/task/100/comm>
100 renameat2(AT_FDCWD</>, \"/etc/passwd\", AT_FDCWD</>, \"/tmp/x/moved\", 0) = 0
";
        let v = violations(trace, &[PathBuf::from("/tmp/x")]);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].contains("/proc/sys/vm/swappiness"));
        assert!(v[1].contains("/etc/passwd"));
    }

    #[test]
    fn read_only_programs_are_told_from_their_writing_verbs() {
        let argv = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        for ok in [
            "/usr/bin/systemctl show --property=ActiveState nginx.service",
            "/usr/bin/docker compose --project-directory /srv/app -p app config --format json",
            "/usr/libexec/docker/cli-plugins/docker-compose compose -p app ps -a --format json",
            "/usr/sbin/nginx -t -c /tmp/x/nginx.conf",
            "/usr/bin/dpkg --print-architecture",
            "/usr/bin/gpg --batch --quiet --with-colons --show-keys /tmp/x/key",
        ] {
            assert!(read_only_exec(&argv(ok)), "{ok}");
        }
        for bad in [
            "/usr/bin/systemctl restart nginx.service",
            "/usr/bin/docker compose -p app up -d",
            "/usr/sbin/nginx -s reload",
            "/usr/bin/dpkg -i x.deb",
            "/usr/bin/apt-get install -y curl",
            "/usr/sbin/useradd app",
            "/usr/bin/gpg --batch --import /tmp/x/key",
        ] {
            assert!(!read_only_exec(&argv(bad)), "{bad}");
        }
    }
}
