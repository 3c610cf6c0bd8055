//! The grammars of names tend hands to other programs: a value that does not fit is refused at
//! load time (a located error), never passed on to become a flag (`-oAPT::…` to apt-get), a
//! path (`../` in a Docker API URL) or a directive (`;` in an nginx site).

/// A Debian package name (`[a-z0-9][a-z0-9+.-]+`, Debian policy 5.6.1), optionally `:ARCH`.
pub fn debian_package(n: &str) -> bool {
    let (name, arch) = n.split_once(':').unwrap_or((n, "any"));
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        && !arch.is_empty()
        && arch.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A Debian version (`[epoch:]upstream[-revision]`, starting with a digit), or a glob of one
/// (`5:27.*`): `package` resolves a glob against apt's own list before apt-get sees it.
pub fn debian_version_glob(v: &str) -> bool {
    v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~:-*".contains(c))
}

/// A container, volume or network name as the engine accepts it: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn docker_object(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// An image reference (`[registry[:port]/]path[:tag][@digest]`): the characters of the
/// grammar, no empty or dot-dot path component.
pub fn image_reference(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 512
        && r.starts_with(|c: char| c.is_ascii_alphanumeric())
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
        && !r.split('/').any(|p| p.is_empty() || p == ".." || p == ".")
}

/// A compose project name (compose's own rule): `[a-z0-9][a-z0-9_-]*`.
pub fn compose_project(n: &str) -> bool {
    !n.is_empty()
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
}

/// A systemd unit name (systemd.unit(5)): `name[@instance].type`, at most 255 bytes, of
/// `[A-Za-z0-9:_.\\@-]`, of a type tend manages, never starting with `-` (a flag to systemctl).
pub fn systemd_unit(n: &str) -> bool {
    const TYPES: &[&str] = &[
        "service",
        "socket",
        "timer",
        "path",
        "mount",
        "automount",
        "target",
        "slice",
    ];
    let Some((stem, kind)) = n.rsplit_once('.') else {
        return false;
    };
    !stem.is_empty()
        && n.len() <= 255
        && !n.starts_with('-')
        && TYPES.contains(&kind)
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.\\@-".contains(c))
}

/// A drop-in file name: `NAME.conf`, one path component.
pub fn systemd_dropin(n: &str) -> bool {
    n.len() > 5
        && n.len() <= 255
        && n.ends_with(".conf")
        && !n.starts_with('.')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c))
}

/// One nginx `server_name`: a host name, a wildcard (`*.example.com`, `.example.com`), `_`, or
/// an IPv6 literal in brackets. Nothing that could end the directive or start another.
pub fn nginx_server_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._*:[]".contains(c))
}

/// A single nginx token tend writes into a directive (a size, a time, a path, a URL): no
/// whitespace, quote, `;`, `{`, `}`, `#`, `$` or control character.
pub fn nginx_token(t: &str) -> bool {
    !t.is_empty()
        && !t
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"';{}#$\\`".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_become_flags_paths_or_directives_are_refused() {
        assert!(debian_package("docker-ce"));
        assert!(debian_package("libc6:amd64"));
        assert!(!debian_package("-oAPT::Get::AllowUnauthenticated=true"));
        assert!(!debian_package("curl wget"));
        assert!(debian_version_glob("5:27.3.1-1~debian.12~bookworm"));
        assert!(debian_version_glob("5:27.*"));
        assert!(!debian_version_glob("-1"));
        assert!(!debian_version_glob("*"));
        assert!(!debian_version_glob("1.0 -o"));
        assert!(docker_object("dify-api_1"));
        assert!(!docker_object("../../containers/create"));
        assert!(!docker_object("a?b"));
        assert!(image_reference("langgenius/dify-api:1.12.1"));
        assert!(image_reference("127.0.0.1:5000/x/y@sha256:abc"));
        assert!(!image_reference("x/../../v1.41/containers"));
        assert!(!image_reference("x y"));
        assert!(compose_project("docker"));
        assert!(!compose_project("Docker"));
        assert!(nginx_server_name("*.example.com"));
        assert!(nginx_server_name("_"));
        assert!(!nginx_server_name("a.com; include /etc/shadow"));
        assert!(!nginx_server_name("a.com\nlisten"));
        assert!(nginx_token("100M"));
        assert!(nginx_token("http://127.0.0.1:3000"));
        assert!(!nginx_token("3600s; return 200"));
    }
}
