//! A `git` checkout among users tend does not trust: `nobody` owns the checkout (or the
//! directory it lies in) and turns libgit2's writes by path against root — links planted where
//! the next tag adds files, tracked files swapped for links to root's files, a directory
//! swapped for a link while tend sets owners. Each case checks root's files were not touched.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tend_tests::gitserve::git;
use tend_tests::{resource, Sandbox};

use crate::security::{assert_protected_untouched, hostile_sandbox, NOBODY};

/// An upstream `nobody` can read: tag `v1` with `README.md` and `sub/a`, tag `v2` adding
/// `newdir/evil` and changing `README.md`.
struct Upstream {
    dir: tempfile::TempDir,
}

impl Upstream {
    fn new() -> Upstream {
        let dir = tempfile::Builder::new()
            .prefix("tend-upstream-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let repo = dir.path().join("app.git");
        std::fs::create_dir_all(repo.join("sub")).expect("mkdir");
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("README.md"), "v1\n").expect("write");
        std::fs::write(repo.join("sub/a"), "a\n").expect("write");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "v1"]);
        git(&repo, &["tag", "v1"]);
        std::fs::create_dir_all(repo.join("newdir")).expect("mkdir");
        std::fs::write(repo.join("newdir/evil"), "upstream's file\n").expect("write");
        std::fs::write(repo.join("README.md"), "v2\n").expect("write");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "v2"]);
        git(&repo, &["tag", "v2"]);
        Upstream { dir }
    }

    fn url(&self) -> String {
        self.dir.path().join("app.git").display().to_string()
    }
}

fn manifest(up: &Upstream, path: &str, reference: &str, extra: &str) -> String {
    format!(
        "[git.app]\npath = \"{path}\"\nurl = \"{}\"\nref = \"{reference}\"\n{extra}\n",
        up.url()
    )
}

fn as_nobody(script: &str) {
    let ok = Command::new("runuser")
        .args(["-u", "nobody", "--", "/usr/bin/python3", "-c", script])
        .status()
        .expect("runuser")
        .success();
    assert!(ok, "{script}");
}

fn protected(sb: &Sandbox) -> PathBuf {
    sb.path("/protected")
}

#[test]
fn a_link_planted_where_the_next_tag_adds_a_directory_is_not_written_through() {
    let sb = hostile_sandbox();
    let up = Upstream::new();
    let owned = "owner = \"65534\"";
    sb.write_manifest(&manifest(&up, "/u/co", "v1", owned));
    assert_eq!(sb.apply().code, 2);
    // nobody plants an untracked link where v2 adds newdir/.
    as_nobody(&format!(
        "import os; os.symlink({:?}, {:?})",
        protected(&sb).display().to_string(),
        sb.path("/u/co/newdir").display().to_string()
    ));
    sb.write_manifest(&manifest(&up, "/u/co", "v2", owned));
    let run = sb.apply();
    assert!(matches!(run.code, 2 | 4), "{run:?}");
    assert_protected_untouched(&sb);
}

#[test]
fn a_tracked_file_swapped_for_a_link_to_roots_file_is_not_overwritten_on_discard() {
    let sb = hostile_sandbox();
    let up = Upstream::new();
    let owned = "owner = \"65534\"\non_local_changes = \"discard\"";
    sb.write_manifest(&manifest(&up, "/u/co", "v1", owned));
    assert_eq!(sb.apply().code, 2);
    as_nobody(&format!(
        "import os; os.remove({p:?}); os.symlink({t:?}, {p:?})",
        p = sb.path("/u/co/README.md").display().to_string(),
        t = protected(&sb).join("config").display().to_string()
    ));
    sb.write_manifest(&manifest(&up, "/u/co", "v2", owned));
    let run = sb.apply();
    assert!(matches!(run.code, 2 | 4), "{run:?}");
    assert_protected_untouched(&sb);
    // What was written, was written as nobody.
    if run.code == 2 {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(sb.path("/u/co/README.md")).expect("README");
        assert_eq!(m.uid(), NOBODY);
    }
}

