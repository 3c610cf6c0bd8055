//! What a host operation that failed says: the operation, the path, the OS's reason.

use super::*;

/// An I/O failure on the host, naming what was attempted and on which path.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {source}", path.display())]
pub struct HostError {
    /// What was being done ("read", "write", "resolve"…).
    pub op: &'static str,
    /// The real path it was done to.
    pub path: PathBuf,
    #[source]
    /// The operating system's error.
    pub source: io::Error,
}

impl HostError {
    /// An error of `op` on `path`.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> HostError {
        HostError {
            op,
            path: path.into(),
            source,
        }
    }
}

/// A host operation's result.
pub type HostResult<T> = Result<T, HostError>;
