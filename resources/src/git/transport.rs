//! Talking to the remote: credentials, where a ref points (ls-remote, nothing fetched), what
//! the manifest asks for, fetching exactly that, and keeping credentials out of every message.

use super::*;

/// Credentials for a remote, in one place for the `git` kind and `tend pull`: an SSH key for
/// `ssh://`, a token from an environment variable for `https://` (never in a URL or a message),
/// and at most three tries, after which the server's refusal is final.
pub fn credential_callbacks<'a>(
    ssh_key: Option<&'a Path>,
    token_env: Option<&'a str>,
) -> RemoteCallbacks<'a> {
    key_callbacks(ssh_key, None, token_env)
}

/// The same, with the private key's text already read (by root, for a checkout worked on as
/// its owner, who may not read the key file).
fn key_callbacks<'a>(
    ssh_key: Option<&'a Path>,
    key_text: Option<&'a str>,
    token_env: Option<&'a str>,
) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let mut tries = 0;
    cb.credentials(move |_url, user, allowed| {
        tries += 1;
        if tries > 3 {
            return Err(git2::Error::from_str(
                "authentication failed (credentials refused)",
            ));
        }
        if allowed.contains(git2::CredentialType::SSH_KEY) {
            if let Some(text) = key_text {
                return Cred::ssh_key_from_memory(user.unwrap_or("git"), None, text, None);
            }
            if let Some(key) = ssh_key {
                return Cred::ssh_key(user.unwrap_or("git"), None, key, None);
            }
        }
        if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
            if let Some(var) = token_env {
                let token = std::env::var(var).map_err(|_| {
                    git2::Error::from_str(&format!(
                        "environment variable {var} (token_env) is not set"
                    ))
                })?;
                return Cred::userpass_plaintext("x-access-token", &token);
            }
        }
        Err(git2::Error::from_str(
            "the remote asks for credentials: give an SSH key (ssh_key) or a token (token_env)",
        ))
    });
    cb
}

impl Spec {
    /// Read the SSH key as root, before acting as the checkout's owner.
    pub(super) fn load_key(&self) -> Result<(), ResourceError> {
        if let (Some(path), None, Some(_)) = (&self.ssh_key, self.key_text.get(), &self.owner) {
            // The key the manifest names on this machine, read as root (not a managed file).
            #[allow(clippy::disallowed_methods)]
            let text = std::fs::read_to_string(path)
                .map_err(|e| failed(format!("cannot read the SSH key {}: {e}", path.display())))?;
            let _ = self.key_text.set(text);
        }
        Ok(())
    }

