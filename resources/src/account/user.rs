//! `user`: an account — uid, primary group, supplementary groups (exactly these, or added),
//! home, shell, comment, password hash (compared, never shown), lock, expiry — or its absence.
//! A home directory is removed only with `remove_home = true`.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;

use super::{check_name, db, tool};
use crate::change::{Change, Drift};
use crate::host::{Mutate, Probe};
use crate::resource::{Applied, Kind, Resource, ResourceError};
use crate::spec::{Fields, SpecError};

/// The `user` kind: its name, summary and constructor.
pub(crate) const KIND: Kind = Kind {
    name: "user",
    summary: "an account: uid, groups, home, shell, password hash, lock, expiry, or absent",
    build,
    prune: None,
};

/// A `user` resource, as its manifest table declared it.
#[derive(Debug)]
pub(crate) struct User {
    name: String,
    uid: Option<u32>,
    /// Primary group: a name or a numeric gid.
    group: Option<String>,
    groups: Option<Vec<String>>,
    append: bool,
    home: Option<String>,
    create_home: Option<bool>,
    shell: Option<String>,
    comment: Option<String>,
    system: bool,
    password_hash: Option<String>,
    locked: Option<bool>,
    /// Days since 1970-01-01; `Some(None)`: never expires.
    expires: Option<Option<i64>>,
    present: bool,
    remove_home: bool,
}

fn build(f: &mut Fields<'_>) -> Result<Arc<dyn Resource>, SpecError> {
    let (name, span) = f.required_string("name")?;
    check_name(&span, "user", &name.value)?;
    let uid = match f.int("uid")? {
        Some((n, span)) => Some(u32::try_from(n).ok().filter(|u| *u < u32::MAX).ok_or_else(
            || SpecError::new(span, format!("uid {n} is out of range (0 to 4294967294)")),
        )?),
        None => None,
    };
    let group = match f.peek("group") {
        Some(crate::spec::Value::Int(_)) => f.int("group")?.map(|(n, _)| n.to_string()),
        _ => f.string("group")?.map(|(t, _)| t.value),
    };
    let groups = f
        .has("groups")
        .then(|| f.string_list("groups"))
        .transpose()?;
    let append = f.bool("append")?.unwrap_or(false);
    let home = f.string("home")?.map(|(t, _)| t.value);
    let create_home = f.bool("create_home")?;
    let shell = f.string("shell")?.map(|(t, _)| t.value);
    let comment = match f.string("comment")? {
        Some((t, span)) if t.value.contains([':', '\n']) => {
            return Err(SpecError::new(span, "comment holds `:` or a line break"))
        }
        other => other.map(|(t, _)| t.value),
    };
    let system = f.bool("system")?.unwrap_or(false);
    let password_hash = match f.text("password_hash")? {
        Some((t, span)) => {
            if t.value.contains([':', '\n']) || t.value.starts_with('!') {
                return Err(SpecError::new(
                    span,
                    "password_hash holds `:`, a line break or a leading `!`",
                )
                .help(
                    "a crypt(3) hash (mkpasswd -m yescrypt); lock the account with locked = true",
                ));
            }
            Some(t.value)
        }
        None => None,
    };
    let locked = f.bool("locked")?;
    let expires = match f.string("expires")? {
        None => None,
        Some((t, _)) if t.value == "never" => Some(None),
        Some((t, span)) => Some(Some(days(&t.value).ok_or_else(|| {
            SpecError::new(span, format!("expires {:?} is not a date", t.value))
                .help("YYYY-MM-DD, or \"never\"")
        })?)),
    };
    let present = f
        .choice("state", &["present", "absent"])?
        .unwrap_or("present")
        == "present";
    let remove_home = f.bool("remove_home")?.unwrap_or(false);
    Ok(Arc::new(User {
        name: name.value,
        uid,
        group,
        groups,
        append,
        home,
        create_home,
        shell,
        comment,
        system,
        password_hash,
        locked,
        expires,
        present,
        remove_home,
    }))
}

/// Days from 1970-01-01 to `YYYY-MM-DD`, as `/etc/shadow` counts them.
fn days(date: &str) -> Option<i64> {
    let mut it = date.split('-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    Some(i64::from(
        date.to_julian_day()
            - time::Date::from_calendar_date(1970, time::Month::January, 1)
                .ok()?
                .to_julian_day(),
    ))
}

fn date_of(days: i64) -> String {
    time::Date::from_calendar_date(1970, time::Month::January, 1)
        .ok()
        .and_then(|e| e.checked_add(time::Duration::days(days)))
        .map_or(days.to_string(), |d| d.to_string())
}

