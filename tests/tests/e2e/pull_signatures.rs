//! tend's verdict on a signed commit against the reference's: for each case, a commit built
//! with real git and ssh-keygen (signed by `git commit -S`, or an object assembled by hand and
//! written with `git hash-object`) and an allowed signers file; `git -c
//! gpg.ssh.allowedSignersFile=F verify-commit` says whether it verifies, and `tend pull --plan`
//! must say the same — except the refusals docs/fleet.md documents, each named here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tend_tests::gitserve::git;
use tend_tests::{run, Sandbox};

/// The committer time of every hand-built commit (2026-12-06T23:33:20Z): the time the keys'
/// `valid-after`/`valid-before` are judged at.
const TIME: u64 = 1_796_600_000;

struct Lab {
    dir: tempfile::TempDir,
    tree: String,
    parent: String,
    cases: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Key {
    Ops,
    Stranger,
    P256,
    P384,
    P521,
    Rsa,
}

impl Key {
    fn file(self) -> &'static str {
        match self {
            Key::Ops => "ops",
            Key::Stranger => "stranger",
            Key::P256 => "p256",
            Key::P384 => "p384",
            Key::P521 => "p521",
            Key::Rsa => "rsa",
        }
    }
}

/// How the signature is written into the commit object.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// As git writes it.
    Header,
    /// The armor re-wrapped at 64 columns.
    Wrap64,
    /// The base64 on one line.
    OneLine,
    /// Text after the END line, inside the header.
    TextAfterEnd,
    /// Every armor line ending in CR LF.
    Crlf,
    /// A junk `gpgsig-sha256` header before the valid `gpgsig`.
    JunkSha256,
    /// The valid signature, then a second `gpgsig` header of junk.
    ValidThenJunk,
    /// A junk `gpgsig` header, then the valid one.
    JunkThenValid,
    /// No header: the signature lines appended to the message.
    InMessage,
    /// The message changed after signing.
    Tampered,
    /// A PGP armor header.
    Pgp,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::Builder::new()
            .prefix("tend-sigref-")
            .tempdir()
            .expect("tempdir");
        for (name, args) in [
            ("ops", &["-t", "ed25519"][..]),
            ("stranger", &["-t", "ed25519"]),
            ("p256", &["-t", "ecdsa", "-b", "256"]),
            ("p384", &["-t", "ecdsa", "-b", "384"]),
            ("p521", &["-t", "ecdsa", "-b", "521"]),
            ("rsa", &["-t", "rsa", "-b", "2048"]),
        ] {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-N", "", "-C", name])
                .args(args)
                .arg("-f")
                .arg(dir.path().join(name))
                .status()
                .expect("ssh-keygen")
                .success();
            assert!(ok, "ssh-keygen {name}");
        }
        let repo = dir.path().join("policy.git");
        std::fs::create_dir(&repo).expect("mkdir");
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["config", "gpg.format", "ssh"]);
        std::fs::write(
            repo.join("manifest.toml"),
            "[file.motd]\npath = \"/etc/motd\"\ncontent = \"signed\\n\"\n",
        )
        .expect("manifest");
        git(&repo, &["add", "manifest.toml"]);
        git(&repo, &["commit", "-q", "--no-gpg-sign", "-m", "base"]);
        let tree = git(&repo, &["rev-parse", "HEAD^{tree}"]);
        let parent = git(&repo, &["rev-parse", "HEAD"]);
        Lab {
            dir,
            tree,
            parent,
            cases: 0,
        }
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("policy.git")
    }

    fn public(&self, key: Key) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.pub", key.file())))
            .expect("pub")
            .trim()
            .to_string()
    }

    /// `ssh-keygen -Y sign` over `payload`: the armored signature.
    fn sign(&self, key: Key, namespace: &str, payload: &[u8]) -> String {
        let mut child = Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
            .arg(self.dir.path().join(key.file()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh-keygen -Y sign");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(payload)
            .expect("payload");
        let out = child.wait_with_output().expect("ssh-keygen");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("armor")
    }

    /// A new branch `case-N` at a commit `git commit -S` made with `key`.
    fn git_signed(&mut self, key: Key) -> (String, String) {
        let repo = self.repo();
        self.cases += 1;
        let branch = format!("case-{}", self.cases);
        git(&repo, &["checkout", "-q", "-b", &branch, &self.parent]);
        let signing = self.dir.path().join(format!("{}.pub", key.file()));
        git(
            &repo,
            &[
                "-c",
                &format!("user.signingkey={}", signing.display()),
                "commit",
                "-q",
                "-S",
                "--allow-empty",
                "-m",
                &format!("policy {branch}"),
            ],
        );
        let id = git(&repo, &["rev-parse", "HEAD"]);
        git(&repo, &["checkout", "-q", "main"]);
        (branch, id)
    }

    /// A new branch at a commit object assembled by hand, signed by `key` in `namespace`
    /// (`None`: unsigned) and written in `shape`.
    fn hand(&mut self, key: Option<Key>, namespace: &str, shape: Shape) -> (String, String) {
        self.cases += 1;
        let branch = format!("case-{}", self.cases);
        let headers = format!(
            "tree {}\nparent {}\nauthor t <t@example.invalid> {TIME} +0000\ncommitter t <t@example.invalid> {TIME} +0000\n",
            self.tree, self.parent
        );
        let message = format!("\npolicy {branch}\n");
        let armor = key.map(|k| self.sign(k, namespace, format!("{headers}{message}").as_bytes()));
        let header = |armor: &str| {
            let mut h = String::from("gpgsig");
            for line in armor.lines() {
                h.push(' ');
                h.push_str(line);
                h.push('\n');
            }
            h
        };
        let object = match (armor, shape) {
            (None, _) => format!("{headers}{message}"),
            (Some(a), Shape::Header) => format!("{headers}{}{message}", header(&a)),
            (Some(a), Shape::Wrap64 | Shape::OneLine) => {
                let b64: String = a
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<Vec<_>>()
                    .concat();
                let width = if shape == Shape::Wrap64 {
                    64
                } else {
                    b64.len()
                };
                let body: Vec<&str> = b64
                    .as_bytes()
                    .chunks(width)
                    .map(|c| std::str::from_utf8(c).expect("ascii"))
                    .collect();
                let a = format!(
                    "-----BEGIN SSH SIGNATURE-----\n{}\n-----END SSH SIGNATURE-----\n",
                    body.join("\n")
                );
                format!("{headers}{}{message}", header(&a))
            }
            (Some(a), Shape::TextAfterEnd) => {
                format!(
                    "{headers}{}{message}",
                    header(&format!("{a}trailing words\n"))
                )
            }
            (Some(a), Shape::Crlf) => {
                let a: String = a.lines().map(|l| format!("{l}\r\n")).collect();
                format!("{headers}{}{message}", header(&a))
            }
            (Some(a), Shape::JunkSha256) => format!(
                "{headers}gpgsig-sha256 -----BEGIN SSH SIGNATURE-----\n junk\n{}{message}",
                header(&a)
            ),
            (Some(a), Shape::ValidThenJunk) => format!(
                "{headers}{}gpgsig -----BEGIN SSH SIGNATURE-----\n junk\n{message}",
                header(&a)
            ),
            (Some(a), Shape::JunkThenValid) => format!(
                "{headers}gpgsig -----BEGIN SSH SIGNATURE-----\n junk\n{}{message}",
                header(&a)
            ),
            (Some(_), Shape::InMessage) => {
                // Signed over the commit as it is without those lines: libgit2's reading.
                let payload = format!("{headers}{message}");
                let a = self.sign(key.expect("key"), namespace, payload.as_bytes());
                format!("{payload}{}", header(&a))
            }
            (Some(a), Shape::Tampered) => {
                format!("{headers}{}\npolicy {branch}, edited\n", header(&a))
            }
            (Some(a), Shape::Pgp) => format!(
                "{headers}{}{message}",
                header(&a.replace("SSH SIGNATURE", "PGP SIGNATURE"))
            ),
        };
        let id = hash_object(&self.repo(), object.as_bytes());
        git(
            &self.repo(),
            &["update-ref", &format!("refs/heads/{branch}"), &id],
        );
        (branch, id)
    }
}

fn hash_object(repo: &Path, object: &[u8]) -> String {
    let mut child = Command::new("git")
        .args([
            "hash-object",
            "--literally",
            "-t",
            "commit",
            "-w",
            "--stdin",
        ])
        .current_dir(repo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("git hash-object");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(object)
        .expect("object");
    let out = child.wait_with_output().expect("git hash-object");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `git verify-commit`'s verdict.
fn git_verifies(repo: &Path, allowed: &Path, commit: &str) -> bool {
    Command::new("git")
        .args(["-c"])
        .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
        .args(["verify-commit", commit])
        .current_dir(repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", repo)
        .stderr(Stdio::null())
        .status()
        .expect("git verify-commit")
        .success()
}

/// `tend pull --plan`'s verdict on a host that has no policy yet: it converges to the commit
/// (plan runs, the report names it) or refuses it (the run cannot start and says why).
fn tend_verifies(repo: &Path, branch: &str, allowed: &Path, commit: &str) -> bool {
    let sb = Sandbox::debian();
    let r = run(
        &[
            "pull",
            "--plan",
            "--url",
            repo.to_str().expect("utf8"),
            "--ref",
            branch,
            "--allowed-signers",
            allowed.to_str().expect("utf8"),
            "--root",
            sb.root().to_str().expect("utf8"),
            "--config",
            "/nonexistent/pull.toml",
            "--format",
            "json",
        ],
        &[],
    );
    match r.code {
        0 | 2 => {
            assert_eq!(r.json()["pull"]["applied"]["commit"], commit, "{r:?}");
            true
        }
        1 if r.stderr.contains("no verified policy to converge to") => {
            assert!(
                r.stderr.contains(commit),
                "the refusal names the commit: {r:?}"
            );
            false
        }
        // A file where no line parses verifies nothing: tend refuses it before fetching.
        1 if r
            .stderr
            .contains("no usable line: no commit can verify against it") =>
        {
            false
        }
        _ => panic!("tend pull neither converged nor refused: {r:?}"),
    }
}

/// One case: the allowed signers file's text and the commit's branch.
struct Case {
    name: &'static str,
    allowed: String,
    branch: String,
    commit: String,
    /// Where tend deliberately differs from git, why (docs/fleet.md says so too).
    refusal: Option<&'static str>,
}

#[test]
fn tend_verifies_exactly_the_commits_git_verify_commit_verifies() {
    let mut lab = Lab::new();
    let ops = lab.public(Key::Ops);
    let stranger = lab.public(Key::Stranger);
    let plain = format!("ops@example.com {ops}\n");
    let mut cases = Vec::new();
    let mut add = |name, allowed: String, (branch, commit): (String, String)| {
        cases.push(Case {
            name,
            allowed,
            branch,
            commit,
            refusal: None,
        });
    };

    // The signature: every key type, every way of writing it into the object.
    let signed = lab.git_signed(Key::Ops);
    add("git commit -S, ed25519", plain.clone(), signed.clone());
    for (name, key) in [
        ("git commit -S, ecdsa p256", Key::P256),
        ("git commit -S, ecdsa p384", Key::P384),
        ("git commit -S, ecdsa p521", Key::P521),
        ("git commit -S, rsa", Key::Rsa),
    ] {
        let allowed = format!("ops@example.com {}\n", lab.public(key));
        add(name, allowed, lab.git_signed(key));
    }
    add(
        "signed by a key not listed",
        plain.clone(),
        lab.git_signed(Key::Stranger),
    );
    add(
        "unsigned",
        plain.clone(),
        lab.hand(None, "git", Shape::Header),
    );
    for (name, shape) in [
        ("by hand, as git writes it", Shape::Header),
        ("armor re-wrapped at 64 columns", Shape::Wrap64),
        ("armor on one line", Shape::OneLine),
        ("text after the END line", Shape::TextAfterEnd),
        ("armor lines ending in CR LF", Shape::Crlf),
        (
            "a junk gpgsig-sha256 beside a valid gpgsig",
            Shape::JunkSha256,
        ),
        ("a valid gpgsig, then a junk one", Shape::ValidThenJunk),
        ("a junk gpgsig, then a valid one", Shape::JunkThenValid),
        ("the signature in the message, no header", Shape::InMessage),
        ("the message edited after signing", Shape::Tampered),
        ("a PGP armor", Shape::Pgp),
    ] {
        add(name, plain.clone(), lab.hand(Some(Key::Ops), "git", shape));
    }
    add(
        "signed in namespace file",
        plain.clone(),
        lab.hand(Some(Key::Ops), "file", Shape::Header),
    );
    add(
        "stranger's signature in the message",
        plain.clone(),
        lab.hand(Some(Key::Stranger), "git", Shape::InMessage),
    );

    // The allowed signers file, against one commit git signed.
    let s = || signed.clone();
    for (name, allowed) in [
        ("a negated principal", format!("!ops@example.com {ops}\n")),
        (
            "a negated principal beside the same one",
            format!("!ops@example.com,ops@example.com {ops}\n"),
        ),
        (
            "two principals",
            format!("ci@example.com,ops@example.com {ops}\n"),
        ),
        ("a principal pattern", format!("*@example.com {ops}\n")),
        (
            "a principal list ending in a comma",
            format!("ops@example.com, {ops}\n"),
        ),
        (
            "a principal list starting with a comma",
            format!(",ops@example.com {ops}\n"),
        ),
        (
            "a quoted principal with a space",
            format!("\"ops team\" {ops}\n"),
        ),
        (
            "a principal partly quoted",
            format!("ops,\"ci team\" {ops}\n"),
        ),
        ("an unterminated quote", format!("\"ops {ops}\n")),
        (
            "namespaces=\"git\"",
            format!("ops namespaces=\"git\" {ops}\n"),
        ),
        (
            "NAMESPACES=\"git\" in capitals",
            format!("ops NAMESPACES=\"git\" {ops}\n"),
        ),
        (
            "namespaces=\"file,git\"",
            format!("ops namespaces=\"file,git\" {ops}\n"),
        ),
        (
            "namespaces=\"file, git\"",
            format!("ops namespaces=\"file, git\" {ops}\n"),
        ),
        (
            "namespaces=\" git\"",
            format!("ops namespaces=\" git\" {ops}\n"),
        ),
        (
            "namespaces=git unquoted",
            format!("ops namespaces=git {ops}\n"),
        ),
        (
            "two namespaces clauses",
            format!("ops namespaces=\"git\",namespaces=\"git\" {ops}\n"),
        ),
        ("namespaces=\"*\"", format!("ops namespaces=\"*\" {ops}\n")),
        (
            "namespaces=\"gi?\"",
            format!("ops namespaces=\"gi?\" {ops}\n"),
        ),
        (
            "namespaces=\"!file,*\"",
            format!("ops namespaces=\"!file,*\" {ops}\n"),
        ),
        (
            "namespaces=\"*,!git\"",
            format!("ops namespaces=\"*,!git\" {ops}\n"),
        ),
        (
            "namespaces=\"file\"",
            format!("ops namespaces=\"file\" {ops}\n"),
        ),
        ("namespaces=\"\"", format!("ops namespaces=\"\" {ops}\n")),
        (
            "the key for file first, then for git",
            format!("ops namespaces=\"file\" {ops}\nops namespaces=\"git\" {ops}\n"),
        ),
        (
            "the key for file first, then plain",
            format!("ops namespaces=\"file\" {ops}\nops {ops}\n"),
        ),
        (
            "the key for git under another principal first",
            format!("ci namespaces=\"git\" {ops}\nops {ops}\n"),
        ),
        (
            "the key for file, another principal's line for git",
            format!("ops namespaces=\"file\" {ops}\nci namespaces=\"git\" {ops}\n"),
        ),
        (
            "garbage before the line",
            format!("this is not a line\n{plain}"),
        ),
        ("a line with no key before it", format!("ops\n{plain}")),
        (
            "an unknown option on another key's line",
            format!("ci no-touch-required {stranger}\n{plain}"),
        ),
        (
            "an unknown option on the key's line",
            format!("ops no-touch-required {ops}\n"),
        ),
        (
            "a corrupt key before the line",
            format!("ci ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\n{plain}"),
        ),
        ("a UTF-8 byte order mark", format!("\u{feff}{plain}")),
        (
            "a UTF-8 byte order mark, then the line",
            format!("\u{feff}# signers\n{plain}"),
        ),
        ("CR LF line ends", plain.replace('\n', "\r\n")),
        (
            "tabs between fields",
            format!("ops@example.com\t{}\n", ops.replacen(' ', "\t", 1)),
        ),
        (
            "leading blanks and a comment",
            format!("  # who\n\t{plain}"),
        ),
        ("no final newline", plain.trim_end().to_string()),
        ("only another key", format!("ops@example.com {stranger}\n")),
        ("cert-authority", format!("ops cert-authority {ops}\n")),
        (
            "cert-authority, then plain",
            format!("ops cert-authority {ops}\n{plain}"),
        ),
        ("an empty file", String::new()),
        (
            "valid-after in the past",
            format!("ops valid-after=\"20261201Z\" {ops}\n"),
        ),
        (
            "valid-after in the future",
            format!("ops valid-after=\"20270101Z\" {ops}\n"),
        ),
        (
            "valid-before in the past",
            format!("ops valid-before=\"20261201Z\" {ops}\n"),
        ),
        (
            "valid-before in the past, then a plain line",
            format!("ops valid-before=\"20261201Z\" {ops}\nci {ops}\n"),
        ),
        (
            "valid-after and valid-before around the commit",
            format!("ops valid-after=\"20261201Z\",valid-before=\"20271201Z\" {ops}\n"),
        ),
        (
            "valid-after in UTC",
            format!("ops valid-after=\"202612010000UTC\" {ops}\n"),
        ),
        (
            "valid-before before valid-after",
            format!("ops valid-after=\"20271201Z\",valid-before=\"20261201Z\" {ops}\n"),
        ),
        ("a bad time", format!("ops valid-after=\"2026\" {ops}\n")),
    ] {
        add(name, allowed, s());
    }
    // A time in the host's zone: ssh-keygen reads it with mktime, tend does not read zones.
    cases.push(Case {
        name: "valid-before in local time",
        allowed: format!("ops valid-before=\"20301201\" {ops}\n"),
        branch: signed.0.clone(),
        commit: signed.1.clone(),
        refusal: Some("a validity time without Z or UTC: the line is skipped"),
    });
    // The hand-built commit's time is fixed, so the window can sit around it exactly.
    let hand = lab.hand(Some(Key::Ops), "git", Shape::Header);
    for (name, allowed) in [
        (
            "valid-before the commit's second",
            format!("ops valid-before=\"20261206233320Z\" {ops}\n"),
        ),
        (
            "valid-before a second earlier",
            format!("ops valid-before=\"20261206233319Z\" {ops}\n"),
        ),
        (
            "valid-after the commit's second",
            format!("ops valid-after=\"20261206233320Z\" {ops}\n"),
        ),
        (
            "valid-after a second later",
            format!("ops valid-after=\"20261206233321Z\" {ops}\n"),
        ),
    ] {
        cases.push(Case {
            name,
            allowed,
            branch: hand.0.clone(),
            commit: hand.1.clone(),
            refusal: None,
        });
    }
    assert!(cases.len() >= 60, "{} cases", cases.len());

    // Another branch holds a malformed commit: fetching one ref must not read it.
    let broken = hash_object(
        &lab.repo(),
        format!("tree {}\nauthor nobody\ncommitter\n\nbroken\n", lab.tree).as_bytes(),
    );
    git(&lab.repo(), &["update-ref", "refs/heads/broken", &broken]);

    let mut table = String::new();
    let mut wrong = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let allowed = lab.dir.path().join(format!("allowed-{i}"));
        std::fs::write(&allowed, &case.allowed).expect("allowed signers");
        let reference = git_verifies(&lab.repo(), &allowed, &case.commit);
        let tend = tend_verifies(&lab.repo(), &case.branch, &allowed, &case.commit);
        let verdict = |v: bool| if v { "verified" } else { "refused" };
        table.push_str(&format!(
            "{:<55} git: {:<9} tend: {}\n",
            case.name,
            verdict(reference),
            verdict(tend)
        ));
        match case.refusal {
            None if reference != tend => wrong.push(case.name),
            // A documented refusal: git verifies, tend refuses.
            Some(_) if !reference || tend => wrong.push(case.name),
            _ => {}
        }
    }
    println!("{table}");
    assert!(
        wrong.is_empty(),
        "tend and git differ on {wrong:?}:\n{table}"
    );
    // The table is not one-sided: both verdicts occur.
    assert!(table.contains("git: verified") && table.contains("git: refused"));
}
