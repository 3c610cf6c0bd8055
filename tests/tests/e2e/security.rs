//! tend as root among users it does not trust: an unprivileged user (`nobody`, through
//! `runuser`) plants symlinks on managed paths, swaps them in a loop with
//! `renameat2(RENAME_EXCHANGE)` while tend applies, prepares the state directory, and feeds
//! hostile input. Every case checks that root's files were not touched.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tend_tests::{resource, Reaped, Sandbox};

pub(crate) const NOBODY: u32 = 65534;

/// A sandbox `nobody` can walk into, with a user directory `/u` it owns and a protected
/// directory `/protected` (root, 0700) holding `config` (root, 0600, "root's secret").
pub(crate) fn hostile_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    for d in [sb.dir.path().to_path_buf(), sb.root()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::fs::create_dir_all(sb.path("/protected")).expect("mkdir");
    sb.set_mode("/protected", 0o700);
    sb.write("/protected/config", "root's secret");
    sb.set_mode("/protected/config", 0o600);
    std::fs::create_dir_all(sb.path("/u/app")).expect("mkdir");
    sb.write("/u/app/config", "user's own");
    for p in ["/u", "/u/app", "/u/app/config"] {
        std::os::unix::fs::chown(sb.path(p), Some(NOBODY), Some(NOBODY)).expect("chown");
    }
    sb
}

