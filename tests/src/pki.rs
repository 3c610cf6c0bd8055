//! Certificates for the TLS tests, made with the real `openssl` (dates chosen exactly with
//! `openssl ca`, so expired and expiring certificates are real ones), and a real ACME server:
//! pebble on loopback with its own test CA, `pebble-challtestsrv` answering every name with
//! 127.0.0.1, and nginx serving the challenge webroot on the port pebble validates against.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn openssl(args: &[&str], cwd: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run openssl (install openssl)");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new P-256 private key (PKCS#8 PEM) at `path`.
pub fn key(path: &Path) {
    let dir = path.parent().expect("parent");
    std::fs::create_dir_all(dir).expect("mkdir");
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            path.to_str().expect("utf8"),
        ],
        dir,
    );
}

/// `YYYYMMDDHHMMSSZ`, `days` from now (negative: in the past).
pub fn asn1_time(days: i64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("{days} days"), "+%Y%m%d%H%M%SZ"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A self-signed certificate for `names` with `key`, valid from `start` to `end` (ASN.1 times).
pub fn cert(path: &Path, key: &Path, names: &[&str], start: &str, end: &str) {
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    std::fs::write(w.join("index.txt"), "").expect("index");
    std::fs::write(w.join("serial"), "1000\n").expect("serial");
    std::fs::write(
        w.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = d\n[d]\ndir = {dir}\ndatabase = {dir}/index.txt\nnew_certs_dir = {dir}\nserial = {dir}/serial\ndefault_md = sha256\npolicy = p\ncopy_extensions = copy\nunique_subject = no\n[p]\ncommonName = supplied\n",
            dir = w.display()
        ),
    )
    .expect("cnf");
    let san = names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let key = key.to_str().expect("utf8");
    openssl(
        &[
            "req",
            "-new",
            "-key",
            key,
            "-subj",
            &format!("/CN={}", names[0]),
            "-addext",
            &format!("subjectAltName={san}"),
            "-out",
            "req.csr",
        ],
        w,
    );
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    openssl(
        &[
            "ca",
            "-batch",
            "-notext",
            "-config",
            "ca.cnf",
            "-selfsign",
            "-keyfile",
            key,
            "-in",
            "req.csr",
            "-startdate",
            start,
            "-enddate",
            end,
            "-out",
            path.to_str().expect("utf8"),
        ],
        w,
    );
}

/// A test CA (`ca.pem`, `ca.key`) and a server certificate it signed (`cert.pem`, `key.pem`) for
/// `cn` with `san` (`DNS:…,IP:…`), in `dir`, valid two days.
pub fn server_cert(dir: &Path, cn: &str, san: &str) {
    server_cert_days(dir, cn, san, 2);
}

/// [`server_cert`], valid `days` days.
pub fn server_cert_days(dir: &Path, cn: &str, san: &str, days: u32) {
    let days = days.to_string();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=tend test CA",
            "-days",
            &days,
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "srv.csr",
            "-subj",
            &format!("/CN={cn}"),
        ],
        dir,
    );
    std::fs::write(dir.join("ext.cnf"), format!("subjectAltName={san}\n")).expect("ext");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            &days,
            "-extfile",
            "ext.cnf",
        ],
        dir,
    );
}

/// A certificate for `name` the way certbot leaves it: `archive/NAME/{privkey1,fullchain1}.pem`
/// and `live/NAME/{privkey,fullchain}.pem` as relative symlinks to them, under `dir` (a volume's
/// mountpoint), valid from a day ago for `days` more days.
pub fn certbot_layout(dir: &Path, name: &str, days: i64) {
    let archive = dir.join("archive").join(name);
    key(&archive.join("privkey1.pem"));
    cert(
        &archive.join("fullchain1.pem"),
        &archive.join("privkey1.pem"),
        &[name],
        &asn1_time(-1),
        &asn1_time(days),
    );
    let live = dir.join("live").join(name);
    std::fs::create_dir_all(&live).expect("mkdir live");
    for f in ["privkey", "fullchain"] {
        std::os::unix::fs::symlink(
            format!("../../archive/{name}/{f}1.pem"),
            live.join(format!("{f}.pem")),
        )
        .expect("symlink");
    }
}

