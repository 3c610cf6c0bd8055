//! The site file an `nginx_site` declares, rendered from its fields: port 80 answers ACME HTTP-01
//! challenges (when a webroot is set) and redirects everything else with 301; the HTTPS server
//! proxies to the upstream with the headers an app behind a proxy needs, and defaults that suit
//! Dify's streaming answers (no buffering, long reads, large uploads, websocket upgrades).
//!
//! The layout is the one `jonasal/nginx-certbot` parses: its certificate names come from
//! `ssl_certificate_key /etc/letsencrypt/live/NAME/privkey.pem;` lines and its domains from
//! `server_name` lines, each directive on its own line.

use std::fmt::Write;

/// Where nginx finds the certificate files (paths as nginx sees them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// `ssl_certificate`: the full chain.
    pub cert: String,
    /// `ssl_certificate_key`.
    pub key: String,
    /// `ssl_trusted_certificate` (OCSP stapling), when given.
    pub chain: Option<String>,
    /// `ssl_dhparam`, when given.
    pub dhparam: Option<String>,
}

/// How HTTP/2 is switched on: `http2 on;` needs nginx 1.25.1 or newer (jonasal/nginx-certbot
/// 5.0.0 and later); older nginx (Debian 12's 1.22) takes it on the `listen` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http2 {
    /// `http2 on;` (nginx 1.25.1 and later).
    Directive,
    /// `listen 443 ssl http2;` (older nginx).
    Listen,
    /// No HTTP/2.
    Off,
    /// The form the validating nginx understands (`nginx -v`); the `listen` form when it cannot
    /// be asked (it works on every nginx with HTTP/2, with a deprecation warning on 1.25.1+).
    Auto,
}