pub(crate) fn assert_protected_untouched(sb: &Sandbox) {
    let meta = std::fs::metadata(sb.path("/protected/config")).expect("protected config");
    assert_eq!(meta.uid(), 0, "root's file changed owner");
    assert_eq!(meta.mode() & 0o7777, 0o600, "root's file changed mode");
    assert_eq!(sb.read("/protected/config"), "root's secret");
    let names: Vec<String> = std::fs::read_dir(sb.path("/protected"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["config"], "something was written into /protected");
}

/// As `nobody`: plant `/u/link -> /protected` (absolute real path) and swap it with `/u/app`
/// in a loop (RENAME_EXCHANGE), for at most `secs` seconds.
pub(crate) fn swapper(sb: &Sandbox, secs: u64) -> Reaped {
    swap_in_loop(
        &sb.path("/u/app"),
        &sb.path("/u/link"),
        &sb.path("/protected"),
        secs,
    )
}

/// As `nobody`: plant `link -> target` and swap it with `dir` in a loop (RENAME_EXCHANGE) for at
/// most `secs` seconds, or until a file `.stop` appears beside them; the number of swaps is
/// printed on stdout at the end (the race was run, not just started).
pub(crate) fn swap_in_loop(dir: &Path, link: &Path, target: &Path, secs: u64) -> Reaped {
    let script = format!(
        r#"
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
a, b = "{a}", "{b}"
os.symlink("{target}", b)
stop = os.path.join(os.path.dirname(a), ".stop")
end = time.time() + {secs}
n = 0
while time.time() < end and not os.path.exists(stop):
    libc.syscall(316, -100, a.encode(), -100, b.encode(), 2)  # renameat2(..., RENAME_EXCHANGE)
    n += 1
try:
    print(n, flush=True)
except BrokenPipeError:
    pass
"#,
        a = dir.display(),
        b = link.display(),
        target = target.display(),
    );
    let child = Command::new("runuser")
        .args(["-u", "nobody", "--", "/usr/bin/python3", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("runuser");
    // Let the link appear before tend starts.
    for _ in 0..50 {
        if std::fs::symlink_metadata(link).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Reaped(child)
}

#[test]
fn a_planted_parent_symlink_never_hands_roots_file_to_a_user() {
    let sb = hostile_sandbox();
    std::fs::remove_dir_all(sb.path("/u/app")).expect("rm");
    std::os::unix::fs::symlink(sb.path("/protected"), sb.path("/u/app")).expect("ln");
    std::os::unix::fs::lchown(sb.path("/u/app"), Some(NOBODY), Some(NOBODY)).expect("lchown");
    sb.write_manifest(
        "[file.config]\npath = \"/u/app/config\"\nmode = \"0644\"\nowner = \"65534\"\n\n\
         [directory.ssh]\npath = \"/u/app/.ssh\"\nowner = \"65534\"\n",
    );
    let (code, report) = sb.apply_json();
    assert_eq!(code, 4, "{report:#}");
    for address in ["file.config", "directory.ssh"] {
        let err = resource(&report, address)["error"]
            .as_str()
            .expect("error")
            .to_string();
        assert!(
            err.contains("u/app is a symlink owned by uid 65534"),
            "{address}: {err}"
        );
    }
    let plan = sb.plan();
    assert_eq!(plan.code, 4, "plan refuses too: {}", plan.stdout);
    assert_protected_untouched(&sb);
}

#[test]
fn swapping_a_parent_for_a_symlink_during_200_chmods_never_wins() {
    let sb = hostile_sandbox();
    let _attacker = swapper(&sb, 60);
    let manifests = [
        "[file.config]\npath = \"/u/app/config\"\nmode = \"0644\"\nowner = \"65534\"\n",
        "[file.config]\npath = \"/u/app/config\"\nmode = \"0640\"\nowner = \"65534\"\n",
    ];
    let mut refused = 0;
    for i in 0..200 {
        sb.write_manifest(manifests[i % 2]);
        let run = sb.apply();
        assert!(matches!(run.code, 0 | 2 | 4), "{}", run.stderr);
        refused += usize::from(run.code == 4);
        assert_protected_untouched(&sb);
    }
    // The race was really run: some applies met the symlink and refused it.
    assert!(refused > 0, "the swapper never got in the way");
}

#[test]
fn swapping_a_parent_for_a_symlink_during_200_writes_never_lands_in_roots_directory() {
    let sb = hostile_sandbox();
    let _attacker = swapper(&sb, 60);
    for i in 0..200 {
        sb.write_manifest(&format!(
            "[file.config]\npath = \"/u/app/config\"\ncontent = \"version {i}\"\n\n\
             [env_file.app]\npath = \"/u/app/.env\"\n[env_file.app.set]\nK = \"{i}\"\n"
        ));
        let run = sb.apply();
        assert!(matches!(run.code, 0 | 2 | 4 | 6), "{}", run.stderr);
        assert_protected_untouched(&sb);
    }
}

#[test]
fn a_state_directory_another_user_prepared_is_refused_before_use() {
    let sb = Sandbox::new();
    sb.write_manifest("[file.motd]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n");
    std::fs::create_dir_all(sb.state_dir().join("secrets")).expect("mkdir");
    std::fs::write(sb.state_dir().join("secrets/db"), "chosen-by-attacker").expect("w");
    std::os::unix::fs::chown(sb.state_dir(), Some(NOBODY), Some(NOBODY)).expect("chown");
    let run = sb.apply();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("is owned by uid 65534, not uid 0; tend keeps secrets"),
        "{}",
        run.stderr
    );
    assert!(!sb.path("/etc/motd").exists(), "nothing may run");
    // A symlinked state directory: refused before its target is touched.
    let target = sb.dir.path().join("elsewhere");
    std::fs::create_dir(&target).expect("mkdir");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::remove_dir_all(sb.state_dir()).expect("rm");
    std::os::unix::fs::symlink(&target, sb.state_dir()).expect("ln");
    let run = sb.apply();
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("is a symlink"), "{}", run.stderr);
    assert_eq!(
        std::fs::metadata(&target).expect("m").mode() & 0o777,
        0o755,
        "the link's target was not chmodded"
    );
}

#[test]
fn a_planted_lock_symlink_is_not_truncated_through() {
    let sb = Sandbox::new();
    sb.write_manifest("[file.motd]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n");
    assert_eq!(sb.apply().code, 2);
    sb.write("/victim", "precious");
    std::fs::remove_file(sb.state_dir().join("lock")).expect("rm lock");
    std::os::unix::fs::symlink(sb.path("/victim"), sb.state_dir().join("lock")).expect("ln");
    let run = sb.apply();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("lock file"), "{}", run.stderr);
    assert_eq!(sb.read("/victim"), "precious");
}

#[test]
fn a_short_stored_secret_is_refused_not_scrubbed_character_by_character() {
    let sb = Sandbox::new();
    sb.write_manifest(
        "[file.key]\npath = \"/etc/key\"\ncontent = \"{{ secret('db', 16) }}\"\nsensitive = true\n",
    );
    assert_eq!(sb.apply().code, 2);
    std::fs::write(sb.state_dir().join("secrets/db"), "").expect("empty it");
    let run = sb.plan();
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains("fewer than the minimum 8"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_fifo_as_a_source_is_refused_without_hanging() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/srv")).expect("mkdir");
    nix::unistd::mkfifo(&sb.path("/srv/src"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    sb.write_manifest(
        "[file.copy]\npath = \"/etc/copy\"\nsource = \"/srv/src\"\n\n\
         [env_file.e]\npath = \"/etc/app.env\"\ncreate_from = \"/srv/src\"\n",
    );
    let started = std::time::Instant::now();
    let (code, report) = {
        let r = sb.tend("plan", &["--format", "json"]);
        (r.code, r.json())
    };
    assert!(started.elapsed() < Duration::from_secs(90));
    assert_eq!(code, 4);
    for a in ["file.copy", "env_file.e"] {
        let err = resource(&report, a)["error"]
            .as_str()
            .expect("error")
            .to_string();
        assert!(
            err.contains("it is a FIFO; tend reads only regular files"),
            "{a}: {err}"
        );
    }
}

#[test]
fn reports_are_not_written_through_symlinks_or_into_world_writable_directories() {
    let sb = Sandbox::new();
    sb.write_manifest("[file.motd]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n");
    let out = sb.dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    sb.write("/victim", "precious");
    std::os::unix::fs::symlink(sb.path("/victim"), out.join("report.json")).expect("ln");
    let report = out.join("report.json");
    let run = sb.tend("plan", &["--report", report.to_str().expect("utf8")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        sb.read("/victim"),
        "precious",
        "the link's target is untouched"
    );
    let written = std::fs::symlink_metadata(&report).expect("report");
    assert!(written.is_file(), "the symlink was replaced by the report");
    assert_eq!(written.mode() & 0o777, 0o600);

    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let metrics = out.join("tend.prom");
    let run = sb.tend("plan", &["--metrics", metrics.to_str().expect("utf8")]);
    assert_eq!(run.code, 6, "a record that cannot be written fails the run");
    assert!(
        run.stderr.contains("can be written by anyone"),
        "{}",
        run.stderr
    );
    assert!(!metrics.exists());
}

#[test]
fn a_hostile_fact_quoted_with_shell_quote_stays_a_word() {
    let sb = Sandbox::new();
    let pwned = sb.path("/PWNED");
    sb.write(
        "/etc/hostname",
        &format!("evil$(touch {})\n", pwned.display()),
    );
    sb.write_manifest(
        "[exec.name]\ncommand = \"printf %s {{ facts.hostname | shell_quote }} > \\\"$TEND_ROOT/name\\\"\"\ncreates = \"/name\"\n",
    );
    let r = sb.apply();
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(!pwned.exists(), "the fact ran as a command");
    assert_eq!(
        sb.read("/name"),
        format!("evil$(touch {})", pwned.display())
    );
    // Unquoted, tend says so before it runs anything.
    sb.write_manifest(
        "[exec.name]\ncommand = \"echo {{ facts.hostname }}\"\ncreates = \"/name\"\n",
    );
    let r = sb.plan();
    assert!(
        r.stderr.contains("is pasted into a shell command unquoted"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("facts.hostname | shell_quote"),
        "{}",
        r.stderr
    );
    // shell_quote inside the command's own double quotes protects nothing: said too.
    sb.write_manifest(
        "[exec.name]\ncommand = \"echo \\\"x {{ facts.hostname | shell_quote }}\\\"\"\ncreates = \"/name\"\n",
    );
    let r = sb.plan();
    assert!(
        r.stderr.contains("sits inside quotes of the command's own"),
        "{}",
        r.stderr
    );
    // Outside any quotes (a quoted redirect after it): no warning.
    sb.write_manifest(
        "[exec.name]\ncommand = \"printf %s {{ facts.hostname | shell_quote }} > \\\"$TEND_ROOT/name\\\"\"\ncreates = \"/name\"\n",
    );
    let r = sb.plan();
    assert!(!r.stderr.contains("shell_quote"), "{}", r.stderr);
}

#[test]
fn credentials_in_a_git_url_never_reach_output() {
    let sb = Sandbox::new();
    sb.write_manifest(
        "[git.app]\npath = \"/srv/app\"\nurl = \"https://oauth2:glpat-TOPSECRET@127.0.0.1:9/x.git\"\nref = \"main\"\n",
    );
    for sub in ["plan", "apply"] {
        let r = sb.tend(sub, &["--format", "json"]);
        assert!(!r.stdout.contains("TOPSECRET"), "{sub}: {}", r.stdout);
        assert!(!r.stderr.contains("TOPSECRET"), "{sub}: {}", r.stderr);
        assert!(r.stdout.contains("***@127.0.0.1:9"), "{sub}: {}", r.stdout);
    }
}

#[test]
fn output_of_a_command_given_a_secret_is_withheld() {
    let sb = Sandbox::new();
    sb.write_manifest(
        "[exec.leak]\ncommand = \"echo token starts with $(printf %s \\\"$T\\\" | cut -c1-6); touch \\\"$TEND_ROOT/never\\\"\"\nenv = { T = \"{{ secret('api', 24) }}\" }\ncreates = \"/never\"\n",
    );
    let r = sb.tend("apply", &["--format", "json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let report = r.json();
    let notes = resource(&report, "exec.leak")["notes"].to_string();
    assert!(notes.contains("output withheld"), "{notes}");
    assert!(!notes.contains("token starts with"), "{notes}");
}

/// `tend` under `prlimit`: a regression to unbounded memory or time kills this command, not the
/// machine, and fails the test.
fn tend_limited(args: &[&str]) -> std::process::Output {
    Command::new("prlimit")
        .args(["--as=4294967296", "--cpu=60", "--"])
        .arg(tend_tests::tend_bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("prlimit")
}

#[test]
fn hostile_env_files_get_an_error_not_a_crash() {
    let sb = Sandbox::new();
    let nested = sb.dir.path().join("nested.env");
    let depth = 100_000;
    std::fs::write(
        &nested,
        format!("X={}x{}\n", "${X:-".repeat(depth), "}".repeat(depth)),
    )
    .expect("write");
    let out = tend_limited(&["inspect", "env", nested.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nested more than 32 levels"), "{stderr}");
    assert!(stderr.len() < 2000, "the error quotes the whole input");

    // 10 MB of ordinary lines: linear, well inside the CPU limit.
    let big = sb.dir.path().join("big.env");
    let text: String = (0..500_000)
        .map(|i| format!("KEY_{i}=value{i}\n"))
        .collect();
    std::fs::write(&big, text).expect("write");
    let out = tend_limited(&["inspect", "env", big.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);

    // The same nesting arriving from upstream through add_missing_from fails one resource.
    std::fs::create_dir_all(sb.path("/srv")).expect("mkdir");
    std::fs::copy(&nested, sb.path("/srv/.env.example")).expect("copy");
    sb.write_manifest("[env_file.e]\npath = \"/srv/.env\"\ncreate_from = \"/srv/.env.example\"\n");
    let root = sb.root();
    let manifest = sb.manifest_path();
    let out = tend_limited(&[
        "plan",
        manifest.to_str().expect("utf8"),
        "--root",
        root.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
}

/// Two expansion bombs, each under 512 MiB of address space: nesting as deep as allowed over a
/// 14 MB value (memory follows the output, not input times depth), and keys that each
/// reference the previous one twice (the file's total is bounded, and the error names the key).
#[test]
fn env_expansion_is_bounded_in_bytes_per_value_and_per_file() {
    let sb = Sandbox::new();
    let limited = |args: &[&str]| {
        Command::new("prlimit")
            .args(["--as=536870912", "--cpu=60", "--"])
            .arg(tend_tests::tend_bin())
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("prlimit")
    };
    let nested = sb.dir.path().join("nested.env");
    let unit = format!("{}x{}", "${X:-".repeat(30), "}".repeat(30));
    std::fs::write(
        &nested,
        format!("X={}\n", unit.repeat(14_000_000 / unit.len())),
    )
    .expect("write");
    let out = limited(&["inspect", "env", nested.to_str().expect("utf8")]);
    // Each unit expands to one `x`: a 90 KB answer, within the limit.
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);
    assert!(String::from_utf8_lossy(&out.stdout).contains("xxxxxxxx"));

    let bomb = sb.dir.path().join("bomb.env");
    let mut text = String::from("K0=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n");
    for i in 1..40 {
        text.push_str(&format!("K{i}=${{K{p}}}${{K{p}}}\n", p = i - 1));
    }
    std::fs::write(&bomb, &text).expect("write");
    let out = limited(&["inspect", "env", bomb.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
    assert!(
        out.stdout.len() < 1 << 20,
        "printed {} bytes",
        out.stdout.len()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("expand to more than 16 MiB by key K")
            || stderr.contains("more than 1048576 bytes"),
        "{stderr}"
    );
    std::fs::create_dir_all(sb.path("/srv")).expect("mkdir");
    std::fs::copy(&bomb, sb.path("/srv/.env.example")).expect("copy");
    sb.write_manifest("[env_file.e]\npath = \"/srv/.env\"\ncreate_from = \"/srv/.env.example\"\n");
    let root = sb.root();
    let manifest = sb.manifest_path();
    for sub in ["plan", "apply"] {
        let out = limited(&[
            sub,
            manifest.to_str().expect("utf8"),
            "--root",
            root.to_str().expect("utf8"),
        ]);
        assert_eq!(out.status.code(), Some(4), "{sub}: {out:?}");
    }
}

#[test]
fn under_umask_000_what_tend_creates_has_the_documented_modes() {
    let sb = Sandbox::new();
    sb.write_manifest("[file.deep]\npath = \"/a/b/c/file\"\ncontent = \"x\"\n");
    let report = sb.dir.path().join("report.json");
    let metrics = sb.dir.path().join("tend.prom");
    let script = format!(
        "umask 000; exec {} apply {} --root {} --report {} --metrics {}",
        tend_tests::tend_bin().display(),
        sb.manifest_path().display(),
        sb.root().display(),
        report.display(),
        metrics.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("sh");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    for d in ["/a", "/a/b", "/a/b/c"] {
        assert_eq!(sb.mode(d), 0o755, "{d}");
    }
    assert_eq!(sb.mode("/a/b/c/file"), 0o644);
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("m").mode() & 0o777;
    assert_eq!(mode(&report), 0o600);
    assert_eq!(mode(&metrics), 0o644);
    assert_eq!(mode(&sb.state_dir()), 0o700);
    assert_eq!(mode(&sb.state_dir().join("last-run.json")), 0o600);
}

#[test]
fn symlinks_inside_a_root_never_lead_out_of_it() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/run")).expect("mkdir");
    std::fs::create_dir_all(sb.path("/var")).expect("mkdir");
    // As every Debian root has it, and one that climbs out with `..`.
    std::os::unix::fs::symlink("/run", sb.path("/var/run")).expect("ln");
    std::os::unix::fs::symlink("../../../../../../../run", sb.path("/var/up")).expect("ln");
    sb.write_manifest(
        "[file.pid]\npath = \"/var/run/app.pid\"\ncontent = \"1\"\n\n\
         [file.up]\npath = \"/var/up/up.pid\"\ncontent = \"2\"\n",
    );
    assert_eq!(sb.apply().code, 2);
    assert_eq!(sb.read("/run/app.pid"), "1");
    assert_eq!(sb.read("/run/up.pid"), "2");
    assert!(
        !std::path::Path::new("/run/up.pid").exists()
            && !std::path::Path::new("/run/app.pid").exists(),
        "a write left the root"
    );
    assert_eq!(sb.apply().code, 0);
}

#[test]
fn a_state_directory_reached_through_a_link_in_the_root_is_refused() {
    // An image whose `var` points at the machine's own directories: the state directory (and the
    // secrets in it) must not land outside the root.
    let sb = Sandbox::new();
    let outside = sb.dir.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    std::os::unix::fs::symlink(&outside, sb.path("/var")).expect("ln");
    sb.write_manifest("[file.f]\npath = \"/etc/f\"\ncontent = \"{{ secret('k', 16) }}\"\n");
    let r = sb.apply();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("goes through a symlink"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0);
    assert!(!sb.path("/etc/f").exists());
}

/// An image whose `var/lib` a user owns: they could swap the state directory (or its parent)
/// for a link between tend's check and its use, so the run refuses to start.
#[test]
fn a_state_directory_under_a_users_directory_in_the_root_is_refused() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/var/lib")).expect("mkdir");
    std::os::unix::fs::chown(sb.path("/var/lib"), Some(NOBODY), Some(NOBODY)).expect("chown");
    sb.write_manifest("[file.f]\npath = \"/etc/f\"\ncontent = \"x\"\n");
    let r = sb.apply();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("which is owned by uid 65534"),
        "{}",
        r.stderr
    );
    assert!(!sb.path("/var/lib/tend").exists());
    assert!(!sb.path("/etc/f").exists());
}

#[test]
fn names_that_would_become_flags_or_directives_are_refused_at_load() {
    let sb = Sandbox::new();
    for (manifest, said) in [
        (
            "[package.p]\nnames = [\"-oAPT::Get::AllowUnauthenticated=true\"]\n",
            "is not a Debian package name",
        ),
        (
            "[nginx_site.s]\npath = \"/etc/s.conf\"\nserver_names = [\"a.test; include /etc/shadow\"]\nupstream = \"http://127.0.0.1:1\"\ntls = { cert = \"/c\", key = \"/k\" }\n",
            "is not a server name",
        ),
        (
            "[volume.v]\nname = \"../../containers/create\"\n",
            "is not a Docker object name",
        ),
    ] {
        sb.write_manifest(manifest);
        let r = sb.tend("check", &[]);
        assert_eq!(r.code, 1, "{manifest}: {}", r.stderr);
        assert!(r.stderr.contains(said), "{manifest}: {}", r.stderr);
    }
}

#[test]
fn restore_puts_back_the_recorded_mode_and_owner_not_the_current_ones() {
    let sb = Sandbox::new();
    sb.write("/etc/app.conf", "secret settings\n");
    sb.set_mode("/etc/app.conf", 0o600);
    std::os::unix::fs::chown(sb.path("/etc/app.conf"), Some(NOBODY), Some(NOBODY)).expect("chown");
    sb.write_manifest("[file.conf]\npath = \"/etc/app.conf\"\ncontent = \"managed\\n\"\n");
    assert_eq!(sb.apply().code, 2);
    // Loosened and handed to root since: restore must not keep that.
    sb.set_mode("/etc/app.conf", 0o666);
    std::os::unix::fs::chown(sb.path("/etc/app.conf"), Some(0), Some(0)).expect("chown");
    let r = sb.restore("/etc/app.conf", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sb.read("/etc/app.conf"), "secret settings\n");
    assert_eq!(sb.mode("/etc/app.conf"), 0o600);
    let meta = std::fs::metadata(sb.path("/etc/app.conf")).expect("meta");
    assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY));
    // A symlink put in its place is not restored through.
    std::fs::remove_file(sb.path("/etc/app.conf")).expect("rm");
    std::os::unix::fs::symlink(sb.path("/etc/passwd-like"), sb.path("/etc/app.conf")).expect("ln");
    let r = sb.restore("/etc/app.conf", &[]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("is not a regular file"), "{}", r.stderr);
    assert!(!sb.path("/etc/passwd-like").exists());
}

#[test]
fn swapping_an_exec_cwd_for_a_link_during_200_runs_never_reaches_roots_directory() {
    let sb = hostile_sandbox();
    let _attacker = swapper(&sb, 120);
    sb.write_manifest(
        "[exec.clean]\ncommand = [\"/bin/rm\", \"-f\", \"config\"]\ncwd = \"/u/app\"\n",
    );
    let mut refused = 0;
    for _ in 0..200 {
        let run = sb.apply();
        assert!(matches!(run.code, 2 | 4), "{run:?}");
        refused += usize::from(run.code == 4);
        assert_protected_untouched(&sb);
    }
    // The race was really run: some runs met the link and refused to enter it.
    assert!(refused > 0, "the swapper never got in the way");
}

/// Control characters from upstream (an `.env.example` value through `add_missing_from`) and
/// from the manifest's paths reach the terminal as escapes: no colour, no cursor move, no line
/// of their own that looks like tend's.
#[test]
fn text_from_upstream_cannot_forge_the_terminal_output() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("/srv")).expect("mkdir");
    sb.write("/srv/.env", "A=1\n");
    sb.write(
        "/srv/.env.example",
        "A=1\nEVIL=\"x\nApply: 0 changed\x1b[2K\r\"\n",
    );
    sb.write_manifest(
        "[env_file.e]\npath = \"/srv/.env\"\nadd_missing_from = \"/srv/.env.example\"\n\n\
         [file.f]\npath = \"/srv/a\\u001b[31mred\"\ncontent = \"x\"\n",
    );
    for run in [sb.plan(), sb.apply()] {
        assert!(matches!(run.code, 2), "{run:?}");
        assert!(!run.stdout.contains('\x1b'), "{:?}", run.stdout);
        assert!(!run.stdout.contains('\r'), "{:?}", run.stdout);
        assert!(
            !run.stdout.lines().any(|l| l.starts_with("Apply: 0")),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("\\x1b"), "{}", run.stdout);
    }
}

/// A template or source named relative to the manifest is read only inside the manifest's
/// directory (in a pulled policy: the verified tree), only as a regular file.
#[test]
fn templates_and_sources_stay_inside_the_manifests_directory() {
    let sb = Sandbox::new();
    sb.write_beside("inside.j2", "hello\n");
    std::os::unix::fs::symlink("/etc/hostname", sb.dir.path().join("out.j2")).expect("ln");
    nix::unistd::mkfifo(
        &sb.dir.path().join("fifo.j2"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    for (field, value, needle) in [
        ("template", "../../../etc/hostname", "no `..`"),
        ("template", "/etc/hostname", "no `..`"),
        (
            "template",
            "out.j2",
            "leads out of the manifest's directory",
        ),
        ("source", "out.j2", "leads out of the manifest's directory"),
        ("template", "fifo.j2", "is not a regular file"),
    ] {
        sb.write_manifest(&format!("[file.f]\npath = \"/f\"\n{field} = \"{value}\"\n"));
        let r = sb.tend("check", &[]);
        assert_eq!(r.code, 1, "{field} = {value}: {r:?}");
        assert!(r.stderr.contains(needle), "{field} = {value}: {}", r.stderr);
    }
    sb.write_manifest("[file.f]\npath = \"/f\"\ntemplate = \"inside.j2\"\n");
    assert_eq!(sb.tend("check", &[]).code, 0);
}

/// `tend inspect env` (run as root) reads as tend reads every file: a user's symlink to a root
/// file is refused, a FIFO does not hang it, a device does not fill memory.
#[test]
fn inspect_env_follows_no_users_link_and_reads_only_regular_files() {
    let sb = hostile_sandbox();
    let link = sb.path("/u/env-link");
    std::os::unix::fs::symlink(sb.path("/protected/config"), &link).expect("ln");
    std::os::unix::fs::lchown(&link, Some(NOBODY), Some(NOBODY)).expect("lchown");
    let zero = sb.path("/u/zero");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("ln");
    let fifo = sb.path("/u/fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    for path in [&link, &zero, &fifo] {
        let out = tend_limited(&["inspect", "env", path.to_str().expect("utf8")]);
        assert_eq!(out.status.code(), Some(1), "{path:?}: {out:?}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("root's secret"),
            "{path:?}"
        );
    }
}

/// A list item of an apt source is one word: a line break would inject a deb822 field.
#[test]
fn apt_source_fields_cannot_inject_lines() {
    let sb = Sandbox::new();
    for bad in [
        "uris = [\"http://deb.example/ Signed-By: /tmp/k\"]",
        "uris = [\"http://deb.example/\\nSigned-By: /tmp/k\"]",
        "uris = \"http://deb.example/\\nSigned-By: /tmp/k\"",
    ] {
        sb.write_manifest(&format!(
            "[apt_repo.r]\n{bad}\nsuites = [\"stable\"]\ncomponents = [\"main\"]\nkey = {{ url = \"https://deb.example/k.asc\", fingerprint = \"0123456789ABCDEF0123456789ABCDEF01234567\" }}\n"
        ));
        let r = sb.tend("check", &[]);
        assert_eq!(r.code, 1, "{bad}: {r:?}");
        assert!(r.stderr.contains("`uris`"), "{bad}: {}", r.stderr);
    }
}

/// An audit as a user other than root: a root-only file it cannot read is `unknown` with
/// reason class `permission` — never drift, never "0 bytes" — and root's state directory is
/// left alone (said once), the report saying the run was unprivileged.
#[test]
fn an_audit_as_another_user_never_calls_what_it_cannot_read_drift() {
    let sb = Sandbox::new();
    for d in [sb.dir.path().to_path_buf(), sb.root()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    sb.write("/etc/app/secret.conf", "key=1\n");
    sb.set_mode("/etc/app/secret.conf", 0o600);
    sb.write("/etc/app/open.conf", "x\n");
    // A file in a directory it may not enter, and a dpkg database it may not read.
    sb.write("/etc/private/x.conf", "x\n");
    sb.set_mode("/etc/private", 0o700);
    sb.write(
        "/var/lib/dpkg/status",
        "Package: curl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 7.88.1-10\n\n",
    );
    sb.set_mode("/var/lib/dpkg/status", 0o600);
    std::fs::create_dir_all(sb.state_dir()).expect("mkdir");
    sb.set_mode("/var/lib/tend", 0o700);
    sb.write_manifest(
        "[file.secret]\npath = \"/etc/app/secret.conf\"\ncontent = \"key=1\\n\"\n\n\
         [file.open]\npath = \"/etc/app/open.conf\"\ncontent = \"y\\n\"\n\n\
         [file.hidden]\npath = \"/etc/private/x.conf\"\ncontent = \"x\\n\"\n\n\
         [package.curl]\nnames = [\"curl\"]\n",
    );
    std::fs::set_permissions(sb.manifest_path(), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let bin = tend_tests::tend_bin();
    let copy = sb.dir.path().join("tend");
    std::fs::copy(&bin, &copy).expect("copy tend");
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(&copy)
        .arg("plan")
        .arg(sb.manifest_path())
        .args([
            "--root",
            sb.root().to_str().expect("utf8"),
            "--format",
            "json",
        ])
        .output()
        .expect("runuser");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    for address in ["file.secret", "file.hidden", "package.curl"] {
        let r = resource(&report, address);
        assert_eq!(r["status"], "unknown", "{r:#}");
        assert_eq!(r["reason_class"], "permission", "{r:#}");
    }
    assert_eq!(resource(&report, "file.open")["status"], "would_change");
    assert_eq!(report["unprivileged"], true);
    assert_eq!(stderr.matches("this plan uses none").count(), 1, "{stderr}");
    assert!(!stderr.contains("chown"), "{stderr}");
}
