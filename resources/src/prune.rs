//! Removing what left the manifest (`tend apply --prune`, `[prune] kinds`): each kind that can
//! take back what it made says how, in its [`Kind::prune`](crate::Kind). The agent decides
//! *whether* (tend created it, the operator named the kind); this module does the removing, from
//! nothing but what the record kept of the resource — its paths — since the manifest no longer
//! declares it.
//!
//! What goes is backed up first where it has content (`tend restore` puts a file back); what
//! would lose data — a package, a checkout, a volume — has no pruner at all.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use crate::host::{Mutate, Probe};
use crate::resource::ResourceError;

/// What a pruner returns: one line per thing it did (`removed /etc/x (old content kept in …)`).
pub type Done = Result<Vec<String>, ResourceError>;

/// A kind's way of removing one of its resources, given the paths the record kept.
pub type Pruner =
    for<'a> fn(&'a Mutate, &'a [PathBuf]) -> Pin<Box<dyn Future<Output = Done> + Send + 'a>>;

/// How a kind prunes, and when tend counts a resource of it as its own creation.
#[derive(Clone, Copy)]
pub struct Prune {
    /// Why the resource stays although pruning was asked (a directory someone else filled):
    /// asked by plan, to say what apply will do, and by apply before it removes anything.
    pub keeps: fn(&Probe, &[PathBuf]) -> Option<String>,
    /// Removes the resource.
    pub run: Pruner,
    /// The fields whose creation means tend made the thing itself (a `service` is tend's only
    /// when it created the unit file, not when it added a drop-in to a packaged unit); empty:
    /// any creation.
    pub created_by: &'static [&'static str],
}

/// Files, links and empty directories: the [`Prune`] of `file`, `symlink`, `directory` and
/// `nginx_site`.
pub const FILES: Prune = Prune {
    keeps: filled_directory,
    run: |host, paths| Box::pin(files(host, paths)),
    created_by: &[],
};

/// Remove each path: a file backed up first, a link itself (never what it points at), a
/// directory only when empty. A path already gone is fine.
pub async fn files(host: &Mutate, paths: &[PathBuf]) -> Done {
    let mut done = Vec::new();
    for path in paths {
        if let Some(line) = remove(host, path)? {
            done.push(line);
        }
    }
    Ok(done)
}

/// A directory among `paths` that holds anything stays: what is in it is not tend's to remove.
pub fn filled_directory(host: &Probe, paths: &[PathBuf]) -> Option<String> {
    // Counted up to a budget: a directory someone filled is not listed whole to say so.
    const COUNTED: usize = 1000;
    paths
        .iter()
        .find_map(|p| match host.count_entries(p, COUNTED) {
            Ok(Some(n)) if n > 0 => Some(format!(
                "{} is not empty ({}{n} entr{})",
                p.display(),
                if n >= COUNTED { "at least " } else { "" },
                if n == 1 { "y" } else { "ies" }
            )),
            _ => None,
        })
}

fn remove(host: &Mutate, path: &Path) -> Result<Option<String>, ResourceError> {
    let shown = path.display();
    Ok(match host.metadata(path)? {
        None => None,
        Some(m) if m.is_dir() => {
            host.remove_dir(path)?;
            Some(format!("removed {shown}"))
        }
        Some(m) if m.is_file() => {
            let backup = host.backup(path)?;
            host.remove_file(path)?;
            Some(match backup {
                Some(b) => format!("removed {shown} (old content kept in {})", b.display()),
                None => format!("removed {shown}"),
            })
        }
        Some(_) => {
            host.remove_file(path)?;
            Some(format!("removed {shown}"))
        }
    })
}
