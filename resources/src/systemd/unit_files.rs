//! Enablement read from the unit files themselves, where they prove it, so that a converged
//! root with no systemd running (an image being built, a container) is checked without
//! `systemctl --root`.
//!
//! This is a fast path, never the authority: it answers only `enabled` and `masked`, and only
//! in the shapes where `systemctl is-enabled` (systemd 252's `unit_file_lookup_state`) is sure
//! to give the same word; anything else — an alias, a template, a unit in a generator or
//! transient directory, a unit found nowhere, one merely disabled — is `None`, and the caller
//! asks `systemctl`. Every read goes through the [`Probe`], so no symlink is followed here:
//! enablement links are looked at, not through.

use std::path::{Path, PathBuf};

use crate::host::Probe;

/// systemd's system search path, highest priority first (`lookup_paths_init`, with Debian's
/// `/lib` besides `/usr/lib`). The first directory holding the unit decides what it is.
const SEARCH_PATH: &[&str] = &[
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/run/systemd/generator.late",
];

/// Where an ordinary unit file lives: the administrator's and the packages' directories (not a
/// generator's, not a transient unit's, not an attached portable image's).
const ORDINARY: &[&str] = &[
    "/etc/systemd/system",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

/// Where `systemctl enable` puts its links; a link here is enablement that survives a reboot.
const PERSISTENT_CONFIG: &str = "/etc/systemd/system";

/// `Some("enabled")`, `Some("masked")` or `Some("masked-runtime")` when the files under the
/// probe's root prove that is what `systemctl --root=ROOT is-enabled UNIT` says; `None` when they
/// do not.
pub(crate) fn proven_state(host: &Probe, unit: &str) -> Option<&'static str> {
    // Template instances resolve through their template: not worth proving here.
    if unit.contains('@') || unit.contains('/') || unit.is_empty() {
        return None;
    }
    // systemctl resolves an absolute symlink among its directories differently from tend's
    // walk (inside the root): where one is, only systemctl can say.
    if !SEARCH_PATH.iter().all(|dir| no_absolute_link(host, dir)) {
        return None;
    }
    let mut found = None;
    for dir in SEARCH_PATH {
        let path = Path::new(dir).join(unit);
        let Some(meta) = host.metadata(&path).ok()? else {
            continue;
        };
        // A mask under /run lasts until the next boot: systemd's own word for it.
        let mask = if dir.starts_with("/run/") {
            "masked-runtime"
        } else {
            "masked"
        };
        if meta.file_type().is_symlink() {
            // A link to /dev/null is a mask, wherever it is; any other link is an alias or a
            // linked unit file, which systemctl must judge.
            let target = host.read_link(&path).ok()??;
            return (target == Path::new("/dev/null")).then_some(mask);
        }
        // An empty file masks too (systemd's `null_or_empty`).
        if meta.is_file() && meta.len() == 0 {
            return Some(mask);
        }
        if !meta.is_file() || !ORDINARY.contains(dir) {
            return None;
        }
        found = Some(path);
        break;
    }
    found?;
    // `find_symlinks` (systemd 252): a symlink named after the unit in a `.wants` or `.requires`
    // directory of the persistent configuration makes it `enabled`, whatever it points to. A
    // `.wants` that is itself a symlink is not read; `.upholds` does not count in 252 (later
    // versions may count it: such a unit is left to systemctl, as a disabled one is).
    let names = host.read_dir(Path::new(PERSISTENT_CONFIG)).ok()??;
    let linked = names.iter().any(|name| {
        let name = name.to_string_lossy();
        let wants = [".wants", ".requires"].iter().any(|s| name.ends_with(s));
        let dir: PathBuf = [PERSISTENT_CONFIG, &name].iter().collect();
        wants
            && matches!(host.metadata(&dir), Ok(Some(m)) if m.is_dir())
            && matches!(host.metadata(&dir.join(unit)), Ok(Some(m)) if m.file_type().is_symlink())
    });
    linked.then_some("enabled")
}

