//! `/etc/passwd`, `/etc/group` and `/etc/shadow` as the check reads them: colon-separated
//! lines, in-process, through the [`Probe`] (under `--root`, the root's).

use crate::host::Probe;
use crate::resource::ResourceError;
use std::path::Path;

/// A line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Passwd {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// GECOS (the comment).
    pub gecos: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// A line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Member user names, in file order.
    pub members: Vec<String>,
}

/// A line of `/etc/shadow` (the fields tend manages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shadow {
    /// Login name.
    pub name: String,
    /// The password hash, with `!` in front when locked.
    pub hash: String,
    /// Days since 1970-01-01 after which the account expires; `None`: never.
    pub expire: Option<i64>,
}

fn lines(host: &Probe, file: &str) -> Result<Vec<Vec<String>>, ResourceError> {
    let bytes = host.read(Path::new(file))?.unwrap_or_default();
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(['#', '+', '-']))
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect())
}

/// Every user of `/etc/passwd` (lines that do not parse are skipped).
pub(crate) fn passwd(host: &Probe) -> Result<Vec<Passwd>, ResourceError> {
    Ok(lines(host, "/etc/passwd")?
        .into_iter()
        .filter(|f| f.len() >= 7)
        .filter_map(|f| {
            Some(Passwd {
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                name: f[0].clone(),
                gecos: f[4].clone(),
                home: f[5].clone(),
                shell: f[6].clone(),
            })
        })
        .collect())
}

/// Every group of `/etc/group`.
pub(crate) fn groups(host: &Probe) -> Result<Vec<Group>, ResourceError> {
    Ok(lines(host, "/etc/group")?
        .into_iter()
        .filter(|f| f.len() >= 4)
        .filter_map(|f| {
            Some(Group {
                gid: f[2].parse().ok()?,
                name: f[0].clone(),
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect())
}

/// The `/etc/shadow` line of `name`.
pub(crate) fn shadow(host: &Probe, name: &str) -> Result<Option<Shadow>, ResourceError> {
    Ok(lines(host, "/etc/shadow")?
        .into_iter()
        .filter(|f| f.len() >= 8 && f[0] == name)
        .map(|f| Shadow {
            name: f[0].clone(),
            hash: f[1].clone(),
            expire: f[7].parse().ok(),
        })
        .next())
}