    pub(super) fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut cb = key_callbacks(
            self.ssh_key.as_deref(),
            self.key_text.get().map(String::as_str),
            self.token_env.as_deref(),
        );
        let mut last = Instant::now();
        let label = self.path.display().to_string();
        // Progress as log lines (the agent's -v shows them, -q hides them); a library draws no
        // bar of its own. The run's heartbeat says a long clone is alive either way.
        cb.transfer_progress(move |p| {
            if last.elapsed() >= Duration::from_secs(2) {
                last = Instant::now();
                tracing::info!(checkout = %label, "received {}/{} objects ({} KiB)", p.received_objects(), p.total_objects(), p.received_bytes() / 1024);
            }
            true
        });
        cb
    }

    /// Where `ref` points on the remote (`ls-remote`: nothing is fetched).
    pub(super) fn remote_target(&self) -> Result<Option<Target>, ResourceError> {
        super::tls::before_use(&self.url);
        let mut remote = git2::Remote::create_detached(self.url.as_str())
            .map_err(|e| failed(format!("remote {}: {}", self.url, e.message())))?;
        let conn = remote
            .connect_auth(Direction::Fetch, Some(self.callbacks()), None)
            .map_err(|e| remote_error(&self.url, &e))?;
        let heads = conn
            .list()
            .map_err(|e| failed(format!("cannot list refs of {}: {}", self.url, e.message())))?;
        let find = |name: &str| heads.iter().find(|h| h.name() == name).map(|h| h.oid());
        let r = &self.reference;
        if let Some(oid) =
            find(&format!("refs/tags/{r}^{{}}")).or_else(|| find(&format!("refs/tags/{r}")))
        {
            return Ok(Some(Target {
                kind: RefKind::Tag,
                commit: oid,
            }));
        }
        if let Some(oid) = find(&format!("refs/heads/{r}")) {
            return Ok(Some(Target {
                kind: RefKind::Branch,
                commit: oid,
            }));
        }
        Ok(None)
    }

    /// Where `ref` points in the local repository, if it can be known there.
    pub(super) fn local_target(&self, repo: &Repository) -> Option<Target> {
        let r = &self.reference;
        if let Ok(c) = repo
            .find_reference(&format!("refs/tags/{r}"))
            .and_then(|t| t.peel_to_commit())
        {
            return Some(Target {
                kind: RefKind::Tag,
                commit: c.id(),
            });
        }
        if let Ok(c) = repo
            .find_reference(&format!("refs/remotes/{}/{r}", self.remote))
            .and_then(|t| t.peel_to_commit())
        {
            return Some(Target {
                kind: RefKind::Branch,
                commit: c.id(),
            });
        }
        if looks_like_commit(r) {
            if let Ok(obj) = repo.revparse_single(r) {
                if let Ok(c) = obj.peel_to_commit() {
                    return Some(Target {
                        kind: RefKind::Commit,
                        commit: c.id(),
                    });
                }
            }
        }
        None
    }

    pub(super) fn check_pin(&self, target: &Target) -> Result<(), ResourceError> {
        if let Some(pin) = &self.pin {
            if !target.commit.to_string().starts_with(pin.as_str()) {
                let what = match target.kind {
                    RefKind::Tag => "tag",
                    RefKind::Branch => "branch",
                    RefKind::Commit => "ref",
                };
                return Err(failed(format!(
                    "{what} {} now points to {}, expected {pin} (the commit pin); nothing was touched",
                    self.reference,
                    short(target.commit)
                )));
            }
        }
        Ok(())
    }

    /// The commit the checkout should be at, and drift notes about the ref itself.
    pub(super) fn desired(
        &self,
        repo: Option<&Repository>,
        changes: &mut Vec<Change>,
    ) -> Result<Target, ResourceError> {
        let local = repo.and_then(|r| self.local_target(r));
        let remote = match self.remote_target() {
            Ok(t) => t,
            // Offline, a tag or commit already here still answers; a branch cannot.
            Err(e) => match &local {
                Some(l) if l.kind != RefKind::Branch => {
                    tracing::warn!(checkout = %self.path.display(), "{e}; using the local {}", self.reference);
                    None
                }
                _ => return Err(e),
            },
        };
        let target = match (remote, local) {
            (Some(r), Some(l))
                if r.kind == RefKind::Tag && l.kind == RefKind::Tag && r.commit != l.commit =>
            {
                self.check_pin(&r)?;
                changes.push(Change::new(
                    "tag",
                    Some(format!("{} ({}) here", self.reference, short(l.commit))),
                    Some(format!("{} ({}) upstream", self.reference, short(r.commit))),
                ));
                if let Some(c) = changes.last_mut() {
                    c.description = format!(
                        "tag {} moved upstream: {} here, {} on the remote",
                        self.reference,
                        short(l.commit),
                        short(r.commit)
                    );
                }
                r
            }
            (Some(r), _) => r,
            (None, Some(l)) => l,
            (None, None) if looks_like_commit(&self.reference) => {
                let oid = Oid::from_str(&format!("{:0<40}", self.reference))
                    .map_err(|e| failed(e.message()))?;
                if self.reference.len() < 40 {
                    return Err(failed(format!(
                        "commit {} is not in the checkout yet; give all 40 hex digits so it can be fetched",
                        self.reference
                    )));
                }
                Target {
                    kind: RefKind::Commit,
                    commit: oid,
                }
            }
            (None, None) => {
                return Err(failed(format!(
                    "{} has no tag or branch named {}",
                    self.url, self.reference
                )));
            }
        };
        self.check_pin(&target)?;
        Ok(target)
    }

    /// libgit2's local transport (paths, `file://`) cannot fetch shallow.
    pub(super) fn local_transport(&self) -> bool {
        self.url.starts_with('/') || self.url.starts_with("file://") || self.url.starts_with("./")
    }

    pub(super) fn fetch(&self, repo: &Repository, target: &Target) -> Result<(), ResourceError> {
        super::tls::before_use(&self.url);
        let r = &self.reference;
        let refspec = match target.kind {
            RefKind::Tag => format!("+refs/tags/{r}:refs/tags/{r}"),
            RefKind::Branch => format!("+refs/heads/{r}:refs/remotes/{}/{r}", self.remote),
            RefKind::Commit => format!("+refs/heads/*:refs/remotes/{}/*", self.remote),
        };
        let mut remote = repo
            .find_remote(&self.remote)
            .map_err(|e| failed(e.message()))?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(self.callbacks());
        opts.download_tags(git2::AutotagOption::None);
        if let Some(d) = self.depth.filter(|_| !self.local_transport()) {
            opts.depth(d);
        }
        remote
            .fetch(&[refspec.as_str()], Some(&mut opts), None)
            .map_err(|e| match remote_error(&self.url, &e) {
                ResourceError::Unreachable(_) => {
                    failed(format!("fetching {r} from {}: {}", self.url, e.message()))
                }
                other => other,
            })?;
        if repo.find_commit(target.commit).is_err() {
            return Err(failed(format!(
                "{} did not provide commit {}",
                self.url, target.commit
            )));
        }
        Ok(())
    }
}