/// Whether no component of `dir` (that exists) is a symlink with an absolute target.
fn no_absolute_link(host: &Probe, dir: &str) -> bool {
    let mut prefix = PathBuf::from("/");
    for part in Path::new(dir).components().skip(1) {
        prefix.push(part);
        match host.metadata(&prefix) {
            Ok(Some(m)) if m.file_type().is_symlink() => match host.read_link(&prefix) {
                Ok(Some(target)) if target.is_relative() => {}
                _ => return false,
            },
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests prepare their sandboxes directly
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::process::Command;

    const UNIT: &str = "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n";

    /// One step of a layout.
    #[derive(Clone)]
    enum Step {
        /// `x.service` written at this directory of the root.
        Unit(&'static str),
        /// A link named `x.service` in this directory to the unit (an enablement link).
        Link(&'static str),
        /// A link at this path to /dev/null.
        Null(&'static str),
        /// An empty file at this path.
        Empty(&'static str),
        /// A directory made at this path.
        Dir(&'static str),
        /// A symlink at the first path, pointing to the second (as written).
        Symlink(&'static str, &'static str),
        /// `systemctl --root=ROOT ARGS`.
        Systemctl(&'static [&'static str]),
    }

    fn build(root: &Path, steps: &[Step]) {
        for step in steps {
            match step {
                Step::Unit(dir) => write(root, &format!("{dir}/x.service"), UNIT),
                Step::Link(dir) => {
                    symlink(
                        "/lib/systemd/system/x.service",
                        at(root, &format!("{dir}/x.service")),
                    )
                    .expect("test set-up");
                }
                Step::Null(path) => symlink("/dev/null", at(root, path)).expect("test set-up"),
                Step::Empty(path) => write(root, path, ""),
                Step::Dir(path) => std::fs::create_dir_all(root.join(path)).expect("test set-up"),
                Step::Symlink(path, target) => {
                    symlink(target, at(root, path)).expect("test set-up")
                }
                Step::Systemctl(args) => {
                    let ok = Command::new("systemctl")
                        .arg(format!("--root={}", root.display()))
                        .args(*args)
                        .output()
                        .expect("systemctl");
                    assert!(
                        ok.status.success(),
                        "systemctl {args:?}: {}",
                        String::from_utf8_lossy(&ok.stderr)
                    );
                }
            }
        }
    }

    /// Every layout of a table built with hand-made links and with `systemctl --root
    /// enable/mask/link`: wherever the fast path answers, it answers exactly what `systemctl
    /// --root is-enabled` says; where it declines, systemctl is asked. The answers it is
    /// designed to give are held too, so a fast path that declined everything would fail.
    #[test]
    fn the_fast_path_answers_only_what_systemctl_says() {
        use Step::*;
        let mut cases: Vec<(String, Vec<Step>, Option<&str>)> = Vec::new();
        let unit_dirs = [
            ("etc/systemd/system", true),
            ("lib/systemd/system", true),
            ("usr/lib/systemd/system", true),
            ("usr/local/lib/systemd/system", true),
            ("run/systemd/system", false),
            ("run/systemd/transient", false),
            ("run/systemd/generator", false),
            ("etc/systemd/system.attached", false),
        ];
        for (dir, ordinary) in unit_dirs {
            let links: [(&str, Vec<Step>, Option<&str>); 6] = [
                ("no link", vec![], None),
                (
                    "a .wants link",
                    vec![Link("etc/systemd/system/multi-user.target.wants")],
                    ordinary.then_some("enabled"),
                ),
                (
                    "a .requires link",
                    vec![Link("etc/systemd/system/basic.target.requires")],
                    ordinary.then_some("enabled"),
                ),
                (
                    "an .upholds link",
                    vec![Link("etc/systemd/system/multi-user.target.upholds")],
                    None,
                ),
                (
                    "a runtime .wants link",
                    vec![Link("run/systemd/system/multi-user.target.wants")],
                    None,
                ),
                (
                    "a .wants directory that is a symlink",
                    vec![
                        Link("srv/wants"),
                        Symlink("etc/systemd/system/multi-user.target.wants", "/srv/wants"),
                    ],
                    None,
                ),
            ];
            for (what, steps, want) in links {
                let mut all = vec![Unit(dir)];
                all.extend(steps);
                cases.push((format!("unit in /{dir}, {what}"), all, want));
            }
        }
        let mask_dirs = [
            ("etc/systemd/system", true),
            ("lib/systemd/system", true),
            ("usr/local/lib/systemd/system", true),
            ("etc/systemd/system.control", true),
            ("etc/systemd/system.attached", true),
            ("run/systemd/system", false),
            ("run/systemd/system.control", false),
            ("run/systemd/transient", false),
            ("run/systemd/generator", false),
            ("run/systemd/generator.early", false),
            ("run/systemd/system.attached", false),
        ];
        for (dir, persistent) in mask_dirs {
            let mask = if persistent {
                "masked"
            } else {
                "masked-runtime"
            };
            let path: &'static str = Box::leak(format!("{dir}/x.service").into_boxed_str());
            let base = if dir == "lib/systemd/system" {
                "usr/lib/systemd/system"
            } else {
                "lib/systemd/system"
            };
            cases.push((
                format!("a link to /dev/null in /{dir}"),
                vec![
                    Unit(base),
                    Link("etc/systemd/system/multi-user.target.wants"),
                    Null(path),
                ],
                Some(mask),
            ));
            cases.push((
                format!("an empty file in /{dir}"),
                vec![Unit(base), Empty(path)],
                Some(mask),
            ));
        }
        let more: Vec<(&str, Vec<Step>, Option<&str>)> = vec![
            (
                "a link to /dev/null in /run/systemd/generator.late, below the unit's directory",
                vec![
                    Unit("lib/systemd/system"),
                    Link("etc/systemd/system/multi-user.target.wants"),
                    Null("run/systemd/generator.late/x.service"),
                ],
                Some("enabled"),
            ),
            (
                "an empty file in /run/systemd/generator.late, below the unit's directory",
                vec![
                    Unit("lib/systemd/system"),
                    Empty("run/systemd/generator.late/x.service"),
                ],
                None,
            ),
            (
                "systemctl --runtime mask",
                vec![
                    Unit("lib/systemd/system"),
                    Systemctl(&["--runtime", "mask", "x.service"]),
                ],
                Some("masked-runtime"),
            ),
            (
                "systemctl --runtime enable",
                vec![
                    Unit("lib/systemd/system"),
                    Systemctl(&["--runtime", "enable", "x.service"]),
                ],
                None,
            ),
            (
                "systemctl enable",
                vec![
                    Unit("lib/systemd/system"),
                    Systemctl(&["enable", "x.service"]),
                ],
                Some("enabled"),
            ),
            (
                "systemctl enable, then disable",
                vec![
                    Unit("lib/systemd/system"),
                    Systemctl(&["enable", "x.service"]),
                    Systemctl(&["disable", "x.service"]),
                ],
                None,
            ),
            (
                "systemctl mask",
                vec![
                    Unit("lib/systemd/system"),
                    Systemctl(&["mask", "x.service"]),
                ],
                Some("masked"),
            ),
            (
                "systemctl enable, then mask",
                vec![
                    Unit("lib/systemd/system"),
                    Systemctl(&["enable", "x.service"]),
                    Systemctl(&["mask", "x.service"]),
                ],
                Some("masked"),
            ),
            (
                "systemctl link of a unit outside the search path",
                vec![Unit("srv"), Systemctl(&["link", "/srv/x.service"])],
                None,
            ),
            (
                "systemctl link, then enable",
                vec![
                    Unit("srv"),
                    Systemctl(&["link", "/srv/x.service"]),
                    Systemctl(&["enable", "x.service"]),
                ],
                None,
            ),
            (
                "an alias to another unit",
                vec![
                    Dir("lib/systemd/system"),
                    Symlink("lib/systemd/system/y.service", "x.service"),
                    Unit("srv"),
                    Symlink(
                        "etc/systemd/system/x.service",
                        "/lib/systemd/system/y.service",
                    ),
                    Link("etc/systemd/system/multi-user.target.wants"),
                ],
                None,
            ),
            (
                "no unit file, a .wants link",
                vec![Link("etc/systemd/system/multi-user.target.wants")],
                None,
            ),
            (
                "/etc/systemd/system an absolute symlink",
                vec![
                    Unit("srv/units"),
                    Link("srv/units/multi-user.target.wants"),
                    Symlink("etc/systemd/system", "/srv/units"),
                ],
                None,
            ),
            (
                "/etc/systemd/system a relative symlink",
                vec![
                    Unit("srv/units"),
                    Link("srv/units/multi-user.target.wants"),
                    Symlink("etc/systemd/system", "../../srv/units"),
                ],
                Some("enabled"),
            ),
            (
                "/etc/systemd an absolute symlink",
                vec![
                    Unit("srv/systemd/system"),
                    Link("srv/systemd/system/multi-user.target.wants"),
                    Symlink("etc/systemd", "/srv/systemd"),
                ],
                None,
            ),
            (
                "/usr/lib/systemd/system an absolute symlink",
                vec![
                    Unit("srv/lib"),
                    Symlink("usr/lib/systemd/system", "/srv/lib"),
                    Link("etc/systemd/system/multi-user.target.wants"),
                ],
                None,
            ),
            (
                "merged /usr: /lib a relative symlink to usr/lib",
                vec![
                    Unit("usr/lib/systemd/system"),
                    Symlink("lib", "usr/lib"),
                    Link("etc/systemd/system/multi-user.target.wants"),
                ],
                Some("enabled"),
            ),
            (
                "/lib an absolute symlink to /usr/lib",
                vec![
                    Unit("usr/lib/systemd/system"),
                    Symlink("lib", "/usr/lib"),
                    Link("etc/systemd/system/multi-user.target.wants"),
                ],
                None,
            ),
            (
                "the unit file a symlink into /srv",
                vec![
                    Unit("srv"),
                    Dir("lib/systemd/system"),
                    Symlink("lib/systemd/system/x.service", "/srv/x.service"),
                    Link("etc/systemd/system/multi-user.target.wants"),
                ],
                None,
            ),
            (
                "a template instance",
                vec![Unit("lib/systemd/system")],
                None,
            ),
        ];
        for (what, steps, want) in more {
            cases.push((what.to_string(), steps, want));
        }
        assert!(cases.len() >= 60, "{} cases", cases.len());

        let mut table = String::new();
        let mut wrong = Vec::new();
        for (what, steps, want) in &cases {
            let root = tempfile::tempdir().expect("test set-up");
            build(root.path(), steps);
            let unit = if what == "a template instance" {
                "x@a.service"
            } else {
                "x.service"
            };
            let got = proven_state(&Probe::new(root.path(), root.path().join("state")), unit);
            let out = Command::new("systemctl")
                .arg(format!("--root={}", root.path().display()))
                .args(["is-enabled", unit])
                .output()
                .expect("systemctl (the systemd package) is installed");
            let word = String::from_utf8_lossy(&out.stdout).trim().to_string();
            table.push_str(&format!(
                "{what:<62} systemctl: {word:<15} fast path: {}\n",
                got.unwrap_or("(asks systemctl)")
            ));
            if got.is_some_and(|g| g != word) || got != *want {
                wrong.push(what.clone());
            }
        }
        assert!(wrong.is_empty(), "wrong on {wrong:?}:\n{table}");
    }

    /// `root/path`, its parent directories made.
    fn at(root: &Path, path: &str) -> std::path::PathBuf {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("test set-up");
        p
    }

    fn write(root: &Path, path: &str, text: &str) {
        std::fs::write(at(root, path), text).expect("test set-up");
    }
}
