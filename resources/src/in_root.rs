//! Running a program inside a `--root` (an image being built): in a mount namespace of its own
//! with `/proc`, `/sys`, `/dev` and a tmpfs `/run` mounted into the root there only, then
//! `chroot` — so what it reads and writes is the image's, post-install scripts find `/proc`,
//! and nothing mounted outlives it or leaks to the build machine (the namespace ends with its
//! last process, a killed tend's included: `unshare --kill-child`). Used by `exec` (command and
//! guards) and by apt under `--root`.

use std::ffi::OsStr;
use std::path::Path;

use crate::host::Probe;

/// Run by `sh` in the new mount namespace: `ROOT USERSPEC CWD ARGV…`. The kernel's file systems
/// go onto the root's own directories only — a symlink there (an image pointing `/proc` at a
/// build-machine path) is refused, not followed — and everything mounted here goes with the
/// namespace.
const SCRIPT: &str = r#"set -e
r=$1 u=$2 d=$3
shift 3
for m in proc sys dev run; do
  if [ -L "$r/$m" ] || [ ! -d "$r/$m" ]; then
    echo "tend: $r/$m is not a directory of the root (a symlink, or missing): not mounting there" >&2
    exit 125
  fi
done
mount -t proc proc "$r/proc"
mount --rbind /sys "$r/sys"
mount --make-rslave "$r/sys"
mount --rbind /dev "$r/dev"
mount --make-rslave "$r/dev"
mount -t tmpfs -o mode=0755 tmpfs "$r/run"
if [ -n "$d" ]; then
  set -- /bin/sh -c 'cd -- "$0" && exec "$@"' "$d" "$@"
fi
if [ -n "$u" ]; then
  exec chroot --userspec="$u" "$r" "$@"
fi
exec chroot "$r" "$@"
"#;

/// `argv` to run inside `root`, as `userspec` (`UID:GID`, empty for root), in `cwd` (a path
/// inside the root, empty for `/`), with a clean environment and the usual `PATH`.
pub(crate) fn command(
    root: &Path,
    userspec: &str,
    cwd: &OsStr,
    argv: &[impl AsRef<OsStr>],
) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "--fork",
        "--kill-child",
        "--",
        "/bin/sh",
        "-c",
        SCRIPT,
        "tend-in-root",
    ])
    .arg(root)
    .arg(userspec)
    .arg(cwd)
    .args(argv)
    .env_clear()
    .env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    c
}

/// Whether the root holds a system to run a command in: its own `/bin/sh` (followed inside the
/// root only). A root of files alone (a sandbox, a config tree) has none.
pub(crate) fn has_shell(host: &Probe) -> bool {
    // The real path Probe resolved, every link followed inside the root only.
    #[allow(clippy::disallowed_methods)]
    let file = |p: &Path| p.is_file();
    host.resolved(Path::new("/bin/sh"))
        .ok()
        .flatten()
        .is_some_and(|p| file(&p))
}