/// The URL rewrites (`url.<base>.insteadOf`, `url.<base>.pushInsteadOf`) in the checkout's own
/// `.git/config`, as `name = value`: libgit2 applies them to a named remote's fetch, so they
/// would send it elsewhere than the manifest's URL. (Root's global configuration is not read at
/// all.)
pub(super) fn url_rewrites(repo: &Repository) -> Vec<String> {
    let Ok(config) = repo
        .config()
        .and_then(|c| c.open_level(git2::ConfigLevel::Local))
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    if let Ok(mut entries) = config.entries(Some(r"^url\..*\.(insteadof|pushinsteadof)$")) {
        while let Some(Ok(e)) = entries.next() {
            found.push(format!(
                "{} = {}",
                String::from_utf8_lossy(e.name_bytes()),
                String::from_utf8_lossy(e.value_bytes())
            ));
        }
    }
    found
}

/// Remove every URL rewrite from the checkout's `.git/config` (see [`url_rewrites`]).
pub(super) fn remove_url_rewrites(repo: &Repository) -> Result<(), ResourceError> {
    let mut config = repo
        .config()
        .and_then(|c| c.open_level(git2::ConfigLevel::Local))
        .map_err(|e| failed(format!(".git/config: {}", e.message())))?;
    let mut names = Vec::new();
    if let Ok(mut entries) = config.entries(Some(r"^url\..*\.(insteadof|pushinsteadof)$")) {
        while let Some(Ok(e)) = entries.next() {
            names.push(e.name_bytes().to_vec());
        }
    }
    names.sort();
    names.dedup();
    for name in names {
        let name = String::from_utf8_lossy(&name).into_owned();
        config.remove_multivar(&name, ".*").map_err(|e| {
            failed(format!(
                ".git/config: cannot remove {name}: {}",
                e.message()
            ))
        })?;
    }
    Ok(())
}

/// A URL with its userinfo (`user:token@`) replaced: credentials in a git URL never reach
/// output, reports or logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let scheme = &url[..scheme_end];
    match rest[..authority_end].rfind('@') {
        // An SSH user name is no secret (`ssh://git@host`); over HTTP the user part is often the
        // token itself, and `user:password` is a secret in any scheme.
        Some(at) if scheme != "ssh" || rest[..at].contains(':') => {
            format!("{scheme}://***@{}", &rest[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// `text` with the manifest's URL (and any URL's userinfo) redacted.
pub(super) fn scrub_credentials(text: &str, url: &str) -> String {
    let shown = redact_url(url);
    let mut out = if shown != url {
        text.replace(url, &shown)
    } else {
        text.to_string()
    };
    // A URL git echoed back in another form (a redirect, a remote's stored URL).
    let mut from = 0;
    while let Some(i) = out[from..].find("://") {
        let start = from + i + 3;
        let end = out[start..]
            .find(|c: char| c == '/' || c.is_whitespace())
            .map_or(out.len(), |e| start + e);
        let scheme_start = out[..start - 3]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+.-".contains(c)))
            .map_or(0, |i| i + 1);
        let ssh = &out[scheme_start..start - 3] == "ssh";
        match out[start..end].rfind('@') {
            Some(at)
                if !out[start..start + at].starts_with("***")
                    && (!ssh || out[start..start + at].contains(':')) =>
            {
                out.replace_range(start..start + at, "***");
                from = start + 4;
            }
            _ => from = end,
        }
    }
    out
}

pub(super) fn scrub_error(e: ResourceError, url: &str) -> ResourceError {
    match e {
        ResourceError::Failed(m) => ResourceError::Failed(scrub_credentials(&m, url)),
        ResourceError::Command(m) => ResourceError::Command(scrub_credentials(&m, url)),
        ResourceError::Refused(m) => ResourceError::Refused(scrub_credentials(&m, url)),
        ResourceError::Invalid(m) => ResourceError::Invalid(scrub_credentials(&m, url)),
        ResourceError::Docker(m) => ResourceError::Docker(scrub_credentials(&m, url)),
        ResourceError::Unreachable(m) => ResourceError::Unreachable(scrub_credentials(&m, url)),
        ResourceError::Missing(m) => ResourceError::Missing(scrub_credentials(&m, url)),
        ResourceError::Unknown { class, why } => ResourceError::Unknown {
            class,
            why: scrub_credentials(&why, url),
        },
        ResourceError::Host(h) => ResourceError::Failed(scrub_credentials(&h.to_string(), url)),
    }
}

#[cfg(test)]
mod redact_tests {
    use super::*;

    #[test]
    pub(super) fn credentials_in_urls_are_redacted() {
        assert_eq!(
            redact_url("https://oauth2:glpat-SECRET@git.example/x.git"),
            "https://***@git.example/x.git"
        );
        assert_eq!(redact_url("/srv/git/x.git"), "/srv/git/x.git");
        assert_eq!(redact_url("ssh://git@host/x"), "ssh://git@host/x");
        assert_eq!(redact_url("ssh://git:pw@host/x"), "ssh://***@host/x");
        assert_eq!(redact_url("https://TOKEN@host/x"), "https://***@host/x");
        let msg = "cannot reach https://u:tok@h/x.git (and https://a:b@other/y)";
        let out = scrub_credentials(msg, "https://u:tok@h/x.git");
        assert!(!out.contains("tok") && !out.contains("a:b"), "{out}");
    }
}
