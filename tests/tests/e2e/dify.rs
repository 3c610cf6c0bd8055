//! The flagship manifest as shipped: it loads, its graph orders the deployment as production
//! does, and its site renders as nginx-certbot expects.

use tend_tests::{resource, run, Sandbox};

fn manifest() -> String {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.join("../manifests/dify.toml")
        .canonicalize()
        .expect("manifests/dify.toml")
        .display()
        .to_string()
}

#[test]
fn the_dify_graph_orders_the_deployment() {
    let r = run(&["graph", &manifest()], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for edge in [
        r#""apt_repo.docker" -> "package.docker";"#,
        r#""git.dify" -> "env_file.dify" [style=dotted, label="path"];"#,
        r#""env_file.dify" -> "compose.dify" [style=dashed, label="notify"];"#,
        r#""git.dify" -> "compose.dify" [style=dotted, label="path"];"#,
        r#""package.docker" -> "compose.dify";"#,
        r#""nginx_site.dify" -> "compose.nginx" [style=dashed, label="notify"];"#,
        r#""directory.user_conf" -> "nginx_site.dify" [style=dotted, label="path"];"#,
        r#""compose.dify" -> "compose.nginx";"#,
        r#""compose.nginx" -> "cert.dify";"#,
    ] {
        assert!(r.stdout.contains(edge), "missing {edge} in\n{}", r.stdout);
    }
}

#[test]
fn the_dify_site_renders_for_nginx_certbot() {
    let sb = Sandbox::new();
    let r = sb.tend_with_manifest(
        &manifest(),
        "plan",
        &[
            "--only",
            "nginx_site.dify",
            "--format",
            "json",
            "--var",
            "server_id=7",
        ],
    );
    let plan = r.json();
    let diff = resource(&plan, "nginx_site.dify")["changes"][0]["diff"]
        .as_str()
        .expect("diff")
        .to_string();
    for line in [
        "+++ b/data/nginx/user_conf.d/dify7.hostkey.in.conf",
        "+    server_name dify7.hostkey.in;",
        "+    http2 on;",
        "+    ssl_certificate_key     /etc/letsencrypt/live/dify7.hostkey.in/privkey.pem;",
        "+    ssl_dhparam /etc/letsencrypt/dhparams/dhparam.pem;",
        "+        root /var/www/letsencrypt;",
        "+        proxy_pass http://127.0.0.1:3000;",
    ] {
        assert!(diff.contains(line), "{line:?} in\n{diff}");
    }
}
