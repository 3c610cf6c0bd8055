//! Durable refreshes: before a resource that notifies others applies, the refreshes it will
//! trigger are written to `STATE/journal.json` (atomically, fsynced); an entry is cleared only
//! when its refresh succeeded. A run that dies between a change and its refresh leaves the entry
//! behind, and the next run performs the refresh and says why. (Ansible loses its handlers when
//! a play fails; a restart must never be lost.)

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Contents {
    /// Target address → the notifiers whose change it has not yet answered.
    pending: BTreeMap<String, Vec<String>>,
}

#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    contents: Mutex<Contents>,
    /// What an earlier run left owed, as loaded: said as such when it is paid.
    carried: BTreeMap<String, Vec<String>>,
}

/// Label of a notification carried over from an earlier run.
pub(crate) const CARRIED_OVER: &str = "(journaled by an interrupted run)";

impl Journal {
    /// Read the journal; a missing one is empty.
    pub(crate) fn load(state_dir: &Path) -> io::Result<Journal> {
        let path = state_dir.join("journal.json");
        let contents = match tend_resources::host::read_private_file(&path)
            .map_err(|e| io::Error::other(e.to_string()))?
        {
            Some(b) => serde_json::from_slice(&b).map_err(|e| {
                io::Error::other(format!(
                    "{} is damaged ({e}). It lists refreshes an interrupted run still owes; \
                     moving it away forgets them (run those refreshes by hand, e.g. restart the \
                     services it names): mv {} {}.damaged",
                    path.display(),
                    path.display(),
                    path.display()
                ))
            })?,
            None => Contents::default(),
        };
        Ok(Journal {
            path,
            carried: contents.pending.clone(),
            contents: Mutex::new(contents),
        })
    }

    /// Refreshes owed from earlier runs: target → notifiers.
    pub(crate) fn pending(&self) -> BTreeMap<String, Vec<String>> {
        self.contents
            .lock()
            .map(|c| c.pending.clone())
            .unwrap_or_default()
    }

    /// Refreshes owed, target → what owes them, in words for the report: what an interrupted run
    /// left is said as such (`file.a (journaled by an interrupted run)`).
    pub(crate) fn owed(&self) -> BTreeMap<String, Vec<String>> {
        let mut owed = self.pending();
        for (target, by) in owed.iter_mut() {
            let carried = self.carried.get(target);
            for n in by.iter_mut() {
                if carried.is_some_and(|c| c.contains(n)) {
                    *n = format!("{n} {CARRIED_OVER}");
                }
            }
        }
        owed
    }

    /// Record, durably, that `notifier` is about to change and owes `targets` a refresh.
    pub(crate) fn add(&self, targets: &[String], notifier: &str) -> io::Result<()> {
        let mut c = self
            .contents
            .lock()
            .map_err(|_| io::Error::other("journal lock poisoned"))?;
        for t in targets {
            let list = c.pending.entry(t.clone()).or_default();
            if !list.iter().any(|n| n == notifier) {
                list.push(notifier.to_string());
            }
        }
        self.save(&c)
    }

    /// The refresh of `target` succeeded.
    pub(crate) fn clear(&self, target: &str) -> io::Result<()> {
        let mut c = self
            .contents
            .lock()
            .map_err(|_| io::Error::other("journal lock poisoned"))?;
        if c.pending.remove(target).is_some() {
            self.save(&c)?;
        }
        Ok(())
    }

    fn save(&self, c: &Contents) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        let text = serde_json::to_vec_pretty(c).map_err(io::Error::other)?;
        crate::state::write_private(dir, "journal.json", &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_until_cleared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::load(dir.path()).expect("empty");
        j.add(&["exec.reload".into()], "file.a").expect("add");
        j.add(&["exec.reload".into()], "file.b").expect("add");
        let again = Journal::load(dir.path()).expect("reload");
        assert_eq!(again.pending()["exec.reload"], ["file.a", "file.b"]);
        again.clear("exec.reload").expect("clear");
        assert!(Journal::load(dir.path())
            .expect("reload")
            .pending()
            .is_empty());
    }
}
