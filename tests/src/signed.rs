//! A policy repository whose commits git itself signs (`gpg.format = ssh`) with a key made by
//! `ssh-keygen`, and the allowed signers file that names it: what `tend pull` trusts.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::gitserve::git;

/// `ssh-keygen -t ed25519` to `path` (no passphrase).
pub fn keygen(path: &Path, comment: &str) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen")
        .success();
    assert!(ok, "ssh-keygen");
}

/// A repository on branch `main` and the operator key allowed to sign it.
pub struct SignedRepo {
    pub dir: tempfile::TempDir,
}

impl Default for SignedRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl SignedRepo {
    pub fn new() -> SignedRepo {
        let dir = tempfile::Builder::new()
            .prefix("tend-signed-")
            .tempdir()
            .expect("tempdir");
        keygen(&dir.path().join("ops"), "ops");
        let public = std::fs::read_to_string(dir.path().join("ops.pub")).expect("ops.pub");
        std::fs::write(
            dir.path().join("allowed_signers"),
            format!("ops@example.com namespaces=\"git\" {public}"),
        )
        .expect("allowed_signers");
        let repo = dir.path().join("policy.git");
        std::fs::create_dir(&repo).expect("mkdir");
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["config", "gpg.format", "ssh"]);
        SignedRepo { dir }
    }

    /// The work tree (also what `tend pull --url` takes).
    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("policy.git")
    }

    /// The allowed signers file's text.
    pub fn allowed_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("allowed_signers")).expect("allowed")
    }

    /// Write `files` (relative path, text), commit them signed; the commit's id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        let repo = self.repo();
        for (rel, text) in files {
            let p = repo.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write");
        }
        git(&repo, &["add", "-A"]);
        let key = self.dir.path().join("ops.pub");
        git(
            &repo,
            &[
                "-c",
                &format!("user.signingkey={}", key.display()),
                "commit",
                "-q",
                "-S",
                "-m",
                message,
            ],
        );
        git(&repo, &["rev-parse", "HEAD"])
    }
}