/// The account (when it exists), every user and every group, as one read of the files.
type Accounts = (Option<Now>, Vec<db::Passwd>, Vec<db::Group>);

/// What the account is now, as the check needs it.
struct Now {
    user: db::Passwd,
    /// Supplementary groups, sorted.
    groups: Vec<String>,
    shadow: Option<db::Shadow>,
}

impl User {
    fn primary_gid(&self, groups: &[db::Group]) -> Result<Option<u32>, ResourceError> {
        let Some(g) = &self.group else {
            return Ok(None);
        };
        if let Ok(n) = g.parse::<u32>() {
            return Ok(Some(n));
        }
        groups
            .iter()
            .find(|x| &x.name == g)
            .map(|x| Some(x.gid))
            .ok_or_else(|| ResourceError::Missing(format!("group {g} does not exist")))
    }

    /// The supplementary groups it must have, given the current ones.
    fn wanted_groups(&self, now: &[String]) -> Option<Vec<String>> {
        let want = self.groups.as_ref()?;
        let mut set: BTreeSet<String> = want.iter().cloned().collect();
        if self.append {
            set.extend(now.iter().cloned());
        }
        Some(set.into_iter().collect())
    }

    fn read(&self, host: &Probe) -> Result<Accounts, ResourceError> {
        let users = db::passwd(host)?;
        let groups = db::groups(host)?;
        let now = match users.iter().find(|u| u.name == self.name) {
            None => None,
            Some(u) => {
                let mut gs: Vec<String> = groups
                    .iter()
                    .filter(|g| g.members.contains(&self.name))
                    .map(|g| g.name.clone())
                    .collect();
                gs.sort();
                gs.dedup();
                Some(Now {
                    user: u.clone(),
                    groups: gs,
                    shadow: db::shadow(host, &self.name)?,
                })
            }
        };
        Ok((now, users, groups))
    }

    fn drift_of(
        &self,
        host: &Probe,
        now: &Now,
        groups: &[db::Group],
    ) -> Result<Drift, ResourceError> {
        let mut drift = Drift::none();
        let u = &now.user;
        if let Some(want) = self.uid.filter(|w| *w != u.uid) {
            drift.push(Change::new(
                "uid",
                Some(u.uid.to_string()),
                Some(want.to_string()),
            ));
        }
        if let Some(want) = self.primary_gid(groups)?.filter(|w| *w != u.gid) {
            drift.push(Change::new(
                "group",
                Some(u.gid.to_string()),
                self.group.clone().or(Some(want.to_string())),
            ));
        }
        if let Some(want) = self.wanted_groups(&now.groups) {
            for g in &want {
                if !groups.iter().any(|x| &x.name == g) {
                    return Err(ResourceError::Missing(format!("group {g} does not exist")));
                }
            }
            if want != now.groups {
                drift.push(Change::new(
                    "groups",
                    Some(now.groups.join(", ")),
                    Some(want.join(", ")),
                ));
            }
        }
        for (field, want, have) in [
            ("home", &self.home, &u.home),
            ("shell", &self.shell, &u.shell),
            ("comment", &self.comment, &u.gecos),
        ] {
            if let Some(w) = want.as_ref().filter(|w| *w != have) {
                drift.push(Change::new(field, Some(have.clone()), Some(w.clone())));
            }
        }
        let hash = now.shadow.as_ref().map(|s| s.hash.as_str()).unwrap_or("");
        let is_locked = hash.starts_with('!');
        if let Some(want) = &self.password_hash {
            if hash.trim_start_matches('!') != want {
                drift.push(Change::sensitive(
                    "password_hash",
                    format!(
                        "password_hash: (sensitive) {} → {}",
                        host.fingerprint(hash.trim_start_matches('!').as_bytes()),
                        host.fingerprint(want.as_bytes())
                    ),
                ));
            }
        }
        if let Some(want) = self.locked.filter(|w| *w != is_locked) {
            drift.push(Change::new(
                "locked",
                Some(is_locked.to_string()),
                Some(want.to_string()),
            ));
        }
        if let Some(want) = self.expires {
            let have = now.shadow.as_ref().and_then(|s| s.expire);
            if have != want {
                let show = |d: Option<i64>| d.map_or("never".to_string(), date_of);
                drift.push(Change::new("expires", Some(show(have)), Some(show(want))));
            }
        }
        Ok(drift)
    }
}

#[async_trait]
impl Resource for User {
    fn provides(&self) -> Vec<String> {
        vec![format!("user:{}", self.name)]
    }

    fn needs(&self) -> Vec<String> {
        self.group
            .iter()
            .filter(|g| g.parse::<u32>().is_err())
            .chain(self.groups.iter().flatten())
            .map(|g| format!("group:{g}"))
            .collect()
    }

