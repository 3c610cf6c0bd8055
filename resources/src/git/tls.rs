//! libgit2 reads the system's whole CA bundle when it starts (OpenSSL's default verify paths:
//! about 20 ms of CPU for Debian's 140 certificates), whatever URL it will use — two thirds of a
//! no-op `tend pull` over `git://`, and of any run whose manifest has a `git` resource. tend starts
//! libgit2 with the CA locations deferred, and gives it them the first time an `https://` URL is
//! about to be used.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Once, OnceLock};

/// `SSL_CERT_FILE` and `SSL_CERT_DIR` as the process got them.
static GIVEN: OnceLock<(Option<OsString>, Option<OsString>)> = OnceLock::new();

/// OpenSSL's default locations on Debian (`openssl version -d`: `/usr/lib/ssl`).
const DEFAULT_FILE: &str = "/usr/lib/ssl/cert.pem";
const DEFAULT_DIR: &str = "/usr/lib/ssl/certs";

/// Start libgit2 (and OpenSSL's context with it) with no CA locations. Call it before the first
/// use of libgit2 and while the process has one thread: it changes the environment for that
/// instant. Only callers that will use libgit2 call it — starting it costs OpenSSL's own start
/// (a few ms) on every run otherwise. With other threads running (or libgit2 already started),
/// it does nothing, and libgit2 loads the CA bundle itself when first used: slower, never
/// unsafe.
#[allow(clippy::disallowed_methods)]
pub fn start_deferred() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if single_threaded() {
            start_now();
        }
    });
}

/// Whether this process has one thread (`/proc/self/task`): the only time the environment may
/// be changed.
pub fn single_threaded() -> bool {
    // This process's own /proc entry, not the managed host.
    #[allow(clippy::disallowed_methods)]
    std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1)
}

#[allow(clippy::disallowed_methods)]
fn start_now() {
    let given = (
        std::env::var_os("SSL_CERT_FILE"),
        std::env::var_os("SSL_CERT_DIR"),
    );
    // An empty file and a missing directory: OpenSSL's default-paths call loads nothing and
    // clears its own error, so libgit2 starts.
    std::env::set_var("SSL_CERT_FILE", "/dev/null");
    std::env::set_var("SSL_CERT_DIR", "/nonexistent/tend-deferred-ca");
    // Any option call initialises libgit2; this one sets its default.
    git2::opts::strict_hash_verification(true);
    set_timeouts(DEFAULT_NETWORK_TIMEOUT);
    for (name, value) in [("SSL_CERT_FILE", &given.0), ("SSL_CERT_DIR", &given.1)] {
        match value {
            Some(v) => std::env::set_var(name, v),
            None => std::env::remove_var(name),
        }
    }
    let _ = GIVEN.set(given);
}

/// Seconds libgit2 waits for a server to accept a connection, and then for each answer, before
/// it gives up: a server that accepts and never answers must not hold a run (and every run
/// queued behind its lock) forever.
pub const DEFAULT_NETWORK_TIMEOUT: u64 = 60;

/// `tend pull --fetch-timeout`: the same, for the rest of this process. Only while the process
/// has one thread (libgit2's timeouts are unsynchronised globals); later calls keep what is set.
pub fn set_network_timeout(secs: u64) {
    if single_threaded() {
        set_timeouts(secs);
    }
}

fn set_timeouts(secs: u64) {
    let ms = i32::try_from(secs.saturating_mul(1000)).unwrap_or(i32::MAX);
    // SAFETY: libgit2 globals, written only while this process has one thread (`start_now`
    // and `set_network_timeout` run then), before any connection.
    #[allow(unsafe_code)]
    let result = unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(ms)
            .and_then(|()| git2::opts::set_server_timeout_in_milliseconds(ms))
    };
    if let Err(e) = result {
        tracing::warn!("cannot set libgit2's network timeouts: {e}");
    }
}

/// Before `url` is used: an `https://` URL needs the CA locations, loaded once per process.
/// Without [`start_deferred`] (tests of the library, a run that started threads first), libgit2
/// loaded them itself.
pub fn before_use(url: &str) {
    static LOAD: Once = Once::new();
    if !url.starts_with("https://") {
        return;
    }
    let Some((file, dir)) = GIVEN.get() else {
        return;
    };
    LOAD.call_once(|| {
        let file = file
            .clone()
            .map_or_else(|| PathBuf::from(DEFAULT_FILE), PathBuf::from);
        let dir = dir
            .clone()
            .map_or_else(|| PathBuf::from(DEFAULT_DIR), PathBuf::from);
        // This machine's CA bundle, for its own TLS (not a managed file).
        #[allow(clippy::disallowed_methods)]
        let (has_file, has_dir) = (file.exists(), dir.is_dir());
        // SAFETY: global libgit2 options, set once under `Once`; libgit2 guards its SSL context,
        // and connections made after this see the locations.
        #[allow(unsafe_code)]
        let result = unsafe {
            let f = if has_file {
                git2::opts::set_ssl_cert_file(&file)
            } else {
                Ok(())
            };
            f.and_then(|()| {
                if has_dir {
                    git2::opts::set_ssl_cert_dir(&dir)
                } else {
                    Ok(())
                }
            })
        };
        if let Err(e) = result {
            tracing::warn!("cannot load the CA certificates for https: {e}");
        }
    });
}
