//! `tend restore`: put a file's content back from the backups tend kept.

use std::path::PathBuf;
use std::time::Duration;

use crate::{absolute, cli, output, state, StartError};
use tend_resources::Probe;

/// `tend restore`: put a backup back, keeping the current content as a backup in turn.
pub(crate) fn restore(args: &cli::RestoreArgs, quiet: bool) -> Result<i32, StartError> {
    use std::os::unix::fs::MetadataExt;
    use tend_resources::host::{mode_of, Attrs, BackupStore};
    let root = args
        .root
        .as_deref()
        .map_or_else(|| PathBuf::from("/"), absolute);
    let state_dir = args
        .state_dir
        .as_deref()
        .map_or_else(|| root.join("var/lib/tend"), absolute);
    let probe = Probe::new(&root, &state_dir);
    let real = probe.real(&args.path);
    let store = BackupStore::new(&state_dir);
    let mut entries = store
        .entries(&real)
        .map_err(|e| StartError::State(e.to_string()))?;
    entries.reverse();
    if entries.is_empty() {
        return Err(StartError::Usage(format!(
            "no backups of {} in {}",
            real.display(),
            state_dir.display()
        )));
    }
    let when = |t: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(t))
            .to_string()
    };
    if args.list {
        for e in &entries {
            output::stdout(&(format!("{}  {}", e.sha256, when(e.unix_time)) + "\n"));
        }
        return Ok(0);
    }
    let chosen = match &args.from {
        None => entries[0].clone(),
        Some(prefix) => {
            let hits: Vec<_> = entries
                .iter()
                .filter(|e| e.sha256.starts_with(prefix.as_str()))
                .collect();
            match hits.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(StartError::Usage(format!(
                        "no backup of {} matches {prefix}; `tend restore {} --list` shows them",
                        real.display(),
                        args.path.display()
                    )))
                }
                _ => {
                    return Err(StartError::Usage(format!(
                        "{prefix} matches {} backups; give more digits",
                        hits.len()
                    )))
                }
            }
        }
    };
    let lock = state::lock(&state_dir, Duration::ZERO)?;
    let content = std::fs::read(store.blob(&chosen.sha256))
        .map_err(|e| StartError::State(format!("cannot read backup {}: {e}", chosen.sha256)))?;
    // `tend restore` is an operator's explicit write: the run lock's handle.
    let host = lock.mutate(probe);
    let meta = host
        .metadata(&args.path)
        .map_err(|e| StartError::Host(e.to_string()))?;
    // The mode and owner the file had when the backup was taken; a current file's only for old
    // backups that did not record them; else the safe mode. Never a symlink's or a swapped file's.
    let attrs = match (chosen.mode, chosen.uid, chosen.gid, &meta) {
        (Some(mode), Some(uid), Some(gid), _) => Attrs {
            mode: Some(mode),
            uid: Some(uid),
            gid: Some(gid),
        },
        (_, _, _, Some(m)) if m.is_file() => Attrs {
            mode: Some(mode_of(m)),
            uid: Some(m.uid()),
            gid: Some(m.gid()),
        },
        _ => Attrs {
            mode: Some(0o600),
            uid: None,
            gid: None,
        },
    };
    if meta.as_ref().is_some_and(|m| !m.is_file()) {
        return Err(StartError::Host(format!(
            "{} is not a regular file (a symlink or directory is in its place); tend restores \
             only over a regular file or a missing one: look at what is there and remove it first",
            real.display()
        )));
    }
    let kept = host
        .backup(&args.path)
        .map_err(|e| StartError::Host(e.to_string()))?;
    host.write_atomic(&args.path, &content, attrs)
        .map_err(|e| StartError::Host(e.to_string()))?;
    if !quiet {
        output::stdout(
            &(format!(
                "restored {} from backup {} (taken {})",
                real.display(),
                chosen.sha256,
                when(chosen.unix_time)
            ) + "\n"),
        );
        if let Some(k) = kept {
            output::stdout(&(format!("the content it replaced is kept in {}", k.display()) + "\n"));
        }
    }
    Ok(0)
}