    async fn check(&self, host: &Probe) -> Result<Drift, ResourceError> {
        let (now, users, groups) = self.read(host)?;
        if let Some(uid) = self.uid.filter(|_| self.present) {
            if let Some(other) = users.iter().find(|u| u.uid == uid && u.name != self.name) {
                return Err(ResourceError::Refused(format!(
                    "uid {uid} belongs to user {}; user {} cannot have it",
                    other.name, self.name
                )));
            }
        }
        match (now, self.present) {
            (None, false) => Ok(Drift::none()),
            (Some(_), false) => {
                let mut d = Drift::none();
                d.push(
                    Change::removed("state", "present").described(if self.remove_home {
                        "remove (and its home directory)"
                    } else {
                        "remove (its home directory is kept)"
                    }),
                );
                Ok(d)
            }
            (None, true) => {
                self.primary_gid(&groups)?;
                if let Some(want) = &self.groups {
                    if let Some(g) = want.iter().find(|g| !groups.iter().any(|x| &x.name == *g)) {
                        return Err(ResourceError::Missing(format!("group {g} does not exist")));
                    }
                }
                let mut what = String::from("create");
                if let Some(u) = self.uid {
                    what.push_str(&format!(" (uid {u})"));
                }
                let mut d = Drift::none();
                d.push(Change::created("state", "present").described(what));
                Ok(d)
            }
            (Some(now), true) => self.drift_of(host, &now, &groups),
        }
    }

    async fn apply(&self, host: &Mutate, drift: &Drift) -> Result<Applied, ResourceError> {
        if !self.present {
            let mut args = Vec::new();
            if self.remove_home {
                args.push("--remove".to_string());
            }
            args.push(self.name.clone());
            tool(host, "userdel", &args, None).await?;
            return Ok(Applied::default());
        }
        let (now, _, _) = self.read(host.probe())?;
        let mut args: Vec<String> = Vec::new();
        let creating = now.is_none();
        let touched = |f: &'static str| creating || drift.touches(f);
        if let (true, Some(u)) = (touched("uid"), self.uid) {
            args.extend(["--uid".into(), u.to_string()]);
        }
        if let (true, Some(g)) = (touched("group"), &self.group) {
            args.extend(["--gid".into(), g.clone()]);
        }
        if touched("groups") {
            let have = now.as_ref().map_or(&[][..], |n| &n.groups[..]);
            if let Some(want) = self.wanted_groups(have) {
                if creating && want.is_empty() {
                } else {
                    args.extend(["--groups".into(), want.join(",")]);
                }
            }
        }
        if let (true, Some(h)) = (touched("home"), &self.home) {
            args.extend(["--home-dir".into(), h.clone()]);
        }
        if let (true, Some(s)) = (touched("shell"), &self.shell) {
            args.extend(["--shell".into(), s.clone()]);
        }
        if let (true, Some(c)) = (touched("comment"), &self.comment) {
            args.extend(["--comment".into(), c.clone()]);
        }
        if let (true, Some(e)) = (touched("expires"), self.expires) {
            args.extend(["--expiredate".into(), e.map(date_of).unwrap_or_default()]);
        }
        if creating {
            if self.system {
                args.push("--system".into());
            }
            let make_home = self.create_home.unwrap_or(!self.system);
            args.push(
                if make_home {
                    "--create-home"
                } else {
                    "--no-create-home"
                }
                .into(),
            );
            args.push(self.name.clone());
            tool(host, "useradd", &args, None).await?;
        } else if !args.is_empty() {
            args.push(self.name.clone());
            tool(host, "usermod", &args, None).await?;
        }
        // The hash on stdin, never in an argument any local user could read.
        if let Some(h) = self
            .password_hash
            .as_ref()
            .filter(|_| touched("password_hash"))
        {
            tool(
                host,
                "chpasswd",
                &["--encrypted".into()],
                Some(format!("{}:{h}\n", self.name).into_bytes()),
            )
            .await
            .map_err(|_| {
                ResourceError::Command(format!(
                    "chpasswd could not set the password hash of {} (its input is not shown)",
                    self.name
                ))
            })?;
        }
        let lock_now = self.locked.filter(|_| {
            touched("locked") || (creating && self.locked == Some(true)) || touched("password_hash")
        });
        if let Some(l) = lock_now {
            tool(
                host,
                "usermod",
                &[
                    if l { "--lock" } else { "--unlock" }.into(),
                    self.name.clone(),
                ],
                None,
            )
            .await?;
        }
        Ok(Applied::default())
    }
}
