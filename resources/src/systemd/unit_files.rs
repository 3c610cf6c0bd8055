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

/// `Some("enabled")` or `Some("masked")` when the files under the probe's root prove that is
/// what `systemctl --root=ROOT is-enabled UNIT` says; `None` when they do not.
pub(crate) fn proven_state(host: &Probe, unit: &str) -> Option<&'static str> {
    // Template instances resolve through their template: not worth proving here.
    if unit.contains('@') || unit.contains('/') || unit.is_empty() {
        return None;
    }
    let mut found = None;
    for dir in SEARCH_PATH {
        let path = Path::new(dir).join(unit);
        let Some(meta) = host.metadata(&path).ok()? else {
            continue;
        };
        if meta.file_type().is_symlink() {
            // A link to /dev/null is a mask, wherever it is; any other link is an alias or a
            // linked unit file, which systemctl must judge.
            let target = host.read_link(&path).ok()??;
            return (target == Path::new("/dev/null")).then_some("masked");
        }
        // An empty file masks too (systemd's `null_or_empty`).
        if meta.is_file() && meta.len() == 0 {
            return Some("masked");
        }
        if !meta.is_file() || !ORDINARY.contains(dir) {
            return None;
        }
        found = Some(path);
        break;
    }
    found?;
    // `find_symlinks`: a symlink named after the unit in a `.wants`, `.requires` or `.upholds`
    // directory of the persistent configuration makes it `enabled`, whatever it points to.
    let names = host.read_dir(Path::new(PERSISTENT_CONFIG)).ok()??;
    let linked = names.iter().any(|name| {
        let name = name.to_string_lossy();
        let wants = [".wants", ".requires", ".upholds"]
            .iter()
            .any(|s| name.ends_with(s));
        wants && {
            let link: PathBuf = [PERSISTENT_CONFIG, &name, unit].iter().collect();
            matches!(host.metadata(&link), Ok(Some(m)) if m.file_type().is_symlink())
        }
    });
    linked.then_some("enabled")
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests prepare their sandboxes directly
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::process::Command;

    const UNIT: &str = "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n";

    /// Each layout, the fast path's answer, and what `systemctl --root` says of it: wherever
    /// the fast path answers, it answers what systemctl does.
    #[test]
    fn the_fast_path_agrees_with_systemctl_wherever_it_answers() {
        type Layout = fn(&Path);
        let cases: &[(&str, Layout, Option<&str>)] = &[
            (
                "enabled by a .wants link",
                |r| {
                    unit_file(r, "lib/systemd/system/x.service");
                    link(r, "etc/systemd/system/multi-user.target.wants/x.service");
                },
                Some("enabled"),
            ),
            (
                "enabled by a .requires link, unit file in /etc",
                |r| {
                    unit_file(r, "etc/systemd/system/x.service");
                    link(r, "etc/systemd/system/basic.target.requires/x.service");
                },
                Some("enabled"),
            ),
            (
                "disabled: no link",
                |r| {
                    unit_file(r, "lib/systemd/system/x.service");
                },
                None,
            ),
            (
                "masked by a link to /dev/null",
                |r| {
                    unit_file(r, "lib/systemd/system/x.service");
                    mk(r, "etc/systemd/system");
                    symlink("/dev/null", r.join("etc/systemd/system/x.service"))
                        .expect("test set-up");
                },
                Some("masked"),
            ),
            (
                "masked although a .wants link is left",
                |r| {
                    unit_file(r, "lib/systemd/system/x.service");
                    link(r, "etc/systemd/system/multi-user.target.wants/x.service");
                    symlink("/dev/null", r.join("etc/systemd/system/x.service"))
                        .expect("test set-up");
                },
                Some("masked"),
            ),
            (
                "masked by an empty file",
                |r| {
                    unit_file(r, "lib/systemd/system/x.service");
                    link(r, "etc/systemd/system/multi-user.target.wants/x.service");
                    std::fs::write(r.join("etc/systemd/system/x.service"), "")
                        .expect("test set-up");
                },
                Some("masked"),
            ),
            (
                "an alias",
                |r| {
                    unit_file(r, "lib/systemd/system/y.service");
                    mk(r, "etc/systemd/system");
                    symlink(
                        "/lib/systemd/system/y.service",
                        r.join("etc/systemd/system/x.service"),
                    )
                    .expect("test set-up");
                    link(r, "etc/systemd/system/multi-user.target.wants/x.service");
                },
                None,
            ),
            (
                "enabled only at runtime",
                |r| {
                    unit_file(r, "lib/systemd/system/x.service");
                    link(r, "run/systemd/system/multi-user.target.wants/x.service");
                },
                None,
            ),
            (
                "no such unit",
                |r| {
                    link(r, "etc/systemd/system/multi-user.target.wants/x.service");
                },
                None,
            ),
        ];
        for (what, layout, want) in cases {
            let root = tempfile::tempdir().expect("test set-up");
            layout(root.path());
            let got = proven_state(
                &Probe::new(root.path(), root.path().join("state")),
                "x.service",
            );
            assert_eq!(got, *want, "{what}");
            let out = Command::new("systemctl")
                .arg(format!("--root={}", root.path().display()))
                .args(["is-enabled", "x.service"])
                .output()
                .expect("systemctl (the systemd package) is installed");
            let word = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if let Some(w) = got {
                assert_eq!(word, w, "{what}: systemctl disagrees");
            } else {
                assert!(
                    !["enabled", "masked"].contains(&word.as_str()),
                    "{what}: systemctl says {word:?}, which the fast path could have proven"
                );
            }
        }
    }

    fn mk(root: &Path, dir: &str) {
        std::fs::create_dir_all(root.join(dir)).expect("test set-up");
    }

    /// `root/path`, its parent directories made.
    fn at(root: &Path, path: &str) -> std::path::PathBuf {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("test set-up");
        p
    }

    fn unit_file(root: &Path, path: &str) {
        std::fs::write(at(root, path), UNIT).expect("test set-up");
    }

    fn link(root: &Path, path: &str) {
        symlink("/lib/systemd/system/x.service", at(root, path)).expect("test set-up");
    }
}