#[test]
fn a_root_checkout_in_a_directory_a_user_can_change_is_refused_in_plan_and_apply() {
    let sb = hostile_sandbox();
    let up = Upstream::new();
    sb.write_manifest(&manifest(&up, "/u/co", "v1", ""));
    for run in [
        sb.tend("plan", &["--format", "json"]),
        sb.tend("apply", &["--format", "json"]),
    ] {
        assert_eq!(run.code, 4, "{run:?}");
        let err = resource(&run.json(), "git.app")["error"]
            .as_str()
            .expect("error")
            .to_string();
        assert!(
            err.contains("/u is owned by uid 65534") && err.contains("nothing was touched"),
            "{err}"
        );
    }
    assert!(!sb.path("/u/co").exists(), "nothing was cloned");
    // With the user as owner, the same checkout is theirs and is made as them.
    sb.write_manifest(&manifest(&up, "/u/co", "v1", "owner = \"65534\""));
    assert_eq!(sb.apply().code, 2);
    use std::os::unix::fs::MetadataExt;
    for p in ["/u/co", "/u/co/README.md", "/u/co/.git/HEAD"] {
        let m = std::fs::symlink_metadata(sb.path(p)).expect(p);
        assert_eq!(m.uid(), NOBODY, "{p}");
    }
    assert_eq!(sb.apply().code, 0, "second run: zero changes");
}

#[test]
fn swapping_a_checkout_directory_for_a_link_during_200_owner_walks_never_wins() {
    let sb = hostile_sandbox();
    let up = Upstream::new();
    sb.write_manifest(&manifest(&up, "/u/co", "v1", "owner = \"65534\""));
    assert_eq!(sb.apply().code, 2);
    let mut attacker = crate::security::swap_in_loop(
        &sb.path("/u/co/sub"),
        &sb.path("/u/co/link"),
        &protected(&sb),
        120,
    );
    let top = sb.path("/u/co");
    for _ in 0..200 {
        // The checkout's owner drifts, so apply walks the whole tree to set it again.
        lchown(&top, 0);
        let run = sb.apply();
        assert!(matches!(run.code, 2 | 4), "{run:?}");
        assert_protected_untouched(&sb);
    }
    std::fs::write(top.join(".stop"), "").expect("stop");
    let out = std::mem::replace(&mut attacker.0, Command::new("true").spawn().expect("true"))
        .wait_with_output()
        .expect("swapper");
    let swaps: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    // The race was really run: the swapper swapped all along the 200 walks.
    assert!(swaps > 1000, "only {swaps} swaps");
}

#[allow(clippy::disallowed_methods)]
fn lchown(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), None).expect("lchown");
}

#[test]
fn a_url_rewrite_planted_in_a_users_checkout_is_named_and_removed_not_followed() {
    let sb = hostile_sandbox();
    let up = Upstream::new();
    let owned = "owner = \"65534\"";
    sb.write_manifest(&manifest(&up, "/u/co", "v1", owned));
    assert_eq!(sb.apply().code, 2);
    // nobody sends every fetch of the manifest's URL to a repository that lacks v2.
    let decoy = sb.path("/u/decoy.git");
    as_nobody(&format!(
        "import subprocess; subprocess.run(['git', 'init', '-q', '--bare', {d:?}], check=True); \
         subprocess.run(['git', '-C', {co:?}, 'config', 'url.{d}.insteadOf', {u:?}], check=True)",
        d = decoy.display().to_string(),
        co = sb.path("/u/co").display().to_string(),
        u = up.url()
    ));
    sb.write_manifest(&manifest(&up, "/u/co", "v2", owned));
    // Every plan runs watched for writes (tend_tests::run).
    let plan = sb.plan_json();
    let fields: Vec<String> = resource(&plan, "git.app")["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["description"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        fields.iter().any(|d| d.contains("insteadof")
            && d.contains("decoy.git")
            && d.contains("remove the rewrite")),
        "{fields:?}"
    );
    let run = sb.apply();
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(
        std::fs::read_to_string(sb.path("/u/co/README.md")).expect("README"),
        "v2\n",
        "fetched from the manifest's URL"
    );
    let config = std::fs::read_to_string(sb.path("/u/co/.git/config")).expect("config");
    assert!(!config.to_lowercase().contains("insteadof"), "{config}");
    assert_eq!(sb.apply().code, 0, "second run: zero changes");
    assert_protected_untouched(&sb);
}