/// The HTTP/2 form for an nginx of this version (`nginx version: nginx/1.22.1` as `nginx -v`
/// says it); `None` when the text holds no version.
pub fn http2_for(nginx_v: &str) -> Option<Http2> {
    let v = nginx_v.split("nginx/").nth(1)?;
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (
        parts.next()?,
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    Some(if version >= (1, 25, 1) {
        Http2::Directive
    } else {
        Http2::Listen
    })
}

#[derive(Debug, Clone)]
/// A site's fields, checked by the grammar when the manifest was loaded.
pub struct Site {
    /// The resource's address, named in the file's header.
    pub address: String,
    /// `server_name`s.
    pub server_names: Vec<String>,
    /// Where requests are proxied (`http://` or `https://`).
    pub upstream: String,
    /// The port-80 server (ACME and redirect), or none.
    pub http_port: Option<u16>,
    /// The HTTPS port.
    pub https_port: u16,
    /// Certificate paths as nginx sees them.
    pub tls: TlsPaths,
    /// Webroot for ACME HTTP-01 challenges on port 80.
    pub acme_webroot: Option<String>,
    /// `client_max_body_size`.
    pub client_max_body_size: String,
    /// `proxy_read_timeout`.
    pub proxy_read_timeout: String,
    /// How HTTP/2 is switched on.
    pub http2: Http2,
    /// Also listen on IPv6.
    pub ipv6: bool,
    /// Directives added verbatim to the HTTPS server (the operator's).
    pub extra: Option<String>,
}

impl Site {
    /// The file, with the certificate paths given (the declared ones, or a temporary pair for
    /// validation: the line numbers are the same either way).
    pub fn render(&self, tls: &TlsPaths) -> String {
        let mut o = String::new();
        let names = self.server_names.join(" ");
        let _ = writeln!(
            o,
            "# Managed by tend ({}). Local edits are reverted on the next run.",
            self.address
        );
        if let Some(port) = self.http_port {
            o.push_str("\nserver {\n");
            let _ = writeln!(o, "    listen {port};");
            if self.ipv6 {
                let _ = writeln!(o, "    listen [::]:{port};");
            }
            let _ = writeln!(o, "    server_name {names};");
            if let Some(root) = &self.acme_webroot {
                o.push_str("\n    # ACME HTTP-01 challenges (first issue and every renewal) are answered here.\n");
                o.push_str("    location /.well-known/acme-challenge/ {\n");
                o.push_str("        default_type \"text/plain\";\n");
                let _ = writeln!(o, "        root {root};");
                o.push_str("    }\n");
            }
            o.push_str(
                "\n    location / {\n        return 301 https://$host$request_uri;\n    }\n}\n",
            );
        }
        let port = self.https_port;
        let listen_http2 = if matches!(self.http2, Http2::Listen | Http2::Auto) {
            " http2"
        } else {
            ""
        };
        o.push_str("\nserver {\n");
        match self.http2 {
            Http2::Directive => o.push_str(
                "    # HTTP/2: `http2 on;`, as the nginx that validates this site (1.25.1+) wants it.\n",
            ),
            Http2::Listen => o.push_str(
                "    # HTTP/2 on the listen line: the validating nginx is older than 1.25.1 (or could not be asked).\n",
            ),
            Http2::Off | Http2::Auto => {}
        }
        let _ = writeln!(o, "    listen {port} ssl{listen_http2};");
        if self.ipv6 {
            let _ = writeln!(o, "    listen [::]:{port} ssl{listen_http2};");
        }
        if self.http2 == Http2::Directive {
            o.push_str("    http2 on;\n");
        }
        let _ = writeln!(o, "    server_name {names};");
        o.push('\n');
        let _ = writeln!(o, "    ssl_certificate         {};", tls.cert);
        let _ = writeln!(o, "    ssl_certificate_key     {};", tls.key);
        match &tls.chain {
            Some(chain) => {
                let _ = writeln!(o, "    ssl_trusted_certificate {chain};");
            }
            None => o.push_str("    # no chain: OCSP stapling is not verified\n"),
        }
        match &tls.dhparam {
            Some(dh) => {
                let _ = writeln!(o, "    ssl_dhparam {dh};");
            }
            None => o.push_str("    # no ssl_dhparam: ECDHE only\n"),
        }
        o.push('\n');
        let _ = writeln!(o, "    client_max_body_size {};", self.client_max_body_size);
        if let Some(extra) = &self.extra {
            o.push('\n');
            for line in extra.trim_end().lines() {
                if line.trim().is_empty() {
                    o.push('\n');
                } else {
                    let _ = writeln!(o, "    {}", line.trim_start());
                }
            }
        }
        o.push_str("\n    location / {\n");
        let _ = writeln!(o, "        proxy_pass {};", self.upstream);
        o.push_str(
            "        proxy_http_version 1.1;\n\n\
             \x20       proxy_set_header Host              $host;\n\
             \x20       proxy_set_header X-Real-IP         $remote_addr;\n\
             \x20       proxy_set_header X-Forwarded-For   $proxy_add_x_forwarded_for;\n\
             \x20       proxy_set_header X-Forwarded-Proto $scheme;\n\
             \x20       # Websockets: pass the client's upgrade request through.\n\
             \x20       proxy_set_header Upgrade           $http_upgrade;\n\
             \x20       proxy_set_header Connection        $http_connection;\n\n\
             \x20       # Streamed answers (server-sent events): no buffering, long responses.\n\
             \x20       proxy_buffering    off;\n",
        );
        let _ = writeln!(o, "        proxy_read_timeout {};", self.proxy_read_timeout);
        let _ = writeln!(o, "        proxy_send_timeout {};", self.proxy_read_timeout);
        o.push_str("    }\n}\n");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dify() -> Site {
        Site {
            address: "nginx_site.dify".into(),
            server_names: vec!["dify42.hostkey.in".into()],
            upstream: "http://127.0.0.1:3000".into(),
            http_port: Some(80),
            https_port: 443,
            tls: TlsPaths {
                cert: "/etc/letsencrypt/live/dify42.hostkey.in/fullchain.pem".into(),
                key: "/etc/letsencrypt/live/dify42.hostkey.in/privkey.pem".into(),
                chain: Some("/etc/letsencrypt/live/dify42.hostkey.in/chain.pem".into()),
                dhparam: Some("/etc/letsencrypt/dhparams/dhparam.pem".into()),
            },
            acme_webroot: Some("/var/www/letsencrypt".into()),
            client_max_body_size: "100M".into(),
            proxy_read_timeout: "3600s".into(),
            http2: Http2::Directive,
            ipv6: true,
            extra: None,
        }
    }

    #[test]
    fn http2_follows_the_nginx_version() {
        assert_eq!(
            http2_for("nginx version: nginx/1.22.1"),
            Some(Http2::Listen)
        );
        assert_eq!(
            http2_for("nginx version: nginx/1.25.1"),
            Some(Http2::Directive)
        );
        assert_eq!(
            http2_for("nginx version: nginx/1.27.3 (Ubuntu)"),
            Some(Http2::Directive)
        );
        assert_eq!(http2_for("sh: nginx: not found"), None);
    }

    #[test]
    fn nginx_certbot_finds_the_cert_name_and_domains() {
        let s = dify();
        let text = s.render(&s.tls);
        // The image's parsing: a line starting (after spaces) with ssl_certificate_key and the
        // live/NAME/privkey.pem layout, and server_name lines.
        assert!(text.lines().any(|l| l.trim_start()
            == "ssl_certificate_key     /etc/letsencrypt/live/dify42.hostkey.in/privkey.pem;"));
        assert_eq!(
            text.lines()
                .filter(|l| l.trim_start().starts_with("server_name "))
                .count(),
            2
        );
        for header in [
            "Host              $host",
            "X-Real-IP",
            "X-Forwarded-For",
            "X-Forwarded-Proto $scheme",
        ] {
            assert!(
                text.contains(&format!("proxy_set_header {header}")),
                "{header}"
            );
        }
        assert!(text.contains("return 301 https://$host$request_uri;"));
        assert!(text.contains("root /var/www/letsencrypt;"));
        assert!(text.contains("    http2 on;\n"));
        assert!(
            !text.contains("default_server"),
            "the image's redirector owns default_server"
        );
    }

    #[test]
    fn temporary_paths_keep_the_line_numbers() {
        let s = dify();
        let tmp = TlsPaths {
            cert: "/tmp/x/cert.pem".into(),
            key: "/tmp/x/key.pem".into(),
            chain: Some("/tmp/x/cert.pem".into()),
            dhparam: None,
        };
        assert_eq!(
            s.render(&s.tls).lines().count(),
            s.render(&tmp).lines().count()
        );
    }
}
