//! Helpers for the Docker tests: the docker CLI (to set up and to observe, never to do tend's
//! work), the local test image, unique project names, and cleanup that runs even when a test
//! fails.

use std::path::Path;
use std::process::Command;
use std::sync::Once;

/// The image every Docker test runs: busybox-static in an image `FROM scratch` (no registry is
/// reachable, so nothing may pull).
pub const IMAGE: &str = "tend-test/busybox:1";

/// `docker ARGS…`; panics with docker's message when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker ARGS…`, whatever happens.
pub fn docker_quiet(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Build [`IMAGE`] once when it is missing (scripts/test builds it too).
pub fn test_image() -> &'static str {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        if docker_quiet(&["image", "inspect", IMAGE]) {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy("/bin/busybox", dir.path().join("busybox"))
            .expect("copy /bin/busybox (install busybox-static)");
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sh\"]\n",
        )
        .expect("write Dockerfile");
        docker(&["build", "-q", "-t", IMAGE, dir.path().to_str().expect("utf8")]);
    });
    IMAGE
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

/// What a test made: [`Cleanup`] removes it.
#[derive(Default)]
pub struct Made {
    pub projects: Vec<String>,
    pub containers: Vec<String>,
    pub images: Vec<String>,
    pub volumes: Vec<String>,
    pub networks: Vec<String>,
}

/// Removes a compose project's containers and networks, and named containers, images, volumes
/// and networks, when dropped (so also when the test fails).
pub struct Cleanup(pub Made);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let made = &self.0;
        for p in &made.projects {
            let filter = format!("label=com.docker.compose.project={p}");
            let ids = Command::new("docker")
                .args(["ps", "-aq", "--filter", &filter])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for id in ids.split_whitespace() {
                docker_quiet(&["rm", "-f", id]);
            }
            docker_quiet(&["network", "rm", &format!("{p}_default")]);
        }
        for c in &made.containers {
            docker_quiet(&["rm", "-f", c]);
        }
        for i in &made.images {
            docker_quiet(&["rmi", "-f", i]);
        }
        for v in &made.volumes {
            docker_quiet(&["volume", "rm", "-f", v]);
        }
        for n in &made.networks {
            docker_quiet(&["network", "rm", n]);
        }
    }
}

/// Where a volume's files are on this host.
pub fn volume_mountpoint(volume: &str) -> std::path::PathBuf {
    docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", volume]).into()
}

/// Container IDs of a project's services: `service → id`.
pub fn service_ids(project: &str) -> std::collections::BTreeMap<String, String> {
    let filter = format!("label=com.docker.compose.project={project}");
    docker(&[
        "ps",
        "-a",
        "--filter",
        &filter,
        "--format",
        "{{.Label \"com.docker.compose.service\"}} {{.ID}}",
    ])
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(s, id)| (s.to_string(), id.to_string()))
    .collect()
}

/// A directory holding a `docker-compose` and a `docker` that log each call to `log` and run the
/// real ones: put it first on PATH to count compose processes, whichever flavour tend runs (the
/// v2 plugin through `docker compose`, or v1's `docker-compose`).
pub fn compose_spy(dir: &Path, log: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("mkdir spy");
    for name in ["docker-compose", "docker"] {
        let Some(real) = which(name) else {
            continue;
        };
        let script = dir.join(name);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                real.display()
            ),
        )
        .expect("write spy");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The compose the suite runs by hand, as tend would pick it: the v2 plugin (`docker compose`,
/// the production flavour) when installed, else v1's `docker-compose`.
pub fn compose_command() -> Command {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if v2 {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        Command::new("docker-compose")
    }
}

pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// An image with the host's nginx (Debian's, with the libraries `ldd` names) over the busybox
/// test image, for checking a site inside a container. Built once when missing.
pub fn nginx_image() -> &'static str {
    const NGINX_IMAGE: &str = "tend-test/nginx:1";
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let base = test_image();
        if docker_quiet(&["image", "inspect", NGINX_IMAGE]) {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        let copy = |src: &str| {
            let dst = rootfs.join(src.trim_start_matches('/'));
            std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
            std::fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {src}: {e} (install nginx)"));
        };
        copy("/usr/sbin/nginx");
        let ldd = Command::new("ldd")
            .arg("/usr/sbin/nginx")
            .output()
            .expect("ldd");
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // "libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x…)" or "/lib64/ld-linux… (0x…)"
            if let Some(path) = line.split_whitespace().find(|w| w.starts_with('/')) {
                copy(path);
            }
        }
        for d in ["var/lib/nginx", "var/log/nginx", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .expect("passwd");
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
        std::fs::write(
            dir.path().join("Dockerfile"),
            format!("FROM {base}\nCOPY rootfs/ /\nCMD [\"sleep\", \"3600\"]\n"),
        )
        .expect("write Dockerfile");
        docker(&[
            "build",
            "-q",
            "-t",
            NGINX_IMAGE,
            dir.path().to_str().expect("utf8"),
        ]);
    });
    NGINX_IMAGE
}