/// A port free on loopback now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Wait (up to 20 s) until something listens on loopback `port`; else fail with `log`'s text.
pub fn wait_for(port: u16, what: &str, log: &Path) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} did not listen on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// pebble, its DNS stand-in and an nginx serving `webroot`, all on loopback; stopped on drop.
pub struct Pebble {
    _children: Vec<crate::Reaped>,
    pub dir: tempfile::TempDir,
    /// The ACME directory URL.
    pub directory: String,
    /// The CA that signed pebble's HTTPS certificate (the `ca_bundle` to trust).
    pub ca_bundle: PathBuf,
    /// The port pebble fetches HTTP-01 challenges from (on 127.0.0.1).
    pub http_port: u16,
}

impl Pebble {
    /// `webroot` is the real path nginx serves `/.well-known/acme-challenge/` from.
    pub fn start(webroot: &Path) -> Pebble {
        Pebble::start_with(Some(webroot))
    }

    /// Without nginx: whoever listens on [`Pebble::http_port`] answers the challenges (tend's
    /// `standalone` challenge).
    pub fn start_standalone() -> Pebble {
        Pebble::start_with(None)
    }

    fn start_with(webroot: Option<&Path>) -> Pebble {
        let dir = tempfile::Builder::new()
            .prefix("tend-pebble-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let s = |p: &str| d.join(p).to_string_lossy().into_owned();
        server_cert(d, "localhost", "DNS:localhost,IP:127.0.0.1");
        let (acme, mgmt, dns, dns_mgmt, http) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        std::fs::write(
            d.join("pebble.json"),
            format!(
                r#"{{"pebble": {{"listenAddress": "127.0.0.1:{acme}", "managementListenAddress": "127.0.0.1:{mgmt}", "certificate": "{}", "privateKey": "{}", "httpPort": {http}, "tlsPort": {}, "ocspResponderURL": "", "externalAccountBindingRequired": false}}}}"#,
                s("cert.pem"),
                s("key.pem"),
                free_port()
            ),
        )
        .expect("pebble config");
        let webroot_dir = webroot
            .map(Path::to_path_buf)
            .unwrap_or_else(|| d.join("unused"));
        let webroot = webroot_dir.as_path();
        std::fs::write(
            d.join("nginx.conf"),
            format!(
                "user root;\nerror_log {err};\npid {pid};\ndaemon off;\nevents {{}}\nhttp {{\n    access_log off;\n    server {{\n        listen 127.0.0.1:{http};\n        location /.well-known/acme-challenge/ {{ root {root}; }}\n    }}\n}}\n",
                err = s("nginx-error.log"),
                pid = s("nginx.pid"),
                root = webroot.display()
            ),
        )
        .expect("nginx config");
        let spawn = |cmd: &mut Command, log: &str| -> crate::Reaped {
            let out = std::fs::File::create(d.join(log)).expect("log");
            let child = cmd
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("start {cmd:?}: {e} (install pebble and nginx)"));
            crate::Reaped(child)
        };
        let mut children = Vec::new();
        children.push(spawn(
            Command::new("pebble-challtestsrv").args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{dns_mgmt}"),
            ]),
            "challtestsrv.log",
        ));
        children.push(spawn(
            Command::new("pebble")
                .args([
                    "-config",
                    &s("pebble.json"),
                    "-dnsserver",
                    &format!("127.0.0.1:{dns}"),
                ])
                // No random sleeps, no rejected nonces: the tests are about tend, not retries.
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0"),
            "pebble.log",
        ));
        let with_nginx = webroot_dir != d.join("unused");
        if with_nginx {
            std::fs::create_dir_all(webroot).expect("webroot");
            children.push(spawn(
                Command::new("nginx").args([
                    "-p",
                    &format!("{}/", d.display()),
                    "-c",
                    &s("nginx.conf"),
                ]),
                "nginx.log",
            ));
        }
        let p = Pebble {
            _children: children,
            directory: format!("https://127.0.0.1:{acme}/dir"),
            ca_bundle: d.join("ca.pem"),
            http_port: http,
            dir,
        };
        wait_for(
            dns_mgmt,
            "pebble-challtestsrv",
            &p.dir.path().join("challtestsrv.log"),
        );
        wait_for(acme, "pebble", &p.dir.path().join("pebble.log"));
        if with_nginx {
            wait_for(http, "nginx", &p.dir.path().join("nginx-error.log"));
        }
        p
    }

    /// Orders pebble has received.
    pub fn orders(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("pebble.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("POST /order-plz"))
            .count()
    }
}
